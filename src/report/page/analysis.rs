//! The numbers a report page shows, from a run's respondents: per question the answer shares
//! with their intervals, breakdowns by attribute, constructs with Cronbach's alpha, and
//! correlations. Exact mode works on each respondent's distributions (a respondent counts
//! once, with the probabilities as shares); sample mode on the sampled answers.

use std::collections::BTreeMap;

use super::input::RunInput;
use crate::report::data::{expected_value, fmt_num, Distribution};
use crate::report::stats::{cronbach_alpha, mean, mean_interval, pearson, sd, wilson_interval};
use crate::study::{AttributeValue, Construct, Mode, Person, Question};

/// Categorical attributes with more levels than this are not broken down (a table of 900 ids
/// says nothing).
const MAX_LEVELS: usize = 12;
/// Numeric attributes with more distinct values than this are cut into four bands.
const MAX_VALUES: usize = 6;

/// One answer in a response row.
#[derive(Clone, Copy)]
pub enum Cell<'a> {
    /// A sampled answer: an option code, a number or free text.
    Said(&'a str),
    /// The exact distribution over the options.
    Exact(&'a Distribution),
}

/// A respondent's answers in one sample (sample mode), or their distributions (exact mode),
/// by question index.
pub struct Row<'a> {
    pub person: &'a Person,
    pub cells: Vec<Option<Cell<'a>>>,
}

/// The response rows of a run, in respondent then sample order.
pub fn rows<'a>(run: &RunInput<'a>) -> Vec<Row<'a>> {
    let questions = &run.study.questions;
    let index = |id: &str| questions.iter().position(|q| q.id == id);
    let mut rows = Vec::new();
    for r in &run.respondents {
        match run.study.sampling.mode {
            Mode::Exact => {
                let mut cells = vec![None; questions.len()];
                for d in r.distributions {
                    if let Some(qi) = index(&d.question_id) {
                        cells[qi] = Some(Cell::Exact(d));
                    }
                }
                rows.push(Row {
                    person: r.person,
                    cells,
                });
            }
            Mode::Sample => {
                let mut samples: BTreeMap<usize, Vec<Option<Cell>>> = BTreeMap::new();
                for rec in r.records {
                    if let Some(qi) = index(&rec.question_id) {
                        samples
                            .entry(rec.sample)
                            .or_insert_with(|| vec![None; questions.len()])[qi] =
                            Some(Cell::Said(&rec.answer));
                    }
                }
                rows.extend(samples.into_values().map(|cells| Row {
                    person: r.person,
                    cells,
                }));
            }
        }
    }
    rows
}

/// The number a cell stands for: the answer's value, or the expected value of a distribution.
pub fn value(q: &Question, cell: Cell) -> Option<f64> {
    match cell {
        Cell::Said(answer) => q.numeric_value(answer),
        Cell::Exact(d) => expected_value(q, d),
    }
}

/// How the answers to one closed question fell.
#[derive(Debug, Clone, PartialEq)]
pub struct Shares {
    pub labels: Vec<String>,
    /// Share of each label, 0 to 1.
    pub share: Vec<f64>,
    /// 95% interval of each share: Wilson's for sampled answers, the normal interval of the
    /// mean probability across respondents in exact mode.
    pub interval: Vec<Option<(f64, f64)>>,
    /// Answers (sample mode) or respondents (exact mode).
    pub n: usize,
    /// Sampled answers that are none of the labels (unreadable replies).
    pub unreadable: usize,
    /// Mean probability the model put outside the options before they were renormalized
    /// (exact mode, where the run recorded it).
    pub outside: Option<f64>,
    pub mean: Option<f64>,
    pub sd: Option<f64>,
}

/// The labels a closed question's answers fall in: its options, or the bins of an exact
/// number question's distributions; `None` for free text and for sampled wide numbers.
pub fn labels(q: &Question, cells: &[Cell]) -> Option<Vec<String>> {
    // An exact distribution carries its own labels: the options, or a number's bins.
    let exact = cells.iter().find_map(|c| match c {
        Cell::Exact(d) => Some(d.options.iter().map(|(o, _)| o.clone()).collect()),
        Cell::Said(_) => None,
    });
    exact.or_else(|| q.options())
}

/// The values distances between distributions over `labels` are measured on: the options'
/// numbers, or their positions where an option has none (an unlabelled choice).
pub fn support(q: &Question, labels: &[String]) -> Vec<f64> {
    let values: Option<Vec<f64>> = labels.iter().map(|l| q.numeric_value(l)).collect();
    values.unwrap_or_else(|| (0..labels.len()).map(|i| i as f64).collect())
}

/// The shares of `labels` among `cells`.
pub fn shares(q: &Question, labels: &[String], cells: &[Cell]) -> Shares {
    let values: Vec<f64> = cells.iter().filter_map(|&c| value(q, c)).collect();
    let mut out = Shares {
        labels: labels.to_vec(),
        share: vec![0.0; labels.len()],
        interval: vec![None; labels.len()],
        n: cells.len(),
        unreadable: 0,
        outside: None,
        mean: mean(&values),
        sd: sd(&values),
    };
    let mut per_label: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    let mut outside = Vec::new();
    for cell in cells {
        match cell {
            Cell::Said(answer) => match labels.iter().position(|l| l == answer) {
                Some(i) => out.share[i] += 1.0,
                None => out.unreadable += 1,
            },
            Cell::Exact(d) => {
                for (i, label) in labels.iter().enumerate() {
                    let p = d
                        .options
                        .iter()
                        .find(|(o, _)| o == label)
                        .map_or(0.0, |o| o.1);
                    per_label[i].push(p);
                }
                outside.extend(d.outside);
            }
        }
    }
    let exact = cells.iter().any(|c| matches!(c, Cell::Exact(_)));
    let n = cells.len() as f64;
    for ((share, interval), ps) in out.share.iter_mut().zip(&mut out.interval).zip(&per_label) {
        if exact {
            *share = mean(ps).unwrap_or(0.0);
            *interval = mean_interval(ps);
        } else if n > 0.0 {
            *interval = wilson_interval(*share, n);
            *share /= n;
        }
    }
    out.outside = mean(&outside);
    out
}

