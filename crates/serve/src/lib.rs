//! Any stepagent world over HTTP, speaking AgentGym's environment routes so that AgentGym
//! clients (and our `remote` world) can use it, plus what AgentGym's servers lack.
//!
//! Routes (bodies are JSON; sessions are named `id`, and `env_idx` is accepted as an alias
//! for WebShop-style clients):
//!
//! | route | body / query | answer |
//! |---|---|---|
//! | `GET /health` | | `{"status", "world", "sessions", "max_sessions", "tasks": {"train", "seen", "unseen"}, "max_steps", "instruction"}` |
//! | `POST /create` | | `{"id"}`; 429 at the session cap |
//! | `POST /reset` | `{"id", "data_idx"}` or `{"id", "task": "seen/3"}`, optional `seed` | `{"id", "observation", "task", "task_type"}` |
//! | `POST /step` | `{"id", "action"}` | `{"observation", "reward", "done", "won", "valid", "steps"}` |
//! | `POST /step` (batch) | `{"steps": [{"id", "action"}, …]}` | `{"results": [answer or {"error", "status"}, …]}` |
//! | `GET /observation` | `?id=` | the latest observation, a JSON string |
//! | `GET /available_actions` | `?id=` | a list of actions |
//! | `GET /expert` | `?id=` | `{"thought", "action"}` or `null` |
//! | `POST /close` | `{"id"}` | `{"closed": true}` |
//! | `GET /list_envs` | | the live session ids |
//!
//! `data_idx` counts the train tasks, then seen, then unseen. Errors carry real status codes
//! (400 bad body, 404 unknown session or route, 405 wrong method, 409 wrong episode phase,
//! 413 body too large, 429 session cap, 500 world failure) and the body `{"error": "…"}`.
//! Sessions idle longer than `idle_timeout_secs` are closed, so a client that forgets
//! `/close` cannot exhaust memory (AgentGym's WebShop server leaked them).
#![warn(missing_docs)]

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepagent_env::{EnvError, Environment, Split, TaskId, WorldRef};
use thiserror::Error;

/// Server options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to bind; default `127.0.0.1` (loopback only).
    pub host: String,
    /// Port; 0 picks a free one. Default 0.
    pub port: u16,
    /// HTTP worker threads; default 16.
    pub threads: usize,
    /// Live sessions at most; `/create` answers 429 beyond. Default 1024.
    pub max_sessions: usize,
    /// Seconds of inactivity after which a session is closed; default 600.
    pub idle_timeout_secs: u64,
    /// Largest request body in bytes; default 1 MiB.
    pub max_body_bytes: usize,
    /// Most steps in one batch; default 1024.
    pub max_batch: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".to_string(),
            port: 0,
            threads: 16,
            max_sessions: 1024,
            idle_timeout_secs: 600,
            max_body_bytes: 1 << 20,
            max_batch: 1024,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address.
        addr: String,
        /// The system's reason.
        message: String,
    },
    /// A configuration value was out of range.
    #[error("bad server option: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Created,
    Running,
    Done,
}

struct Session {
    env: Box<dyn Environment>,
    observation: String,
    phase: Phase,
    last_used: Instant,
}

struct State {
    world: WorldRef,
    config: ServeConfig,
    sessions: Mutex<HashMap<u64, Arc<Mutex<Session>>>>,
    next_id: AtomicU64,
    stop: AtomicBool,
}

