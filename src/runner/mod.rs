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

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::Rng;
use rand_chacha::ChaCha20Rng;

use crate::chat::{ChatTemplate, Message};
use crate::engine::constrain::{decode_constrained, Compiled, Pattern, Pick, Piece};
use crate::engine::generate::{decode_rows, generate, prefill};
use crate::engine::number::{greedy, Digits};
use crate::engine::sampling::row_rng;
use crate::engine::score::{
    draw_option, score_after, score_single, terminate_ambiguous, tokenize_options,
};
use crate::engine::session::{model_template, render_ids};
use crate::engine::{EngineError, SamplingParams};
use crate::model::{Cache, LogitsAt, Model};
use crate::report::{Distribution, Manifest, ModelInfo, Record, Report};
use crate::study::{AskMode, Mode, Person, Placement, Question, QuestionKind, Study};
use crate::{Error, Result};

/// Prompts computed together in one batch when a study's questions are independent.
const PROMPT_ROWS: usize = 32;

mod format;
pub mod journal;
pub mod shard;

use format::{binned, number_bins, number_probs, Format, UNRESOLVED};
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
    if matches!(study.ask, AskMode::Together { .. }) {
        if let Some(q) = study.questions.iter().find(|q| !q.is_closed()) {
            return Err(Error::Output(format!(
                "{}: question `{}` is free text, which ask mode `together` cannot constrain; hint: use [ask] mode = \"separate\"",
                study.path.display(),
                q.id
            )));
        }
    }
    Ok(())
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
    let mut report =
        Report::create(&settings.out_dir, study).map_err(|e| Error::Output(e.to_string()))?;
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
    report
        .write_manifest(&manifest)
        .map_err(|e| Error::Output(e.to_string()))?;

    let per_respondent = answers_per_respondent(study);
    let groups: Vec<&[Person]> = people.chunks(group_size).collect();
    let mine = settings
        .shard
        .map_or(0..groups.len(), |s| s.groups(groups.len()));
    let share: usize = groups[mine.clone()].iter().map(|g| g.len()).sum();
    let bar = progress_bar(settings.progress, (share * per_respondent) as u64);
    let started = Instant::now();
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
                    report
                        .add_respondent(person, &records, &dists)
                        .map_err(|e| Error::Output(e.to_string()))?;
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
    manifest.timings.total_seconds = manifest.timings.run_seconds + manifest.timings.load_seconds;
    manifest.timings.answers_per_second = if manifest.timings.run_seconds > 0.0 {
        answers as f64 / manifest.timings.run_seconds
    } else {
        0.0
    };
    report
        .write_manifest(&manifest)
        .map_err(|e| Error::Output(e.to_string()))?;
    let (summary, charts) = report.finish().map_err(|e| Error::Output(e.to_string()))?;
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

/// Everything fixed for the run: model, template, sampling parameters, compiled formats.
struct Asker<'a> {
    study: &'a Study,
    model: &'a Model,
    template: ChatTemplate,
    params: SamplingParams,
    batch: usize,
    /// Per question.
    formats: Vec<Format>,
    /// The JSON object pattern (together mode) and the options of each of its slots.
    together: Option<(Compiled, Pattern)>,
    /// Tokens every prompt of the run starts with. Batched prompts are computed as this prefix
    /// plus the rest, whichever respondents share a batch, so no result depends on the grouping.
    split: usize,
}

fn engine(e: EngineError) -> Error {
    Error::Inference(e)
}

