//! ETO (Song et al. 2024, arXiv 2403.02502): after SFT the agent explores the training tasks;
//! each exploration that ends worse than the expert's trajectory of the same task becomes a
//! trajectory-level preference pair, chosen = the expert's trajectory, rejected = the
//! agent's, after the same task prompt, and the policy is trained by DPO on the log-probs
//! summed over all assistant turns, against the model at the start of the iteration.
//!
//! The agent's side is cut to the expert's number of steps plus a few rounds (5 by
//! default): a failed exploration often wanders until the step limit, and an untruncated
//! rejected side would make the pair mostly about length.

use serde::{Deserialize, Serialize};
use stepagent_policy::{Message, Role};

use super::{traj_dpo_loss, TrajPair};
use crate::dpo::{DpoMetrics, RefLogps};
use crate::model::StepModel;
use crate::traj::Trajectory;
use crate::TrainError;

/// ETO settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtoConfig {
    /// Rounds (an action and the observation answering it) the rejected side may have beyond
    /// the expert's step count. Default 5.
    pub extra_rounds: usize,
    /// DPO's β. Default 0.1 (ETO's first iteration).
    pub beta: f64,
}

impl Default for EtoConfig {
    fn default() -> Self {
        EtoConfig { extra_rounds: 5, beta: 0.1 }
    }
}

/// The ETO pair of an exploration and the expert trajectory of the same task, or `None`
/// when the exploration did not end worse than the expert (`agent_reward >= expert_reward`)
/// or took no step.
///
/// `agent` is the exploration's conversation, beginning with the same prompt as the expert's
/// (instruction, its reply, the first observation) and possibly ending with an observation.
/// The pair's prompt is that shared beginning; chosen is the rest of the expert trajectory;
/// rejected is the rest of the exploration, cut after its `steps + extra_rounds`-th action
/// (`steps` being the expert's) and never ending with an observation.
pub fn eto_pair(
    expert: &Trajectory,
    agent: &[Message],
    agent_reward: f64,
    expert_reward: f64,
    cfg: &EtoConfig,
) -> Result<Option<TrajPair>, TrainError> {
    let shared = expert.prompt_turns + 1;
    let prompt = expert.conversation.get(..shared).ok_or_else(|| TrainError::Trajectory {
        id: expert.id.clone(),
        turn: None,
        message: "the expert trajectory has no first observation".into(),
    })?;
    if agent.get(..shared) != Some(prompt) {
        let turn = (0..shared).find(|&i| agent.get(i) != prompt.get(i));
        return Err(TrainError::Trajectory {
            id: expert.id.clone(),
            turn,
            message: "the exploration does not begin with the expert's task prompt".into(),
        });
    }
    if agent_reward >= expert_reward {
        return Ok(None);
    }
    let steps = expert.step_turns().len();
    let keep = steps + cfg.extra_rounds;
    let mut rejected = Vec::new();
    let mut actions = 0;
    for m in &agent[shared..] {
        if m.role == Role::Assistant {
            if actions == keep {
                break;
            }
            actions += 1;
        }
        rejected.push(m.clone());
    }
    while rejected.last().is_some_and(|m| m.role != Role::Assistant) {
        rejected.pop();
    }
    if rejected.is_empty() {
        return Ok(None);
    }
    Ok(Some(TrajPair {
        id: expert.id.clone(),
        prompt: prompt.to_vec(),
        chosen: expert.conversation[shared..].to_vec(),
        rejected,
    }))
}

/// ETO's loss on `pairs`: trajectory-level DPO with β and no NLL term, against `reference`
/// (the log-probs of the pairs under the model at the start of the iteration,
/// [`super::reference_logps`]). `scale` as in [`crate::dpo::step_dpo_loss`].
pub fn eto_loss<M: StepModel + ?Sized>(
    model: &M,
    pairs: &[TrajPair],
    reference: &[RefLogps],
    cfg: &EtoConfig,
    scale: f64,
) -> Result<(candle_core::Tensor, DpoMetrics), TrainError> {
    traj_dpo_loss(model, pairs, reference, cfg.beta, 0.0, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> Vec<Message> {
        vec![
            Message::user("Walk to the goal."),
            Message::assistant("OK"),
            Message::user("You are on cell 0. Your task is to: stop on cell 2."),
        ]
    }

    fn expert() -> Trajectory {
        let mut c = prompt();
        c.extend([
            Message::assistant("Thought: right.\nAction: move right"),
            Message::user("You are on cell 1."),
            Message::assistant("Thought: right.\nAction: move right"),
            Message::user("You are on cell 2."),
            Message::assistant("Thought: here.\nAction: stop"),
        ]);
        Trajectory { id: "line/train/1".into(), conversation: c, prompt_turns: 2, origin: None }
    }

    /// An exploration of `n` `look` actions, each answered, as a transcript records it.
    fn wander(n: usize) -> Vec<Message> {
        let mut c = prompt();
        for i in 0..n {
            c.push(Message::assistant(format!("Thought: {i}.\nAction: look")));
            c.push(Message::user("You are on cell 0."));
        }
        c
    }

    #[test]
    fn a_long_failure_is_cut_to_expert_steps_plus_five_rounds() {
        let e = expert();
        let p = eto_pair(&e, &wander(12), 0.0, 1.0, &EtoConfig::default()).unwrap().unwrap();
        assert_eq!(p.prompt, prompt());
        assert_eq!(p.chosen, e.conversation[3..]);
        // 3 expert steps + 5 = 8 agent actions, with the 7 observations between them.
        assert_eq!(p.steps(), (3, 8));
        assert_eq!(p.rejected, wander(8)[3..3 + 15]);
        assert_eq!(p.rejected.last().unwrap().content, "Thought: 7.\nAction: look");
        // The scored turns of each side are its assistant turns after the prompt.
        let (conv, turns) = p.side(false);
        assert_eq!(conv.len(), 3 + 15);
        assert_eq!(turns, (3..18).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn a_short_failure_is_kept_whole_and_a_success_gives_no_pair() {
        let e = expert();
        let cfg = EtoConfig::default();
        let p = eto_pair(&e, &wander(2), 0.0, 1.0, &cfg).unwrap().unwrap();
        // The trailing observation is dropped; both actions stay.
        assert_eq!(p.rejected, wander(2)[3..6]);
        // A graded reward below the expert's is a failure; one equal to it is not.
        assert!(eto_pair(&e, &wander(2), 0.4, 0.6, &cfg).unwrap().is_some());
        assert!(eto_pair(&e, &wander(2), 1.0, 1.0, &cfg).unwrap().is_none());
        // No action taken: nothing to reject.
        assert!(eto_pair(&e, &wander(0), 0.0, 1.0, &cfg).unwrap().is_none());
        // A different task prompt is refused, naming the turn.
        let mut other = wander(2);
        other[2] = Message::user("You are on cell 0. Your task is to: stop on cell 3.");
        let err = eto_pair(&e, &other, 0.0, 1.0, &cfg).unwrap_err().to_string();
        assert!(err.contains("turn 2") && err.contains("task prompt"), "{err}");
        // extra_rounds = 0 cuts at the expert's own length.
        let p = eto_pair(&e, &wander(9), 0.0, 1.0, &EtoConfig { extra_rounds: 0, ..cfg })
            .unwrap()
            .unwrap();
        assert_eq!(p.steps(), (3, 3));
    }
}
