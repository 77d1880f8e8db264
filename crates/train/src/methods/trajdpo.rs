//! Trajectory-level DPO epochs (ETO's and IPR's training): resumable by epoch like SFT and
//! step-DPO, one pair per forward so memory is bounded by the longest pair, not the batch.

use std::cell::RefCell;
use std::path::Path;

use serde_json::Value;
use stepagent_lm::OptimConfig;

use crate::baselines::{traj_dpo_loss, TrajPair};
use crate::dpo::{merge_metrics, DpoMetrics, RefLogps};
use crate::epochs::{run_epochs, Schedule, Tick};
use crate::model::StepModel;
use crate::optim::Optimizer;
use crate::TrainError;

/// How one stage of trajectory-level DPO trains.
pub(crate) struct TrajDpo<'a> {
    pub beta: f64,
    /// Weight of the chosen side's per-token NLL (0 for ETO).
    pub nll_weight: f64,
    pub epochs: usize,
    /// Pairs per optimizer step.
    pub batch: usize,
    pub optim: &'a OptimConfig,
    pub seed: u64,
}

/// Trains on `pairs` against `reference` (one per pair) into stage folder `dir`. Returns
/// each epoch's metrics (with `steps`, the optimizer steps so far).
pub(crate) fn train_traj_dpo(
    model: &dyn StepModel,
    pairs: &[TrajPair],
    reference: &[RefLogps],
    t: &TrajDpo<'_>,
    dir: &Path,
    metrics: &mut dyn FnMut(&str, &Value) -> Result<(), TrainError>,
) -> Result<Vec<Value>, TrainError> {
    let vars = model.trainable();
    let sched = Schedule { epochs: t.epochs, items: pairs.len(), batch: t.batch, seed: t.seed };
    let mut optim = t.optim.clone();
    if optim.total_steps == 0 {
        optim.total_steps = sched.epochs * sched.steps_per_epoch();
    }
    let mut opt = Optimizer::new(vars.clone(), optim)?;
    let epoch_parts: RefCell<Vec<DpoMetrics>> = RefCell::new(Vec::new());
    let mut batch_fn = |batch: &[usize], opt: &mut Optimizer| -> Result<Value, TrainError> {
        let scale = 1.0 / batch.len() as f64;
        let mut parts = Vec::with_capacity(batch.len());
        for &i in batch {
            let (loss, m) = traj_dpo_loss(
                model,
                std::slice::from_ref(&pairs[i]),
                std::slice::from_ref(&reference[i]),
                t.beta,
                t.nll_weight,
                scale,
            )?;
            opt.accumulate(&loss.backward()?)?;
            parts.push(m);
        }
        let m = merge_metrics(&parts);
        epoch_parts.borrow_mut().extend(parts);
        Ok(serde_json::to_value(m).expect("plain numbers"))
    };
    let mut epoch_fn = |_epoch: usize| -> Result<Value, TrainError> {
        let m = merge_metrics(&epoch_parts.borrow());
        epoch_parts.borrow_mut().clear();
        Ok(serde_json::to_value(m).expect("plain numbers"))
    };
    let mut tick = |tk: Tick<'_>| match tk {
        Tick::Step { metrics: m } => metrics("dpo/step", m),
        Tick::Epoch { metrics: m } => metrics("dpo/epoch", m),
    };
    run_epochs(dir, &sched, &vars, &mut opt, &mut batch_fn, &mut epoch_fn, &mut tick)
}