impl<'a> Asker<'a> {
    fn new(study: &'a Study, model: &'a Model, batch: usize, people: &[Person]) -> Result<Self> {
        let template = model_template(model)?;
        let params = SamplingParams {
            temperature: study.sampling.temperature as f32,
            top_k: 0,
            top_p: study.sampling.top_p as f32,
            min_p: 0.0,
            repeat_penalty: None,
            seed: study.seed,
            max_tokens: 0,
        };
        let formats = study
            .questions
            .iter()
            .map(|q| Format::new(q, &model.tokenizer))
            .collect::<Result<Vec<_>>>()?;
        let together = match &study.ask {
            AskMode::Together { .. } => {
                let fields: Vec<(String, Piece)> = study
                    .answer_keys()
                    .into_iter()
                    .zip(&formats)
                    .map(|(k, f)| (k, f.json_piece()))
                    .collect();
                let pattern = Pattern::json_object(&fields);
                Some((Compiled::new(&pattern, &model.tokenizer)?, pattern))
            }
            AskMode::Separate { .. } => None,
        };
        let asker = Self {
            study,
            model,
            template,
            params,
            batch: batch.max(1),
            formats,
            together,
            split: 0,
        };
        let split = asker.study_prefix(people)?;
        Ok(Self { split, ..asker })
    }

    /// The prompt prefix every respondent and question shares, from the rendered openings alone
    /// (no model call).
    fn study_prefix(&self, people: &[Person]) -> Result<usize> {
        let mut prompts = Vec::new();
        for (i, person) in people.iter().enumerate() {
            let questions = if i == 0 {
                &self.study.questions[..]
            } else {
                &self.study.questions[..1]
            };
            for q in questions {
                let mut m = self.study.opening(person);
                m.push(Message::user(q.prompt()));
                // Unchecked: a prompt too long fails its respondent later, not the run.
                prompts.push(self.render(&m)?);
            }
        }
        Ok(common_prefix(&prompts))
    }

    /// Generated tokens as answer text, special tokens dropped, trimmed.
    fn text(&self, tokens: &[u32]) -> Result<String> {
        let text = self
            .model
            .tokenizer
            .decode(tokens, true)
            .map_err(|e| Error::Tokenize(e.to_string()))?;
        Ok(text.trim().to_string())
    }

