//! `report.html`: one self-contained page per run (or per set of runs): what produced it, per
//! question the answers with their intervals, breakdowns by attribute, constructs with
//! Cronbach's alpha, correlations, scatter plots, free-text answers and failures. Charts are
//! inline SVG and a Content-Security-Policy forbids every fetch, so the page opens offline and
//! sends nothing anywhere.

mod analysis;
mod compare;
mod input;
mod order;
mod svg;

use std::fmt::Write as _;
use std::path::Path;

use analysis::{Cell, Row};
pub use input::{Respondent, RunInput};

use super::charts;
use super::data::{fmt_num, write_whole, Manifest, ReportError};
use crate::study::{derive_seed, Mode, QuestionKind};

/// Free-text answers listed per question at most (the CSV files hold them all).
const MAX_TEXT_ROWS: usize = 500;
/// Bars of a wide number question's distinct sampled values at most.
const MAX_VALUE_BARS: usize = 40;

/// Writes the page for `runs` to `path` and, when a run is compared with real respondents,
/// `compare.csv` beside it; each whole or not at all (written, then renamed).
pub fn write(path: &Path, runs: &[RunInput]) -> Result<(), ReportError> {
    let (html, compared) = build(runs)?;
    write_whole(path, &html)?;
    let table = path.with_file_name(COMPARE_FILE);
    if !compared.is_empty() {
        write_whole(&table, &compared)?;
    } else if table.exists() {
        // An earlier page's table would describe runs this page does not hold.
        std::fs::remove_file(&table).map_err(|source| ReportError::Io {
            path: table.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The comparison table's file name, beside the page.
pub const COMPARE_FILE: &str = "compare.csv";

/// The page's HTML.
pub fn render(runs: &[RunInput]) -> Result<String, ReportError> {
    Ok(build(runs)?.0)
}

/// The page's HTML and the comparison CSV (empty when no run is compared).
fn build(runs: &[RunInput]) -> Result<(String, String), ReportError> {
    let title = match runs {
        [one] => format!("personas report: {}", one.name),
        _ => format!("personas report: {} runs", runs.len()),
    };
    let mut h = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title><style>{CSS}</style></head><body>
<h1>{}</h1>
"#,
        escape(&title),
        escape(&title)
    );
    let mut compared = String::new();
    for (k, run) in runs.iter().enumerate() {
        run_section(&mut h, run, k, &mut compared)?;
    }
    order::effects(&mut h, runs);
    h.push_str("</body></html>\n");
    Ok((h, compared))
}

#[cfg(test)]
mod tests;

const CSS: &str = "body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\
td.num{text-align:right}figure{margin:1em 0}figcaption{font-size:90%;color:#555}\
section.question{border-top:1px solid #ddd;margin-top:1em}.note{color:#555;font-size:90%}.wide{overflow-x:auto}";

/// Run `k`'s part of the page; its anchors start `run{k}-`, unique on a page of several runs.
fn run_section(
    h: &mut String,
    run: &RunInput,
    k: usize,
    compared: &mut String,
) -> Result<(), ReportError> {
    let study = run.study;
    let rows = analysis::rows(run);
    let _ = write!(h, r#"<section class="run"><h2>{}</h2>"#, escape(&run.name));
    about(h, run.manifest);
    let exact = study.sampling.mode == Mode::Exact;
    let unit = if exact { "respondents" } else { "answers" };

    h.push_str("<h3>Questions</h3>");
    for (qi, q) in study.questions.iter().enumerate() {
        let cells: Vec<Cell> = rows.iter().filter_map(|r| r.cells[qi]).collect();
        let _ = write!(
            h,
            r#"<section class="question" id="run{k}-q-{}"><h4>{}</h4><p>{}</p>"#,
            escape(&q.id),
            escape(&q.id),
            escape(&q.text)
        );
        if matches!(q.kind, QuestionKind::Text { .. }) {
            let _ = write!(
                h,
                r##"<p class="note">Free text: see <a href="#run{k}-free-text">the answers</a>.</p></section>"##
            );
            continue;
        }
        let labels = analysis::labels(q, &cells).unwrap_or_else(|| value_labels(q, &cells));
        let s = analysis::shares(q, &labels, &cells);
        let ticks: Vec<String> = labels
            .iter()
            .map(|l| match q.option_label(l) {
                Some(name) if name != l => format!("{l}: {name}"),
                _ => l.clone(),
            })
            .collect();
        if !labels.is_empty() {
            let title = format!("{} (n = {} {unit})", q.id, s.n);
            let chart = svg::bars(&title, &ticks, &s.share, &s.interval);
            let how = if exact {
                "Mean probability of each option across respondents; whiskers: 95% interval of that mean."
            } else {
                "Share of the sampled answers; whiskers: 95% Wilson interval."
            };
            let _ = write!(
                h,
                r#"<figure class="chart">{chart}<figcaption>{how}</figcaption></figure>"#
            );
        }
        let mut facts = vec![format!("n = {}", s.n)];
        if let (Some(m), Some(sd)) = (s.mean, s.sd) {
            facts.push(format!("mean {m:.2}, sd {sd:.2}"));
        }
        if s.unreadable > 0 {
            facts.push(format!("{} unreadable answers", s.unreadable));
        }
        if let Some(outside) = s.outside {
            facts.push(format!(
                "probability outside the options before renormalizing: {:.1}% on average",
                outside * 100.0
            ));
        }
        let _ = write!(h, "<p>{}</p></section>", escape(&facts.join("; ")));
    }

    order::positions(h, run, &rows);
    breakdowns(h, run, &rows);
    let scores = constructs(h, run, &rows)?;
    if let Some(real) = &study.compare {
        let lines = compare::lines(run, &rows, real);
        compare::section(h, run, real, &lines, &scores);
        compare::csv(&run.name, &lines, compared);
    }
    free_text(h, run, k);
    if !run.failed.is_empty() {
        h.push_str("<h3>Failed respondents</h3><table><tr><th>respondent</th><th>why</th></tr>");
        for (id, why) in &run.failed {
            let _ = write!(h, "<tr><td>{id}</td><td>{}</td></tr>", escape(why));
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
    Ok(())
}

/// What produced the run, from its manifest.
fn about(h: &mut String, m: &Manifest) {
    let mut facts: Vec<(&str, String)> = vec![(
        "study",
        format!(
            "{} (sha256 {})",
            m.study.path.display(),
            short(&m.study.sha256)
        ),
    )];
    if let Some(model) = &m.model {
        let name = model.preset.clone().unwrap_or_default();
        facts.push((
            "model",
            format!(
                "{name} {} (sha256 {})",
                model.file.path.display(),
                short(&model.file.sha256)
            ),
        ));
        let kernels = model.kernels.clone().unwrap_or_default();
        facts.push((
            "kernels",
            format!("{kernels} (CPU features: {})", model.cpu_features.join(" ")),
        ));
        if let Some(blas) = &model.blas {
            facts.push(("BLAS", blas.clone()));
        }
    }
    facts.push(("tool", format!("{} {}", m.tool, m.version)));
    facts.push(("seed", m.seed.to_string()));
    facts.push((
        "mode",
        format!("{:?}, ask {}", m.mode, m.ask).to_lowercase(),
    ));
    facts.push((
        "sampling",
        format!(
            "samples {}, temperature {}, top-p {}",
            m.samples, m.temperature, m.top_p
        ),
    ));
    let c = &m.counts;
    facts.push((
        "respondents",
        format!(
            "{} of {} done, {} failed, {} skipped; {} answers",
            c.respondents, c.population, c.failed, c.skipped, c.answers
        ),
    ));
    let t = &m.timings;
    facts.push((
        "timing",
        format!(
            "started {}; load {:.1} s, run {:.1} s, {:.2} answers/s",
            t.started_at, t.load_seconds, t.run_seconds, t.answers_per_second
        ),
    ));
    if m.interrupted {
        facts.push((
            "interrupted",
            "yes: `personas run --resume DIR` completes it".into(),
        ));
    }
    if let Some(s) = m.shard {
        facts.push(("shard", format!("{} of {}", s.index, s.count)));
    }
    if m.resumes > 0 {
        facts.push(("resumed", format!("{} times", m.resumes)));
    }
    h.push_str(r#"<table class="about">"#);
    for (k, v) in facts {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", escape(v.trim()));
    }
    h.push_str("</table>");
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The distinct values of a sampled wide number question, as its labels when there are few
/// enough to chart (at most [`MAX_VALUE_BARS`]); none otherwise (the mean and sd stand alone).
fn value_labels(q: &crate::study::Question, cells: &[Cell]) -> Vec<String> {
    let mut values: Vec<f64> = cells
        .iter()
        .filter_map(|&c| analysis::value(q, c))
        .collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    if values.len() > MAX_VALUE_BARS {
        return Vec::new();
    }
    values.into_iter().map(fmt_num).collect()
}

/// Per attribute: each closed question's shares by group, and a table of means.
fn breakdowns(h: &mut String, run: &RunInput, rows: &[Row]) {
    let study = run.study;
    let attributes = study.attribute_names();
    let list = analysis::breakdowns(&attributes, rows);
    if list.is_empty() {
        return;
    }
    h.push_str("<h3>By attribute</h3>");
    for b in &list {
        let _ = write!(h, "<h4>By {}</h4>", escape(&b.attribute));
        let mut table = String::from(r#"<div class="wide"><table><tr><th>group</th><th>n</th>"#);
        for q in &study.questions {
            if q.is_closed() {
                let _ = write!(table, "<th>{} (mean)</th>", escape(&q.id));
            }
        }
        table.push_str("</tr>");
        let mut charts = String::new();
        for (qi, q) in study.questions.iter().enumerate() {
            if !q.is_closed() {
                continue;
            }
            let all: Vec<Cell> = rows.iter().filter_map(|r| r.cells[qi]).collect();
            let Some(labels) = analysis::labels(q, &all) else {
                continue;
            };
            let groups: Vec<(String, usize, Vec<f64>)> = b
                .groups
                .iter()
                .map(|(label, members)| {
                    let cells: Vec<Cell> =
                        members.iter().filter_map(|&i| rows[i].cells[qi]).collect();
                    let s = analysis::shares(q, &labels, &cells);
                    (label.clone(), s.n, s.share)
                })
                .collect();
            let ordinal = matches!(
                q.kind,
                QuestionKind::Scale { .. } | QuestionKind::Number { .. }
            );
            let title = format!("{} by {}", q.id, b.attribute);
            let _ = write!(
                charts,
                r#"<figure class="chart">{}</figure>"#,
                svg::stacked(&title, &groups, &labels, ordinal)
            );
        }
        for (label, members) in &b.groups {
            let _ = write!(
                table,
                "<tr><td>{}</td><td class=\"num\">{}</td>",
                escape(label),
                members.len()
            );
            for (qi, q) in study.questions.iter().enumerate() {
                if !q.is_closed() {
                    continue;
                }
                let values: Vec<f64> = members
                    .iter()
                    .filter_map(|&i| analysis::value(q, rows[i].cells[qi]?))
                    .collect();
                let m =
                    super::stats::mean(&values).map_or_else(|| "-".into(), |m| format!("{m:.2}"));
                let _ = write!(table, "<td class=\"num\">{m}</td>");
            }
            table.push_str("</tr>");
        }
        table.push_str("</table></div>");
        h.push_str(&table);
        h.push_str(&charts);
    }
}

/// Constructs (mean, sd, Cronbach's alpha), correlations, and a scatter plot per pair.
/// Returns each construct's score per row, for the comparison with real respondents.
fn constructs(
    h: &mut String,
    run: &RunInput,
    rows: &[Row],
) -> Result<Vec<Vec<Option<f64>>>, ReportError> {
    let study = run.study;
    let stats: Vec<_> = study
        .constructs
        .iter()
        .map(|c| analysis::construct_stats(c, &study.questions, rows))
        .collect();
    if !stats.is_empty() {
        h.push_str("<h3>Constructs</h3><table><tr><th>construct</th><th>items</th><th>n</th><th>mean</th><th>sd</th><th>Cronbach's alpha</th></tr>");
        for (c, s) in study.constructs.iter().zip(&stats) {
            let items: Vec<String> = c
                .items
                .iter()
                .map(|i| {
                    format!(
                        "{}{}",
                        i.question_id,
                        if i.reverse_sum.is_some() {
                            " (reversed)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            let f = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.2}"));
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                escape(&c.display_name()),
                escape(&items.join(", ")),
                s.n,
                f(s.mean),
                f(s.sd),
                f(s.alpha)
            );
        }
        h.push_str("</table>");
    }
    // Correlations of the constructs and the numeric questions.
    let mut variables: Vec<(String, Vec<Option<f64>>)> = study
        .constructs
        .iter()
        .zip(&stats)
        .map(|(c, s)| (c.id.clone(), s.scores.clone()))
        .collect();
    for (qi, q) in study.questions.iter().enumerate() {
        let values: Vec<Option<f64>> = rows
            .iter()
            .map(|r| analysis::value(q, r.cells[qi]?))
            .collect();
        if values.iter().any(Option::is_some) {
            variables.push((q.id.clone(), values));
        }
    }
    if variables.len() >= 2 {
        let m = analysis::correlations(&variables);
        h.push_str("<h3>Correlations</h3><p class=\"note\">Pearson r over the response rows where both are present (n in the tooltip).</p><div class=\"wide\"><table class=\"corr\"><tr><th></th>");
        for name in &m.names {
            let _ = write!(h, "<th>{}</th>", escape(name));
        }
        h.push_str("</tr>");
        for (i, name) in m.names.iter().enumerate() {
            let _ = write!(h, "<tr><th>{}</th>", escape(name));
            for j in 0..m.names.len() {
                let (text, colour) = match m.r[i][j] {
                    Some(r) => (format!("{r:.2}"), heat(r)),
                    None => ("-".into(), "#fff".into()),
                };
                let _ = write!(
                    h,
                    r#"<td class="num" style="background:{colour}" title="n = {}">{text}</td>"#,
                    m.n[i][j]
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></div>");
    }
    for (i, x) in study.constructs.iter().enumerate() {
        for (j, y) in study.constructs.iter().enumerate().skip(i + 1) {
            let points = stats[i]
                .scores
                .iter()
                .zip(&stats[j].scores)
                .filter_map(|(a, b)| Some(((*a)?, (*b)?)))
                .collect();
            let data = charts::ScatterData {
                x_label: x.display_name(),
                y_label: y.display_name(),
                x_id: x.id.clone(),
                y_id: y.id.clone(),
                points,
                jitter_seed: derive_seed(study.seed, "jitter", (i * 1000 + j) as u64),
            };
            let svg = charts::scatter_svg(&data).map_err(|message| ReportError::Chart {
                path: format!("report: {} vs {}", x.id, y.id).into(),
                message,
            })?;
            let _ = write!(
                h,
                r#"<figure class="chart scatter">{svg}<figcaption>Jittered points; the line is the least-squares fit over the data's range.</figcaption></figure>"#
            );
        }
    }
    Ok(stats.into_iter().map(|s| s.scores).collect())
}

/// White to red for positive r, white to blue for negative.
fn heat(r: f64) -> String {
    let a = r.abs().min(1.0);
    let fade = |c: f64| (255.0 - (255.0 - c) * a * 0.8).round() as u8;
    let (r_, g, b) = if r >= 0.0 {
        (fade(214.0), fade(96.0), fade(77.0))
    } else {
        (fade(67.0), fade(147.0), fade(195.0))
    };
    format!("#{r_:02x}{g:02x}{b:02x}")
}

/// Every free-text answer, per question, with the respondent's attributes.
fn free_text(h: &mut String, run: &RunInput, k: usize) {
    let study = run.study;
    let open: Vec<_> = study.questions.iter().filter(|q| !q.is_closed()).collect();
    if open.is_empty() {
        return;
    }
    let _ = write!(h, r#"<h3 id="run{k}-free-text">Free-text answers</h3>"#);
    let attributes = study.attribute_names();
    for q in open {
        let _ = write!(
            h,
            "<h4>{}</h4><table><tr><th>respondent</th><th>sample</th>",
            escape(&q.id)
        );
        for a in &attributes {
            let _ = write!(h, "<th>{}</th>", escape(a));
        }
        h.push_str("<th>answer</th></tr>");
        let answers = run.respondents.iter().flat_map(|r| {
            r.records
                .iter()
                .filter(|rec| rec.question_id == q.id)
                .map(move |rec| (r.person, rec))
        });
        for (shown, (person, rec)) in answers.enumerate() {
            if shown == MAX_TEXT_ROWS {
                let _ = write!(
                    h,
                    r#"<tr><td colspan="{}" class="note">the rest are in answers.csv</td></tr>"#,
                    attributes.len() + 3
                );
                break;
            }
            let _ = write!(h, "<tr><td>{}</td><td>{}</td>", rec.respondent, rec.sample);
            for a in &attributes {
                let v = person.get(a).map(|v| v.to_string()).unwrap_or_default();
                let _ = write!(h, "<td>{}</td>", escape(&v));
            }
            let _ = write!(h, "<td>{}</td></tr>", escape(&rec.answer));
        }
        h.push_str("</table>");
    }
}

/// Text made safe for HTML and SVG, in element content and in quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
