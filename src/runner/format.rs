//! Answer formats: how each question's answer is constrained, scored and drawn, tokenized once
//! for the whole run.

use rand_chacha::ChaCha20Rng;

use crate::engine::constrain::{Compiled, Pattern, Piece};
use crate::engine::number::{number_distribution, Bins, Digits, WALK_BUDGET};
use crate::engine::sampling::sample;
use crate::engine::score::{reply_options, OptionTokens};
use crate::engine::SamplingParams;
use crate::model::{Cache, Llama};
use crate::study::{AskMode, Question, QuestionKind, Study};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Every question's answer format for one tokenizer, and in together mode the JSON object
/// that holds them all. Built from the tokenizer alone, so a study the model cannot answer
/// is refused before the weights load ([`super::check_answers`]).
pub(super) struct Answers {
    pub formats: Vec<Format>,
    pub together: Option<(Compiled, Pattern)>,
}

impl Answers {
    pub fn new(study: &Study, tokenizer: &Tokenizer) -> Result<Self> {
        let context = |what: String| {
            let path = study.path.clone();
            move |source: Error| Error::Answer {
                path,
                what,
                source: Box::new(source),
            }
        };
        let formats = study
            .questions
            .iter()
            .map(|q| Format::new(q, tokenizer).map_err(context(format!("question `{}`", q.id))))
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
                let compiled = Compiled::new(&pattern, tokenizer)
                    .map_err(|e| context("ask mode `together`".into())(Error::Inference(e)))?;
                Some((compiled, pattern))
            }
            AskMode::Separate { .. } => None,
        };
        Ok(Self { formats, together })
    }
}

pub(super) enum Format {
    /// Free text, sampled up to the question's token limit.
    Open,
    /// Listed answers: scale points, choice codes, yes/no, a number range of at most
    /// [`crate::study::MAX_LISTED_NUMBERS`] values.
    Options(Options),
    /// A number over a wider range, written digit by digit under [`Digits`].
    Number(Numbers),
}

/// Listed answers.
///
/// They are scored over their options ([`reply_options`]); a sampled answer is one token drawn
/// from the prompt's logits when every option is one token, otherwise a draw from the scored
/// options ([`crate::engine::score::draw_option`]), so samples follow the model's whole-answer
/// probabilities and match exact mode's distribution.
pub(super) struct Options {
    pub options: Vec<String>,
    /// The options as scored ([`reply_options`]).
    pub exact: Vec<OptionTokens>,
    /// See [`Compiled::single_token`].
    pub single_token: Option<(Vec<u32>, Vec<usize>)>,
}

/// A number question too wide to list. Sampled answers are decoded under the digit automaton;
/// exact mode computes the distribution of that constrained answer, per value or per bin
/// ([`crate::engine::number::number_distribution`]), so the two agree.
pub(super) struct Numbers {
    /// The number alone, ended by the end of the turn.
    pub compiled: Compiled,
    pub digits: Digits,
    pub bins: Bins,
}

impl Format {
    pub fn new(q: &Question, tokenizer: &Tokenizer) -> Result<Self> {
        if let Some(options) = q.options() {
            let compiled = Compiled::new(&Pattern::options(options.clone()), tokenizer)?;
            return Ok(Format::Options(Options {
                single_token: compiled.single_token(),
                exact: reply_options(tokenizer, &options)?,
                options,
            }));
        }
        match &q.kind {
            QuestionKind::Number { min, max, bins } => {
                let digits = Digits::new(*min, *max, tokenizer, tokenizer.stop_ids())?;
                Ok(Format::Number(Numbers {
                    compiled: Compiled::new(&Pattern::integer(*min, *max), tokenizer)?,
                    digits,
                    bins: number_bins(*min, *max, bins),
                }))
            }
            _ => Ok(Format::Open),
        }
    }

    /// The piece this question's answer is inside the together-mode JSON object.
    pub fn json_piece(&self) -> Piece {
        match self {
            Format::Options(o) => Piece::Choice(o.options.iter().map(|o| json_value(o)).collect()),
            Format::Number(n) => {
                let (min, max) = n.digits.range();
                Piece::Number { min, max }
            }
            Format::Open => Piece::Choice(Vec::new()),
        }
    }
}