    /// A prompt's token ids; a prompt the model's context cannot hold fails its respondent.
    fn ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let ids = self.render(messages)?;
        let context = self.model.llama.cfg.max_position_embeddings;
        if ids.len() >= context {
            return Err(Error::Output(format!(
                "a prompt of {} tokens does not fit the model's context of {context} tokens",
                ids.len()
            )));
        }
        Ok(ids)
    }

    fn render(&self, messages: &[Message]) -> Result<Vec<u32>> {
        Ok(render_ids(self.model, &self.template, messages, true)?)
    }

    /// The opening messages, with the persona's own reply generated (greedily, so it is the
    /// same for every sample) where the study gives none.
    fn opening(&self, person: &Person) -> Result<Vec<Message>> {
        let mut messages = self.study.opening(person);
        let needs_reply = self.study.persona.placement == Placement::User
            && messages.last().is_some_and(|m| m.role == "user");
        if needs_reply {
            let ids = self.ids(&messages)?;
            let g = generate(
                &self.model.llama,
                &ids,
                &SamplingParams::greedy(128),
                &self.model.tokenizer.stop_ids(),
                0,
                &mut |_| true,
            )?;
            messages.push(Message::assistant(self.text(&g.tokens)?));
        }
        Ok(messages)
    }

    fn rng(&self, person: &Person, sample: usize, question: usize) -> ChaCha20Rng {
        row_rng(
            self.study.sample_seed(person.id, sample),
            &[question as u64],
        )
    }

    /// Respondents answered together: in separate mode without history every respondent's
    /// questions are independent prompts, so a group fills one batch of about [`PROMPT_ROWS`]
    /// prompts. The grouping is fixed by the study alone, never by `--batch`: attention sums
    /// over a row's gaps, whose lengths depend on its batch neighbours, and results must not.
    fn group_size(&self) -> usize {
        match self.study.ask {
            AskMode::Separate {
                keep_history: false,
            } => (PROMPT_ROWS / self.study.questions.len().max(1)).max(1),
            _ => 1,
        }
    }

    /// Each respondent of `people` answered, or failed. A group that fails is run again one
    /// respondent at a time, so that a failure is only its own respondent's.
    fn entry(&self, people: &[Person]) -> Vec<Entry> {
        match self.respondents(people) {
            Ok(all) => all.into_iter().map(|(r, d)| Entry::Done(r, d)).collect(),
            Err(e) if people.len() == 1 => {
                let why = e.to_string();
                vec![Entry::Failed(why.lines().next().unwrap_or("").to_string())]
            }
            Err(_) => people
                .iter()
                .flat_map(|p| self.entry(std::slice::from_ref(p)))
                .collect(),
        }
    }

    fn respondents(&self, people: &[Person]) -> Result<Vec<(Vec<Record>, Vec<Distribution>)>> {
        let openings = people
            .iter()
            .map(|p| self.opening(p))
            .collect::<Result<Vec<_>>>()?;
        match &self.study.ask {
            AskMode::Together { .. } => people
                .iter()
                .zip(openings)
                .map(|(p, o)| self.together(p, o))
                .collect(),
            AskMode::Separate {
                keep_history: false,
            } => self.separate(people, openings),
            AskMode::Separate { keep_history: true } => people
                .iter()
                .zip(openings)
                .map(|(p, o)| self.with_history(p, o))
                .collect(),
        }
    }

    fn exact(&self) -> bool {
        self.study.sampling.mode == Mode::Exact
    }

    /// Each question after the opening alone, for a group of respondents at once. What all
    /// prompts share (the system prompt, at least) is computed once; every (respondent,
    /// question) prompt then extends it as one row of a single batch, rows whose suffix is
    /// shorter carrying a gap so that all end together. Closed questions are then scored from
    /// those logits (exact) or sampled under their constraint, the samples of every row decoding
    /// together in batches of `batch` rows.
    fn separate(
        &self,
        people: &[Person],
        openings: Vec<Vec<Message>>,
    ) -> Result<Vec<(Vec<Record>, Vec<Distribution>)>> {
        let llama = &self.model.llama;
        let questions = &self.study.questions;
        let mut prompts = Vec::with_capacity(people.len() * questions.len());
        for opening in &openings {
            for q in questions {
                let mut m = opening.clone();
                m.push(Message::user(q.prompt()));
                prompts.push(self.ids(&m)?);
            }
        }
        let shared = common_prefix(&prompts).min(self.split);
        let mut base = llama.new_cache(1, shared)?;
        if shared > 0 {
            prefill(llama, &mut base, &prompts[0][..shared]).map_err(engine)?;
        }
        let nq = questions.len();
        // Second level: each respondent's own prefix (persona, opening), once for all of its
        // questions, the respondents of the group side by side.
        let own: Vec<usize> = (0..people.len())
            .map(|pi| common_prefix(&prompts[pi * nq..(pi + 1) * nq]).max(shared))
            .collect();
        let mut persons = base.repeat_rows(people.len(), 64)?;
        let heads: Vec<&[u32]> = (0..people.len())
            .map(|pi| &prompts[pi * nq][shared..own[pi]])
            .collect();
        extend_rows(llama, &mut persons, &heads)?;

        let mut out: Vec<(Vec<Record>, Vec<Distribution>)> = vec![Default::default(); people.len()];
        // Then every (respondent, question) row from its respondent's prefix; rows of similar
        // length go together, so little of a batch is filler.
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&r| prompts[r].len() - own[r / nq]);
        for chunk in order.chunks(PROMPT_ROWS) {
            let who_rows: Vec<usize> = chunk.iter().map(|&r| r / nq).collect();
            let mut cache = persons.rows(&who_rows)?;
            let suffixes: Vec<&[u32]> = chunk.iter().map(|&r| &prompts[r][own[r / nq]..]).collect();
            let logits = extend_rows(llama, &mut cache, &suffixes)?;
            // Sampled answers, as (local row, sample) jobs decoded together below.
            let mut closed_jobs = Vec::new();
            let mut number_jobs = Vec::new();
            let mut open_jobs = Vec::new();
            for (local, &row) in chunk.iter().enumerate() {
                let (pi, qi) = (row / nq, row % nq);
                let (person, q) = (&people[pi], &questions[qi]);
                let samples = 1..=self.study.sampling.samples;
                match (&self.formats[qi], self.exact()) {
                    (Format::Options(format), true) => {
                        let options = &format.exact;
                        let d = match score_single(&logits[local], options) {
                            Some(d) => d,
                            None => {
                                score_after(llama, &cache.rows(&[local])?, &logits[local], options)?
                            }
                        };
                        let (records, dists) = &mut out[pi];
                        let probs = binned(q, probabilities(&d));
                        self.exact_answer(person, qi, q, probs, records, dists);
                    }
                    (Format::Number(n), true) => {
                        let row = cache.rows(&[local])?;
                        let probs = number_probs(llama, &row, &logits[local], &n.digits, &n.bins)?;
                        let (records, dists) = &mut out[pi];
                        self.exact_answer(person, qi, q, probs, records, dists);
                    }
                    (Format::Options(_), false) => closed_jobs.extend(samples.map(|s| (local, s))),
                    (Format::Number(_), false) => number_jobs.extend(samples.map(|s| (local, s))),
                    (Format::Open, _) => open_jobs.extend(samples.map(|s| (local, s))),
                }
            }
            let who = |local: usize| (chunk[local] / nq, chunk[local] % nq);
            let options = |qi: usize| match &self.formats[qi] {
                Format::Options(o) => o,
                _ => unreachable!("a job of listed options"),
            };
            // One-token answers are a single draw from the prompt's logits: no fork, no pass.
            closed_jobs.retain(|&(local, s)| {
                let (pi, qi) = who(local);
                let format = options(qi);
                let mut rng = self.rng(&people[pi], s, qi);
                let Some(pick) = format.draw_token(&logits[local], &self.params, &mut rng) else {
                    return true;
                };
                let answer = format.options[pick].clone();
                out[pi]
                    .0
                    .push(record(&people[pi], s, &questions[qi], answer, None));
                false
            });
            // Options of several tokens: every sample of a prompt is a draw from its scored
            // options (see `draw_option`), scored once.
            let mut scored: Option<(usize, crate::engine::score::Distribution)> = None;
            for &(local, s) in &closed_jobs {
                let (pi, qi) = who(local);
                let format = options(qi);
                if scored.as_ref().is_none_or(|(l, _)| *l != local) {
                    let d =
                        score_after(llama, &cache.rows(&[local])?, &logits[local], &format.exact)?;
                    scored = Some((local, d));
                }
                let d = &scored.as_ref().expect("scored").1;
                let pick = draw_option(d, &self.params, &mut self.rng(&people[pi], s, qi));
                let answer = format.options[pick].clone();
                out[pi]
                    .0
                    .push(record(&people[pi], s, &questions[qi], answer, None));
            }
            // Wide numbers: decoded digit by digit under their constraint, in batches.
            for jobs in number_jobs.chunks(self.batch) {
                let idx: Vec<usize> = jobs.iter().map(|&(local, _)| local).collect();
                let patterns: Vec<&Compiled> = jobs
                    .iter()
                    .map(|&(local, _)| match &self.formats[who(local).1] {
                        Format::Number(n) => &n.compiled,
                        _ => unreachable!("a job of a number question"),
                    })
                    .collect();
                let rngs = jobs
                    .iter()
                    .map(|&(local, s)| self.rng(&people[who(local).0], s, who(local).1))
                    .collect();
                let starts = idx.iter().map(|&l| logits[l].clone()).collect();
                let mut forked = cache.rows(&idx)?;
                let answers =
                    decode_constrained(llama, &mut forked, starts, &self.params, &patterns, rngs)?;
                for (&(local, s), a) in jobs.iter().zip(&answers) {
                    let (pi, qi) = who(local);
                    out[pi].0.push(record(
                        &people[pi],
                        s,
                        &questions[qi],
                        pick_text(&questions[qi], a.choices[0]),
                        None,
                    ));
                }
            }
            for jobs in open_jobs.chunks(self.batch) {
                let idx: Vec<usize> = jobs.iter().map(|&(local, _)| local).collect();
                let max_tokens = jobs
                    .iter()
                    .map(|&(local, _)| text_tokens(&questions[who(local).1]))
                    .max()
                    .unwrap_or(128);
                let mut forked = cache.rows(&idx)?;
                let rngs = jobs
                    .iter()
                    .map(|&(local, s)| self.rng(&people[who(local).0], s, who(local).1))
                    .collect();
                let starts = idx.iter().map(|&l| logits[l].clone()).collect();
                let params = SamplingParams {
                    max_tokens,
                    ..self.params.clone()
                };
                let gens = decode_rows(
                    llama,
                    &mut forked,
                    starts,
                    &params,
                    &self.model.tokenizer.stop_ids(),
                    rngs,
                )?;
                for (&(local, s), g) in jobs.iter().zip(&gens) {
                    let (pi, qi) = who(local);
                    // Rows of one batch share the largest limit; each keeps to its own.
                    let limit = text_tokens(&questions[qi]).min(g.tokens.len());
                    let text = self.text(&g.tokens[..limit])?;
                    out[pi]
                        .0
                        .push(record(&people[pi], s, &questions[qi], text, None));
                }
            }
        }
        // The order of the per-respondent path: by question, then sample.
        for (records, _) in &mut out {
            records.sort_by_key(|r| {
                (
                    questions.iter().position(|q| q.id == r.question_id),
                    r.sample,
                )
            });
        }
        Ok(out)
    }

    /// Records an exact distribution, and `samples` draws from it when more than one is asked.
    fn exact_answer(
        &self,
        person: &Person,
        qi: usize,
        q: &Question,
        probs: Vec<(String, f64)>,
        records: &mut Vec<Record>,
        dists: &mut Vec<Distribution>,
    ) {
        let samples = self.study.sampling.samples;
        if samples > 1 {
            // Answers are drawn among the bins; what a number's walk left unresolved is not one.
            let resolved: f64 = probs
                .iter()
                .filter(|(o, _)| o != UNRESOLVED)
                .map(|(_, p)| p)
                .sum();
            let drawable: Vec<(String, f64)> = match probs.last() {
                Some((o, _)) if o == UNRESOLVED && resolved > 0.0 => probs[..probs.len() - 1]
                    .iter()
                    .map(|(o, p)| (o.clone(), p / resolved))
                    .collect(),
                _ => probs.clone(),
            };
            for s in 1..=samples {
                let (answer, p) = draw(&drawable, &mut self.rng(person, s, qi));
                records.push(record(person, s, q, answer, Some(p)));
            }
        }
        dists.push(Distribution {
            respondent: person.id,
            question_id: q.id.clone(),
            options: probs,
        });
    }

    /// Answers question `qi` in exact mode from a one-row cache holding its prompt: a closed
    /// question is scored, free text sampled (`samples` times). Returns the answer the
    /// conversation goes on with for a closed question: the most likely option, or a number's
    /// greedy answer.
    #[allow(clippy::too_many_arguments)]
    fn answer_exact(
        &self,
        person: &Person,
        qi: usize,
        q: &Question,
        cache: &Cache,
        logits: Vec<f32>,
        records: &mut Vec<Record>,
        dists: &mut Vec<Distribution>,
    ) -> Result<Option<String>> {
        let llama = &self.model.llama;
        match &self.formats[qi] {
            Format::Options(format) => {
                // Options follow the assistant turn's opening directly: nothing to join them to.
                let d = score_after(llama, cache, &logits, &format.exact)?;
                let probs = probabilities(&d);
                let best = probs
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|o| o.0.clone());
                self.exact_answer(person, qi, q, binned(q, probs), records, dists);
                Ok(best)
            }
            Format::Number(n) => {
                let probs = number_probs(llama, cache, &logits, &n.digits, &n.bins)?;
                self.exact_answer(person, qi, q, probs, records, dists);
                let (value, _) = greedy(llama, &mut cache.rows(&[0])?, logits, &n.digits)?;
                Ok(Some(value.to_string()))
            }
            Format::Open => {
                for s in 1..=self.study.sampling.samples {
                    self.answer_one(person, s, qi, q, cache, logits.clone(), records)?;
                }
                Ok(None)
            }
        }
    }

    /// All questions in one turn, answered as one JSON object.
    fn together(
        &self,
        person: &Person,
        mut messages: Vec<Message>,
    ) -> Result<(Vec<Record>, Vec<Distribution>)> {
        let (compiled, pattern) = self.together.as_ref().expect("together mode");
        let prompt = self.study.together_prompt().unwrap_or_default();
        messages.push(Message::user(prompt));
        let ids = self.ids(&messages)?;
        let llama = &self.model.llama;
        let mut base = llama.new_cache(1, ids.len() + 128)?;
        let logits = prefill(llama, &mut base, &ids).map_err(engine)?;
        let questions = &self.study.questions;
        let samples = self.study.sampling.samples;
        let mut records = Vec::new();
        let mut dists = Vec::new();
        if self.exact() {
            // Walk the object: literals are fed, each slot is scored and then filled with its
            // most likely option.
            let mut logits = logits;
            let mut before = String::new();
            let mut slot = 0;
            for (p, piece) in pattern.pieces.iter().enumerate() {
                match piece {
                    Piece::Literal(text) => {
                        let lit = self
                            .model
                            .tokenizer
                            .encode(text, false)
                            .map_err(|e| Error::Tokenize(e.to_string()))?;
                        logits = prefill(llama, &mut base, &lit).map_err(engine)?;
                        before = text.clone();
                    }
                    Piece::Choice(options) => {
                        let mut toks = tokenize_options(&self.model.tokenizer, &before, options)?;
                        // "1" vs "10": the literal after the slot tells them apart.
                        if let Some(Piece::Literal(next)) = pattern.pieces.get(p + 1) {
                            let first = self
                                .model
                                .tokenizer
                                .encode(next, false)
                                .map_err(|e| Error::Tokenize(e.to_string()))?;
                            terminate_ambiguous(&mut toks, &first[..first.len().min(1)]);
                        }
                        let d = score_after(llama, &base, &logits, &toks)?;
                        let q = &questions[slot];
                        let codes = q.options().unwrap_or_default();
                        let probs: Vec<(String, f64)> = codes
                            .iter()
                            .zip(&d.options)
                            .map(|(c, o)| (c.clone(), o.probability))
                            .collect();
                        let best = (0..probs.len())
                            .max_by(|&a, &b| probs[a].1.total_cmp(&probs[b].1))
                            .unwrap_or(0);
                        let probs = binned(q, probs);
                        self.exact_answer(person, slot, q, probs, &mut records, &mut dists);
                        logits = prefill(llama, &mut base, &toks[best].ids).map_err(engine)?;
                        before.clear();
                        slot += 1;
                    }
                    Piece::Number { min, max } => {
                        // Ended by the first token of the literal after it, as when sampled.
                        let ends = match pattern.pieces.get(p + 1) {
                            Some(Piece::Literal(next)) => self
                                .model
                                .tokenizer
                                .encode(next, false)
                                .map_err(|e| Error::Tokenize(e.to_string()))?
                                .into_iter()
                                .take(1)
                                .collect(),
                            _ => self.model.tokenizer.stop_ids(),
                        };
                        let digits = Digits::new(*min, *max, &self.model.tokenizer, ends)?;
                        let q = &questions[slot];
                        let bins = match &q.kind {
                            QuestionKind::Number { bins, .. } => number_bins(*min, *max, bins),
                            _ => unreachable!("a number slot is a number question"),
                        };
                        let probs = number_probs(llama, &base, &logits, &digits, &bins)?;
                        self.exact_answer(person, slot, q, probs, &mut records, &mut dists);
                        (_, logits) = greedy(llama, &mut base, logits, &digits)?;
                        before.clear();
                        slot += 1;
                    }
                }
            }
            return Ok((records, dists));
        }
        for (start, rows) in chunks(samples, self.batch) {
            let mut forked = base.repeat_rows(rows, 256)?;
            let rngs = (0..rows)
                .map(|i| self.rng(person, start + i + 1, 0))
                .collect();
            let out = decode_constrained(
                llama,
                &mut forked,
                vec![logits.clone(); rows],
                &self.params,
                &vec![compiled; rows],
                rngs,
            )?;
            for (i, a) in out.iter().enumerate() {
                for (q, &choice) in questions.iter().zip(&a.choices) {
                    let answer = pick_text(q, choice);
                    records.push(record(person, start + i + 1, q, answer, None));
                }
            }
        }
        Ok((records, dists))
    }

    /// Questions one after another, each answer kept in the conversation. Sampled: each sample
    /// is its own conversation. Exact: one conversation whose answers are the most likely ones.
    fn with_history(
        &self,
        person: &Person,
        opening: Vec<Message>,
    ) -> Result<(Vec<Record>, Vec<Distribution>)> {
        let llama = &self.model.llama;
        let runs = if self.exact() {
            1
        } else {
            self.study.sampling.samples
        };
        let mut records = Vec::new();
        let mut dists = Vec::new();
        for s in 1..=runs {
            let mut messages = opening.clone();
            let mut cache = llama.new_cache(1, 512)?;
            let mut cached: Vec<u32> = Vec::new();
            for (qi, q) in self.study.questions.iter().enumerate() {
                messages.push(Message::user(q.prompt()));
                let ids = self.ids(&messages)?;
                let keep = common_prefix(&[cached.clone(), ids.clone()]).min(ids.len() - 1);
                cache.truncate(keep)?;
                let logits = prefill(llama, &mut cache, &ids[keep..]).map_err(engine)?;
                cached = ids;
                let before_records = records.len();
                let closed = if self.exact() {
                    self.answer_exact(person, qi, q, &cache, logits, &mut records, &mut dists)?
                } else {
                    self.answer_one(person, s, qi, q, &cache, logits, &mut records)?;
                    None
                };
                let text = closed.unwrap_or_else(|| {
                    records
                        .get(before_records)
                        .map(|r| r.answer.clone())
                        .unwrap_or_default()
                });
                messages.push(Message::assistant(text));
            }
        }
        Ok((records, dists))
    }

    /// One sampled answer (sample `s`) from a one-row cache.
    #[allow(clippy::too_many_arguments)]
    fn answer_one(
        &self,
        person: &Person,
        s: usize,
        qi: usize,
        q: &Question,
        cache: &Cache,
        logits: Vec<f32>,
        records: &mut Vec<Record>,
    ) -> Result<()> {
        let mut rng = self.rng(person, s, qi);
        let answer = match &self.formats[qi] {
            Format::Options(format) => {
                let pick = match format.draw_token(&logits, &self.params, &mut rng) {
                    Some(pick) => pick,
                    None => {
                        let d = score_after(&self.model.llama, cache, &logits, &format.exact)?;
                        draw_option(&d, &self.params, &mut rng)
                    }
                };
                format.options[pick].clone()
            }
            Format::Number(n) => {
                let mut forked = cache.repeat_rows(1, 32)?;
                let out = decode_constrained(
                    &self.model.llama,
                    &mut forked,
                    vec![logits],
                    &self.params,
                    &[&n.compiled],
                    vec![rng],
                )?;
                pick_text(q, out[0].choices[0])
            }
            Format::Open => {
                let mut forked = cache.repeat_rows(1, 256)?;
                let max_tokens = text_tokens(q);
                let params = SamplingParams {
                    max_tokens,
                    ..self.params.clone()
                };
                let out = decode_rows(
                    &self.model.llama,
                    &mut forked,
                    vec![logits],
                    &params,
                    &self.model.tokenizer.stop_ids(),
                    vec![rng],
                )?;
                self.text(&out[0].tokens)?
            }
        };
        records.push(record(person, s, q, answer, None));
        Ok(())
    }
}

