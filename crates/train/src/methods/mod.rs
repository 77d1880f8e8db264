//! The methods that start from the shared SFT stage, besides StepAgent-Implicit (which lives
//! in [`crate::pipeline`]): StepAgent-Inverse and the baselines users compare it with. Each
//! is a module with its config (a section of the run config), its stages and its loop over
//! cycles; all write into the same run directory layout and evaluate into `cycle-K-eval`.
//!
//! Stages per cycle K (`stages/…`):
//! - [`inverse`]: `cycle-K-inspect` (as Implicit), `cycle-K-disc` (discriminator epochs),
//!   `cycle-K-ppo` (sampled step actions, rewarded by D, one PPO update).
//! - [`outcome_ppo`]: `cycle-K-ppo` (iterations of whole sampled episodes and a PPO update on
//!   the final reward, one unit each).
//! - [`eto`]: `cycle-K-explore` (a greedy episode per training task, one unit each),
//!   `cycle-K-train` (trajectory-level DPO epochs).
//! - [`rft`]: `cycle-K-sample` (N sampled episodes per training task, one unit each),
//!   `cycle-K-train` (SFT epochs on the successes).
//! - [`ipr`]: `cycle-K-explore` (per trajectory: expert replays, agent continuations,
//!   Monte-Carlo rollouts by the SFT model, one unit each), `cycle-K-train` (DPO + NLL epochs).
//!
//! Every RL stage feeds a [`HealthMonitor`]: alarms are logged (`metrics.jsonl`, kind
//! `health`) and reported; under `health.action = "stop"` the stage ends cleanly, writes
//! `stopped.json`, the cycle is evaluated and the method stops there.

pub mod eto;
pub mod inverse;
pub mod ipr;
pub mod outcome_ppo;
pub mod rft;

mod agent;
mod trajdpo;

pub use agent::{LmAgent, Scripted};

use std::path::{Path, PathBuf};

use candle_core::Var;
use serde_json::{json, Value};
use stepagent_env::{TaskId, World};
use stepagent_lm::SamplingConfig;
use stepagent_policy::runner::{Episode, RunConfig, Runner};
use stepagent_policy::{Policy, Role};

use crate::health::{HealthConfig, HealthMonitor, HealthSample};
use crate::model::{load_vars, restore_vars, snapshot_vars, StepModel};
use crate::pipeline::{read_json, write_json, Ctx, LoadModel};
use crate::ppo::{kl_value, rollout_logprobs, KlEstimator, Rollout};
use crate::run::MetricsLog;
use crate::traj::Trajectory;
use crate::TrainError;

/// What every method starts from: the world, the expert data, the SFT weights and the
/// policy's trainable variables.
pub(crate) struct Shared<'a> {
    pub world: &'a dyn World,
    pub train: &'a [Trajectory],
    pub heldout: &'a [Trajectory],
    /// The SFT stage's `trainable.safetensors`.
    pub sft_weights: PathBuf,
    /// The policy's trainable variables.
    pub vars: Vec<(String, Var)>,
    /// A fresh base model (StepAgent-Inverse's discriminator backbone).
    pub load: LoadModel<'a>,
}

/// The run's [`HealthMonitor`], with the alarms of new samples logged into the metrics.
pub(crate) struct Health {
    monitor: HealthMonitor,
}

impl Health {
    pub fn new(cfg: &HealthConfig) -> Result<Self, TrainError> {
        Ok(Health { monitor: HealthMonitor::new(cfg.clone())? })
    }

    /// Feeds a sample judged in an earlier process (a finished stage or unit read back), so
    /// the baseline is what it was; its alarms were logged then.
    pub fn replay(&mut self, s: &HealthSample) {
        self.monitor.observe(s);
    }

