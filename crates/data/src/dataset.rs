use std::path::Path;

use serde_json::{Map, Value};

use crate::transcript::{self, Transcript};
use crate::turn::{kind, read_turns};
use crate::{DataError, Location, Shape, Turn};

/// One ETO / AgentGym SFT record: an id, a conversation, and whatever else the file carries.
#[derive(Debug, Clone, PartialEq)]
pub struct SftRecord {
    /// The record's id (ETO: `alfworld_12`, `webshop_3` …).
    pub id: String,
    /// Turn 0 the instruction, turn 1 "OK", turn 2 the first observation, then actions and
    /// observations, ending with an action.
    pub conversations: Vec<Turn>,
    /// Every other key of the record (ALFWorld's `game_file`, WebShop's `reward` …), written
    /// back unchanged (sorted by key).
    pub extra: Map<String, Value>,
}

/// One ETO / IPR preference pair.
#[derive(Debug, Clone, PartialEq)]
pub struct DpoRecord {
    /// The record's id.
    pub id: String,
    /// The shared history, ending with a user turn.
    pub prompt: Vec<Turn>,
    /// The preferred continuation (assistant turns, possibly with observations between).
    pub chosen: Vec<Turn>,
    /// The dispreferred continuation.
    pub rejected: Vec<Turn>,
    /// Every other key, kept.
    pub extra: Map<String, Value>,
}

/// A dataset file of any supported kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// ETO / AgentGym SFT JSON.
    Sft {
        /// The records.
        records: Vec<SftRecord>,
        /// How the file wrote its turns (of its first turn; mixed files are read too).
        shape: Shape,
    },
    /// ETO / IPR DPO JSON.
    Dpo {
        /// The records.
        records: Vec<DpoRecord>,
        /// How the file wrote its turns.
        shape: Shape,
    },
    /// Our JSONL transcripts.
    Transcripts(Vec<Transcript>),
}

impl Dataset {
    /// Reads `path`, telling the kind from its content: a JSON array of records with
    /// `conversations` is SFT data, one with `prompt`/`chosen`/`rejected` DPO data, and one JSON
    /// object a line transcripts.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        Dataset::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, DataError> {
        let at = Location::file(file);
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            return transcript::parse_jsonl(text, file).map(Dataset::Transcripts);
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| DataError::Json { at: Box::new(at.clone()), message: e.to_string() })?;
        let items = value.as_array().ok_or_else(|| DataError::Shape {
            at: Box::new(at.clone()),
            message: format!(
                "expected a list of records (or JSONL transcripts), found {}",
                kind(&value)
            ),
        })?;
        let is_dpo =
            items.first().and_then(Value::as_object).is_some_and(|o| o.contains_key("chosen"));
        if is_dpo {
            let mut shape = None;
            let mut records = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (r, s) = read_dpo(item, &at, i)?;
                if shape.is_none() {
                    shape = s;
                }
                records.push(r);
            }
            Ok(Dataset::Dpo { records, shape: shape.unwrap_or_default() })
        } else {
            let mut shape = None;
            let mut records = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (r, s) = read_sft(item, &at, i)?;
                if shape.is_none() {
                    shape = s;
                }
                records.push(r);
            }
            Ok(Dataset::Sft { records, shape: shape.unwrap_or_default() })
        }
    }

    /// How many records.
    pub fn len(&self) -> usize {
        match self {
            Dataset::Sft { records, .. } => records.len(),
            Dataset::Dpo { records, .. } => records.len(),
            Dataset::Transcripts(t) => t.len(),
        }
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind, for messages: `SFT`, `DPO` or `transcripts`.
    pub fn kind(&self) -> &'static str {
        match self {
            Dataset::Sft { .. } => "SFT",
            Dataset::Dpo { .. } => "DPO",
            Dataset::Transcripts(_) => "transcripts",
        }
    }

    /// The file's text: SFT and DPO as a pretty-printed JSON array with turns in `shape`
    /// (theirs when `None`), transcripts as JSONL.
    pub fn to_text(&self, shape: Option<Shape>) -> String {
        match self {
            Dataset::Sft { records, shape: own } => {
                let s = shape.unwrap_or(*own);
                let v: Vec<Value> = records.iter().map(|r| r.to_json(s)).collect();
                pretty(&Value::Array(v))
            }
            Dataset::Dpo { records, shape: own } => {
                let s = shape.unwrap_or(*own);
                let v: Vec<Value> = records.iter().map(|r| r.to_json(s)).collect();
                pretty(&Value::Array(v))
            }
            Dataset::Transcripts(ts) => ts.iter().map(|t| t.to_line() + "\n").collect(),
        }
    }

    /// Writes the dataset to `path` atomically (a temporary file renamed into place), so a
    /// killed write never leaves half a file that looks complete.
    pub fn save(&self, path: impl AsRef<Path>, shape: Option<Shape>) -> Result<(), DataError> {
        write_atomic(path.as_ref(), &self.to_text(shape))
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values always serialise");
    s.push('\n');
    s
}

pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), DataError> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn record_object<'v>(
    item: &'v Value,
    at: &Location,
) -> Result<(&'v Map<String, Value>, String), DataError> {
    let obj = item.as_object().ok_or_else(|| DataError::Shape {
        at: Box::new(at.clone()),
        message: format!("a record must be an object, found {}", kind(item)),
    })?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(DataError::Shape {
                at: Box::new(at.clone()),
                message: format!("`id` must be a string, found {}", kind(other)),
            })
        }
        None => {
            return Err(DataError::Shape {
                at: Box::new(at.clone()),
                message: "missing `id`".into(),
            })
        }
    };
    Ok((obj, id))
}

fn extra(obj: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    obj.iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn read_sft(
    item: &Value,
    file: &Location,
    index: usize,
) -> Result<(SftRecord, Option<Shape>), DataError> {
    let (obj, id) = record_object(item, &file.record(index, None))?;
    let at = file.record(index, Some(&id));
    let (conversations, shape) = read_turns(obj, "conversations", None, &at)?;
    Ok((SftRecord { id, conversations, extra: extra(obj, &["id", "conversations"]) }, shape))
}

fn read_dpo(
    item: &Value,
    file: &Location,
    index: usize,
) -> Result<(DpoRecord, Option<Shape>), DataError> {
    let (obj, id) = record_object(item, &file.record(index, None))?;
    let at = file.record(index, Some(&id));
    let (prompt, s1) = read_turns(obj, "prompt", Some("prompt"), &at)?;
    let (chosen, s2) = read_turns(obj, "chosen", Some("chosen"), &at)?;
    let (rejected, s3) = read_turns(obj, "rejected", Some("rejected"), &at)?;
    let extra = extra(obj, &["id", "prompt", "chosen", "rejected"]);
    Ok((DpoRecord { id, prompt, chosen, rejected, extra }, s1.or(s2).or(s3)))
}

fn turns_json(turns: &[Turn], shape: Shape) -> Value {
    Value::Array(turns.iter().map(|t| shape.write(t)).collect())
}

impl SftRecord {
    /// The record as JSON with turns in `shape`: `id`, then the extra keys, then
    /// `conversations` (ETO's order).
    pub fn to_json(&self, shape: Shape) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.clone()));
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        m.insert("conversations".into(), turns_json(&self.conversations, shape));
        Value::Object(m)
    }

    /// The task type: the `task_type` key if present, else the folder-name prefix of
    /// ALFWorld's `game_file` (`…/pick_clean_then_place_in_recep-Potato-None-Fridge-1/…` →
    /// `pick_clean_then_place_in_recep`).
    pub fn task_type(&self) -> Option<String> {
        if let Some(t) = self.extra.get("task_type").and_then(Value::as_str) {
            return Some(t.to_string());
        }
        let game_file = self.extra.get("game_file")?.as_str()?;
        game_file
            .split('/')
            .filter_map(|part| part.split_once('-').map(|(prefix, _)| prefix))
            .find(|p| !p.is_empty())
            .map(str::to_string)
    }
}

impl DpoRecord {
    /// The record as JSON with turns in `shape`.
    pub fn to_json(&self, shape: Shape) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.clone()));
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        m.insert("prompt".into(), turns_json(&self.prompt, shape));
        m.insert("chosen".into(), turns_json(&self.chosen, shape));
        m.insert("rejected".into(), turns_json(&self.rejected, shape));
        Value::Object(m)
    }
}
