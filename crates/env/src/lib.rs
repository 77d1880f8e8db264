//! Text worlds for LLM agents.
//!
//! A [`World`] is a benchmark: a name, its ETO-style instruction prompt, its tasks split into
//! `train` / `seen` / `unseen`, and a factory for [`Environment`]s. An [`Environment`] is one
//! running episode: [`Environment::reset`] to a task gives the first observation,
//! [`Environment::step`] takes the text of one action. Worlds are chosen by name through the
//! [`registry`].
//!
//! This crate knows nothing of models or files: it is the seam every other crate builds on.
#![warn(missing_docs)]

mod error;
pub mod household;
pub mod qa;
pub mod registry;
pub mod remote;
pub mod sciworld;
pub mod shop;
mod task;
mod world;

pub use error::EnvError;
pub use task::{Split, TaskId};
pub use world::{Environment, ExpertStep, StepOutcome, World, WorldRef};
