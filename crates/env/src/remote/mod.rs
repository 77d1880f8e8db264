//! A world served over HTTP with AgentGym's environment protocol (see [`protocol`]): an
//! AgentGym server for WebShop, ALFWorld, SciWorld, BabyAI, TextCraft … or our own
//! `stepagent env serve`, becomes a world here.
//!
//! Tasks map to the server's integer task index (`data_idx`, ALFWorld's `game`, WebShop's
//! `session_id`) through the `splits` option. Against our own server the splits, the
//! instruction and the step budget are read from its `/health` and need not be given.
//!
//! Calls time out (`timeout_secs`); answers 5xx (503 included) and failed connections are
//! retried with backoff (`retries`); AgentGym's HTTP-200 `{"error": …}` bodies become errors.

pub mod protocol;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use self::protocol::Variant;
use crate::registry::{self, WorldOptions};
use crate::{EnvError, Environment, ExpertStep, Split, StepOutcome, TaskId, World, WorldRef};

/// The registry name.
pub const NAME: &str = "remote";

/// Task indices of one split on the server: a list, or `{start, count}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Indices {
    /// `count` indices from `start`.
    Range {
        /// First index.
        start: u64,
        /// How many.
        count: usize,
    },
    /// Explicit indices.
    List(Vec<u64>),
}

impl Indices {
    fn len(&self) -> usize {
        match self {
            Indices::Range { count, .. } => *count,
            Indices::List(l) => l.len(),
        }
    }
    fn get(&self, i: usize) -> Option<u64> {
        match self {
            Indices::Range { start, count } => (i < *count).then(|| start + i as u64),
            Indices::List(l) => l.get(i).copied(),
        }
    }
}

/// The server's tasks per split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteSplits {
    /// Train tasks.
    pub train: Option<Indices>,
    /// Seen held-out tasks.
    pub seen: Option<Indices>,
    /// Unseen held-out tasks.
    pub unseen: Option<Indices>,
}

/// Options of the `remote` world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:36001` (required).
    pub url: String,
    /// `id` (default) or `env_idx` (AgentGym's WebShop).
    pub variant: Variant,
    /// The `/reset` key carrying the task index: default `data_idx` (`env_idx` variant:
    /// `session_id`); ALFWorld's server wants `game`.
    pub reset_key: Option<String>,
    /// Extra `/reset` fields, e.g. `{"world_type": "Text"}` for ALFWorld.
    pub reset_extra: Map<String, Value>,
    /// Task indices per split; read from `/health` when unset (our server only).
    pub splits: Option<RemoteSplits>,
    /// Step budget enforced here (AgentGym servers have none); default from `/health`, else 30.
    pub max_steps: Option<usize>,
    /// The ETO-style instruction prompt; default from `/health`, else a generic one.
    pub instruction: Option<String>,
    /// Multiplies each step's reward, e.g. 0.01 for a 0–100 scale; default 1.
    pub reward_scale: f64,
    /// Take the final reward from `score` (AgentGym's SciWorld, 0–100) instead of `reward`.
    pub reward_from_score: bool,
    /// Seconds before one HTTP call fails; default 60.
    pub timeout_secs: u64,
    /// Retries of a call that failed to connect or got a 5xx; default 3.
    pub retries: u32,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            url: String::new(),
            variant: Variant::Id,
            reset_key: None,
            reset_extra: Map::new(),
            splits: None,
            max_steps: None,
            instruction: None,
            reward_scale: 1.0,
            reward_from_score: false,
            timeout_secs: 60,
            retries: 3,
        }
    }
}

/// Registry hook.
pub fn open(options: &WorldOptions) -> Result<WorldRef, EnvError> {
    let config: RemoteConfig = registry::parse_options(NAME, options)?;
    Ok(Arc::new(RemoteWorld::new(config)?))
}

/// The HTTP client: one connection pool, timeouts and retries.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    retries: u32,
}

