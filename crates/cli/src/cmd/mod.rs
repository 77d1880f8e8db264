//! One file per subcommand; this file only lists them.

use clap::{Parser, Subcommand};

mod env;

/// Turn expert demonstrations into better LLM agents with step-wise reinforcement learning.
#[derive(Parser)]
#[command(name = "stepagent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Worlds: list them, play one, write expert trajectories.
    #[command(subcommand)]
    Env(env::EnvCommand),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Env(c) => c.run(),
        }
    }
}
