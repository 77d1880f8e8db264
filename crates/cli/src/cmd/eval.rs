//! `stepagent eval …`: evaluate a policy, or compare two reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use stepagent_env::{registry, Split, WorldRef};
use stepagent_eval::{
    compare_markdown, evaluate_with_examples, examples_from_file, load_report, pct, EvalConfig,
    PolicySpec,
};
use stepagent_lm::{Lm, LmPolicy, SamplingConfig};
use stepagent_policy::policies::{ExpertPolicy, RandomPolicy, RemoteConfig, RemotePolicy};
use stepagent_policy::react::HistoryConfig;
use stepagent_policy::runner::{Episode, RunConfig};
use stepagent_policy::Policy;

/// Evaluate a policy on a world's held-out tasks, or compare two reports.
#[derive(Args)]
pub struct EvalArgs {
    /// Compare two `report.json` files (B − A) instead of evaluating.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with = "policy")]
    pub compare: Option<Vec<PathBuf>>,
    /// The policy: expert, random, default (the default model), a model path, a recording
    /// (.json/.jsonl) to replay, or an http:// chat-completions base URL.
    #[arg(long, required_unless_present = "compare")]
    pub policy: Option<String>,
    #[command(flatten)]
    pub world: WorldArgs,
    /// Splits to evaluate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "seen,unseen")]
    pub split: Vec<String>,
    /// Tasks per split (the first N; default all).
    #[arg(short = 'n', long)]
    pub n: Option<usize>,
    /// Output directory for report.json, report.md and transcripts.jsonl
    /// (default runs/eval/<world>-<policy>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// SFT JSON whose first records are shown as in-context examples before every task.
    #[arg(long, value_name = "FILE")]
    pub examples: Option<PathBuf>,
    /// How many in-context examples to take from --examples.
    #[arg(long, default_value_t = 1)]
    pub num_examples: usize,
}

/// Which world, with which options.
#[derive(Args, Clone)]
pub struct WorldArgs {
    /// The world's registry name (see `stepagent env list`).
    #[arg(long, default_value = "household")]
    pub world: String,
    /// The world's options as JSON, e.g. '{"max_steps": 30}'.
    #[arg(long, value_name = "JSON")]
    pub world_options: Option<String>,
}

impl WorldArgs {
    pub fn open(&self) -> anyhow::Result<WorldRef> {
        open_world(&self.world, self.world_options.as_deref())
    }
}

/// Opens a registered world with options given as JSON text.
pub fn open_world(name: &str, options: Option<&str>) -> anyhow::Result<WorldRef> {
    let options = match options {
        Some(text) => serde_json::from_str(text)
            .with_context(|| format!("--world-options `{text}` is not JSON"))?,
        None => serde_json::Value::Null,
    };
    Ok(registry::open(name, &options)?)
}

/// How episodes run.
#[derive(Args, Clone)]
pub struct RunArgs {
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// The run seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Step limit per episode (default: the world's).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Show the agent only the last K turns after the first observation.
    #[arg(long, value_name = "K")]
    pub keep_last_turns: Option<usize>,
    /// Drop old turns until the conversation has at most this many characters.
    #[arg(long, value_name = "CHARS")]
    pub max_chars: Option<usize>,
}

impl RunArgs {
    pub fn config(&self) -> RunConfig {
        RunConfig {
            workers: self.workers,
            max_steps: self.max_steps,
            seed: self.seed,
            history: HistoryConfig {
                keep_last_turns: self.keep_last_turns,
                max_chars: self.max_chars,
            },
        }
    }
}

/// Options of a remote (http://) policy.
#[derive(Args, Clone)]
pub struct RemoteArgs {
    /// The model name the endpoint serves.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Environment variable with the API key.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Seconds to wait for one reply.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Retries on timeouts, 429 and 5xx.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
}

/// How a local model (`default`, a model path) writes its turns.
#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature of a local model (0: greedy, as evaluation usually is).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Most tokens a local model writes per turn (a ReAct turn is a thought and an action:
    /// ETO's expert turns are 20–60 tokens). The same default as training's evaluation.
    #[arg(long, default_value_t = 96)]
    pub max_new_tokens: usize,
    /// Episodes a local model plays in lockstep, their turns decoded as one batch: on a CPU
    /// a batch of 8 costs little more per step than one sequence (1: one episode at a time).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

