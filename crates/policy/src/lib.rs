//! The policy seam: a policy reads the conversation so far and writes one assistant turn.
//!
//! Policies are shared between the runner's threads (`&self`, `Sync`): a language model is
//! loaded once and serves every episode. Randomness comes from [`ActContext::seed`], which the
//! runner derives from the episode seed and step, so results do not depend on thread timing.
//!
//! Also here: ETO-style prompting and action parsing ([`react`]), the episode runner
//! ([`runner`]), and the policies that need no model ([`policies`]).
//!
//! ```
//! use stepagent_env::{Split, TaskId};
//! use stepagent_policy::policies::ExpertPolicy;
//! use stepagent_policy::runner::{RunConfig, Runner};
//! use stepagent_policy::toy::LineWorld;
//!
//! let world = LineWorld::default();
//! let runner = Runner::new(&world, &ExpertPolicy, RunConfig::default());
//! let tasks: Vec<TaskId> = (0..4).map(|i| TaskId::new(Split::Seen, i)).collect();
//! let episodes = runner.run(&tasks, &mut |_| Ok(())).unwrap();
//! assert!(episodes.iter().all(|e| e.won));
//! ```
#![warn(missing_docs)]

mod message;
pub mod policies;
pub mod react;
pub mod runner;
pub mod toy;

pub use message::{Message, Role};

use stepagent_env::{Environment, TaskId};
use thiserror::Error;

/// What a policy sees when it acts.
pub struct ActContext<'a> {
    /// The conversation so far, ending with a user turn (the latest observation).
    pub conversation: &'a [Message],
    /// The running episode, for policies that may look at the world (the expert, random).
    pub env: &'a dyn Environment,
    /// The task being played.
    pub task: TaskId,
    /// A seed for this one act: the same episode seed and step give the same seed.
    pub seed: u64,
}

/// Something that acts in a world.
pub trait Policy: Send + Sync {
    /// A short name for reports and transcripts, e.g. `expert`, `random`, `lm:SmolLM2-135M`.
    fn name(&self) -> String;

    /// One assistant turn, normally `Thought: …\nAction: …`.
    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError>;

    /// How many episodes' turns this policy would rather compute together. Above one, the
    /// runner plays that many episodes in lockstep and asks for their turns with
    /// [`Policy::act_batch`] (a language model decodes them as one batch, reading its weights
    /// once per token for all). Default 1: episodes on parallel threads, one `act` each.
    fn batch_width(&self) -> usize {
        1
    }

    /// One turn for each context, in order. Default: [`Policy::act`] on each.
    fn act_batch(&self, ctxs: &[ActContext<'_>]) -> Vec<Result<String, PolicyError>> {
        ctxs.iter().map(|c| self.act(c)).collect()
    }
}

/// A policy could not produce a turn (distinct from a turn the world cannot parse, which is
/// the agent's mistake and is answered by an observation).
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The policy has nothing to say here (an expert with no plan, a replay past its end).
    #[error("{policy}: no action for task {task}: {reason}")]
    NoAction {
        /// The policy's name.
        policy: String,
        /// The task.
        task: TaskId,
        /// Why.
        reason: String,
    },
    /// The backend (a model, an HTTP endpoint) failed.
    #[error("{policy}: {message}")]
    Backend {
        /// The policy's name.
        policy: String,
        /// What failed.
        message: String,
    },
}
