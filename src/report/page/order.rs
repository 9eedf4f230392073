//! Order effects on a page of several runs: a question asked with its options in different
//! orders, the answers under each order side by side.

use std::fmt::Write as _;

use super::analysis::{self, Cell};
use super::{escape, svg, RunInput};

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
