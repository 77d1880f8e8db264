//! PPO on the outcome reward, the sparse-reward baseline: the policy plays whole episodes of
//! training tasks by sampling, each episode is one multi-turn rollout whose final reward sits
//! on its last turn ([`Rollout::from_episode`]), and [`Ppo::update`] learns from a batch of
//! them. By default each task is played `samples` times from the same start and the group
//! mean is the baseline (no critic).
//!
//! A cycle is `iterations` of (sample, update); each iteration is a unit of the stage with
//! the weights, the value head and the optimizer state saved after it, so a killed run
//! resumes at the next iteration and ends with the same weights.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use stepagent_lm::Lm;

use super::{
    eval_cycle, mark_stopped, origin_task, play, sampling, stopped_in, with_weights, Health,
    LmAgent, Shared,
};
use crate::dpo::Reference;
use crate::health::HealthSample;
use crate::inspect::mix_seed;
use crate::model::{load_vars, save_vars};
use crate::pipeline::{adopt_stage, write_json, Ctx, Event, Summary};
use crate::ppo::{rollout_logprobs, Advantage, Ppo, PpoConfig, PpoMetrics, Rollout};
use crate::run::UnitLog;
use crate::TrainError;

/// Outcome-PPO settings (`[ppo]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomePpoConfig {
    /// PPO updates per cycle (each on freshly sampled episodes). Default 2.
    pub iterations: usize,
    /// Training tasks per update (taken in turn through the training tasks). Default 8.
    pub tasks: usize,
    /// Episodes per task per update, from the same start (the group). Default 4.
    pub samples: usize,
    /// Sampling temperature. Default 1.0.
    pub temperature: f64,
    /// Longest generated turn, in tokens. Default 96.
    pub max_new_tokens: usize,
    /// Step limit of an episode (default: the world's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// The frozen π_ref of the KL penalty: `sft` (default) or `cycle-start`.
    pub reference: Reference,
    /// The PPO update (`[ppo.update]`). Default: as `PpoConfig` with a group baseline.
    pub update: PpoConfig,
    /// Seed of the sampling. Default 0.
    pub seed: u64,
}

impl Default for OutcomePpoConfig {
    fn default() -> Self {
        OutcomePpoConfig {
            iterations: 2,
            tasks: 8,
            samples: 4,
            temperature: 1.0,
            max_new_tokens: 96,
            max_steps: None,
            reference: Reference::Sft,
            update: PpoConfig { advantage: Advantage::Group, ..PpoConfig::default() },
            seed: 0,
        }
    }
}

impl OutcomePpoConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        for (key, v) in [
            ("ppo.iterations", self.iterations),
            ("ppo.tasks", self.tasks),
            ("ppo.samples", self.samples),
        ] {
            if v == 0 {
                return Err(TrainError::config(key, "must be at least 1"));
            }
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::config("ppo.temperature", "must be >= 0"));
        }
        if self.max_new_tokens == 0 {
            return Err(TrainError::config("ppo.max_new_tokens", "must be at least 1"));
        }
        self.update.validate().map_err(|e| e.rekey("ppo.", "ppo.update."))
    }
}

/// One finished iteration, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Iteration {
    metrics: PpoMetrics,
    success_rate: f64,
    episodes: usize,
    /// Optimizer steps of the stage so far.
    steps: usize,
    /// Set when a health alarm under `stop` ended the stage here.
    stopped: Option<String>,
}

/// Paths of the learner's state saved under `stem` in `dir`.
fn state(dir: &Path, stem: &str) -> [PathBuf; 3] {
    ["trainable", "value", "optim"].map(|k| dir.join(format!("{stem}{k}.safetensors")))
}

/// The PPO learner for `lm`, with the value head and optimizer of `from` when given.
pub(crate) fn learner<'m>(
    lm: &'m Lm,
    cfg: &PpoConfig,
    seed: u64,
    from: Option<&[PathBuf; 3]>,
) -> Result<Ppo<'m, Lm>, TrainError> {
    let mut ppo = Ppo::new(lm, PpoConfig { seed, ..cfg.clone() })?;
    if let Some([_, value, optim]) = from {
        let vv = ppo.value_vars();
        if !vv.is_empty() {
            load_vars(value, &vv)?;
        }
        ppo.optimizer().load(optim)?;
    }
    Ok(ppo)
}

/// Saves the policy's weights, the value head and the optimizer state to `to`.
pub(crate) fn save_learner(
    ppo: &mut Ppo<'_, Lm>,
    vars: &[(String, candle_core::Var)],
    to: &[PathBuf; 3],
) -> Result<(), TrainError> {
    save_vars(&to[0], vars)?;
    save_vars(&to[1], &ppo.value_vars())?;
    ppo.optimizer().save(&to[2])
}

