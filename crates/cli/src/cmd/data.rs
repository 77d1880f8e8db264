//! `stepagent data …`: trajectory files.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use stepagent_data::{stats, validate, Dataset, Severity, Shape};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Check a dataset (ETO/AgentGym SFT JSON, DPO JSON or JSONL transcripts) against ETO's
    /// layout; exits non-zero if any record is unusable.
    Validate {
        /// The file.
        file: PathBuf,
        /// Print at most this many issues.
        #[arg(long, default_value_t = 50)]
        max_issues: usize,
    },
    /// Counts, lengths, success and per-task-type figures of a dataset.
    Stats {
        /// The file.
        file: PathBuf,
        /// Print JSON instead of markdown.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite SFT or DPO JSON with turns in the other shape.
    Convert {
        /// The input file.
        input: PathBuf,
        /// The output file.
        output: PathBuf,
        /// The turn shape to write.
        #[arg(long, value_enum)]
        shape: ShapeArg,
    },
}

/// A turn shape on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum ShapeArg {
    /// {"from": "human"|"gpt", "value": …} (ETO, AgentGym)
    FromValue,
    /// {"role": "user"|"assistant", "content": …}
    RoleContent,
}

impl From<ShapeArg> for Shape {
    fn from(s: ShapeArg) -> Self {
        match s {
            ShapeArg::FromValue => Shape::FromValue,
            ShapeArg::RoleContent => Shape::RoleContent,
        }
    }
}

impl DataCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            DataCommand::Validate { file, max_issues } => {
                let name = file.display().to_string();
                let data = Dataset::load(&file)?;
                let issues = validate(&data, &name);
                for i in issues.iter().take(max_issues) {
                    println!("{i}");
                }
                if issues.len() > max_issues {
                    println!("… and {} more", issues.len() - max_issues);
                }
                let errors = issues.iter().filter(|i| i.severity == Severity::Error).count();
                let warnings = issues.len() - errors;
                println!(
                    "{name}: {} {} records, {errors} errors, {warnings} warnings",
                    data.len(),
                    data.kind()
                );
                if errors > 0 {
                    bail!("{name} has {errors} unusable records");
                }
                Ok(())
            }
            DataCommand::Stats { file, json } => {
                let data = Dataset::load(&file)?;
                let s = stats(&data);
                if json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    print!("{}", s.to_markdown());
                }
                Ok(())
            }
            DataCommand::Convert { input, output, shape } => {
                let data = Dataset::load(&input)?;
                if matches!(data, Dataset::Transcripts(_)) {
                    bail!(
                        "{}: transcripts have one shape; convert SFT or DPO JSON",
                        input.display()
                    );
                }
                data.save(&output, Some(shape.into()))?;
                println!("wrote {} {} records to {}", data.len(), data.kind(), output.display());
                Ok(())
            }
        }
    }
}
