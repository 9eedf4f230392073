//! What every ask strategy shares: the run's fixed state (model, template, sampling, answer
//! formats), prompts, seeds, grouping of respondents, and small helpers.

use rand::Rng;
use rand_chacha::ChaCha20Rng;

use crate::chat::{ChatTemplate, Message};
use crate::engine::constrain::{Compiled, Pattern, Pick};
use crate::engine::generate::generate;
use crate::engine::sampling::row_rng;
use crate::engine::session::{model_template, render_ids};
use crate::engine::{EngineError, SamplingParams};
use crate::model::{Cache, LogitsAt, Model};
use crate::report::{Distribution, Record};
use crate::study::{AskMode, Mode, Person, Placement, Question, QuestionKind, Study};
use crate::{Error, Result};

use super::format::*;
use super::journal::Entry;

/// Prompts computed together in one batch when a study's questions are independent.
pub(super) const PROMPT_ROWS: usize = 32;

/// Everything fixed for the run: model, template, sampling parameters, compiled formats.
pub(super) struct Asker<'a> {
    pub(super) study: &'a Study,
    pub(super) model: &'a Model,
    pub(super) template: ChatTemplate,
    pub(super) params: SamplingParams,
    pub(super) batch: usize,
    /// Per question.
    pub(super) formats: Vec<Format>,
    /// The JSON object pattern (together mode) and the options of each of its slots.
    pub(super) together: Option<(Compiled, Pattern)>,
    /// Tokens every prompt of the run starts with. Batched prompts are computed as this prefix
    /// plus the rest, whichever respondents share a batch, so no result depends on the grouping.
    pub(super) split: usize,
}

pub(super) fn engine(e: EngineError) -> Error {
    Error::Inference(e)
}
impl<'a> Asker<'a> {
    pub(super) fn new(
        study: &'a Study,
        model: &'a Model,
        batch: usize,
        people: &[Person],
    ) -> Result<Self> {
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
        let Answers { formats, together } = Answers::new(study, &model.tokenizer)?;
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
    pub(super) fn study_prefix(&self, people: &[Person]) -> Result<usize> {
        let mut prompts = Vec::new();
        for (i, person) in people.iter().enumerate() {
            let questions = if i == 0 {
                &self.study.questions[..]
            } else {
                &self.study.questions[..1]
            };
            for qi in 0..questions.len() {
                let mut m = self.study.opening(person);
                m.push(Message::user(self.study.question_prompt(person, qi)));
                // Unchecked: a prompt too long fails its respondent later, not the run.
                prompts.push(self.render(&m)?);
            }
        }
        Ok(common_prefix(&prompts))
    }

    /// Generated tokens as answer text, special tokens dropped, trimmed.
    pub(super) fn text(&self, tokens: &[u32]) -> Result<String> {
        let text = self
            .model
            .tokenizer
            .decode(tokens, true)
            .map_err(Error::Tokenize)?;
        Ok(text.trim().to_string())
    }

    /// A prompt's token ids; a prompt the model's context cannot hold fails its respondent.
    pub(super) fn ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let ids = self.render(messages)?;
        let context = self.model.llama.cfg.max_position_embeddings;
        if ids.len() >= context {
            let message = format!(
                "a prompt of {} tokens does not fit the model's context of {context} tokens",
                ids.len()
            );
            let hint = "shorten the persona or the question, or use a model with a longer context";
            return Err(crate::diagnostics::Hinted::new(message, hint).into());
        }
        Ok(ids)
    }

    pub(super) fn render(&self, messages: &[Message]) -> Result<Vec<u32>> {
        Ok(render_ids(self.model, &self.template, messages, true)?)
    }

