use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Where in a dataset something is: the file, and as far as known the record (its index and
/// id), the line (JSONL) and the turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file, as given.
    pub file: String,
    /// The record's index in the file, from 0.
    pub record: Option<usize>,
    /// The record's id.
    pub id: Option<String>,
    /// The line, from 1 (JSONL files).
    pub line: Option<usize>,
    /// The turn's index within the conversation, from 0, and which list it is in when a
    /// record has several (DPO's prompt / chosen / rejected).
    pub turn: Option<(Option<&'static str>, usize)>,
}

impl Location {
    /// The whole file.
    pub fn file(file: impl Into<String>) -> Self {
        Location { file: file.into(), ..Location::default() }
    }

    /// A record of the file.
    pub fn record(&self, index: usize, id: Option<&str>) -> Self {
        Location { record: Some(index), id: id.map(str::to_string), ..self.clone() }
    }

    /// A line of the file.
    pub fn line(&self, line: usize) -> Self {
        Location { line: Some(line), ..self.clone() }
    }

    /// A turn of this record.
    pub fn turn(&self, list: Option<&'static str>, index: usize) -> Self {
        Location { turn: Some((list, index)), ..self.clone() }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(r) = self.record {
            write!(f, ": record {r}")?;
            if let Some(id) = &self.id {
                write!(f, " (id {id})")?;
            }
        }
        match self.turn {
            Some((Some(list), t)) => write!(f, ", {list} turn {t}"),
            Some((None, t)) => write!(f, ", turn {t}"),
            None => Ok(()),
        }
    }
}

/// A dataset could not be read or written.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("{at}: not valid JSON: {message}")]
    Json {
        /// Where (boxed: errors stay small on the happy path).
        at: Box<Location>,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The JSON does not have the expected shape.
    #[error("{at}: {message}")]
    Shape {
        /// Where (boxed: errors stay small on the happy path).
        at: Box<Location>,
        /// What was expected and what was found.
        message: String,
    },
}
