//! Trajectory-level DPO epochs (ETO's and IPR's training): resumable by epoch like SFT and
//! step-DPO, one pair per forward so memory is bounded by the longest pair, not the batch.

use std::path::Path;

use serde_json::Value;
use stepagent_lm::OptimConfig;

use crate::baselines::{traj_dpo_loss, TrajPair};
use crate::dpo::{dpo_epochs, PartStep, RefLogps};
use crate::epochs::Schedule;
use crate::model::StepModel;
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
    let sched = Schedule {
        epochs: t.epochs,
        items: pairs.len(),
        batch: t.batch,
        seed: t.seed,
        groups: None,
    };
    let mut batch = |batch: &[usize], step: &mut PartStep<'_>| -> Result<(), TrainError> {
        let scale = 1.0 / batch.len() as f64;
        for &i in batch {
            step(traj_dpo_loss(
                model,
                std::slice::from_ref(&pairs[i]),
                std::slice::from_ref(&reference[i]),
                t.beta,
                t.nll_weight,
                scale,
            )?)?;
        }
        Ok(())
    };
    dpo_epochs(model, &sched, t.optim, "dpo", dir, metrics, &mut batch)
}
