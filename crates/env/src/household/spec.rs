//! Scene specs: a household task written as data (receptacles, their contents, open or
//! closed, the goal), so users can bring their own tasks and recorded trajectories can be
//! replayed. Generated tasks are specs too.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::EnvError;

/// ALFWorld's six task types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Put an object in/on a receptacle.
    PickAndPlaceSimple,
    /// Hold an object and turn on a lamp next to it.
    LookAtObjInLight,
    /// Clean an object in a sink basin, then put it in/on a receptacle.
    PickCleanThenPlaceInRecep,
    /// Heat an object in a microwave, then put it in/on a receptacle.
    PickHeatThenPlaceInRecep,
    /// Cool an object in a fridge, then put it in/on a receptacle.
    PickCoolThenPlaceInRecep,
    /// Put two objects of one type in/on the same receptacle.
    PickTwoObjAndPlace,
}

impl TaskType {
    /// All six, in ALFWorld's order of the issue.
    pub const ALL: [TaskType; 6] = [
        TaskType::PickAndPlaceSimple,
        TaskType::LookAtObjInLight,
        TaskType::PickCleanThenPlaceInRecep,
        TaskType::PickHeatThenPlaceInRecep,
        TaskType::PickCoolThenPlaceInRecep,
        TaskType::PickTwoObjAndPlace,
    ];

    /// ALFWorld's name, e.g. `pick_two_obj_and_place`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::PickAndPlaceSimple => "pick_and_place_simple",
            TaskType::LookAtObjInLight => "look_at_obj_in_light",
            TaskType::PickCleanThenPlaceInRecep => "pick_clean_then_place_in_recep",
            TaskType::PickHeatThenPlaceInRecep => "pick_heat_then_place_in_recep",
            TaskType::PickCoolThenPlaceInRecep => "pick_cool_then_place_in_recep",
            TaskType::PickTwoObjAndPlace => "pick_two_obj_and_place",
        }
    }

    /// The goal sentence for `object` and `target` (a receptacle type, or the lamp type for
    /// look tasks), in one of ALFWorld's two phrasings per type (`variant` 0 or 1).
    pub fn goal_text(self, object: &str, target: &str, variant: usize) -> String {
        let (o, t) = (object, target);
        let v = variant & 1 == 0;
        match self {
            TaskType::PickAndPlaceSimple if v => format!("put a {o} in {t}."),
            TaskType::PickAndPlaceSimple => format!("put some {o} on {t}."),
            TaskType::LookAtObjInLight if v => format!("look at {o} under the {t}."),
            TaskType::LookAtObjInLight => format!("examine the {o} with the {t}."),
            TaskType::PickCleanThenPlaceInRecep if v => format!("put a clean {o} in {t}."),
            TaskType::PickCleanThenPlaceInRecep => format!("clean some {o} and put it in {t}."),
            TaskType::PickHeatThenPlaceInRecep if v => format!("put a hot {o} in {t}."),
            TaskType::PickHeatThenPlaceInRecep => format!("heat some {o} and put it in {t}."),
            TaskType::PickCoolThenPlaceInRecep if v => format!("put a cool {o} in {t}."),
            TaskType::PickCoolThenPlaceInRecep => format!("cool some {o} and put it in {t}."),
            TaskType::PickTwoObjAndPlace if v => format!("put two {o} in {t}."),
            TaskType::PickTwoObjAndPlace => format!("find two {o} and put them in {t}."),
        }
    }

    /// Reads a goal sentence back (with or without the final period): the task type, the
    /// object type and the receptacle or lamp type.
    pub fn parse_goal(text: &str) -> Option<(TaskType, String, String)> {
        let t = text.trim().trim_end_matches('.').trim();
        // Most specific prefixes first: "put a clean …" before "put a …".
        let patterns: [(&str, &str, TaskType); 12] = [
            ("put a clean ", " in ", TaskType::PickCleanThenPlaceInRecep),
            ("clean some ", " and put it in ", TaskType::PickCleanThenPlaceInRecep),
            ("put a hot ", " in ", TaskType::PickHeatThenPlaceInRecep),
            ("heat some ", " and put it in ", TaskType::PickHeatThenPlaceInRecep),
            ("put a cool ", " in ", TaskType::PickCoolThenPlaceInRecep),
            ("cool some ", " and put it in ", TaskType::PickCoolThenPlaceInRecep),
            ("put two ", " in ", TaskType::PickTwoObjAndPlace),
            ("find two ", " and put them in ", TaskType::PickTwoObjAndPlace),
            ("look at ", " under the ", TaskType::LookAtObjInLight),
            ("examine the ", " with the ", TaskType::LookAtObjInLight),
            ("put a ", " in ", TaskType::PickAndPlaceSimple),
            ("put some ", " on ", TaskType::PickAndPlaceSimple),
        ];
        for (prefix, mid, ty) in patterns {
            if let Some(rest) = t.strip_prefix(prefix) {
                if let Some((o, r)) = rest.split_once(mid) {
                    if !o.is_empty() && !r.is_empty() && !o.contains(' ') && !r.contains(' ') {
                        return Some((ty, o.to_string(), r.to_string()));
                    }
                }
            }
        }
        None
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole task: the room's receptacles with what is in them, and the goal.
///
/// ```json
/// {"receptacles": [{"name": "countertop 1", "contents": ["potato 1"]},
///                  {"name": "fridge 1", "open": false},
///                  {"name": "microwave 1"}],
///  "goal": {"type": "pick_heat_then_place_in_recep", "object": "potato",
///           "receptacle": "countertop"}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneSpec {
    /// Every receptacle of the room, named `<type> <number>` (e.g. `cabinet 3`).
    pub receptacles: Vec<ReceptacleSpec>,
    /// What the agent must achieve.
    pub goal: GoalSpec,
    /// Object states other than the default (dirty, room temperature, off), by object name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub states: BTreeMap<String, ObjectState>,
}

