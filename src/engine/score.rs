//! Exact answer probabilities: for a closed question, how likely the model is to continue the
//! prompt with each option, read from its token probabilities instead of estimated by sampling.
//!
//! The prompt is computed once; every option then extends a fork of it in one batched pass
//! (right-padded, so padding never affects the real tokens before it). A multi-token option's
//! log-probability is the sum over its tokens. Options are tokenized together with the end of
//! the prompt, so that a tokenizer merging across the boundary is noticed and handled.

use serde::Serialize;

use super::generate::prefill;
use super::{EngineError, SamplingParams};
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

/// Tokenizes `options` as continuations of `prompt_text`: each
/// option is encoded joined to the prompt, and its ids are what follows the prompt's ids. When
/// the joint encoding does not start with the prompt's ids (a merge across the boundary), the
/// option is encoded on its own instead, which is what generation after this prompt produces.
pub fn tokenize_options(
    tokenizer: &Tokenizer,
    prompt_text: &str,
    options: &[String],
) -> Result<Vec<OptionTokens>, EngineError> {
    let enc = |s: &str| {
        tokenizer
            .encode(s, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    };
    let plain_prompt = enc(prompt_text)?;
    options
        .iter()
        .map(|o| {
            let joint = enc(&format!("{prompt_text}{o}"))?;
            let ids = if joint.len() > plain_prompt.len() && joint.starts_with(&plain_prompt) {
                joint[plain_prompt.len()..].to_vec()
            } else {
                enc(o)?
            };
            if ids.is_empty() {
                return Err(EngineError::Tokenizer(format!(
                    "option `{o}` has no tokens"
                )));
            }
            Ok(OptionTokens {
                text: o.clone(),
                ids,
                ends: Vec::new(),
            })
        })
        .collect()
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
