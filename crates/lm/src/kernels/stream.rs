//! `x wᵀ` for a few rows of `x`, streaming `w` once.
//!
//! Decoding a batch of a few sequences multiplies a handful of rows by every weight matrix.
//! gemm first packs the whole right-hand side (the weights: 113 MB for SmolLM2's output
//! projection) into its blocked layout, which for a few rows costs more than the products
//! themselves: a batch of 3 decoded no faster than 3 sequences one at a time. Here each
//! weight row is read once, while it is in L1, and dotted with every row of `x` (which stays
//! in cache), four rows of `x` per pass so each weight load feeds four multiply-adds.

use rayon::prelude::*;

/// The rows of `x` for which streaming beats gemm here (2 cores; best of 5, SmolLM2's output
/// projection 49152 × 576): 4 rows 7.8 ms vs gemm's 18.2, 8 rows 10.5 vs 20.8, but 16 rows
/// 37 vs 30 and one row 4.5 vs 4.0 (gemm's own matrix-vector path).
pub const ROWS: std::ops::RangeInclusive<usize> = 2..=8;

/// Weight rows per parallel task.
const BLOCK: usize = 32;

/// `x` `(m, k)` times `wᵀ` for `w` `(n, k)`, both row-major: `(m, n)` row-major.
pub fn matmul_t(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    debug_assert_eq!(x.len(), m * k);
    debug_assert_eq!(w.len(), n * k);
    // Computed as (n, m) so each task writes one contiguous block, then transposed.
    let mut by_weight = vec![0f32; n * m];
    by_weight.par_chunks_mut(BLOCK * m).enumerate().for_each(|(c, out)| {
        let rows = out.len() / m;
        let w = &w[c * BLOCK * k..(c * BLOCK + rows) * k];
        dots(w, x, k, m, out);
    });
    if m == 1 {
        return by_weight;
    }
    // Transposed a block of weight rows at a time, so the writes run along rows of `out`.
    let mut out = vec![0f32; m * n];
    for (c, block) in by_weight.chunks(BLOCK * m).enumerate() {
        let j0 = c * BLOCK;
        for (i, row) in out.chunks_exact_mut(n).enumerate() {
            for (jj, o) in row[j0..j0 + block.len() / m].iter_mut().enumerate() {
                *o = block[jj * m + i];
            }
        }
    }
    out
}

/// `out[j * m + i] = w[j] · x[i]` for the weight rows `w` and all `m` rows of `x`.
pub(crate) fn dots(w: &[f32], x: &[f32], k: usize, m: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        unsafe { avx2::dots(w, x, k, m, out) };
        return;
    }
    for (j, wr) in w.chunks_exact(k).enumerate() {
        for (i, o) in out[j * m..(j + 1) * m].iter_mut().enumerate() {
            *o = wr.iter().zip(&x[i * k..(i + 1) * k]).map(|(a, b)| a * b).sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// As [`super::dots`], eight lanes per register, four rows of `x` per pass over a weight
    /// row so each weight load feeds four fused multiply-adds.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots(w: &[f32], x: &[f32], k: usize, m: usize, out: &mut [f32]) {
        let full = k / 8 * 8;
        for (j, wr) in w.chunks_exact(k).enumerate() {
            let o = &mut out[j * m..(j + 1) * m];
            let wp = wr.as_ptr();
            let mut i = 0;
            while i < m {
                let rows = (m - i).min(4);
                // Rows past the end repeat the last one; their results are not stored.
                let row = |q: usize| x[(i + q.min(rows - 1)) * k..].as_ptr();
                let (p0, p1, p2, p3) = (row(0), row(1), row(2), row(3));
                // SAFETY: every pointer reads `full` ≤ k values of a row of length k.
                let (a0, a1, a2, a3) = unsafe {
                    let (mut a0, mut a1, mut a2, mut a3) = (
                        _mm256_setzero_ps(),
                        _mm256_setzero_ps(),
                        _mm256_setzero_ps(),
                        _mm256_setzero_ps(),
                    );
                    let mut c = 0;
                    while c < full {
                        let wv = _mm256_loadu_ps(wp.add(c));
                        a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p0.add(c)), a0);
                        a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p1.add(c)), a1);
                        a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p2.add(c)), a2);
                        a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p3.add(c)), a3);
                        c += 8;
                    }
                    (a0, a1, a2, a3)
                };
                for (q, acc) in [a0, a1, a2, a3].into_iter().enumerate().take(rows) {
                    let mut lanes = [0f32; 8];
                    // SAFETY: `lanes` holds eight floats.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
                    let xr = &x[(i + q) * k..(i + q + 1) * k];
                    let tail: f32 = wr[full..].iter().zip(&xr[full..]).map(|(a, b)| a * b).sum();
                    o[i + q] = lanes.iter().sum::<f32>() + tail;
                }
                i += rows;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_triple_loop_on_odd_shapes() {
        let mut seed = 7u32;
        let mut rand = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for (m, n, k) in [(1, 1, 1), (3, 70, 13), (4, 33, 64), (16, 100, 577), (7, 65, 8)] {
            let x: Vec<f32> = (0..m * k).map(|_| rand()).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rand()).collect();
            let ours = matmul_t(&x, m, &w, n, k);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
                    let got = ours[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{m}x{n}x{k} ({i},{j})"
                    );
                }
            }
        }
    }
}
