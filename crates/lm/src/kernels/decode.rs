//! Attention for a few query positions over a long KV cache (decoding), without gradients.
//!
//! When a batch of episodes decodes one token each, every layer multiplies 1–3 query rows
//! per key head by thousands of cached keys and values. Through candle's batched matmul,
//! gemm packs each head's keys (and then its values) into its blocked layout before using
//! them, the scores take a separate masked-softmax pass, and a step reads the cache several
//! times: with 8 episodes of ~4,000 tokens, about half of a decoding step on 2 cores. Here
//! each (sequence, key head) streams its keys once, dotted with all of the head group's query
//! rows while they sit in L1 (the frozen linear layers' streaming kernel), takes the softmax
//! in place, and streams its values once. The cache is read where it lies, a strided view of
//! its buffer, as long as each position's key and value vectors are contiguous.

use candle_core::{DType, Result, Storage, Tensor};
use rayon::prelude::*;

/// Query positions up to which this kernel runs (decoding one or a few tokens); longer
/// queries amortise gemm's packing and take the matmul path.
pub const MAX_QUERIES: usize = 8;

/// `softmax(scale · q kᵀ + mask) v` as [`super::attention`] computes it, for `q`
/// `(b, heads, t, d)` with `t ≤ MAX_QUERIES`, `k` and `v` `(b, kv_heads, s, d)` (any strides
/// with contiguous rows), and `mask` broadcastable to `(b, heads, t, s)`; `None` when the
/// inputs are not of that kind (another device or dtype, strided rows), for the caller's
/// general path. A query row whose keys are all masked gets zeros (candle's softmax: NaN).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Option<Tensor>> {
    // Shapes that do not fit are the general path's error too.
    let super::attention::Grouped { b, heads, kv_heads, t, s, d } =
        super::attention::Grouped::of(q, k)?;
    let plain = |x: &Tensor| x.device().is_cpu() && x.dtype() == DType::F32;
    if t == 0
        || t > MAX_QUERIES
        || s == 0
        || v.dims() != k.dims()
        || ![q, k, v, mask].into_iter().all(plain)
    {
        return Ok(None);
    }
    let rep = heads / kv_heads;
    let q = (q * scale)?.contiguous()?;
    let mask = mask.broadcast_as((b, heads, t, s))?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (ms, ml) = mask.storage_and_layout();
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(ms)) =
        (&*qs, &*ks, &*vs, &*ms)
    else {
        return Ok(None);
    };
    let (kst, vst, mst) = (kl.stride(), vl.stride(), ml.stride());
    if kst[3] != 1 || kst[2] != d || vst[3] != 1 || vst[2] != d || mst[3] != 1 {
        return Ok(None);
    }
    let (qv, kv, vv, mv) = (
        qs.as_slice::<f32>()?,
        ks.as_slice::<f32>()?,
        vs.as_slice::<f32>()?,
        ms.as_slice::<f32>()?,
    );
    let qv = &qv[ql.start_offset()..];
    let rows = rep * t;
    let mut out = vec![0f32; b * heads * t * d];
    // One task per (sequence, key head): its query heads' rows are adjacent in `q` and `out`.
    out.par_chunks_mut(rows * d).enumerate().for_each(|(item, o)| {
        let (bi, g) = (item / kv_heads, item % kv_heads);
        let keys = &kv[kl.start_offset() + bi * kst[0] + g * kst[1]..][..s * d];
        let values = &vv[vl.start_offset() + bi * vst[0] + g * vst[1]..][..s * d];
        let queries = &qv[item * rows * d..][..rows * d];
        // scores[j * rows + i] = k_j · q_i
        let mut scores = vec![0f32; s * rows];
        super::stream::dots(keys, queries, d, rows, &mut scores);
        for i in 0..rows {
            let (h, ti) = (g * rep + i / t, i % t);
            let m = &mv[ml.start_offset() + bi * mst[0] + h * mst[1] + ti * mst[2]..][..s];
            let mut max = f32::NEG_INFINITY;
            for (j, &mj) in m.iter().enumerate() {
                let x = scores[j * rows + i] + mj;
                scores[j * rows + i] = x;
                max = max.max(x);
            }
            if max == f32::NEG_INFINITY {
                (0..s).for_each(|j| scores[j * rows + i] = 0.0);
                continue;
            }
            let mut sum = 0f32;
            for j in 0..s {
                let e = (scores[j * rows + i] - max).exp();
                scores[j * rows + i] = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            (0..s).for_each(|j| scores[j * rows + i] *= inv);
        }
        // out_i = Σ_j p_ij v_j, one pass over the values.
        for (j, vj) in values.chunks_exact(d).enumerate() {
            let p = &scores[j * rows..(j + 1) * rows];
            for (oi, &pij) in o.chunks_exact_mut(d).zip(p) {
                for (x, &y) in oi.iter_mut().zip(vj) {
                    *x += pij * y;
                }
            }
        }
    });
    Ok(Some(Tensor::from_vec(out, (b, heads, t, d), q.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rel_diff;
    use candle_core::Device;

    /// Keys and values as a KV cache holds them: the first `s` positions of a buffer of
    /// `cap`, so their layout is strided.
    fn cache_view(b: usize, kvh: usize, s: usize, cap: usize, d: usize) -> Result<Tensor> {
        Tensor::randn(0f32, 1.0, (b, kvh, cap, d), &Device::Cpu)?.narrow(2, 0, s)
    }

    #[test]
    fn matches_the_matmul_path_on_strided_caches_and_masks() -> Result<()> {
        let dev = Device::Cpu;
        // (b, heads, kv_heads, t, s, d), odd sizes and grouped heads.
        for &(b, heads, kvh, t, s, d) in
            &[(1, 1, 1, 1, 1, 8), (3, 9, 3, 1, 37, 64), (2, 4, 2, 3, 130, 12), (1, 6, 1, 8, 9, 5)]
        {
            let q = Tensor::randn(0f32, 1.0, (b, heads, t, d), &dev)?;
            let (k, v) = (cache_view(b, kvh, s, s + 7, d)?, cache_view(b, kvh, s, s + 7, d)?);
            assert!(b * kvh == 1 || !k.is_contiguous());
            // Per sequence and query: the valid keys are a prefix of length 1 + (b + t) % s,
            // the rest −∞ (padding of a shorter episode in a batch).
            let mut m = vec![0f32; b * t * s];
            for bi in 0..b {
                for ti in 0..t {
                    let valid = 1 + (bi * 5 + ti) % s;
                    for j in valid..s {
                        m[(bi * t + ti) * s + j] = f32::NEG_INFINITY;
                    }
                }
            }
            let mask = Tensor::from_vec(m, (b, 1, t, s), &dev)?;
            let scale = 1.0 / (d as f64).sqrt();
            let got = attention(&q, &k, &v, &mask, scale)?.expect("the kernel's inputs");
            let want = super::super::attention::forward(&q, &k, &v, &mask, scale)?;
            let diff = rel_diff(&got, &want);
            assert!(diff < 1e-5, "{:?}: {diff}", (b, heads, kvh, t, s, d));
        }
        Ok(())
    }

    #[test]
    fn long_queries_and_other_dtypes_take_the_general_path() -> Result<()> {
        let dev = Device::Cpu;
        let k = Tensor::randn(0f32, 1.0, (1, 1, 4, 8), &dev)?;
        let mask = Tensor::zeros((1, 1, 1, 4), DType::F32, &dev)?;
        let long = Tensor::randn(0f32, 1.0, (1, 1, MAX_QUERIES + 1, 8), &dev)?;
        assert!(attention(&long, &k, &k, &mask, 1.0)?.is_none());
        let half = Tensor::randn(0f32, 1.0, (1, 1, 1, 8), &dev)?.to_dtype(DType::F16)?;
        assert!(attention(&half, &k, &k, &mask, 1.0)?.is_none());
        Ok(())
    }
}
