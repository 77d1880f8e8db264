//! Softmax attention with an additive mask and grouped-query heads.
//!
//! The composed differentiable version keeps the scores, the masked scores and the
//! probabilities of every layer (`heads × t × s` each) until the backward pass; at the
//! ~1,300 tokens of a packed DPO pass that is gigabytes. This kernel works by blocks of
//! query rows: a block multiplies its rows against only the keys some row of it can see (a
//! causal mask hides about half of the `t × s` products), takes the softmax in place and
//! multiplies by the values, keeping only each row's log-sum-exp. Its backward recomputes a
//! block's probabilities from `q`, `k` and that log-sum-exp, and uses
//! `rowsum(dP ∘ P) = rowsum(dO ∘ O)` so it needs no `t × s` reduction:
//!
//! `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − rowsum(dO ∘ O))`, `dQ = c·dS K`, `dK = c·dSᵀ Q`
//! with `c` the score scale. Every product is a gemm call on slices of the inputs (no
//! copies); blocks run in parallel, each thread summing its own `dK` and `dV`.

use super::gemm::{gemm_into, Mat, Threads};
use super::simd;
use super::{contiguous_f32, with_f32};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::OnceLock;

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
        Self::of_shapes(q.shape(), k.shape())
    }

    fn of_shapes(q: &Shape, k: &Shape) -> Result<Self> {
        let (b, heads, t, d) = q.dims4()?;
        let (kb, kv_heads, s, kd) = k.dims4()?;
        if kb != b || kd != d || kv_heads == 0 || heads % kv_heads != 0 {
            candle_core::bail!("attention: queries {q:?} and keys {k:?} do not fit");
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

/// Query rows per block: each block multiplies its rows against only the keys some row of
/// it can see (under a causal mask, the block's own position and before), so a causal
/// forward does a little over half of the full `t × s` products. Small enough to skip most
/// masked keys, large enough that gemm runs near its peak on the `rows × d` panels.
const BLOCK: usize = 64;

/// One block of query rows: batch row `b`, query head `h`, rows `i0..i0 + rows`, and keys
/// `0..end` holding every key some row of the block sees (the rest are masked).
struct Block {
    b: usize,
    h: usize,
    i0: usize,
    rows: usize,
    end: usize,
}

/// The inputs of one attention call as `f32` slices, with the mask read through its
/// (possibly broadcast) strides.
struct Inputs<'a> {
    g: &'a Grouped,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: &'a [f32],
    /// The mask's strides over `(b, heads, t)`; its last dimension is contiguous.
    mask_strides: [usize; 3],
    scale: f32,
}

impl Inputs<'_> {
    fn q_rows(&self, blk: &Block) -> &[f32] {
        let g = self.g;
        &self.q[((blk.b * g.heads + blk.h) * g.t + blk.i0) * g.d..][..blk.rows * g.d]
    }

    /// The first `n` keys (or values) of the key head that query head `h` reads.
    fn kv_rows<'s>(&self, x: &'s [f32], blk: &Block, n: usize) -> &'s [f32] {
        let g = self.g;
        let kv_head = blk.h / (g.heads / g.kv_heads);
        &x[(blk.b * g.kv_heads + kv_head) * g.s * g.d..][..n * g.d]
    }

    fn mask_row(&self, blk: &Block, r: usize) -> &[f32] {
        self.mask_row_at(blk.b, blk.h, blk.i0 + r)
    }

    fn mask_row_at(&self, b: usize, h: usize, i: usize) -> &[f32] {
        let [sb, sh, st] = self.mask_strides;
        &self.mask[b * sb + h * sh + i * st..][..self.g.s]
    }

    /// One past the last key that some row `i0..i0 + rows` of head `h` sees.
    fn visible_end(&self, b: usize, h: usize, i0: usize, rows: usize) -> usize {
        (i0..i0 + rows)
            .map(|i| {
                let m = self.mask_row_at(b, h, i);
                m.iter().rposition(|x| *x != f32::NEG_INFINITY).map_or(0, |j| j + 1)
            })
            .max()
            .unwrap_or(0)
    }

    /// `p (rows × end) = scale · q kᵀ + mask`, then row by row `exp(x − lse)`. Without
    /// `lse` (the forward), each row's log-sum-exp is computed, stored and used; a row that
    /// sees no key gets zeros and `lse = +∞`.
    fn probs(&self, blk: &Block, end: usize, p: &mut [f32], mut lse: LseMode<'_>) {
        if end == 0 {
            // No row of the block sees a key.
            if let LseMode::Store(out) = lse {
                out.fill(f32::INFINITY);
            }
            return;
        }
        let d = self.g.d;
        let k = self.kv_rows(self.k, blk, end);
        let q = self.q_rows(blk);
        gemm_into(
            p,
            (blk.rows, end, d),
            false,
            Mat::rows(q, d),
            Mat::transposed(k, d),
            self.scale,
            Threads::One,
        );
        for (r, row) in p.chunks_exact_mut(end).enumerate() {
            simd::add_assign(row, self.mask_row(blk, r));
            match &mut lse {
                LseMode::Use(l) => {
                    simd::exp_sub_sum(row, l[r]);
                }
                LseMode::Store(out) => {
                    let max = simd::max(row);
                    if max == f32::NEG_INFINITY {
                        row.fill(0.0);
                        out[r] = f32::INFINITY;
                        continue;
                    }
                    let sum = simd::exp_sub_sum(row, max);
                    simd::scale(row, 1.0 / sum);
                    out[r] = max + sum.ln();
                }
            }
        }
    }
}

