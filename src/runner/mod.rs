//! Runs a study on a model: every respondent, question and sample, each respondent written to
//! disk as soon as it is finished, so an interrupted run keeps everything already computed.
//!
//! Work is shared wherever prompts are: a respondent's opening (system prompt, persona and the
//! persona's reply) is computed once for all of its questions, a question's prompt once for all
//! of its samples, and the samples of one question decode together as one batch.
//!
//! Randomness: sample `s` of respondent `r` draws question `q` from
//! `row_rng(study.sample_seed(r, s), [q])`, a stream of its own, so the CSVs are byte-identical
//! whatever the batch size, thread count or order of work.
//!
//! Exact mode scores every closed question: the renormalized probability of each option after
//! the question's prompt. Where answers depend on earlier answers (ask together as one JSON
//! object, or separately with history) the earlier answers are fixed to their most likely option
//! while the later ones are scored (teacher forcing), which keeps one model pass per respondent.
//! `samples = N` then draws N answers per question from those distributions, with no more model
//! calls. Free-text questions are always sampled.
//!
//! Here: the run loop and its bookkeeping. The ask strategies are `separate.rs` (independent
//! prompts, batched), `history.rs` (one conversation per respondent) and `together.rs` (one
//! JSON object), on the shared state in `asker.rs`; `format.rs` holds how each question's
//! answer is constrained, scored and drawn; `journal.rs` and `shard.rs` make runs resumable and
//! divisible.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::diagnostics::Hinted;
use crate::model::Model;
use crate::report::{Manifest, ModelInfo, Report};
use crate::study::{AskMode, Mode, Person, Study};
use crate::Result;

mod asker;
mod format;
mod history;
pub mod journal;
pub mod page;
mod separate;
pub mod shard;
mod share;
mod together;

use asker::Asker;
use journal::{Entry, Journal};
pub use shard::Shard;

/// How a run is carried out; none of it changes the results.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub out_dir: PathBuf,
    /// Rows decoded together at most.
    pub batch: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Continue the run whose manifest this is, in `out_dir`: the respondents its journal
    /// holds are replayed, not computed again.
    pub resume: Option<Manifest>,
    /// With `resume`: compute the respondents that failed again.
    pub retry_failed: bool,
    /// Compute only this shard's share of the respondents.
    pub shard: Option<Shard>,
}

/// What a finished (or interrupted) run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: String,
    pub charts: Vec<PathBuf>,
    /// Respondents whose answers are in the files.
    pub respondents: usize,
    /// Respondents that failed, with why (one line each).
    pub failed: Vec<(usize, String)>,
    /// Respondents not started because the run was stopped.
    pub skipped: usize,
    pub answers: usize,
    pub seconds: f64,
    pub interrupted: bool,
}

/// Checks what the study asks of the engine before any model is loaded.
pub fn check(study: &Study) -> Result<()> {
    // `--mode sample` can override a study written for exact mode.
    if study.sampling.mode != Mode::Exact {
        if let Some(q) = study
            .questions
            .iter()
            .find(|q| q.order == crate::study::Order::All)
        {
            let message = format!(
                "{}: question `{}`: order = \"all\" averages exact distributions, and this run \
                 samples",
                study.path.display(),
                q.id
            );
            let hint = "run it in exact mode (leave out --mode sample), or present the options \
                        in a \"random\" order";
            return Err(Hinted::new(message, hint).into());
        }
    }
    if matches!(study.ask, AskMode::Together { .. }) {
        if let Some(q) = study.questions.iter().find(|q| !q.is_closed()) {
            let message = format!(
                "{}: question `{}` is free text, which ask mode `together` cannot constrain",
                study.path.display(),
                q.id
            );
            return Err(Hinted::new(message, "use [ask] mode = \"separate\"").into());
        }
    }
    Ok(())
}

/// Checks every answer format of `study` against the model's tokenizer (options it cannot
/// write, numbers it has no digits for), so that the weights load only for a study that can
/// run.
pub fn check_answers(study: &Study, tokenizer: &crate::tokenizer::Tokenizer) -> Result<()> {
    format::Answers::new(study, tokenizer).map(|_| ())
}

