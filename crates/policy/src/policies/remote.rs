use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{ActContext, Message, Policy, PolicyError, Role};

/// How to reach an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's server, a
/// hosted API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    /// The API base, e.g. `http://127.0.0.1:8000/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// The model name the server expects (default `default`).
    pub model: String,
    /// The environment variable holding the API key, sent as a bearer token when set
    /// (default `OPENAI_API_KEY`). The key itself never appears in a config.
    pub api_key_env: String,
    /// Sampling temperature (default 0: greedy, as evaluation wants).
    pub temperature: f64,
    /// Most tokens in one reply (default 256: a thought and an action).
    pub max_tokens: u32,
    /// Stop sequences (default `["\nObservation"]`: a model that starts imagining the
    /// world's answer is cut there).
    pub stop: Vec<String>,
    /// Seconds to wait for a whole response (default 60).
    pub timeout_secs: f64,
    /// Retries after a timeout, a connection failure, HTTP 429 or a 5xx (default 3).
    pub max_retries: u32,
    /// Seconds before the first retry; doubled each time (default 1).
    pub backoff_secs: f64,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            base_url: String::new(),
            model: "default".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            temperature: 0.0,
            max_tokens: 256,
            stop: vec!["\nObservation".into()],
            timeout_secs: 60.0,
            max_retries: 3,
            backoff_secs: 1.0,
        }
    }
}

/// A policy served over HTTP by an OpenAI-compatible chat-completions API, so models too
/// large for this engine can act in our worlds.
///
/// Each act is one `POST {base_url}/chat/completions` with the conversation as `messages`;
/// the reply is `choices[0].message.content`. Timeouts, connection failures, 429 and 5xx are
/// retried with exponential backoff; any other HTTP error fails at once (retrying a bad
/// request cannot help).
pub struct RemotePolicy {
    cfg: RemoteConfig,
    agent: ureq::Agent,
    api_key: Option<String>,
}

impl RemotePolicy {
    /// A remote policy; reads the API key from the configured environment variable now.
    pub fn new(cfg: RemoteConfig) -> Result<Self, PolicyError> {
        // Built without TLS (a pure-Rust HTTP client, no native libraries): the endpoints this
        // serves (vLLM, llama.cpp's server) listen on plain HTTP; a hosted API goes through a
        // local TLS proxy.
        if !cfg.base_url.starts_with("http://") {
            return Err(PolicyError::Backend {
                policy: "remote".into(),
                message: format!(
                    "base_url `{}` must start with http:// (this build has no TLS; put a local proxy in front of an https endpoint)",
                    cfg.base_url
                ),
            });
        }
        let timeout = Duration::from_secs_f64(cfg.timeout_secs.max(0.001));
        let agent = ureq::AgentBuilder::new().timeout(timeout).build();
        let api_key = std::env::var(&cfg.api_key_env).ok().filter(|k| !k.is_empty());
        Ok(RemotePolicy { cfg, agent, api_key })
    }

    /// The configuration.
    pub fn config(&self) -> &RemoteConfig {
        &self.cfg
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.cfg.base_url.trim_end_matches('/'))
    }

    /// The request body for one act.
    pub fn request_body(&self, conversation: &[Message], seed: u64) -> Value {
        let messages: Vec<Value> = conversation
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                json!({ "role": role, "content": m.content })
            })
            .collect();
        json!({
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
            "stop": self.cfg.stop,
            // Servers that honour it make sampled runs reproducible; the rest ignore it.
            // Kept within i64 for servers that parse it as a signed integer.
            "seed": seed >> 1,
            "n": 1,
            "stream": false,
        })
    }

    fn fail(&self, message: String) -> PolicyError {
        PolicyError::Backend { policy: self.name(), message }
    }

    fn call(&self, body: &Value) -> Result<String, PolicyError> {
        let url = self.url();
        let mut delay = self.cfg.backoff_secs.max(0.0);
        let mut attempt = 0;
        loop {
            let mut req = self.agent.post(&url).set("Content-Type", "application/json");
            if let Some(key) = &self.api_key {
                req = req.set("Authorization", &format!("Bearer {key}"));
            }
            let retryable = match req.send_json(body) {
                Ok(resp) => {
                    let value: Value = resp
                        .into_json()
                        .map_err(|e| self.fail(format!("{url}: response is not JSON: {e}")))?;
                    return extract_content(&value).ok_or_else(|| {
                        self.fail(format!(
                            "{url}: response has no choices[0].message.content: {value}"
                        ))
                    });
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    let msg = format!(
                        "{url}: HTTP {code}: {}",
                        text.chars().take(300).collect::<String>()
                    );
                    if code == 429 || code >= 500 {
                        msg
                    } else {
                        return Err(self.fail(msg));
                    }
                }
                Err(ureq::Error::Transport(t)) => format!("{url}: {t}"),
            };
            if attempt >= self.cfg.max_retries {
                return Err(
                    self.fail(format!("{retryable} (gave up after {} attempts)", attempt + 1))
                );
            }
            attempt += 1;
            tracing::warn!(attempt, error = %retryable, "remote policy: retrying in {delay:.2}s");
            std::thread::sleep(Duration::from_secs_f64(delay));
            delay *= 2.0;
        }
    }
}

fn extract_content(v: &Value) -> Option<String> {
    v.get("choices")?.get(0)?.get("message")?.get("content")?.as_str().map(str::to_string)
}

impl Policy for RemotePolicy {
    fn name(&self) -> String {
        format!("remote:{}", self.cfg.model)
    }

    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
        let body = self.request_body(ctx.conversation, ctx.seed);
        self.call(&body)
    }
}