/// Where a block's per-row log-sum-exp comes from.
enum LseMode<'a> {
    /// Computed and written to the block's rows.
    Store(&'a mut [f32]),
    /// Read (the backward pass, from the forward).
    Use(&'a [f32]),
}

/// The blocks of a `(b, heads, t, ·)` tensor with `width` values per row, each with its own
/// rows of `out`. A mask shared by the heads (the usual `(b, 1, t, s)` or `(t, s)`) is read
/// once per batch row for the blocks' visible keys, not once per head.
fn blocks<'o>(x: &Inputs, out: &'o mut [f32], width: usize) -> Vec<(Block, &'o mut [f32])> {
    let g = x.g;
    let mut items: Vec<(Block, &mut [f32])> =
        Vec::with_capacity(g.b * g.heads * g.t.div_ceil(BLOCK));
    if g.t == 0 || width == 0 {
        return items;
    }
    let per_head = g.t.div_ceil(BLOCK);
    let shared = x.mask_strides[1] == 0;
    for (bh, head) in out.chunks_mut(g.t * width).enumerate() {
        let (b, h) = (bh / g.heads, bh % g.heads);
        for (n, rows) in head.chunks_mut(BLOCK * width).enumerate() {
            let (i0, rows_n) = (n * BLOCK, rows.len() / width);
            let end = if shared && h > 0 {
                items[items.len() - per_head].0.end
            } else {
                x.visible_end(b, h, i0, rows_n)
            };
            items.push((Block { b, h, i0, rows: rows_n, end }, rows));
        }
    }
    items
}

/// The forward on slices: the output `(b, heads, t, d)` and each row's log-sum-exp
/// `(b, heads, t)`.
fn forward_cpu(x: &Inputs) -> (Vec<f32>, Vec<f32>) {
    let g = x.g;
    let mut out = vec![0f32; g.b * g.heads * g.t * g.d];
    let mut lse = vec![0f32; g.b * g.heads * g.t];
    let out_blocks = blocks(x, &mut out, g.d);
    // The same blocks' rows of `lse`, in the same order.
    let lse_blocks: Vec<&mut [f32]> =
        lse.chunks_mut(g.t.max(1)).flat_map(|head| head.chunks_mut(BLOCK)).collect();
    out_blocks.into_par_iter().zip(lse_blocks).for_each_init(Vec::new, |p, ((blk, o), l)| {
        let end = blk.end;
        p.resize(blk.rows * end, 0.0);
        x.probs(&blk, end, p, LseMode::Store(l));
        let v = x.kv_rows(x.v, &blk, end);
        gemm_into(
            o,
            (blk.rows, g.d, end),
            false,
            Mat::rows(p, end),
            Mat::rows(v, g.d),
            1.0,
            Threads::One,
        );
    });
    (out, lse)
}

