//! Order effects on a page of several runs: a question asked with its options in different
//! orders, the answers under each order side by side.

use std::fmt::Write as _;

use super::analysis::{self, Cell, Row};
use super::input::RunInput;
use super::{escape, svg};
use crate::report::stats::{mean, mean_interval, wilson_interval};
use crate::study::Order;

/// Where runs on one page asked the same question with its options in different orders, the
/// answers of the first run of each order side by side, and how far apart they are.
pub fn effects(h: &mut String, runs: &[RunInput]) {
    let mut text = String::new();
    let Some(first) = runs.first() else {
        return;
    };
    for q in first.study.questions.iter().filter(|q| q.is_closed()) {
        // (run, its question) for the first run of each order that asked it.
        let mut by_order: Vec<(&RunInput, &crate::study::Question)> = Vec::new();
        for run in runs {
            let Some(asked) = run
                .study
                .questions
                .iter()
                .find(|r| r.id == q.id && r.kind == q.kind)
            else {
                continue;
            };
            if !by_order.iter().any(|(_, o)| o.order == asked.order) {
                by_order.push((run, asked));
            }
        }
        if by_order.len() < 2 {
            continue;
        }
        let shares: Vec<((String, String), analysis::Shares)> = by_order
            .iter()
            .map(|(run, asked)| {
                let rows = analysis::rows(run);
                let qi = run
                    .study
                    .questions
                    .iter()
                    .position(|r| r.id == q.id)
                    .unwrap_or(0);
                let cells: Vec<Cell> = rows.iter().filter_map(|r| r.cells[qi]).collect();
                let labels = analysis::labels(asked, &cells).unwrap_or_default();
                let order = format!("{:?}", asked.order).to_lowercase();
                (
                    (order, run.name.clone()),
                    analysis::shares(asked, &labels, &cells),
                )
            })
            .collect();
        let (a, b) = (&shares[0], &shares[1]);
        let support = analysis::support(q, &a.1.labels);
        let w = crate::report::fidelity::wasserstein(&support, &a.1.share, &b.1.share);
        let d = crate::report::fidelity::ks(&a.1.share, &b.1.share);
        let f = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.3}"));
        let _ = write!(
            text,
            r#"<h4>{}</h4><figure class="chart">{}<figcaption>Blue: {}, options {}, n = {}; orange: {}, options {}, n = {}. Wasserstein {} (of the scale's span), KS {}.</figcaption></figure>"#,
            escape(&q.id),
            svg::paired(
                &format!("{}: by the order of its options", q.id),
                &a.1.labels,
                (&a.0 .0, &a.1.share),
                (&b.0 .0, &b.1.share)
            ),
            escape(&a.0 .1),
            a.0 .0,
            a.1.n,
            escape(&b.0 .1),
            b.0 .0,
            b.1.n,
            f(w),
            f(d)
        );
    }
    if !text.is_empty() {
        let _ = write!(
            h,
            r#"<section class="run"><h2 id="order-effects">Order effects</h2><p class="note">The same questions asked with their options in another order: a model that answers the question, not the position, gives the same distribution either way.</p>{text}</section>"#
        );
    }
}

/// Within a run that shuffled a question's options per respondent (`random`), how the answers
/// fell by the position an option was shown at: a model that answers the question, not the
/// position, spreads them evenly over the positions of a shuffled choice.
pub fn positions(h: &mut String, run: &RunInput, rows: &[Row]) {
    let study = run.study;
    let mut text = String::new();
    for (qi, q) in study.questions.iter().enumerate() {
        let Some(labels) = q.options().filter(|_| q.order == Order::Random) else {
            continue;
        };
        let mut by_position: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
        let mut exact = false;
        for row in rows {
            let Some(cell) = row.cells[qi] else {
                continue;
            };
            let shown = study.shown_order(row.person, qi);
            for (position, &option) in shown.iter().enumerate() {
                let share = match cell {
                    Cell::Said(answer) => f64::from(u8::from(answer == labels[option])),
                    Cell::Exact(d) => {
                        exact = true;
                        d.options
                            .iter()
                            .find(|(o, _)| *o == labels[option])
                            .map_or(0.0, |o| o.1)
                    }
                };
                by_position[position].push(share);
            }
        }
        let shares: Vec<f64> = by_position
            .iter()
            .map(|xs| mean(xs).unwrap_or(0.0))
            .collect();
        let intervals: Vec<Option<(f64, f64)>> = by_position
            .iter()
            .map(|xs| match exact {
                true => mean_interval(xs),
                false => wilson_interval(xs.iter().sum(), xs.len() as f64),
            })
            .collect();
        let ticks: Vec<String> = (1..=labels.len()).map(|p| format!("shown {p}")).collect();
        let title = format!("{}: answers by the position shown", q.id);
        let _ = write!(
            text,
            r#"<figure class="chart">{}<figcaption>Share of the answers that went to the option shown first, second, ...; whiskers: 95% intervals.</figcaption></figure>"#,
            svg::bars(&title, &ticks, &shares, &intervals)
        );
    }
    if !text.is_empty() {
        let _ = write!(
            h,
            r#"<h3>Position of the options (random order)</h3>{}"#,
            text
        );
    }
}
