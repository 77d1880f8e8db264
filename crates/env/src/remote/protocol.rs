//! The request and response bodies of AgentGym's environment servers, as their FastAPI
//! handlers build them, and the reading of them we need.
//!
//! Two families exist:
//! - **`id`** (ALFWorld, SciWorld, BabyAI, TextCraft …): `POST /create` → `{"id": n}`;
//!   `POST /reset` `{"id": n, "data_idx": i}` (ALFWorld: `{"id", "game", "world_type"}`) → an
//!   object with `observation`; `POST /step` `{"id", "action"}` → `{"observation", "reward",
//!   "done", …}`; `GET /observation?id=n` → a string; `GET /available_actions?id=n` → a list.
//! - **`env_idx`** (WebShop): `POST /create` → a bare integer; `POST /reset`
//!   `{"env_idx", "session_id"}` → `[observation, null]`; `POST /step` `{"env_idx", "action"}` →
//!   `{"state", "reward", "done", "info"}`; `GET /available_actions?env_idx=n` →
//!   `{"has_search_bar", "clickables"}`; `POST /close` `{"env_idx"}` → `{"closed"}`.
//!
//! Both answer failures with HTTP 200 and `{"error": "…"}`; [`check_error`] turns that into
//! an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which family of routes a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Sessions named `id` (most AgentGym servers, and ours).
    #[default]
    Id,
    /// Sessions named `env_idx` (AgentGym's WebShop).
    EnvIdx,
}

impl Variant {
    /// The session key in bodies and query strings.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Id => "id",
            Variant::EnvIdx => "env_idx",
        }
    }
}

/// `{"error": …}` in a 200 body, as AgentGym reports failures.
pub fn check_error(body: &Value) -> Result<(), String> {
    match body.get("error") {
        Some(Value::String(e)) => Err(e.clone()),
        Some(Value::Null) | None => Ok(()),
        Some(other) => Err(other.to_string()),
    }
}

/// The session id from a `/create` answer: `{"id": n}` or a bare integer.
pub fn parse_create(body: &Value) -> Result<u64, String> {
    check_error(body)?;
    let id = match body {
        Value::Number(_) => body,
        Value::Object(o) => {
            o.get("id").or_else(|| o.get("env_idx")).ok_or("no `id` in the /create answer")?
        }
        _ => return Err(format!("unexpected /create answer {body}")),
    };
    id.as_u64().ok_or_else(|| format!("/create gave a non-integer id {id}"))
}

/// The first observation from a `/reset` answer: an object with `observation`, or WebShop's
/// `[observation, null]`.
pub fn parse_reset(body: &Value) -> Result<String, String> {
    check_error(body)?;
    match body {
        Value::Object(o) => {
            let obs = o.get("observation").ok_or("no `observation` in the /reset answer")?;
            let obs = obs.as_str().ok_or("`observation` in the /reset answer is not a string")?;
            Ok(obs.to_string())
        }
        Value::Array(a) => a
            .first()
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| "the /reset answer's first element is not a string".to_string()),
        Value::String(s) => Ok(s.clone()),
        _ => Err(format!("unexpected /reset answer {body}")),
    }
}

/// One `/step` answer, read leniently across the servers.
#[derive(Debug, Clone, PartialEq)]
pub struct StepAnswer {
    /// `observation`, or WebShop's `state`.
    pub observation: String,
    /// `reward` as sent (AgentGym's SciWorld sends the score's change, WebShop a fraction,
    /// ALFWorld 0 or 1).
    pub reward: f64,
    /// `done`.
    pub done: bool,
    /// `won`, sent by our server only.
    pub won: Option<bool>,
    /// `valid`, sent by our server only.
    pub valid: Option<bool>,
    /// `score`, sent by AgentGym's SciWorld (0–100).
    pub score: Option<f64>,
}

/// Reads one `/step` answer.
pub fn parse_step(body: &Value) -> Result<StepAnswer, String> {
    check_error(body)?;
    let o = body.as_object().ok_or_else(|| format!("unexpected /step answer {body}"))?;
    let observation = o
        .get("observation")
        .or_else(|| o.get("state"))
        .and_then(Value::as_str)
        .ok_or("no string `observation` (or `state`) in the /step answer")?
        .to_string();
    let reward = match o.get("reward") {
        None | Some(Value::Null) => 0.0,
        Some(r) => r.as_f64().ok_or_else(|| format!("`reward` {r} is not a number"))?,
    };
    let done = match o.get("done") {
        Some(Value::Bool(b)) => *b,
        other => return Err(format!("`done` should be a boolean, got {other:?}")),
    };
    Ok(StepAnswer {
        observation,
        reward,
        done,
        won: o.get("won").and_then(Value::as_bool),
        valid: o.get("valid").and_then(Value::as_bool),
        score: o.get("score").and_then(Value::as_f64),
    })
}

/// The actions from `/available_actions`: a list, an object with `available_actions`, or
/// WebShop's `{"has_search_bar", "clickables"}` (the search bar becomes `search[...]`).
pub fn parse_actions(body: &Value) -> Result<Vec<String>, String> {
    check_error(body)?;
    let strings = |v: &Value| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or_else(|| format!("expected a list of actions, got {v}"))?
            .iter()
            .map(|a| {
                a.as_str().map(str::to_string).ok_or_else(|| format!("action {a} is not a string"))
            })
            .collect()
    };
    match body {
        Value::Array(_) => strings(body),
        Value::Object(o) if o.contains_key("clickables") => {
            let mut out = Vec::new();
            if o.get("has_search_bar").and_then(Value::as_bool) == Some(true) {
                out.push("search[...]".to_string());
            }
            out.extend(strings(&o["clickables"])?.into_iter().map(|c| format!("click[{c}]")));
            Ok(out)
        }
        Value::Object(o) if o.contains_key("available_actions") => strings(&o["available_actions"]),
        _ => Err(format!("unexpected /available_actions answer {body}")),
    }
}

/// The text from `/observation`: a JSON string (or an object with `observation`).
pub fn parse_observation(body: &Value) -> Result<String, String> {
    check_error(body)?;
    match body {
        Value::String(s) => Ok(s.clone()),
        Value::Object(o) => o
            .get("observation")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("unexpected /observation answer {body}")),
        _ => Err(format!("unexpected /observation answer {body}")),
    }
}
