//! ETO as a method (stepagent.md §4): each iteration the current policy explores every
//! training task greedily; each exploration that ends worse than the expert becomes a pair
//! (chosen = the expert's trajectory, rejected = the exploration cut to the expert's length
//! plus `extra_rounds`), and the policy is trained by trajectory-level DPO against itself as
//! it was at the start of the iteration. β follows `betas` (0.1, then 0.5).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepagent_lm::{Lm, OptimConfig};
use stepagent_policy::runner::Episode;

use super::trajdpo::{train_traj_dpo, TrajDpo};
use super::{
    episode_health, expert_outcome, first_tasks, load_collected, mark_stopped, origin_task, play,
    probe_rollouts, sampling, save_collected, stopped_in, Health, LmAgent, Shared,
};
use crate::baselines::eto::{eto_pair, EtoConfig};
use crate::baselines::{reference_logps, TrajPair};
use crate::dpo::cached_reference;
use crate::health::HealthSample;
use crate::model::save_vars;
use crate::pipeline::{adopt_stage, read_json, write_json, Ctx, Event, Summary};
use crate::ppo::rollout_logprobs;
use crate::run::UnitLog;
use crate::sft::validate_optim;
use crate::TrainError;

/// ETO settings (`[eto]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtoMethodConfig {
    /// Rounds the rejected side may run past the expert's step count. Default 5.
    pub extra_rounds: usize,
    /// DPO's β per iteration: iteration K uses the K-th (the last one from there on).
    /// Default `[0.1, 0.5]` (ETO's 0.1, then 0.5).
    pub betas: Vec<f64>,
    /// Step limit of an exploration (default: the world's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// Longest generated turn, in tokens. Default 96.
    pub max_new_tokens: usize,
    /// Training tasks played per cycle (the first ones; 0: all). Default 0.
    pub tasks: usize,
    /// Passes over the pairs per iteration. Default 1.
    pub epochs: usize,
    /// Pairs per optimizer step. Default 4.
    pub batch: usize,
    /// AdamW and its schedule (`total_steps = 0`: cosine over the iteration). Default lr 5e-5,
    /// warmup 1 step.
    pub optim: OptimConfig,
    /// Seed of the shuffling. Default 0.
    pub seed: u64,
}

impl Default for EtoMethodConfig {
    fn default() -> Self {
        EtoMethodConfig {
            extra_rounds: 5,
            betas: vec![0.1, 0.5],
            max_steps: None,
            max_new_tokens: 96,
            tasks: 0,
            epochs: 1,
            batch: 4,
            optim: OptimConfig { lr: 5e-5, warmup_steps: 1, ..OptimConfig::default() },
            seed: 0,
        }
    }
}

impl EtoMethodConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.betas.is_empty() || self.betas.iter().any(|b| !(*b > 0.0 && b.is_finite())) {
            return Err(TrainError::config("eto.betas", "must list at least one positive β"));
        }
        if self.max_new_tokens == 0 {
            return Err(TrainError::config("eto.max_new_tokens", "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(TrainError::config("eto.batch", "must be at least 1"));
        }
        validate_optim(&self.optim, "eto.optim")
    }

    /// β of iteration `k` (1-based).
    pub fn beta(&self, k: usize) -> f64 {
        self.betas[(k.max(1) - 1).min(self.betas.len() - 1)]
    }
}

/// One training task's exploration, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Explored {
    episode: Episode,
    expert_reward: f64,
}