impl Options {
    /// The option picked by one token drawn from the prompt's `logits`, when every option is one
    /// token (`None` otherwise: then the options are scored and drawn with `draw_option`).
    pub fn draw_token(
        &self,
        logits: &[f32],
        params: &SamplingParams,
        rng: &mut ChaCha20Rng,
    ) -> Option<usize> {
        let (allowed, picks) = self.single_token.as_ref()?;
        let t = sample(logits, params, &[], Some(allowed), rng);
        Some(allowed.iter().position(|&a| a == t).map_or(0, |i| picks[i]))
    }
}

/// The bins of an exact number distribution: the study's, or one per value.
pub(super) fn number_bins(min: i64, max: i64, bins: &[(i64, i64)]) -> Bins {
    if bins.is_empty() {
        Bins::each(min, max)
    } else {
        Bins::new(min, max, bins)
    }
}

/// A listed number's exact probabilities summed into the question's bins, when it names any;
/// other questions' are returned as they are.
pub(super) fn binned(q: &Question, scored: Scored) -> Scored {
    let QuestionKind::Number { min, max, bins } = &q.kind else {
        return scored;
    };
    if bins.is_empty() {
        return scored;
    }
    let Scored { probs, outside } = scored;
    let grouping = Bins::new(*min, *max, bins);
    let mut out: Vec<(String, f64)> = grouping.labels().into_iter().map(|l| (l, 0.0)).collect();
    for (value, p) in probs {
        let v: i64 = value.parse().unwrap_or(*min);
        let at = grouping.bin_of(v);
        out[at].1 += p;
    }
    Scored {
        probs: out,
        outside,
    }
}

/// An exact answer: each option's (or bin's) probability, renormalized over them, and what
/// the model put outside them before that.
pub(super) struct Scored {
    pub probs: Vec<(String, f64)>,
    pub outside: f64,
}

/// The label of a number distribution's probability left unresolved by the walk's budget.
pub(super) const UNRESOLVED: &str = "(unresolved)";

/// A wide number's exact probabilities per bin, then what the walk left unresolved, if any.
pub(super) fn number_probs(
    llama: &Llama,
    cache: &Cache,
    logits: &[f32],
    digits: &Digits,
    bins: &Bins,
) -> Result<Scored> {
    let d = number_distribution(llama, cache, logits, digits, bins, WALK_BUDGET)?;
    let mut probs = d.bins;
    if d.unresolved > 0.0 {
        probs.push((UNRESOLVED.to_string(), d.unresolved));
    }
    Ok(Scored {
        probs,
        outside: d.outside,
    })
}

/// How an option is written inside the together-mode JSON object.
pub(super) fn json_value(option: &str) -> String {
    if option.parse::<f64>().is_ok() {
        option.to_string()
    } else {
        serde_json::to_string(option).unwrap_or_else(|_| format!("\"{option}\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_quote_non_numbers() {
        assert_eq!(json_value("5"), "5");
        assert_eq!(json_value("A"), "\"A\"");
    }

    #[test]
    fn listed_numbers_sum_into_their_bins() {
        let q = Question {
            id: "n".into(),
            text: "How many?".into(),
            kind: QuestionKind::Number {
                min: 0,
                max: 4,
                bins: vec![(0, 1), (2, 2)],
            },
            instruction: String::new(),
            intro: None,
            order: crate::study::Order::Fixed,
        };
        let probs = (0..5).map(|v| (v.to_string(), 0.2)).collect();
        let out = binned(
            &q,
            Scored {
                probs,
                outside: 0.125,
            },
        );
        // What lay outside the values lies outside the bins.
        assert_eq!(out.outside, 0.125);
        let labels: Vec<&str> = out.probs.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["0-1", "2", "other"]);
        let p: Vec<f64> = out.probs.iter().map(|(_, p)| *p).collect();
        assert!(
            (p[0] - 0.4).abs() < 1e-12 && (p[1] - 0.2).abs() < 1e-12 && (p[2] - 0.4).abs() < 1e-12
        );
    }
}
