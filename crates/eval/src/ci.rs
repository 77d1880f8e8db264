//! Confidence intervals: Wilson's score interval for rates, Student's t for means.

use serde::{Deserialize, Serialize};

/// The normal quantile for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A rate with its 95% Wilson score interval.
///
/// Wilson rather than the normal approximation because evaluation rates sit near 0 and 1
/// with small n, where the normal interval collapses to zero width or leaves [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Successes.
    pub k: u64,
    /// Trials.
    pub n: u64,
    /// k / n (0 when n = 0).
    pub rate: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
}

impl Rate {
    /// `k` of `n`, with its interval.
    pub fn new(k: u64, n: u64) -> Self {
        let (lo, hi) = wilson(k, n, Z95);
        Rate { k, n, rate: if n == 0 { 0.0 } else { k as f64 / n as f64 }, lo, hi }
    }
}

/// Wilson's score interval for `k` successes in `n` trials at normal quantile `z`.
/// With no trials it is the whole of [0, 1].
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // At k = 0 (k = n) the bound is exactly 0 (1); the subtraction leaves rounding dust.
    let lo = if k == 0 { 0.0 } else { (centre - half).max(0.0) };
    let hi = if p == 1.0 { 1.0 } else { (centre + half).min(1.0) };
    (lo, hi)
}

/// A mean with its 95% t interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mean {
    /// Observations.
    pub n: u64,
    /// The sample mean (0 when n = 0).
    pub mean: f64,
    /// The sample standard deviation (n − 1 in the denominator; 0 when n < 2).
    pub sd: f64,
    /// Lower end of the interval (the mean itself when n < 2: no spread is known).
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
}

impl Mean {
    /// The mean of `values` with its interval.
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Mean { n: 0, mean: 0.0, sd: 0.0, lo: 0.0, hi: 0.0 };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Mean { n: 1, mean, sd: 0.0, lo: mean, hi: mean };
        }
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
        let half = t95(n as u64 - 1) * sd / (n as f64).sqrt();
        Mean { n: n as u64, mean, sd, lo: mean - half, hi: mean + half }
    }
}

/// Student's t quantile for a two-sided 95% interval with `df` degrees of freedom.
///
/// Exact table values up to 30 degrees of freedom; beyond, the Cornish–Fisher expansion
/// around the normal quantile (error below 1e-4 there).
pub fn t95(df: u64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df as usize - 1],
        _ => {
            let z = Z95;
            let v = df as f64;
            let g1 = (z.powi(3) + z) / 4.0;
            let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
            let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
            z + g1 / v + g2 / (v * v) + g3 / (v * v * v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn wilson_matches_reference() {
        // statsmodels: proportion_confint(8, 20, method="wilson") = (0.2188, 0.6134).
        let (lo, hi) = wilson(8, 20, Z95);
        assert!(close(lo, 0.21879, 1e-4) && close(hi, 0.61340, 1e-4), "{lo} {hi}");
        // All failures: the interval still has width, unlike the normal one.
        let (lo, hi) = wilson(0, 20, Z95);
        assert_eq!(lo, 0.0);
        assert!(close(hi, 0.16113, 1e-4), "{hi}");
        let (lo, hi) = wilson(20, 20, Z95);
        assert!(close(lo, 1.0 - 0.16113, 1e-4) && hi == 1.0);
        assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
        // Exactly 0 and 1 at the ends, whatever n (n = 200 once left 1.7e-18 in a report).
        for n in [1, 7, 200, 1000] {
            assert_eq!((wilson(0, n, Z95).0, wilson(n, n, Z95).1), (0.0, 1.0), "n = {n}");
        }
    }

    #[test]
    fn t_quantiles() {
        // scipy.stats.t.ppf(0.975, df) for df = 40, 60, 120, 1000.
        for (df, want) in [(40, 2.021075), (60, 2.000298), (120, 1.979930), (1000, 1.962339)] {
            assert!(close(t95(df), want, 2e-4), "df {df}: {} vs {want}", t95(df));
        }
        assert_eq!(t95(1), 12.706);
    }

    #[test]
    fn mean_interval() {
        // x = 1..=5: mean 3, sd sqrt(2.5); half-width t(4) * sd / sqrt(5) = 2.776 * 0.7071.
        let m = Mean::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m.mean, 3.0);
        assert!(close(m.sd, 2.5f64.sqrt(), 1e-12));
        assert!(close(m.hi - m.mean, 2.776 * (0.5f64).sqrt(), 1e-9));
        let one = Mean::of(&[4.0]);
        assert_eq!((one.lo, one.hi), (4.0, 4.0));
    }
}
