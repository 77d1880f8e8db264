//! PPO's pieces as pure functions over numbers and token tensors, so each can be checked
//! against hand arithmetic: advantages (GAE, group baseline), the clipped surrogate, the KL
//! estimators and the value loss.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// How the per-token KL(π_θ ‖ π_ref) is estimated from the sampled token's log-probs, with
/// d = log π_ref − log π_θ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlEstimator {
    /// k1 = −d: unbiased, but negative on some tokens and of high variance.
    K1,
    /// k3 = e^d − d − 1: unbiased, never negative, low variance (our default).
    #[default]
    K3,
}

/// The KL estimate of one token.
pub fn kl_value(logp: f64, ref_logp: f64, est: KlEstimator) -> f64 {
    let d = ref_logp - logp;
    match est {
        KlEstimator::K1 => -d,
        KlEstimator::K3 => d.exp() - d - 1.0,
    }
}

/// The KL estimate of each token, differentiable in `logp` (`ref_logp` is a constant).
pub fn kl_tokens(logp: &Tensor, ref_logp: &[f32], est: KlEstimator) -> Result<Tensor, TrainError> {
    let r = Tensor::from_slice(ref_logp, ref_logp.len(), logp.device())?;
    let d = (r - logp)?;
    Ok(match est {
        KlEstimator::K1 => d.neg()?,
        KlEstimator::K3 => ((d.exp()? - &d)? - 1.0)?,
    })
}

/// Per-token rewards of one rollout: each trained turn's reward on its last token (its
/// end-of-turn marker), and with `kl_penalty = Some(c)` also −c·KL on every token.
/// `turns` are the turns' token ranges, covering `kl` (one KL estimate per token).
pub fn token_rewards(
    turns: &[std::ops::Range<usize>],
    rewards: &[f64],
    kl: &[f64],
    kl_penalty: Option<f64>,
) -> Vec<f64> {
    let mut t: Vec<f64> = match kl_penalty {
        Some(c) => kl.iter().map(|k| -c * k).collect(),
        None => vec![0.0; kl.len()],
    };
    for (range, reward) in turns.iter().zip(rewards) {
        if let Some(last) = range.end.checked_sub(1).filter(|&l| l >= range.start) {
            t[last] += reward;
        }
    }
    t
}

