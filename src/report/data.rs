//! What a run's files hold (answers, distributions, the manifest and its parts), how a file is
//! written whole, and what can go wrong writing them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::study::{AskMode, Mode, Study};

/// One answer of one respondent in one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 1-based respondent number ([`crate::study::Person::id`]).
    pub respondent: usize,
    /// 1-based sample number.
    pub sample: usize,
    pub question_id: String,
    /// The canonical answer (an option code, a number, or free text); empty when the
    /// model's reply could not be read as an answer.
    pub answer: String,
    /// The answer's probability under the model, when the engine knows it.
    pub probability: Option<f64>,
}

/// The probability of every option of one closed question for one respondent (exact
/// mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub respondent: usize,
    pub question_id: String,
    /// Options in the question's order, with probabilities summing to about 1.
    pub options: Vec<(String, f64)>,
    /// The probability the model put outside the options before they were renormalized: how
    /// much it would rather have said something else. Absent from journals written before it
    /// was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<f64>,
}

/// The population-share baseline of one compared question: the model asked, without a
/// persona, how many of 100 people would give each option; the expected counts, and the
/// shares they make over the options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareBaseline {
    pub question_id: String,
    /// Expected count of 100 per option, in the question's order.
    pub counts: Vec<(String, f64)>,
    /// The counts normalized to sum to 1.
    pub shares: Vec<(String, f64)>,
}

/// The share baseline's file in a run's output directory.
pub const SHARE_FILE: &str = "share.json";

/// What produced a run's files; the runner fills in the parts the study cannot know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub tool: String,
    pub version: String,
    pub study: FileInfo,
    pub model: Option<ModelInfo>,
    pub seed: u64,
    pub mode: Mode,
    /// `separate`, `separate+history` or `together`.
    pub ask: String,
    pub samples: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub counts: Counts,
    pub timings: Timings,
    /// The run was stopped (Ctrl-C) before every respondent was done; the files hold the
    /// respondents that finished, and `personas run --resume DIR` completes them.
    #[serde(default)]
    pub interrupted: bool,
    /// The share of the study this run computed, when it is one shard of several
    /// (`personas run --shard K/N`; `personas merge` joins them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// How many times the run was resumed (resumes killed before their model loaded are not
    /// counted).
    #[serde(default)]
    pub resumes: usize,
}

/// Shard `index` (from 0) of `count`: a contiguous share of the study's respondent groups
/// (see `runner::shard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// A file and its content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: PathBuf,
    pub sha256: String,
}

/// The model that answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Preset name from models.toml, when one was used.
    pub preset: Option<String>,
    /// The weights file (GGUF or safetensors) and its SHA-256.
    pub file: FileInfo,
    /// What computed the numbers (`avx512`, `portable` or `candle`): results differ in their
    /// last bits from one to another, never within one.
    #[serde(default)]
    pub kernels: Option<String>,
    /// The instruction-set extensions those kernels use (`avx512vnni`, `amx-int8`, ...).
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// The BLAS library dense matmuls ran on, if any (`openblas (pkg-config: DIR)`).
    #[serde(default)]
    pub blas: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// People in the study's population.
    #[serde(default)]
    pub population: usize,
    /// Respondents whose answers are in the files.
    pub respondents: usize,
    /// Respondents whose questions could not be answered (the journal keeps why); `personas
    /// run --resume DIR --retry-failed` runs them again.
    #[serde(default)]
    pub failed: usize,
    /// Respondents not started because the run was stopped.
    #[serde(default)]
    pub skipped: usize,
    pub questions: usize,
    pub answers: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// RFC 3339 start time.
    pub started_at: String,
    pub load_seconds: f64,
    pub run_seconds: f64,
    pub total_seconds: f64,
    /// Answers per second over the run.
    pub answers_per_second: f64,
    /// Multiply-adds of the model's projections the run computed (prompts, filler included,
    /// and every row's logits): set against the machine's peak (`personas bench --ceilings`),
    /// how much of the CPU the run used.
    #[serde(default)]
    pub multiply_adds: u64,
}

impl Manifest {
    /// A manifest with everything the study knows; model, counts and timings are left
    /// for the runner.
    pub fn new(study: &Study) -> Self {
        let ask = match study.ask {
            AskMode::Separate {
                keep_history: false,
            } => "separate",
            AskMode::Separate { keep_history: true } => "separate+history",
            AskMode::Together { .. } => "together",
        };
        Manifest {
            tool: "personas".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            study: FileInfo {
                path: study.path.clone(),
                sha256: study.sha256.clone(),
            },
            model: None,
            seed: study.seed,
            mode: study.sampling.mode,
            ask: ask.into(),
            samples: study.sampling.samples,
            temperature: study.sampling.temperature,
            top_p: study.sampling.top_p,
            counts: Counts {
                questions: study.questions.len(),
                ..Counts::default()
            },
            timings: Timings::default(),
            interrupted: false,
            shard: None,
            resumes: 0,
        }
    }
}

/// Writes `dir/manifest.json` (creating `dir`), whole or not at all: written, then renamed.
pub fn write_manifest(dir: &std::path::Path, manifest: &Manifest) -> Result<(), ReportError> {
    let path = dir.join("manifest.json");
    let io = |source| ReportError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_string_pretty(manifest).expect("manifest serializes");
    write_whole(&path, &(json + "\n"))
}

/// Writes `text` to `path` whole or not at all: into `path.tmp`, then renamed over `path`. A
/// half-written copy (a full disk) is not left behind; an older file stays as it was.
pub(crate) fn write_whole(path: &std::path::Path, text: &str) -> Result<(), ReportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .map_err(io)
}

/// `file:line:column: not a WHAT: message`, with `hint`, for a JSON file personas wrote (a
/// manifest, a share baseline) that does not parse as one: serde's message without its own
/// "at line L column C", which the prefix already says.
pub fn json_error(
    path: &std::path::Path,
    what: &str,
    e: &serde_json::Error,
    hint: &str,
) -> crate::diagnostics::Hinted {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let message = format!(
        "{}:{}:{}: not a {what}: {message}",
        path.display(),
        e.line(),
        e.column()
    );
    crate::diagnostics::Hinted::new(message, hint)
}

/// Probability-weighted mean of the options' values; `None` if any option with probability
/// has no numeric value (a labelled choice without values).
pub(crate) fn expected_value(q: &crate::study::Question, d: &Distribution) -> Option<f64> {
    let mut total = 0.0;
    let mut sum = 0.0;
    for (option, p) in &d.options {
        if *p > 0.0 {
            sum += p * q.numeric_value(option)?;
            total += p;
        }
    }
    (total > 0.0).then(|| sum / total)
}

/// Failures while writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}`: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("cannot draw `{}`: {message}", path.display())]
    Chart { path: PathBuf, message: String },
    /// The runner passed data that does not fit the study (a bug, not a user error).
    #[error("bad report input: {0}")]
    Input(String),
}

/// Formats a number for CSV and summaries: at most 6 decimals, no trailing zeros.
pub(crate) fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return String::new();
    }
    let rounded = (x * 1e6).round() / 1e6;
    // `-0` reads oddly in a table.
    if rounded == 0.0 {
        "0".into()
    } else {
        format!("{rounded}")
    }
}
