//! RFT (rejection-sampling fine-tuning) as a method: each cycle the current policy samples
//! N episodes of every training task, and is fine-tuned (SFT, the same loss as the shared
//! SFT stage) on the ones it won. Best-of-N success (a task counts when any of its N
//! episodes won) is logged beside the per-episode success rate: it is the ceiling RFT
//! distils from.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepagent_lm::{Lm, OptimConfig};
use stepagent_policy::runner::Episode;

use super::{
    episode_trajectory, first_tasks, load_collected, mark_stopped, origin_task, play,
    probe_rollouts, sampling, save_collected, stopped_in, Health, LmAgent, Shared,
};
use crate::health::HealthSample;
use crate::inspect::{hash_str, mix_seed};
use crate::model::save_vars;
use crate::pipeline::{adopt_stage, read_json, write_json, Ctx, Event, Summary};
use crate::ppo::rollout_logprobs;
use crate::run::UnitLog;
use crate::sft::{train_sft, SftConfig};
use crate::traj::Trajectory;
use crate::TrainError;

/// RFT settings (`[rft]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RftConfig {
    /// Episodes N sampled per training task per cycle. Default 4.
    pub samples: usize,
    /// Sampling temperature. Default 1.0.
    pub temperature: f64,
    /// Longest generated turn, in tokens. Default 96.
    pub max_new_tokens: usize,
    /// Training tasks played per cycle (the first ones; 0: all). Default 0.
    pub tasks: usize,
    /// Step limit of an episode (default: the world's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// Fine-tune on the expert trajectories too, not only the agent's successes. Default false.
    pub include_expert: bool,
    /// The fine-tuning on the successes. Default: 1 epoch, batch 4, lr 1e-4.
    pub sft: SftConfig,
    /// Seed of the sampling. Default 0.
    pub seed: u64,
}

impl Default for RftConfig {
    fn default() -> Self {
        RftConfig {
            samples: 4,
            temperature: 1.0,
            max_new_tokens: 96,
            tasks: 0,
            max_steps: None,
            include_expert: false,
            sft: SftConfig {
                epochs: 1,
                optim: OptimConfig { lr: 1e-4, warmup_steps: 1, ..OptimConfig::default() },
                ..SftConfig::default()
            },
            seed: 0,
        }
    }
}

impl RftConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.samples == 0 {
            return Err(TrainError::config("rft.samples", "must be at least 1"));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::config("rft.temperature", "must be >= 0"));
        }
        if self.max_new_tokens == 0 {
            return Err(TrainError::config("rft.max_new_tokens", "must be at least 1"));
        }
        self.sft.validate("rft.sft")
    }
}