/// Extends each row of `cache` by its suffix, as one batch: rows whose suffix is shorter get a
/// gap first, so that every row ends at the last position. Returns each row's next-token
/// logits.
fn extend_rows(
    llama: &crate::model::Llama,
    cache: &mut Cache,
    suffixes: &[&[u32]],
) -> Result<Vec<Vec<f32>>> {
    let longest = suffixes.iter().map(|s| s.len()).max().unwrap_or(0);
    if longest == 0 {
        return Ok(Vec::new());
    }
    let gaps: Vec<usize> = suffixes.iter().map(|s| longest - s.len()).collect();
    cache.open_gaps(&gaps)?;
    let rows: Vec<Vec<u32>> = suffixes
        .iter()
        .zip(&gaps)
        .map(|(s, &g)| {
            let mut row = vec![s.first().copied().unwrap_or(0); g];
            row.extend_from_slice(s);
            row
        })
        .collect();
    Ok(llama
        .forward(&rows, cache, LogitsAt::Last)?
        .to_vec2::<f32>()?)
}

/// The answer a constrained pick stands for.
fn pick_text(q: &Question, pick: Pick) -> String {
    match pick {
        Pick::Option(i) => q.options().unwrap_or_default()[i].clone(),
        Pick::Number(v) => v.to_string(),
    }
}