impl Client {
    /// A client for the server at `base`.
    pub fn new(base: &str, timeout: Duration, retries: u32) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build();
        Client { agent, base: base.trim_end_matches('/').to_string(), retries }
    }

    /// `GET path?query`.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, EnvError> {
        self.call("GET", path, query, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, EnvError> {
        self.call("POST", path, &[], Some(body))
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, EnvError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut req = self.agent.request(method, &url);
            for (k, v) in query {
                req = req.query(k, v);
            }
            let result = match body {
                Some(b) => req.send_json(b),
                None => req.call(),
            };
            let retryable = match &result {
                Ok(_) => false,
                Err(ureq::Error::Status(code, _)) => *code >= 500,
                Err(ureq::Error::Transport(t)) => {
                    matches!(
                        t.kind(),
                        ureq::ErrorKind::ConnectionFailed
                            | ureq::ErrorKind::Io
                            | ureq::ErrorKind::Dns
                    )
                }
            };
            if retryable && attempt < self.retries {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100 << attempt.min(6)));
                continue;
            }
            return match result {
                Ok(resp) => resp.into_json::<Value>().map_err(|e| {
                    EnvError::Backend(format!("{method} {url}: the answer is not JSON: {e}"))
                }),
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    let detail = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| {
                            v.get("error").or_else(|| v.get("detail")).map(|e| e.to_string())
                        })
                        .unwrap_or(text);
                    let tries = if attempt > 0 {
                        format!(" after {} tries", attempt + 1)
                    } else {
                        String::new()
                    };
                    Err(EnvError::Backend(format!(
                        "{method} {url}: HTTP {code}{tries}: {}",
                        detail.trim()
                    )))
                }
                Err(ureq::Error::Transport(t)) => {
                    Err(EnvError::Backend(format!("{method} {url}: {t}")))
                }
            };
        }
    }
}

/// A world on an AgentGym-protocol server.
pub struct RemoteWorld {
    config: RemoteConfig,
    client: Client,
    splits: [Indices; 3],
    instruction: String,
    max_steps: usize,
    world: String,
}

const GENERIC_INSTRUCTION: &str = "You are an agent acting in a text environment. Each turn, read the observation and reply in this format:
Thought: your reasoning
Action: exactly one action";

impl RemoteWorld {
    /// Connects the world: checks the options and, when the splits are not given, reads them
    /// from the server's `/health`.
    pub fn new(config: RemoteConfig) -> Result<Self, EnvError> {
        let bad = |message: String| EnvError::BadOptions { world: NAME.to_string(), message };
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(bad(format!("url: expected http://host:port, got `{}`", config.url)));
        }
        if !(config.reward_scale.is_finite() && config.reward_scale > 0.0) {
            return Err(bad(format!(
                "reward_scale must be a positive number, got {}",
                config.reward_scale
            )));
        }
        let client = Client::new(
            &config.url,
            Duration::from_secs(config.timeout_secs.max(1)),
            config.retries,
        );
        let health = if config.splits.is_none()
            || config.instruction.is_none()
            || config.max_steps.is_none()
        {
            client.get("/health", &[]).ok()
        } else {
            None
        };
        let h = health.as_ref();
        let splits = match &config.splits {
            Some(s) => {
                let get = |x: &Option<Indices>| x.clone().unwrap_or(Indices::List(Vec::new()));
                [get(&s.train), get(&s.seen), get(&s.unseen)]
            }
            None => {
                let tasks = h.and_then(|h| h.get("tasks")).ok_or_else(|| {
                    bad(format!(
                        "splits: not given, and {} has no stepagent `/health` to read them from; \
                         set e.g. splits = {{ unseen = {{ start = 0, count = 200 }} }}",
                        config.url
                    ))
                })?;
                let n = |k: &str| tasks.get(k).and_then(Value::as_u64).unwrap_or(0);
                let (train, seen, unseen) = (n("train"), n("seen"), n("unseen"));
                [
                    Indices::Range { start: 0, count: train as usize },
                    Indices::Range { start: train, count: seen as usize },
                    Indices::Range { start: train + seen, count: unseen as usize },
                ]
            }
        };
        let instruction = config
            .instruction
            .clone()
            .or_else(|| {
                h.and_then(|h| h.get("instruction")).and_then(Value::as_str).map(str::to_string)
            })
            .unwrap_or_else(|| GENERIC_INSTRUCTION.to_string());
        let max_steps = config
            .max_steps
            .or_else(|| {
                h.and_then(|h| h.get("max_steps")).and_then(Value::as_u64).map(|m| m as usize)
            })
            .unwrap_or(30);
        let world =
            h.and_then(|h| h.get("world")).and_then(Value::as_str).unwrap_or(NAME).to_string();
        Ok(RemoteWorld { config, client, splits, instruction, max_steps, world })
    }

    /// The world name the server reported, or `remote`.
    pub fn served_world(&self) -> &str {
        &self.world
    }

    /// A fresh session on the server, typed.
    pub fn env(&self) -> Result<RemoteEnv, EnvError> {
        let body = self.client.post("/create", &json!({}))?;
        let id = protocol::parse_create(&body)
            .map_err(|e| EnvError::Backend(format!("/create: {e}")))?;
        Ok(RemoteEnv {
            client: self.client.clone(),
            config: self.config.clone(),
            splits: self.splits.clone(),
            max_steps: self.max_steps,
            id,
            steps: 0,
            state: State::Created,
        })
    }
}

fn split_slot(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Seen => 1,
        Split::Unseen => 2,
    }
}

impl World for RemoteWorld {
    fn name(&self) -> &str {
        NAME
    }

