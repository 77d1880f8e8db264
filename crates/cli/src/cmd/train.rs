//! `stepagent train CONFIG.toml`: SFT and one method (StepAgent-Implicit or -Inverse, PPO, ETO,
//! RFT, IPR) into `runs/<name>/`, resumable.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use stepagent_env::{registry, WorldRef};
use stepagent_lm::{fetch, Lm};
use stepagent_train::config::TrainConfig;
use stepagent_train::pipeline::{run_pipeline, Event, Summary};
use stepagent_train::run::RunDir;

use super::eval::styled_bar;

/// Arguments of `stepagent train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// The run config (TOML); see configs/ for examples.
    config: PathBuf,
    /// Continue a run even though its stored config differs from this one.
    #[arg(long)]
    force: bool,
    /// Folder that holds the runs.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
}

fn open_world(cfg: &TrainConfig) -> anyhow::Result<WorldRef> {
    let Some(name) = cfg.data.world.as_deref() else {
        bail!(
            "config key `data.world`: required (the world whose expert writes the training data)"
        );
    };
    open_named_world(name, cfg.data.world_options.as_ref())
        .with_context(|| format!("config key `data.world`: `{name}`"))
}

/// The world `name` with `options` (its own keys).
pub fn open_named_world(name: &str, options: Option<&toml::Table>) -> anyhow::Result<WorldRef> {
    // The policy crate's toy world is not in the registry (it exists for tests); it is
    // offered here too so a whole run can be tried in seconds.
    if name == "line" {
        return Ok(stepagent_policy::toy::LineWorld::default().shared());
    }
    let options = match options {
        Some(t) => serde_json::to_value(t).context("world options")?,
        None => serde_json::Value::Null,
    };
    Ok(registry::open(name, &options)?)
}

/// The model path of a config: a file or folder, or `default` (fetched once).
pub fn model_path(path: Option<&Path>, label: &str) -> anyhow::Result<PathBuf> {
    Ok(match path {
        None => bail!(
            "{label}: config key `model.path`: required (a .gguf file, a Hugging Face \
             directory, or `default`)"
        ),
        Some(p) if p.as_os_str() == "default" => {
            fetch::ensure_default_model(&mut |m| eprintln!("{m}"))?
        }
        Some(p) => p.to_path_buf(),
    })
}

/// Loads the base model at `model` as the training crate asks for it.
pub fn loader(model: &Path) -> impl Fn() -> Result<Lm, stepagent_train::TrainError> + '_ {
    move || {
        Lm::load(model).map_err(|e| stepagent_train::TrainError::Config {
            key: "model.path".into(),
            message: format!("loading {}: {e}", model.display()),
        })
    }
}

pub fn print_summary(s: &Summary) {
    println!(
        "\n{:<10} {:>14} {:>14} {:>16} {:>12} {:>12}",
        "point", "agree(held)", "agree(train)", "expert logp(held)", "seen", "unseen"
    );
    for p in &s.curve {
        let rate = |n: usize, d: usize| {
            if d == 0 {
                "-".to_string()
            } else {
                format!("{}/{} ({:.0}%)", n, d, 100.0 * n as f64 / d as f64)
            }
        };
        let succ = |x: Option<(usize, usize)>| x.map_or("-".to_string(), |(w, n)| rate(w, n));
        println!(
            "{:<10} {:>14} {:>14} {:>16.3} {:>12} {:>12}",
            p.label,
            rate(p.heldout.agreed, p.heldout.steps),
            p.train.map_or("-".to_string(), |a| rate(a.agreed, a.steps)),
            p.heldout.mean_expert_logp,
            succ(p.seen),
            succ(p.unseen),
        );
    }
    println!();
    for a in &s.alarms {
        println!(
            "health alarm in {}: {}",
            a["stage"].as_str().unwrap_or("?"),
            a["message"].as_str().unwrap_or("?")
        );
    }
    if let Some(why) = &s.stopped {
        println!("stopped early: {why}");
    }
    for (stage, secs) in &s.seconds {
        println!("{stage:<20} {secs:>8.1} s");
    }
}

impl TrainArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        let label = self.config.display().to_string();
        let cfg = TrainConfig::from_toml(&text).with_context(|| label.clone())?;
        run_training(&cfg, &label, &self.runs, self.force)?;
        Ok(())
    }
}

/// Runs (or continues) `cfg` into `runs/<name>/`, printing progress, the curve and the wall
/// times. `label` names where the config came from, in errors.
pub fn run_training(
    cfg: &TrainConfig,
    label: &str,
    runs: &Path,
    force: bool,
) -> anyhow::Result<Summary> {
    let world = open_world(cfg).with_context(|| label.to_string())?;
    let model = model_path(cfg.model.path.as_deref(), label)?;
    let dir = runs.join(&cfg.name);
    let run = RunDir::open(&dir, cfg, force)?;
    eprintln!("run {} (model {})", dir.display(), model.display());
    let load = loader(&model);
    let t0 = Instant::now();
    let mut progress = StageProgress::default();
    let mut observer = |e: &Event<'_>| {
        progress.observe(e, t0);
        Ok::<(), stepagent_train::TrainError>(())
    };
    let summary = run_pipeline(cfg, &run, &load, world.as_ref(), &mut observer)?;
    print_summary(&summary);
    println!("\nwritten: {} (report.md, plots/, summary.json)", dir.display());
    Ok(summary)
}

/// Progress of the running stage: a bar with an ETA over its units where it has them (drawn
/// on a terminal only), and a line per stage and per epoch or evaluation either way.
#[derive(Default)]
pub struct StageProgress {
    bar: Option<ProgressBar>,
}

impl StageProgress {
    pub fn observe(&mut self, e: &Event<'_>, t0: Instant) {
        let elapsed = || format!("{:.0} s", t0.elapsed().as_secs_f64());
        match e {
            Event::StageStart { stage, units } => {
                eprintln!("[{stage}] started at {}", elapsed());
                self.bar = units.map(|u| {
                    styled_bar(u, &format!("[{stage}] {{bar:30}} {{pos}}/{{len}}  ETA {{eta}}"))
                });
            }
            Event::Unit { done, of, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*of as u64);
                    bar.set_position(*done as u64);
                }
            }
            Event::Metrics(v) => {
                let kind = v["kind"].as_str().unwrap_or("");
                let shown = ["eval", "inspect", "explore", "sample", "disc", "health"];
                if kind.ends_with("epoch") || kind.starts_with("ppo/") || shown.contains(&kind) {
                    self.println(&format!("  {v}"));
                }
            }
            Event::StageDone { stage, seconds } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                if *seconds > 0.0 {
                    eprintln!("[{stage}] done in {seconds:.1} s (run at {})", elapsed());
                } else {
                    eprintln!("[{stage}] already done");
                }
            }
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
