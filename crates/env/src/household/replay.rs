//! Rebuilding a scene spec from a recorded ALFWorld trajectory (ETO's format): the room's
//! receptacles come from the first observation, their contents and open/closed states from
//! what later observations reveal, undoing the agent's own takes and puts.

use super::spec::{GoalSpec, ReceptacleSpec, SceneSpec, TaskType};
use crate::EnvError;

/// One recorded turn: the action, and the observation that answered it (`None` for a final
/// action that has no recorded answer). A leading "Observation: " is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStep {
    /// The action text, e.g. `take mug 1 from cabinet 2`.
    pub action: String,
    /// What the world answered.
    pub observation: Option<String>,
}

#[derive(Debug, Default)]
struct Known {
    name: String,
    openable: Option<bool>,
    initially_open: Option<bool>,
    initial: Option<Vec<String>>,
    /// Objects the agent put here / took from here before its contents were first seen.
    added: Vec<String>,
    removed: Vec<String>,
}

const ROOM_PREFIX: &str = "You are in the middle of a room. Looking quickly around you, you see ";

/// Splits ALFWorld's "a x 1, a y 2, and a z 3" (tolerating "an" and a missing comma before
/// "and", as some ETO records have them) into names.
fn parse_list(list: &str) -> Vec<String> {
    if list == "nothing" {
        return Vec::new();
    }
    // Names never contain " and a", so a missing serial comma can be put back first.
    let list = list.replace(", and ", ", ").replace(" and an ", ", an ").replace(" and a ", ", a ");
    list.split(", ").map(strip_article).filter(|s| !s.is_empty()).collect()
}

fn strip_article(item: &str) -> String {
    let item = item.trim();
    item.strip_prefix("an ").or_else(|| item.strip_prefix("a ")).unwrap_or(item).to_string()
}

fn bad(step: usize, action: &str, msg: impl std::fmt::Display) -> EnvError {
    EnvError::BadSpec(format!("trajectory step {step} (`{action}`): {msg}"))
}

