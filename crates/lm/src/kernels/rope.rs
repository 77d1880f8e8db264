//! Rotate-half rotary embeddings: each pair `(x[i], x[i + d/2])` is rotated by its angle,
//! `(x₁ cos − x₂ sin, x₂ cos + x₁ sin)`.
//!
//! A rotation's backward is the inverse rotation (its transpose), so the backward is this
//! same kernel with `sin` negated, and nothing is kept for it.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, with_f32};

struct Rope {
    /// `(b, t, d/2)`.
    cos: Tensor,
    /// `(b, t, d/2)`.
    sin: Tensor,
    /// `-1` rotates backwards (the gradient), `1` forwards.
    direction: f32,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope-trainable"
    }

    fn cpu_fwd(&self, x: &CpuStorage, x_l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, x_l, "rope")?;
        let (b, h, t, d) = x_l.shape().dims4()?;
        let half = d / 2;
        if self.cos.dims() != [b, t, half] || self.sin.dims() != [b, t, half] || d % 2 != 0 {
            candle_core::bail!(
                "rope: input {:?} needs even head size and tables of ({b}, {t}, {half}), got {:?}",
                x_l.dims(),
                self.cos.dims()
            );
        }
        let mut out = vec![0f32; x.len()];
        with_f32(&self.cos, "rope", |cos| {
            with_f32(&self.sin, "rope", |sin| {
                // One chunk per (batch row, head): its t × d values share the tables of row b.
                out.par_chunks_mut(t * d).zip(x.par_chunks(t * d)).enumerate().for_each(
                    |(bh, (o, xs))| {
                        let row = bh / h;
                        for p in 0..t {
                            let tab = (row * t + p) * half;
                            let (c, s) = (&cos[tab..tab + half], &sin[tab..tab + half]);
                            let (x1, x2) = xs[p * d..(p + 1) * d].split_at(half);
                            let (o1, o2) = o[p * d..(p + 1) * d].split_at_mut(half);
                            for i in 0..half {
                                let s = s[i] * self.direction;
                                o1[i] = x1[i] * c[i] - x2[i] * s;
                                o2[i] = x2[i] * c[i] + x1[i] * s;
                            }
                        }
                    },
                );
                Ok(())
            })
        })?;
        Ok((CpuStorage::F32(out), x_l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let inverse =
            Rope { cos: self.cos.clone(), sin: self.sin.clone(), direction: -self.direction };
        Ok(Some(g.contiguous()?.apply_op1(inverse)?))
    }
}

/// Rotate-half RoPE of `x` `(b, heads, t, d)` with `cos`/`sin` `(b, t, d/2)` gathered at each
/// token's position; differentiable in `x`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let op = Rope { cos: cos.contiguous()?, sin: sin.contiguous()?, direction: 1.0 };
    x.contiguous()?.apply_op1(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{reference, rel_diff};
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_composed_reference_in_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for (b, h, t, d) in [(1, 1, 1, 2), (2, 3, 7, 10), (3, 9, 13, 64)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (b, h, t, d), &dev)?)?;
            let angles = Tensor::rand(0f32, 6.3, (b, t, d / 2), &dev)?;
            let (cos, sin) = (angles.cos()?, angles.sin()?);
            let probe = Tensor::randn(0f32, 1., (b, h, t, d), &dev)?;
            let ours = rope(x.as_tensor(), &cos, &sin)?;
            let theirs = reference::rope(x.as_tensor(), &cos, &sin)?;
            assert!(rel_diff(&ours, &theirs) < 1e-5, "values differ for {:?}", (b, h, t, d));
            let g1 = (&ours * &probe)?.sum_all()?.backward()?;
            let g2 = (&theirs * &probe)?.sum_all()?.backward()?;
            let diff = rel_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
            assert!(diff < 1e-4, "gradient differs by {diff} for {:?}", (b, h, t, d));
        }
        Ok(())
    }

    #[test]
    fn agrees_with_the_inference_kernel() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 5, 8), &dev)?;
        let angles = Tensor::rand(0f32, 6.3, (2, 5, 4), &dev)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let fused = candle_nn::rotary_emb::rope(&x, &cos, &sin)?;
        assert!(rel_diff(&rope(&x, &cos, &sin)?, &fused) < 1e-5);
        Ok(())
    }
}