impl SamplingArgs {
    /// The engine's sampling settings: one ReAct turn ([`SamplingConfig::react_turn`]).
    pub fn config(&self) -> SamplingConfig {
        SamplingConfig {
            max_batch: 1,
            ..SamplingConfig::react_turn(self.temperature, self.max_new_tokens)
        }
    }
}

/// The policy a `--policy` spec names; a model (`default` or a path) is loaded here, the
/// default one fetched on first use.
pub fn build_policy(
    spec: &str,
    remote: &RemoteArgs,
    sampling: &SamplingArgs,
) -> anyhow::Result<Box<dyn Policy>> {
    Ok(match PolicySpec::parse(spec) {
        PolicySpec::Expert => Box::new(ExpertPolicy),
        PolicySpec::Random => Box::new(RandomPolicy),
        PolicySpec::Replay(path) => Box::new(stepagent_eval::replay_from_file(&path)?),
        PolicySpec::Remote(url) => Box::new(RemotePolicy::new(RemoteConfig {
            base_url: url,
            model: remote.model.clone(),
            api_key_env: remote.api_key_env.clone(),
            timeout_secs: remote.timeout,
            max_retries: remote.retries,
            ..RemoteConfig::default()
        })?),
        PolicySpec::DefaultModel | PolicySpec::Model(_) => {
            let path = super::model::resolve_model(spec)?;
            let lm = Lm::load(&path).with_context(|| format!("loading {}", path.display()))?;
            Box::new(LmPolicy::new(Arc::new(lm), sampling.config()).with_batch(sampling.batch))
        }
    })
}

/// Whether `spec` names a model our engine runs on this machine.
pub fn is_local_model(spec: &str) -> bool {
    matches!(PolicySpec::parse(spec), PolicySpec::DefaultModel | PolicySpec::Model(_))
}

/// A progress bar over `len` episodes with a running success count; drawn only on a terminal.
pub fn progress(len: usize, what: &str) -> ProgressBar {
    styled_bar(
        len,
        &format!("{what} {{bar:30}} {{pos}}/{{len}} episodes  {{per_sec}}  ETA {{eta}}  {{msg}}"),
    )
}

/// A progress bar over `len` units drawn with an indicatif `template`.
pub fn styled_bar(len: usize, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(ProgressStyle::with_template(template).expect("the template is valid"));
    bar
}

/// Advances `bar` for a finished episode, keeping the success count in its message.
pub fn tick(bar: &ProgressBar, wins: &mut usize, e: &Episode) {
    *wins += usize::from(e.won);
    bar.inc(1);
    bar.set_message(format!("{wins} solved"));
}

pub fn parse_splits(names: &[String]) -> anyhow::Result<Vec<Split>> {
    names.iter().map(|s| s.parse::<Split>().map_err(anyhow::Error::from)).collect()
}

impl EvalArgs {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(paths) = &self.compare {
            return compare(&paths[0], &paths[1]);
        }
        let spec = self.policy.as_deref().expect("clap requires --policy without --compare");
        let policy = build_policy(spec, &self.remote, &self.sampling)?;
        let world = self.world.open()?;
        let mut run = self.run.config();
        if run.workers == 0 && is_local_model(spec) {
            // The engine already uses every core for one forward pass; parallel episodes
            // would only fight over them.
            run.workers = 1;
        }
        let cfg = EvalConfig { splits: parse_splits(&self.split)?, n: self.n, run };
        let out = self.out.clone().unwrap_or_else(|| {
            let clean: String = policy
                .name()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .collect();
            PathBuf::from(format!("runs/eval/{}-{clean}", world.name()))
        });
        let bar = progress(cfg.tasks(&*world).len(), "eval");
        let mut wins = 0;
        let examples = match &self.examples {
            Some(f) => examples_from_file(f, self.num_examples)?,
            None => Vec::new(),
        };
        let report =
            evaluate_with_examples(&*world, &*policy, &cfg, &examples, Some(&out), &mut |e| {
                tick(&bar, &mut wins, e)
            })?;
        bar.finish_and_clear();
        print!("{}", report.to_markdown());
        for s in &report.splits {
            eprintln!("{}: success {}", s.split, pct(&s.overall.success));
        }
        eprintln!("wrote {}/report.json, report.md, transcripts.jsonl", out.display());
        Ok(())
    }
}

fn compare(a: &Path, b: &Path) -> anyhow::Result<()> {
    let ra = load_report(a)?;
    let rb = load_report(b)?;
    print!("{}", compare_markdown(&ra, &rb, &a.display().to_string(), &b.display().to_string()));
    Ok(())
}
