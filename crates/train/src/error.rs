use std::path::PathBuf;

use thiserror::Error;

use crate::run::RunError;

/// Failures of training.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The model engine failed.
    #[error(transparent)]
    Lm(#[from] stepagent_lm::LmError),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The run directory failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A world failed.
    #[error(transparent)]
    Env(#[from] stepagent_env::EnvError),
    /// Running episodes failed.
    #[error(transparent)]
    Episodes(#[from] stepagent_policy::runner::RunError),
    /// An evaluation failed (its episodes, or writing its transcripts and report).
    #[error(transparent)]
    Eval(#[from] stepagent_eval::EvalError),
    /// An expert trajectory is not usable; names the trajectory and turn.
    #[error("trajectory {id}{}: {message}", turn.map(|t| format!(", turn {t}")).unwrap_or_default())]
    Trajectory {
        /// The trajectory's id (or index).
        id: String,
        /// The turn, when one turn is at fault.
        turn: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A configuration value is not acceptable; names the key.
    #[error("config key `{key}`: {message}")]
    Config {
        /// The dotted key.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl TrainError {
    pub(crate) fn config(key: &str, message: impl Into<String>) -> Self {
        TrainError::Config { key: key.to_string(), message: message.into() }
    }

    /// The same error with a `Config` key's leading `from` replaced by `to` (a nested
    /// section validated by its own code, which names keys from its own root).
    pub(crate) fn rekey(self, from: &str, to: &str) -> Self {
        match self {
            TrainError::Config { key, message } => {
                let key = match key.strip_prefix(from) {
                    Some(rest) => format!("{to}{rest}"),
                    None => format!("{to}{key}"),
                };
                TrainError::Config { key, message }
            }
            other => other,
        }
    }

    pub(crate) fn file(path: &std::path::Path, message: impl ToString) -> Self {
        TrainError::File { path: path.to_path_buf(), message: message.to_string() }
    }
}
