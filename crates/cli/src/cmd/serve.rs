//! `stepagent env serve`: one world over HTTP with AgentGym's routes (see `stepagent-serve`).

use anyhow::Context;
use clap::Args;
use stepagent_env::registry;
use stepagent_serve::{ServeConfig, Server};

/// Serve a world over HTTP (AgentGym's environment routes, plus /health, expiry and a
/// session cap).
#[derive(Args)]
pub struct ServeArgs {
    /// The world to serve, e.g. `household`.
    #[arg(long)]
    world: String,
    /// The world's options as JSON, e.g. '{"tasks": "all"}'.
    #[arg(long, default_value = "null")]
    options: String,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 36001)]
    port: u16,
    /// Address to bind; the default serves this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Live sessions at most; /create answers 429 beyond.
    #[arg(long, default_value_t = 1024)]
    max_sessions: usize,
    /// Seconds a session may sit unused before it is closed.
    #[arg(long, default_value_t = 600)]
    idle_timeout: u64,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 16)]
    threads: usize,
}

impl ServeArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let options: serde_json::Value = serde_json::from_str(&self.options)
            .with_context(|| format!("--options is not JSON: {}", self.options))?;
        let world = registry::open(&self.world, &options)?;
        let config = ServeConfig {
            host: self.host,
            port: self.port,
            threads: self.threads,
            max_sessions: self.max_sessions,
            idle_timeout_secs: self.idle_timeout,
            ..ServeConfig::default()
        };
        let server = Server::start(world, config)?;
        println!("serving `{}` on {} (Ctrl-C to stop)", self.world, server.url());
        server.wait();
        Ok(())
    }
}