/// Rebuilds the scene a recorded trajectory started from.
///
/// `first_observation` is the room description with "Your task is to: …"; `steps` are the
/// actions with their observations. Receptacles the trajectory never looks into are left
/// empty and closed if their type opens; objects it never sees do not exist in the rebuilt
/// scene, which is enough to replay the same actions.
pub fn spec_from_trajectory(
    first_observation: &str,
    steps: &[RecordedStep],
) -> Result<SceneSpec, EnvError> {
    let first = first_observation.trim();
    let bad0 = |m: &str| EnvError::BadSpec(format!("trajectory first observation: {m}"));
    let rest = first.strip_prefix(ROOM_PREFIX).ok_or_else(|| bad0("does not start with \"You are in the middle of a room. Looking quickly around you, you see\""))?;
    let (room, goal) = rest
        .split_once("\n\nYour task is to: ")
        .ok_or_else(|| bad0("has no \"\\n\\nYour task is to: \""))?;
    let room = room
        .trim_end()
        .strip_suffix('.')
        .ok_or_else(|| bad0("the room list does not end with a period"))?;
    let (task_type, object, target) = TaskType::parse_goal(goal).ok_or_else(|| {
        bad0(&format!("goal `{}` matches none of ALFWorld's phrasings", goal.trim()))
    })?;
    let mut receps: Vec<Known> =
        parse_list(room).into_iter().map(|name| Known { name, ..Known::default() }).collect();
    if receps.is_empty() {
        return Err(bad0("lists no receptacles"));
    }
    let find = |receps: &[Known], name: &str| {
        receps.iter().position(|k| k.name.eq_ignore_ascii_case(name.trim()))
    };

    for (i, s) in steps.iter().enumerate() {
        let action = s.action.trim();
        let Some(obs) = s.observation.as_deref() else { continue };
        let obs = obs.trim();
        let obs = obs.strip_prefix("Observation:").map(str::trim_start).unwrap_or(obs);
        if obs == "Nothing happens." {
            continue;
        }
        let lower = action.to_lowercase();
        let arg = |prefix: &str| action[prefix.len()..].trim().to_string();
        if lower.starts_with("go to ") || lower.starts_with("examine ") {
            let name = if lower.starts_with("go to ") { arg("go to ") } else { arg("examine ") };
            if let Some(r) = find(&receps, &name) {
                observe_view(&mut receps[r], obs, false).map_err(|m| bad(i, action, m))?;
            }
        } else if lower.starts_with("open ") {
            if let Some(r) = find(&receps, &arg("open ")) {
                let view = obs
                    .split_once(". ")
                    .map(|(_, v)| v)
                    .ok_or_else(|| bad(i, action, "unexpected answer to open"))?;
                observe_view(&mut receps[r], view, true).map_err(|m| bad(i, action, m))?;
            }
        } else if lower.starts_with("close ") {
            if let Some(r) = find(&receps, &arg("close ")) {
                let k = &mut receps[r];
                k.openable = Some(true);
                k.initially_open.get_or_insert(true);
            }
        } else if lower.starts_with("take ") {
            if let Some((o, r)) = arg("take ").split_once(" from ") {
                if let Some(r) = find(&receps, r) {
                    let k = &mut receps[r];
                    match &mut k.initial {
                        // Seen already: the replay itself will show whether it was there.
                        Some(_) => {}
                        None => k.removed.push(o.trim().to_string()),
                    }
                }
            }
        } else if lower.starts_with("put ") {
            if let Some((o, r)) = arg("put ").split_once(" in/on ") {
                if let Some(r) = find(&receps, r) {
                    if receps[r].initial.is_none() {
                        receps[r].added.push(o.trim().to_string());
                    }
                }
            }
        }
    }

    let (receptacle, lamp) = match task_type {
        TaskType::LookAtObjInLight => (None, Some(target)),
        _ => (Some(target), None),
    };
    let spec = SceneSpec {
        receptacles: receps
            .into_iter()
            .map(|k| {
                let contents = match k.initial {
                    Some(c) => c,
                    None => k.removed,
                };
                ReceptacleSpec {
                    name: k.name,
                    openable: k.openable,
                    open: k.initially_open.unwrap_or(false),
                    contents,
                }
            })
            .collect(),
        goal: GoalSpec { task_type, object, receptacle, lamp, text: Some(goal.trim().to_string()) },
        states: Default::default(),
    };
    spec.validate()?;
    Ok(spec)
}

/// Learns from an `examineReceptacle` text ("The X is closed.", "The X is open. In it, you
/// see …", "On the X, you see …"). `by_opening`: the agent's own open produced it.
fn observe_view(k: &mut Known, view: &str, by_opening: bool) -> Result<(), String> {
    let view = view.trim();
    let (openable, open, list) = if view.ends_with(" is closed.") && view.starts_with("The ") {
        (true, false, None)
    } else if let Some((_, list)) = view.split_once(" is open. In it, you see ") {
        (true, true, Some(list))
    } else if let Some((_, list)) =
        view.strip_prefix("On the ").and_then(|v| v.split_once(", you see "))
    {
        (false, false, Some(list))
    } else {
        return Err(format!("unrecognised observation `{view}`"));
    };
    k.openable.get_or_insert(openable);
    k.initially_open.get_or_insert(if by_opening { false } else { open });
    if k.initial.is_none() {
        if let Some(list) = list {
            let mut items = parse_list(list.trim_end_matches('.'));
            for a in &k.added {
                if let Some(p) = items.iter().position(|x| x.eq_ignore_ascii_case(a)) {
                    items.remove(p);
                }
            }
            items.append(&mut k.removed);
            k.initial = Some(items);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_with_and_without_the_serial_comma() {
        assert_eq!(parse_list("a egg 2, a fork 3, and a mug 3"), vec!["egg 2", "fork 3", "mug 3"]);
        assert_eq!(parse_list("a creditcard 3 and a pencil 3"), vec!["creditcard 3", "pencil 3"]);
        assert_eq!(parse_list("an alarm clock 1, and a CD 2"), vec!["alarm clock 1", "CD 2"]);
        assert_eq!(parse_list("a pen 1"), vec!["pen 1"]);
        assert!(parse_list("nothing").is_empty());
    }
}
