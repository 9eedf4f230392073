//! How close a simulated sample comes to real people. Distances between two answer
//! distributions over ordered options: the Wasserstein distance normalized by the scale's span
//! (OpinionQA, Santurkar et al. 2023, report 1 minus it as representativeness) and the
//! Kolmogorov-Smirnov statistic; the mean difference with a bootstrap interval; and, for
//! twins (one simulated person per real one, "Out of One, Many", Argyle et al. 2023),
//! agreement: accuracy, Cohen's kappa, Cramér's V and, for two options, the tetrachoric
//! correlation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::stats::mean;

/// Shares that sum to 1, or `None` when there is no mass.
fn normalized(p: &[f64]) -> Option<Vec<f64>> {
    let total: f64 = p.iter().sum();
    (total > 0.0).then(|| p.iter().map(|x| x / total).collect())
}

/// The 1-Wasserstein distance between `p` and `q` over the ordered option values `support`,
/// divided by the span of the support: 0 for the same distribution, 1 for all mass at
/// opposite ends. `None` without mass on either side or with a support of one value.
pub fn wasserstein(support: &[f64], p: &[f64], q: &[f64]) -> Option<f64> {
    let (p, q) = (normalized(p)?, normalized(q)?);
    if p.len() != support.len() || q.len() != support.len() {
        return None;
    }
    // Options listed out of the order of their values (a choice coded 9, 1, 5) are sorted.
    let mut at: Vec<usize> = (0..support.len()).collect();
    at.sort_by(|&a, &b| support[a].total_cmp(&support[b]));
    let support: Vec<f64> = at.iter().map(|&i| support[i]).collect();
    let (p, q): (Vec<f64>, Vec<f64>) = at.iter().map(|&i| (p[i], q[i])).unzip();
    let span = support.last()? - support.first()?;
    if span <= 0.0 {
        return None;
    }
    let (mut cp, mut cq, mut w) = (0.0, 0.0, 0.0);
    for i in 0..support.len() - 1 {
        cp += p[i];
        cq += q[i];
        w += (cp - cq).abs() * (support[i + 1] - support[i]);
    }
    Some(w / span)
}

/// The Kolmogorov-Smirnov statistic of two distributions over the same ordered options: the
/// largest gap between their cumulative shares.
pub fn ks(p: &[f64], q: &[f64]) -> Option<f64> {
    let (p, q) = (normalized(p)?, normalized(q)?);
    let (mut cp, mut cq, mut d) = (0.0, 0.0, 0.0_f64);
    for (a, b) in p.iter().zip(&q) {
        cp += a;
        cq += b;
        d = d.max((cp - cq).abs());
    }
    Some(d)
}

/// `mean(a) - mean(b)` with its 95% percentile bootstrap interval: `reps` resamples of each
/// side with replacement, seeded.
pub fn mean_difference(a: &[f64], b: &[f64], seed: u64, reps: usize) -> Option<(f64, f64, f64)> {
    let diff = mean(a)? - mean(b)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut resample = |xs: &[f64]| {
        (0..xs.len())
            .map(|_| xs[rng.random_range(0..xs.len())])
            .sum::<f64>()
            / xs.len() as f64
    };
    let mut diffs: Vec<f64> = (0..reps).map(|_| resample(a) - resample(b)).collect();
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| diffs[((q * reps as f64) as usize).min(reps - 1)];
    (reps > 0).then(|| (diff, at(0.025), at(0.975)))
}

/// Agreement of paired answers (simulated, real), as indices of `k` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub n: usize,
    pub accuracy: f64,
    pub kappa: Option<f64>,
    pub cramers_v: Option<f64>,
    /// Two options only.
    pub tetrachoric: Option<f64>,
}