/// Generalised advantage estimation over one episode of `rewards` and the value estimates
/// `values` of the states they were earned from (the state after the last is terminal, of
/// value 0): δ_t = r_t + γ V_{t+1} − V_t, A_t = δ_t + γλ A_{t+1}. Returns the advantages and
/// the value targets A_t + V_t.
pub fn gae(rewards: &[f64], values: &[f64], gamma: f64, lambda: f64) -> (Vec<f64>, Vec<f64>) {
    let n = rewards.len();
    assert_eq!(values.len(), n, "one value per reward");
    let mut adv = vec![0.0; n];
    let mut next_adv = 0.0;
    for t in (0..n).rev() {
        let next_value = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next_value - values[t];
        next_adv = delta + gamma * lambda * next_adv;
        adv[t] = next_adv;
    }
    let returns = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

/// Group-baseline advantages: each score minus the mean of its group (samples from the same
/// prefix), divided by the group's standard deviation (population, plus 1e-6) when
/// `std_normalise`. A group of one gets 0: there is nothing to compare it with.
pub fn group_advantages(scores: &[f64], groups: &[usize], std_normalise: bool) -> Vec<f64> {
    assert_eq!(scores.len(), groups.len(), "one group per score");
    let mut out = vec![0.0; scores.len()];
    let mut keys: Vec<usize> = groups.to_vec();
    keys.sort_unstable();
    keys.dedup();
    for g in keys {
        let idx: Vec<usize> = (0..scores.len()).filter(|&i| groups[i] == g).collect();
        let n = idx.len() as f64;
        let mean = idx.iter().map(|&i| scores[i]).sum::<f64>() / n;
        let var = idx.iter().map(|&i| (scores[i] - mean).powi(2)).sum::<f64>() / n;
        let div = if std_normalise { var.sqrt() + 1e-6 } else { 1.0 };
        for &i in &idx {
            out[i] = (scores[i] - mean) / div;
        }
    }
    out
}

/// Shifts and scales to mean 0 and standard deviation 1 (left centred only when the spread
/// is nil).
pub fn whiten(xs: &mut [f64]) {
    if xs.is_empty() {
        return;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let std = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    for x in xs.iter_mut() {
        *x -= mean;
        if std > 1e-8 {
            *x /= std;
        }
    }
}

/// What the surrogate measured besides its value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClipStats {
    /// Fraction of tokens whose clipped term was the larger (their gradient is cut).
    pub clip_fraction: f64,
    /// Mean ratio π_θ/π_old.
    pub ratio: f64,
    /// Mean k3 estimate of KL(π_old ‖ π_θ) over the tokens: how far this update has moved.
    pub approx_kl: f64,
}

/// PPO's clipped surrogate, the mean over tokens of max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)) with
/// ρ = exp(log π_θ − log π_old). Differentiable in `logp`; tokens where the clipped term is
/// the larger contribute their (constant) value and no gradient, exactly as the max would.
pub fn ppo_clip_loss(
    logp: &Tensor,
    old_logp: &[f32],
    advantages: &[f32],
    clip: f64,
) -> Result<(Tensor, ClipStats), TrainError> {
    let n = old_logp.len();
    if n == 0 || logp.dims() != [n] || advantages.len() != n {
        return Err(TrainError::config(
            "ppo",
            format!(
                "the surrogate needs n > 0 tokens with matching shapes (log-probs {:?}, old {}, advantages {})",
                logp.dims(),
                n,
                advantages.len()
            ),
        ));
    }
    let dev = logp.device();
    let old = Tensor::from_slice(old_logp, n, dev)?;
    let ratio = (logp - &old)?.exp()?;
    let r = ratio.detach().to_vec1::<f32>()?;
    let (mut keep, mut constant) = (vec![0f32; n], vec![0f32; n]);
    let mut clipped = 0usize;
    for i in 0..n {
        let (a, r) = (advantages[i] as f64, r[i] as f64);
        let plain = -a * r;
        let cut = -a * r.clamp(1.0 - clip, 1.0 + clip);
        if cut > plain {
            clipped += 1;
            constant[i] = cut as f32;
        } else {
            keep[i] = -advantages[i];
        }
    }
    let keep = Tensor::from_vec(keep, n, dev)?;
    let constant = Tensor::from_vec(constant, n, dev)?;
    let loss = ((ratio * keep)? + constant)?.mean_all()?;
    let approx_kl = r
        .iter()
        .map(|&r| {
            // k3 with d = log ρ, the tokens being samples of the old policy.
            let r = r as f64;
            r - 1.0 - r.ln()
        })
        .sum::<f64>()
        / n as f64;
    let stats = ClipStats {
        clip_fraction: clipped as f64 / n as f64,
        ratio: r.iter().map(|&x| x as f64).sum::<f64>() / n as f64,
        approx_kl,
    };
    Ok((loss, stats))
}

/// ½ · mean (V − R)² over tokens, differentiable in `values`.
pub fn value_loss(values: &Tensor, returns: &[f32]) -> Result<Tensor, TrainError> {
    let n = returns.len();
    if n == 0 || values.dims() != [n] {
        return Err(TrainError::config(
            "ppo",
            format!("{} value targets for values of shape {:?}", n, values.dims()),
        ));
    }
    let r = Tensor::from_slice(returns, n, values.device())?;
    Ok(((values - r)?.sqr()?.mean_all()? * 0.5)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Turns of 2 and 3 tokens with rewards 0.5 and 1, KL (0.1, 0.2, 0, 0.1, 0.3), c = 0.5:
    ///   (−0.05, −0.1 + 0.5, 0, −0.05, −0.15 + 1) = (−0.05, 0.4, 0, −0.05, 0.85);
    ///   without the penalty (0, 0.5, 0, 0, 1).
    #[test]
    fn token_rewards_by_hand() {
        let kl = [0.1, 0.2, 0.0, 0.1, 0.3];
        let t = token_rewards(&[0..2, 2..5], &[0.5, 1.0], &kl, Some(0.5));
        for (x, w) in t.iter().zip([-0.05, 0.4, 0.0, -0.05, 0.85]) {
            assert!((x - w).abs() < 1e-12, "{t:?}");
        }
        assert_eq!(token_rewards(&[0..2, 2..5], &[0.5, 1.0], &kl, None), [0.0, 0.5, 0.0, 0.0, 1.0]);
    }

    /// rewards (0, 0, 1), values (0.5, 0.6, 0.7), γ = 0.9, λ = 0.8 (γλ = 0.72):
    ///   δ₂ = 1 + 0.9·0   − 0.7 = 0.3    A₂ = 0.3
    ///   δ₁ = 0 + 0.9·0.7 − 0.6 = 0.03   A₁ = 0.03 + 0.72·0.3   = 0.246
    ///   δ₀ = 0 + 0.9·0.6 − 0.5 = 0.04   A₀ = 0.04 + 0.72·0.246 = 0.21712
    ///   returns A + V = (0.71712, 0.846, 1.0)
    /// With λ = 1, γ = 1 the advantage is the return-to-go minus the value: (0.5, 0.4, 0.3).
    #[test]
    fn gae_by_hand() {
        let (a, r) = gae(&[0.0, 0.0, 1.0], &[0.5, 0.6, 0.7], 0.9, 0.8);
        let want_a = [0.21712, 0.246, 0.3];
        let want_r = [0.71712, 0.846, 1.0];
        for i in 0..3 {
            assert!((a[i] - want_a[i]).abs() < 1e-12, "{a:?}");
            assert!((r[i] - want_r[i]).abs() < 1e-12, "{r:?}");
        }
        let (a, _) = gae(&[0.0, 0.0, 1.0], &[0.5, 0.6, 0.7], 1.0, 1.0);
        for (x, w) in a.iter().zip([0.5, 0.4, 0.3]) {
            assert!((x - w).abs() < 1e-12, "{a:?}");
        }
    }

    /// Four tokens, ε = 0.2, log π_old = 0, log π_θ = ln(1.5, 0.5, 1.1, 0.5), A = (1, 1, −2, −1):
    ///   ρ = 1.5, A = 1:  −Aρ = −1.5, −A·clip = −1.2 → max −1.2 (clipped, no gradient)
    ///   ρ = 0.5, A = 1:  −0.5 vs −0.8            → −0.5 (unclipped, ∂/∂log π = −Aρ = −0.5)
    ///   ρ = 1.1, A = −2: 2.2 vs 2.2              → 2.2  (inside the range, ∂ = 2.2)
    ///   ρ = 0.5, A = −1: 0.5 vs 0.8              → 0.8  (clipped, no gradient)
    ///   L = (−1.2 − 0.5 + 2.2 + 0.8)/4 = 0.325; clip fraction 2/4
    ///   ∂L/∂log π_θ = (0, −0.5, 2.2, 0)/4 = (0, −0.125, 0.55, 0)
    ///   mean ρ = 3.6/4 = 0.9
    #[test]
    fn clipped_surrogate_by_hand() {
        let lp: Vec<f32> = [1.5f32, 0.5, 1.1, 0.5].iter().map(|x| x.ln()).collect();
        let v = Var::from_slice(&lp, 4, &Device::Cpu).unwrap();
        let (loss, s) =
            ppo_clip_loss(v.as_tensor(), &[0.0; 4], &[1.0, 1.0, -2.0, -1.0], 0.2).unwrap();
        assert!((loss.to_scalar::<f32>().unwrap() - 0.325).abs() < 1e-6);
        assert_eq!(s.clip_fraction, 0.5);
        assert!((s.ratio - 0.9).abs() < 1e-6);
        let g = loss.backward().unwrap().get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        for (x, w) in g.iter().zip([0.0, -0.125, 0.55, 0.0]) {
            assert!((x - w).abs() < 1e-6, "{g:?}");
        }
        assert!(ppo_clip_loss(v.as_tensor(), &[0.0; 3], &[1.0; 3], 0.2).is_err());
    }

    /// log π_θ = −1, log π_ref = −1.5, so d = −0.5:
    ///   k1 = 0.5;  k3 = e^{−0.5} + 0.5 − 1 = 0.606530660 − 0.5 = 0.106530660
    ///   ∂k1/∂log π_θ = 1;  ∂k3/∂log π_θ = 1 − e^{d} = 0.393469340
    #[test]
    fn kl_estimators_by_hand() {
        assert!((kl_value(-1.0, -1.5, KlEstimator::K1) - 0.5).abs() < 1e-12);
        assert!((kl_value(-1.0, -1.5, KlEstimator::K3) - 0.106_530_660).abs() < 1e-9);
        assert_eq!(kl_value(-2.0, -2.0, KlEstimator::K3), 0.0);
        let v = Var::from_slice(&[-1f32], 1, &Device::Cpu).unwrap();
        for (est, value, grad) in
            [(KlEstimator::K1, 0.5, 1.0), (KlEstimator::K3, 0.106_530_66, 0.393_469_34)]
        {
            let k = kl_tokens(v.as_tensor(), &[-1.5], est).unwrap().sum_all().unwrap();
            assert!((k.to_scalar::<f32>().unwrap() - value).abs() < 1e-6);
            let g = k.backward().unwrap().get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
            assert!((g[0] - grad).abs() < 1e-6, "{est:?}: {g:?}");
        }
    }

    /// Groups {1, 0, 0.5} and {2}: the first has mean 0.5 and population std
    /// √((0.25 + 0.25 + 0)/3) = 0.408248290, so (0.5, −0.5, 0)/0.408248290 = (1.224744871,
    /// −1.224744871, 0); a group of one gets 0.
    #[test]
    fn group_baseline_by_hand() {
        let a = group_advantages(&[1.0, 0.0, 0.5, 2.0], &[7, 7, 7, 3], false);
        assert_eq!(a, [0.5, -0.5, 0.0, 0.0]);
        let a = group_advantages(&[1.0, 0.0, 0.5, 2.0], &[7, 7, 7, 3], true);
        for (x, w) in a.iter().zip([1.224_744_871, -1.224_744_871, 0.0, 0.0]) {
            assert!((x - w).abs() < 1e-5, "{a:?}");
        }
        let mut w = vec![1.0, 3.0];
        whiten(&mut w);
        assert_eq!(w, [-1.0, 1.0]);
    }

    /// V = (1, 2), R = (0, 4): ½ · (1 + 4)/2 = 1.25.
    #[test]
    fn value_loss_by_hand() {
        let v = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let l = value_loss(&v, &[0.0, 4.0]).unwrap().to_scalar::<f32>().unwrap();
        assert!((l - 1.25).abs() < 1e-6);
    }
}
