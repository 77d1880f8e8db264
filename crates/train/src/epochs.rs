//! The resumable epoch loop shared by SFT and step-DPO: shuffled batches, gradient
//! accumulation over a batch, one optimizer step per batch, and after each epoch the
//! trainable weights and optimizer state saved under the epoch's number before the epoch is
//! logged as a finished unit. A rerun restores the last logged epoch and goes on from there,
//! so it ends with the same weights as a run that was never interrupted.

use std::path::Path;

use candle_core::Var;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::inspect::mix_seed;
use crate::model::{load_vars, save_vars};
use crate::optim::Optimizer;
use crate::run::UnitLog;
use crate::TrainError;

/// One batch's forward and backward passes, accumulating into the optimizer; its metrics.
pub(crate) type BatchFn<'a> = dyn FnMut(&[usize], &mut Optimizer) -> Result<Value, TrainError> + 'a;

/// The shape of a training loop.
pub(crate) struct Schedule {
    pub epochs: usize,
    pub items: usize,
    /// Items per optimizer step.
    pub batch: usize,
    pub seed: u64,
    /// Items that belong together (one trajectory's step triples, read in one packed pass):
    /// an epoch shuffles these groups and keeps each one's items together, in their order.
    /// `None` shuffles the items themselves.
    pub groups: Option<Vec<Vec<usize>>>,
}

impl Schedule {
    /// The order in which epoch `epoch` takes the items.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, epoch as u64]));
        match &self.groups {
            None => {
                let mut order: Vec<usize> = (0..self.items).collect();
                order.shuffle(&mut rng);
                order
            }
            Some(groups) => shuffle_groups(groups, &mut rng),
        }
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.items.div_ceil(self.batch.max(1))
    }
}

/// `groups` in an order shuffled by `rng`, each one's items kept together and in order,
/// concatenated.
pub(crate) fn shuffle_groups(groups: &[Vec<usize>], rng: &mut impl rand::Rng) -> Vec<usize> {
    let mut order: Vec<&Vec<usize>> = groups.iter().collect();
    order.shuffle(rng);
    order.into_iter().flatten().copied().collect()
}

/// Events a caller may watch (progress bars, metrics); an error stops the loop as a kill
/// would, after the last finished unit was saved.
pub(crate) enum Tick<'a> {
    Step { metrics: &'a Value },
    Epoch { metrics: &'a Value },
}

fn state_paths(dir: &Path, epoch: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        dir.join(format!("epoch-{epoch}.trainable.safetensors")),
        dir.join(format!("epoch-{epoch}.optim.safetensors")),
    )
}

/// Runs the epochs not yet logged in `dir/units.jsonl`. `batch_fn` does the forward and
/// backward passes of one batch (accumulating into the optimizer) and returns its metrics;
/// `epoch_fn` evaluates after an epoch. Returns every epoch's metrics, the restored ones
/// included.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_epochs(
    dir: &Path,
    sched: &Schedule,
    vars: &[(String, Var)],
    opt: &mut Optimizer,
    batch_fn: &mut BatchFn<'_>,
    epoch_fn: &mut dyn FnMut(usize) -> Result<Value, TrainError>,
    tick: &mut dyn FnMut(Tick<'_>) -> Result<(), TrainError>,
) -> Result<Vec<Value>, TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::file(dir, e))?;
    let mut log = UnitLog::<Value>::open(&dir.join("units.jsonl"))?;
    let mut done = Vec::new();
    let mut start = 0;
    for epoch in 0..sched.epochs {
        match log.get(&format!("epoch-{epoch}")) {
            Some(m) => {
                done.push(m.clone());
                start = epoch + 1;
            }
            None => break,
        }
    }
    if start > 0 {
        let (w, o) = state_paths(dir, start - 1);
        load_vars(&w, vars)?;
        opt.load(&o)?;
        tracing::info!(epochs = start, "restored finished epochs");
    }
    for epoch in start..sched.epochs {
        for batch in sched.order(epoch).chunks(sched.batch.max(1)) {
            let mut m = batch_fn(batch, opt)?;
            let stats = opt.step()?;
            m["lr"] = json!(stats.lr);
            m["grad_norm"] = json!(stats.grad_norm);
            m["epoch"] = json!(epoch);
            m["step"] = json!(opt.steps());
            tick(Tick::Step { metrics: &m })?;
        }
        let mut m = epoch_fn(epoch)?;
        m["epoch"] = json!(epoch);
        m["steps"] = json!(opt.steps());
        let (w, o) = state_paths(dir, epoch);
        save_vars(&w, vars)?;
        opt.save(&o)?;
        log.record(&format!("epoch-{epoch}"), m.clone())?;
        if epoch > 0 {
            // The previous epoch's state is no longer the restore point.
            let (w, o) = state_paths(dir, epoch - 1);
            let _ = std::fs::remove_file(w);
            let _ = std::fs::remove_file(o);
        }
        tick(Tick::Epoch { metrics: &m })?;
        done.push(m);
    }
    // The final weights under a stable name for the next stage.
    save_vars(&dir.join("trainable.safetensors"), vars)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_shuffles_groups_whole_and_items_alone_as_before() {
        let groups = vec![vec![0, 1, 2], vec![3], vec![4, 5], vec![6, 7, 8, 9]];
        let s = Schedule { epochs: 2, items: 10, batch: 4, seed: 3, groups: Some(groups.clone()) };
        let (a, b) = (s.order(0), s.order(1));
        assert_eq!(a, s.order(0), "deterministic");
        for order in [&a, &b] {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
            // Each group's items stay together and in their order.
            for g in &groups {
                let at = order.iter().position(|&i| i == g[0]).unwrap();
                assert_eq!(&order[at..at + g.len()], g.as_slice(), "{order:?}");
            }
        }
        assert_ne!(a, b, "each epoch its own order");
        // Without groups: the items shuffled by (seed, epoch), as SFT and DPO always were.
        let plain = Schedule { groups: None, ..s };
        let mut want: Vec<usize> = (0..10).collect();
        want.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[3, 1])));
        assert_eq!(plain.order(1), want);
    }
}
