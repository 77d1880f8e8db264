//! Evaluation: run a policy on a world's held-out tasks and report what happened.
//!
//! [`evaluate`] runs the episodes (through the one runner in `stepagent-policy`), streams
//! transcripts to `transcripts.jsonl`, and writes `report.json` and `report.md`: success
//! rate, mean reward, mean steps, invalid-action and format-error rates, per split and task
//! type, each with a 95% confidence interval ([`ci`]). [`compare_markdown`] sets two reports
//! side by side; [`versus_markdown`] tables several policies' success (the expert-vs-random
//! summary).
//!
//! ```
//! use stepagent_eval::{evaluate, EvalConfig};
//! use stepagent_policy::{policies::ExpertPolicy, toy::LineWorld};
//!
//! let world = LineWorld::default();
//! let cfg = EvalConfig { n: Some(10), ..EvalConfig::default() };
//! let report = evaluate(&world, &ExpertPolicy, &cfg, None, &mut |_| {}).unwrap();
//! assert_eq!(report.split("unseen").unwrap().overall.success.rate, 1.0);
//! ```
#![warn(missing_docs)]

pub mod ci;
mod convert;
mod metrics;
mod report;
mod spec;
mod suite;

use std::path::PathBuf;

pub use convert::{message_of, sft_record_of, transcript_of, turn_of};
pub use metrics::{Metrics, Outcome};
pub use report::{compare_markdown, pct, rate_difference, versus_markdown, Report, SplitReport};
pub use spec::{replay_from_file, PolicySpec};
pub use suite::{
    evaluate, evaluate_with_examples, examples_from_file, load_report, EvalConfig, OutputFiles,
};

/// What stopped an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Running the episodes failed.
    #[error(transparent)]
    Run(#[from] stepagent_policy::runner::RunError),
    /// Reading or writing a dataset failed.
    #[error(transparent)]
    Data(#[from] stepagent_data::DataError),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `report.json` did not parse.
    #[error("{path}: not an evaluation report: {message}")]
    BadReport {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A recording could not be used for replay or as in-context examples.
    #[error("{file}: record {record} (id {id}): {message}")]
    BadReplay {
        /// The file.
        file: String,
        /// The record's index.
        record: usize,
        /// The record's id.
        id: String,
        /// What was wrong.
        message: String,
    },
}
