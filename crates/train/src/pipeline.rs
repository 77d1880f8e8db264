//! The whole run: expert data → SFT → K cycles of the configured method (StepAgent-Implicit:
//! inspection → reflection → evaluation; the others in [`crate::methods`]), each a stage of
//! the run directory, so a killed run continues from its last finished unit.
//!
//! Stages (`runs/<name>/stages/…`):
//! - `expert`: `train.json`, `heldout.json` (the expert trajectories: the world's expert, or
//!   the records of `data.expert_file` / `data.heldout_file`).
//! - `eval-base`: the untuned model's agreement (and success, if episodes are configured).
//! - `sft`: `trainable.safetensors` and per-epoch metrics; resumable by epoch.
//! - `eval-sft`: the curve's cycle 0.
//! - `cycle-K-inspect`: `triples.jsonl`, `stats.json`; resumable by trajectory.
//! - `cycle-K-reflect`: `reference.json` (cached reference log-probs),
//!   `trainable.safetensors`; resumable by epoch.
//! - `cycle-K-eval`: agreement and success after cycle K.
//! - The other methods' stages are listed in [`crate::methods`]; every method evaluates into
//!   `cycle-K-eval`, so their curves line up with Implicit's.
//!
//! Then `summary.json` (the agreement curve, success per stage, wall times) and, when
//! configured, the final model in Hugging Face layout under `checkpoints/final`.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepagent_env::{Split, TaskId, World};
use stepagent_eval::{EvalConfig, Metrics};
use stepagent_lm::{EpisodeCaches, Lm, SamplingConfig};
use stepagent_policy::runner::RunConfig;
use stepagent_policy::{ActContext, Policy, PolicyError};

use crate::agreement::{expert_agreement, Agreement};
use crate::config::{Finetune, Method, TrainConfig};
use crate::dpo::{cached_reference, reference_logps, train_step_dpo, Reference};
use crate::inspect::{inspect_all, InspectStats, InspectUnit, StepTriple};
use crate::model::{load_vars, restore_vars, snapshot_vars, StepModel};
use crate::run::{write_atomic, MetricsLog, RunDir, UnitLog};
use crate::sft::train_sft;
use crate::traj::{from_file, from_world_expert, Trajectory};
use crate::TrainError;

/// What a run reports as it goes (for progress bars and logs). An error returned by the
/// observer stops the run as a kill would: what finished stays saved.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage starts (it was not finished before).
    StageStart {
        /// Its name.
        stage: &'a str,
        /// Units of work it has, when known.
        units: Option<usize>,
    },
    /// A unit of the running stage finished.
    Unit {
        /// The stage.
        stage: &'a str,
        /// Units done.
        done: usize,
        /// Units in all.
        of: usize,
    },
    /// A metrics record was logged.
    Metrics(&'a Value),
    /// A stage finished (or was found finished).
    StageDone {
        /// Its name.
        stage: &'a str,
        /// Seconds it took in this process (0 when it was finished before).
        seconds: f64,
    },
}

/// One evaluation point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// `base`, `sft`, `cycle-1` …
    pub label: String,
    /// Agreement on the held-out expert prefixes.
    pub heldout: Agreement,
    /// Agreement on the training prefixes, when measured.
    pub train: Option<Agreement>,
    /// Success on seen tasks, when episodes ran: (successes, episodes).
    pub seen: Option<(usize, usize)>,
    /// Success on unseen tasks, when episodes ran.
    pub unseen: Option<(usize, usize)>,
    /// Mean reward on seen tasks.
    pub seen_reward: Option<f64>,
    /// Mean reward on unseen tasks.
    pub unseen_reward: Option<f64>,
    /// Every figure of the seen episodes (steps, invalid-action and format-error rates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_metrics: Option<Metrics>,
    /// Every figure of the unseen episodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseen_metrics: Option<Metrics>,
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The run's name.
    pub name: String,
    /// Evaluation points in order: base, sft, cycle-1 … (the agreement curve).
    pub curve: Vec<EvalPoint>,
    /// Inspection totals per cycle.
    pub inspections: Vec<InspectStats>,
    /// Last-epoch metrics of each training stage, by stage.
    pub training: Vec<(String, Value)>,
    /// Wall seconds per stage (as recorded when the stage ran).
    pub seconds: Vec<(String, f64)>,
    /// Optimizer steps taken on the policy after SFT, all cycles together (the budget
    /// `stepagent compare` matches methods on).
    #[serde(default)]
    pub updates: usize,
    /// Health alarms raised by RL stages (`metrics.jsonl` records of kind `health`).
    #[serde(default)]
    pub alarms: Vec<Value>,
    /// Why the method stopped before its last cycle (a health alarm under `stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// A greedy agent over a borrowed engine, for evaluation episodes; each episode's KV cache is