/// A running server; [`Server::shutdown`] (or dropping it) stops it and closes every session.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds and starts serving `world`.
    pub fn start(world: WorldRef, config: ServeConfig) -> Result<Server, ServeError> {
        if config.threads == 0 || config.max_sessions == 0 || config.max_batch == 0 {
            return Err(ServeError::Config(
                "threads, max_sessions and max_batch must be at least 1".into(),
            ));
        }
        let addr = format!("{}:{}", config.host, config.port);
        let http = tiny_http::Server::http(&addr)
            .map_err(|e| ServeError::Bind { addr: addr.clone(), message: e.to_string() })?;
        let bound = http.server_addr().to_ip().ok_or_else(|| ServeError::Bind {
            addr: addr.clone(),
            message: "not an IP address".into(),
        })?;
        let http = Arc::new(http);
        let state = Arc::new(State {
            world,
            config: config.clone(),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        for i in 0..config.threads {
            let (http, state) = (http.clone(), state.clone());
            let t = std::thread::Builder::new()
                .name(format!("serve-{i}"))
                .spawn(move || {
                    while !state.stop.load(Ordering::Relaxed) {
                        match http.recv_timeout(Duration::from_millis(200)) {
                            Ok(Some(req)) => handle(&state, req),
                            Ok(None) => {}
                            Err(e) => tracing::warn!("accepting a request: {e}"),
                        }
                    }
                })
                .map_err(|e| ServeError::Config(format!("spawning a worker: {e}")))?;
            threads.push(t);
        }
        let reaper_state = state.clone();
        let reaper = std::thread::Builder::new()
            .name("serve-reaper".into())
            .spawn(move || reap(&reaper_state))
            .map_err(|e| ServeError::Config(format!("spawning the reaper: {e}")))?;
        threads.push(reaper);
        tracing::info!("serving world `{}` on http://{bound}", state.world.name());
        Ok(Server { addr: bound, state, threads })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Live sessions now.
    pub fn sessions(&self) -> usize {
        lock(&self.state.sessions).len()
    }

    /// Blocks until the server stops (it stops only on shutdown, so: forever).
    pub fn wait(mut self) {
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }

    /// Stops the workers and closes every session.
    pub fn shutdown(self) {}
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        let sessions = std::mem::take(&mut *lock(&self.state.sessions));
        drop(sessions);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Closes idle sessions, waking often enough to notice shutdown quickly.
fn reap(state: &State) {
    let idle = Duration::from_secs(state.config.idle_timeout_secs);
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
    while !state.stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        let now = Instant::now();
        let expired: Vec<Arc<Mutex<Session>>> = {
            let mut map = lock(&state.sessions);
            let ids: Vec<u64> = map
                .iter()
                // A session being used right now is locked: not idle.
                .filter(|(_, s)| s.try_lock().is_ok_and(|s| now.duration_since(s.last_used) > idle))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        if !expired.is_empty() {
            tracing::info!("closed {} idle sessions", expired.len());
        }
        // Dropped here, outside the map lock: closing an environment may take a while.
        drop(expired);
    }
}

/// An HTTP error: status and message.
struct Fail(u16, String);

impl From<EnvError> for Fail {
    fn from(e: EnvError) -> Self {
        match e {
            EnvError::NoSuchTask { .. } | EnvError::UnknownSplit(_) | EnvError::BadSpec(_) => {
                Fail(400, e.to_string())
            }
            EnvError::NotRunning(_) => Fail(409, e.to_string()),
            _ => Fail(500, e.to_string()),
        }
    }
}

fn handle(state: &State, mut req: tiny_http::Request) {
    let method = req.method().clone();
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let result = route(state, &method, path, query, &mut req);
    let (status, body) = match result {
        Ok(v) => (200, v),
        Err(Fail(code, msg)) => (code, json!({ "error": msg })),
    };
    let text = serde_json::to_string(&body).unwrap_or_else(|_| "null".to_string());
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("static header");
    let resp = tiny_http::Response::from_string(text).with_status_code(status).with_header(header);
    if let Err(e) = req.respond(resp) {
        tracing::debug!("answering {method} {path}: {e}");
    }
}

fn route(
    state: &State,
    method: &tiny_http::Method,
    path: &str,
    query: &str,
    req: &mut tiny_http::Request,
) -> Result<Value, Fail> {
    use tiny_http::Method::{Get, Post};
    let want = |m: &tiny_http::Method| -> Result<(), Fail> {
        if method == m {
            Ok(())
        } else {
            Err(Fail(405, format!("{path} takes {m}, not {method}")))
        }
    };
    match path {
        "/" => {
            want(&Get)?;
            Ok(json!(format!("stepagent environment server for world `{}`", state.world.name())))
        }
        "/health" => {
            want(&Get)?;
            Ok(health(state))
        }
        "/list_envs" => {
            want(&Get)?;
            let mut ids: Vec<u64> = lock(&state.sessions).keys().copied().collect();
            ids.sort_unstable();
            Ok(json!(ids))
        }
        "/create" => {
            want(&Post)?;
            create(state)
        }
        "/reset" => {
            want(&Post)?;
            reset(state, &body(state, req)?)
        }
        "/step" => {
            want(&Post)?;
            let b = body(state, req)?;
            match b.get("steps") {
                Some(batch) => step_batch(state, batch),
                None => step(state, &b),
            }
        }
        "/close" => {
            want(&Post)?;
            let id = session_id(&body(state, req)?)?;
            match lock(&state.sessions).remove(&id) {
                Some(s) => {
                    drop(s);
                    Ok(json!({ "closed": true }))
                }
                None => {
                    Err(Fail(404, format!("no session {id} (closed, expired or never created)")))
                }
            }
        }
        "/observation" => {
            want(&Get)?;
            let s = session(state, query_id(query)?)?;
            let s = lock(&s);
            Ok(json!(s.observation))
        }
        "/available_actions" => {
            want(&Get)?;
            let s = session(state, query_id(query)?)?;
            let s = lock(&s);
            Ok(json!(s.env.admissible_actions()))
        }
        "/expert" => {
            want(&Get)?;
            let s = session(state, query_id(query)?)?;
            let s = lock(&s);
            Ok(serde_json::to_value(s.env.expert_step()).unwrap_or(Value::Null))
        }
        _ => Err(Fail(404, format!("no route {path}"))),
    }
}

fn health(state: &State) -> Value {
    let w = &state.world;
    json!({
        "status": "ok",
        "world": w.name(),
        "sessions": lock(&state.sessions).len(),
        "max_sessions": state.config.max_sessions,
        "tasks": {
            "train": w.num_tasks(Split::Train),
            "seen": w.num_tasks(Split::Seen),
            "unseen": w.num_tasks(Split::Unseen),
        },
        "max_steps": w.max_steps(),
        "instruction": w.instruction(),
    })
}

fn body(state: &State, req: &mut tiny_http::Request) -> Result<Value, Fail> {
    let limit = state.config.max_body_bytes;
    if req.body_length().is_some_and(|n| n > limit) {
        return Err(Fail(413, format!("body larger than {limit} bytes")));
    }
    let mut buf = Vec::new();
    req.as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Fail(400, format!("reading the body: {e}")))?;
    if buf.len() > limit {
        return Err(Fail(413, format!("body larger than {limit} bytes")));
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&buf).map_err(|e| Fail(400, format!("the body is not valid JSON: {e}")))
}

fn session_id(b: &Value) -> Result<u64, Fail> {
    let v = b
        .get("id")
        .or_else(|| b.get("env_idx"))
        .ok_or_else(|| Fail(400, "missing `id` (or `env_idx`) in the body".into()))?;
    v.as_u64().ok_or_else(|| Fail(400, format!("`id` must be a non-negative integer, got {v}")))
}

fn query_id(query: &str) -> Result<u64, Fail> {
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            if k == "id" || k == "env_idx" {
                return v.parse().map_err(|_| {
                    Fail(400, format!("`{k}` must be a non-negative integer, got `{v}`"))
                });
            }
        }
    }
    Err(Fail(400, "missing `?id=` in the query".into()))
}