/// Respondents grouped by one attribute: its values, or four bands of a numeric attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    pub attribute: String,
    /// Label of each group and the rows in it.
    pub groups: Vec<(String, Vec<usize>)>,
}

/// A breakdown per attribute that has 2 to [`MAX_LEVELS`] groups, fewer than the people (a
/// group per person, such as names, says nothing).
pub fn breakdowns(attributes: &[String], rows: &[Row]) -> Vec<Breakdown> {
    let mut people: Vec<usize> = rows.iter().map(|r| r.person.id).collect();
    people.dedup();
    attributes
        .iter()
        .filter_map(|name| {
            let values: Vec<Option<&AttributeValue>> =
                rows.iter().map(|r| r.person.get(name)).collect();
            let groups = groups(&values)?;
            (groups.len() >= 2 && groups.len() < people.len()).then(|| Breakdown {
                attribute: name.clone(),
                groups,
            })
        })
        .collect()
}

fn groups(values: &[Option<&AttributeValue>]) -> Option<Vec<(String, Vec<usize>)>> {
    let numbers: Option<Vec<f64>> = values.iter().map(|v| (*v)?.as_f64()).collect();
    if let Some(numbers) = numbers {
        let mut distinct = numbers.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        if distinct.len() > MAX_VALUES {
            return Some(bands(&numbers));
        }
        return Some(
            distinct
                .iter()
                .map(|&x| {
                    let members = (0..numbers.len()).filter(|&i| numbers[i] == x).collect();
                    (fmt_num(x), members)
                })
                .collect(),
        );
    }
    let mut levels: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        let label = v.map_or_else(|| "(none)".to_string(), |v| v.to_string());
        levels.entry(label).or_default().push(i);
    }
    (levels.len() <= MAX_LEVELS).then(|| levels.into_iter().collect())
}

/// Four bands of about equal size, cut at the quartiles, labelled by the lowest and highest
/// value in each.
fn bands(numbers: &[f64]) -> Vec<(String, Vec<usize>)> {
    let mut sorted = numbers.to_vec();
    sorted.sort_by(f64::total_cmp);
    let cut = |q: usize| sorted[(sorted.len() * q / 4).min(sorted.len() - 1)];
    let cuts = [cut(1), cut(2), cut(3)];
    let mut bands: Vec<Vec<usize>> = vec![Vec::new(); 4];
    for (i, &x) in numbers.iter().enumerate() {
        bands[cuts.iter().filter(|&&c| x >= c).count()].push(i);
    }
    bands
        .into_iter()
        .filter(|b| !b.is_empty())
        .map(|members| {
            let lo = members
                .iter()
                .map(|&i| numbers[i])
                .fold(f64::INFINITY, f64::min);
            let hi = members
                .iter()
                .map(|&i| numbers[i])
                .fold(f64::NEG_INFINITY, f64::max);
            let fmt = fmt_num;
            let label = if lo == hi {
                fmt(lo)
            } else {
                format!("{}–{}", fmt(lo), fmt(hi))
            };
            (label, members)
        })
        .collect()
}

/// A construct's summary over the response rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstructStats {
    /// Rows with every item answered.
    pub n: usize,
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    pub alpha: Option<f64>,
    /// The construct's score in each row.
    pub scores: Vec<Option<f64>>,
}

pub fn construct_stats(c: &Construct, questions: &[Question], rows: &[Row]) -> ConstructStats {
    let mut items = Vec::new();
    let scores: Vec<Option<f64>> = rows
        .iter()
        .map(|row| {
            let value_of = |id: &str| {
                let qi = questions.iter().position(|q| q.id == id)?;
                value(&questions[qi], row.cells[qi]?)
            };
            let values: Option<Vec<f64>> = c
                .items
                .iter()
                .map(|item| {
                    let x = value_of(&item.question_id)?;
                    Some(item.reverse_sum.map_or(x, |total| total - x))
                })
                .collect();
            items.extend(values);
            c.score(value_of)
        })
        .collect();
    let present: Vec<f64> = scores.iter().flatten().copied().collect();
    ConstructStats {
        n: present.len(),
        mean: mean(&present),
        sd: sd(&present),
        alpha: cronbach_alpha(&items),
        scores,
    }
}

/// Pearson correlations of named variables over the rows where both are present.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlations {
    pub names: Vec<String>,
    pub r: Vec<Vec<Option<f64>>>,
    pub n: Vec<Vec<usize>>,
}

pub fn correlations(variables: &[(String, Vec<Option<f64>>)]) -> Correlations {
    let k = variables.len();
    let mut out = Correlations {
        names: variables.iter().map(|(n, _)| n.clone()).collect(),
        r: vec![vec![None; k]; k],
        n: vec![vec![0; k]; k],
    };
    for i in 0..k {
        for j in 0..k {
            let (xs, ys): (Vec<f64>, Vec<f64>) = variables[i]
                .1
                .iter()
                .zip(&variables[j].1)
                .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
                .unzip();
            out.n[i][j] = xs.len();
            out.r[i][j] = pearson(&xs, &ys);
        }
    }
    out
}