/// kept between its turns. Made anew for every evaluation, so no cache outlives the weights
/// it was computed with.
struct GreedyAgent<'a> {
    lm: &'a Lm,
    sampling: SamplingConfig,
    caches: EpisodeCaches,
    /// Episodes played in lockstep, their turns decoded as one batch.
    batch: usize,
}

impl Policy for GreedyAgent<'_> {
    fn name(&self) -> String {
        format!("lm:{}", stepagent_lm::ChatModel::name(self.lm))
    }

    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
        let mut out = self.act_batch(std::slice::from_ref(ctx));
        out.pop().unwrap_or_else(|| {
            Err(PolicyError::Backend { policy: self.name(), message: "no reply".into() })
        })
    }

    fn batch_width(&self) -> usize {
        self.batch
    }

    fn act_batch(&self, ctxs: &[ActContext<'_>]) -> Vec<Result<String, PolicyError>> {
        self.caches.act_batch(self.lm, &self.name(), ctxs, &self.sampling)
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::file(path, e))
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::file(path, e))?;
    Ok(write_atomic(path, text.as_bytes())?)
}

/// What every stage of a run shares: the config, the run directory, the metrics log, the
/// observer and the wall times recorded so far.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a TrainConfig,
    pub run: &'a RunDir,
    metrics: MetricsLog,
    pub observer: &'a mut dyn FnMut(&Event<'_>) -> Result<(), TrainError>,
    seconds: Vec<(String, f64)>,
}

impl Ctx<'_> {
    /// Appends a metrics record of `stage` and `kind` (the fields of `value` merged in).
    pub fn log(&mut self, stage: &str, kind: &str, value: &Value) -> Result<(), TrainError> {
        let mut rec = json!({"stage": stage, "kind": kind});
        if let (Some(r), Some(v)) = (rec.as_object_mut(), value.as_object()) {
            r.extend(v.clone());
        }
        self.metrics.log(&rec)?;
        (self.observer)(&Event::Metrics(&rec))
    }

    /// Runs `build` as stage `name` unless finished; records its wall time in the stage.
    pub fn stage(
        &mut self,
        name: &str,
        units: Option<usize>,
        build: impl FnOnce(&mut Self, &Path) -> Result<(), TrainError>,
    ) -> Result<std::path::PathBuf, TrainError> {
        if let Some(dir) = self.run.finished_stage(name) {
            let secs = read_json::<Value>(&dir.join("timing.json"))
                .ok()
                .and_then(|v| v["seconds"].as_f64())
                .unwrap_or(0.0);
            self.seconds.push((name.to_string(), secs));
            (self.observer)(&Event::StageDone { stage: name, seconds: 0.0 })?;
            return Ok(dir);
        }
        (self.observer)(&Event::StageStart { stage: name, units })?;
        let t0 = Instant::now();
        let run = self.run;
        let dir = run.stage::<TrainError>(name, |dir| {
            build(self, dir)?;
            write_json(&dir.join("timing.json"), &json!({"seconds": t0.elapsed().as_secs_f64()}))
        })?;
        let secs = t0.elapsed().as_secs_f64();
        self.seconds.push((name.to_string(), secs));
        self.log(name, "stage", &json!({"seconds": secs}))?;
        (self.observer)(&Event::StageDone { stage: name, seconds: secs })?;
        Ok(dir)
    }
}