    /// Judges a new sample of `stage`: each alarm becomes a `health` record; returns the
    /// message to stop with when an alarm fired under `health.action = "stop"`.
    pub fn check(
        &mut self,
        cx: &mut Ctx<'_>,
        stage: &str,
        s: &HealthSample,
    ) -> Result<Option<String>, TrainError> {
        let v = self.monitor.observe(s);
        for a in &v.alarms {
            let mut rec = serde_json::to_value(a).expect("plain data");
            rec["message"] = json!(a.to_string());
            cx.log(stage, "health", &rec)?;
        }
        Ok(v.stop.then(|| {
            let names: Vec<String> = v.alarms.iter().map(|a| a.to_string()).collect();
            format!(
                "stage {stage} stopped by health alarm (health.action = \"stop\"): {}",
                names.join("; ")
            )
        }))
    }
}

/// Writes the stop marker of a stage ended by a health alarm.
pub(crate) fn mark_stopped(dir: &Path, message: &str) -> Result<(), TrainError> {
    write_json(&dir.join("stopped.json"), &json!({ "message": message }))
}

/// The message of a stage that a health alarm ended, if one did.
pub(crate) fn stopped_in(dir: &Path) -> Result<Option<String>, TrainError> {
    let path = dir.join("stopped.json");
    if !path.exists() {
        return Ok(None);
    }
    let v: Value = read_json(&path)?;
    Ok(Some(v["message"].as_str().unwrap_or("stopped by a health alarm").to_string()))
}

