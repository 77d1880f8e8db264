//! IPR as a method (stepagent.md §4): for each chosen step t of an expert trajectory the
//! expert's actions before t are replayed in the world, the current policy acts at t and
//! rolls out to the end (its continuation and outcome). The SFT model then rolls out M times
//! after the expert's action at t and M times after the agent's: the step rewards. A step
//! becomes a pair (expert continuation chosen) only when both its outcome and its step
//! reward prefer the expert by more than the margin; the policy is trained by DPO + NLL
//! against the SFT model.
//!
//! Monte-Carlo rollouts dominate the cost (1 + 2M episodes per step), so `tasks` and
//! `steps_per_trajectory` bound how many steps are judged per cycle.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stepagent_lm::{Lm, OptimConfig};
use stepagent_policy::runner::Episode;
use stepagent_policy::Policy;

use super::eto::{dpo_train_stage, explore_stats};
use super::trajdpo::TrajDpo;
use super::{
    eval_cycle, expert_outcome, first_tasks, load_collected, origin_task, play, sampling,
    save_collected, stopped_in, with_weights, Health, LmAgent, Scripted, Shared,
};
use crate::baselines::ipr::{ipr_pairs, IprConfig, IprFilter, IprStep};
use crate::baselines::{reference_logps, TrajPair};
use crate::dpo::cached_reference;
use crate::inspect::{hash_str, mix_seed};
use crate::pipeline::{adopt_stage, Ctx, Event, Summary};
use crate::run::UnitLog;
use crate::sft::validate_optim;
use crate::traj::Trajectory;
use crate::TrainError;

/// IPR settings (`[ipr]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IprMethodConfig {
    /// Monte-Carlo rollouts M per step reward. Default 5.
    pub rollouts: usize,
    /// How much better the expert's step reward and outcome must each be. Default 0.01.
    pub margin: f64,
    /// DPO's β. Default 0.1.
    pub beta: f64,
    /// Weight of the per-token NLL on the chosen continuation. Default 1.0.
    pub nll_weight: f64,
    /// Expert trajectories judged per cycle (the first ones; 0: all). Default 0.
    pub tasks: usize,
    /// Steps judged per trajectory (a seeded choice; 0: every step). Default 0.
    pub steps_per_trajectory: usize,
    /// Sampling temperature of the agent's and the Monte-Carlo rollouts. Default 1.0.
    pub temperature: f64,
    /// Longest generated turn, in tokens. Default 96.
    pub max_new_tokens: usize,
    /// Step limit of every episode (default: the world's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// Passes over the pairs per cycle. Default 1.
    pub epochs: usize,
    /// Pairs per optimizer step. Default 4.
    pub batch: usize,
    /// AdamW and its schedule. Default lr 5e-5, warmup 1 step.
    pub optim: OptimConfig,
    /// Seed of the step choice, the sampling and the shuffling. Default 0.
    pub seed: u64,
}

impl Default for IprMethodConfig {
    fn default() -> Self {
        let pure = IprConfig::default();
        IprMethodConfig {
            rollouts: pure.rollouts,
            margin: pure.margin,
            beta: pure.beta,
            nll_weight: pure.nll_weight,
            tasks: 0,
            steps_per_trajectory: 0,
            temperature: 1.0,
            max_new_tokens: 96,
            max_steps: None,
            epochs: 1,
            batch: 4,
            optim: OptimConfig { lr: 5e-5, warmup_steps: 1, ..OptimConfig::default() },
            seed: 0,
        }
    }
}

impl IprMethodConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.rollouts == 0 {
            return Err(TrainError::config("ipr.rollouts", "must be at least 1"));
        }
        if !(self.margin >= 0.0 && self.margin.is_finite()) {
            return Err(TrainError::config("ipr.margin", "must be >= 0"));
        }
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(TrainError::config("ipr.beta", "must be a positive number"));
        }
        if !(self.nll_weight >= 0.0 && self.nll_weight.is_finite()) {
            return Err(TrainError::config("ipr.nll_weight", "must be >= 0"));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::config("ipr.temperature", "must be >= 0"));
        }
        if self.max_new_tokens == 0 {
            return Err(TrainError::config("ipr.max_new_tokens", "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(TrainError::config("ipr.batch", "must be at least 1"));
        }
        validate_optim(&self.optim, "ipr.optim")
    }

    fn pure(&self) -> IprConfig {
        IprConfig {
            rollouts: self.rollouts,
            margin: self.margin,
            beta: self.beta,
            nll_weight: self.nll_weight,
        }
    }
}

