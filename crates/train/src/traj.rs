//! Expert trajectories as the algorithms see them: a conversation in ETO's layout plus, when
//! known, the world, task and seed that replay it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use stepagent_data::Dataset;
use stepagent_env::{TaskId, World};
use stepagent_eval::message_of;
use stepagent_policy::policies::ExpertPolicy;
use stepagent_policy::runner::{RunConfig, Runner};
use stepagent_policy::{react, Message, Role};

use crate::TrainError;

/// Where a trajectory came from, when it can be replayed in a world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The world's registry name.
    pub world: String,
    /// The task.
    pub task: TaskId,
    /// The episode seed passed to `reset`.
    pub seed: u64,
}

/// One expert trajectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trajectory {
    /// A unique id (ETO's record id, or `world/split/index`).
    pub id: String,
    /// Instruction, `OK`, [examples], first observation, then action / observation turns,
    /// ending with an action.
    pub conversation: Vec<Message>,
    /// Turns before the first observation.
    pub prompt_turns: usize,
    /// The world episode it replays, when known.
    pub origin: Option<Origin>,
}

impl Trajectory {
    /// Checks the layout and returns the trajectory: roles alternate from the first
    /// observation on, it ends with an assistant turn, and every step turn has an action.
    pub fn checked(self) -> Result<Self, TrainError> {
        let bad = |turn: Option<usize>, message: String| TrainError::Trajectory {
            id: self.id.clone(),
            turn,
            message,
        };
        let n = self.conversation.len();
        if n <= self.prompt_turns + 1 {
            return Err(bad(None, format!("{n} turns: no step after the first observation")));
        }
        for (i, m) in self.conversation.iter().enumerate().skip(self.prompt_turns) {
            let want = if (i - self.prompt_turns).is_multiple_of(2) {
                Role::User
            } else {
                Role::Assistant
            };
            if m.role != want {
                return Err(bad(Some(i), format!("expected a {want:?} turn, found {:?}", m.role)));
            }
            if m.role == Role::Assistant && react::parse_action(&m.content).is_none() {
                return Err(bad(Some(i), "an expert turn without an `Action:` line".into()));
            }
        }
        if self.conversation[n - 1].role != Role::Assistant {
            return Err(bad(Some(n - 1), "a trajectory must end with an assistant turn".into()));
        }
        Ok(self)
    }

    /// Message indices of the step turns (the expert's actions after the first observation).
    pub fn step_turns(&self) -> Vec<usize> {
        (self.prompt_turns..self.conversation.len())
            .filter(|&i| self.conversation[i].role == Role::Assistant)
            .collect()
    }

    /// The expert action of each step turn.
    pub fn expert_actions(&self) -> Vec<String> {
        self.step_turns()
            .iter()
            .map(|&i| react::parse_action(&self.conversation[i].content).unwrap_or_default())
            .collect()
    }
}

/// Expert trajectories of `world` on `tasks`, played by its own expert (episodes it does not
/// win are left out: they are no demonstration).
pub fn from_world_expert(
    world: &dyn World,
    tasks: &[TaskId],
    seed: u64,
    workers: usize,
) -> Result<Vec<Trajectory>, TrainError> {
    let cfg = RunConfig { workers, seed, ..RunConfig::default() };
    let runner = Runner::new(world, &ExpertPolicy, cfg);
    let episodes = runner.run(tasks, &mut |_| Ok(()))?;
    let mut out = Vec::with_capacity(episodes.len());
    for e in episodes {
        if !e.won {
            tracing::warn!(task = %e.task, "the expert did not solve this task; left out");
            continue;
        }
        let mut conversation = e.conversation;
        // The runner records the observation that answered the last action; a
        // demonstration ends with the action.
        while conversation.last().is_some_and(|m| m.role != Role::Assistant) {
            conversation.pop();
        }
        let t = Trajectory {
            id: format!("{}/{}", e.world, e.task),
            conversation,
            prompt_turns: e.prompt_turns,
            origin: Some(Origin { world: e.world.clone(), task: e.task, seed: e.seed }),
        };
        out.push(t.checked()?);
    }
    Ok(out)
}

/// What to do with a record of an expert file that is not a usable trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BadRecords {
    /// Stop with an error naming the file, the record and the turn (default).
    #[default]
    Reject,
    /// Leave the record out and count it.
    Skip,
}