/// The `health` records of a run's metrics, one per (stage, step, alarm): a unit redone
/// after a kill logs its alarms again.
pub(crate) fn logged_alarms(run_dir: &Path) -> Result<Vec<Value>, TrainError> {
    let path = run_dir.join("metrics.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<Value> = Vec::new();
    for r in MetricsLog::read_all(&path)? {
        if r["kind"] != "health" {
            continue;
        }
        let same = |o: &Value| {
            o["stage"] == r["stage"] && o["step"] == r["step"] && o["alarm"] == r["alarm"]
        };
        match out.iter().position(same) {
            Some(i) => out[i] = r,
            None => out.push(r),
        }
    }
    Ok(out)
}

/// The first `tasks` training trajectories (0: all of them): the tasks a method plays.
pub(crate) fn first_tasks(train: &[Trajectory], tasks: usize) -> &[Trajectory] {
    if tasks == 0 {
        train
    } else {
        &train[..tasks.min(train.len())]
    }
}

/// Writes what a collection stage made into its folder: `stats.json`, the episodes it
/// played (`episodes.json`) and the training data built from them (`{data}.json`: ETO's and
/// IPR's pairs, RFT's successes).
pub(crate) fn save_collected(
    dir: &Path,
    stats: &Value,
    episodes: &[Episode],
    data: &str,
    made: &impl serde::Serialize,
) -> Result<(), TrainError> {
    write_json(&dir.join("stats.json"), stats)?;
    write_json(&dir.join("episodes.json"), &episodes)?;
    write_json(&dir.join(format!("{data}.json")), made)
}

/// Reads back what [`save_collected`] wrote: the data, the episodes and the stats.
pub(crate) fn load_collected<T: serde::de::DeserializeOwned>(
    dir: &Path,
    data: &str,
) -> Result<(T, Vec<Episode>, Value), TrainError> {
    Ok((
        read_json(&dir.join(format!("{data}.json")))?,
        read_json(&dir.join("episodes.json"))?,
        read_json(&dir.join("stats.json"))?,
    ))
}

/// Sampling settings of an agent turn (temperature 0: greedy).
pub(crate) fn sampling(temperature: f64, max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig::react_turn(temperature, max_new_tokens)
}

/// The world task an expert trajectory replays; methods that act in the world need it.
pub(crate) fn origin_task(t: &Trajectory, method: &str) -> Result<TaskId, TrainError> {
    t.origin.as_ref().map(|o| o.task).ok_or_else(|| TrainError::Trajectory {
        id: t.id.clone(),
        turn: None,
        message: format!(
            "{method} plays the training tasks in the world, but this trajectory names no \
             world task (records of `data.expert_file` need `world` and `task` keys)"
        ),
    })
}

/// One episode of `policy` on `task`. `run_seed` is the data seed, so the world starts as it
/// did for the expert; agents that sample mix their own salt into the act seeds.
pub(crate) fn play(
    world: &dyn World,
    policy: &dyn Policy,
    task: TaskId,
    run_seed: u64,
    max_steps: Option<usize>,
) -> Result<Episode, TrainError> {
    let rc = RunConfig { workers: 1, max_steps, seed: run_seed, ..RunConfig::default() };
    let mut eps = Runner::new(world, policy, rc).run(&[task], &mut |_| Ok(()))?;
    eps.pop().ok_or_else(|| TrainError::config("data.world", format!("no episode on task {task}")))
}

/// The final reward of the expert trajectory replayed in the world.
pub(crate) fn expert_outcome(
    world: &dyn World,
    t: &Trajectory,
    run_seed: u64,
    method: &str,
) -> Result<f64, TrainError> {
    let task = origin_task(t, method)?;
    let script = Scripted::expert_prefix(t, t.step_turns().len(), None);
    Ok(play(world, &script, task, run_seed, None)?.reward)
}

/// Assistant turns in a trajectory's opening (the `OK`, in-context examples): the replayed
/// script starts after them.
pub(crate) fn opening_assistant_turns(t: &Trajectory) -> usize {
    t.conversation[..t.prompt_turns.min(t.conversation.len())]
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .count()
}

/// An episode's turns as a trajectory (its trailing observation dropped), if it is one:
/// every step turn must carry an action.
pub(crate) fn episode_trajectory(e: &Episode, id: String) -> Option<Trajectory> {
    let mut conversation = e.conversation.clone();
    while conversation.last().is_some_and(|m| m.role != Role::Assistant) {
        conversation.pop();
    }
    let t = Trajectory {
        id,
        conversation,
        prompt_turns: e.prompt_turns,
        origin: Some(crate::traj::Origin { world: e.world.clone(), task: e.task, seed: e.seed }),
    };
    t.checked().ok()
}

/// Runs `f` with the policy's variables set from `weights`, then puts the current values
/// back (the SFT model as a reference or a Monte-Carlo roller).
pub(crate) fn with_weights<T>(
    vars: &[(String, Var)],
    weights: &Path,
    f: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    let now = snapshot_vars(vars)?;
    load_vars(weights, vars)?;
    let out = f();
    restore_vars(vars, &now)?;
    out
}

/// The health numbers of a batch of agent episodes: mean tokens per agent turn and the
/// share of turns that were no valid action (no `Action:` line, or refused by the world).
pub(crate) fn episode_health(
    model: &dyn StepModel,
    episodes: &[&Episode],
) -> Result<(f64, f64), TrainError> {
    let (mut tokens, mut turns, mut invalid) = (0usize, 0usize, 0usize);
    for e in episodes {
        let r = Rollout::from_episode(e, 0);
        if r.turns.is_empty() {
            continue;
        }
        tokens += model.turn_tokens(&r.conversation, &r.turns)?.iter().sum::<usize>();
        turns += r.turns.len();
        invalid += e.format_errors + e.invalid_actions;
    }
    let t = turns.max(1) as f64;
    Ok((tokens as f64 / t, invalid as f64 / t))
}

/// The agent turns of up to `limit` episodes as rollouts (to measure how far an update moved
/// the policy on its own samples).
pub(crate) fn probe_rollouts(episodes: &[&Episode], limit: usize) -> Vec<Rollout> {
    episodes
        .iter()
        .map(|e| Rollout::from_episode(e, 0))
        .filter(|r| !r.turns.is_empty())
        .take(limit)
        .collect()
}

/// Mean per-token k3 KL between the policy now and the log-probs `before` it had on the
/// same `probe` rollouts: the drift of one cycle's update, for the KL alarm of methods
/// without a PPO reference term.
pub(crate) fn drift_kl(
    model: &dyn StepModel,
    probe: &[Rollout],
    before: &[Vec<f32>],
) -> Result<f64, TrainError> {
    if probe.is_empty() {
        return Ok(0.0);
    }
    let after = rollout_logprobs(model, probe, 2)?;
    let (mut sum, mut n) = (0f64, 0usize);
    for (a, b) in after.iter().zip(before) {
        // The samples came from the policy before: k3 of KL(before ‖ after).
        for (&x, &y) in a.iter().zip(b) {
            sum += kl_value(y as f64, x as f64, KlEstimator::K3);
            n += 1;
        }
    }
    Ok(sum / n.max(1) as f64)
}

/// Evaluation after cycle `k` (stage `cycle-K-eval`, point `cycle-K` of the curve).
pub(crate) fn eval_cycle(
    cx: &mut Ctx<'_>,
    lm: &stepagent_lm::Lm,
    shared: &Shared<'_>,
    k: usize,
    summary: &mut crate::pipeline::Summary,
) -> Result<(), TrainError> {
    let (name, label) = (format!("cycle-{k}-eval"), format!("cycle-{k}"));
    let p = crate::pipeline::eval_stage(
        cx,
        lm,
        shared.world,
        shared.train,
        shared.heldout,
        &name,
        &label,
    )?;
    summary.curve.push(p);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepagent_env::Split;
    use stepagent_policy::policies::ExpertPolicy;
    use stepagent_policy::toy::LineWorld;

    fn expert(w: &LineWorld, i: usize) -> Trajectory {
        let task = TaskId::new(Split::Train, i);
        crate::traj::from_world_expert(w, &[task], 0, 1).unwrap().remove(0)
    }

    /// The script plays the expert's first turns, then the next policy takes over: with the
    /// expert as the next policy the episode is the expert's own; with nothing after the
    /// script the runner reports the step the script ran out at.
    #[test]
    fn a_script_replays_the_expert_prefix_then_hands_over() {
        let w = LineWorld { tasks: 6, max_steps: 8 };
        let t = expert(&w, 2);
        let task = t.origin.as_ref().unwrap().task;
        let steps = t.step_turns().len();
        assert!(steps >= 2);
        let s = Scripted::expert_prefix(&t, 1, Some(&ExpertPolicy));
        let e = play(&w, &s, task, 0, None).unwrap();
        assert!(e.won);
        assert_eq!(episode_trajectory(&e, t.id.clone()).unwrap().conversation, t.conversation);
        // Replayed in full, the expert's final reward.
        assert_eq!(expert_outcome(&w, &t, 0, "test").unwrap(), 1.0);
        // A wrong turn after the prefix: the world answers it, the expert goes on after it.
        let s = Scripted::expert_prefix(&t, 1, Some(&ExpertPolicy))
            .with_turn("Thought: back.\nAction: move left".into());
        let e = play(&w, &s, task, 0, None).unwrap();
        let turn = t.step_turns()[1];
        assert_eq!(e.conversation[..turn], t.conversation[..turn]);
        assert_eq!(e.conversation[turn].content, "Thought: back.\nAction: move left");
        let err = play(&w, &Scripted::expert_prefix(&t, 1, None), task, 0, None).unwrap_err();
        assert!(err.to_string().contains("before step 1"), "{err}");
    }

    #[test]
    fn a_trajectory_without_a_world_task_is_named() {
        let w = LineWorld { tasks: 6, max_steps: 8 };
        let mut t = expert(&w, 1);
        t.origin = None;
        let err = origin_task(&t, "eto").unwrap_err().to_string();
        assert!(err.contains(&t.id) && err.contains("eto"), "{err}");
    }

    #[test]
    fn alarms_logged_twice_by_a_redone_unit_count_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = MetricsLog::open(&tmp.path().join("metrics.jsonl")).unwrap();
        let a =
            json!({"stage": "cycle-1-ppo", "kind": "health", "step": 1, "alarm": "kl-exploding"});
        m.log(&a).unwrap();
        m.log(&json!({"stage": "cycle-1-ppo", "kind": "ppo/iteration", "step": 1})).unwrap();
        m.log(&a).unwrap();
        m.log(
            &json!({"stage": "cycle-1-ppo", "kind": "health", "step": 2, "alarm": "kl-exploding"}),
        )
        .unwrap();
        let got = logged_alarms(tmp.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["step"], 2);
    }
}