/// One receptacle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceptacleSpec {
    /// `<type> <number>`, e.g. `drawer 2`.
    pub name: String,
    /// Whether it opens and closes; defaults to ALFWorld's rule for its type (fridge, cabinet,
    /// microwave, drawer, safe, box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openable: Option<bool>,
    /// Whether an openable receptacle starts open (default closed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
    /// Objects in or on it, named `<type> <number>`, e.g. `mug 1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<String>,
}

/// An object's starting state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectState {
    /// Already clean.
    #[serde(default)]
    pub clean: bool,
    /// Already hot.
    #[serde(default)]
    pub hot: bool,
    /// Already cool.
    #[serde(default)]
    pub cool: bool,
}

/// The goal of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalSpec {
    /// The task type.
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// The object type to act on, e.g. `potato`.
    pub object: String,
    /// The receptacle type to put it in/on (every type but look_at_obj_in_light).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receptacle: Option<String>,
    /// The lamp type (look_at_obj_in_light only), e.g. `desklamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lamp: Option<String>,
    /// The sentence after "Your task is to: "; defaults to ALFWorld's first phrasing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl GoalSpec {
    /// The receptacle or lamp type the goal names.
    pub fn target(&self) -> &str {
        match self.task_type {
            TaskType::LookAtObjInLight => self.lamp.as_deref().unwrap_or(""),
            _ => self.receptacle.as_deref().unwrap_or(""),
        }
    }

    /// The goal sentence.
    pub fn sentence(&self) -> String {
        match &self.text {
            Some(t) => t.clone(),
            None => self.task_type.goal_text(&self.object, self.target(), 0),
        }
    }
}

