//! Separate mode without history: every (respondent, question) prompt is independent, so a
//! group of respondents goes through the model as one batch of prompts sharing their prefixes.

use crate::chat::Message;
use crate::engine::constrain::{decode_constrained, Compiled};
use crate::engine::generate::{decode_rows, prefill};
use crate::engine::score::{draw_option, score_after, score_single};
use crate::engine::SamplingParams;
use crate::report::{Distribution, Record};
use crate::study::Person;
use crate::Result;

use super::asker::*;
use super::format::*;

impl Asker<'_> {
    /// Each question after the opening alone, for a group of respondents at once. What all
    /// prompts share (the system prompt, at least) is computed once; every (respondent,
    /// question) prompt then extends it as one row of a single batch, rows whose suffix is
    /// shorter carrying a gap so that all end together. Closed questions are then scored from
    /// those logits (exact) or sampled under their constraint, the samples of every row decoding
    /// together in batches of `batch` rows.
    pub(super) fn separate(
        &self,
        people: &[Person],
        openings: Vec<Vec<Message>>,
    ) -> Result<Vec<(Vec<Record>, Vec<Distribution>)>> {
        let llama = &self.model.llama;
        let questions = &self.study.questions;
        // A prompt per (respondent, slot): a slot is a question, or one of the orders of a
        // question asked in all of them.
        let slots = self.study.question_slots();
        let mut prompts = Vec::with_capacity(people.len() * slots.len());
        for (person, opening) in people.iter().zip(&openings) {
            for (qi, shown) in &slots {
                let mut m = opening.clone();
                let prompt = match shown {
                    Some(shown) => questions[*qi].prompt_shown(shown),
                    None => self.study.question_prompt(person, *qi),
                };
                m.push(Message::user(prompt));
                prompts.push(self.ids(&m)?);
            }
        }
        // Per (respondent, question) asked in all orders: the summed probabilities so far.
        let orders = |qi: usize| slots.iter().filter(|(q, _)| *q == qi).count();
        let mut summed: std::collections::HashMap<(usize, usize), (Scored, usize)> =
            Default::default();
        let shared = common_prefix(&prompts).min(self.split);
        let mut base = llama.new_cache(1, shared)?;
        if shared > 0 {
            prefill(llama, &mut base, &prompts[0][..shared]).map_err(engine)?;
        }
        let nq = slots.len();
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
        for chunk in length_chunks(&order, |r| prompts[r].len() - own[r / nq]) {
            let who_rows: Vec<usize> = chunk.iter().map(|&r| r / nq).collect();
            let mut cache = persons.rows(&who_rows)?;
            let suffixes: Vec<&[u32]> = chunk.iter().map(|&r| &prompts[r][own[r / nq]..]).collect();
            let logits = extend_rows(llama, &mut cache, &suffixes)?;
            // Sampled answers, as (local row, sample) jobs decoded together below.
            let mut closed_jobs = Vec::new();
            let mut number_jobs = Vec::new();
            let mut open_jobs = Vec::new();
            for (local, &row) in chunk.iter().enumerate() {
                let (pi, qi) = (row / nq, slots[row % nq].0);
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
                        let n = orders(qi);
                        if n == 1 {
                            self.exact_answer(person, qi, q, probs, records, dists);
                        } else if let Some(mean) = add_order(&mut summed, (pi, qi), probs, n) {
                            self.exact_answer(person, qi, q, mean, records, dists);
                        }
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
            let who = |local: usize| (chunk[local] / nq, slots[chunk[local] % nq].0);
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
}

/// Adds one order's probabilities to the sum for `key`; once all `n` orders are in, their mean.
fn add_order(
    summed: &mut std::collections::HashMap<(usize, usize), (Scored, usize)>,
    key: (usize, usize),
    scored: Scored,
    n: usize,
) -> Option<Scored> {
    let (sum, count) = summed.entry(key).or_insert_with(|| {
        let zero = scored.probs.iter().map(|(o, _)| (o.clone(), 0.0)).collect();
        (
            Scored {
                probs: zero,
                outside: 0.0,
            },
            0,
        )
    });
    for (total, (_, p)) in sum.probs.iter_mut().zip(&scored.probs) {
        total.1 += p;
    }
    sum.outside += scored.outside;
    *count += 1;
    if *count < n {
        return None;
    }
    let (sum, _) = summed.remove(&key).expect("just summed");
    Some(Scored {
        probs: sum
            .probs
            .into_iter()
            .map(|(o, p)| (o, p / n as f64))
            .collect(),
        outside: sum.outside / n as f64,
    })
}
