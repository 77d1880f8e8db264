//! Softmax attention with an additive mask and grouped-query heads.
//!
//! The composed differentiable version keeps the scores, the masked scores and the
//! probabilities of every layer (`heads × t × s` each) until the backward pass; at the
//! ~1,300 tokens of a packed DPO pass that is gigabytes. This kernel runs the forward with
//! candle's fused (no-backward) softmax and keeps nothing; its backward recomputes the
//! probabilities from `q` and `k` (one extra `q kᵀ`, a fraction of the layer's work) and uses
//! `rowsum(dP ∘ P) = rowsum(dO ∘ O)` so it needs no `t × s` reduction:
//!
//! `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − rowsum(dO ∘ O))`, `dQ = c·dS K`, `dK = c·dSᵀ Q`
//! with `c` the score scale.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, D};

/// Query heads sharing a key head are stacked along the time axis of one matmul, so keys are
/// never copied per query head: `(b, heads, t, d)` ↔ `(b, kv_heads, rep · t, d)`.
pub(crate) struct Grouped {
    pub b: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub t: usize,
    pub s: usize,
    pub d: usize,
}

impl Grouped {
    /// The shapes of `q` and `k`, checked to fit (the error names both).
    pub fn of(q: &Tensor, k: &Tensor) -> Result<Self> {
        let (b, heads, t, d) = q.dims4()?;
        let (kb, kv_heads, s, kd) = k.dims4()?;
        if kb != b || kd != d || kv_heads == 0 || heads % kv_heads != 0 {
            candle_core::bail!(
                "attention: queries {:?} and keys {:?} do not fit",
                q.dims(),
                k.dims()
            );
        }
        Ok(Grouped { b, heads, kv_heads, t, s, d })
    }

    fn stacked(&self, x: &Tensor, last: usize) -> Result<Tensor> {
        x.reshape((self.b, self.kv_heads, self.heads / self.kv_heads * self.t, last))
    }

    fn per_head(&self, x: &Tensor, last: usize) -> Result<Tensor> {
        x.reshape((self.b, self.heads, self.t, last))
    }

    /// Softmax probabilities `(b, heads, t, s)`.
    fn probs(&self, q: &Tensor, k: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
        let scores = self.stacked(&(q * scale)?, self.d)?.matmul(&k.t()?)?;
        let scores = self.per_head(&scores, self.s)?.broadcast_add(mask)?;
        candle_nn::ops::softmax_last_dim(&scores)
    }
}

/// The forward, without a graph: `(b, heads, t, d)`.
pub(crate) fn forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let g = Grouped::of(q, k)?;
    let p = g.probs(q, k, mask, scale)?;
    g.per_head(&g.stacked(&p, g.s)?.matmul(v)?, g.d)
}

/// Attaches a precomputed output to the graph of `q`, `k`, `v` with the backward above.
struct AttentionGrad {
    out: Tensor,
    mask: Tensor,
    scale: f64,
}

impl CustomOp3 for AttentionGrad {
    fn name(&self) -> &'static str {
        "attention-trainable"
    }

    fn cpu_fwd(
        &self,
        _q: &CpuStorage,
        _q_l: &Layout,
        _k: &CpuStorage,
        _k_l: &Layout,
        _v: &CpuStorage,
        _v_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        // The output was computed (with candle's fused kernels) before the op was applied; a
        // copy of `(b, heads, t, d)` is all this costs.
        let (storage, layout) = self.out.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("attention: the output is not on the CPU");
        };
        let values = super::contiguous_f32(cpu, layout, "attention")?;
        Ok((CpuStorage::F32(values.to_vec()), self.out.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (k_trained, v_trained) = (k.track_op(), v.track_op());
        let (q, k, v, out, grad) =
            (q.detach(), k.detach(), v.detach(), out.detach(), grad.detach());
        let g = Grouped::of(&q, &k)?;
        let p = g.probs(&q, &k, &self.mask, self.scale)?;
        let grad_s = g.stacked(&grad.contiguous()?, g.d)?;
        let p_s = g.stacked(&p, g.s)?;
        let dv = p_s.t()?.matmul(&grad_s)?;
        let dp = g.per_head(&grad_s.matmul(&v.t()?)?, g.s)?;
        let row = (&grad * &out)?.sum_keepdim(D::Minus1)?;
        let ds = g.stacked(&(p * dp.broadcast_sub(&row)?)?, g.s)?;
        let dq = g.per_head(&(ds.matmul(&k)? * self.scale)?, g.d)?;
        let dk = (ds.t()?.matmul(&g.stacked(&q, g.d)?)? * self.scale)?;
        Ok((Some(dq), k_trained.then_some(dk), v_trained.then_some(dv)))
    }
}

