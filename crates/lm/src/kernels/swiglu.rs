//! The gated MLP's activation: `silu(g) · u` with `silu(g) = g · σ(g)`.
//!
//! Backward: `du = dy · silu(g)` and `dg = dy · u · σ(g) · (1 + g · (1 − σ(g)))`, in one pass
//! over the two inputs; the composed version keeps `silu(g)` and runs several elementwise
//! passes for the SiLU's derivative.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, with_f32};

/// Values handed to one thread at least.
const MIN_LEN: usize = 4096;

struct SwiGlu;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        g_l: &Layout,
        u: &CpuStorage,
        u_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(g, g_l, "swiglu")?;
        let u = contiguous_f32(u, u_l, "swiglu")?;
        if g_l.dims() != u_l.dims() {
            candle_core::bail!("swiglu: gate {:?} and up {:?} differ", g_l.dims(), u_l.dims());
        }
        let out: Vec<f32> = g
            .par_iter()
            .zip(u.par_iter())
            .with_min_len(MIN_LEN)
            .map(|(&g, &u)| g * sigmoid(g) * u)
            .collect();
        Ok((CpuStorage::F32(out), g_l.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = g.elem_count();
        let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
        with_f32(g, "swiglu backward", |gs| {
            with_f32(u, "swiglu backward", |us| {
                with_f32(dy, "swiglu backward", |dys| {
                    dg.par_iter_mut()
                        .zip(du.par_iter_mut())
                        .zip(gs.par_iter().zip(us.par_iter()).zip(dys.par_iter()))
                        .with_min_len(MIN_LEN)
                        .for_each(|((dg, du), ((&g, &u), &dy))| {
                            let s = sigmoid(g);
                            *du = dy * g * s;
                            *dg = dy * u * s * (1.0 + g * (1.0 - s));
                        });
                    Ok(())
                })
            })
        })?;
        let dg = Tensor::from_vec(dg, g.shape(), g.device())?;
        let du = Tensor::from_vec(du, u.shape(), u.device())?;
        Ok((Some(dg), Some(du)))
    }
}

/// `silu(g) · u` for equally shaped `g` and `u`, differentiable in both.
pub fn swiglu(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    g.contiguous()?.apply_op2(&u.contiguous()?, SwiGlu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{reference, rel_diff};
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_composed_reference_in_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for shape in [vec![1usize], vec![3, 7], vec![2, 5, 1537]] {
            let g = Var::from_tensor(&(Tensor::randn(0f32, 1., shape.as_slice(), &dev)? * 4.0)?)?;
            let u = Var::from_tensor(&Tensor::randn(0f32, 1., shape.as_slice(), &dev)?)?;
            let probe = Tensor::randn(0f32, 1., shape.as_slice(), &dev)?;
            let ours = swiglu(g.as_tensor(), u.as_tensor())?;
            let theirs = reference::swiglu(g.as_tensor(), u.as_tensor())?;
            assert!(rel_diff(&ours, &theirs) < 1e-5, "values differ for {shape:?}");
            let g1 = (&ours * &probe)?.sum_all()?.backward()?;
            let g2 = (&theirs * &probe)?.sum_all()?.backward()?;
            for v in [&g, &u] {
                let d = rel_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(d < 1e-4, "gradient differs by {d} for {shape:?}");
            }
        }
        Ok(())
    }
}
