//! Training: the algorithms and the run directory they write into.
//!
//! Every run lives in `runs/<name>/` ([`run::RunDir`]): the resolved config, `metrics.jsonl`,
//! one folder per finished stage, and logs of finished units of work inside a stage. A stage
//! whose output exists is skipped and a unit already logged is not redone, so rerunning a
//! killed command continues it.
#![warn(missing_docs)]

pub mod run;