/// Runs ETO's iterations (one per cycle) after SFT.
pub(crate) fn run(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    shared: &Shared<'_>,
    health: &mut Health,
    summary: &mut Summary,
) -> Result<(), TrainError> {
    let cfg = cx.cfg;
    let e = &cfg.eto;
    let world = shared.world;
    let train = first_tasks(shared.train, e.tasks);
    for k in 1..=cfg.cycles {
        let name = format!("cycle-{k}-explore");
        let dir = cx.stage(&name, Some(train.len()), |cx, dir| {
            let mut log = UnitLog::<Explored>::open(&dir.join("units.jsonl"))?;
            let agent = LmAgent::new(lm, sampling(0.0, e.max_new_tokens), 0);
            for (i, t) in train.iter().enumerate() {
                if log.get(&t.id).is_none() {
                    let task = origin_task(t, "eto")?;
                    let expert_reward = expert_outcome(world, t, cfg.data.seed, "eto")?;
                    let episode = play(world, &agent, task, cfg.data.seed, e.max_steps)?;
                    log.record(&t.id, Explored { episode, expert_reward })?;
                }
                (cx.observer)(&Event::Unit { stage: &name, done: i + 1, of: train.len() })?;
            }
            let pair_cfg = EtoConfig { extra_rounds: e.extra_rounds, beta: e.beta(k) };
            let mut pairs = Vec::new();
            let mut episodes = Vec::new();
            for t in train {
                let u = log.get(&t.id).expect("explored above");
                let ep = &u.episode;
                if let Some(p) =
                    eto_pair(t, &ep.conversation, ep.reward, u.expert_reward, &pair_cfg)?
                {
                    pairs.push(p);
                }
                episodes.push(ep.clone());
            }
            let stats = explore_stats(lm, &episodes, pairs.len())?;
            cx.log(&name, "explore", &stats)?;
            save_collected(dir, &stats, &episodes, "pairs", &pairs)
        })?;
        let (pairs, episodes, stats): (Vec<TrajPair>, _, _) = load_collected(&dir, "pairs")?;

        let name = format!("cycle-{k}-train");
        let beta = e.beta(k);
        let settings = TrajDpo {
            beta,
            nll_weight: 0.0,
            epochs: e.epochs,
            batch: e.batch,
            optim: &e.optim,
            seed: e.seed,
        };
        let reference = |dir: &std::path::Path| {
            // ETO's reference is the model at the start of the iteration: the weights now.
            cached_reference(dir, pairs.len(), || reference_logps(lm, &pairs))
        };
        let dir = dpo_train_stage(
            cx, lm, shared, health, k, &name, &pairs, &episodes, &stats, &settings, &reference,
        )?;
        adopt_stage(&dir, &name, &shared.vars, summary)?;
        super::eval_cycle(cx, lm, shared, k, summary)?;
        if let Some(msg) = stopped_in(&dir)? {
            summary.stopped = Some(msg);
            break;
        }
    }
    Ok(())
}

/// Success, reward and health numbers of a batch of agent episodes, and the pairs made.
pub(crate) fn explore_stats(
    lm: &Lm,
    episodes: &[Episode],
    pairs: usize,
) -> Result<Value, TrainError> {
    let refs: Vec<&Episode> = episodes.iter().collect();
    let (tokens, invalid) = episode_health(lm, &refs)?;
    let n = episodes.len().max(1) as f64;
    Ok(json!({
        "episodes": episodes.len(),
        "success_rate": episodes.iter().filter(|e| e.won).count() as f64 / n,
        "mean_reward": episodes.iter().map(|e| e.reward).sum::<f64>() / n,
        "response_tokens": tokens,
        "invalid_rate": invalid,
        "pairs": pairs,
    }))
}

/// A trajectory-DPO training stage shared by ETO and IPR: reference log-probs (cached),
/// epochs of DPO, then a health check on the agent's own episodes of the cycle (the drift of
/// the update on them stands for the KL). With no pairs the weights are kept as they are.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dpo_train_stage(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    shared: &Shared<'_>,
    health: &mut Health,
    k: usize,
    name: &str,
    pairs: &[TrajPair],
    episodes: &[Episode],
    stats: &Value,
    settings: &TrajDpo<'_>,
    reference: &dyn Fn(&std::path::Path) -> Result<Vec<crate::dpo::RefLogps>, TrainError>,
) -> Result<std::path::PathBuf, TrainError> {
    let mut judged = false;
    let dir = cx.stage(name, Some(settings.epochs), |cx, dir| {
        judged = true;
        let refs: Vec<&Episode> = episodes.iter().collect();
        let probe = probe_rollouts(&refs, 8);
        let before = rollout_logprobs(lm, &probe, 2)?;
        let epochs = if pairs.is_empty() {
            cx.log(name, "dpo", &json!({"pairs": 0, "note": "no pairs: weights kept"}))?;
            save_vars(&dir.join("trainable.safetensors"), &shared.vars)?;
            Vec::new()
        } else {
            let r = reference(dir)?;
            let mut log = |kind: &str, v: &Value| cx.log(name, kind, v);
            train_traj_dpo(lm, pairs, &r, settings, dir, &mut log)?
        };
        let sample = HealthSample {
            step: k,
            loss: epochs.last().and_then(|m| m["loss"].as_f64()).unwrap_or(0.0),
            kl: super::drift_kl(lm, &probe, &before)?,
            response_tokens: stats["response_tokens"].as_f64().unwrap_or(0.0),
            invalid_rate: stats["invalid_rate"].as_f64().unwrap_or(0.0),
        };
        if let Some(msg) = health.check(cx, name, &sample)? {
            mark_stopped(dir, &msg)?;
        }
        write_json(&dir.join("health.json"), &sample)?;
        write_json(&dir.join("epochs.json"), &epochs)
    })?;
    if !judged {
        health.replay(&read_json(&dir.join("health.json"))?);
    }
    Ok(dir)
}
