//! SFT (behaviour cloning): −Σ_t log π_θ(a*_t | h*_t) over expert trajectories. Only the
//! assistant turns carry loss; one forward pass reads a whole trajectory.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepagent_lm::OptimConfig;
use stepagent_policy::Role;

use crate::epochs::{run_epochs, Schedule, Tick};
use crate::model::StepModel;
use crate::optim::Optimizer;
use crate::traj::Trajectory;
use crate::TrainError;

/// SFT settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// Passes over the training trajectories; 0 skips SFT. Default 3.
    pub epochs: usize,
    /// Trajectories per optimizer step (gradients accumulated over them). Default 4.
    pub batch: usize,
    /// Train on every assistant turn, the `OK` after the instruction included (ETO's SFT),
    /// instead of the step turns only. Default true.
    pub all_assistant_turns: bool,
    /// AdamW and its schedule; `total_steps = 0` means "the whole run" (cosine to the end).
    /// Default: lr 2e-4, warmup 2 steps, clip 1.0.
    pub optim: OptimConfig,
    /// Seed of the shuffling. Default 0.
    pub seed: u64,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            epochs: 3,
            batch: 4,
            all_assistant_turns: true,
            optim: OptimConfig { lr: 2e-4, warmup_steps: 2, ..OptimConfig::default() },
            seed: 0,
        }
    }
}

impl SftConfig {
    /// Checks the values, naming the bad key (`prefix` is where the table sits).
    pub fn validate(&self, prefix: &str) -> Result<(), TrainError> {
        if self.batch == 0 {
            return Err(TrainError::config(&format!("{prefix}.batch"), "must be at least 1"));
        }
        validate_optim(&self.optim, &format!("{prefix}.optim"))
    }
}

/// Checks an optimizer config, naming the bad key.
pub fn validate_optim(o: &OptimConfig, prefix: &str) -> Result<(), TrainError> {
    let bad = |k: &str, m: &str| Err(TrainError::config(&format!("{prefix}.{k}"), m));
    if !(o.lr > 0.0 && o.lr.is_finite()) {
        return bad("lr", "must be a positive number");
    }
    if !(0.0..1.0).contains(&o.beta1) {
        return bad("beta1", "must be in [0, 1)");
    }
    if !(0.0..1.0).contains(&o.beta2) {
        return bad("beta2", "must be in [0, 1)");
    }
    if o.eps <= 0.0 {
        return bad("eps", "must be positive");
    }
    if o.weight_decay < 0.0 {
        return bad("weight_decay", "must be >= 0");
    }
    if o.max_grad_norm < 0.0 {
        return bad("max_grad_norm", "must be >= 0 (0 is off)");
    }
    if !(0.0..=1.0).contains(&o.min_lr_ratio) {
        return bad("min_lr_ratio", "must be in [0, 1]");
    }
    Ok(())
}

fn trained_turns(t: &Trajectory, all: bool) -> Vec<usize> {
    if all {
        // Position 0 has no context to predict from; an assistant turn there cannot be scored.
        (1..t.conversation.len()).filter(|&i| t.conversation[i].role == Role::Assistant).collect()
    } else {
        t.step_turns()
    }
}

/// Mean per-token NLL of the expert's step turns (its actions after the first observation)
/// over `trajectories`, without gradients: the number SFT drives down.
pub fn expert_nll(model: &dyn StepModel, trajectories: &[Trajectory]) -> Result<f64, TrainError> {
    let (mut sum, mut tokens) = (0f64, 0usize);
    for t in trajectories {
        let turns = t.step_turns();
        let s = model.score_turns_at(&[(&t.conversation, &turns)], false)?;
        sum -= s.logp.sum_all()?.to_scalar::<f32>()? as f64;
        tokens += s.tokens.iter().sum::<usize>();
    }
    Ok(if tokens == 0 { 0.0 } else { sum / tokens as f64 })
}

/// A metrics record of the SFT stage.
pub type SftRecord = Value;

/// Runs SFT into stage folder `dir` (resumable by epoch). `heldout` is scored after every
/// epoch. `metrics` receives every step and epoch record; an error from it stops training
/// as a kill would.
pub fn train_sft(
    model: &dyn StepModel,
    train: &[Trajectory],
    heldout: &[Trajectory],
    cfg: &SftConfig,
    dir: &Path,
    metrics: &mut dyn FnMut(&str, &Value) -> Result<(), TrainError>,
) -> Result<Vec<Value>, TrainError> {
    cfg.validate("sft")?;
    let vars = model.trainable();
    let sched = Schedule {
        epochs: cfg.epochs,
        items: train.len(),
        batch: cfg.batch,
        seed: cfg.seed,
        groups: None,
    };
    let mut optim = cfg.optim.clone();
    if optim.total_steps == 0 {
        optim.total_steps = sched.epochs * sched.steps_per_epoch();
    }
    let mut opt = Optimizer::new(vars.clone(), optim)?;
    let turns: Vec<Vec<usize>> =
        train.iter().map(|t| trained_turns(t, cfg.all_assistant_turns)).collect();
    let mut batch_fn = |batch: &[usize], opt: &mut Optimizer| -> Result<Value, TrainError> {
        let mut counts = Vec::with_capacity(batch.len());
        for &i in batch {
            counts
                .push(model.turn_tokens(&train[i].conversation, &turns[i])?.iter().sum::<usize>());
        }
        let total: usize = counts.iter().sum::<usize>().max(1);
        let mut nll = 0f64;
        for &i in batch {
            // One forward per trajectory; its share of the batch's per-token mean.
            let s = model.score_turns_at(&[(&train[i].conversation, &turns[i])], true)?;
            let loss = (s.logp.sum_all()? * (-1.0 / total as f64))?;
            nll += loss.to_scalar::<f32>()? as f64;
            opt.accumulate(&loss.backward()?)?;
        }
        Ok(json!({"loss": nll, "tokens": total, "trajectories": batch.len()}))
    };
    let mut epoch_fn = |_epoch: usize| -> Result<Value, TrainError> {
        let held =
            if heldout.is_empty() { Value::Null } else { json!(expert_nll(model, heldout)?) };
        Ok(json!({"heldout_expert_nll": held}))
    };
    let mut tick = |t: Tick<'_>| match t {
        Tick::Step { metrics: m } => metrics("sft/step", m),
        Tick::Epoch { metrics: m } => metrics("sft/epoch", m),
    };
    run_epochs(dir, &sched, &vars, &mut opt, &mut batch_fn, &mut epoch_fn, &mut tick)
}