/// (option, renormalized probability) pairs of a scored question.
fn probabilities(d: &crate::engine::score::Distribution) -> Vec<(String, f64)> {
    d.options
        .iter()
        .map(|o| (o.option.clone(), o.probability))
        .collect()
}

/// Tokens a free-text question may take.
fn text_tokens(q: &Question) -> usize {
    match q.kind {
        QuestionKind::Text { max_tokens } => max_tokens,
        _ => 128,
    }
}

fn record(person: &Person, sample: usize, q: &Question, answer: String, p: Option<f64>) -> Record {
    Record {
        respondent: person.id,
        sample,
        question_id: q.id.clone(),
        answer,
        probability: p,
    }
}

/// Draws an option from a distribution.
fn draw(probs: &[(String, f64)], rng: &mut impl Rng) -> (String, f64) {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (o, p) in probs {
        acc += p;
        if u < acc {
            return (o.clone(), *p);
        }
    }
    probs
        .last()
        .map(|(o, p)| (o.clone(), *p))
        .unwrap_or_default()
}

/// `(first sample index, rows)` batches covering `n` samples.
fn chunks(n: usize, batch: usize) -> Vec<(usize, usize)> {
    (0..n)
        .step_by(batch)
        .map(|start| (start, batch.min(n - start)))
        .collect()
}

