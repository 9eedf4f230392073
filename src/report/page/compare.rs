//! The comparison with real respondents (`[compare]`): per compared question and per group
//! (everyone, then each attribute's groups where the rows are twins), both distributions side
//! by side, their normalized Wasserstein distance and KS statistic, the mean difference with a
//! bootstrap interval, the same against a uniform answer as a baseline, and for twins the
//! person-level agreement. Also the construct correlations in each sample.

use std::fmt::Write as _;

use super::analysis::{self, Cell, Row};
use super::input::RunInput;
use super::{escape, svg};
use crate::report::data::fmt_num;
use crate::report::fidelity::{agreement, ks, mean_difference, wasserstein, Agreement};
use crate::report::stats::{mean, pearson};
use crate::study::{derive_seed, Compare, Question};

/// Bootstrap resamples of the mean difference.
const REPS: usize = 2000;

/// One question in one group.
pub struct Line {
    pub question: String,
    /// `all`, or `attribute=group`.
    pub group: String,
    pub labels: Vec<String>,
    pub model: Vec<f64>,
    pub human: Vec<f64>,
    pub n_model: usize,
    pub n_human: usize,
    pub model_mean: Option<f64>,
    pub human_mean: Option<f64>,
    /// Model minus human, with its 95% bootstrap interval.
    pub difference: Option<(f64, f64, f64)>,
    pub wasserstein: Option<f64>,
    pub ks: Option<f64>,
    pub uniform_wasserstein: Option<f64>,
    pub uniform_ks: Option<f64>,
    pub uniform_mean: Option<f64>,
    /// Against the model's population-share answer, where the run asked for it.
    pub share_wasserstein: Option<f64>,
    pub share_ks: Option<f64>,
    pub twins: Option<Agreement>,
}

/// The comparison lines of a run.
pub fn lines(run: &RunInput, rows: &[Row], compare: &Compare) -> Vec<Line> {
    let study = run.study;
    let mut groups: Vec<(String, Vec<usize>)> = vec![("all".into(), (0..rows.len()).collect())];
    if compare.twins {
        for b in analysis::breakdowns(&study.attribute_names(), rows) {
            for (label, members) in b.groups {
                groups.push((format!("{}={label}", b.attribute), members));
            }
        }
    }
    let mut out = Vec::new();
    for (qi, q) in study.questions.iter().enumerate() {
        let Some(real) = compare.answers_to(&q.id) else {
            continue;
        };
        let labels = q.options().unwrap_or_default();
        for (g, (group, members)) in groups.iter().enumerate() {
            let cells: Vec<Cell> = members.iter().filter_map(|&i| rows[i].cells[qi]).collect();
            // Twins: the real rows of the group's people; otherwise every real row.
            let humans: Vec<usize> = if compare.twins {
                let mut ids: Vec<usize> = members.iter().map(|&i| rows[i].person.id - 1).collect();
                // A person's samples are rows of their own: each real twin counts once.
                ids.sort_unstable();
                ids.dedup();
                ids.into_iter().filter(|&i| i < real.len()).collect()
            } else {
                (0..real.len()).collect()
            };
            let seed = derive_seed(study.seed, "compare", (qi * 1000 + g) as u64);
            let codes: Vec<&str> = humans.iter().filter_map(|&i| real[i].as_deref()).collect();
            let values = person_values(q, qi, rows, members);
            let mut l = line(q, group, &labels, &cells, &values, &codes, seed);
            l.twins = twins_of(compare, rows, members, qi, &labels, real);
            if let Some(share) = run.share.iter().find(|s| s.question_id == q.id) {
                let p: Vec<f64> = labels
                    .iter()
                    .map(|o| share.shares.iter().find(|s| &s.0 == o).map_or(0.0, |s| s.1))
                    .collect();
                l.share_wasserstein = wasserstein(&analysis::support(q, &labels), &p, &l.human);
                l.share_ks = ks(&p, &l.human);
            }
            out.push(l);
        }
    }
    out
}

/// Person-level pairs (simulated answer, real answer) as option indices: the first sample's
/// answer, or the most probable option in exact mode.
fn twins_of(
    compare: &Compare,
    rows: &[Row],
    members: &[usize],
    qi: usize,
    labels: &[String],
    real: &[Option<String>],
) -> Option<Agreement> {
    if !compare.twins {
        return None;
    }
    let mut pairs = Vec::new();
    let mut seen = Vec::new();
    for &i in members {
        let person = rows[i].person.id;
        if seen.last() == Some(&person) {
            continue;
        }
        seen.push(person);
        let said = match rows[i].cells[qi] {
            Some(Cell::Said(a)) => labels.iter().position(|l| l == a),
            Some(Cell::Exact(d)) => d
                .options
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .and_then(|(o, _)| labels.iter().position(|l| l == o)),
            None => None,
        };
        let truth = real
            .get(person - 1)
            .and_then(Option::as_ref)
            .and_then(|c| labels.iter().position(|l| l == c));
        if let (Some(a), Some(b)) = (said, truth) {
            pairs.push((a, b));
        }
    }
    agreement(&pairs, labels.len())
}

