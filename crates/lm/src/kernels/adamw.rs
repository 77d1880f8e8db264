//! The optimizer's update as one pass over each parameter.

use candle_core::{CpuStorage, InplaceOp2, Layout, Result};

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
