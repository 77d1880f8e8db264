//! A LoRA-adapted frozen linear layer in one op: `y = x Wᵀ + s · (x Aᵀ) Bᵀ`.
//!
//! Composed from candle ops, each adapted layer wrote its low-rank update `(x Aᵀ) Bᵀ` as an
//! `m × out` tensor, scaled it into a second one and added that into a third; the backward
//! pass scaled the output gradient again and summed two input gradients (`m × in`). Over the
//! seven linears of 30 layers that was about 3 GB of memory traffic and fresh allocations
//! per 512-token step. Here gemm accumulates the update straight into the frozen product
//! (and, backward, `s · (g B) A` straight into `g W`); only the rank-sized `x Aᵀ` and `g B`
//! are extra. The frozen weight gets no gradient.

use super::gemm::{gemm_into, Mat, Threads};
use super::linear::{matmul_t_cpu, over_rows};
use super::{contiguous_f32, with_f32};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

const NAME: &str = "lora-linear";

struct LoraLinear {
    /// The frozen weight `(out, in)`.
    w: Tensor,
    scale: f32,
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        a: &CpuStorage,
        a_l: &Layout,
        b: &CpuStorage,
        b_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = x_l.shape().dims2()?;
        let (r, ka) = a_l.shape().dims2()?;
        let (n, rb) = b_l.shape().dims2()?;
        if ka != k || rb != r {
            candle_core::bail!("{NAME}: input width {k}, A {:?}, B {:?}", a_l.shape(), b_l.shape());
        }
        let (y, shape) = matmul_t_cpu(x, x_l, &self.w, NAME)?;
        let CpuStorage::F32(mut y) = y else {
            candle_core::bail!("{NAME}: only f32 is supported");
        };
        if y.len() != m * n {
            candle_core::bail!("{NAME}: B has {n} rows but the weight {:?}", self.w.shape());
        }
        let xs = contiguous_f32(x, x_l, NAME)?;
        let a = contiguous_f32(a, a_l, NAME)?;
        let b = contiguous_f32(b, b_l, NAME)?;
        let mut low = vec![0f32; m * r];
        gemm_into(
            &mut low,
            (m, r, k),
            false,
            Mat::rows(xs, k),
            Mat::transposed(a, k),
            1.0,
            Threads::All,
        );
        gemm_into(
            &mut y,
            (m, n, r),
            true,
            Mat::rows(&low, r),
            Mat::transposed(b, r),
            self.scale,
            Threads::All,
        );
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, k) = x.dims2()?;
        let (r, n) = (a.dim(0)?, b.dim(0)?);
        let s = self.scale;
        let dev = g.device();
        let all = Threads::All;
        let (gx, ga, gb) = with_f32(g, NAME, |g| {
            with_f32(x, NAME, |xs| {
                with_f32(a, NAME, |av| {
                    with_f32(b, NAME, |bv| {
                        // Rank-sized: `g B` (m × r) and `x Aᵀ` (m × r, recomputed rather than
                        // kept); the adapters' gradients `s · (g B)ᵀ x` and `s · gᵀ (x Aᵀ)`.
                        let mut gb_low = vec![0f32; m * r];
                        let (gm, bm) = (Mat::rows(g, n), Mat::rows(bv, r));
                        gemm_into(&mut gb_low, (m, r, n), false, gm, bm, 1.0, all);
                        let mut low = vec![0f32; m * r];
                        let (xm, at) = (Mat::rows(xs, k), Mat::transposed(av, k));
                        gemm_into(&mut low, (m, r, k), false, xm, at, 1.0, all);
                        let mut ga = vec![0f32; r * k];
                        let ut = Mat::transposed(&gb_low, r);
                        gemm_into(&mut ga, (r, k, m), false, ut, xm, s, all);
                        let mut gb = vec![0f32; n * r];
                        let (gt, lm) = (Mat::transposed(g, n), Mat::rows(&low, r));
                        gemm_into(&mut gb, (n, r, m), false, gt, lm, s, all);
                        // The input's gradient only where the graph needs it (not for the
                        // first layer's attention projections, whose input comes from the
                        // frozen embedding): `g W + s · (g B) A`.
                        let gx = if x.track_op() {
                            with_f32(&self.w, NAME, |w| {
                                let mut gx = vec![0f32; m * k];
                                let wm = Mat::rows(w, k);
                                gemm_into(&mut gx, (m, k, n), false, gm, wm, 1.0, all);
                                let (um, am) = (Mat::rows(&gb_low, r), Mat::rows(av, k));
                                gemm_into(&mut gx, (m, k, r), true, um, am, s, all);
                                Ok(Some(gx))
                            })?
                        } else {
                            None
                        };
                        Ok((gx, ga, gb))
                    })
                })
            })
        })?;
        let grad_x = gx.map(|v| Tensor::from_vec(v, (m, k), dev)).transpose()?;
        let grad_a = Tensor::from_vec(ga, (r, k), dev)?;
        let grad_b = Tensor::from_vec(gb, (n, r), dev)?;
        Ok((grad_x, Some(grad_a), Some(grad_b)))
    }
}

