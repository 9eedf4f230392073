//! Outputs of a study run: CSV tables, a manifest, charts and a terminal summary.
//!
//! The runner feeds plain data in ([`Record`] for each sampled answer, [`Distribution`]
//! for each scored question in exact mode), one respondent at a time, to a [`Report`].
//! Each respondent's rows are flushed to disk at once, so an interrupted run keeps every
//! respondent that finished. Charts and the summary come at the end, from tallies kept
//! in memory, so the CSV files are never read back.
//!
//! Files in the output directory:
//! - `responses.csv`: wide, one row per (respondent, sample): attributes, one column per
//!   question, then the derived constructs. In exact mode one row per respondent with
//!   an empty `sample`, holding expected values.
//! - `answers.csv`: long, one row per answer: respondent, sample, question, answer,
//!   probability (empty for sampled answers unless the engine reports it).
//! - `distributions.csv`: exact mode only: respondent, question, option, probability.
//! - `manifest.json`: what produced the files ([`Manifest`]).
//! - `journal.jsonl`: every respondent's answers as they finish, for `personas run --resume`
//!   (see `runner::journal`).
//! - `charts/`: a histogram per closed question and a scatter plot per pair of
//!   constructs, each as SVG and PNG.

mod charts;
mod data;
pub mod fidelity;
pub mod page;
mod stats;
mod summary;
mod writer;

pub use charts::{histogram_chart, scatter_chart, HistogramData, ScatterData};
pub(crate) use data::write_whole;
pub use data::{
    json_error, write_manifest, Counts, Distribution, FileInfo, Manifest, ModelInfo, Record,
    ReportError, Shard, ShareBaseline, Timings, SHARE_FILE,
};
pub use stats::{mean, ols, pearson, sd, Line, Moments};
pub use writer::Report;

#[cfg(test)]
mod tests;