/// One trajectory's observations, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Judged {
    expert_outcome: f64,
    steps: Vec<IprStep>,
    /// The agent's own episodes (one per judged step).
    agent_episodes: Vec<Episode>,
    /// Steps whose replayed expert prefix did not reproduce the recorded observations (a
    /// world that is not deterministic given its seed); left out.
    diverged: usize,
}

/// The step indices of `t` judged in cycle `k`.
fn chosen_steps(t: &Trajectory, c: &IprMethodConfig, k: usize) -> Vec<usize> {
    let n = t.step_turns().len();
    let mut all: Vec<usize> = (0..n).collect();
    if c.steps_per_trajectory == 0 || c.steps_per_trajectory >= n {
        return all;
    }
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[c.seed, k as u64, hash_str(&t.id)]));
    all.shuffle(&mut rng);
    let mut some = all[..c.steps_per_trajectory].to_vec();
    some.sort_unstable();
    some
}

/// Final rewards of `m` rollouts by `roller_lm` (the SFT weights) after the script `script`.
#[allow(clippy::too_many_arguments)]
fn monte_carlo(
    shared: &Shared<'_>,
    lm: &Lm,
    c: &IprMethodConfig,
    t: &Trajectory,
    steps: usize,
    extra: Option<&str>,
    run_seed: u64,
    salt: &[u64],
) -> Result<Vec<f64>, TrainError> {
    let task = origin_task(t, "ipr")?;
    (0..c.rollouts)
        .map(|j| {
            let mut parts = salt.to_vec();
            parts.push(j as u64);
            let roller =
                LmAgent::new(lm, sampling(c.temperature, c.max_new_tokens), mix_seed(&parts));
            let mut script = Scripted::expert_prefix(t, steps, Some(&roller as &dyn Policy));
            if let Some(turn) = extra {
                script = script.with_turn(turn.to_string());
            }
            Ok(play(shared.world, &script, task, run_seed, c.max_steps)?.reward)
        })
        .collect()
}

/// Judges the chosen steps of one trajectory in cycle `k`.
fn judge(
    shared: &Shared<'_>,
    lm: &Lm,
    c: &IprMethodConfig,
    t: &Trajectory,
    k: usize,
    run_seed: u64,
) -> Result<Judged, TrainError> {
    let task = origin_task(t, "ipr")?;
    let turns = t.step_turns();
    let expert_outcome = expert_outcome(shared.world, t, run_seed, "ipr")?;
    // The current policy acts at each chosen step after the replayed expert prefix.
    let mut agent_episodes = Vec::new();
    let mut kept: Vec<(usize, Episode)> = Vec::new();
    let mut diverged = 0;
    for s in chosen_steps(t, c, k) {
        let salt = mix_seed(&[c.seed, k as u64, hash_str(&t.id), s as u64, 0]);
        let agent = LmAgent::new(lm, sampling(c.temperature, c.max_new_tokens), salt);
        let script = Scripted::expert_prefix(t, s, Some(&agent as &dyn Policy));
        let e = play(shared.world, &script, task, run_seed, c.max_steps)?;
        let turn = turns[s];
        if e.conversation.get(..turn) != t.conversation.get(..turn) || e.conversation.len() <= turn
        {
            diverged += 1;
            continue;
        }
        agent_episodes.push(e.clone());
        kept.push((s, e));
    }
    // Step rewards from the SFT model's rollouts.
    let steps = with_weights(&shared.vars, &shared.sft_weights, || {
        kept.iter()
            .map(|(s, e)| {
                let turn = turns[*s];
                let base = [c.seed, k as u64, hash_str(&t.id), *s as u64];
                let expert_rollouts = monte_carlo(
                    shared,
                    lm,
                    c,
                    t,
                    s + 1,
                    None,
                    run_seed,
                    &[base[0], base[1], base[2], base[3], 1],
                )?;
                let agent_turn = e.conversation[turn].content.clone();
                let agent_rollouts = monte_carlo(
                    shared,
                    lm,
                    c,
                    t,
                    *s,
                    Some(&agent_turn),
                    run_seed,
                    &[base[0], base[1], base[2], base[3], 2],
                )?;
                Ok(IprStep {
                    turn,
                    expert_rollouts,
                    agent_rollouts,
                    agent_continuation: e.conversation[turn..].to_vec(),
                    agent_outcome: e.reward,
                })
            })
            .collect::<Result<Vec<_>, TrainError>>()
    })?;
    Ok(Judged { expert_outcome, steps, agent_episodes, diverged })
}