pub fn agreement(pairs: &[(usize, usize)], k: usize) -> Option<Agreement> {
    if pairs.is_empty() || k < 2 {
        return None;
    }
    let n = pairs.len() as f64;
    let mut table = vec![vec![0.0; k]; k];
    for &(a, b) in pairs {
        table[a][b] += 1.0;
    }
    let rows: Vec<f64> = table.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..k).map(|j| table.iter().map(|r| r[j]).sum()).collect();
    let observed = (0..k).map(|i| table[i][i]).sum::<f64>() / n;
    let chance = (0..k).map(|i| rows[i] * cols[i]).sum::<f64>() / (n * n);
    let kappa = (chance < 1.0).then(|| (observed - chance) / (1.0 - chance));
    // Cramér's V over the options either side used (an unused option has no expectation).
    let used_rows: Vec<usize> = (0..k).filter(|&i| rows[i] > 0.0).collect();
    let used_cols: Vec<usize> = (0..k).filter(|&j| cols[j] > 0.0).collect();
    let df = used_rows.len().min(used_cols.len()).saturating_sub(1);
    let cramers_v = (df > 0).then(|| {
        let chi2: f64 = used_rows
            .iter()
            .flat_map(|&i| used_cols.iter().map(move |&j| (i, j)))
            .map(|(i, j)| {
                let expected = rows[i] * cols[j] / n;
                (table[i][j] - expected).powi(2) / expected
            })
            .sum();
        (chi2 / (n * df as f64)).sqrt()
    });
    let tetrachoric = (k == 2).then(|| tetrachoric(&table)).flatten();
    Some(Agreement {
        n: pairs.len(),
        accuracy: observed,
        kappa,
        cramers_v,
        tetrachoric,
    })
}

