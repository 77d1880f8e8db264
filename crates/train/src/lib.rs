//! Training: the algorithms and the run directory they write into.
//!
//! - [`sft`]: behaviour cloning, masked multi-turn NLL over expert trajectories.
//! - [`inspect`]: the policy acts on every expert prefix; step triples with provenance.
//! - [`dpo`]: StepAgent-Implicit reflection, step-level DPO over those triples.
//! - [`disc`]: StepAgent-Inverse's discriminator D_φ(h, a) (scalar head on an LM backbone),
//!   trained by BCE on expert vs agent steps; its step reward log D (or a variant).
//! - [`ppo`]: PPO for LLM agents (clipped ratio, KL to a frozen reference, GAE with a value
//!   head or a group baseline), over sampled assistant turns.
//! - [`health`]: training-health alarms (length blow-up, invalid actions rising, KL
//!   exploding, non-finite loss) that warn or stop.
//! - [`baselines`]: the peers' pair construction and losses, ETO (trajectory-level DPO) and
//!   IPR (step pairs filtered by Monte-Carlo step rewards, DPO + NLL).
//! - [`methods`]: StepAgent-Inverse and the baselines (PPO on the outcome, ETO, RFT, IPR) as
//!   cycles after the shared SFT stage, with their configs and health alarms.
//! - [`compare`]: several methods on one SFT checkpoint per world, into one table.
//! - [`agreement`]: the expert-agreement curve (greedy action == expert action, expert
//!   log-prob) on held-out expert prefixes.
//! - [`pipeline`]: SFT then K cycles of inspection → reflection → evaluation, written into a
//!   resumable run directory ([`run::RunDir`]), configured by [`config::TrainConfig`].
//! - [`report`]: the run's `report.md` and SVG plots, from its summary and metrics.
//!
//! Every run lives in `runs/<name>/` ([`run::RunDir`]): the resolved config, `metrics.jsonl`,
//! one folder per finished stage, and logs of finished units of work inside a stage. A stage
//! whose output exists is skipped and a unit already logged is not redone, so rerunning a
//! killed command continues it.
#![warn(missing_docs)]

pub mod agreement;
pub mod baselines;
pub mod compare;
pub mod config;
pub mod disc;
pub mod dpo;
mod epochs;
mod error;
pub mod health;
pub mod inspect;
pub mod methods;
pub mod model;
pub mod optim;
pub mod pipeline;
pub mod ppo;
pub mod report;
pub mod run;
pub mod sft;
pub mod traj;

pub use error::TrainError;