fn session(state: &State, id: u64) -> Result<Arc<Mutex<Session>>, Fail> {
    lock(&state.sessions)
        .get(&id)
        .cloned()
        .ok_or_else(|| Fail(404, format!("no session {id} (closed, expired or never created)")))
}

fn create(state: &State) -> Result<Value, Fail> {
    let cap = state.config.max_sessions;
    let full = || {
        Fail(429, format!("{cap} sessions are live, the most this server allows; close some first"))
    };
    if lock(&state.sessions).len() >= cap {
        return Err(full());
    }
    // Built outside the lock: a world may take seconds to start an environment.
    let env = state.world.new_env()?;
    let mut map = lock(&state.sessions);
    if map.len() >= cap {
        return Err(full());
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let s = Session {
        env,
        observation: String::new(),
        phase: Phase::Created,
        last_used: Instant::now(),
    };
    map.insert(id, Arc::new(Mutex::new(s)));
    Ok(json!({ "id": id }))
}

fn task_of(state: &State, b: &Value) -> Result<TaskId, Fail> {
    if let Some(t) = b.get("task") {
        let t = t.as_str().ok_or_else(|| {
            Fail(400, format!("`task` must be a string like \"seen/3\", got {t}"))
        })?;
        return t.parse::<TaskId>().map_err(|e| Fail(400, e.to_string()));
    }
    let key = ["data_idx", "game", "session_id", "idx"]
        .into_iter()
        .find(|k| b.get(*k).is_some_and(|v| !v.is_null()));
    let key = key.ok_or_else(|| Fail(400, "missing `data_idx` (or `task`) in the body".into()))?;
    let mut idx = b[key].as_u64().ok_or_else(|| {
        Fail(400, format!("`{key}` must be a non-negative integer, got {}", b[key]))
    })? as usize;
    let mut total = 0;
    for split in Split::ALL {
        let n = state.world.num_tasks(split);
        if idx < n {
            return Ok(TaskId::new(split, idx));
        }
        idx -= n;
        total += n;
    }
    Err(Fail(400, format!("`{key}` {} is out of range: the world has {total} tasks", b[key])))
}

fn reset(state: &State, b: &Value) -> Result<Value, Fail> {
    let id = session_id(b)?;
    let task = task_of(state, b)?;
    state.world.check_task(task)?;
    let seed = match b.get("seed") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| Fail(400, format!("`seed` must be a non-negative integer, got {v}")))?,
    };
    let task_type = state.world.task_type(task)?;
    let s = session(state, id)?;
    let mut s = lock(&s);
    s.last_used = Instant::now();
    let obs = s.env.reset(task, seed)?;
    s.observation = obs.clone();
    s.phase = Phase::Running;
    Ok(json!({ "id": id, "observation": obs, "task": task.to_string(), "task_type": task_type }))
}