    /// The opening messages, with the persona's own reply generated (greedily, so it is the
    /// same for every sample) where the study gives none.
    pub(super) fn opening(&self, person: &Person) -> Result<Vec<Message>> {
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

    pub(super) fn rng(&self, person: &Person, sample: usize, question: usize) -> ChaCha20Rng {
        row_rng(
            self.study.sample_seed(person.id, sample),
            &[question as u64],
        )
    }

    /// Respondents answered together: in separate mode without history every respondent's
    /// questions are independent prompts, so a group fills one batch of about [`PROMPT_ROWS`]
    /// prompts. The grouping is fixed by the study alone, never by `--batch`: attention sums
    /// over a row's gaps, whose lengths depend on its batch neighbours, and results must not.
    pub(super) fn group_size(&self) -> usize {
        match self.study.ask {
            AskMode::Separate {
                keep_history: false,
            } => (PROMPT_ROWS / self.study.question_slots().len().max(1)).max(1),
            _ => 1,
        }
    }

    /// Each respondent of `people` answered, or failed. A group that fails is run again one
    /// respondent at a time, so that a failure is only its own respondent's.
    pub(super) fn entry(&self, people: &[Person]) -> Vec<Entry> {
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

    pub(super) fn respondents(
        &self,
        people: &[Person],
    ) -> Result<Vec<(Vec<Record>, Vec<Distribution>)>> {
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

    pub(super) fn exact(&self) -> bool {
        self.study.sampling.mode == Mode::Exact
    }
    /// Records an exact distribution, and `samples` draws from it when more than one is asked.
    pub(super) fn exact_answer(
        &self,
        person: &Person,
        qi: usize,
        q: &Question,
        scored: Scored,
        records: &mut Vec<Record>,
        dists: &mut Vec<Distribution>,
    ) {
        let Scored { probs, outside } = scored;
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
            outside: Some(outside),
        });
    }
}

/// Extends each row of `cache` by its suffix, as one batch: rows whose suffix is shorter get a
/// gap first, so that every row ends at the last position. Returns each row's next-token
/// logits.
pub(super) fn extend_rows(
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
pub(super) fn pick_text(q: &Question, pick: Pick) -> String {
    match pick {
        Pick::Option(i) => q.options().unwrap_or_default()[i].clone(),
        Pick::Number(v) => v.to_string(),
    }
}

/// (option, renormalized probability) pairs of a scored question.
pub(super) fn probabilities(d: &crate::engine::score::Distribution) -> Scored {
    Scored {
        probs: d
            .options
            .iter()
            .map(|o| (o.option.clone(), o.probability))
            .collect(),
        outside: d.outside,
    }
}

/// Tokens a free-text question may take.
pub(super) fn text_tokens(q: &Question) -> usize {
    match q.kind {
        QuestionKind::Text { max_tokens } => max_tokens,
        _ => 128,
    }
}

pub(super) fn record(
    person: &Person,
    sample: usize,
    q: &Question,
    answer: String,
    p: Option<f64>,
) -> Record {
    Record {
        respondent: person.id,
        sample,
        question_id: q.id.clone(),
        answer,
        probability: p,
    }
}

/// Draws an option from a distribution.
pub(super) fn draw(probs: &[(String, f64)], rng: &mut impl Rng) -> (String, f64) {
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
pub(super) fn chunks(n: usize, batch: usize) -> Vec<(usize, usize)> {
    (0..n)
        .step_by(batch)
        .map(|start| (start, batch.min(n - start)))
        .collect()
}

/// Real tokens a batch of prompts holds before [`length_chunks`] may cut it for padding: enough
/// rows (prompts x tokens) for the projections to run at full speed.
const CHUNK_TOKENS: usize = 256;

/// `order` (rows sorted by `len`, shortest first) cut into batches of at most [`PROMPT_ROWS`]
/// rows that run as one forward pass, each padded to its longest row. A batch is also cut
/// where the next row would make its filler more than an eighth of its real tokens, once it
/// holds [`CHUNK_TOKENS`] of them: a survey's items differ in length, and padding 32 prompts
/// to the longest cost a third more tokens than the prompts hold.
pub(super) fn length_chunks(order: &[usize], len: impl Fn(usize) -> usize) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let (mut start, mut real) = (0, 0);
    for (i, &row) in order.iter().enumerate() {
        let (l, rows) = (len(row), i - start);
        let padded = (rows + 1) * l;
        if rows == PROMPT_ROWS || (real >= CHUNK_TOKENS && 8 * padded > 9 * (real + l)) {
            out.push(&order[start..i]);
            (start, real) = (i, 0);
        }
        real += l;
    }
    if start < order.len() {
        out.push(&order[start..]);
    }
    out
}

/// Length of the longest prefix all sequences share.
pub(super) fn common_prefix(seqs: &[Vec<u32>]) -> usize {
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
    fn length_chunks_cut_for_padding_and_rows() {
        // Four prompts each of lengths 40, 42, 45, 50, 55, 60, 70, 75 (a survey group).
        let lens: Vec<usize> = [40, 42, 45, 50, 55, 60, 70, 75]
            .iter()
            .flat_map(|&l| [l; 4])
            .collect();
        let order: Vec<usize> = (0..lens.len()).collect();
        let cuts: Vec<usize> = length_chunks(&order, |r| lens[r])
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(cuts, vec![12, 12, 8]);
        // Padding never above an eighth once a batch holds enough tokens; all rows kept.
        for c in length_chunks(&order, |r| lens[r]) {
            let real: usize = c.iter().map(|&r| lens[r]).sum();
            assert!(8 * c.len() * lens[*c.last().unwrap()] <= 9 * real);
        }
        // Equal lengths: only the row cap cuts.
        let flat: Vec<usize> = (0..70).collect();
        let sizes: Vec<usize> = length_chunks(&flat, |_| 10)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![PROMPT_ROWS, PROMPT_ROWS, 6]);
        assert!(length_chunks(&[], |_| 1).is_empty());
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