/// Expert trajectories from a file users have: ETO / AgentGym SFT JSON (either shape; a record
/// carrying `task` and `world` keys, as `stepagent env expert` writes them, replays in its
/// world) or our JSONL transcripts (the successful episodes). The first `limit` usable
/// records, and how many were skipped.
pub fn from_file(
    path: &Path,
    limit: usize,
    bad: BadRecords,
) -> Result<(Vec<Trajectory>, usize), TrainError> {
    let data = Dataset::load(path).map_err(|e| TrainError::file(path, e))?;
    let records: Vec<(String, Vec<Message>, usize, Option<Origin>)> = match data {
        Dataset::Sft { records, .. } => records
            .into_iter()
            .map(|r| {
                let origin = origin_of(
                    r.extra.get("world").and_then(|v| v.as_str()),
                    r.extra.get("task").and_then(|v| v.as_str()),
                    r.extra.get("seed").and_then(|v| v.as_u64()),
                );
                (r.id, r.conversations.iter().map(message_of).collect(), 2, origin)
            })
            .collect(),
        Dataset::Transcripts(ts) => ts
            .into_iter()
            .filter(|t| t.success)
            .map(|t| {
                let origin = origin_of(Some(&t.world), Some(&t.task), Some(t.seed));
                let conv = t.conversations.iter().map(message_of).collect();
                (t.id, conv, t.prompt_turns, origin)
            })
            .collect(),
        Dataset::Dpo { .. } => {
            return Err(TrainError::file(
                path,
                "holds preference pairs (prompt/chosen/rejected); expert trajectories are SFT \
                 JSON or JSONL transcripts",
            ))
        }
    };
    let (mut out, mut skipped) = (Vec::new(), 0);
    for (index, (id, mut conversation, prompt_turns, origin)) in records.into_iter().enumerate() {
        if out.len() == limit {
            break;
        }
        // A transcript ends with the observation that answered the last action.
        while conversation.last().is_some_and(|m| m.role != Role::Assistant) {
            conversation.pop();
        }
        match (Trajectory { id: id.clone(), conversation, prompt_turns, origin }).checked() {
            Ok(t) => out.push(t),
            Err(_) if bad == BadRecords::Skip => skipped += 1,
            Err(e) => return Err(TrainError::file(path, format!("record {index}: {e}"))),
        }
    }
    Ok((out, skipped))
}

fn origin_of(world: Option<&str>, task: Option<&str>, seed: Option<u64>) -> Option<Origin> {
    Some(Origin { world: world?.to_string(), task: task?.parse().ok()?, seed: seed.unwrap_or(0) })
}

/// Normalises an action for comparison: lower case, single spaces, no trailing period.
pub fn normalise_action(action: &str) -> String {
    let s = action.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    s.trim_end_matches('.').trim().to_string()
}

/// Whole-turn normalisation (thought and action): end-of-turn tokens dropped, whitespace
/// collapsed, lower case.
pub fn normalise_turn(turn: &str) -> String {
    react::clean_reply(turn).split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepagent_env::Split;
    use stepagent_policy::toy::LineWorld;

    #[test]
    fn world_expert_trajectories_are_well_formed() {
        let w = LineWorld::default();
        let tasks: Vec<TaskId> = (0..3).map(|i| TaskId::new(Split::Train, i)).collect();
        let t = from_world_expert(&w, &tasks, 7, 1).unwrap();
        assert_eq!(t.len(), 3);
        // Task 0 has its goal at cell 1: right, stop.
        assert_eq!(t[0].expert_actions(), ["move right", "stop"]);
        assert_eq!(t[0].step_turns(), [3, 5]);
        assert_eq!(t[0].origin.as_ref().unwrap().task, tasks[0]);
    }

    #[test]
    fn a_broken_trajectory_names_its_turn() {
        let t = Trajectory {
            id: "x".into(),
            conversation: vec![
                Message::user("i"),
                Message::assistant("OK"),
                Message::user("o"),
                Message::assistant("Thought: no action here"),
            ],
            prompt_turns: 2,
            origin: None,
        };
        let err = t.checked().unwrap_err().to_string();
        assert!(err.contains("trajectory x, turn 3"), "{err}");
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("stepagent-traj-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = r#"{"id": "alfworld_1", "conversations": [
        {"from": "human", "value": "Interact with a household."}, {"from": "gpt", "value": "OK"},
        {"from": "human", "value": "You are in a room. Your task is to: put a mug in sink."},
        {"from": "gpt", "value": "Thought: find it.\nAction: go to sink 1"}]}"#;
    const BROKEN: &str = r#"{"id": "alfworld_2", "conversations": [
        {"from": "human", "value": "Interact with a household."}, {"from": "gpt", "value": "OK"},
        {"from": "human", "value": "You are in a room."},
        {"from": "gpt", "value": "Thought: I forgot the action line."}]}"#;

    #[test]
    fn an_expert_file_with_a_broken_record_is_rejected_by_record_and_turn_or_skipped() {
        let path = write("broken.json", &format!("[{GOOD}, {BROKEN}, {GOOD}]"));
        let err = from_file(&path, 10, BadRecords::Reject).unwrap_err().to_string();
        assert!(
            err.contains("broken.json")
                && err.contains("record 1")
                && err.contains("alfworld_2")
                && err.contains("turn 3"),
            "{err}"
        );
        let (ok, skipped) = from_file(&path, 10, BadRecords::Skip).unwrap();
        assert_eq!((ok.len(), skipped), (2, 1));
        assert_eq!(ok[0].expert_actions(), ["go to sink 1"]);
        assert!(ok[0].origin.is_none());
        // `limit` counts usable records.
        assert_eq!(from_file(&path, 1, BadRecords::Skip).unwrap().0.len(), 1);
    }

    #[test]
    fn the_real_eto_sample_loads_as_trajectories() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/alfworld-eto-sample.json");
        let (t, skipped) = from_file(&path, usize::MAX, BadRecords::Reject).unwrap();
        assert_eq!((t.len(), skipped), (33, 0));
        assert!(t.iter().all(|t| !t.step_turns().is_empty()));
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise_action("  Go to  Desk 1. "), "go to desk 1");
        assert_eq!(normalise_turn("Thought: a\nAction:  b<|im_end|>"), "thought: a action: b");
    }
}
