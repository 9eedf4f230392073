//! Token generation: one streamed sequence, or many samples of one prompt decoded together.
//!
//! Many samples share their prompt: it is computed once, then the cache is forked into one row
//! per sample and all rows decode in one batch. Finished rows leave the batch, so a short answer
//! costs nothing after its end token.

use candle_core::Tensor;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::error::EngineError;
use super::sampling::{row_rng, sample, SamplingParams};
use crate::model::{Cache, Llama, LogitsAt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced one of its end tokens (not included in `tokens`).
    EndToken,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The caller's callback asked to stop.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
}

fn rows(logits: &Tensor) -> Result<Vec<Vec<f32>>, EngineError> {
    Ok(logits.to_vec2::<f32>()?)
}

/// Extends `cache` (one row) with `prompt`, returning the logits after its last token.
pub fn prefill(llama: &Llama, cache: &mut Cache, prompt: &[u32]) -> Result<Vec<f32>, EngineError> {
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    // Long prompts go through in chunks so attention scores never hold prompt^2 floats at once.
    const CHUNK: usize = 512;
    let mut last = None;
    for chunk in prompt.chunks(CHUNK) {
        last = Some(llama.forward(&[chunk.to_vec()], cache, LogitsAt::Last)?);
    }
    let logits = last.ok_or(EngineError::EmptyPrompt)?;
    Ok(rows(&logits)?.remove(0))
}

/// Generates one sequence after `prompt`, calling `on_token` with each new token as soon as it
/// is drawn (return `false` to stop). It draws from [`sample_rng`]`(params.seed, sample_index)`.
pub fn generate(
    llama: &Llama,
    prompt: &[u32],
    params: &SamplingParams,
    stop_ids: &[u32],
    sample_index: usize,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generation, EngineError> {
    let mut cache = llama.new_cache(1, prompt.len() + params.max_tokens + 1)?;
    let logits = prefill(llama, &mut cache, prompt)?;
    continue_generation(
        llama,
        &mut cache,
        logits,
        params,
        stop_ids,
        sample_index,
        on_token,
    )
}

/// Generates after a cache that already holds the prompt (a chat session keeps its cache
/// between turns); `logits` are those after the cache's last token.
pub fn continue_generation(
    llama: &Llama,
    cache: &mut Cache,
    mut logits: Vec<f32>,
    params: &SamplingParams,
    stop_ids: &[u32],
    sample_index: usize,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generation, EngineError> {
    let mut rng = sample_rng(params.seed, sample_index);
    let mut tokens = Vec::new();
    loop {
        if tokens.len() >= params.max_tokens {
            return Ok(Generation {
                tokens,
                stop: StopReason::MaxTokens,
            });
        }
        let next = sample(&logits, params, &tokens, None, &mut rng);
        if stop_ids.contains(&next) {
            return Ok(Generation {
                tokens,
                stop: StopReason::EndToken,
            });
        }
        tokens.push(next);
        if !on_token(next) {
            return Ok(Generation {
                tokens,
                stop: StopReason::Cancelled,
            });
        }
        if tokens.len() >= params.max_tokens {
            continue;
        }
        let out = llama.forward(&[vec![next]], cache, LogitsAt::Last)?;
        logits = rows(&out)?.remove(0);
    }
}

/// The random stream of sample `i` of a run seeded with `seed`: the stream a single generation
/// seeded with `seed + i` uses, so any one sample can be reproduced on its own.
pub fn sample_rng(seed: u64, i: usize) -> ChaCha20Rng {
    row_rng(seed.wrapping_add(i as u64), &[0])
}

/// `n` samples of one prompt, decoded together in batches of at most `batch` rows. Sample `i`
/// draws from [`sample_rng`]`(params.seed, i)`, so results are the same whatever the batch size.
pub fn sample_many(
    llama: &Llama,
    prompt: &[u32],
    params: &SamplingParams,
    stop_ids: &[u32],
    n: usize,
    batch: usize,
) -> Result<Vec<Generation>, EngineError> {
    let mut base = llama.new_cache(1, prompt.len())?;
    let first_logits = prefill(llama, &mut base, prompt)?;
    let batch = batch.max(1);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let rows_here = batch.min(n - start);
        let mut cache = base.repeat_rows(rows_here, params.max_tokens + 1)?;
        let rngs = (0..rows_here)
            .map(|i| sample_rng(params.seed, start + i))
            .collect();
        out.extend(decode_rows(
            llama,
            &mut cache,
            vec![first_logits.clone(); rows_here],
            params,
            stop_ids,
            rngs,
        )?);
        start += rows_here;
    }
    Ok(out)
}

/// One draw per active row (`active[row]` is the sample in cache row `row`), rows in parallel:
/// each row has its own stream, so the draws are the same whatever the thread count.
fn draw_rows(
    logits: &[Vec<f32>],
    active: &[usize],
    params: &SamplingParams,
    history: &[Vec<u32>],
    rngs: &mut [ChaCha20Rng],
) -> Vec<u32> {
    let mut slots: Vec<Option<&mut ChaCha20Rng>> = rngs.iter_mut().map(Some).collect();
    let jobs: Vec<(usize, usize, &mut ChaCha20Rng)> = active
        .iter()
        .enumerate()
        .map(|(row, &i)| (row, i, slots[i].take().expect("a sample is in one row")))
        .collect();
    jobs.into_par_iter()
        .map(|(row, i, rng)| sample(&logits[row], params, &history[i], None, rng))
        .collect()
}

/// Decodes every row of `cache` until each stops; `logits[r]` are row r's next-token logits and
/// `rngs[r]` its random stream.
pub fn decode_rows(
    llama: &Llama,
    cache: &mut Cache,
    mut logits: Vec<Vec<f32>>,
    params: &SamplingParams,
    stop_ids: &[u32],
    mut rngs: Vec<ChaCha20Rng>,
) -> Result<Vec<Generation>, EngineError> {
    let n = rngs.len();
    if params.max_tokens == 0 {
        let empty = Generation {
            tokens: Vec::new(),
            stop: StopReason::MaxTokens,
        };
        return Ok(vec![empty; n]);
    }
    let mut results: Vec<Option<Generation>> = vec![None; n];
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); n];
    // `active[j]` is the sample held in cache row j.
    let mut active: Vec<usize> = (0..n).collect();
    loop {
        let drawn = draw_rows(&logits, &active, params, &tokens, &mut rngs);
        let mut next_tokens = Vec::with_capacity(active.len());
        let mut still = Vec::with_capacity(active.len());
        for (row, &i) in active.iter().enumerate() {
            let t = drawn[row];
            if stop_ids.contains(&t) {
                results[i] = Some(Generation {
                    tokens: std::mem::take(&mut tokens[i]),
                    stop: StopReason::EndToken,
                });
                continue;
            }
            tokens[i].push(t);
            if tokens[i].len() >= params.max_tokens {
                results[i] = Some(Generation {
                    tokens: std::mem::take(&mut tokens[i]),
                    stop: StopReason::MaxTokens,
                });
                continue;
            }
            next_tokens.push(vec![t]);
            still.push(row);
        }
        if still.is_empty() {
            break;
        }
        if still.len() < active.len() {
            cache.retain_rows(&still)?;
            active = still.iter().map(|&r| active[r]).collect();
        }
        let out = llama.forward(&next_tokens, cache, LogitsAt::Last)?;
        logits = rows(&out)?;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every row ends"))
        .collect())
}
