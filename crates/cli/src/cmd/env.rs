//! `stepagent env …`: the worlds.

use clap::Subcommand;
use stepagent_env::registry;

#[derive(Subcommand)]
pub enum EnvCommand {
    /// List the registered worlds.
    List,
}

impl EnvCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            EnvCommand::List => {
                for e in registry::entries() {
                    println!("{:<12} {}", e.name, e.summary);
                }
                Ok(())
            }
        }
    }
}
