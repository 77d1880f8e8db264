//! The run directory: resolved config, metrics, stages and units of work, all written so that
//! a run killed at any moment (even `kill -9`) continues where it stopped when rerun.
//!
//! Layout of `runs/<name>/`:
//! - `config.toml`: the resolved config, written once; a rerun with a different config is
//!   refused (naming the first key that differs) unless forced.
//! - `metrics.jsonl`: one JSON object per line, appended ([`MetricsLog`]).
//! - `stages/<stage>/`: a finished stage's outputs. A stage is built in
//!   `stages/<stage>.partial/` and renamed into place when complete, so a stage folder that
//!   exists is whole ([`RunDir::stage`]).
//! - `stages/<stage>.partial/units.jsonl`: finished units of work of an unfinished stage
//!   (an epoch chunk, one trajectory's inspection) ([`UnitLog`]).

mod atomic;
mod config;
mod jsonl;

pub use atomic::write_atomic;
pub use config::first_difference;
pub use jsonl::{MetricsLog, UnitLog};

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

/// Failures of the run directory.
#[derive(Debug, Error)]
pub enum RunError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The run exists with another config.
    #[error(
        "run {dir} was started with another config: `{key}` was {old} and is now {new}; \
         rerun with --force to continue anyway, or choose a new run name"
    )]
    ConfigChanged {
        /// The run directory.
        dir: PathBuf,
        /// The dotted path of the first differing key.
        key: String,
        /// Its value in the stored config.
        old: String,
        /// Its value in the new config.
        new: String,
    },
    /// A stored file does not parse.
    #[error("{path}, line {line}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 for whole-file errors).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value could not be serialised.
    #[error("cannot serialise {what}: {message}")]
    Serialise {
        /// What was being written.
        what: String,
        /// The serializer's message.
        message: String,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { op, path, source }
}

/// A run directory, opened for writing.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens (creating if needed) the run at `dir` for `config`.
    ///
    /// The first time, the resolved config is stored as `config.toml`. Later, the stored
    /// config must equal `config` unless `force` is set (then the new one replaces it and a
    /// warning is logged).
    pub fn open<C: Serialize>(dir: &Path, config: &C, force: bool) -> Result<Self, RunError> {
        fs::create_dir_all(dir.join("stages")).map_err(io_err("create", dir))?;
        let text = toml::to_string_pretty(config).map_err(|e| RunError::Serialise {
            what: "the run config".into(),
            message: e.to_string(),
        })?;
        let path = dir.join("config.toml");
        match fs::read_to_string(&path) {
            Ok(stored) => {
                let old: toml::Value = toml::from_str(&stored).map_err(|e| RunError::Corrupt {
                    path: path.clone(),
                    line: 0,
                    message: e.to_string(),
                })?;
                let new: toml::Value = toml::from_str(&text).expect("just serialised");
                if let Some((key, old_v, new_v)) = first_difference(&old, &new) {
                    if !force {
                        return Err(RunError::ConfigChanged {
                            dir: dir.to_path_buf(),
                            key,
                            old: old_v,
                            new: new_v,
                        });
                    }
                    tracing::warn!(%key, "config changed on resume; continuing because forced");
                    write_atomic(&path, text.as_bytes())?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&path, text.as_bytes())?;
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        }
        Ok(RunDir { root: dir.to_path_buf() })
    }

    /// The run's root folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The metrics log of this run.
    pub fn metrics(&self) -> Result<MetricsLog, RunError> {
        MetricsLog::open(&self.root.join("metrics.jsonl"))
    }

    /// The folder of a finished stage, if it finished.
    pub fn finished_stage(&self, name: &str) -> Option<PathBuf> {
        let dir = self.root.join("stages").join(name);
        dir.is_dir().then_some(dir)
    }

    /// Runs stage `name` unless it already finished, and returns its folder.
    ///
    /// `build` writes the stage's outputs into the folder it is given (the `.partial`
    /// folder, which survives a crash together with its [`UnitLog`]s); when it returns `Ok`
    /// the folder is renamed into place. A stage that finished before is not run again.
    pub fn stage<E>(
        &self,
        name: &str,
        build: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, E>
    where
        E: From<RunError>,
    {
        if let Some(done) = self.finished_stage(name) {
            tracing::info!(stage = name, "already finished; skipping");
            return Ok(done);
        }
        let stages = self.root.join("stages");
        let partial = stages.join(format!("{name}.partial"));
        fs::create_dir_all(&partial).map_err(io_err("create", &partial))?;
        build(&partial)?;
        let done = stages.join(name);
        fs::rename(&partial, &done).map_err(io_err("finish stage", &done))?;
        atomic::sync_dir(&stages)?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Cfg {
        lr: f64,
        model: Model,
    }
    #[derive(Serialize)]
    struct Model {
        name: String,
    }

    fn cfg(lr: f64, name: &str) -> Cfg {
        Cfg { lr, model: Model { name: name.into() } }
    }

    #[test]
    fn changed_config_is_refused_naming_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        RunDir::open(&dir, &cfg(1e-4, "smol"), false).unwrap();
        RunDir::open(&dir, &cfg(1e-4, "smol"), false).unwrap();
        let err = RunDir::open(&dir, &cfg(1e-4, "qwen"), false).unwrap_err().to_string();
        assert!(err.contains("`model.name` was \"smol\" and is now \"qwen\""), "{err}");
        RunDir::open(&dir, &cfg(1e-4, "qwen"), true).unwrap();
        RunDir::open(&dir, &cfg(1e-4, "qwen"), false).unwrap();
    }

    #[test]
    fn a_finished_stage_is_not_rerun_and_a_failed_one_is() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::open(tmp.path(), &cfg(1.0, "m"), false).unwrap();
        let failed: Result<_, RunError> = run.stage("sft", |dir| {
            fs::write(dir.join("half"), b"x").unwrap();
            Err(RunError::Corrupt { path: dir.into(), line: 0, message: "killed".into() })
        });
        assert!(failed.is_err());
        assert!(run.finished_stage("sft").is_none());
        let mut calls = 0;
        for _ in 0..2 {
            let out = run
                .stage::<RunError>("sft", |dir| {
                    calls += 1;
                    // The partial folder survives a failure, with what it had.
                    assert!(dir.join("half").exists());
                    fs::write(dir.join("model"), b"w").map_err(io_err("write", dir))
                })
                .unwrap();
            assert!(out.join("model").exists());
        }
        assert_eq!(calls, 1);
    }
}