/// Each simulated respondent's value for question `qi` among the `members` rows: the mean of
/// their samples, so that the bootstrap resamples people, not samples.
fn person_values(q: &Question, qi: usize, rows: &[Row], members: &[usize]) -> Vec<f64> {
    let mut out: Vec<(usize, f64, usize)> = Vec::new();
    for &i in members {
        let Some(x) = rows[i].cells[qi].and_then(|c| analysis::value(q, c)) else {
            continue;
        };
        match out.last_mut() {
            Some((person, sum, n)) if *person == rows[i].person.id => {
                *sum += x;
                *n += 1;
            }
            _ => out.push((rows[i].person.id, x, 1)),
        }
    }
    out.into_iter().map(|(_, sum, n)| sum / n as f64).collect()
}

/// One line from the simulated `cells` (and each simulated person's value) and the real
/// answers' `codes` of the group.
fn line(
    q: &Question,
    group: &str,
    labels: &[String],
    cells: &[Cell],
    model_values: &[f64],
    codes: &[&str],
    seed: u64,
) -> Line {
    let model = analysis::shares(q, labels, cells);
    let mut human = vec![0.0; labels.len()];
    let mut human_values = Vec::new();
    let mut n_human = 0;
    for code in codes {
        if let Some(at) = labels.iter().position(|l| l == code) {
            human[at] += 1.0;
            n_human += 1;
            human_values.extend(q.numeric_value(code));
        }
    }
    let numeric = labels.iter().all(|l| q.numeric_value(l).is_some());
    let support = analysis::support(q, labels);
    let uniform = vec![1.0; labels.len()];
    let human_shares: Vec<f64> = human.iter().map(|c| c / n_human.max(1) as f64).collect();
    Line {
        question: q.id.clone(),
        group: group.to_string(),
        labels: labels.to_vec(),
        wasserstein: wasserstein(&support, &model.share, &human),
        ks: ks(&model.share, &human),
        uniform_wasserstein: wasserstein(&support, &uniform, &human),
        uniform_ks: ks(&uniform, &human),
        // Positions stand in for values in the distances, but a mean of positions says nothing.
        uniform_mean: mean(&support).filter(|_| numeric),
        model: model.share,
        human: human_shares,
        n_model: model.n,
        n_human,
        model_mean: mean(model_values),
        human_mean: mean(&human_values),
        difference: mean_difference(model_values, &human_values, seed, REPS),
        share_wasserstein: None,
        share_ks: None,
        twins: None,
    }
}

fn num(x: Option<f64>) -> String {
    x.map(fmt_num).unwrap_or_default()
}