fn step(state: &State, b: &Value) -> Result<Value, Fail> {
    let id = session_id(b)?;
    let action = b
        .get("action")
        .ok_or_else(|| Fail(400, "missing `action` in the body".into()))?
        .as_str()
        .ok_or_else(|| Fail(400, "`action` must be a string".into()))?;
    let s = session(state, id)?;
    let mut s = lock(&s);
    s.last_used = Instant::now();
    match s.phase {
        Phase::Created => {
            return Err(Fail(409, format!("session {id} has not been reset to a task")))
        }
        Phase::Done => {
            return Err(Fail(409, format!("session {id}'s episode is over; reset it first")))
        }
        Phase::Running => {}
    }
    let out = s.env.step(action)?;
    s.observation = out.observation.clone();
    if out.done {
        s.phase = Phase::Done;
    }
    Ok(json!({
        "observation": out.observation,
        "reward": out.reward,
        "done": out.done,
        "won": out.won,
        "valid": out.valid,
        "steps": out.steps,
    }))
}

fn step_batch(state: &State, batch: &Value) -> Result<Value, Fail> {
    let items = batch
        .as_array()
        .ok_or_else(|| Fail(400, "`steps` must be a list of {id, action}".into()))?;
    if items.len() > state.config.max_batch {
        return Err(Fail(
            413,
            format!("{} steps in one batch; at most {}", items.len(), state.config.max_batch),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let id = session_id(item)?;
        if !seen.insert(id) {
            return Err(Fail(400, format!("session {id} appears twice in one batch")));
        }
    }
    // Different sessions step in parallel: the batch costs its slowest step, not the sum.
    let results: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.iter().map(|item| scope.spawn(move || step(state, item))).collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(Ok(v)) => v,
                Ok(Err(Fail(code, msg))) => json!({ "error": msg, "status": code }),
                Err(_) => json!({ "error": "the step panicked", "status": 500 }),
            })
            .collect()
    });
    Ok(json!({ "results": results }))
}
