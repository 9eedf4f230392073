//! The few statistics a survey summary needs: mean, standard deviation, Pearson
//! correlation, a least-squares line, Cronbach's alpha and a binomial interval, plus weighted
//! moments for answer tallies.
//!
//! Written out rather than pulled from a crate: they are short, and owning them pins
//! the exact definitions (n - 1 in the standard deviation, as pandas and R use).

/// Arithmetic mean; `None` for no data.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample standard deviation (n - 1 denominator); `None` below two values.
pub fn sd(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let ss: f64 = xs.iter().map(|x| (x - m).powi(2)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

/// Pearson correlation of paired values; `None` when fewer than two pairs or when
/// either variable does not vary (the correlation is undefined, not zero).
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let (sxx, syy, sxy) = centered_sums(xs, ys)?;
    (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// A straight line `y = intercept + slope * x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub intercept: f64,
    pub slope: f64,
}

impl Line {
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// Ordinary least squares fit of `ys` on `xs`; `None` when `xs` does not vary.
pub fn ols(xs: &[f64], ys: &[f64]) -> Option<Line> {
    let (sxx, _, sxy) = centered_sums(xs, ys)?;
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some(Line {
        intercept: mean(ys)? - slope * mean(xs)?,
        slope,
    })
}

fn centered_sums(xs: &[f64], ys: &[f64]) -> Option<(f64, f64, f64)> {
    if xs.len() != ys.len() || xs.len() < 2 {
        return None;
    }
    let (mx, my) = (mean(xs)?, mean(ys)?);
    let mut sums = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        let (dx, dy) = (x - mx, y - my);
        sums.0 += dx * dx;
        sums.1 += dy * dy;
        sums.2 += dx * dy;
    }
    Some(sums)
}

/// Cronbach's alpha of a scale from its items: `rows` holds each respondent's item values
/// (complete rows only, every row as long as the first). `k / (k - 1) * (1 - sum of the item
/// variances / variance of the row sums)`, with n - 1 variances as SPSS and R's `psych` use;
/// `None` below two items or two rows, or when the sums do not vary.
pub fn cronbach_alpha(rows: &[Vec<f64>]) -> Option<f64> {
    let k = rows.first()?.len();
    if k < 2 || rows.len() < 2 || rows.iter().any(|r| r.len() != k) {
        return None;
    }
    let variance = |xs: &[f64]| sd(xs).map(|s| s * s);
    let items: f64 = (0..k)
        .map(|i| variance(&rows.iter().map(|r| r[i]).collect::<Vec<_>>()))
        .sum::<Option<f64>>()?;
    let total = variance(&rows.iter().map(|r| r.iter().sum()).collect::<Vec<_>>())?;
    (total > 0.0).then(|| k as f64 / (k - 1) as f64 * (1.0 - items / total))
}

/// The 95% Wilson score interval of a share: `hits` of `n` draws. Unlike the normal
/// approximation it stays inside 0..1 and is not empty at 0 or n hits.
pub fn wilson_interval(hits: f64, n: f64) -> Option<(f64, f64)> {
    if n <= 0.0 {
        return None;
    }
    let z = 1.959_963_984_540_054_f64;
    let p = hits / n;
    let z2n = z * z / n;
    let centre = (p + z2n / 2.0) / (1.0 + z2n);
    let half = z / (1.0 + z2n) * (p * (1.0 - p) / n + z2n / (4.0 * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The 95% normal interval of a mean: `mean -/+ 1.96 sd / sqrt(n)`; `None` below two values.
pub fn mean_interval(xs: &[f64]) -> Option<(f64, f64)> {
    let (m, s) = (mean(xs)?, sd(xs)?);
    let half = 1.959_963_984_540_054 * s / (xs.len() as f64).sqrt();
    Some((m - half, m + half))
}

/// Running weighted mean and variance. Weights are frequencies: 1 per sampled answer,
/// an option's probability in exact mode, so both modes summarise alike.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    weight: f64,
    mean: f64,
    /// Weighted sum of squared deviations from the running mean (West's update,
    /// which stays accurate where the sum-of-squares formula cancels).
    m2: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64, w: f64) {
        if w <= 0.0 || !x.is_finite() {
            return;
        }
        self.weight += w;
        let delta = x - self.mean;
        self.mean += delta * w / self.weight;
        self.m2 += w * delta * (x - self.mean);
    }

    /// Total weight: the number of answers (expected number in exact mode).
    pub fn weight(&self) -> f64 {
        self.weight
    }

    pub fn mean(&self) -> Option<f64> {
        (self.weight > 0.0).then_some(self.mean)
    }

    /// Standard deviation with the frequency-weight correction (`weight - 1`), which
    /// equals [`sd`] when every weight is 1.
    pub fn sd(&self) -> Option<f64> {
        (self.weight > 1.0).then(|| (self.m2 / (self.weight - 1.0)).max(0.0).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn cronbach_alpha_by_hand() {
        // Items (1, 2, 3), (2, 3, 5), (3, 3, 4) over three people: item variances 1, 1/3 and
        // 1 (sum 7/3); row sums 6, 10, 10 have variance 16/3; alpha = 3/2 * (1 - 7/16).
        let rows = vec![
            vec![1.0, 2.0, 3.0],
            vec![2.0, 3.0, 5.0],
            vec![3.0, 3.0, 4.0],
        ];
        assert!(close(
            cronbach_alpha(&rows).unwrap(),
            1.5 * (1.0 - 7.0 / 16.0)
        ));
        // Two identical items are perfectly consistent.
        let same = vec![vec![1.0, 1.0], vec![2.0, 2.0], vec![4.0, 4.0]];
        assert!(close(cronbach_alpha(&same).unwrap(), 1.0));
        assert_eq!(cronbach_alpha(&[vec![1.0, 2.0]]), None);
        assert_eq!(cronbach_alpha(&[vec![1.0], vec![2.0]]), None);
        assert_eq!(cronbach_alpha(&[vec![1.0, 1.0], vec![1.0, 1.0]]), None);
    }

    #[test]
    fn wilson_interval_by_hand() {
        // 5 of 10: centre 0.5, half-width 1.96 / (1 + 0.38415) * sqrt(0.025 + 0.0096) = 0.2633.
        let (lo, hi) = wilson_interval(5.0, 10.0).unwrap();
        assert!(
            (lo - 0.2366).abs() < 1e-4 && (hi - 0.7634).abs() < 1e-4,
            "{lo} {hi}"
        );
        // None of 10 still leaves room above 0 (R's prop.test(0, 10, correct = FALSE): 0.2775).
        let (lo, hi) = wilson_interval(0.0, 10.0).unwrap();
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-4, "{hi}");
        assert_eq!(wilson_interval(0.0, 0.0), None);
    }

    #[test]
    fn mean_interval_by_hand() {
        // 1..=4: mean 2.5, sd 1.291, half-width 1.96 * 1.291 / 2 = 1.2652.
        let (lo, hi) = mean_interval(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((lo - 1.2348).abs() < 1e-4 && (hi - 3.7652).abs() < 1e-4);
        assert_eq!(mean_interval(&[1.0]), None);
    }

    #[test]
    fn mean_and_sd() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        // Deviations -2, -1, 3: squares 4 + 1 + 9 = 14, over n - 1 = 2.
        assert!(close(sd(&[1.0, 2.0, 6.0]).unwrap(), 7f64.sqrt()));
        assert_eq!(sd(&[5.0]), None);
    }

    #[test]
    fn pearson_on_tiny_inputs() {
        assert!(close(
            pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap(),
            1.0
        ));
        assert!(close(
            pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(),
            -1.0
        ));
        // x = 1..4, y = 1,3,2,4: sxy = 4, sxx = syy = 5, r = 0.8.
        assert!(close(
            pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap(),
            0.8
        ));
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0], &[1.0]), None);
    }

    #[test]
    fn least_squares_line() {
        let line = ols(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        // slope = sxy / sxx = 4 / 5; intercept = 2.5 - 0.8 * 2.5.
        assert!(close(line.slope, 0.8));
        assert!(close(line.intercept, 0.5));
        assert!(close(line.at(2.0), 2.1));
        assert_eq!(ols(&[2.0, 2.0], &[1.0, 3.0]), None);
    }

    #[test]
    fn weighted_moments_match_unweighted() {
        let xs = [1.0, 2.0, 6.0];
        let mut m = Moments::default();
        xs.iter().for_each(|x| m.add(*x, 1.0));
        assert!(close(m.mean().unwrap(), 3.0));
        assert!(close(m.sd().unwrap(), sd(&xs).unwrap()));
        // Weight 2 on a value is the same as that value twice.
        let mut w = Moments::default();
        w.add(1.0, 2.0);
        w.add(4.0, 1.0);
        assert!(close(w.mean().unwrap(), 2.0));
        assert!(close(w.sd().unwrap(), sd(&[1.0, 1.0, 4.0]).unwrap()));
    }
}
