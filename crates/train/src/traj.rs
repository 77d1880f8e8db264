//! Expert trajectories as the algorithms see them: a conversation in ETO's layout plus, when
//! known, the world, task and seed that replay it.

use serde::{Deserialize, Serialize};
use stepagent_env::{TaskId, World};
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

    #[test]
    fn normalisation() {
        assert_eq!(normalise_action("  Go to  Desk 1. "), "go to desk 1");
        assert_eq!(normalise_turn("Thought: a\nAction:  b<|im_end|>"), "thought: a action: b");
    }
}