/// Runs RFT's cycles after SFT.
pub(crate) fn run(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    shared: &Shared<'_>,
    health: &mut Health,
    summary: &mut Summary,
) -> Result<(), TrainError> {
    let cfg = cx.cfg;
    let r = &cfg.rft;
    let world = shared.world;
    let train = first_tasks(shared.train, r.tasks);
    for k in 1..=cfg.cycles {
        let name = format!("cycle-{k}-sample");
        let dir = cx.stage(&name, Some(train.len()), |cx, dir| {
            let mut log = UnitLog::<Vec<Episode>>::open(&dir.join("units.jsonl"))?;
            for (i, t) in train.iter().enumerate() {
                if log.get(&t.id).is_none() {
                    let task = origin_task(t, "rft")?;
                    let mut eps = Vec::with_capacity(r.samples);
                    for j in 0..r.samples {
                        let salt = mix_seed(&[r.seed, k as u64, hash_str(&t.id), j as u64]);
                        let agent =
                            LmAgent::new(lm, sampling(r.temperature, r.max_new_tokens), salt);
                        eps.push(play(world, &agent, task, cfg.data.seed, r.max_steps)?);
                    }
                    log.record(&t.id, eps)?;
                }
                (cx.observer)(&Event::Unit { stage: &name, done: i + 1, of: train.len() })?;
            }
            let mut episodes = Vec::new();
            let mut successes: Vec<Trajectory> = Vec::new();
            let (mut best_of_n, mut unusable) = (0usize, 0usize);
            for t in train {
                let eps = log.get(&t.id).expect("sampled above");
                best_of_n += usize::from(eps.iter().any(|e| e.won));
                for (j, e) in eps.iter().enumerate().filter(|(_, e)| e.won) {
                    match episode_trajectory(e, format!("{}#rft{k}.{j}", t.id)) {
                        Some(tr) => successes.push(tr),
                        None => unusable += 1,
                    }
                }
                episodes.extend(eps.iter().cloned());
            }
            let mut stats = super::eto::explore_stats(lm, &episodes, 0)?;
            let obj = stats.as_object_mut().expect("an object");
            obj.remove("pairs");
            obj.insert("best_of_n".into(), json!(best_of_n as f64 / train.len().max(1) as f64));
            obj.insert("samples_per_task".into(), json!(r.samples));
            obj.insert("successes".into(), json!(successes.len()));
            obj.insert("unusable_successes".into(), json!(unusable));
            cx.log(&name, "sample", &stats)?;
            save_collected(dir, &stats, &episodes, "successes", &successes)
        })?;
        let (mut data, episodes, stats): (Vec<Trajectory>, _, _) =
            load_collected(&dir, "successes")?;
        if r.include_expert {
            data.extend(shared.train.iter().cloned());
        }

        let name = format!("cycle-{k}-train");
        let mut judged = false;
        let dir = cx.stage(&name, Some(r.sft.epochs), |cx, dir| {
            judged = true;
            let refs: Vec<&Episode> = episodes.iter().collect();
            // Without data the weights are kept and the drift is 0: no probe to score.
            let probe = if data.is_empty() { Vec::new() } else { probe_rollouts(&refs, 8) };
            let before = rollout_logprobs(lm, &probe, 2)?;
            let epochs = if data.is_empty() {
                cx.log(
                    &name,
                    "sft",
                    &json!({"trajectories": 0, "note": "no successes: weights kept"}),
                )?;
                save_vars(&dir.join("trainable.safetensors"), &shared.vars)?;
                Vec::new()
            } else {
                let mut log = |kind: &str, v: &Value| cx.log(&name, kind, v);
                train_sft(lm, &data, shared.heldout, &r.sft, dir, &mut log)?
            };
            let sample = HealthSample {
                step: k,
                // SFT's epoch records carry the held-out expert NLL, its loss on held-out data.
                loss: epochs
                    .last()
                    .and_then(|m| m["heldout_expert_nll"].as_f64().or(m["loss"].as_f64()))
                    .unwrap_or(0.0),
                kl: super::drift_kl(lm, &probe, &before)?,
                response_tokens: stats["response_tokens"].as_f64().unwrap_or(0.0),
                invalid_rate: stats["invalid_rate"].as_f64().unwrap_or(0.0),
            };
            if let Some(msg) = health.check(cx, &name, &sample)? {
                mark_stopped(dir, &msg)?;
            }
            write_json(&dir.join("health.json"), &sample)?;
            write_json(&dir.join("epochs.json"), &epochs)
        })?;
        if !judged {
            health.replay(&read_json(&dir.join("health.json"))?);
        }
        adopt_stage(&dir, &name, &shared.vars, summary)?;
        if let Some(last) = summary.training.last_mut().filter(|l| l.0 == name) {
            // The sampling numbers of the cycle sit beside its training numbers.
            if let Some(o) = last.1.as_object_mut() {
                o.insert("success_rate".into(), stats["success_rate"].clone());
                o.insert("best_of_n".into(), stats["best_of_n"].clone());
            }
        }
        super::eval_cycle(cx, lm, shared, k, summary)?;
        if let Some(msg) = stopped_in(&dir)? {
            summary.stopped = Some(msg);
            break;
        }
    }
    Ok(())
}
