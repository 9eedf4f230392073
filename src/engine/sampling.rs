//! Turning a row of logits into a token: temperature, top-k, top-p, min-p, optional repetition
//! penalty, and a random stream per row.
//!
//! Order of operations (Hugging Face's): temperature scales the logits first, then top-k, top-p
//! and min-p truncate the tempered distribution, and the draw renormalizes what is left. With
//! `temperature = 0` the argmax is taken (ties to the lowest id, as llama.cpp does).
//!
//! Each row owns its random stream, derived from the run seed and the row's identity, so a
//! sample's tokens do not depend on which other rows shared its batch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 0.0 disables min-p.
    pub min_p: f32,
    /// Applied to tokens already generated (llama.cpp's semantics); `None`: off.
    pub repeat_penalty: Option<f32>,
    pub seed: u64,
    pub max_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: None,
            seed: 42,
            max_tokens: 256,
        }
    }
}

impl SamplingParams {
    /// Draws from the model's distribution unchanged: temperature 1, no truncation.
    pub fn pure(seed: u64, max_tokens: usize) -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: None,
            seed,
            max_tokens,
        }
    }

    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            ..Self::pure(0, max_tokens)
        }
    }
}

/// A row's random stream: ChaCha20 keyed by the run seed, on a stream chosen by the row's
/// identity (e.g. respondent, question, sample), so rows never share or shift each other's draws.
pub fn row_rng(seed: u64, identity: &[u64]) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // FNV-1a over the identity gives a stable 64-bit stream id.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in identity {
        for b in part.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    rng.set_stream(h);
    rng
}

/// Index of the largest value; the lowest index wins ties.
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// Candidates after temperature and truncation, as (token, probability) summing to 1: sorted
/// by decreasing probability when top-k or top-p truncated them, otherwise in id order.
/// `allowed`, when given, restricts the vocabulary first.
pub fn candidates(
    logits: &[f32],
    params: &SamplingParams,
    history: &[u32],
    allowed: Option<&[u32]>,
) -> Vec<(u32, f32)> {
    let mut items: Vec<(u32, f32)> = match allowed {
        Some(ids) => ids.iter().map(|&i| (i, logits[i as usize])).collect(),
        None => logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect(),
    };
    if let Some(penalty) = params.repeat_penalty {
        for item in items.iter_mut() {
            if history.contains(&item.0) {
                item.1 = if item.1 > 0.0 {
                    item.1 / penalty
                } else {
                    item.1 * penalty
                };
            }
        }
    }
    if items.is_empty() {
        return items;
    }
    if params.temperature <= 0.0 {
        let best = items
            .iter()
            .copied()
            .reduce(|a, b| {
                if b.1 > a.1 || (b.1 == a.1 && b.0 < a.0) {
                    b
                } else {
                    a
                }
            })
            .map(|(id, _)| id)
            .unwrap_or(0);
        return vec![(best, 1.0)];
    }
    let t = params.temperature;
    // Candidate order is (logit desc, id asc) wherever truncation needs an order, which keeps
    // it, and so the draw, deterministic; without truncation the vocabulary stays in id order
    // and nothing is sorted (a full sort of 49k logits per row per step costs more than the
    // forward pass of a batched decode step).
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut sorted = false;
    if params.top_k > 0 && params.top_k < items.len() {
        items.select_nth_unstable_by(params.top_k - 1, order);
        items.truncate(params.top_k);
        items.sort_by(order);
        sorted = true;
    }
    let max = items.iter().map(|i| i.1).fold(f32::NEG_INFINITY, f32::max) / t;
    let mut sum = 0.0f64;
    for item in items.iter_mut() {
        item.1 = ((item.1 / t - max) as f64).exp() as f32;
        sum += item.1 as f64;
    }
    for item in items.iter_mut() {
        item.1 = (item.1 as f64 / sum) as f32;
    }
    if params.top_p < 1.0 {
        // The nucleus is a prefix of the sorted order: sort just enough of it.
        let mut n = 64;
        while !sorted {
            if n >= items.len() {
                items.sort_by(order);
                sorted = true;
            } else {
                items.select_nth_unstable_by(n - 1, order);
                items[..n].sort_by(order);
                let mass: f32 = items[..n].iter().map(|i| i.1).sum();
                if mass >= params.top_p {
                    items.truncate(n);
                    sorted = true;
                }
                n *= 4;
            }
        }
        let mut acc = 0.0f32;
        let mut keep = items.len();
        for (i, item) in items.iter().enumerate() {
            acc += item.1;
            if acc >= params.top_p {
                keep = i + 1;
                break;
            }
        }
        items.truncate(keep);
    }
    if params.min_p > 0.0 {
        let top = items.iter().map(|i| i.1).fold(0.0f32, f32::max);
        // At most the top token's own probability: something is always left to draw.
        let floor = top * params.min_p.min(1.0);
        items.retain(|item| item.1 >= floor);
    }
    let total: f32 = items.iter().map(|i| i.1).sum();
    for item in items.iter_mut() {
        item.1 /= total;
    }
    items
}

/// Draws one token from `candidates` with `rng`.
pub fn draw(candidates: &[(u32, f32)], rng: &mut impl Rng) -> u32 {
    let u: f32 = rng.random();
    let mut acc = 0.0f32;
    for &(id, p) in candidates {
        acc += p;
        if u < acc {
            return id;
        }
    }
    candidates.last().map(|c| c.0).unwrap_or(0)
}

