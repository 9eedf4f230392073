//! Together mode: all questions in one turn, answered as one JSON object under its constraint.

use crate::chat::Message;
use crate::engine::constrain::{decode_constrained, Piece};
use crate::engine::generate::prefill;
use crate::engine::number::{greedy, Digits};
use crate::engine::score::{score_after, terminate_ambiguous, tokenize_options};
use crate::report::{Distribution, Record};
use crate::study::{Person, QuestionKind};
use crate::{Error, Result};

use super::asker::*;
use super::format::*;

impl Asker<'_> {
    /// All questions in one turn, answered as one JSON object.
    pub(super) fn together(
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
                            .map_err(Error::Tokenize)?;
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
                                .map_err(Error::Tokenize)?;
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
                        let scored = binned(
                            q,
                            Scored {
                                probs,
                                outside: d.outside,
                            },
                        );
                        self.exact_answer(person, slot, q, scored, &mut records, &mut dists);
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
                                .map_err(Error::Tokenize)?
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
}