/// Length of the longest prefix all sequences share.
fn common_prefix(seqs: &[Vec<u32>]) -> usize {
    let Some(first) = seqs.first() else {
        return 0;
    };
    let mut n = first.len();
    for s in &seqs[1..] {
        n = n.min(first.iter().zip(s).take_while(|(a, b)| a == b).count());
    }
    // At least one token of every prompt must remain to produce its logits.
    n.min(
        seqs.iter()
            .map(|s| s.len())
            .min()
            .unwrap_or(0)
            .saturating_sub(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_leaves_a_token() {
        assert_eq!(common_prefix(&[vec![1, 2, 3], vec![1, 2, 4]]), 2);
        assert_eq!(common_prefix(&[vec![1, 2, 3]]), 2);
        assert_eq!(common_prefix(&[vec![1, 2], vec![1, 2, 3]]), 1);
    }

    #[test]
    fn chunks_cover_everything() {
        assert_eq!(chunks(5, 2), vec![(0, 2), (2, 2), (4, 1)]);
        assert_eq!(chunks(0, 2), vec![]);
    }

    #[test]
    fn draws_follow_probabilities() {
        let probs = vec![("a".to_string(), 0.2), ("b".to_string(), 0.8)];
        let mut rng = row_rng(1, &[2]);
        let n = 10_000;
        let a = (0..n).filter(|_| draw(&probs, &mut rng).0 == "a").count();
        assert!((a as f64 / n as f64 - 0.2).abs() < 0.02);
    }
}
