//! StepAgent-Implicit reflection: step-level DPO over the inspection's triples, the expert
//! turn preferred, against a frozen reference policy.
//!
//! All pairs of one trajectory are computed together: the chosen turns come from one forward
//! over the expert trajectory, the rejected turns from one batched forward over the branches
//! (the expert prefix followed by the agent's turn). Reference log-probs are computed once
//! per cycle, before the first update, and cached in the stage folder.

mod loss;

pub use loss::{merge_metrics, step_dpo_loss, DpoMetrics, PairLogps};

use std::cell::RefCell;
use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepagent_lm::OptimConfig;

use crate::epochs::{run_epochs, Schedule, Tick};
use crate::inspect::{groups, Group, StepTriple};
use crate::model::{StepModel, TurnScores};
use crate::optim::Optimizer;
use crate::run::write_atomic;
use crate::sft::validate_optim;
use crate::traj::Trajectory;
use crate::TrainError;

/// Which frozen policy the implicit reward is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// The policy at the start of the cycle (our default).
    #[default]
    CycleStart,
    /// The SFT model.
    Sft,
}

/// Reflection (step-DPO) settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReflectConfig {
    /// β of the implicit reward β log π_θ/π_ref. Default 0.1.
    pub beta: f64,
    /// Weight of an extra NLL term on the expert turn (per token). Default 0 (off).
    pub nll_weight: f64,
    /// The frozen reference. Default `cycle-start`.
    pub reference: Reference,
    /// Passes over the triples per cycle. Default 1.
    pub epochs: usize,
    /// Trajectories (with all their pairs) per optimizer step. Default 4.
    pub batch: usize,
    /// Pairs of one trajectory scored in one forward pass (its history once, the agent's
    /// turns packed after it; 0: all of them). Memory grows with the square of a pass's
    /// length: on SmolLM2 a household trajectory with all ~8 pairs packed (~1,300 tokens)
    /// took 24 GB with gradients and was killed; 2 keeps a pass near the trajectory's own
    /// length. Exact either way: each pair's loss lies within one pass. Default 2.
    pub pairs_per_pass: usize,
    /// AdamW and its schedule (`total_steps = 0`: cosine over the cycle). Default lr 5e-5,
    /// warmup 1 step, clip 1.0.
    pub optim: OptimConfig,
    /// Seed of the shuffling. Default 0.
    pub seed: u64,
}

impl Default for ReflectConfig {
    fn default() -> Self {
        ReflectConfig {
            beta: 0.1,
            nll_weight: 0.0,
            reference: Reference::CycleStart,
            epochs: 1,
            batch: 4,
            pairs_per_pass: 2,
            optim: OptimConfig { lr: 5e-5, warmup_steps: 1, ..OptimConfig::default() },
            seed: 0,
        }
    }
}

impl ReflectConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(TrainError::config("reflect.beta", "must be a positive number"));
        }
        if self.nll_weight < 0.0 {
            return Err(TrainError::config("reflect.nll_weight", "must be >= 0"));
        }
        if self.batch == 0 {
            return Err(TrainError::config("reflect.batch", "must be at least 1"));
        }
        validate_optim(&self.optim, "reflect.optim")
    }
}

/// Reference log-probs of one triple.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RefLogps {
    /// log π_ref(a*|h).
    pub chosen: f32,
    /// log π_ref(â|h).
    pub rejected: f32,
}

/// Chosen and rejected log-probs of a group's pairs, in the group's triple order.
fn group_logps(
    model: &dyn StepModel,
    g: &Group<'_>,
    all: &[StepTriple],
    grad: bool,
) -> Result<(TurnScores, TurnScores), TrainError> {
    let conv = &g.traj.conversation;
    let turns: Vec<usize> = g.triples.iter().map(|&i| all[i].turn).collect();
    // The expert pass scores each distinct turn once; pairs index into it.
    let mut distinct = turns.clone();
    distinct.sort_unstable();
    distinct.dedup();
    // One pass: the expert's turns (each distinct one once) and the agent's turns packed as
    // branches off the same history.
    let branches: Vec<(usize, &str)> =
        g.triples.iter().map(|&i| (all[i].turn, all[i].agent.as_str())).collect();
    let (chosen, rejected) = model.score_with_branches(conv, &distinct, &branches, grad)?;
    let pick: Vec<u32> =
        turns.iter().map(|t| distinct.binary_search(t).expect("listed") as u32).collect();
    let idx = candle_core::Tensor::new(pick.as_slice(), chosen.logp.device())?;
    let chosen = TurnScores {
        logp: chosen.logp.index_select(&idx, 0)?,
        tokens: pick.iter().map(|&k| chosen.tokens[k as usize]).collect(),
    };
    Ok((chosen, rejected))
}

/// Reference log-probs of every triple under the model as it is now (no gradients).
pub fn reference_logps(
    model: &dyn StepModel,
    trajectories: &[Trajectory],
    triples: &[StepTriple],
    pairs_per_pass: usize,
) -> Result<Vec<RefLogps>, TrainError> {
    let mut out = vec![RefLogps { chosen: 0.0, rejected: 0.0 }; triples.len()];
    let all = groups(trajectories, triples, 0..triples.len())?;
    for g in all.iter().flat_map(|g| g.passes(triples, pairs_per_pass)) {
        let (c, r) = group_logps(model, &g, triples, false)?;
        let (c, r) = (c.logp.to_vec1::<f32>()?, r.logp.to_vec1::<f32>()?);
        for (k, &i) in g.triples.iter().enumerate() {
            out[i] = RefLogps { chosen: c[k], rejected: r[k] };
        }
    }
    Ok(out)
}