/// `softmax(scale · q kᵀ + mask) v` for `q` `(b, heads, t, d)`, `k` and `v`
/// `(b, kv_heads, s, d)` and an additive `mask` broadcastable to `(b, heads, t, s)`.
/// With `grad`, differentiable in `q`, `k` and `v` without keeping any `t × s` tensor.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    grad: bool,
) -> Result<Tensor> {
    if !grad || !(q.track_op() || k.track_op() || v.track_op()) {
        // As they are: a KV cache's keys are a strided view of its buffer, and copying them
        // at every decoding step would cost more than the attention itself.
        if let Some(out) = super::decode::attention(q, k, v, mask, scale)? {
            return Ok(out);
        }
        return forward(q, k, v, mask, scale);
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let out = forward(&q.detach(), &k.detach(), &v.detach(), mask, scale)?;
    q.apply_op3(&k, &v, AttentionGrad { out, mask: mask.clone(), scale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{reference, rel_diff};
    use candle_core::{Device, Var};

    fn causal(t: usize, s: usize, dev: &Device) -> Result<Tensor> {
        let m: Vec<f32> = (0..t)
            .flat_map(|i| (0..s).map(move |j| if j <= s - t + i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        Tensor::from_vec(m, (t, s), dev)
    }

    #[test]
    fn matches_the_composed_reference_in_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
        // (b, heads, kv_heads, t, s, d): plain, grouped, odd sizes, keys before the queries.
        for (b, h, kvh, t, s, d) in
            [(1, 1, 1, 1, 1, 2), (2, 4, 2, 7, 7, 6), (1, 9, 3, 13, 13, 8), (2, 3, 1, 5, 11, 4)]
        {
            let q = Var::from_tensor(&Tensor::randn(0f32, 1., (b, h, t, d), &dev)?)?;
            let k = Var::from_tensor(&Tensor::randn(0f32, 1., (b, kvh, s, d), &dev)?)?;
            let v = Var::from_tensor(&Tensor::randn(0f32, 1., (b, kvh, s, d), &dev)?)?;
            let mask = causal(t, s, &dev)?;
            let scale = 1.0 / (d as f64).sqrt();
            let probe = Tensor::randn(0f32, 1., (b, h, t, d), &dev)?;
            let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, scale, true)?;
            let theirs =
                reference::attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, scale)?;
            let shape = (b, h, kvh, t, s, d);
            assert!(rel_diff(&ours, &theirs) < 1e-5, "values differ for {shape:?}");
            let g1 = (&ours * &probe)?.sum_all()?.backward()?;
            let g2 = (&theirs * &probe)?.sum_all()?.backward()?;
            for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
                let diff = rel_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
                assert!(diff < 1e-4, "d{name} differs by {diff} for {shape:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn a_per_row_mask_hides_keys_from_gradients_too() -> Result<()> {
        // Branch-packing masks are (b, 1, t, s): row 0 sees everything up to itself, row 1
        // only its own position. A hidden key must get no gradient from the rows it is hidden
        // from; compare with the reference under the same mask.
        let dev = Device::Cpu;
        let (t, d) = (4, 4);
        let mut m = vec![0f32; 2 * t * t];
        for i in 0..t {
            for j in 0..t {
                if j > i {
                    m[i * t + j] = f32::NEG_INFINITY;
                }
                if j != i {
                    m[t * t + i * t + j] = f32::NEG_INFINITY;
                }
            }
        }
        let mask = Tensor::from_vec(m, (2, 1, t, t), &dev)?;
        let q = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 2, t, d), &dev)?)?;
        let k = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 1, t, d), &dev)?)?;
        let v = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 1, t, d), &dev)?)?;
        let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, 0.5, true)?;
        let theirs = reference::attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, 0.5)?;
        assert!(rel_diff(&ours, &theirs) < 1e-5);
        let g1 = ours.sqr()?.sum_all()?.backward()?;
        let g2 = theirs.sqr()?.sum_all()?.backward()?;
        for x in [&q, &k, &v] {
            assert!(
                rel_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap()) < 1e-4
            );
        }
        Ok(())
    }
}