/// The backward on slices, from the output `o`, its gradient `go` and the forward's
/// log-sum-exp: `(dq, dk, dv)` in the shapes of `q`, `k`, `v`.
///
/// Each query head runs as one task over its blocks, summing into its own copy of its key
/// head's `dK` and `dV`; the copies are then added in head order, so the result does not
/// depend on which thread ran what (a resumed run reproduces an uninterrupted one exactly).
fn backward_cpu(x: &Inputs, o: &[f32], go: &[f32], lse: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = x.g;
    let (d, kv_size) = (g.d, g.s * g.d);
    let mut dq = vec![0f32; g.b * g.heads * g.t * g.d];
    let per_head: Vec<(Vec<f32>, Vec<f32>)> = blocks(x, &mut dq, g.d)
        .chunk_by_mut(|(a, _), (b, _)| (a.b, a.h) == (b.b, b.h))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|head_blocks| {
            let (mut dk, mut dv) = (vec![0f32; kv_size], vec![0f32; kv_size]);
            let (mut p, mut dp) = (Vec::new(), Vec::new());
            for (blk, dq) in head_blocks.iter_mut() {
                let end = blk.end;
                let row0 = (blk.b * g.heads + blk.h) * g.t + blk.i0;
                let (o, go) = (&o[row0 * d..][..blk.rows * d], &go[row0 * d..][..blk.rows * d]);
                p.resize(blk.rows * end, 0.0);
                dp.resize(blk.rows * end, 0.0);
                x.probs(blk, end, &mut p, LseMode::Use(&lse[row0..][..blk.rows]));
                // dV += Pᵀ dO
                gemm_into(
                    &mut dv[..end * d],
                    (end, d, blk.rows),
                    true,
                    Mat::transposed(&p, end),
                    Mat::rows(go, d),
                    1.0,
                    Threads::One,
                );
                // dP = dO Vᵀ
                gemm_into(
                    &mut dp,
                    (blk.rows, end, d),
                    false,
                    Mat::rows(go, d),
                    Mat::transposed(x.kv_rows(x.v, blk, end), d),
                    1.0,
                    Threads::One,
                );
                // dS = P ∘ (dP − rowsum(dO ∘ O)), into `p`
                for r in 0..blk.rows {
                    let delta = simd::dot(&go[r * d..][..d], &o[r * d..][..d]);
                    simd::mul_sub(&mut p[r * end..][..end], &dp[r * end..][..end], delta);
                }
                // dQ = c · dS K, dK += c · dSᵀ Q
                gemm_into(
                    dq,
                    (blk.rows, d, end),
                    false,
                    Mat::rows(&p, end),
                    Mat::rows(x.kv_rows(x.k, blk, end), d),
                    x.scale,
                    Threads::One,
                );
                gemm_into(
                    &mut dk[..end * d],
                    (end, d, blk.rows),
                    true,
                    Mat::transposed(&p, end),
                    Mat::rows(x.q_rows(blk), d),
                    x.scale,
                    Threads::One,
                );
            }
            (dk, dv)
        })
        .collect();
    let kv_len = g.b * g.kv_heads * kv_size;
    let (mut dk, mut dv) = (vec![0f32; kv_len], vec![0f32; kv_len]);
    let rep = g.heads / g.kv_heads;
    for (bh, (hk, hv)) in per_head.iter().enumerate() {
        // Query head `bh % heads` of batch row `bh / heads` reads key head `… / rep`.
        let at = (bh / g.heads * g.kv_heads + bh % g.heads / rep) * kv_size;
        simd::add_assign(&mut dk[at..][..kv_size], hk);
        simd::add_assign(&mut dv[at..][..kv_size], hv);
    }
    (dq, dk, dv)
}
/// The mask broadcast to `(b, heads, t, s)` as a slice and its strides over the first three
/// dimensions (its rows made contiguous if they were not).
fn with_mask<R>(
    mask: &Tensor,
    g: &Grouped,
    f: impl FnOnce(&[f32], [usize; 3]) -> Result<R>,
) -> Result<R> {
    let shape = (g.b, g.heads, g.t, g.s);
    let mut m = mask.broadcast_as(shape)?;
    if m.stride()[3] != 1 && g.s > 1 {
        m = mask.contiguous()?.broadcast_as(shape)?;
    }
    let (storage, layout) = m.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
        candle_core::bail!("attention: the mask must be f32 on the CPU");
    };
    let st = layout.stride();
    f(&values[layout.start_offset()..], [st[0], st[1], st[2]])
}

