use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{DataError, Location};

/// Who wrote a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// A system prompt (chat data only; ETO's has none).
    System,
    /// The environment side: instruction and observations (ETO's `human`).
    User,
    /// The agent (ETO's `gpt`).
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Who wrote it.
    pub role: Speaker,
    /// The text.
    pub content: String,
}

impl Turn {
    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Turn { role: Speaker::User, content: content.into() }
    }

    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> Self {
        Turn { role: Speaker::Assistant, content: content.into() }
    }
}

/// How a file writes its turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// `{"from": "human"|"gpt"|"system", "value": …}`: ETO's and AgentGym's releases.
    #[default]
    FromValue,
    /// `{"role": "user"|"assistant"|"system", "content": …}`: chat-API style copies.
    RoleContent,
}

impl Shape {
    /// A turn in this shape.
    pub fn write(self, turn: &Turn) -> Value {
        match self {
            Shape::FromValue => {
                let from = match turn.role {
                    Speaker::System => "system",
                    Speaker::User => "human",
                    Speaker::Assistant => "gpt",
                };
                json!({ "from": from, "value": turn.content })
            }
            Shape::RoleContent => {
                let role = match turn.role {
                    Speaker::System => "system",
                    Speaker::User => "user",
                    Speaker::Assistant => "assistant",
                };
                json!({ "role": role, "content": turn.content })
            }
        }
    }
}

fn shape_err(at: &Location, message: String) -> DataError {
    DataError::Shape { at: Box::new(at.clone()), message }
}

/// Reads one turn in either shape; returns it and the shape it was in.
pub(crate) fn read_turn(v: &Value, at: &Location) -> Result<(Turn, Shape), DataError> {
    let obj = v
        .as_object()
        .ok_or_else(|| shape_err(at, format!("a turn must be an object, found {}", kind(v))))?;
    let (shape, who_key, text_key) = if obj.contains_key("from") || obj.contains_key("value") {
        (Shape::FromValue, "from", "value")
    } else if obj.contains_key("role") || obj.contains_key("content") {
        (Shape::RoleContent, "role", "content")
    } else {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        return Err(shape_err(
            at,
            format!(
                "a turn needs `from`/`value` or `role`/`content`; found keys [{}]",
                keys.join(", ")
            ),
        ));
    };
    let who = obj
        .get(who_key)
        .and_then(Value::as_str)
        .ok_or_else(|| shape_err(at, format!("missing or non-string `{who_key}`")))?;
    let role = match who {
        "human" | "user" => Speaker::User,
        "gpt" | "assistant" => Speaker::Assistant,
        "system" => Speaker::System,
        other => {
            return Err(shape_err(
                at,
                format!("`{who_key}` is `{other}`; expected human/user, gpt/assistant or system"),
            ))
        }
    };
    let content = obj
        .get(text_key)
        .and_then(Value::as_str)
        .ok_or_else(|| shape_err(at, format!("missing or non-string `{text_key}`")))?;
    Ok((Turn { role, content: content.to_string() }, shape))
}

/// Reads a list of turns under `key` of a record object.
pub(crate) fn read_turns(
    obj: &Map<String, Value>,
    key: &'static str,
    list: Option<&'static str>,
    at: &Location,
) -> Result<(Vec<Turn>, Option<Shape>), DataError> {
    let arr = obj
        .get(key)
        .ok_or_else(|| shape_err(at, format!("missing `{key}`")))?
        .as_array()
        .ok_or_else(|| shape_err(at, format!("`{key}` must be a list of turns")))?;
    let mut shape = None;
    let mut turns = Vec::with_capacity(arr.len());
    for (i, v) in arr.iter().enumerate() {
        let (t, s) = read_turn(v, &at.turn(list, i))?;
        shape.get_or_insert(s);
        turns.push(t);
    }
    Ok((turns, shape))
}

/// A JSON value's kind, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
