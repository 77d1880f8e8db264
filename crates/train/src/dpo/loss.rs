//! The step-level DPO loss on summed log-probs of one assistant turn.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The log-probs of a batch of step pairs: expert turn a* (chosen) and agent turn â
/// (rejected) after the same history h, under the policy (differentiable) and the frozen
/// reference (constants).
pub struct PairLogps<'a> {
    /// log π_θ(a*|h) per pair, `(n,)`.
    pub policy_chosen: &'a Tensor,
    /// log π_θ(â|h) per pair, `(n,)`.
    pub policy_rejected: &'a Tensor,
    /// log π_ref(a*|h) per pair.
    pub ref_chosen: &'a [f32],
    /// log π_ref(â|h) per pair.
    pub ref_rejected: &'a [f32],
    /// Tokens of each chosen turn (the NLL term is per token, as IPR's).
    pub chosen_tokens: &'a [usize],
}

/// What one evaluation of the loss measured (means over the pairs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DpoMetrics {
    /// The loss (DPO term plus the weighted NLL term).
    pub loss: f64,
    /// The DPO term alone.
    pub dpo_loss: f64,
    /// The NLL term alone (per chosen token), unweighted.
    pub nll: f64,
    /// Reward margin β[(log π_θ − log π_ref)(a*) − (log π_θ − log π_ref)(â)].
    pub margin: f64,
    /// Fraction of pairs whose implicit reward prefers the expert turn (margin > 0).
    pub accuracy: f64,
    /// Mean log π_θ(a*|h).
    pub chosen_logp: f64,
    /// Mean log π_θ(â|h).
    pub rejected_logp: f64,
    /// Mean implicit reward of the expert turn, β(log π_θ − log π_ref)(a*).
    pub chosen_reward: f64,
    /// Mean implicit reward of the agent turn.
    pub rejected_reward: f64,
    /// Pairs.
    pub pairs: usize,
}

/// `−log σ(x)` computed stably as `max(−x, 0) + log(1 + e^{−|x|})`.
fn neg_log_sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    let relu = x.neg()?.relu()?;
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    relu + soft
}

/// L = mean over pairs of −log σ(β[(log π_θ(a*|h) − log π_ref(a*|h)) − (log π_θ(â|h) −
/// log π_ref(â|h))]) + `nll_weight` · mean over pairs of −log π_θ(a*|h) / |a*|.
///
/// The loss is scaled by `scale` (1 for a plain mean; `n / total` when a batch is split
/// into parts whose gradients are accumulated), the metrics are not.
pub fn step_dpo_loss(
    p: &PairLogps<'_>,
    beta: f64,
    nll_weight: f64,
    scale: f64,
) -> Result<(Tensor, DpoMetrics), TrainError> {
    let n = p.ref_chosen.len();
    let dims_ok = p.policy_chosen.dims() == [n]
        && p.policy_rejected.dims() == [n]
        && p.ref_rejected.len() == n
        && p.chosen_tokens.len() == n;
    if n == 0 || !dims_ok {
        return Err(TrainError::config(
            "reflect",
            format!(
                "step-DPO needs n > 0 pairs with matching shapes (policy {:?} / {:?}, reference {} / {}, tokens {})",
                p.policy_chosen.dims(),
                p.policy_rejected.dims(),
                n,
                p.ref_rejected.len(),
                p.chosen_tokens.len()
            ),
        ));
    }
    let dev = p.policy_chosen.device();
    let ref_c = Tensor::from_slice(p.ref_chosen, n, dev)?;
    let ref_r = Tensor::from_slice(p.ref_rejected, n, dev)?;
    let chosen_ratio = (p.policy_chosen - &ref_c)?;
    let rejected_ratio = (p.policy_rejected - &ref_r)?;
    let logits = ((&chosen_ratio - &rejected_ratio)? * beta)?;
    let dpo = neg_log_sigmoid(&logits)?.mean_all()?;
    let inv_len: Vec<f32> = p.chosen_tokens.iter().map(|&t| 1.0 / t.max(1) as f32).collect();
    let nll = (p.policy_chosen.neg()? * Tensor::from_vec(inv_len, n, dev)?)?.mean_all()?;
    let loss = if nll_weight != 0.0 { (&dpo + (&nll * nll_weight)?)? } else { dpo.clone() };

    let v = |t: &Tensor| -> candle_core::Result<Vec<f32>> { t.detach().to_vec1::<f32>() };
    let (pc, pr, lg) = (v(p.policy_chosen)?, v(p.policy_rejected)?, v(&logits)?);
    let mean = |xs: &[f32]| xs.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let cr: Vec<f32> = v(&chosen_ratio)?.iter().map(|&x| x * beta as f32).collect();
    let rr: Vec<f32> = v(&rejected_ratio)?.iter().map(|&x| x * beta as f32).collect();
    let metrics = DpoMetrics {
        loss: loss.to_scalar::<f32>()? as f64,
        dpo_loss: dpo.to_scalar::<f32>()? as f64,
        nll: nll.to_scalar::<f32>()? as f64,
        margin: mean(&lg),
        accuracy: lg.iter().filter(|&&x| x > 0.0).count() as f64 / n as f64,
        chosen_logp: mean(&pc),
        rejected_logp: mean(&pr),
        chosen_reward: mean(&cr),
        rejected_reward: mean(&rr),
        pairs: n,
    };
    let loss = if scale != 1.0 { (loss * scale)? } else { loss };
    Ok((loss, metrics))
}

