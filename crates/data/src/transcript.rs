use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{DataError, Location, Turn};

/// One episode as a JSONL line: the conversation and what is known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// `world/split/index`, unique within a run.
    pub id: String,
    /// The world's registry name.
    pub world: String,
    /// The task, `split/index`.
    pub task: String,
    /// The split.
    pub split: String,
    /// The world's label for the task's type.
    pub task_type: String,
    /// The policy's name.
    pub policy: String,
    /// The episode seed.
    pub seed: u64,
    /// The total reward.
    pub reward: f64,
    /// The world's success test held.
    pub success: bool,
    /// Agent turns taken.
    pub steps: usize,
    /// Turns whose action the world did not accept.
    #[serde(default)]
    pub invalid_actions: usize,
    /// Turns with no parseable action.
    #[serde(default)]
    pub format_errors: usize,
    /// Turns before the first observation (instruction, "OK", in-context examples).
    #[serde(default = "default_prompt_turns")]
    pub prompt_turns: usize,
    /// Why the episode ended: `done` or `max_steps`.
    #[serde(default)]
    pub end: String,
    /// The conversation, the last observation included.
    pub conversations: Vec<Turn>,
}

fn default_prompt_turns() -> usize {
    2
}

impl Transcript {
    /// One JSONL line, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("transcripts always serialise")
    }
}

pub(crate) fn parse_jsonl(text: &str, file: &str) -> Result<Vec<Transcript>, DataError> {
    let at = Location::file(file);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let here = at.line(i + 1).record(out.len(), None);
        let t: Transcript = serde_json::from_str(line).map_err(|e| {
            let message = format!("not a transcript: {e}");
            if e.is_data() {
                DataError::Shape { at: Box::new(here.clone()), message }
            } else {
                DataError::Json { at: Box::new(here.clone()), message: e.to_string() }
            }
        })?;
        out.push(t);
    }
    Ok(out)
}

/// Appends transcripts to a JSONL file one line at a time, flushing each, so a killed run
/// keeps every episode it finished.
pub struct TranscriptWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl TranscriptWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref().to_path_buf();
        let file =
            File::create(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
        Ok(TranscriptWriter { path, out: BufWriter::new(file) })
    }

    /// Writes one transcript and flushes it.
    pub fn write(&mut self, t: &Transcript) -> Result<(), DataError> {
        let io = |source| DataError::Io { path: self.path.clone(), source };
        writeln!(self.out, "{}", t.to_line()).map_err(io)?;
        self.out.flush().map_err(io)
    }
}