/// `compare.csv`: one row per run, question and group.
pub fn csv(run: &str, lines: &[Line], out: &mut String) {
    if out.is_empty() {
        out.push_str("run,question,group,n_model,n_human,model_mean,human_mean,mean_difference,difference_low,difference_high,wasserstein,representativeness,ks,uniform_wasserstein,uniform_representativeness,uniform_ks,uniform_mean,share_wasserstein,share_representativeness,share_ks,twins,accuracy,kappa,cramers_v,tetrachoric\n");
    }
    for l in lines {
        let d = l.difference;
        let t = l.twins.as_ref();
        let cells = [
            csv_cell(run),
            csv_cell(&l.question),
            csv_cell(&l.group),
            l.n_model.to_string(),
            l.n_human.to_string(),
            num(l.model_mean),
            num(l.human_mean),
            num(d.map(|d| d.0)),
            num(d.map(|d| d.1)),
            num(d.map(|d| d.2)),
            num(l.wasserstein),
            num(l.wasserstein.map(|w| 1.0 - w)),
            num(l.ks),
            num(l.uniform_wasserstein),
            num(l.uniform_wasserstein.map(|w| 1.0 - w)),
            num(l.uniform_ks),
            num(l.uniform_mean),
            num(l.share_wasserstein),
            num(l.share_wasserstein.map(|w| 1.0 - w)),
            num(l.share_ks),
            t.map_or(String::new(), |t| t.n.to_string()),
            num(t.map(|t| t.accuracy)),
            num(t.and_then(|t| t.kappa)),
            num(t.and_then(|t| t.cramers_v)),
            num(t.and_then(|t| t.tetrachoric)),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The section: per question the side-by-side chart and a table of its groups.
/// `scores` holds each construct's score per response row, as the constructs section computed
/// them.
pub fn section(
    h: &mut String,
    run: &RunInput,
    compare: &Compare,
    lines: &[Line],
    scores: &[Vec<Option<f64>>],
) {
    let _ = write!(
        h,
        r#"<h3>Compared with real respondents</h3><p class="note">{} real respondents from {}{}. Wasserstein: the distance between the two distributions over the options' values, divided by the scale's span (representativeness is 1 minus it, as OpinionQA reports); KS: the largest gap between their cumulative shares; difference: simulated minus real mean, 95% bootstrap interval. The uniform columns score a model that answers every option alike, and the share-query columns (with baseline = \"share\") the model's own answer, without personas, to how many of 100 people would give each option: the baselines to beat.</p>"#,
        compare.rows.len(),
        escape(&compare.path.display().to_string()),
        if compare.twins {
            ", each the twin of one simulated respondent"
        } else {
            ""
        }
    );
    let f = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.2}"));
    for q in &run.study.questions {
        let mine: Vec<&Line> = lines.iter().filter(|l| l.question == q.id).collect();
        let Some(all) = mine.first() else {
            continue;
        };
        let title = format!("{}: simulated vs real", q.id);
        let _ = write!(
            h,
            r#"<h4>{}</h4><figure class="chart">{}</figure><div class="wide"><table><tr><th>group</th><th>n simulated</th><th>n real</th><th>mean simulated</th><th>mean real</th><th>difference (95%)</th><th>Wasserstein</th><th>KS</th><th>uniform: Wasserstein</th><th>uniform: KS</th><th>share query: Wasserstein</th><th>share query: KS</th>"#,
            escape(&q.id),
            svg::paired(
                &title,
                &all.labels,
                ("simulated", &all.model),
                ("real", &all.human)
            )
        );
        if compare.twins {
            h.push_str("<th>twins</th><th>accuracy</th><th>kappa</th><th>Cramér's V</th><th>tetrachoric</th>");
        }
        h.push_str("</tr>");
        for l in mine {
            let diff = l.difference.map_or_else(
                || "-".into(),
                |(d, lo, hi)| format!("{d:.2} ({lo:.2} to {hi:.2})"),
            );
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{diff}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>"#,
                escape(&l.group),
                l.n_model,
                l.n_human,
                f(l.model_mean),
                f(l.human_mean),
                f(l.wasserstein),
                f(l.ks),
                f(l.uniform_wasserstein),
                f(l.uniform_ks),
                f(l.share_wasserstein),
                f(l.share_ks)
            );
            if let Some(t) = &l.twins {
                let _ = write!(
                    h,
                    r#"<td class="num">{}</td><td class="num">{:.2}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>"#,
                    t.n,
                    t.accuracy,
                    f(t.kappa),
                    f(t.cramers_v),
                    f(t.tetrachoric)
                );
            } else if compare.twins {
                h.push_str(r#"<td colspan="5">-</td>"#);
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></div>");
    }
    construct_pairs(h, run, compare, scores);
}

/// Each pair of constructs whose items are all compared: r among the simulated respondents,
/// among the real ones, and the difference.
fn construct_pairs(h: &mut String, run: &RunInput, compare: &Compare, scores: &[Vec<Option<f64>>]) {
    let study = run.study;
    let real_score = |c: &crate::study::Construct, i: usize| {
        c.score(|id| {
            let q = study.questions.iter().find(|q| q.id == id)?;
            q.numeric_value(compare.answers_to(id)?.get(i)?.as_ref()?)
        })
    };
    let mut table = String::new();
    for (a, x) in study.constructs.iter().enumerate() {
        for (b, y) in study.constructs.iter().enumerate().skip(a + 1) {
            let (xs, ys): (Vec<f64>, Vec<f64>) = scores[a]
                .iter()
                .zip(&scores[b])
                .filter_map(|(p, q)| Some(((*p)?, (*q)?)))
                .unzip();
            let (hx, hy): (Vec<f64>, Vec<f64>) = (0..compare.rows.len())
                .filter_map(|i| Some((real_score(x, i)?, real_score(y, i)?)))
                .unzip();
            let (rm, rh) = (pearson(&xs, &ys), pearson(&hx, &hy));
            if rh.is_none() {
                continue;
            }
            let f = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.2}"));
            let diff = rm.zip(rh).map(|(a, b)| a - b);
            let _ = write!(
                table,
                r#"<tr><td>{} vs {}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                escape(&x.id),
                escape(&y.id),
                f(rm),
                f(rh),
                f(diff)
            );
        }
    }
    if !table.is_empty() {
        let _ = write!(
            h,
            "<h4>Construct correlations</h4><table><tr><th>pair</th><th>r simulated</th><th>r real</th><th>difference</th></tr>{table}</table>"
        );
    }
}