/// `x Wᵀ + scale · (x Aᵀ) Bᵀ` over the last dimension of `x`, for a frozen `W (out, in)`,
/// `A (rank, in)` and `B (out, rank)`: CPU and `f32` only (the caller composes otherwise).
pub fn lora_linear(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    over_rows(x, w.dim(0)?, |x2| {
        x2.contiguous()?.apply_op3(a, b, LoraLinear { w: w.clone(), scale: scale as f32 })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{reference, rel_diff};
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_composed_layer_in_value_and_every_gradient() -> Result<()> {
        let dev = Device::Cpu;
        // Rows: gemm (7, 12 over a batch of 2) and the streamed few-row path (4, 1).
        for (lead, k, n, r) in
            [(vec![7], 13, 11, 3), (vec![2, 6], 16, 9, 4), (vec![4], 5, 17, 2), (vec![1], 8, 8, 1)]
        {
            let mut xs = lead.clone();
            xs.push(k);
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., xs.as_slice(), &dev)?)?;
            let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
            let a = Var::from_tensor(&Tensor::randn(0f32, 1., (r, k), &dev)?)?;
            let b = Var::from_tensor(&Tensor::randn(0f32, 1., (n, r), &dev)?)?;
            let ours = lora_linear(x.as_tensor(), &w, a.as_tensor(), b.as_tensor(), 1.7)?;
            let theirs =
                reference::lora_linear(x.as_tensor(), &w, a.as_tensor(), b.as_tensor(), 1.7)?;
            assert!(rel_diff(&ours, &theirs) < 1e-5, "values differ for {lead:?} {k} {n} {r}");
            // A loss that weighs every output differently, so a wrong gradient shows.
            let weights = Tensor::randn(0f32, 1., ours.shape(), &dev)?;
            let g1 = (ours * &weights)?.sum_all()?.backward()?;
            let g2 = (theirs * &weights)?.sum_all()?.backward()?;
            for (v, name) in [(&x, "x"), (&a, "A"), (&b, "B")] {
                let d = rel_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(d < 1e-4, "gradient of {name} differs by {d} for {lead:?} {k} {n} {r}");
            }
            assert!(g1.get(&w).is_none(), "the frozen weight must get no gradient");
        }
        Ok(())
    }

    #[test]
    fn an_input_without_gradient_gets_none_and_the_adapter_still_learns() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (5, 6), &dev)?;
        let w = Tensor::randn(0f32, 1., (4, 6), &dev)?;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 6), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1., (4, 2), &dev)?)?;
        let grads =
            lora_linear(&x, &w, a.as_tensor(), b.as_tensor(), 2.0)?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none());
        assert!(grads.get(a.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
        Ok(())
    }
}
