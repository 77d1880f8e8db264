//! `--policy` specs: which policy a command line names.

use std::path::{Path, PathBuf};

use stepagent_data::Dataset;
use stepagent_env::TaskId;
use stepagent_policy::policies::ReplayPolicy;

use crate::convert::message_of;
use crate::EvalError;

/// A policy as named on the command line. Building the model-backed ones is the binary's
/// business (it links the LM engine); this only tells them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySpec {
    /// `expert`: the world's own expert.
    Expert,
    /// `random`: a random admissible action.
    Random,
    /// `default`: the project's default language model.
    DefaultModel,
    /// An `http://…` URL: an OpenAI-compatible chat-completions endpoint.
    Remote(String),
    /// A `.json` / `.jsonl` file of recorded episodes to replay.
    Replay(PathBuf),
    /// Any other path: a model (a checkpoint directory or weights file).
    Model(PathBuf),
}

impl PolicySpec {
    /// Reads a spec: `expert`, `random`, `default`, a URL, a recording, or a model path.
    pub fn parse(spec: &str) -> Self {
        let lower = spec.to_ascii_lowercase();
        match lower.as_str() {
            "expert" => PolicySpec::Expert,
            "random" => PolicySpec::Random,
            "default" => PolicySpec::DefaultModel,
            _ if lower.starts_with("http://") || lower.starts_with("https://") => {
                PolicySpec::Remote(spec.to_string())
            }
            _ if lower.ends_with(".json") || lower.ends_with(".jsonl") => {
                PolicySpec::Replay(spec.into())
            }
            _ => PolicySpec::Model(spec.into()),
        }
    }
}

/// A replay policy from a file of recorded episodes: JSONL transcripts (their `task`), or SFT
/// JSON whose records carry a `task` key (as `stepagent env expert` writes them).
pub fn replay_from_file(path: &Path) -> Result<ReplayPolicy, EvalError> {
    let data = Dataset::load(path)?;
    let file = path.display().to_string();
    let name = format!("replay:{}", path.file_stem().and_then(|s| s.to_str()).unwrap_or("file"));
    let mut policy = ReplayPolicy::new(name);
    let bad = |i: usize, id: &str, message: String| EvalError::BadReplay {
        file: file.clone(),
        record: i,
        id: id.to_string(),
        message,
    };
    match &data {
        Dataset::Transcripts(ts) => {
            for (i, t) in ts.iter().enumerate() {
                let task: TaskId =
                    t.task.parse().map_err(|e| bad(i, &t.id, format!("bad `task`: {e}")))?;
                let conv: Vec<_> = t.conversations.iter().map(message_of).collect();
                // Transcripts may carry in-context examples before the first observation.
                let skip = t.prompt_turns.saturating_sub(2);
                let mut trimmed = conv[..2.min(conv.len())].to_vec();
                trimmed.extend(conv.iter().skip(2 + skip).cloned());
                policy.insert_conversation(task, &trimmed);
            }
        }
        Dataset::Sft { records, .. } => {
            for (i, r) in records.iter().enumerate() {
                let task = r.extra.get("task").and_then(|v| v.as_str()).ok_or_else(|| {
                    bad(
                        i,
                        &r.id,
                        "no `task` key (`split/index`) to say which task it replays".into(),
                    )
                })?;
                let task: TaskId =
                    task.parse().map_err(|e| bad(i, &r.id, format!("bad `task`: {e}")))?;
                let conv: Vec<_> = r.conversations.iter().map(message_of).collect();
                policy.insert_conversation(task, &conv);
            }
        }
        Dataset::Dpo { .. } => {
            return Err(EvalError::BadReplay {
                file,
                record: 0,
                id: String::new(),
                message: "DPO pairs cannot be replayed; give transcripts or SFT data".into(),
            })
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(PolicySpec::parse("expert"), PolicySpec::Expert);
        assert_eq!(PolicySpec::parse("Random"), PolicySpec::Random);
        assert_eq!(PolicySpec::parse("default"), PolicySpec::DefaultModel);
        assert_eq!(
            PolicySpec::parse("http://127.0.0.1:8000/v1"),
            PolicySpec::Remote("http://127.0.0.1:8000/v1".into())
        );
        assert_eq!(
            PolicySpec::parse("runs/a/transcripts.jsonl"),
            PolicySpec::Replay("runs/a/transcripts.jsonl".into())
        );
        assert_eq!(
            PolicySpec::parse("runs/a/checkpoint"),
            PolicySpec::Model("runs/a/checkpoint".into())
        );
    }
}
