//! The incremental writer behind [`Report`]: CSV rows per respondent, flushed at once,
//! and the tallies that charts and the summary are drawn from at the end.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::charts::{self, HistogramData, ScatterData};
use super::data::{
    expected_value, fmt_num, write_manifest, Distribution, Manifest, Record, ReportError,
};
use super::stats::Moments;
use crate::study::{derive_seed, Construct, Mode, Person, Question, QuestionKind, Study};

/// Output of one run, written as respondents finish. See the module docs for the files.
pub struct Report {
    dir: PathBuf,
    pub(super) questions: Vec<Question>,
    pub(super) constructs: Vec<Construct>,
    attributes: Vec<String>,
    seed: u64,
    pub(super) mode: Mode,
    responses: CsvFile,
    answers: CsvFile,
    distributions: Option<CsvFile>,
    /// One per question, in question order.
    pub(super) tallies: Vec<Tally>,
    /// Construct scores of each response row, for scatter plots and correlations.
    pub(super) scores: Vec<Vec<Option<f64>>>,
    pub(super) respondents: usize,
}

/// Answers to one question so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Tally {
    /// Weight per option (count, or summed probability in exact mode).
    pub options: Vec<(String, f64)>,
    /// Weight of answers outside the options (unreadable replies).
    pub other: f64,
    /// Numeric values, for mean and sd.
    pub moments: Moments,
    /// Number of answers (free text included).
    pub answers: usize,
}

