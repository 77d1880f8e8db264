//! The gated MLP's activation: `silu(g) · u` with `silu(g) = g · σ(g)`.
//!
//! Backward: `du = dy · silu(g)` and `dg = dy · u · σ(g) · (1 + g · (1 − σ(g)))`, in one pass
//! over the two inputs; the composed version keeps `silu(g)` and runs several elementwise
//! passes for the SiLU's derivative.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, simd, with_f32};

/// Values per task (each thread takes whole tasks).
const CHUNK: usize = 4096;

struct SwiGlu;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + simd::exp(-x))
}

simd::vectorised! {
    /// `out = silu(g) · u` over one chunk.
    fn forward_chunk(out: &mut [f32], g: &[f32], u: &[f32]) {
        for (y, (&g, &u)) in out.iter_mut().zip(g.iter().zip(u)) {
            *y = g * sigmoid(g) * u;
        }
    }
}

simd::vectorised! {
    /// The two input gradients over one chunk (see the module's formulas).
    fn backward_chunk(dg: &mut [f32], du: &mut [f32], g: &[f32], u: &[f32], dy: &[f32]) {
        let grads = dg.iter_mut().zip(du.iter_mut());
        for ((dg, du), ((&g, &u), &dy)) in grads.zip(g.iter().zip(u).zip(dy)) {
            let s = sigmoid(g);
            *du = dy * g * s;
            *dg = dy * u * s * (1.0 + g * (1.0 - s));
        }
    }
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
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
            .for_each(|(out, (g, u))| forward_chunk(out, g, u));
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
                    let grads = dg.par_chunks_mut(CHUNK).zip(du.par_chunks_mut(CHUNK));
                    let inputs = gs.par_chunks(CHUNK).zip(us.par_chunks(CHUNK));
                    grads.zip(inputs.zip(dys.par_chunks(CHUNK))).for_each(
                        |((dg, du), ((gs, us), dys))| backward_chunk(dg, du, gs, us, dys),
                    );
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
