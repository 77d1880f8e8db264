//! StepAgent-Inverse (stepagent.md §2, inverse RL): each cycle
//! 1. inspection, as Implicit: the policy acts at every expert prefix (step triples);
//! 2. the discriminator D_φ(h, a) learns by BCE that the expert's step is 1 and the agent's
//!    is 0 after the same prefix (its own copy of the SFT model with a scalar head, carried
//!    from cycle to cycle), measured before and after on the triples of held-out
//!    trajectories (`inverse.disc.heldout_every`);
//! 3. PPO on the agent's actions sampled at the expert prefixes, each rewarded by D's step
//!    reward (log D by default), with a KL penalty to π_ref (the policy at the start of the
//!    cycle by default);
//! 4. evaluation and the agreement curve.
//!
//! Discriminator and policy updates thus alternate, one phase of each per cycle.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepagent_lm::Lm;

use super::outcome_ppo::{learner, save_learner};
use super::{eval_cycle, mark_stopped, sampling, stopped_in, with_weights, Health, Shared};
use crate::disc::{split_heldout, DiscConfig, DiscMetrics, Discriminator};
use crate::dpo::Reference;
use crate::epochs::{run_epochs, Tick};
use crate::health::HealthSample;
use crate::inspect::{mix_seed, StepTriple};
use crate::model::{load_vars, StepModel};
use crate::optim::Optimizer;
use crate::pipeline::Summary;
use crate::pipeline::{adopt_stage, inspect_stage, make_trainable, read_json, write_json, Ctx};
use crate::ppo::{rollout_logprobs, sample_step_rollouts, PpoConfig, Rollout};
use crate::TrainError;

/// StepAgent-Inverse settings (`[inverse]`). The agent's actions for PPO are sampled as
/// inspection samples them (`inspect.temperature`, `inspect.max_new_tokens`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InverseConfig {
    /// Actions sampled per expert prefix for PPO (the group, with a group baseline). Default 1.
    pub samples: usize,
    /// The frozen π_ref of the KL penalty: `cycle-start` (default) or `sft`.
    pub reference: Reference,
    /// The discriminator (`[inverse.disc]`).
    pub disc: DiscConfig,
    /// The PPO update (`[inverse.ppo]`).
    pub ppo: PpoConfig,
    /// Seed of the sampling. Default 0.
    pub seed: u64,
}

impl Default for InverseConfig {
    fn default() -> Self {
        InverseConfig {
            samples: 1,
            reference: Reference::CycleStart,
            disc: DiscConfig::default(),
            ppo: PpoConfig::default(),
            seed: 0,
        }
    }
}

impl InverseConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.samples == 0 {
            return Err(TrainError::config("inverse.samples", "must be at least 1"));
        }
        self.disc.validate().map_err(|e| e.rekey("disc.", "inverse.disc."))?;
        self.ppo.validate().map_err(|e| e.rekey("ppo.", "inverse.ppo."))
    }
}

/// The discriminator over its own backbone: the base model, trainable as the policy is,
/// set to the SFT weights.
fn new_discriminator(cx: &Ctx<'_>, shared: &Shared<'_>) -> Result<Discriminator<Lm>, TrainError> {
    let mut backbone = (shared.load)()?;
    make_trainable(cx.cfg, &mut backbone)?;
    load_vars(&shared.sft_weights, &backbone.trainable())?;
    Discriminator::new(backbone, cx.cfg.inverse.disc.clone())
}

/// A discriminator pass's numbers as a record.
fn disc_record(m: &DiscMetrics) -> Value {
    serde_json::to_value(m).expect("plain data")
}

