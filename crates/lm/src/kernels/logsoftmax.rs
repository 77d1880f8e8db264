//! The log-prob of one target token per row of logits: `l[target] − logsumexp(l)`.
//!
//! The logits are the largest tensor of a training step (`rows × vocabulary`); the composed
//! `log_softmax` + `gather` allocates several tensors of that size and keeps the full
//! log-softmax for its backward. This kernel reads the logits twice and writes `rows` values;
//! its backward, `g · (onehot(target) − softmax(l))`, recomputes the softmax from the logits
//! (the row's log-sum-exp is `l[target] − out`), so only the gradient itself is allocated.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, simd, with_f32};

struct TargetLogprobs {
    targets: Vec<u32>,
}

fn logsumexp(row: &[f32]) -> f32 {
    let max = simd::max(row);
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + simd::sum_exp_sub(row, max).ln()
}

impl CustomOp1 for TargetLogprobs {
    fn name(&self) -> &'static str {
        "target-logprobs"
    }

    fn cpu_fwd(&self, logits: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits = contiguous_f32(logits, l, "target-logprobs")?;
        let (rows, vocab) = l.shape().dims2()?;
        if self.targets.len() != rows {
            candle_core::bail!("target-logprobs: {rows} rows but {} targets", self.targets.len());
        }
        if let Some(bad) = self.targets.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("target-logprobs: target {bad} outside a vocabulary of {vocab}");
        }
        let out: Vec<f32> = logits
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| row[t as usize] - logsumexp(row))
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(rows)))
    }

    fn bwd(&self, logits: &Tensor, out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (rows, vocab) = logits.dims2()?;
        let mut dl = vec![0f32; rows * vocab];
        with_f32(logits, "target-logprobs backward", |ls| {
            with_f32(out, "target-logprobs backward", |outs| {
                with_f32(grad, "target-logprobs backward", |gs| {
                    dl.par_chunks_mut(vocab).enumerate().for_each(|(r, d)| {
                        let row = &ls[r * vocab..(r + 1) * vocab];
                        let t = self.targets[r] as usize;
                        let lse = row[t] - outs[r];
                        let g = gs[r];
                        simd::scaled_exp_sub(d, row, lse, -g);
                        d[t] += g;
                    });
                    Ok(())
                })
            })
        })?;
        Ok(Some(Tensor::from_vec(dl, (rows, vocab), logits.device())?))
    }
}

/// `log softmax(logits)[r, targets[r]]` for `logits` `(rows, vocab)`: `(rows)`,
/// differentiable in the logits.
pub fn target_logprobs(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    logits.contiguous()?.apply_op1(TargetLogprobs { targets: targets.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{reference, rel_diff};
    use candle_core::{Device, Var};

    #[test]
    fn matches_log_softmax_and_gather_in_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for (rows, vocab) in [(1, 1), (3, 17), (9, 1001)] {
            let logits = Var::from_tensor(&(Tensor::randn(0f32, 1., (rows, vocab), &dev)? * 4.0)?)?;
            let targets: Vec<u32> = (0..rows).map(|r| ((r * 7919) % vocab) as u32).collect();
            let probe = Tensor::randn(0f32, 1., rows, &dev)?;
            let ours = target_logprobs(logits.as_tensor(), &targets)?;
            let theirs = reference::target_logprobs(logits.as_tensor(), &targets)?;
            assert!(rel_diff(&ours, &theirs) < 1e-5, "values differ for {rows}x{vocab}");
            let g1 = (&ours * &probe)?.sum_all()?.backward()?;
            let g2 = (&theirs * &probe)?.sum_all()?.backward()?;
            let diff =
                rel_diff(g1.get(logits.as_tensor()).unwrap(), g2.get(logits.as_tensor()).unwrap());
            assert!(diff < 1e-4, "gradient differs by {diff} for {rows}x{vocab}");
        }
        Ok(())
    }

    #[test]
    fn a_target_outside_the_vocabulary_is_named() {
        let logits = Tensor::zeros((2, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = target_logprobs(&logits, &[1, 5]).unwrap_err().to_string();
        assert!(e.contains("target 5") && e.contains("vocabulary of 5"), "{e}");
    }
}
