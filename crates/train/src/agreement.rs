//! The expert-agreement curve: on expert prefixes, how often the greedy agent's action
//! equals the expert's, and the mean log-prob of the expert's turn (the paper's claim that
//! the policy converges to the expert's, measured).

use serde::{Deserialize, Serialize};
use stepagent_lm::SamplingConfig;
use stepagent_policy::react;

use crate::model::StepModel;
use crate::traj::{normalise_action, Trajectory};
use crate::TrainError;

/// Agreement with the expert on a set of trajectories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Steps (expert prefixes) measured.
    pub steps: usize,
    /// Steps where the greedy action equals the expert's (normalised).
    pub agreed: usize,
    /// `agreed / steps`.
    pub rate: f64,
    /// Mean over steps of log π(a*|h), the summed log-prob of the expert's whole turn.
    pub mean_expert_logp: f64,
    /// Mean per-token log-prob of the expert's turns.
    pub mean_expert_token_logp: f64,
}

/// Measures agreement on every step of `trajectories` (greedy decoding, at most
/// `max_new_tokens` per turn; one prefill per trajectory).
pub fn expert_agreement(
    model: &dyn StepModel,
    trajectories: &[Trajectory],
    max_new_tokens: usize,
) -> Result<Agreement, TrainError> {
    let sampling = SamplingConfig::react_turn(0.0, max_new_tokens);
    let mut a = Agreement::default();
    let (mut logp, mut tokens) = (0f64, 0usize);
    for t in trajectories {
        let turns = t.step_turns();
        let seeds = vec![0u64; turns.len()];
        let samples = model.sample_at_turns(&t.conversation, &turns, 1, &sampling, &seeds)?;
        for (expert, sample) in t.expert_actions().iter().zip(&samples) {
            a.steps += 1;
            let got = sample.first().and_then(|s| react::parse_action(s));
            if got.is_some_and(|g| normalise_action(&g) == normalise_action(expert)) {
                a.agreed += 1;
            }
        }
        let s = model.score_turns_at(&[(&t.conversation, &turns)], false)?;
        logp += s.logp.sum_all()?.to_scalar::<f32>()? as f64;
        tokens += s.tokens.iter().sum::<usize>();
    }
    if a.steps > 0 {
        a.rate = a.agreed as f64 / a.steps as f64;
        a.mean_expert_logp = logp / a.steps as f64;
    }
    if tokens > 0 {
        a.mean_expert_token_logp = logp / tokens as f64;
    }
    Ok(a)
}