/// The untuned, SFT or cycle-K agent measured: agreement on the expert prefixes, then (when
/// the config asks for episodes) each split played greedily through the evaluation suite,
/// which writes `<split>/transcripts.jsonl`, `report.json` and `report.md` under `dir`, so the
/// failure modes behind a point (format errors, invalid actions, loops) can be read.
fn evaluate(
    lm: &Lm,
    cfg: &TrainConfig,
    world: Option<&dyn World>,
    train: &[Trajectory],
    heldout: &[Trajectory],
    label: &str,
    dir: &Path,
) -> Result<EvalPoint, TrainError> {
    let ev = &cfg.eval;
    let mut p = EvalPoint { label: label.to_string(), ..EvalPoint::default() };
    p.heldout = expert_agreement(lm, heldout, ev.max_new_tokens)?;
    if ev.train_agreement {
        p.train = Some(expert_agreement(lm, train, ev.max_new_tokens)?);
    }
    if let Some(world) = world {
        let agent = GreedyAgent {
            lm,
            sampling: SamplingConfig::react_turn(0.0, ev.max_new_tokens),
            caches: EpisodeCaches::new(stepagent_lm::engine::EPISODE_CACHES.max(ev.batch)),
            batch: ev.batch.max(1),
        };
        let run = RunConfig {
            workers: 1,
            max_steps: ev.max_steps,
            seed: ev.seed,
            ..RunConfig::default()
        };
        for (split, n) in [(Split::Seen, ev.seen_tasks), (Split::Unseen, ev.unseen_tasks)] {
            if n.min(world.num_tasks(split)) == 0 {
                continue;
            }
            let suite = EvalConfig { splits: vec![split], n: Some(n), run: run.clone() };
            let out = dir.join(split.to_string());
            let report = stepagent_eval::evaluate(world, &agent, &suite, Some(&out), &mut |_| {})?;
            let Some(m) = report.splits.first().map(|r| r.overall) else { continue };
            let won = (m.success.k as usize, m.episodes as usize);
            if split == Split::Seen {
                (p.seen, p.seen_reward, p.seen_metrics) = (Some(won), Some(m.reward.mean), Some(m));
            } else {
                (p.unseen, p.unseen_reward, p.unseen_metrics) =
                    (Some(won), Some(m.reward.mean), Some(m));
            }
        }
    }
    Ok(p)
}

/// Evaluation as stage `name` (skipped when finished, its stored point returned).
pub(crate) fn eval_stage(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    world: &dyn World,
    train: &[Trajectory],
    heldout: &[Trajectory],
    name: &str,
    label: &str,
) -> Result<EvalPoint, TrainError> {
    let cfg = cx.cfg;
    let dir = cx.stage(name, None, |cx, dir| {
        let p = evaluate(lm, cfg, Some(world), train, heldout, label, dir)?;
        cx.log(name, "eval", &serde_json::to_value(&p).expect("plain data"))?;
        write_json(&dir.join("eval.json"), &p)
    })?;
    read_json(&dir.join("eval.json"))
}

/// Loads a fresh copy of the base model (the policy; StepAgent-Inverse's discriminator
/// backbone is a second copy).
pub type LoadModel<'a> = &'a dyn Fn() -> Result<Lm, TrainError>;

/// Makes `lm` trainable as the config says (LoRA adapters or every weight).
pub(crate) fn make_trainable(cfg: &TrainConfig, lm: &mut Lm) -> Result<(), TrainError> {
    match cfg.model.finetune {
        Finetune::Lora => lm.enable_lora(&cfg.model.lora)?,
        Finetune::Full => lm.enable_full_finetuning()?,
    }
    Ok(())
}