/// Runs outcome PPO's cycles after SFT.
pub(crate) fn run(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    shared: &Shared<'_>,
    health: &mut Health,
    summary: &mut Summary,
) -> Result<(), TrainError> {
    let cfg = cx.cfg;
    let p = &cfg.ppo;
    let train = shared.train;
    // The learner's state at the end of the previous cycle (none before the first).
    let mut previous: Option<[PathBuf; 3]> = None;
    for k in 1..=cfg.cycles {
        let name = format!("cycle-{k}-ppo");
        let cycle_start = previous.as_ref().map_or(shared.sft_weights.clone(), |s| s[0].clone());
        let mut judged = false;
        let dir = cx.stage(&name, Some(p.iterations), |cx, dir| {
            judged = true;
            let mut log = UnitLog::<Iteration>::open(&dir.join("units.jsonl"))?;
            let mut from = previous.clone();
            let mut stopped = None;
            let mut records = Vec::new();
            for i in 0..p.iterations {
                let key = format!("iteration-{i}");
                let g = (k - 1) * p.iterations + i;
                if let Some(done) = log.get(&key) {
                    health.replay(&HealthSample::from_ppo(g, &done.metrics));
                    from = Some(state(dir, &format!("{key}.")));
                    records.push(done.clone());
                    stopped = done.stopped.clone();
                    if stopped.is_some() {
                        break;
                    }
                    continue;
                }
                if let Some(s) = &from {
                    load_vars(&s[0], &shared.vars)?;
                }
                // Episodes: `tasks` tasks in turn, `samples` each from the same start.
                let mut episodes = Vec::new();
                for j in 0..p.tasks {
                    let t = &train[(g * p.tasks + j) % train.len()];
                    let task = origin_task(t, "ppo")?;
                    for s in 0..p.samples {
                        let salt = mix_seed(&[p.seed, g as u64, j as u64, s as u64]);
                        let agent =
                            LmAgent::new(lm, sampling(p.temperature, p.max_new_tokens), salt);
                        episodes.push((
                            j,
                            play(shared.world, &agent, task, cfg.data.seed, p.max_steps)?,
                        ));
                    }
                }
                let rollouts: Vec<Rollout> =
                    episodes.iter().map(|(j, e)| Rollout::from_episode(e, *j)).collect();
                let batch = p.update.minibatch;
                let reference = match p.reference {
                    Reference::Sft => with_weights(&shared.vars, &shared.sft_weights, || {
                        rollout_logprobs(lm, &rollouts, batch)
                    })?,
                    Reference::CycleStart => with_weights(&shared.vars, &cycle_start, || {
                        rollout_logprobs(lm, &rollouts, batch)
                    })?,
                };
                let mut ppo =
                    learner(lm, &p.update, mix_seed(&[p.update.seed, g as u64]), from.as_ref())?;
                let m = ppo.update(&rollouts, &reference)?;
                let won = episodes.iter().filter(|(_, e)| e.won).count();
                let steps = records.last().map_or(0, |r: &Iteration| r.steps) + m.steps;
                let stop = health.check(cx, &name, &HealthSample::from_ppo(g, &m))?;
                let it = Iteration {
                    metrics: m,
                    success_rate: won as f64 / episodes.len().max(1) as f64,
                    episodes: episodes.len(),
                    steps,
                    stopped: stop.clone(),
                };
                let to = state(dir, &format!("{key}."));
                save_learner(&mut ppo, &shared.vars, &to)?;
                log.record(&key, it.clone())?;
                let mut rec = serde_json::to_value(it.metrics).expect("plain data");
                rec["iteration"] = json!(i);
                rec["success_rate"] = json!(it.success_rate);
                rec["steps"] = json!(steps);
                cx.log(&name, "ppo/iteration", &rec)?;
                (cx.observer)(&Event::Unit { stage: &name, done: i + 1, of: p.iterations })?;
                if let Some(prev) = &from {
                    if prev[0].starts_with(dir) {
                        prev.iter().for_each(|f| {
                            let _ = std::fs::remove_file(f);
                        });
                    }
                }
                from = Some(to);
                records.push(it);
                if stop.is_some() {
                    stopped = stop;
                    break;
                }
            }
            let last = from.expect("at least one iteration ran");
            for (src, dst) in last.iter().zip(state(dir, "")) {
                std::fs::copy(src, &dst).map_err(|e| TrainError::file(&dst, e))?;
            }
            if let Some(msg) = &stopped {
                mark_stopped(dir, msg)?;
            }
            let epochs: Vec<serde_json::Value> = records
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r.metrics).expect("plain data");
                    v["success_rate"] = json!(r.success_rate);
                    v["steps"] = json!(r.steps);
                    v
                })
                .collect();
            write_json(&dir.join("epochs.json"), &epochs)
        })?;
        if !judged {
            // Finished before this process: its samples rebuild the baseline.
            let log = UnitLog::<Iteration>::open(&dir.join("units.jsonl"))?;
            for i in 0..p.iterations {
                if let Some(it) = log.get(&format!("iteration-{i}")) {
                    let g = (k - 1) * p.iterations + i;
                    health.replay(&HealthSample::from_ppo(g, &it.metrics));
                }
            }
        }
        adopt_stage(&dir, &name, &shared.vars, summary)?;
        previous = Some(state(&dir, ""));
        eval_cycle(cx, lm, shared, k, summary)?;
        if let Some(msg) = stopped_in(&dir)? {
            summary.stopped = Some(msg);
            break;
        }
    }
    Ok(())
}