impl SceneSpec {
    /// Parses a spec from JSON text, naming what was wrong.
    pub fn from_json(text: &str) -> Result<SceneSpec, EnvError> {
        let spec: SceneSpec = serde_json::from_str(text)
            .map_err(|e| EnvError::BadSpec(format!("household scene spec: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks names, uniqueness and the goal's fields.
    pub fn validate(&self) -> Result<(), EnvError> {
        let bad = |m: String| Err(EnvError::BadSpec(format!("household scene spec: {m}")));
        if self.receptacles.is_empty() {
            return bad("`receptacles` is empty".into());
        }
        let mut seen = HashSet::new();
        for (i, r) in self.receptacles.iter().enumerate() {
            let at = format!("receptacles[{i}] (`{}`)", r.name);
            if let Err(m) = split_name(&r.name) {
                return bad(format!("{at}: name {m}"));
            }
            if !seen.insert(r.name.to_lowercase()) {
                return bad(format!("{at}: the name is used twice"));
            }
            for (j, o) in r.contents.iter().enumerate() {
                if let Err(m) = split_name(o) {
                    return bad(format!("{at}.contents[{j}] (`{o}`): name {m}"));
                }
                if !seen.insert(o.to_lowercase()) {
                    return bad(format!("{at}.contents[{j}]: `{o}` is named twice in the scene"));
                }
            }
        }
        for name in self.states.keys() {
            if !self
                .receptacles
                .iter()
                .flat_map(|r| &r.contents)
                .any(|o| o.eq_ignore_ascii_case(name))
            {
                return bad(format!("states: `{name}` is not an object of the scene"));
            }
        }
        let g = &self.goal;
        if g.object.trim().is_empty() {
            return bad("goal.object is empty".into());
        }
        match g.task_type {
            TaskType::LookAtObjInLight if g.lamp.is_none() => {
                bad("goal.lamp is required for look_at_obj_in_light".into())
            }
            TaskType::LookAtObjInLight => Ok(()),
            _ if g.receptacle.is_none() => {
                bad(format!("goal.receptacle is required for {}", g.task_type))
            }
            _ => Ok(()),
        }
    }
}

/// Splits `<type> <number>` into the type as the rules see it (lowercase, spaces removed:
/// `credit card 2` is a `creditcard`) and the number.
pub(crate) fn split_name(name: &str) -> Result<(String, u32), String> {
    let name = name.trim();
    let (kind, num) = name.rsplit_once(' ').ok_or("must be `<type> <number>`, e.g. `mug 1`")?;
    let num: u32 = num.parse().map_err(|_| "must end with a number, e.g. `mug 1`")?;
    let lower = name.to_lowercase();
    for sep in [" from ", " in/on ", " with "] {
        if lower.contains(sep) {
            return Err(format!("may not contain `{}`", sep.trim()));
        }
    }
    let kind: String =
        kind.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
    if kind.is_empty() {
        return Err("has an empty type".into());
    }
    Ok((kind, num))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goal_texts_round_trip() {
        for ty in TaskType::ALL {
            for v in 0..2 {
                let text = ty.goal_text("mug", "coffeemachine", v);
                assert_eq!(
                    TaskType::parse_goal(&text),
                    Some((ty, "mug".into(), "coffeemachine".into())),
                    "{text}"
                );
            }
        }
        assert_eq!(TaskType::parse_goal("make coffee."), None);
    }

    #[test]
    fn names_split_into_type_and_number() {
        assert_eq!(split_name("credit card 2").unwrap(), ("creditcard".into(), 2));
        assert_eq!(split_name("CD 1").unwrap(), ("cd".into(), 1));
        assert!(split_name("mug").is_err());
        assert!(split_name("mug one").is_err());
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let e = SceneSpec::from_json(r#"{"receptacles": [{"name": "shelf"}], "goal": {"type": "pick_and_place_simple", "object": "mug", "receptacle": "shelf"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("receptacles[0]") && e.contains("<number>"), "{e}");
        let e = SceneSpec::from_json(r#"{"receptacles": [{"name": "shelf 1", "contnets": []}], "goal": {"type": "pick_and_place_simple", "object": "mug", "receptacle": "shelf"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("contnets"), "{e}");
        let e = SceneSpec::from_json(r#"{"receptacles": [{"name": "shelf 1", "contents": ["mug 1"]}, {"name": "desk 1", "contents": ["mug 1"]}], "goal": {"type": "pick_and_place_simple", "object": "mug", "receptacle": "shelf"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("named twice"), "{e}");
        let e = SceneSpec::from_json(r#"{"receptacles": [{"name": "shelf 1"}], "goal": {"type": "look_at_obj_in_light", "object": "mug"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("goal.lamp"), "{e}");
    }
}