/// Runs StepAgent-Inverse's cycles after SFT.
pub(crate) fn run(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    shared: &Shared<'_>,
    health: &mut Health,
    summary: &mut Summary,
) -> Result<(), TrainError> {
    let cfg = cx.cfg;
    let inv = &cfg.inverse;
    let train = shared.train;
    let disc = new_discriminator(cx, shared)?;
    let disc_vars = disc.vars();
    let mut checkpoint = "stages/sft".to_string();
    // The discriminator's and the learner's state at the end of the previous cycle.
    let mut disc_prev: Option<std::path::PathBuf> = None;
    let mut ppo_prev: Option<[std::path::PathBuf; 3]> = None;
    for k in 1..=cfg.cycles {
        let triples = inspect_stage(cx, lm, shared, k, &checkpoint, summary)?;

        // Discriminator phase.
        let name = format!("cycle-{k}-disc");
        let dir = cx.stage(&name, Some(inv.disc.epochs), |cx, dir| {
            let (fit, held) = split_heldout(train, &triples, inv.disc.heldout_every);
            // Too few trajectories to hold one out: D is measured on what it trained on,
            // and the record says so.
            let measured = if held.is_empty() { &fit } else { &held };
            // The discriminator holds the previous cycle's weights (loaded after that stage).
            let before = disc.evaluate(train, measured)?;
            let epochs = if fit.is_empty() {
                crate::model::save_vars(&dir.join("trainable.safetensors"), &disc_vars)?;
                Vec::new()
            } else {
                train_disc(cx, &disc, train, &fit, disc_prev.as_deref(), dir, &name)?
            };
            let after = disc.evaluate(train, measured)?;
            let rec = json!({"before": disc_record(&before), "after": disc_record(&after),
                "accuracy": after.accuracy, "auc": after.auc, "triples": triples.len(),
                "trained_on": fit.len(), "measured_on": measured.len(),
                "measured_on_heldout": !held.is_empty()});
            cx.log(&name, "disc", &rec)?;
            write_json(&dir.join("disc.json"), &rec)?;
            write_json(&dir.join("epochs.json"), &epochs)
        })?;
        load_vars(&dir.join("trainable.safetensors"), &disc_vars)?;
        let disc_json: Value = read_json(&dir.join("disc.json"))?;
        summary.training.push((name.clone(), disc_json["after"].clone()));
        disc_prev = Some(dir);

        // Policy phase: PPO on sampled actions rewarded by D.
        let name = format!("cycle-{k}-ppo");
        let mut judged = false;
        let dir = cx.stage(&name, Some(1), |cx, dir| {
            judged = true;
            let path = dir.join("rollouts.json");
            // Sampled and rewarded once: a rerun after a kill trains on the same batch.
            let rollouts: Vec<Rollout> = if path.exists() {
                read_json(&path)?
            } else {
                let s = sampling(cfg.inspect.temperature, cfg.inspect.max_new_tokens);
                let seed = mix_seed(&[inv.seed, k as u64]);
                let mut r = sample_step_rollouts(lm, train, inv.samples, &s, seed)?;
                disc.reward_rollouts(&mut r)?;
                write_json(&path, &r)?;
                r
            };
            let batch = inv.ppo.minibatch;
            let reference = match inv.reference {
                // The policy holds the cycle-start weights until this update.
                Reference::CycleStart => rollout_logprobs(lm, &rollouts, batch)?,
                Reference::Sft => with_weights(&shared.vars, &shared.sft_weights, || {
                    rollout_logprobs(lm, &rollouts, batch)
                })?,
            };
            let mut ppo =
                learner(lm, &inv.ppo, mix_seed(&[inv.ppo.seed, k as u64]), ppo_prev.as_ref())?;
            let m = ppo.update(&rollouts, &reference)?;
            let sample = HealthSample::from_ppo(k, &m);
            if let Some(msg) = health.check(cx, &name, &sample)? {
                mark_stopped(dir, &msg)?;
            }
            let mut rec = serde_json::to_value(m).expect("plain data");
            rec["steps"] = json!(m.steps);
            cx.log(&name, "ppo/update", &rec)?;
            save_learner(&mut ppo, &shared.vars, &state(dir))?;
            write_json(&dir.join("health.json"), &sample)?;
            write_json(&dir.join("epochs.json"), &vec![rec])
        })?;
        if !judged {
            health.replay(&read_json(&dir.join("health.json"))?);
        }
        adopt_stage(&dir, &name, &shared.vars, summary)?;
        ppo_prev = Some(state(&dir));
        checkpoint = format!("stages/{name}");
        eval_cycle(cx, lm, shared, k, summary)?;
        if let Some(msg) = stopped_in(&dir)? {
            summary.stopped = Some(msg);
            break;
        }
    }
    Ok(())
}

fn state(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    ["trainable", "value", "optim"].map(|k| dir.join(format!("{k}.safetensors")))
}

/// The discriminator's epochs over the triples (resumable by epoch), its optimizer carried
/// over from the previous cycle's phase when there was one.
fn train_disc(
    cx: &mut Ctx<'_>,
    disc: &Discriminator<Lm>,
    train: &[crate::traj::Trajectory],
    triples: &[StepTriple],
    prev: Option<&std::path::Path>,
    dir: &std::path::Path,
    name: &str,
) -> Result<Vec<Value>, TrainError> {
    let c = &disc.cfg;
    let vars = disc.vars();
    let sched = disc.schedule(train, triples)?;
    let mut opt = Optimizer::new(vars.clone(), c.optim.clone())?;
    if let Some(p) = prev.map(|p| p.join("optim.safetensors")).filter(|p| p.exists()) {
        opt.load(&p)?;
    }
    let parts = std::cell::RefCell::new(Vec::<(DiscMetrics, usize)>::new());
    let mut batch_fn = |batch: &[usize], opt: &mut Optimizer| -> Result<Value, TrainError> {
        let m = disc.accumulate(train, triples, batch, opt)?;
        parts.borrow_mut().push((m, batch.len()));
        Ok(disc_record(&m))
    };
    let mut epoch_fn = |_epoch: usize| -> Result<Value, TrainError> {
        let p = std::mem::take(&mut *parts.borrow_mut());
        let n: usize = p.iter().map(|(_, n)| n).sum::<usize>().max(1);
        let mean = |f: fn(&DiscMetrics) -> f64| {
            p.iter().map(|(m, k)| f(m) * *k as f64).sum::<f64>() / n as f64
        };
        Ok(json!({"loss": mean(|m| m.loss), "accuracy": mean(|m| m.accuracy),
            "expert_d": mean(|m| m.expert_d), "agent_d": mean(|m| m.agent_d)}))
    };
    let mut tick = |t: Tick<'_>| match t {
        Tick::Step { metrics: m } => cx.log(name, "disc/step", m),
        Tick::Epoch { metrics: m } => cx.log(name, "disc/epoch", m),
    };
    let out = run_epochs(dir, &sched, &vars, &mut opt, &mut batch_fn, &mut epoch_fn, &mut tick)?;
    opt.save(&dir.join("optim.safetensors"))?;
    Ok(out)
}
