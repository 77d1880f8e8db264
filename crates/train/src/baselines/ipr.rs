//! IPR (Xiong et al. 2024, arXiv 2406.11176): the expert's actions 1..t−1 are replayed in the
//! real environment, then the agent acts at step t and rolls out to the end. Each step's
//! quality is estimated by Monte Carlo: the mean final reward of M (5) rollouts by the SFT
//! model after that step. At step t the expert's continuation and the agent's become a pair
//! (expert chosen) only when two judges agree the expert's is better: the step rewards and
//! the outcomes (final rewards of the two continuations), each by more than a margin
//! (0.01). The loss is DPO on the pair plus NLL on the chosen side, against the SFT model.
//!
//! Requiring both judges filters the noise of either alone: an agent continuation that
//! happens to fail after a good step (bad luck later) or whose step looks bad to a handful
//! of rollouts but still succeeds is not taught against.
//!
//! This module holds the pure part (filtering and pair building) and the loss; the rollouts
//! need a world and are the pipeline's.

use serde::{Deserialize, Serialize};
use stepagent_policy::{Message, Role};

use super::{traj_dpo_loss, TrajPair};
use crate::dpo::{DpoMetrics, RefLogps};
use crate::model::StepModel;
use crate::traj::Trajectory;
use crate::TrainError;

/// IPR settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IprConfig {
    /// Monte-Carlo rollouts M per step reward. Default 5.
    pub rollouts: usize,
    /// How much better the expert's step reward and outcome must each be. Default 0.01.
    pub margin: f64,
    /// DPO's β. Default 0.1.
    pub beta: f64,
    /// Weight of the per-token NLL on the chosen continuation. Default 1.0.
    pub nll_weight: f64,
}

impl Default for IprConfig {
    fn default() -> Self {
        IprConfig { rollouts: 5, margin: 0.01, beta: 0.1, nll_weight: 1.0 }
    }
}

/// A step reward: the mean final reward of the Monte-Carlo rollouts after the step (0 with
/// none).
pub fn step_reward(final_rewards: &[f64]) -> f64 {
    if final_rewards.is_empty() {
        0.0
    } else {
        final_rewards.iter().sum::<f64>() / final_rewards.len() as f64
    }
}

/// What was observed at one step t of an expert trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IprStep {
    /// Message index of the expert's turn at step t (its history is the pair's prompt).
    pub turn: usize,
    /// Final rewards of the M rollouts after the expert's action at t.
    pub expert_rollouts: Vec<f64>,
    /// Final rewards of the M rollouts after the agent's action at t.
    pub agent_rollouts: Vec<f64>,
    /// The agent's action at t and its own rollout after it (observations between).
    pub agent_continuation: Vec<Message>,
    /// Final reward of the agent's own continuation.
    pub agent_outcome: f64,
}

/// Why a step was kept or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IprFilter {
    /// Both judges prefer the expert: a pair.
    Kept,
    /// The step rewards do not prefer the expert by the margin.
    StepRewardDisagrees,
    /// The outcomes do not prefer the expert by the margin.
    OutcomeDisagrees,
}

/// Whether a step becomes a pair: the expert's step reward and outcome must each exceed the
/// agent's by more than `margin`.
pub fn ipr_filter(step: &IprStep, expert_outcome: f64, margin: f64) -> IprFilter {
    if expert_outcome - step.agent_outcome <= margin {
        IprFilter::OutcomeDisagrees
    } else if step_reward(&step.expert_rollouts) - step_reward(&step.agent_rollouts) <= margin {
        IprFilter::StepRewardDisagrees
    } else {
        IprFilter::Kept
    }
}

/// IPR's pairs of one expert trajectory (final reward `expert_outcome`) from its observed
/// steps: prompt = the expert history before step t, chosen = the expert's continuation from
/// t, rejected = the agent's. Returns the pairs and each step's filter verdict.
pub fn ipr_pairs(
    expert: &Trajectory,
    expert_outcome: f64,
    steps: &[IprStep],
    cfg: &IprConfig,
) -> Result<(Vec<TrajPair>, Vec<IprFilter>), TrainError> {
    let mut pairs = Vec::new();
    let mut verdicts = Vec::with_capacity(steps.len());
    for s in steps {
        let bad = |message: &str| TrainError::Trajectory {
            id: expert.id.clone(),
            turn: Some(s.turn),
            message: message.into(),
        };
        if !expert.step_turns().contains(&s.turn) {
            return Err(bad("not a step turn of the expert trajectory"));
        }
        if s.agent_continuation.first().map(|m| m.role) != Some(Role::Assistant) {
            return Err(bad("the agent's continuation must begin with its action"));
        }
        let v = ipr_filter(s, expert_outcome, cfg.margin);
        verdicts.push(v);
        if v != IprFilter::Kept {
            continue;
        }
        let mut rejected = s.agent_continuation.clone();
        while rejected.last().is_some_and(|m| m.role != Role::Assistant) {
            rejected.pop();
        }
        pairs.push(TrajPair {
            id: format!("{}/{}", expert.id, s.turn),
            prompt: expert.conversation[..s.turn].to_vec(),
            chosen: expert.conversation[s.turn..].to_vec(),
            rejected,
        });
    }
    Ok((pairs, verdicts))
}

