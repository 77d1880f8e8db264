//! Hand-written CPU kernels for training, each with its own backward.
//!
//! candle's fused softmax, RMSNorm and RoPE have no backward, and the composed versions
//! allocate a tensor per elementary op and keep every intermediate for the backward pass
//! (for attention: several `heads × t × s` tensors per layer). Each kernel here computes its
//! forward in one pass, keeps only what its backward needs (often nothing beyond its inputs),
//! and has a test against the composed candle reference: values and gradients to 1e-4
//! relative, on random shapes including odd sizes.
//!
//! - [`linear`]: `x Wᵀ` without a gradient for a frozen `W`, or with a trained `W`'s
//!   gradient written in its own layout; [`stream`]: the same for a few rows of `x`
//!   (decoding), reading `W` once.
//! - [`rmsnorm`], [`rope`]: row-wise normalisation and rotary embeddings.
//! - [`attention`]: softmax attention (causal or any additive mask, grouped-query) by blocks
//!   of query rows that skip the keys they cannot see, backward by recomputation from each
//!   row's log-sum-exp so no `t × s` tensor outlives a block; [`decode`]: the same without
//!   gradients for a few query positions over a long KV cache, reading it once.
//! - [`lora`]: a LoRA-adapted frozen linear layer, the update accumulated into the frozen
//!   product in place.
//! - [`swiglu`]: the gated MLP's `silu(g) · u`.
//! - [`logsoftmax`]: the log-prob of one target token per row of logits.
//! - [`adamw`]: the optimizer's in-place update.
//! - [`reference`]: each computation composed from candle ops, to test against.
//!
//! Shared pieces: `gemm` (products on borrowed slices, accumulating in place) and `simd`
//! (elementwise loops compiled for AVX2 + FMA when the CPU has them, and a vectorising
//! `exp`).

pub(crate) mod adamw;
pub mod attention;
pub mod decode;
mod gemm;
pub mod linear;
pub mod logsoftmax;
pub mod lora;
pub mod reference;
pub mod rmsnorm;
pub mod rope;
mod simd;
pub mod stream;
pub mod swiglu;

pub use attention::attention;
pub use linear::{frozen_linear, trained_linear};
pub use logsoftmax::target_logprobs;
pub use lora::lora_linear;
pub use rmsnorm::rms_norm;
pub use rope::rope;
pub use swiglu::swiglu;

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};

/// The `f32` values of a CPU storage under a contiguous layout.
fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!(
            "{what}: only f32 is supported, got {:?}",
            candle_core::backend::BackendStorage::dtype(s)
        );
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: the input must be contiguous"),
    }
}

/// Runs `f` on the contiguous `f32` values of a CPU tensor (copying only if it is strided).
fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{what}: the tensor is not on the CPU");
    };
    f(contiguous_f32(cpu, layout, what)?)
}

/// The largest difference between two tensors relative to the reference's largest value,
/// `max |a − b| / max |b|`: the kernels' tests compare against their references with it.
#[cfg(test)]
fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, y| m.max(y.abs())).max(f32::MIN_POSITIVE);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}