/// Averages metrics of several batches, weighted by their pair counts.
pub fn merge_metrics(parts: &[DpoMetrics]) -> DpoMetrics {
    let total: usize = parts.iter().map(|m| m.pairs).sum();
    if total == 0 {
        return DpoMetrics::default();
    }
    let w = |f: fn(&DpoMetrics) -> f64| -> f64 {
        parts.iter().map(|m| f(m) * m.pairs as f64).sum::<f64>() / total as f64
    };
    DpoMetrics {
        loss: w(|m| m.loss),
        dpo_loss: w(|m| m.dpo_loss),
        nll: w(|m| m.nll),
        margin: w(|m| m.margin),
        accuracy: w(|m| m.accuracy),
        chosen_logp: w(|m| m.chosen_logp),
        rejected_logp: w(|m| m.rejected_logp),
        chosen_reward: w(|m| m.chosen_reward),
        rejected_reward: w(|m| m.rejected_reward),
        pairs: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Two pairs, β = 0.1, by hand:
    ///
    /// pair 1: log π_θ(a*) = −2, log π_θ(â) = −3, log π_ref(a*) = log π_ref(â) = −2.5
    ///   x₁ = 0.1 · ((−2 + 2.5) − (−3 + 2.5)) = 0.1 · (0.5 + 0.5) = 0.1
    ///   −log σ(0.1) = ln(1 + e^{−0.1}) = ln(1.904837418) = 0.644396660
    /// pair 2: log π_θ(a*) = −4, log π_θ(â) = −1, log π_ref(a*) = −3, log π_ref(â) = −2
    ///   x₂ = 0.1 · ((−4 + 3) − (−1 + 2)) = 0.1 · (−1 − 1) = −0.2
    ///   −log σ(−0.2) = ln(1 + e^{0.2}) = ln(2.221402758) = 0.798138869
    /// L = (0.644396660 + 0.798138869) / 2 = 0.721267765
    /// margin = (0.1 − 0.2) / 2 = −0.05; accuracy = 1/2
    /// ∂L/∂ log π_θ(a*)₁ = −β σ(−x₁) / 2 = −0.1 · 0.475020813 / 2 = −0.023751041
    /// NLL term (chosen turns of 4 and 2 tokens): (2/4 + 4/2) / 2 = 1.25
    #[test]
    fn matches_the_hand_computed_value_and_gradient() {
        let dev = Device::Cpu;
        let pc = Var::from_slice(&[-2f32, -4.0], 2, &dev).unwrap();
        let pr = Var::from_slice(&[-3f32, -1.0], 2, &dev).unwrap();
        let p = PairLogps {
            policy_chosen: pc.as_tensor(),
            policy_rejected: pr.as_tensor(),
            ref_chosen: &[-2.5, -3.0],
            ref_rejected: &[-2.5, -2.0],
            chosen_tokens: &[4, 2],
        };
        let (loss, m) = step_dpo_loss(&p, 0.1, 0.0, 1.0).unwrap();
        assert!((m.loss - 0.721_267_765).abs() < 1e-6, "{m:?}");
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - 0.721_267_765).abs() < 1e-6);
        assert!((m.margin + 0.05).abs() < 1e-6);
        assert_eq!(m.accuracy, 0.5);
        assert!((m.chosen_logp + 3.0).abs() < 1e-6 && (m.rejected_logp + 2.0).abs() < 1e-6);
        assert!((m.nll - 1.25).abs() < 1e-6);
        let g = loss.backward().unwrap();
        let gc = g.get(pc.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((gc[0] as f64 + 0.023_751_041).abs() < 1e-6, "{gc:?}");

        // With the NLL term at weight 0.5: 0.721267765 + 0.5 · 1.25 = 1.346267765.
        let (_, m) = step_dpo_loss(&p, 0.1, 0.5, 1.0).unwrap();
        assert!((m.loss - 1.346_267_765).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn stays_finite_for_huge_margins_and_rejects_mismatched_shapes() {
        let dev = Device::Cpu;
        let pc = Tensor::new(&[0f32, -1e4], &dev).unwrap();
        let pr = Tensor::new(&[-1e4f32, 0.0], &dev).unwrap();
        let p = PairLogps {
            policy_chosen: &pc,
            policy_rejected: &pr,
            ref_chosen: &[0.0, 0.0],
            ref_rejected: &[0.0, 0.0],
            chosen_tokens: &[1, 1],
        };
        let (_, m) = step_dpo_loss(&p, 1.0, 0.0, 1.0).unwrap();
        // Pair 1 costs ≈ 0, pair 2 costs ≈ 10⁴.
        assert!((m.loss - 5000.0).abs() < 1.0, "{m:?}");
        let bad = PairLogps { ref_rejected: &[0.0], ..p };
        assert!(step_dpo_loss(&bad, 1.0, 0.0, 1.0).is_err());
    }
}
