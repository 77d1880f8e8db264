//! The peers StepAgent is compared with, as their pair construction and losses: both learn
//! from trajectory-level preference pairs in ETO's DPO layout (a shared prompt ending with an
//! observation, a chosen and a rejected continuation), scored by the summed log-probs of all
//! assistant turns of a continuation.
//!
//! - [`eto`]: a failed exploration trajectory against the expert's of the same task.
//! - [`ipr`]: at each step, the expert's continuation against the agent's, kept when the
//!   Monte-Carlo step rewards and the outcomes agree; DPO plus NLL on the chosen side.

pub mod eto;
pub mod ipr;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use stepagent_policy::{Message, Role};

use crate::dpo::{step_dpo_loss, DpoMetrics, PairLogps, RefLogps};
use crate::model::StepModel;
use crate::TrainError;

/// A trajectory-level preference pair (ETO's and IPR's DPO record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajPair {
    /// The record's id.
    pub id: String,
    /// The shared history, ending with a user (observation) turn.
    pub prompt: Vec<Message>,
    /// The preferred continuation: assistant turns with the observations between them.
    pub chosen: Vec<Message>,
    /// The dispreferred continuation.
    pub rejected: Vec<Message>,
}

impl TrajPair {
    /// The prompt followed by one side, and the message indices of that side's assistant
    /// turns (the turns scored).
    pub fn side(&self, chosen: bool) -> (Vec<Message>, Vec<usize>) {
        let cont = if chosen { &self.chosen } else { &self.rejected };
        let mut conv = self.prompt.clone();
        conv.extend(cont.iter().cloned());
        let turns =
            (self.prompt.len()..conv.len()).filter(|&i| conv[i].role == Role::Assistant).collect();
        (conv, turns)
    }

    /// Assistant turns of each side: `(chosen, rejected)`.
    pub fn steps(&self) -> (usize, usize) {
        let n = |c: &[Message]| c.iter().filter(|m| m.role == Role::Assistant).count();
        (n(&self.chosen), n(&self.rejected))
    }
}

/// Summed log-probs of every assistant turn of each side of `pair` (one batched forward of
/// the two sides), as `(chosen, rejected, chosen tokens)`: scalars, differentiable when
/// `grad`.
fn pair_logps<M: StepModel + ?Sized>(
    model: &M,
    pair: &TrajPair,
    grad: bool,
) -> Result<(Tensor, Tensor, usize), TrainError> {
    let (c, ct) = pair.side(true);
    let (r, rt) = pair.side(false);
    if ct.is_empty() || rt.is_empty() {
        return Err(TrainError::Trajectory {
            id: pair.id.clone(),
            turn: None,
            message: "a preference pair needs an assistant turn on each side".into(),
        });
    }
    let s = model.score_turns_at(&[(&c, &ct), (&r, &rt)], grad)?;
    let chosen = s.logp.narrow(0, 0, ct.len())?.sum_all()?;
    let rejected = s.logp.narrow(0, ct.len(), rt.len())?.sum_all()?;
    Ok((chosen, rejected, s.tokens[..ct.len()].iter().sum()))
}

/// Reference log-probs of each pair under `model` as it is now (no gradients).
pub fn reference_logps<M: StepModel + ?Sized>(
    model: &M,
    pairs: &[TrajPair],
) -> Result<Vec<RefLogps>, TrainError> {
    pairs
        .iter()
        .map(|p| {
            let (c, r, _) = pair_logps(model, p, false)?;
            Ok(RefLogps { chosen: c.to_scalar::<f32>()?, rejected: r.to_scalar::<f32>()? })
        })
        .collect()
}

/// Trajectory-level DPO over `pairs` against the reference log-probs `reference` (one per
/// pair): the step-DPO loss of [`crate::dpo`] on log-probs summed over all assistant turns of
/// each continuation, plus `nll_weight` × the per-token NLL of the chosen side (IPR's term;
/// 0 for ETO). `scale` as in [`step_dpo_loss`].
pub fn traj_dpo_loss<M: StepModel + ?Sized>(
    model: &M,
    pairs: &[TrajPair],
    reference: &[RefLogps],
    beta: f64,
    nll_weight: f64,
    scale: f64,
) -> Result<(Tensor, DpoMetrics), TrainError> {
    if pairs.is_empty() || reference.len() != pairs.len() {
        return Err(TrainError::config(
            "baseline",
            format!("{} pairs with {} reference log-prob pairs", pairs.len(), reference.len()),
        ));
    }
    let (mut cs, mut rs, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for p in pairs {
        let (c, r, t) = pair_logps(model, p, true)?;
        cs.push(c);
        rs.push(r);
        tokens.push(t);
    }
    let (chosen, rejected) = (Tensor::stack(&cs, 0)?, Tensor::stack(&rs, 0)?);
    let ref_c: Vec<f32> = reference.iter().map(|r| r.chosen).collect();
    let ref_r: Vec<f32> = reference.iter().map(|r| r.rejected).collect();
    let p = PairLogps {
        policy_chosen: &chosen,
        policy_rejected: &rejected,
        ref_chosen: &ref_c,
        ref_rejected: &ref_r,
        chosen_tokens: &tokens,
    };
    step_dpo_loss(&p, beta, nll_weight, scale)
}
