//! The same computations composed from candle's differentiable ops: what each kernel is
//! tested against, and what the model runs with [`crate::model::Transformer::use_reference_ops`]
//! (to check a whole training run against the kernels). Slower, and it keeps every
//! intermediate for the backward pass.

use candle_core::{Result, Tensor, D};

/// RMSNorm over the last dimension.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// Rotate-half RoPE of `(b, heads, t, d)` with `(b, t, d/2)` tables.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let rotated = Tensor::cat(
        &[&x.narrow(D::Minus1, d / 2, d / 2)?.neg()?, &x.narrow(D::Minus1, 0, d / 2)?],
        D::Minus1,
    )?;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}

/// Attention with every query head given its own copy of its key/value head.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let rep = q.dim(1)? / k.dim(1)?;
    let expand = |x: &Tensor| -> Result<Tensor> {
        let (b, h, s, d) = x.dims4()?;
        x.unsqueeze(2)?.broadcast_as((b, h, rep, s, d))?.reshape((b, h * rep, s, d))
    };
    let (k, v) = (expand(k)?, expand(v)?);
    let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(mask)?;
    candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)
}

/// `silu(g) · u`.
pub fn swiglu(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    g.silu()? * u
}

/// `log softmax(logits)[r, targets[r]]`.
pub fn target_logprobs(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let t = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    candle_nn::ops::log_softmax(logits, D::Minus1)?.gather(&t, 1)?.squeeze(1)
}

/// LoRA's low-rank update `scale · (x Aᵀ) Bᵀ` over the last dimension of `x`.
pub fn lora_update(x: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)? * scale
}

/// A LoRA-adapted linear layer `x Wᵀ + scale · (x Aᵀ) Bᵀ`.
pub fn lora_linear(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    x.broadcast_matmul(&w.t()?)? + lora_update(x, a, b, scale)?
}
