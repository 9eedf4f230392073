//! Exact answer probabilities: for a closed question, how likely the model is to continue the
//! prompt with each option, read from its token probabilities instead of estimated by sampling.
//!
//! The prompt is computed once; every option then extends a fork of it in one batched pass
//! (right-padded, so padding never affects the real tokens before it). A multi-token option's
//! log-probability is the sum over its tokens. Options are tokenized together with the end of
//! the prompt, so that a tokenizer merging across the boundary is noticed and handled.

use serde::Serialize;

use super::error::EngineError;
use super::generate::prefill;
use super::sampling::SamplingParams;
use crate::model::{Cache, Llama, LogitsAt};
use crate::tokenizer::Tokenizer;

/// One option's token ids as the model would produce them after the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionTokens {
    pub text: String,
    pub ids: Vec<u32>,
    /// Tokens that may end the option (the end of the turn), part of its probability; set by
    /// [`terminate_ambiguous`] when an option is a prefix of another ("1" of "10").
    pub ends: Vec<u32>,
}

/// When some option's tokens are a prefix of another's ("1" and "10" are both `1` first), "1"
/// is only an answer if the reply ends there: every option then also takes one of `ends` (the
/// model's end-of-turn tokens) after its tokens, so P("1") no longer counts "10".."19".
pub fn terminate_ambiguous(options: &mut [OptionTokens], ends: &[u32]) {
    if is_ambiguous(options.iter().map(|o| o.ids.as_slice())) {
        for o in options {
            o.ends = ends.to_vec();
        }
    }
}

