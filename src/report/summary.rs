//! The terminal summary: per question the number of answers, mean, sd and a one-line
//! histogram; per construct its mean, and the correlations between constructs.
//!
//! Meant to be read right after a run, so it fits in 100 columns and needs no chart
//! viewer; the CSV files and charts carry the detail.

use std::fmt::Write;

use super::data::fmt_num;
use super::stats::pearson;
use super::stats::Moments;
use super::writer::Report;
use crate::study::{Mode, QuestionKind};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A unicode sparkline of weights: one bar per option, `·` for none at all.
pub fn bar_line(weights: &[f64]) -> String {
    let top = weights.iter().copied().fold(0.0, f64::max);
    weights
        .iter()
        .map(|w| {
            if *w <= 0.0 || top <= 0.0 {
                '·'
            } else {
                let level = ((w / top) * BARS.len() as f64).ceil() as usize;
                BARS[level.clamp(1, BARS.len()) - 1]
            }
        })
        .collect()
}

fn stat(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{x:.2}"))
}

impl Report {
    /// The summary of everything added so far.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let rows = self.scores.len();
        let what = match self.mode {
            Mode::Sample => "sampled",
            Mode::Exact => "exact (expected values)",
        };
        let _ = writeln!(
            out,
            "{} respondents, {rows} response rows, {what}",
            self.respondents
        );
        let width = self
            .questions
            .iter()
            .map(|q| q.id.chars().count())
            .chain(self.constructs.iter().map(|c| c.id.chars().count()))
            .max()
            .unwrap_or(0)
            .max(8);

        let _ = writeln!(
            out,
            "\n{:<width$}  {:>6}  {:>6}  {:>6}  answers",
            "question", "n", "mean", "sd"
        );
        for (q, tally) in self.questions.iter().zip(&self.tallies) {
            let mut line = format!("{:<width$}  {:>6}", q.id, tally.answers);
            if matches!(q.kind, QuestionKind::Text { .. }) {
                line.push_str("  (free text)");
            } else {
                let _ = write!(
                    line,
                    "  {:>6}  {:>6}",
                    stat(tally.moments.mean()),
                    stat(tally.moments.sd())
                );
            }
            if let (Some(first), Some(last)) = (tally.options.first(), tally.options.last()) {
                let weights: Vec<f64> = tally.options.iter().map(|(_, w)| *w).collect();
                let _ = write!(line, "  {} {} {}", first.0, bar_line(&weights), last.0);
                if matches!(
                    q.kind,
                    QuestionKind::Choice { .. } | QuestionKind::YesNo { .. }
                ) {
                    let total: f64 = weights.iter().sum::<f64>() + tally.other;
                    if total > 0.0 {
                        let shares: Vec<String> = tally
                            .options
                            .iter()
                            .map(|(o, w)| format!("{o} {:.0}%", 100.0 * w / total))
                            .collect();
                        let _ = write!(line, "  {}", shares.join("  "));
                    }
                }
            }
            if tally.other > 0.0 {
                let _ = write!(line, "  ({} unreadable)", fmt_num(tally.other));
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }

        if self.constructs.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "\n{:<width$}  {:>6}  {:>6}  {:>6}",
            "construct", "n", "mean", "sd"
        );
        for (i, c) in self.constructs.iter().enumerate() {
            let mut m = Moments::default();
            self.scores
                .iter()
                .filter_map(|s| s[i])
                .for_each(|x| m.add(x, 1.0));
            let _ = writeln!(
                out,
                "{:<width$}  {:>6}  {:>6}  {:>6}",
                c.id,
                m.weight(),
                stat(m.mean()),
                stat(m.sd())
            );
        }
        if self.constructs.len() >= 2 {
            let _ = writeln!(out, "\ncorrelations (Pearson r)");
            let _ = write!(out, "{:<width$}", "");
            for c in &self.constructs {
                let _ = write!(out, "  {:>w$}", c.id, w = width.min(10));
            }
            let _ = writeln!(out);
            for (i, a) in self.constructs.iter().enumerate() {
                let _ = write!(out, "{:<width$}", a.id);
                for j in 0..self.constructs.len() {
                    let (xs, ys): (Vec<f64>, Vec<f64>) = self
                        .scores
                        .iter()
                        .filter_map(|s| Some((s[i]?, s[j]?)))
                        .unzip();
                    let _ = write!(out, "  {:>w$}", stat(pearson(&xs, &ys)), w = width.min(10));
                }
                let _ = writeln!(out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::bar_line;

    #[test]
    fn bars_scale_to_the_tallest() {
        assert_eq!(bar_line(&[0.0, 1.0, 2.0, 8.0]), "·▁▂█");
        assert_eq!(bar_line(&[0.0, 0.0]), "··");
    }
}
