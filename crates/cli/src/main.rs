//! `stepagent`: turn expert demonstrations into better LLM agents with step-wise RL.

mod cmd;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    cmd::Cli::parse().run()
}