    fn instruction(&self) -> &str {
        &self.instruction
    }

    fn num_tasks(&self, split: Split) -> usize {
        self.splits[split_slot(split)].len()
    }

    fn task_type(&self, task: TaskId) -> Result<String, EnvError> {
        self.check_task(task)?;
        Ok(self.world.clone())
    }

    fn max_steps(&self) -> usize {
        self.max_steps
    }

    fn new_env(&self) -> Result<Box<dyn Environment>, EnvError> {
        Ok(Box::new(self.env()?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Done,
}

/// One session on the server; closed (`/close`) when dropped.
pub struct RemoteEnv {
    client: Client,
    config: RemoteConfig,
    splits: [Indices; 3],
    max_steps: usize,
    id: u64,
    steps: usize,
    state: State,
}

impl RemoteEnv {
    /// The server's session id.
    pub fn session(&self) -> u64 {
        self.id
    }

    fn key(&self) -> &'static str {
        self.config.variant.key()
    }

    fn backend(&self, route: &str, e: String) -> EnvError {
        EnvError::Backend(format!("{}{route} (session {}): {e}", self.config.url, self.id))
    }
}

impl Environment for RemoteEnv {
    fn reset(&mut self, task: TaskId, seed: u64) -> Result<String, EnvError> {
        let list = &self.splits[split_slot(task.split)];
        let index = list.get(task.index).ok_or_else(|| EnvError::NoSuchTask {
            world: NAME.to_string(),
            split: task.split.to_string(),
            task: task.to_string(),
            len: list.len(),
        })?;
        let reset_key = self.config.reset_key.clone().unwrap_or_else(|| {
            match self.config.variant {
                Variant::Id => "data_idx",
                Variant::EnvIdx => "session_id",
            }
            .to_string()
        });
        let mut body = self.config.reset_extra.clone();
        body.insert(self.key().to_string(), json!(self.id));
        body.insert(reset_key, json!(index));
        if self.config.variant == Variant::Id && !body.contains_key("seed") {
            // Our server reads it; AgentGym's pydantic models ignore unknown fields.
            body.insert("seed".to_string(), json!(seed));
        }
        let answer = self.client.post("/reset", &Value::Object(body))?;
        let obs = protocol::parse_reset(&answer).map_err(|e| self.backend("/reset", e))?;
        self.steps = 0;
        self.state = State::Running;
        Ok(obs)
    }

    fn step(&mut self, action: &str) -> Result<StepOutcome, EnvError> {
        match self.state {
            State::Created => return Err(EnvError::NotRunning("step called before reset")),
            State::Done => return Err(EnvError::NotRunning("step called after the episode ended")),
            State::Running => {}
        }
        let answer =
            self.client.post("/step", &json!({ self.key(): self.id, "action": action }))?;
        let a = protocol::parse_step(&answer).map_err(|e| self.backend("/step", e))?;
        self.steps += 1;
        let out_of_steps = self.steps >= self.max_steps;
        let done = a.done || out_of_steps;
        let reward = match (self.config.reward_from_score, a.score) {
            (true, Some(score)) if done => score / 100.0,
            (true, _) => 0.0,
            (false, _) => a.reward * self.config.reward_scale,
        };
        let won = a.won.unwrap_or(a.done && reward >= 1.0 - 1e-9);
        if done {
            self.state = State::Done;
        }
        Ok(StepOutcome {
            observation: a.observation,
            reward: reward.clamp(0.0, 1.0),
            done,
            won,
            valid: a.valid.unwrap_or(true),
            steps: self.steps,
        })
    }

    fn admissible_actions(&self) -> Vec<String> {
        let answer = self.client.get("/available_actions", &[(self.key(), self.id.to_string())]);
        match answer.and_then(|a| {
            protocol::parse_actions(&a).map_err(|e| self.backend("/available_actions", e))
        }) {
            Ok(actions) => actions,
            Err(e) => {
                tracing::warn!("{e}");
                Vec::new()
            }
        }
    }

    /// Asks our server's `/expert` extension; AgentGym servers have no expert.
    fn expert_step(&self) -> Option<ExpertStep> {
        if self.state != State::Running {
            return None;
        }
        let answer = self.client.get("/expert", &[(self.key(), self.id.to_string())]).ok()?;
        serde_json::from_value::<Option<ExpertStep>>(answer).ok().flatten()
    }

    fn steps(&self) -> usize {
        self.steps
    }
}

impl Drop for RemoteEnv {
    fn drop(&mut self) {
        // Best effort: servers without /close (most of AgentGym's) answer 404.
        let client = Client { retries: 0, ..self.client.clone() };
        if let Err(e) = client.post("/close", &json!({ self.key(): self.id })) {
            tracing::debug!("closing session {}: {e}", self.id);
        }
    }
}
