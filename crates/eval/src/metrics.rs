//! The figures of an evaluation, overall and per task type.

use serde::{Deserialize, Serialize};
use stepagent_data::Transcript;
use stepagent_policy::runner::Episode;

use crate::ci::{Mean, Rate};

/// What evaluation needs to know about one episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The split's name.
    pub split: String,
    /// The task type.
    pub task_type: String,
    /// The world's success test held.
    pub won: bool,
    /// The total reward.
    pub reward: f64,
    /// Agent turns.
    pub steps: usize,
    /// Turns whose action the world did not accept.
    pub invalid_actions: usize,
    /// Turns with no parseable action.
    pub format_errors: usize,
}

impl From<&Episode> for Outcome {
    fn from(e: &Episode) -> Self {
        Outcome {
            split: e.task.split.to_string(),
            task_type: e.task_type.clone(),
            won: e.won,
            reward: e.reward,
            steps: e.steps,
            invalid_actions: e.invalid_actions,
            format_errors: e.format_errors,
        }
    }
}

impl From<&Transcript> for Outcome {
    fn from(t: &Transcript) -> Self {
        Outcome {
            split: t.split.clone(),
            task_type: t.task_type.clone(),
            won: t.success,
            reward: t.reward,
            steps: t.steps,
            invalid_actions: t.invalid_actions,
            format_errors: t.format_errors,
        }
    }
}

/// The figures for a set of episodes, each with a 95% confidence interval.
///
/// Success is a rate over episodes (Wilson interval); reward and steps are means over
/// episodes (t interval). The invalid-action and format-error rates are over all steps pooled
/// (Wilson): steps of one episode are not independent, so read those intervals as a lower
/// bound on the true uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Episodes.
    pub episodes: u64,
    /// Episodes whose goal held.
    pub success: Rate,
    /// Total reward per episode.
    pub reward: Mean,
    /// Agent turns per episode.
    pub steps: Mean,
    /// Steps whose action the world did not accept, of all steps.
    pub invalid_action_rate: Rate,
    /// Steps with no parseable action, of all steps.
    pub format_error_rate: Rate,
}

impl Metrics {
    /// The figures for `outcomes`.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Self {
        let all: Vec<&Outcome> = outcomes.into_iter().collect();
        let n = all.len() as u64;
        let wins = all.iter().filter(|o| o.won).count() as u64;
        let steps: u64 = all.iter().map(|o| o.steps as u64).sum();
        let invalid: u64 = all.iter().map(|o| o.invalid_actions as u64).sum();
        let format: u64 = all.iter().map(|o| o.format_errors as u64).sum();
        Metrics {
            episodes: n,
            success: Rate::new(wins, n),
            reward: Mean::of(&all.iter().map(|o| o.reward).collect::<Vec<_>>()),
            steps: Mean::of(&all.iter().map(|o| o.steps as f64).collect::<Vec<_>>()),
            invalid_action_rate: Rate::new(invalid, steps),
            format_error_rate: Rate::new(format, steps),
        }
    }
}
