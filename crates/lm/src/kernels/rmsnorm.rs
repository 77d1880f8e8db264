//! RMSNorm over the last dimension: `y = x · r · w` with `r = 1 / sqrt(mean(x²) + eps)`.
//!
//! Backward, per row with `u = g · w`: `dx = r·u − x · r³ · mean(u · x)`, and
//! `dw = Σ_rows g · x · r` (computed only when `w` is trained).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, with_f32};

/// Rows handed to one thread at least: a row is only a few hundred values.
const MIN_ROWS: usize = 32;

struct RmsNorm {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (ms + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-trainable"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, x_l, "rms-norm")?;
        let w = contiguous_f32(w, w_l, "rms-norm")?;
        let d = w.len();
        if x_l.dims().last() != Some(&d) {
            candle_core::bail!("rms-norm: input {:?} but weight of {d}", x_l.dims());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d).zip(x.par_chunks(d)).with_min_len(MIN_ROWS).for_each(|(o, xr)| {
            let r = inv_rms(xr, self.eps);
            for ((o, &xv), &wv) in o.iter_mut().zip(xr).zip(w) {
                *o = xv * r * wv;
            }
        });
        Ok((CpuStorage::F32(out), x_l.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let eps = self.eps;
        with_f32(x, "rms-norm backward", |xs| {
            with_f32(w, "rms-norm backward", |ws| {
                with_f32(g, "rms-norm backward", |gs| {
                    let mut dx = vec![0f32; xs.len()];
                    dx.par_chunks_mut(d)
                        .zip(xs.par_chunks(d).zip(gs.par_chunks(d)))
                        .with_min_len(MIN_ROWS)
                        .for_each(|(dxr, (xr, gr))| {
                            let r = inv_rms(xr, eps);
                            let dot: f32 =
                                xr.iter().zip(gr).zip(ws).map(|((x, g), w)| x * g * w).sum();
                            let c = r * r * r * dot / d as f32;
                            for (((o, &xv), &gv), &wv) in dxr.iter_mut().zip(xr).zip(gr).zip(ws) {
                                *o = r * gv * wv - xv * c;
                            }
                        });
                    let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
                    let dw = if w.track_op() {
                        // Partial sums over fixed blocks of rows, added in order: the result
                        // does not depend on how the threads split the work.
                        let partials: Vec<Vec<f32>> = xs
                            .par_chunks(d * MIN_ROWS)
                            .zip(gs.par_chunks(d * MIN_ROWS))
                            .map(|(xb, gb)| {
                                let mut acc = vec![0f32; d];
                                for (xr, gr) in xb.chunks_exact(d).zip(gb.chunks_exact(d)) {
                                    let r = inv_rms(xr, eps);
                                    for ((a, &xv), &gv) in acc.iter_mut().zip(xr).zip(gr) {
                                        *a += gv * xv * r;
                                    }
                                }
                                acc
                            })
                            .collect();
                        let mut sums = vec![0f32; d];
                        for p in &partials {
                            sums.iter_mut().zip(p).for_each(|(s, p)| *s += p);
                        }
                        Some(Tensor::from_vec(sums, w.shape(), w.device())?)
                    } else {
                        None
                    };
                    Ok((Some(dx), dw))
                })
            })
        })
    }
}

/// RMSNorm of `x` `(…, d)` with weight `w` `(d)`; differentiable in both (the weight's
/// gradient is computed only when it is trained).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{reference, rel_diff};
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_composed_reference_in_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for (shape, d) in [(vec![3, 5], 7usize), (vec![2, 37], 129), (vec![1], 576)] {
            let mut full = shape.clone();
            full.push(d);
            let x = Var::from_tensor(&(Tensor::randn(0f32, 1., full.as_slice(), &dev)? * 3.0)?)?;
            let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, d, &dev)?)?;
            let probe = Tensor::randn(0f32, 1., full.as_slice(), &dev)?;
            let ours = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)?;
            let theirs = reference::rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)?;
            assert!(rel_diff(&ours, &theirs) < 1e-5, "values differ for {full:?}");
            let g1 = (&ours * &probe)?.sum_all()?.backward()?;
            let g2 = (&theirs * &probe)?.sum_all()?.backward()?;
            for v in [x.as_tensor(), w.as_tensor()] {
                let d = rel_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(d < 1e-4, "gradient differs by {d} for {full:?}");
            }
        }
        Ok(())
    }
}
