//! `stepagent quickstart`: the whole pipeline on the default model, in one command: fetch the
//! model, expert data from the household world, SFT, one StepAgent-Implicit cycle, and base vs
//! SFT vs StepAgent on the same unseen tasks, into `runs/quickstart/` with its report.

use std::path::PathBuf;

use clap::Args;
use stepagent_train::config::TrainConfig;

use super::train::run_training;

/// The run config, compiled in so the command needs no file; `configs/quickstart.toml` is the
/// same run for `stepagent train`, and a starting point for changing it.
const CONFIG: &str = include_str!("../../../../configs/quickstart.toml");

#[derive(Args)]
pub struct QuickstartArgs {
    /// Folder that holds the runs.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// Continue a run even though its stored config differs from this one.
    #[arg(long)]
    force: bool,
}

/// The compiled-in quickstart config.
pub fn config() -> anyhow::Result<TrainConfig> {
    Ok(TrainConfig::from_toml(CONFIG)?)
}

impl QuickstartArgs {
    pub fn run(self) -> anyhow::Result<()> {
        eprintln!(
            "stepagent quickstart: SFT and one StepAgent-Implicit cycle on the household world \
             with the default model (about 20 minutes on two cores; rerun the same command \
             to continue after an interruption)"
        );
        let summary = run_training(&config()?, "the quickstart config", &self.runs, self.force)?;
        println!("\nreport: {}", self.runs.join(&summary.name).join("report.md").display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_config_and_every_shipped_config_parse() {
        let q = config().unwrap();
        assert_eq!((q.name.as_str(), q.cycles), ("quickstart", 1));
        assert_eq!(q.data.world.as_deref(), Some("household"));
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                // A comparison config (`stepagent compare`) lists its methods.
                let table: toml::Table = toml::from_str(&text).unwrap();
                let parsed = if table.contains_key("methods") {
                    stepagent_train::compare::CompareConfig::from_toml(&text).map(|_| ())
                } else {
                    TrainConfig::from_toml(&text).map(|_| ())
                };
                parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
}