struct CsvFile {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl CsvFile {
    fn create(path: PathBuf, header: &[String]) -> Result<Self, ReportError> {
        let file = File::create(&path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        let mut csv = CsvFile {
            path,
            writer: csv::Writer::from_writer(file),
        };
        csv.write(header)?;
        csv.flush()?;
        Ok(csv)
    }

    fn write<S: AsRef<[u8]>>(&mut self, row: &[S]) -> Result<(), ReportError> {
        self.writer
            .write_record(row)
            .map_err(|source| ReportError::Csv {
                path: self.path.clone(),
                source,
            })
    }

    fn flush(&mut self) -> Result<(), ReportError> {
        self.writer.flush().map_err(|source| ReportError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl Report {
    /// Creates the output directory (if needed) and the CSV files with their headers.
    pub fn create(dir: &Path, study: &Study) -> Result<Self, ReportError> {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let attributes = study.attribute_names();
        let mut header: Vec<String> = vec!["respondent".into(), "sample".into()];
        header.extend(attributes.iter().cloned());
        header.extend(study.questions.iter().map(|q| q.id.clone()));
        header.extend(study.constructs.iter().map(|c| c.id.clone()));
        let responses = CsvFile::create(dir.join("responses.csv"), &header)?;
        let answers = CsvFile::create(
            dir.join("answers.csv"),
            &["respondent", "sample", "question", "answer", "probability"].map(String::from),
        )?;
        let distributions = match study.sampling.mode {
            Mode::Exact => Some(CsvFile::create(
                dir.join("distributions.csv"),
                &["respondent", "question", "option", "probability"].map(String::from),
            )?),
            Mode::Sample => None,
        };
        let tallies = study
            .questions
            .iter()
            .map(|q| Tally {
                options: q
                    .options()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|o| (o, 0.0))
                    .collect(),
                ..Tally::default()
            })
            .collect();
        Ok(Report {
            dir: dir.to_path_buf(),
            questions: study.questions.clone(),
            constructs: study.constructs.clone(),
            attributes,
            seed: study.seed,
            mode: study.sampling.mode,
            responses,
            answers,
            distributions,
            tallies,
            scores: Vec::new(),
            respondents: 0,
        })
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes everything for one respondent and flushes it to disk: sampled answers
    /// (`records`, any order) and, in exact mode, option probabilities
    /// (`distributions`).
    pub fn add_respondent(
        &mut self,
        person: &Person,
        records: &[Record],
        distributions: &[Distribution],
    ) -> Result<(), ReportError> {
        if let Some(r) = records.iter().find(|r| r.respondent != person.id) {
            return Err(ReportError::Input(format!(
                "record for respondent {} given with respondent {}",
                r.respondent, person.id
            )));
        }

        // Long table and tallies.
        for r in records {
            let q = question_index(&self.questions, &r.question_id)?;
            let probability = r.probability.map(fmt_num).unwrap_or_default();
            self.answers.write(&[
                r.respondent.to_string(),
                r.sample.to_string(),
                r.question_id.clone(),
                r.answer.clone(),
                probability,
            ])?;
            // Draws from an exact distribution (they carry its probability) would only add
            // noise to the summary, which tallies the distribution itself below.
            if r.probability.is_none() {
                self.tallies[q].answers += 1;
                self.tally(q, &r.answer, 1.0);
            }
        }
        for d in distributions {
            let q = question_index(&self.questions, &d.question_id)?;
            if let Some(file) = &mut self.distributions {
                for (option, p) in &d.options {
                    file.write(&[
                        d.respondent.to_string(),
                        d.question_id.clone(),
                        option.clone(),
                        fmt_num(*p),
                    ])?;
                }
            }
            if let Some((option, p)) = d.options.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
                self.answers.write(&[
                    d.respondent.to_string(),
                    String::new(),
                    d.question_id.clone(),
                    option.clone(),
                    fmt_num(*p),
                ])?;
            }
            self.tallies[q].answers += 1;
            for (option, p) in &d.options {
                self.tally(q, option, *p);
            }
        }

        // Wide table: one row per sample, plus one expected-value row in exact mode.
        let mut by_sample: BTreeMap<usize, HashMap<&str, &str>> = BTreeMap::new();
        for r in records {
            by_sample
                .entry(r.sample)
                .or_default()
                .insert(r.question_id.as_str(), r.answer.as_str());
        }
        for (sample, answers) in &by_sample {
            let cells: Vec<String> = self
                .questions
                .iter()
                .map(|q| answers.get(q.id.as_str()).unwrap_or(&"").to_string())
                .collect();
            let value_of = |id: &str| {
                let q = self.questions.iter().find(|q| q.id == id)?;
                q.numeric_value(answers.get(id)?)
            };
            let scores = self.constructs.iter().map(|c| c.score(value_of)).collect();
            self.response_row(person, &sample.to_string(), cells, scores)?;
        }
        if !distributions.is_empty() {
            let by_question: HashMap<&str, &Distribution> = distributions
                .iter()
                .map(|d| (d.question_id.as_str(), d))
                .collect();
            let expected = |q: &Question| {
                by_question
                    .get(q.id.as_str())
                    .and_then(|d| expected_value(q, d))
            };
            let cells: Vec<String> = self
                .questions
                .iter()
                .map(|q| match (expected(q), by_question.get(q.id.as_str())) {
                    (Some(x), _) => fmt_num(x),
                    (None, Some(d)) => d
                        .options
                        .iter()
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|o| o.0.clone())
                        .unwrap_or_default(),
                    (None, None) => String::new(),
                })
                .collect();
            let value_of = |id: &str| expected(self.questions.iter().find(|q| q.id == id)?);
            let scores = self.constructs.iter().map(|c| c.score(value_of)).collect();
            self.response_row(person, "", cells, scores)?;
        }

        self.respondents += 1;
        self.responses.flush()?;
        self.answers.flush()?;
        if let Some(file) = &mut self.distributions {
            file.flush()?;
        }
        Ok(())
    }

    fn response_row(
        &mut self,
        person: &Person,
        sample: &str,
        answers: Vec<String>,
        scores: Vec<Option<f64>>,
    ) -> Result<(), ReportError> {
        let mut row = vec![person.id.to_string(), sample.to_string()];
        for name in &self.attributes {
            row.push(person.get(name).map(|v| v.to_string()).unwrap_or_default());
        }
        row.extend(answers);
        row.extend(scores.iter().map(|s| s.map(fmt_num).unwrap_or_default()));
        self.scores.push(scores);
        self.responses.write(&row)
    }

    fn tally(&mut self, q: usize, answer: &str, weight: f64) {
        let question = &self.questions[q];
        let tally = &mut self.tallies[q];
        match tally.options.iter_mut().find(|(o, _)| o == answer) {
            Some((_, w)) => *w += weight,
            None if question.options().is_some() => tally.other += weight,
            None => {}
        }
        if let Some(x) = question.numeric_value(answer) {
            tally.moments.add(x, weight);
        }
    }

    /// Writes `manifest.json`; call it at the start and again at the end, so that an
    /// interrupted run still says what produced its files.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), ReportError> {
        write_manifest(&self.dir, manifest)
    }

    /// Draws the charts and returns the terminal summary. Returns the chart paths too.
    pub fn finish(self) -> Result<(String, Vec<PathBuf>), ReportError> {
        let charts = self.write_charts()?;
        Ok((self.summary(), charts))
    }

    /// Histograms of closed questions and scatter plots of construct pairs, as SVG and
    /// PNG under `charts/`.
    pub fn write_charts(&self) -> Result<Vec<PathBuf>, ReportError> {
        let dir = self.dir.join("charts");
        std::fs::create_dir_all(&dir).map_err(|source| ReportError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut written = Vec::new();
        let y_label = match self.mode {
            Mode::Sample => "answers",
            Mode::Exact => "expected answers",
        };
        for (q, tally) in self.questions.iter().zip(&self.tallies) {
            if tally.options.is_empty() {
                continue;
            }
            let (ticks, x_label) = axis_text(q);
            let bars = ticks
                .into_iter()
                .zip(tally.options.iter().map(|(_, w)| *w))
                .collect();
            let title = format!("{} (n = {})", q.id, tally.answers);
            let data = HistogramData {
                title,
                x_label,
                y_label: y_label.into(),
                bars,
            };
            written.extend(charts::histogram_chart(
                &dir,
                &format!("hist_{}", q.id),
                &data,
            )?);
        }
        for (i, x) in self.constructs.iter().enumerate() {
            for (j, y) in self.constructs.iter().enumerate().skip(i + 1) {
                let points: Vec<(f64, f64)> = self
                    .scores
                    .iter()
                    .filter_map(|s| Some((s[i]?, s[j]?)))
                    .collect();
                let data = ScatterData {
                    x_label: x.display_name(),
                    y_label: y.display_name(),
                    x_id: x.id.clone(),
                    y_id: y.id.clone(),
                    points,
                    jitter_seed: derive_seed(self.seed, "jitter", (i * 1000 + j) as u64),
                };
                written.extend(charts::scatter_chart(
                    &dir,
                    &format!("scatter_{}_{}", x.id, y.id),
                    &data,
                )?);
            }
        }
        Ok(written)
    }
}

fn question_index(questions: &[Question], id: &str) -> Result<usize, ReportError> {
    questions
        .iter()
        .position(|q| q.id == id)
        .ok_or_else(|| ReportError::Input(format!("unknown question `{id}`")))
}

/// Tick labels for a question's options, and a note on what codes mean: choice
/// labels go on the ticks (they are the point), scale ends below the axis (seven
/// long labels would collide).
fn axis_text(q: &Question) -> (Vec<String>, String) {
    let codes = q.options().unwrap_or_default();
    match &q.kind {
        QuestionKind::Choice { options } => {
            let ticks = options
                .iter()
                .map(|o| {
                    o.label
                        .as_ref()
                        .map_or_else(|| o.code.clone(), |l| format!("{}: {l}", o.code))
                })
                .collect();
            (ticks, String::new())
        }
        QuestionKind::Scale {
            min,
            max,
            min_label,
            max_label,
        } => {
            let ends: Vec<String> = [(min, min_label), (max, max_label)]
                .into_iter()
                .filter_map(|(x, label)| Some(format!("{x} = {}", label.as_ref()?)))
                .collect();
            (codes, ends.join(", "))
        }
        QuestionKind::YesNo { yes, no } if !(yes == "Yes" && no == "No") => {
            (codes, format!("{no} = No, {yes} = Yes"))
        }
        _ => (codes, String::new()),
    }
}