/// Reference log-probs cached in `dir/reference.json`: computed by `compute` the first time,
/// read back on a rerun.
pub fn cached_reference(
    dir: &Path,
    triples: usize,
    compute: impl FnOnce() -> Result<Vec<RefLogps>, TrainError>,
) -> Result<Vec<RefLogps>, TrainError> {
    let path = dir.join("reference.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let r: Vec<RefLogps> =
            serde_json::from_str(&text).map_err(|e| TrainError::file(&path, e))?;
        if r.len() == triples {
            return Ok(r);
        }
        tracing::warn!(path = %path.display(), "reference cache does not match the triples; recomputing");
    }
    let r = compute()?;
    let text = serde_json::to_string(&r).map_err(|e| TrainError::file(&path, e))?;
    write_atomic(&path, text.as_bytes())?;
    Ok(r)
}

/// Step-DPO over `triples` into stage folder `dir` (resumable by epoch), against the cached
/// reference log-probs `reference` (one per triple). Returns each epoch's metrics.
pub fn train_step_dpo(
    model: &dyn StepModel,
    trajectories: &[Trajectory],
    triples: &[StepTriple],
    reference: &[RefLogps],
    cfg: &ReflectConfig,
    dir: &Path,
    metrics: &mut dyn FnMut(&str, &Value) -> Result<(), TrainError>,
) -> Result<Vec<Value>, TrainError> {
    cfg.validate()?;
    if reference.len() != triples.len() {
        return Err(TrainError::config(
            "reflect",
            "one reference log-prob pair per triple is needed",
        ));
    }
    let groups = groups(trajectories, triples, 0..triples.len())?;
    let sched = Schedule {
        epochs: cfg.epochs,
        items: groups.len(),
        batch: cfg.batch,
        seed: cfg.seed,
        groups: None,
    };
    let mut batch = |batch: &[usize], step: &mut PartStep<'_>| -> Result<(), TrainError> {
        let total: usize = batch.iter().map(|&g| groups[g].triples.len()).sum();
        for g in batch.iter().flat_map(|&gi| groups[gi].passes(triples, cfg.pairs_per_pass)) {
            let (c, r) = group_logps(model, &g, triples, true)?;
            let ref_c: Vec<f32> = g.triples.iter().map(|&i| reference[i].chosen).collect();
            let ref_r: Vec<f32> = g.triples.iter().map(|&i| reference[i].rejected).collect();
            let pairs = PairLogps {
                policy_chosen: &c.logp,
                policy_rejected: &r.logp,
                ref_chosen: &ref_c,
                ref_rejected: &ref_r,
                chosen_tokens: &c.tokens,
            };
            let scale = g.triples.len() as f64 / total as f64;
            step(step_dpo_loss(&pairs, cfg.beta, cfg.nll_weight, scale)?)?;
        }
        Ok(())
    };
    dpo_epochs(model, &sched, &cfg.optim, "reflect", dir, metrics, &mut batch)
}

/// Takes one part of a batch's loss (already scaled to its share of the batch) and its
/// metrics: runs its backward at once, so no two parts' graphs are alive together.
pub(crate) type PartStep<'a> = dyn FnMut((Tensor, DpoMetrics)) -> Result<(), TrainError> + 'a;

/// One batch (item indices) of a DPO-style objective, its loss handed over in parts.
pub(crate) type DpoBatch<'a> =
    dyn FnMut(&[usize], &mut PartStep<'_>) -> Result<(), TrainError> + 'a;

/// The resumable epochs of a DPO-style objective (step-level here, trajectory-level for ETO
/// and IPR): AdamW over the model's trainable variables (a cosine over the stage unless
/// `optim.total_steps` is set), `batch` handing each part of a batch's loss to its
/// [`PartStep`], the parts' metrics merged per step and per epoch and logged as
/// `{kind}/step` and `{kind}/epoch`. Returns each epoch's metrics.
pub(crate) fn dpo_epochs(
    model: &dyn StepModel,
    sched: &Schedule,
    optim: &OptimConfig,
    kind: &str,
    dir: &Path,
    metrics: &mut dyn FnMut(&str, &Value) -> Result<(), TrainError>,
    batch: &mut DpoBatch<'_>,
) -> Result<Vec<Value>, TrainError> {
    let vars = model.trainable();
    let mut optim = optim.clone();
    if optim.total_steps == 0 {
        optim.total_steps = sched.epochs * sched.steps_per_epoch();
    }
    let mut opt = Optimizer::new(vars.clone(), optim)?;
    let epoch_parts: RefCell<Vec<DpoMetrics>> = RefCell::new(Vec::new());
    let mut batch_fn = |items: &[usize], opt: &mut Optimizer| -> Result<Value, TrainError> {
        let mut parts = Vec::new();
        batch(items, &mut |(loss, m): (Tensor, DpoMetrics)| {
            opt.accumulate(&loss.backward()?)?;
            parts.push(m);
            Ok(())
        })?;
        let m = merge_metrics(&parts);
        epoch_parts.borrow_mut().extend(parts);
        Ok(serde_json::to_value(m).expect("plain numbers"))
    };
    let mut epoch_fn = |_epoch: usize| -> Result<Value, TrainError> {
        let m = merge_metrics(&epoch_parts.borrow());
        epoch_parts.borrow_mut().clear();
        Ok(serde_json::to_value(m).expect("plain numbers"))
    };
    let (step_kind, epoch_kind) = (format!("{kind}/step"), format!("{kind}/epoch"));
    let mut tick = |t: Tick<'_>| match t {
        Tick::Step { metrics: m } => metrics(&step_kind, m),
        Tick::Epoch { metrics: m } => metrics(&epoch_kind, m),
    };
    run_epochs(dir, sched, &vars, &mut opt, &mut batch_fn, &mut epoch_fn, &mut tick)
}