/// The blocked attention as a graph node: the forward keeps each row's log-sum-exp, the
/// backward recomputes the probabilities block by block from it.
struct Blocked {
    mask: Tensor,
    scale: f64,
    lse: OnceLock<Vec<f32>>,
}

impl CustomOp3 for Blocked {
    fn name(&self) -> &'static str {
        "attention-trainable"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_l: &Layout,
        k: &CpuStorage,
        k_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Grouped::of_shapes(q_l.shape(), k_l.shape())?;
        if v_l.shape() != k_l.shape() {
            candle_core::bail!("attention: keys {:?} but values {:?}", k_l.shape(), v_l.shape());
        }
        let (q, k, v) = (
            contiguous_f32(q, q_l, "attention")?,
            contiguous_f32(k, k_l, "attention")?,
            contiguous_f32(v, v_l, "attention")?,
        );
        let (out, lse) = with_mask(&self.mask, &g, |mask, mask_strides| {
            let x = Inputs { g: &g, q, k, v, mask, mask_strides, scale: self.scale as f32 };
            Ok(forward_cpu(&x))
        })?;
        // A node's forward runs once; keep the first if it ever ran again.
        let _ = self.lse.set(lse);
        Ok((CpuStorage::F32(out), q_l.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(lse) = self.lse.get() else {
            candle_core::bail!("attention: backward before forward");
        };
        let g = Grouped::of(q, k)?;
        let (dq, dk, dv) = with_f32(q, "attention", |q| {
            with_f32(k, "attention", |k| {
                with_f32(v, "attention", |v| {
                    with_f32(out, "attention", |o| {
                        with_f32(grad, "attention", |go| {
                            with_mask(&self.mask, &g, |mask, mask_strides| {
                                let scale = self.scale as f32;
                                let x = Inputs { g: &g, q, k, v, mask, mask_strides, scale };
                                Ok(backward_cpu(&x, o, go, lse))
                            })
                        })
                    })
                })
            })
        })?;
        let dev = q.device();
        let dq = Tensor::from_vec(dq, q.shape(), dev)?;
        let dk = k.track_op().then(|| Tensor::from_vec(dk, k.shape(), dev)).transpose()?;
        let dv = v.track_op().then(|| Tensor::from_vec(dv, v.shape(), dev)).transpose()?;
        Ok((Some(dq), dk, dv))
    }
}

/// `softmax(scale · q kᵀ + mask) v` for `q` `(b, heads, t, d)`, `k` and `v`
/// `(b, kv_heads, s, d)` and an additive `mask` broadcastable to `(b, heads, t, s)`.
/// With `grad`, differentiable in `q`, `k` and `v` without keeping any `t × s` tensor. On
/// the CPU in f32 it runs blocked (the keys a block's rows cannot see are skipped); a query
/// row whose keys are all masked gets zeros (candle's softmax: NaN). Elsewhere it is
/// composed from candle ops.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    grad: bool,
) -> Result<Tensor> {
    let cpu = [q, k, v, mask].iter().all(|x| x.device().is_cpu() && x.dtype() == DType::F32);
    let graph = grad && (q.track_op() || k.track_op() || v.track_op());
    if !graph {
        // As they are: a KV cache's keys are a strided view of its buffer, and copying them
        // at every decoding step would cost more than the attention itself.
        if let Some(out) = super::decode::attention(q, k, v, mask, scale)? {
            return Ok(out);
        }
    }
    if !cpu {
        return if graph {
            super::reference::attention(q, k, v, mask, scale)
        } else {
            forward(q, k, v, mask, scale)
        };
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let op = Blocked { mask: mask.clone(), scale, lse: OnceLock::new() };
    if graph {
        q.apply_op3(&k, &v, op)
    } else {
        q.apply_op3_no_bwd(&k, &v, &op)
    }
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
        // (b, heads, kv_heads, t, s, d): plain, grouped, odd sizes, keys before the queries,
        // and queries over several blocks (the last one partial) with and without a cache.
        for (b, h, kvh, t, s, d) in [
            (1, 1, 1, 1, 1, 2),
            (2, 4, 2, 7, 7, 6),
            (1, 9, 3, 13, 13, 8),
            (2, 3, 1, 5, 11, 4),
            (1, 4, 2, 2 * BLOCK + 5, 2 * BLOCK + 5, 8),
            (2, 2, 1, BLOCK + 3, BLOCK + 40, 5),
        ] {
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
            let plain = attention(&q.detach(), &k.detach(), &v.detach(), &mask, scale, false)?;
            assert!(
                rel_diff(&plain, &theirs) < 1e-5,
                "values without a graph differ for {shape:?}"
            );
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
    fn rows_that_see_no_key_get_zeros_and_leave_the_gradients_finite() -> Result<()> {
        // Rows 0..BLOCK + 2 see nothing (a whole block and part of the next); the rest are
        // causal. The composed softmax gives NaN there; ours gives zeros and the other rows
        // match the reference.
        let dev = Device::Cpu;
        let (t, d, hidden) = (BLOCK + 9, 4, BLOCK + 2);
        let m: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..t).map(move |j| if i < hidden || j > i { f32::NEG_INFINITY } else { 0.0 })
            })
            .collect();
        let mask = Tensor::from_vec(m, (t, t), &dev)?;
        let q = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 2, t, d), &dev)?)?;
        let k = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 1, t, d), &dev)?)?;
        let v = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 1, t, d), &dev)?)?;
        let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, 0.5, true)?;
        let hidden_rows = ours.narrow(2, 0, hidden)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(hidden_rows, 0.0);
        let theirs = reference::attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, 0.5)?;
        let seen = |x: &Tensor| x.narrow(2, hidden, t - hidden);
        assert!(rel_diff(&seen(&ours)?, &seen(&theirs)?) < 1e-5);
        let grads = ours.sqr()?.sum_all()?.backward()?;
        for x in [&q, &k, &v] {
            let g = grads.get(x.as_tensor()).unwrap().flatten_all()?.to_vec1::<f32>()?;
            assert!(g.iter().all(|x| x.is_finite()));
        }
        Ok(())
    }

    #[test]
    fn a_per_row_mask_hides_keys_from_gradients_too() -> Result<()> {
        // Branch-packing masks are (b, 1, t, s): row 0 sees everything up to itself, row 1
        // only its own position. A hidden key must get no gradient from the rows it is hidden
        // from; compare with the reference under the same mask.
        let dev = Device::Cpu;
        let (t, d) = (BLOCK + 6, 4);
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
