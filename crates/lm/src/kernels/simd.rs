//! Vectorised elementwise loops for the kernels, and an `exp` that vectorises.
//!
//! The kernels' loops (softmax rows, the vocabulary-wide log-softmax, the MLP's SiLU) run
//! over millions of values per layer. Built for baseline x86-64 they compile to SSE2, and
//! `f32::exp` is a libm call per element: a training step evaluates a few hundred million
//! of them. [`vectorised!`] compiles a function twice, once for AVX2 + FMA, chosen at run
//! time when the CPU has them; [`exp`] is `2ⁿ · p(r)` with `n = round(x / ln 2)`,
//! `r = x − n ln 2` (ln 2 split in two so `r` is exact) and `p` Cephes' degree-6 polynomial
//! for `exp` on `|r| ≤ ln 2 / 2`: within a few ulp of libm and without branches, so loops
//! calling it vectorise too.

use std::f32::consts::LOG2_E;

/// `ln 2 = LN2_HI + LN2_LO`, the high part with few enough bits that `n · LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this, `exp` is under f32's smallest normal number: the result is 0, as for `−∞`.
const MIN_X: f32 = -87.336_55;
/// Above this, the result saturates at `exp(88) ≈ 1.7e38` instead of overflowing.
const MAX_X: f32 = 88.0;
/// `1.5 · 2²³`: adding and subtracting it rounds an `f32` below 2²² to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// `eˣ` for one value; called in a loop of a [`vectorised!`] function it vectorises.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let xc = x.clamp(MIN_X, MAX_X);
    let n = xc.mul_add(LOG2_E, ROUND) - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    // 2ⁿ from its exponent bits: n ∈ [−126, 127] after the clamp.
    let y = y * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < MIN_X {
        0.0
    } else {
        y
    }
}

/// Defines a function whose body is compiled twice: for AVX2 + FMA (used when the CPU has
/// them, checked at each call: a cached flag) and for the baseline. The body must be safe
/// code; the two copies compute the same thing (FMA may round the last bit differently).
macro_rules! vectorised {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `fast` was compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(super) use vectorised;

/// Lanes of the partial sums and maxima below: independent accumulators the compiler keeps
/// in vector registers (a single running sum would be a serial chain).
const LANES: usize = 16;

vectorised! {
    /// The largest value of `xs` (`−∞` for an empty slice).
    pub(super) fn max(xs: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let chunks = xs.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a = if x > *a { x } else { *a };
            }
        }
        tail.iter().chain(&acc).fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a })
    }
}

vectorised! {
    /// `Σ a[i] · b[i]` over the shorter of the two.
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        for (x, y) in ca.zip(cb) {
            for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
                *s = x.mul_add(*y, *s);
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}

vectorised! {
    /// `xs[i] ← exp(xs[i] − shift)`, returning their sum.
    pub(super) fn exp_sub_sum(xs: &mut [f32], shift: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = xs.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (a, x) in acc.iter_mut().zip(c) {
                *x = exp(*x - shift);
                *a += *x;
            }
        }
        let mut sum: f32 = acc.iter().sum();
        for x in chunks.into_remainder() {
            *x = exp(*x - shift);
            sum += *x;
        }
        sum
    }
}

vectorised! {
    /// `Σ exp(xs[i] − shift)`.
    pub(super) fn sum_exp_sub(xs: &[f32], shift: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let chunks = xs.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += exp(x - shift);
            }
        }
        acc.iter().sum::<f32>() + tail.iter().map(|&x| exp(x - shift)).sum::<f32>()
    }
}

vectorised! {
    /// `dst[i] ← scale · exp(src[i] − shift)`.
    pub(super) fn scaled_exp_sub(dst: &mut [f32], src: &[f32], shift: f32, scale: f32) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = scale * exp(x - shift);
        }
    }
}

vectorised! {
    /// `xs[i] ← xs[i] · scale`.
    pub(super) fn scale(xs: &mut [f32], scale: f32) {
        xs.iter_mut().for_each(|x| *x *= scale);
    }
}

vectorised! {
    /// `xs[i] ← xs[i] + ys[i]`.
    pub(super) fn add_assign(xs: &mut [f32], ys: &[f32]) {
        xs.iter_mut().zip(ys).for_each(|(x, y)| *x += y);
    }
}

vectorised! {
    /// `p[i] ← p[i] · (dp[i] − shift)`: a softmax row's gradient from its probabilities.
    pub(super) fn mul_sub(p: &mut [f32], dp: &[f32], shift: f32) {
        p.iter_mut().zip(dp).for_each(|(p, d)| *p *= d - shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libm_within_a_few_ulp_and_handles_the_ends() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, libm) = (exp(x), x.exp());
            worst = worst.max((ours - libm).abs() / libm);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
    }

    #[test]
    fn slice_helpers_agree_with_the_scalar_definition_on_odd_lengths() {
        for n in [0usize, 1, 15, 16, 17, 100] {
            let xs: Vec<f32> = (0..n).map(|i| ((i * 37 % 23) as f32) * 0.7 - 8.0).collect();
            let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), m);
            let mut ys = xs.clone();
            let s = exp_sub_sum(&mut ys, 1.5);
            let want: Vec<f32> = xs.iter().map(|&x| (x - 1.5).exp()).collect();
            let total: f32 = want.iter().sum();
            assert!((s - total).abs() <= 1e-5 * total.max(1.0), "{n}: {s} vs {total}");
            assert!((sum_exp_sub(&xs, 1.5) - total).abs() <= 1e-5 * total.max(1.0));
            for (y, w) in ys.iter().zip(&want) {
                assert!((y - w).abs() <= 1e-6 * w, "{n}: {y} vs {w}");
            }
        }
    }
}
