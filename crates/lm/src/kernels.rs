//! Custom CPU ops. Each is small and has a test against the composed candle reference.
//!
//! This is where faster hand-written kernels (issue 9) slot in: every op here has the same
//! shape as candle's `CustomOp` / `InplaceOp` traits, so the model code does not change.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, InplaceOp2, Layout, Result, Shape, Storage, Tensor};

/// `x @ wᵀ` for a weight that is not trained. candle's own matmul backward computes the
/// gradient of both operands; this op only returns the input's, so a frozen weight costs no
/// gradient matmul (half of a linear layer's backward).
struct FrozenLinear {
    w: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, x_l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, k) = x_l.shape().dims2()?;
        let (n, k2) = self.w.dims2()?;
        if k != k2 {
            candle_core::bail!("frozen-linear: input width {k} but weight {:?}", self.w.shape());
        }
        let (w_storage, w_l) = self.w.storage_and_layout();
        let Storage::Cpu(w) = &*w_storage else {
            candle_core::bail!("frozen-linear: weight is not on the CPU");
        };
        let wt_l = w_l.transpose(0, 1)?;
        let out = x.matmul(w, (1, m, n, k), x_l, &wt_l)?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// `x @ wᵀ` over the last dimension of `x` without a gradient for `w`.
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let x2 = x.reshape(((), k))?;
    let y = x2.apply_op1(FrozenLinear { w: w.clone() })?;
    let mut out = dims;
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    y.reshape(out)
}

/// One fused, in-place AdamW update of a parameter from its gradient, with decoupled weight
/// decay and the global gradient-clipping factor folded in. The moments live in the optimizer
/// (plain vectors), so a step allocates nothing.
pub(crate) struct AdamWStep<'a> {
    pub m: std::sync::Mutex<&'a mut [f32]>,
    pub v: std::sync::Mutex<&'a mut [f32]>,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Bias corrections `1 - beta^t`.
    pub bc1: f32,
    pub bc2: f32,
    /// Gradient multiplier (clipping).
    pub grad_scale: f32,
}

impl InplaceOp2 for AdamWStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-step"
    }

    fn cpu_fwd(
        &self,
        p: &mut CpuStorage,
        p_l: &Layout,
        g: &CpuStorage,
        g_l: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (p, g) else {
            candle_core::bail!("adamw: only f32 parameters are supported");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (p_l.contiguous_offsets(), g_l.contiguous_offsets())
        else {
            candle_core::bail!("adamw: parameter and gradient must be contiguous");
        };
        let p = &mut p[p0..p1];
        let g = &g[g0..g1];
        let mut m = self.m.lock().map_err(|_| candle_core::Error::Msg("adamw: poisoned".into()))?;
        let mut v = self.v.lock().map_err(|_| candle_core::Error::Msg("adamw: poisoned".into()))?;
        if p.len() != g.len() || p.len() != m.len() || p.len() != v.len() {
            candle_core::bail!("adamw: parameter, gradient and moments differ in size");
        }
        let decay = 1.0 - self.lr * self.weight_decay;
        let step = self.lr / self.bc1;
        let inv_bc2 = 1.0 / self.bc2;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * self.grad_scale;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let denom = (*v * inv_bc2).sqrt() + self.eps;
            *p = *p * decay - step * *m / denom;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn frozen_linear_matches_matmul_in_value_and_input_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (7, 5), &dev)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 5), &dev)?)?;
        let y = frozen_linear(x.as_tensor(), &w)?;
        let reference = x.as_tensor().broadcast_matmul(&w.t()?)?;
        let diff = (&y - &reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "value differs by {diff}");
        let g1 = y.sqr()?.sum_all()?.backward()?;
        let g2 = reference.sqr()?.sum_all()?.backward()?;
        let d = (g1.get(x.as_tensor()).unwrap() - g2.get(x.as_tensor()).unwrap())?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(d < 1e-4, "gradient differs by {d}");
        assert!(g1.get(&w).is_none(), "a frozen weight must get no gradient");
        Ok(())
    }
}
