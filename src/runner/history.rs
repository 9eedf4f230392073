//! Separate mode with history, and the one-question answers it is built from: each answer stays
//! in the conversation before the next question.

use crate::chat::Message;
use crate::engine::constrain::decode_constrained;
use crate::engine::generate::{decode_rows, prefill};
use crate::engine::number::greedy;
use crate::engine::score::{draw_option, score_after};
use crate::engine::SamplingParams;
use crate::model::Cache;
use crate::report::{Distribution, Record};
use crate::study::{Person, Question};
use crate::Result;

use super::asker::*;
use super::format::*;

impl Asker<'_> {
    /// Answers question `qi` in exact mode from a one-row cache holding its prompt: a closed
    /// question is scored, free text sampled (`samples` times). Returns the answer the
    /// conversation goes on with for a closed question: the most likely option, or a number's
    /// greedy answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer_exact(
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
                let scored = probabilities(&d);
                let best = scored
                    .probs
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|o| o.0.clone());
                self.exact_answer(person, qi, q, binned(q, scored), records, dists);
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

    /// Questions one after another, each answer kept in the conversation. Sampled: each sample
    /// is its own conversation. Exact: one conversation whose answers are the most likely ones.
    pub(super) fn with_history(
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
                messages.push(Message::user(self.study.question_prompt(person, qi)));
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
    pub(super) fn answer_one(
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