/// Runs IPR's cycles after SFT.
pub(crate) fn run(
    cx: &mut Ctx<'_>,
    lm: &Lm,
    shared: &Shared<'_>,
    health: &mut Health,
    summary: &mut Summary,
) -> Result<(), TrainError> {
    let cfg = cx.cfg;
    let c = &cfg.ipr;
    let chosen = first_tasks(shared.train, c.tasks);
    for k in 1..=cfg.cycles {
        let name = format!("cycle-{k}-explore");
        let dir = cx.stage(&name, Some(chosen.len()), |cx, dir| {
            let mut log = UnitLog::<Judged>::open(&dir.join("units.jsonl"))?;
            for (i, t) in chosen.iter().enumerate() {
                if log.get(&t.id).is_none() {
                    let j = judge(shared, lm, c, t, k, cfg.data.seed)?;
                    log.record(&t.id, j)?;
                }
                (cx.observer)(&Event::Unit { stage: &name, done: i + 1, of: chosen.len() })?;
            }
            let mut pairs: Vec<TrajPair> = Vec::new();
            let mut episodes = Vec::new();
            let (mut kept, mut step_disagrees, mut outcome_disagrees, mut diverged) = (0, 0, 0, 0);
            for t in chosen {
                let j = log.get(&t.id).expect("judged above");
                let (p, verdicts) = ipr_pairs(t, j.expert_outcome, &j.steps, &c.pure())?;
                pairs.extend(p);
                for v in verdicts {
                    match v {
                        IprFilter::Kept => kept += 1,
                        IprFilter::StepRewardDisagrees => step_disagrees += 1,
                        IprFilter::OutcomeDisagrees => outcome_disagrees += 1,
                    }
                }
                diverged += j.diverged;
                episodes.extend(j.agent_episodes.iter().cloned());
            }
            let mut stats = explore_stats(lm, &episodes, pairs.len())?;
            let o = stats.as_object_mut().expect("an object");
            o.insert("kept".into(), json!(kept));
            o.insert("step_reward_disagrees".into(), json!(step_disagrees));
            o.insert("outcome_disagrees".into(), json!(outcome_disagrees));
            o.insert("diverged".into(), json!(diverged));
            o.insert("monte_carlo_episodes".into(), json!(2 * c.rollouts * episodes.len()));
            cx.log(&name, "explore", &stats)?;
            save_collected(dir, &stats, &episodes, "pairs", &pairs)
        })?;
        let (pairs, episodes, stats): (Vec<TrajPair>, _, _) = load_collected(&dir, "pairs")?;

        let name = format!("cycle-{k}-train");
        let settings = TrajDpo {
            beta: c.beta,
            nll_weight: c.nll_weight,
            epochs: c.epochs,
            batch: c.batch,
            optim: &c.optim,
            seed: c.seed,
        };
        // IPR's reference is the SFT model.
        let reference = |dir: &std::path::Path| {
            cached_reference(dir, pairs.len(), || {
                with_weights(&shared.vars, &shared.sft_weights, || reference_logps(lm, &pairs))
            })
        };
        let dir = dpo_train_stage(
            cx, lm, shared, health, k, &name, &pairs, &episodes, &stats, &settings, &reference,
        )?;
        adopt_stage(&dir, &name, &shared.vars, summary)?;
        eval_cycle(cx, lm, shared, k, summary)?;
        if let Some(msg) = stopped_in(&dir)? {
            summary.stopped = Some(msg);
            break;
        }
    }
    Ok(())
}