/// Whether some sequence is a proper prefix of another.
pub fn is_ambiguous<'a>(seqs: impl Iterator<Item = &'a [u32]> + Clone) -> bool {
    seqs.clone()
        .any(|a| seqs.clone().any(|b| b.len() > a.len() && b.starts_with(a)))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionScore {
    pub option: String,
    /// log P(option | prompt), summed over its tokens.
    pub logprob: f64,
    /// Probability renormalized over the options.
    pub probability: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub options: Vec<OptionScore>,
    /// Probability the model put on continuations that are none of the options.
    pub outside: f64,
}

impl Distribution {
    /// Expected value when the options are numbers ("1".."7"); `None` otherwise.
    pub fn mean(&self) -> Option<f64> {
        let mut m = 0.0;
        for o in &self.options {
            m += o.option.trim().parse::<f64>().ok()? * o.probability;
        }
        Some(m)
    }
}

/// Tokenizes `options` as continuations of `prompt_text` ([`continuation`]) and checks that
/// the model can write each of them, and each apart from the others ([`check_options`]).
pub fn tokenize_options(
    tokenizer: &Tokenizer,
    prompt_text: &str,
    options: &[String],
) -> Result<Vec<OptionTokens>, EngineError> {
    let base = encode(tokenizer, prompt_text)?;
    let toks = options
        .iter()
        .map(|o| {
            Ok(OptionTokens {
                text: o.clone(),
                ids: continuation(tokenizer, prompt_text, &base, o)?,
                ends: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    check_options(
        tokenizer,
        toks.iter().map(|t| (t.text.as_str(), t.ids.as_slice())),
    )?;
    Ok(toks)
}

pub(crate) fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, EngineError> {
    tokenizer
        .encode(text, false)
        .map_err(EngineError::Tokenizer)
}

/// The ids of `option` as the model writes it after `before` (whose ids are `base`): the
/// option is encoded joined to `before`, and its ids are what follows `base`. When the joint
/// encoding does not start with `base` (a merge across the boundary), the option is encoded on
/// its own instead, which is what generation after `before` produces.
pub(crate) fn continuation(
    tokenizer: &Tokenizer,
    before: &str,
    base: &[u32],
    option: &str,
) -> Result<Vec<u32>, EngineError> {
    let joint = encode(tokenizer, &format!("{before}{option}"))?;
    if joint.len() > base.len() && joint.starts_with(base) {
        Ok(joint[base.len()..].to_vec())
    } else {
        encode(tokenizer, option)
    }
}

/// Refuses options the model cannot answer with: one with no tokens, one the tokenizer does
/// not give back (a character outside a vocabulary without byte fallback becomes `<unk>`), one
/// holding an end-of-turn token, and two options with the same tokens.
pub(crate) fn check_options<'a>(
    tokenizer: &Tokenizer,
    options: impl Iterator<Item = (&'a str, &'a [u32])>,
) -> Result<(), EngineError> {
    let stops = tokenizer.stop_ids();
    let mut seen: Vec<(&str, &[u32])> = Vec::new();
    for (text, ids) in options {
        let refuse = |why: String| EngineError::Option {
            option: text.to_string(),
            why,
        };
        if ids.is_empty() {
            return Err(refuse("it has no tokens".into()));
        }
        if let Some(stop) = ids.iter().find(|id| stops.contains(id)) {
            let stop = tokenizer.token_text(*stop);
            return Err(refuse(format!(
                "it holds `{stop}`, which ends the model's turn"
            )));
        }
        let back = tokenizer
            .decode(ids, false)
            .map_err(EngineError::Tokenizer)?;
        if back.trim() != text.trim() {
            return Err(refuse(format!(
                "the tokenizer writes it back as `{}`",
                back.trim()
            )));
        }
        if let Some((other, _)) = seen.iter().find(|(_, o)| *o == ids) {
            return Err(refuse(format!("it is the same tokens as option `{other}`")));
        }
        seen.push((text, ids));
    }
    Ok(())
}

/// Options as a whole reply, right after the assistant turn opens: tokenized on their own,
/// and ended by the end of the turn where one is a prefix of another ([`terminate_ambiguous`]).
pub fn reply_options(
    tokenizer: &Tokenizer,
    options: &[String],
) -> Result<Vec<OptionTokens>, EngineError> {
    let mut toks = tokenize_options(tokenizer, "", options)?;
    terminate_ambiguous(&mut toks, &tokenizer.stop_ids());
    Ok(toks)
}

/// Scores every option after a prompt held in `base` (one row), whose next-token logits are
/// `first`. The cache is not modified.
pub fn score_after(
    llama: &Llama,
    base: &Cache,
    first: &[f32],
    options: &[OptionTokens],
) -> Result<Distribution, EngineError> {
    let first_lp = log_softmax(first);
    let mut logprobs: Vec<f64> = options
        .iter()
        .map(|o| first_lp[o.ids[0] as usize] as f64)
        .collect();
    // What each option feeds after the prompt to read the rest of its probability: all but
    // its last token, or all of them when an end token must follow.
    let feeds: Vec<&[u32]> = options
        .iter()
        .map(|o| {
            if o.ends.is_empty() {
                &o.ids[..o.ids.len() - 1]
            } else {
                &o.ids[..]
            }
        })
        .collect();
    let width = feeds.iter().map(|f| f.len()).max().unwrap_or(0);
    if width > 0 {
        // One row per option with something to feed, right-padded, logits at every position.
        let multi: Vec<usize> = (0..options.len())
            .filter(|&i| !feeds[i].is_empty())
            .collect();
        let rows: Vec<Vec<u32>> = multi
            .iter()
            .map(|&i| {
                let mut row = feeds[i].to_vec();
                row.resize(width, *feeds[i].last().unwrap_or(&0));
                row
            })
            .collect();
        let mut cache = base.repeat_rows(rows.len(), width)?;
        let logits = llama.forward(&rows, &mut cache, LogitsAt::All)?;
        let logits = logits.to_vec3::<f32>()?;
        for (r, &i) in multi.iter().enumerate() {
            let o = &options[i];
            for (pos, row_logits) in logits[r].iter().take(feeds[i].len()).enumerate() {
                let lp = log_softmax(row_logits);
                logprobs[i] += match o.ids.get(pos + 1) {
                    Some(&next) => lp[next as usize] as f64,
                    None => o
                        .ends
                        .iter()
                        .map(|&e| (lp[e as usize] as f64).exp())
                        .sum::<f64>()
                        .ln(),
                };
            }
        }
    }
    Ok(distribution(options, &logprobs))
}

/// Scores options that are one token each straight from the prompt's next-token logits (no
/// model call); `None` when some option has more tokens.
pub fn score_single(first: &[f32], options: &[OptionTokens]) -> Option<Distribution> {
    if options
        .iter()
        .any(|o| o.ids.len() != 1 || !o.ends.is_empty())
    {
        return None;
    }
    let lp = log_softmax(first);
    let logprobs: Vec<f64> = options
        .iter()
        .map(|o| lp[o.ids[0] as usize] as f64)
        .collect();
    Some(distribution(options, &logprobs))
}

/// Computes the prompt, then scores the options after it.
pub fn score(
    llama: &Llama,
    prompt: &[u32],
    options: &[OptionTokens],
) -> Result<Distribution, EngineError> {
    let mut base = llama.new_cache(1, prompt.len())?;
    let first = prefill(llama, &mut base, prompt)?;
    score_after(llama, &base, &first, options)
}

fn distribution(options: &[OptionTokens], logprobs: &[f64]) -> Distribution {
    let total: f64 = logprobs.iter().map(|l| l.exp()).sum();
    let scores = options
        .iter()
        .zip(logprobs)
        .map(|(o, &lp)| OptionScore {
            option: o.text.clone(),
            logprob: lp,
            probability: if total > 0.0 { lp.exp() / total } else { 0.0 },
        })
        .collect();
    Distribution {
        options: scores,
        outside: (1.0 - total).max(0.0),
    }
}

/// Index of an option drawn from a scored distribution, tempered and truncated by `params`
/// exactly as a token draw among the options would be (temperature, then top-k, top-p and
/// min-p over the options), so an option of several tokens is drawn with its whole-answer
/// probability. Constrained decoding token by token renormalizes at every token instead, which
/// for options such as "1".."12" ("12" is "1" then "2", and "1" needs the end of the turn)
/// favours answers whose later tokens the model finds unlikely.
pub fn draw_option(d: &Distribution, params: &SamplingParams, rng: &mut impl rand::Rng) -> usize {
    let logprobs: Vec<f32> = d.options.iter().map(|o| o.logprob as f32).collect();
    super::sampling::sample(&logprobs, params, &[], None, rng) as usize
}

/// Log-softmax of one logits row, in f64 for the sums.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(tokenizer: &Tokenizer, options: &[&str]) -> String {
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        let err = tokenize_options(tokenizer, "", &options).expect_err("options accepted");
        let printed = crate::error::render(&err);
        crate::diagnostics::assert_printed_shape(&printed);
        printed
    }

    #[test]
    fn options_the_tokenizer_cannot_write_are_refused() {
        // A SentencePiece vocabulary without byte tokens writes `é` as <unk>.
        let content = crate::tokenizer::tests::synthetic_spm(None, false);
        let spm = Tokenizer::from_gguf(&content).unwrap();
        assert!(tokenize_options(&spm, "", &["hello".into(), "world".into()]).is_ok());
        insta::assert_snapshot!("option_unknown_characters", refusal(&spm, &["hello", "hé"]));
        // An option holding the end of the turn could never be told from stopping.
        let llama3 = crate::tokenizer::tests::llama3();
        insta::assert_snapshot!(
            "option_holds_end_of_turn",
            refusal(&llama3, &["Yes", "No<|eot_id|>"])
        );
        // Two options the model writes with the same tokens cannot be told apart.
        let same = check_options(
            &llama3,
            [("Yes", &[9642u32][..]), ("Yes ", &[9642u32][..])].into_iter(),
        );
        insta::assert_snapshot!(
            "option_same_tokens",
            crate::error::render(&same.unwrap_err())
        );
    }

    #[test]
    fn distribution_renormalizes_and_reports_outside_mass() {
        let opts = vec![
            OptionTokens {
                text: "1".into(),
                ids: vec![1],
                ends: vec![],
            },
            OptionTokens {
                text: "2".into(),
                ids: vec![2],
                ends: vec![],
            },
        ];
        let d = distribution(&opts, &[(0.3f64).ln(), (0.1f64).ln()]);
        assert!((d.options[0].probability - 0.75).abs() < 1e-12);
        assert!((d.outside - 0.6).abs() < 1e-12);
        assert!((d.mean().unwrap() - 1.25).abs() < 1e-12);
    }

    #[test]
    fn prefixes_make_options_ambiguous() {
        let seqs = [vec![1u32], vec![1, 0], vec![2]];
        assert!(is_ambiguous(seqs.iter().map(|s| s.as_slice())));
        let seqs = [vec![1u32], vec![2, 0], vec![2, 1]];
        assert!(!is_ambiguous(seqs.iter().map(|s| s.as_slice())));
    }

    #[test]
    fn log_softmax_sums_to_one() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let s: f32 = lp.iter().map(|l| l.exp()).sum();
        assert!((s - 1.0).abs() < 1e-6);
    }
}