/// The tetrachoric correlation of a 2 x 2 table: the correlation of a bivariate normal whose
/// quadrants, cut at thresholds matching the margins, reproduce the table. `None` when a
/// margin is empty.
pub fn tetrachoric(table: &[Vec<f64>]) -> Option<f64> {
    let n: f64 = table.iter().flatten().sum();
    let (row0, col0) = (table[0][0] + table[0][1], table[0][0] + table[1][0]);
    if n <= 0.0 || row0 <= 0.0 || row0 >= n || col0 <= 0.0 || col0 >= n {
        return None;
    }
    let (h, k) = (normal_quantile(row0 / n), normal_quantile(col0 / n));
    let target = table[0][0] / n;
    // P(X < h, Y < k) grows with rho: bisection.
    let (mut lo, mut hi) = (-0.9999, 0.9999);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if bivariate_normal_cdf(h, k, mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some((lo + hi) / 2.0)
}

/// P(X < h, Y < k) for standard normals with correlation `rho`: Phi(h) Phi(k) plus the
/// integral of the bivariate density over the correlation from 0 to rho (its derivative in
/// rho is the density, Plackett 1954), by Simpson's rule.
fn bivariate_normal_cdf(h: f64, k: f64, rho: f64) -> f64 {
    let density = |r: f64| {
        let s = 1.0 - r * r;
        (-(h * h - 2.0 * r * h * k + k * k) / (2.0 * s)).exp()
            / (2.0 * std::f64::consts::PI * s.sqrt())
    };
    let steps = 400;
    let dr = rho / steps as f64;
    let mut sum = density(0.0) + density(rho);
    for i in 1..steps {
        sum += density(i as f64 * dr) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    normal_cdf(h) * normal_cdf(k) + sum * dr / 3.0
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// erfc by its continued-fraction-free Chebyshev fit (Numerical Recipes' erfcc, relative error
/// below 1.2e-7), ample for a correlation reported to two decimals.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The standard normal quantile, by bisection on [`normal_cdf`].
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..80 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn wasserstein_and_ks_by_hand() {
        let support = [1.0, 2.0, 3.0, 4.0, 5.0];
        // All mass at 1 against all at 5: the whole span.
        let (lo, hi) = ([1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(wasserstein(&support, &lo, &hi), Some(1.0));
        assert_eq!(ks(&lo, &hi), Some(1.0));
        // Half at 1 and half at 2 against all at 2: 0.5 mass moved 1 step of 4.
        let (a, b) = ([0.5, 0.5, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(wasserstein(&support, &a, &b), Some(0.125));
        assert_eq!(ks(&a, &b), Some(0.5));
        // Counts are shares after normalizing; uneven support spacing counts.
        assert_eq!(
            wasserstein(&[0.0, 1.0, 10.0], &[2.0, 0.0, 0.0], &[0.0, 1.0, 1.0]),
            Some(0.55)
        );
        assert_eq!(wasserstein(&support, &[0.0; 5], &a), None);
        // Values listed out of order measure as sorted ones.
        assert_eq!(
            wasserstein(&[10.0, 0.0, 1.0], &[0.0, 2.0, 0.0], &[1.0, 0.0, 1.0]),
            Some(0.55)
        );
    }

    #[test]
    fn agreement_by_hand() {
        // Table [[40, 10], [10, 40]]: accuracy 0.8; chance 0.5, kappa 0.6; chi2 = 36, V = 0.6;
        // tetrachoric with thresholds at 0: 1/4 + asin(rho) / (2 pi) = 0.4, rho = sin(0.3 pi).
        let mut pairs = Vec::new();
        for (a, b, n) in [(0, 0, 40), (0, 1, 10), (1, 0, 10), (1, 1, 40)] {
            pairs.extend(std::iter::repeat_n((a, b), n));
        }
        let g = agreement(&pairs, 2).unwrap();
        assert_eq!(g.n, 100);
        assert!(close(g.accuracy, 0.8, 1e-12));
        assert!(close(g.kappa.unwrap(), 0.6, 1e-12));
        assert!(close(g.cramers_v.unwrap(), 0.6, 1e-12));
        let expected = (0.3 * std::f64::consts::PI).sin();
        assert!(
            close(g.tetrachoric.unwrap(), expected, 1e-4),
            "{:?} vs {expected}",
            g.tetrachoric
        );

        // Three options, one never used by the real side: V over the used ones.
        let g = agreement(&[(0, 0), (1, 1), (2, 1), (0, 0)], 3).unwrap();
        assert!(close(g.accuracy, 0.75, 1e-12));
        assert_eq!(g.tetrachoric, None);
        // rows (2, 1, 1), cols (2, 2, 0): chance (4 + 2) / 16; kappa (0.75 - 0.375) / 0.625.
        assert!(close(g.kappa.unwrap(), 0.6, 1e-12));
        // Used 3 x 2 table [[2,0],[0,1],[0,1]]: chi2 = 4, df = 1, V = 1.
        assert!(close(g.cramers_v.unwrap(), 1.0, 1e-12));
        assert_eq!(agreement(&[], 2), None);
    }

    #[test]
    fn tetrachoric_of_independence_is_zero_and_margins_matter() {
        // Independent margins (0.3 and 0.6): 0.18 / 0.12 / 0.42 / 0.28.
        let t = tetrachoric(&[vec![18.0, 12.0], vec![42.0, 28.0]]).unwrap();
        assert!(close(t, 0.0, 1e-4), "{t}");
        assert_eq!(tetrachoric(&[vec![5.0, 5.0], vec![0.0, 0.0]]), None);
        assert!(close(normal_cdf(1.959_964), 0.975, 1e-6));
    }

    #[test]
    fn bootstrap_interval_holds_the_difference_and_is_seeded() {
        let a: Vec<f64> = (0..50).map(|i| (i % 7) as f64).collect();
        let b: Vec<f64> = (0..40).map(|i| (i % 5) as f64).collect();
        let (d, lo, hi) = mean_difference(&a, &b, 7, 2000).unwrap();
        assert!(close(d, mean(&a).unwrap() - mean(&b).unwrap(), 1e-12));
        assert!(lo < d && d < hi && hi - lo < 2.0, "{lo} {d} {hi}");
        assert_eq!(mean_difference(&a, &b, 7, 2000), Some((d, lo, hi)));
        assert_eq!(mean_difference(&[], &b, 7, 10), None);
    }
}