/// Runs (or continues) the whole pipeline of `cfg` in `run`. `load` gives the base model
/// (LoRA or full fine-tuning is enabled here); `world` must be the world `cfg.data.world`
/// names.
pub fn run_pipeline(
    cfg: &TrainConfig,
    run: &RunDir,
    load: LoadModel<'_>,
    world: &dyn World,
    observer: &mut dyn FnMut(&Event<'_>) -> Result<(), TrainError>,
) -> Result<Summary, TrainError> {
    cfg.validate()?;
    let mut policy = load()?;
    let lm = &mut policy;
    make_trainable(cfg, lm)?;
    let mut cx = Ctx { cfg, run, metrics: run.metrics()?, observer, seconds: Vec::new() };

    // Expert data.
    let dir = cx.stage("expert", None, |cx, dir| {
        let d = &cfg.data;
        let (train, skipped_train) = match &d.expert_file {
            Some(f) => from_file(f, d.train_tasks, d.bad_records)?,
            None => {
                let n = d.train_tasks.min(world.num_tasks(Split::Train));
                let tasks: Vec<TaskId> = (0..n).map(|i| TaskId::new(Split::Train, i)).collect();
                (from_world_expert(world, &tasks, d.seed, d.workers)?, 0)
            }
        };
        let (heldout, skipped_heldout) = match &d.heldout_file {
            Some(f) => from_file(f, d.heldout_tasks, d.bad_records)?,
            None => {
                let split = d.heldout_split;
                let h = d.heldout_tasks.min(world.num_tasks(split));
                let tasks: Vec<TaskId> = (0..h).map(|i| TaskId::new(split, i)).collect();
                (from_world_expert(world, &tasks, d.seed, d.workers)?, 0)
            }
        };
        let counts = json!({
            "train": train.len(),
            "heldout": heldout.len(),
            "skipped_train_records": skipped_train,
            "skipped_heldout_records": skipped_heldout,
        });
        cx.log("expert", "data", &counts)?;
        write_json(&dir.join("train.json"), &train)?;
        write_json(&dir.join("heldout.json"), &heldout)
    })?;
    let train: Vec<Trajectory> = read_json(&dir.join("train.json"))?;
    let heldout: Vec<Trajectory> = read_json(&dir.join("heldout.json"))?;
    if train.is_empty() {
        return Err(TrainError::config(
            "data.train_tasks",
            "the expert solved none of the training tasks",
        ));
    }
    let vars = lm.trainable();
    let mut summary = Summary { name: cfg.name.clone(), ..Summary::default() };

    if cfg.eval.base {
        summary.curve.push(eval_stage(&mut cx, lm, world, &train, &heldout, "eval-base", "base")?);
    }

    // SFT.
    let sft_dir = {
        let lm_ref: &Lm = lm;
        cx.stage("sft", Some(cfg.sft.epochs), |cx, dir| {
            let mut log = |kind: &str, v: &Value| cx.log("sft", kind, v);
            let epochs = train_sft(lm_ref, &train, &heldout, &cfg.sft, dir, &mut log)?;
            write_json(&dir.join("epochs.json"), &epochs)
        })?
    };
    load_vars(&sft_dir.join("trainable.safetensors"), &vars)?;
    if let Some(last) = read_json::<Vec<Value>>(&sft_dir.join("epochs.json"))?.pop() {
        summary.training.push(("sft".into(), last));
    }
    summary.curve.push(eval_stage(&mut cx, lm, world, &train, &heldout, "eval-sft", "sft")?);

    let shared = crate::methods::Shared {
        world,
        train: &train,
        heldout: &heldout,
        sft_weights: sft_dir.join("trainable.safetensors"),
        vars: vars.clone(),
        load,
    };
    let mut health = crate::methods::Health::new(&cfg.health)?;
    match cfg.method {
        Method::Sft => {}
        Method::StepagentImplicit => implicit_cycles(&mut cx, lm, &shared, &mut summary)?,
        Method::StepagentInverse => {
            crate::methods::inverse::run(&mut cx, lm, &shared, &mut health, &mut summary)?
        }
        Method::Ppo => {
            crate::methods::outcome_ppo::run(&mut cx, lm, &shared, &mut health, &mut summary)?
        }
        Method::Eto => crate::methods::eto::run(&mut cx, lm, &shared, &mut health, &mut summary)?,
        Method::Rft => crate::methods::rft::run(&mut cx, lm, &shared, &mut health, &mut summary)?,
        Method::Ipr => crate::methods::ipr::run(&mut cx, lm, &shared, &mut health, &mut summary)?,
    }

    if cfg.model.save_final {
        let dir = run.path().join("checkpoints").join("final");
        if !dir.join("config.json").exists() || !dir.join("model.safetensors").exists() {
            lm.save(&dir)?;
        }
    }
    summary.seconds = cx.seconds.clone();
    summary.alarms = crate::methods::logged_alarms(run.path())?;
    write_json(&run.path().join("summary.json"), &summary)?;
    // The report is derived from files already saved; failing to draw it must not fail a
    // finished run.
    if let Err(e) = crate::report::write_report(run.path(), &summary) {
        tracing::warn!(error = %e, "could not write the run's report.md and plots");
    }
    Ok(summary)
}

/// Inspection of cycle `k` as stage `cycle-K-inspect` (resumable by trajectory): the triples,
/// with the cycle's totals pushed into `summary`.
pub(crate) fn inspect_stage(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    shared: &crate::methods::Shared<'_>,
    k: usize,
    checkpoint: &str,
    summary: &mut Summary,
) -> Result<Vec<StepTriple>, TrainError> {
    let cfg = cx.cfg;
    let (world, train) = (shared.world, shared.train);
    let name = format!("cycle-{k}-inspect");
    let dir = cx.stage(&name, Some(train.len()), |cx, dir| {
        let mut log = UnitLog::<InspectUnit>::open(&dir.join("units.jsonl"))?;
        let (triples, stats) = inspect_all(
            lm,
            train,
            &cfg.inspect,
            k,
            checkpoint,
            Some(world),
            &mut log,
            &mut |done, of| (cx.observer)(&Event::Unit { stage: &name, done, of }),
        )?;
        let mut lines = String::new();
        for t in &triples {
            lines.push_str(&serde_json::to_string(t).expect("plain data"));
            lines.push('\n');
        }
        write_atomic(&dir.join("triples.jsonl"), lines.as_bytes())?;
        cx.log(&name, "inspect", &serde_json::to_value(&stats).expect("plain data"))?;
        write_json(&dir.join("stats.json"), &stats)
    })?;
    let path = dir.join("triples.jsonl");
    let triples: Vec<StepTriple> = std::fs::read_to_string(&path)
        .map_err(|e| TrainError::file(&path, e))?
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::file(&path, format!("line {}: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    summary.inspections.push(read_json(&dir.join("stats.json"))?);
    Ok(triples)
}

/// Loads a finished training stage's weights into the policy and records its last-epoch
/// metrics and optimizer steps in `summary`.
pub(crate) fn adopt_stage(
    dir: &Path,
    name: &str,
    vars: &[(String, candle_core::Var)],
    summary: &mut Summary,
) -> Result<(), TrainError> {
    load_vars(&dir.join("trainable.safetensors"), vars)?;
    if let Some(last) = read_json::<Vec<Value>>(&dir.join("epochs.json"))?.pop() {
        summary.updates += last["steps"].as_u64().unwrap_or(0) as usize;
        summary.training.push((name.to_string(), last));
    }
    Ok(())
}

/// StepAgent-Implicit: K cycles of inspection → step-DPO reflection → evaluation.
fn implicit_cycles(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    shared: &crate::methods::Shared<'_>,
    summary: &mut Summary,
) -> Result<(), TrainError> {
    let cfg = cx.cfg;
    let (world, train, heldout, vars) = (shared.world, shared.train, shared.heldout, &shared.vars);
    let mut checkpoint = "stages/sft".to_string();
    for k in 1..=cfg.cycles {
        let triples = inspect_stage(cx, lm, shared, k, &checkpoint, summary)?;
        let name = format!("cycle-{k}-reflect");
        let dir = cx.stage(&name, Some(cfg.reflect.epochs), |cx, dir| {
            let reference = cached_reference(dir, triples.len(), || match cfg.reflect.reference {
                Reference::CycleStart => {
                    reference_logps(lm, train, &triples, cfg.reflect.pairs_per_pass)
                }
                Reference::Sft => {
                    let now = snapshot_vars(vars)?;
                    load_vars(&shared.sft_weights, vars)?;
                    let r = reference_logps(lm, train, &triples, cfg.reflect.pairs_per_pass);
                    restore_vars(vars, &now)?;
                    r
                }
            })?;
            let mut log = |kind: &str, v: &Value| cx.log(&name, kind, v);
            let epochs =
                train_step_dpo(lm, train, &triples, &reference, &cfg.reflect, dir, &mut log)?;
            write_json(&dir.join("epochs.json"), &epochs)
        })?;
        adopt_stage(&dir, &name, vars, summary)?;
        checkpoint = format!("stages/{name}");
        let eval = format!("cycle-{k}-eval");
        summary.curve.push(eval_stage(
            cx,
            lm,
            world,
            train,
            heldout,
            &eval,
            &format!("cycle-{k}"),
        )?);
    }
    Ok(())
}