/// IPR's loss on `pairs`: DPO with β plus `nll_weight` × the per-token NLL of the chosen
/// continuation, against `reference` (the SFT model's log-probs of the pairs,
/// [`super::reference_logps`]). `scale` as in [`crate::dpo::step_dpo_loss`].
pub fn ipr_loss<M: StepModel + ?Sized>(
    model: &M,
    pairs: &[TrajPair],
    reference: &[RefLogps],
    cfg: &IprConfig,
    scale: f64,
) -> Result<(candle_core::Tensor, DpoMetrics), TrainError> {
    traj_dpo_loss(model, pairs, reference, cfg.beta, cfg.nll_weight, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expert() -> Trajectory {
        let c = vec![
            Message::user("Walk to the goal."),
            Message::assistant("OK"),
            Message::user("You are on cell 0. Your task is to: stop on cell 2."),
            Message::assistant("Action: move right"),
            Message::user("You are on cell 1."),
            Message::assistant("Action: move right"),
            Message::user("You are on cell 2."),
            Message::assistant("Action: stop"),
        ];
        Trajectory { id: "line/train/1".into(), conversation: c, prompt_turns: 2, origin: None }
    }

    fn step(turn: usize, expert: [f64; 5], agent: [f64; 5], outcome: f64) -> IprStep {
        IprStep {
            turn,
            expert_rollouts: expert.to_vec(),
            agent_rollouts: agent.to_vec(),
            agent_continuation: vec![
                Message::assistant("Action: move left"),
                Message::user("You are on cell 0."),
                Message::assistant("Action: stop"),
                Message::user("You stop."),
            ],
            agent_outcome: outcome,
        }
    }

    /// Expert outcome 1.0 throughout.
    /// - turn 3: step rewards 4/5 = 0.8 vs 1/5 = 0.2, outcome 1 vs 0 → kept.
    /// - turn 5: step rewards 0.6 vs 0.6 (equal), outcome 1 vs 0 → the step reward disagrees.
    /// - turn 7: step rewards 1.0 vs 0.0, but the agent's continuation also won (1 vs 1) →
    ///   the outcome disagrees.
    /// - turn 3 again, step rewards 0.6 vs 0.592 (0.008 apart, within the 0.01 margin) → out.
    #[test]
    fn pairs_are_kept_only_when_step_reward_and_outcome_agree() {
        let e = expert();
        let steps = [
            step(3, [1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0], 0.0),
            step(5, [1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0, 0.0], 0.0),
            step(7, [1.0; 5], [0.0; 5], 1.0),
            step(3, [0.6, 0.6, 0.6, 0.6, 0.6], [0.6, 0.6, 0.6, 0.6, 0.56], 0.0),
        ];
        assert!((step_reward(&steps[0].expert_rollouts) - 0.8).abs() < 1e-12);
        let (pairs, verdicts) = ipr_pairs(&e, 1.0, &steps, &IprConfig::default()).unwrap();
        assert_eq!(
            verdicts,
            [
                IprFilter::Kept,
                IprFilter::StepRewardDisagrees,
                IprFilter::OutcomeDisagrees,
                IprFilter::StepRewardDisagrees
            ]
        );
        assert_eq!(pairs.len(), 1);
        let p = &pairs[0];
        assert_eq!(p.id, "line/train/1/3");
        assert_eq!(p.prompt, e.conversation[..3]);
        assert_eq!(p.chosen, e.conversation[3..]);
        // The agent's continuation without its trailing observation.
        assert_eq!(p.rejected, steps[0].agent_continuation[..3]);
        assert_eq!(p.steps(), (3, 2));
        // A margin of 0.005 lets the fourth step's 0.008 through.
        let loose = IprConfig { margin: 0.005, ..IprConfig::default() };
        assert_eq!(ipr_pairs(&e, 1.0, &steps, &loose).unwrap().0.len(), 2);
    }

    #[test]
    fn a_step_that_is_not_an_expert_action_is_refused() {
        let e = expert();
        let err = ipr_pairs(&e, 1.0, &[step(4, [1.0; 5], [0.0; 5], 0.0)], &IprConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("turn 4"), "{err}");
        let mut s = step(3, [1.0; 5], [0.0; 5], 0.0);
        s.agent_continuation.remove(0);
        assert!(ipr_pairs(&e, 1.0, &[s], &IprConfig::default()).is_err());
    }
}