/// Runs `study` on `model`, writing into `settings.out_dir`. Respondents go in groups fixed by
/// the study ([`Asker::group_size`]); each finished group is journaled and synced before the
/// next starts, so a killed run resumes (`settings.resume`) where it stopped. `stop` is checked
/// between groups (Ctrl-C sets it): what finished is kept and the manifest says so.
///
/// A group that fails is run again one respondent at a time, so one bad respondent fails
/// alone; failures are counted in the manifest and the outcome, never hidden, and the run goes
/// on. Errors writing the outputs end the run.
pub fn run(
    study: &Study,
    model: &Model,
    model_info: Option<ModelInfo>,
    settings: &RunSettings,
    stop: &AtomicBool,
    load_seconds: f64,
) -> Result<RunOutcome> {
    check(study)?;
    let people = study.population()?;
    let asker = Asker::new(study, model, settings.batch, &people)?;
    let group_size = asker.group_size();
    let mut report = Report::create(&settings.out_dir, study)?;
    let mut journal = match &settings.resume {
        // Only whole groups are kept: a group cut short is computed again as a whole, with the
        // neighbours it had in the first run.
        // (A run killed while its model loaded has no journal yet: it starts afresh.)
        Some(_) if settings.out_dir.join(journal::FILE).exists() => {
            let groups: Vec<Vec<usize>> = people
                .chunks(group_size)
                .map(|g| g.iter().map(|p| p.id).collect())
                .collect();
            Journal::resume(&settings.out_dir, &groups)?
        }
        _ => Journal::create(&settings.out_dir)?,
    };
    let mut manifest = match &settings.resume {
        Some(earlier) => Manifest {
            resumes: earlier.resumes + 1,
            timings: earlier.timings.clone(),
            ..Manifest::new(study)
        },
        None => {
            let mut m = Manifest::new(study);
            m.timings.started_at = chrono::Utc::now().to_rfc3339();
            m
        }
    };
    manifest.model = model_info;
    manifest.shard = settings.shard;
    manifest.counts.population = people.len();
    manifest.timings.load_seconds += load_seconds;
    report.write_manifest(&manifest)?;

    let per_respondent = answers_per_respondent(study);
    let groups: Vec<&[Person]> = people.chunks(group_size).collect();
    let mine = settings
        .shard
        .map_or(0..groups.len(), |s| s.groups(groups.len()));
    let share: usize = groups[mine.clone()].iter().map(|g| g.len()).sum();
    let bar = progress_bar(settings.progress, (share * per_respondent) as u64);
    let started = Instant::now();
    let work = asker.model.llama.multiply_adds_done();
    let (mut answers, mut respondents, mut skipped) = (0, 0, 0);
    let mut failed = Vec::new();
    let mut interrupted = false;
    for g in mine.clone() {
        let group = groups[g];
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            skipped = groups[g..mine.end].iter().map(|g| g.len()).sum();
            break;
        }
        let entries: Vec<Entry> = if group.iter().all(|p| journal.has(p.id)) {
            let mut entries = Vec::with_capacity(group.len());
            for p in group {
                let entry = match journal.take(p.id) {
                    Some(Entry::Failed(_)) if settings.retry_failed => {
                        let entry = asker.entry(std::slice::from_ref(p)).remove(0);
                        journal.append(&[(p.id, &entry)])?;
                        entry
                    }
                    Some(entry) => entry,
                    None => unreachable!("checked above"),
                };
                entries.push(entry);
            }
            entries
        } else {
            let entries = asker.entry(group);
            let ids: Vec<(usize, &Entry)> = group.iter().map(|p| p.id).zip(&entries).collect();
            journal.append(&ids)?;
            entries
        };
        for (person, entry) in group.iter().zip(entries) {
            match entry {
                Entry::Done(records, dists) => {
                    report.add_respondent(person, &records, &dists)?;
                    answers += records.len() + dists.len();
                    respondents += 1;
                }
                Entry::Failed(why) => failed.push((person.id, why)),
            }
            bar.inc(per_respondent as u64);
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    manifest.counts.respondents = respondents;
    manifest.counts.failed = failed.len();
    manifest.counts.skipped = skipped;
    manifest.counts.answers = answers;
    manifest.interrupted = interrupted;
    manifest.timings.run_seconds += seconds;
    manifest.timings.multiply_adds += asker.model.llama.multiply_adds_done() - work;
    manifest.timings.total_seconds = manifest.timings.run_seconds + manifest.timings.load_seconds;
    manifest.timings.answers_per_second = if manifest.timings.run_seconds > 0.0 {
        answers as f64 / manifest.timings.run_seconds
    } else {
        0.0
    };
    report.write_manifest(&manifest)?;
    let (summary, charts) = report.finish()?;
    drop(journal);
    if !interrupted {
        let share = asker.share_baseline()?;
        if !share.is_empty() {
            page::write_share(&settings.out_dir, &share)?;
        }
    }
    let run = page::PageRun {
        dir: settings.out_dir.clone(),
        manifest,
        study: study.clone(),
    };
    let page = settings.out_dir.join(page::FILE);
    page::write_page(&[run], &page)?;
    Ok(RunOutcome {
        summary,
        charts,
        respondents,
        failed,
        skipped,
        answers,
        seconds,
        interrupted,
    })
}

fn answers_per_respondent(study: &Study) -> usize {
    let closed = study.questions.iter().filter(|q| q.is_closed()).count();
    let open = study.questions.len() - closed;
    match study.sampling.mode {
        Mode::Sample => study.questions.len() * study.sampling.samples,
        Mode::Exact if study.sampling.samples > 1 => study.questions.len() * study.sampling.samples,
        Mode::Exact => closed + open,
    }
}

fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} answers  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
