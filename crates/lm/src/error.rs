use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong in the engine. Variants that come from a file name it.
#[derive(Debug, Error)]
pub enum LmError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A model file is not in the expected format (truncated, foreign, corrupt).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A weight the architecture needs is not in the file(s).
    #[error("{}: missing tensor `{name}` (expected shape {shape:?})", path.display())]
    MissingTensor {
        /// The file or directory.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape the config implies.
        shape: Vec<usize>,
    },
    /// A weight has the wrong shape for the config.
    #[error("{}: tensor `{name}` has shape {found:?}, the config implies {expected:?}", path.display())]
    TensorShape {
        /// The file or directory.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape in the file.
        found: Vec<usize>,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// The model's architecture is not one the engine implements.
    #[error("{}: unknown architecture `{arch}` (supported: llama, qwen2, mistral)", path.display())]
    UnknownArchitecture {
        /// The file.
        path: PathBuf,
        /// The architecture it names.
        arch: String,
    },
    /// A required metadata / config key is missing or has the wrong type.
    #[error("{}: key `{key}`: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// Building or running the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Invalid arguments to an engine call (empty prompt, bad option).
    #[error("{0}")]
    Invalid(String),
    /// Fetching the default model failed.
    #[error("fetching the default model failed: {0}; download it yourself and pass `--model PATH` (a .gguf file or a Hugging Face model directory)")]
    Fetch(String),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, LmError>;

impl LmError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LmError::Io { path: path.into(), source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        LmError::Format { path: path.into(), message: message.into() }
    }

    pub(crate) fn config(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        LmError::Config { path: path.into(), key: key.into(), message: message.into() }
    }
}
