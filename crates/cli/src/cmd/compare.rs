//! `stepagent compare CONFIG.toml`: several methods from one SFT checkpoint per world into
//! `runs/<name>/`, with `compare/table.md`, `table.json` and `curves.svg`; resumable, and a
//! method whose run finished is not run again.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use stepagent_train::compare::{run_compare, CompareConfig, CompareEvent, Table};
use stepagent_train::TrainError;

use super::train::{loader, model_path, open_named_world, StageProgress};

/// Arguments of `stepagent compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// The comparison config (TOML); see configs/line-compare.toml.
    config: PathBuf,
    /// Continue even though a stored config differs from this one.
    #[arg(long)]
    force: bool,
    /// Folder that holds the runs.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
}

impl CompareArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        let label = self.config.display().to_string();
        let cfg = CompareConfig::from_toml(&text).with_context(|| label.clone())?;
        let model = model_path(cfg.run.model.path.as_deref(), &label)?;
        let load = loader(&model);
        let open = |w: &stepagent_train::compare::CompareWorld| {
            open_named_world(&w.name, w.options.as_ref()).map_err(|e| TrainError::Config {
                key: "worlds".into(),
                message: format!("`{}`: {e:#}", w.name),
            })
        };
        let t0 = Instant::now();
        let mut progress = StageProgress::default();
        let mut observer = |e: &CompareEvent<'_>| {
            match e {
                CompareEvent::RunStart { world, method } => {
                    eprintln!("== {world} / {} ==", method.label())
                }
                CompareEvent::RunSkipped { world, method } => {
                    eprintln!("== {world} / {}: finished before, skipped ==", method.label())
                }
                CompareEvent::Pipeline(p) => progress.observe(p, t0),
            }
            Ok::<(), TrainError>(())
        };
        let table = run_compare(&cfg, &self.runs, &load, &open, self.force, &mut observer)
            .with_context(|| label.clone())?;
        print_table(&table);
        let out = self.runs.join(&cfg.name).join("compare");
        println!("\nwritten: {} (table.md, table.json, curves.svg)", out.display());
        Ok(())
    }
}

fn print_table(t: &Table) {
    print!("\n{:<20}", "method");
    for (w, s) in &t.columns {
        print!(" {:>24}", format!("{w}/{s}"));
    }
    println!();
    for r in &t.rows {
        print!("{:<20}", r.label);
        for c in &r.cells {
            let text = match c {
                None => "-".to_string(),
                Some(c) => {
                    let x = &c.success;
                    format!(
                        "{:.0}% [{:.0},{:.0}] {}/{}",
                        100.0 * x.rate,
                        100.0 * x.lo,
                        100.0 * x.hi,
                        x.k,
                        x.n
                    )
                }
            };
            print!(" {text:>24}");
        }
        println!();
    }
}