/// One sampling step: candidates, then a draw.
pub fn sample(
    logits: &[f32],
    params: &SamplingParams,
    history: &[u32],
    allowed: Option<&[u32]>,
    rng: &mut impl Rng,
) -> u32 {
    draw(&candidates(logits, params, history, allowed), rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty: None,
            seed: 1,
            max_tokens: 1,
        }
    }

    #[test]
    fn greedy_takes_the_argmax_and_lowest_id_on_ties() {
        let logits = [0.1, 2.0, 2.0, -1.0];
        assert_eq!(
            candidates(&logits, &params(0.0, 0, 1.0, 0.0), &[], None),
            vec![(1, 1.0)]
        );
        assert_eq!(argmax(&logits), 1);
    }

    #[test]
    fn temperature_one_is_the_softmax() {
        let logits = [0.0f32, (2.0f32).ln(), (5.0f32).ln(), (2.0f32).ln()];
        let c = candidates(&logits, &params(1.0, 0, 1.0, 0.0), &[], None);
        let p: Vec<f32> = c.iter().map(|x| x.1).collect();
        // No truncation: the whole vocabulary in id order, nothing sorted.
        let want = [0.1, 0.2, 0.5, 0.2];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{p:?}");
        }
        assert_eq!(c.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn min_p_at_or_past_one_keeps_the_top_token() {
        let logits = [0.5f32, 3.0, 1.0, 3.0 - 1e-3];
        for min_p in [1.0, 1.5] {
            let c = candidates(&logits, &params(1.0, 0, 1.0, min_p), &[], None);
            assert_eq!(c, vec![(1, 1.0)], "min_p {min_p}");
        }
    }

    #[test]
    fn top_k_top_p_and_min_p_truncate() {
        let logits = [0.0f32, (2.0f32).ln(), (5.0f32).ln(), (2.0f32).ln()];
        let k = candidates(&logits, &params(1.0, 2, 1.0, 0.0), &[], None);
        assert_eq!(k.len(), 2);
        assert!((k[0].1 - 5.0 / 7.0).abs() < 1e-6);
        let p = candidates(&logits, &params(1.0, 0, 0.6, 0.0), &[], None);
        assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1]);
        let m = candidates(&logits, &params(1.0, 0, 1.0, 0.3), &[], None);
        assert_eq!(m.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn top_p_on_a_large_vocabulary_matches_a_full_sort() {
        // 50,000 logits with a long tail: the nucleus needs more than the first 64 candidates.
        let logits: Vec<f32> = (0..50_000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) % 1000) as f32) / 150.0)
            .collect();
        for top_p in [0.1f32, 0.5, 0.9, 0.99] {
            let c = candidates(&logits, &params(1.0, 0, top_p, 0.0), &[], None);
            // Reference: sort everything, softmax, cut where the mass reaches top_p.
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = logits
                .iter()
                .map(|&l| ((l - max) as f64).exp() as f32)
                .collect();
            let sum: f64 = e.iter().map(|&x| x as f64).sum();
            let mut all: Vec<(u32, f32)> = e
                .iter()
                .enumerate()
                .map(|(i, &x)| (i as u32, (x as f64 / sum) as f32))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut acc = 0.0f32;
            let keep = all
                .iter()
                .position(|x| {
                    acc += x.1;
                    acc >= top_p
                })
                .unwrap()
                + 1;
            let ids: Vec<u32> = c.iter().map(|x| x.0).collect();
            let want: Vec<u32> = all[..keep].iter().map(|x| x.0).collect();
            assert_eq!(ids, want, "top_p {top_p}");
        }
    }

    #[test]
    fn allowed_tokens_renormalize() {
        let logits = [3.0f32, 0.0, 0.0, 1.0];
        let c = candidates(&logits, &params(1.0, 0, 1.0, 0.0), &[], Some(&[1, 2]));
        assert_eq!(c.len(), 2);
        assert!((c[0].1 - 0.5).abs() < 1e-6 && (c[1].1 - 0.5).abs() < 1e-6);
    }

    #[test]
    fn repeat_penalty_lowers_seen_tokens() {
        let logits = [2.0f32, 2.0];
        let mut p = params(0.0, 0, 1.0, 0.0);
        p.repeat_penalty = Some(1.5);
        assert_eq!(candidates(&logits, &p, &[0], None)[0].0, 1);
    }

    #[test]
    fn draws_follow_the_distribution_and_are_seeded() {
        let c = vec![(7u32, 0.25f32), (9, 0.75)];
        let mut rng = row_rng(5, &[1, 2]);
        let n = 20_000;
        let sevens = (0..n).filter(|_| draw(&c, &mut rng) == 7).count();
        let freq = sevens as f64 / n as f64;
        assert!((freq - 0.25).abs() < 0.015, "{freq}");
        let a: Vec<u32> = (0..10).map(|_| draw(&c, &mut row_rng(5, &[3]))).collect();
        let b: Vec<u32> = (0..10).map(|_| draw(&c, &mut row_rng(5, &[3]))).collect();
        assert_eq!(a, b);
        let mut r1 = row_rng(5, &[3]);
        let mut r2 = row_rng(5, &[4]);
        let s1: Vec<u32> = (0..32).map(|_| r1.random()).collect();
        let s2: Vec<u32> = (0..32).map(|_| r2.random()).collect();
        assert_ne!(s1, s2, "different rows must get different streams");
    }
}
