//! Trajectories on disk, in the formats users already have.
//!
//! - ETO / AgentGym SFT JSON ([`SftRecord`]): `[{"id", "conversations": [turns]}]` with turns
//!   as `{"from": "human"|"gpt", "value"}` or `{"role": "user"|"assistant", "content"}`
//!   ([`Shape`]); any other keys of a record (`game_file`, `reward` …) are kept as they are.
//! - ETO / IPR DPO JSON ([`DpoRecord`]): `{"id", "prompt", "chosen", "rejected"}`.
//! - Our JSONL transcripts ([`Transcript`]): one episode a line with its metadata (world, task,
//!   split, reward, success, policy, seed).
//!
//! [`Dataset::load`] tells them apart; [`validate()`] checks a dataset against ETO's layout and
//! names the file, record index, id and turn of every problem; [`stats()`] summarises one.
//!
//! ```
//! use stepagent_data::{Dataset, Shape};
//! let text = r#"[{"id": "a", "conversations": [
//!     {"from": "human", "value": "instruction"}, {"from": "gpt", "value": "OK"},
//!     {"from": "human", "value": "You are in a room.\n\nYour task is to: look."},
//!     {"from": "gpt", "value": "Thought: easy.\nAction: look"}]}]"#;
//! let data = Dataset::parse(text, "inline.json").unwrap();
//! let Dataset::Sft { records, shape } = &data else { panic!() };
//! assert_eq!(*shape, Shape::FromValue);
//! assert_eq!(records[0].conversations.len(), 4);
//! assert!(stepagent_data::validate(&data, "inline.json").is_empty());
//! ```
#![warn(missing_docs)]

mod dataset;
mod error;
mod stats;
mod transcript;
mod turn;
mod validate;

pub use dataset::{Dataset, DpoRecord, SftRecord};
pub use error::{DataError, Location};
pub use stats::{stats, GroupStats, Stats, Summary};
pub use transcript::{Transcript, TranscriptWriter};
pub use turn::{Shape, Speaker, Turn};
pub use validate::{validate, Issue, Severity};
