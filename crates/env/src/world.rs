use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{EnvError, Split, TaskId};

/// A benchmark: its tasks, its prompt, and a factory for running episodes.
///
/// Shared across threads (`Arc<dyn World>`); every episode gets its own [`Environment`].
pub trait World: Send + Sync {
    /// The registry name, e.g. `household`.
    fn name(&self) -> &str;

    /// The instruction prompt an ETO-style agent sees as turn 0: what the world is, the
    /// available actions and the "Thought: …\nAction: …" reply format.
    fn instruction(&self) -> &str;

    /// How many tasks a split holds.
    fn num_tasks(&self, split: Split) -> usize;

    /// A short label for per-type reports (ALFWorld's task types, WebShop's categories …).
    fn task_type(&self, task: TaskId) -> Result<String, EnvError>;

    /// Steps after which an episode ends unsolved.
    fn max_steps(&self) -> usize;

    /// A fresh environment; call [`Environment::reset`] before stepping it.
    fn new_env(&self) -> Result<Box<dyn Environment>, EnvError>;

    /// Checks that `task` exists.
    fn check_task(&self, task: TaskId) -> Result<(), EnvError> {
        let len = self.num_tasks(task.split);
        if task.index < len {
            Ok(())
        } else {
            Err(EnvError::NoSuchTask {
                world: self.name().to_string(),
                split: task.split.to_string(),
                task: task.to_string(),
                len,
            })
        }
    }
}

/// A shared handle to a world.
pub type WorldRef = Arc<dyn World>;

/// What one step returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    /// The observation text, without the "Observation: " prefix the agent prompt adds.
    pub observation: String,
    /// Reward of this step in [0, 1]; the worlds here give it only on the final step.
    pub reward: f64,
    /// The episode is over (solved, failed for good, or out of steps).
    pub done: bool,
    /// The task's goal holds (the world's own success test, never "ran out of steps").
    pub won: bool,
    /// The action was understood and changed or inspected the world ("Nothing happens." and
    /// malformed actions are `false`).
    pub valid: bool,
    /// Steps taken so far in this episode, this one included.
    pub steps: usize,
}

/// One turn of a world's expert: the ReAct thought and the action text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpertStep {
    /// The reasoning, without the "Thought: " prefix.
    pub thought: String,
    /// The action, exactly as the world parses it.
    pub action: String,
}

impl ExpertStep {
    /// The assistant turn in ETO's format: `Thought: …\nAction: …`.
    pub fn to_turn(&self) -> String {
        format!("Thought: {}\nAction: {}", self.thought, self.action)
    }
}

/// One running episode of a world.
///
/// Deterministic: the same task and seed followed by the same actions give the same
/// observations.
pub trait Environment: Send {
    /// Starts `task` afresh and returns its first observation (the scene and
    /// "Your task is to: …").
    fn reset(&mut self, task: TaskId, seed: u64) -> Result<String, EnvError>;

    /// Takes the text of one action. Anything unparseable or impossible is answered by an
    /// observation and still counts as a step.
    fn step(&mut self, action: &str) -> Result<StepOutcome, EnvError>;

    /// The actions the world would accept now (ALFWorld's admissible commands, WebShop's
    /// clickables). Computed on demand: most agents never ask.
    fn admissible_actions(&self) -> Vec<String>;

    /// The expert's next turn from the current state, or `None` once the episode is over or
    /// if the world has no expert.
    fn expert_step(&self) -> Option<ExpertStep>;

    /// Steps taken since the last reset.
    fn steps(&self) -> usize;
}
