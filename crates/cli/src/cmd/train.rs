//! `stepagent train CONFIG.toml`: SFT and StepAgent-Implicit into `runs/<name>/`, resumable.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use stepagent_env::{registry, WorldRef};
use stepagent_lm::{fetch, Lm};
use stepagent_train::config::TrainConfig;
use stepagent_train::pipeline::{run_pipeline, Event, Summary};
use stepagent_train::run::RunDir;

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
    // The policy crate's toy world is not in the registry (it exists for tests); it is
    // offered here too so a whole run can be tried in seconds.
    if name == "line" {
        return Ok(stepagent_policy::toy::LineWorld::default().shared());
    }
    let options = match &cfg.data.world_options {
        Some(t) => serde_json::to_value(t).context("config key `data.world_options`")?,
        None => serde_json::Value::Null,
    };
    registry::open(name, &options).with_context(|| format!("config key `data.world`: `{name}`"))
}

fn print_summary(s: &Summary) {
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
    for (stage, secs) in &s.seconds {
        println!("{stage:<20} {secs:>8.1} s");
    }
}

impl TrainArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        let cfg =
            TrainConfig::from_toml(&text).with_context(|| format!("{}", self.config.display()))?;
        let world = open_world(&cfg).with_context(|| format!("{}", self.config.display()))?;
        let model = match cfg.model.path.as_deref() {
            None => bail!("{}: config key `model.path`: required (a .gguf file, a Hugging Face directory, or `default`)", self.config.display()),
            Some(p) if p.as_os_str() == "default" => fetch::ensure_default_model(&mut |m| eprintln!("{m}"))?,
            Some(p) => p.to_path_buf(),
        };
        let dir = self.runs.join(&cfg.name);
        let run = RunDir::open(&dir, &cfg, self.force)?;
        eprintln!("run {} (model {})", dir.display(), model.display());
        let mut lm = Lm::load(&model).with_context(|| format!("loading {}", model.display()))?;
        let mut started: Option<(String, Instant)> = None;
        let mut observer = |e: &Event<'_>| {
            match e {
                Event::StageStart { stage, units } => {
                    eprintln!(
                        "[{stage}] started{}",
                        units.map(|u| format!(" ({u} units)")).unwrap_or_default()
                    );
                    started = Some((stage.to_string(), Instant::now()));
                }
                Event::Unit { stage, done, of } => {
                    let eta = started.as_ref().filter(|(s, _)| s == stage).map(|(_, t0)| {
                        let per = t0.elapsed().as_secs_f64() / *done as f64;
                        per * (of - done) as f64
                    });
                    eprintln!(
                        "[{stage}] {done}/{of}{}",
                        eta.map(|s| format!(", ETA {s:.0} s")).unwrap_or_default()
                    );
                }
                Event::Metrics(v) => {
                    let kind = v["kind"].as_str().unwrap_or("");
                    if kind.ends_with("epoch") || kind == "eval" || kind == "inspect" {
                        eprintln!("  {v}");
                    }
                }
                Event::StageDone { stage, seconds } if *seconds > 0.0 => {
                    eprintln!("[{stage}] done in {seconds:.1} s")
                }
                Event::StageDone { stage, .. } => eprintln!("[{stage}] already done"),
            }
            Ok::<(), stepagent_train::TrainError>(())
        };
        let summary = run_pipeline(&cfg, &run, &mut lm, world.as_ref(), &mut observer)?;
        print_summary(&summary);
        println!("\nwritten: {}", dir.display());
        Ok(())
    }
}
