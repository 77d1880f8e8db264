//! One file per subcommand; this file only lists them.

use clap::{Parser, Subcommand};

mod chat;
mod compare;
mod data;
mod demo;
mod env;
mod eval;
mod model;
mod quickstart;
mod serve;
mod train;

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
    /// Trajectory files: validate, summarise, convert.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Evaluate a policy on held-out tasks (report.json, report.md, transcripts), or compare reports.
    Eval(eval::EvalArgs),
    /// The main job on the embedded default: expert data, SFT and one StepAgent-Implicit cycle
    /// on the household world with the default model, evaluated against the base model.
    Quickstart(quickstart::QuickstartArgs),
    /// Expert vs random play in the household world (seconds; no model).
    Demo(demo::DemoArgs),
    /// Train an agent (SFT, StepAgent-Implicit or -Inverse, PPO, ETO, RFT, IPR) from a TOML
    /// run config into runs/<name>/; rerunning a killed run continues it.
    Train(train::TrainArgs),
    /// Compare methods from one SFT checkpoint per world: a success table with 95% intervals
    /// (runs/<name>/compare/); rerunning continues, finished methods are skipped.
    Compare(compare::CompareArgs),
    /// Language models: fetch the default one, inspect one.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Chat with a model, one-shot or interactively.
    Chat(chat::ChatArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Env(c) => c.run(),
            Command::Data(c) => c.run(),
            Command::Eval(a) => a.run(),
            Command::Quickstart(a) => a.run(),
            Command::Demo(a) => a.run(),
            Command::Train(a) => a.run(),
            Command::Compare(a) => a.run(),
            Command::Model(c) => c.run(),
            Command::Chat(a) => a.run(),
        }
    }
}
