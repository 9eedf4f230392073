//! Whole-number answers over any range, without listing the values: an automaton over the
//! digits written so far decides which of the vocabulary's digit tokens may come next, so a
//! `number` question from 0 to 1,000,000 is constrained as cheaply as one from 1 to 7.
//!
//! A prefix (`"1"`, `"-4"`) is allowed while some number in the range starts with it and it is
//! written the canonical way (no leading zeros, no `-0`). The answer may end once the prefix is
//! itself in the range; it must end when nothing longer is. Any digit token the vocabulary has
//! may extend a prefix (`"120"` as one token or as `"1"`, `"20"`), which keeps sampling simple
//! and always possible: the single digits are required to exist.
//!
//! The distribution of such a constrained answer (each token drawn from the model's
//! probabilities renormalized over the allowed tokens) is computed exactly by
//! [`number_distribution`], per value or per bin, by walking only the prefixes whose
//! answers still fall into more than one bin.

use super::error::EngineError;
use super::generate::prefill;
use super::score::log_softmax;
use crate::model::{Cache, Llama, LogitsAt};
use crate::tokenizer::Tokenizer;

/// The longest answer the automaton follows, in characters: a sign and 19 digits hold any i64.
const MAX_CHARS: usize = 20;

/// Rows computed together while walking prefixes.
const WALK_ROWS: usize = 32;

/// Model rows an exact number distribution may take per answer (see [`number_distribution`]).
pub const WALK_BUDGET: usize = 512;

/// A range of whole numbers as a tokenizer can spell it.
#[derive(Debug, Clone)]
pub struct Digits {
    min: i64,
    max: i64,
    /// Tokens whose text is digits, a `-`, or a `-` then digits, with that text.
    tokens: Vec<(u32, String)>,
    /// Tokens that may end the number: the first token of the text after it, or the end of the
    /// turn.
    ends: Vec<u32>,
}

/// Which values a prefix can still become, as inclusive intervals in the range.
fn completions(min: i64, max: i64, prefix: &str) -> Vec<(i128, i128)> {
    let (negative, body) = match prefix.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, prefix),
    };
    let canonical = !body.is_empty()
        && body.len() < MAX_CHARS
        && body.bytes().all(|b| b.is_ascii_digit())
        && ((body == "0" && !negative) || !body.starts_with('0'));
    let (min, max) = (min as i128, max as i128);
    let mut out = Vec::new();
    let push = |out: &mut Vec<(i128, i128)>, lo: i128, hi: i128| {
        // Magnitudes [lo, hi] as signed values, clipped to the range.
        let (a, b) = if negative { (-hi, -lo) } else { (lo, hi) };
        let (a, b) = (a.max(min), b.min(max));
        if a <= b {
            out.push((a, b));
        }
    };
    if body.is_empty() {
        // Just a sign (or nothing yet): every value of that sign.
        if negative {
            push(&mut out, 1, i64::MAX as i128 + 1);
        } else if prefix.is_empty() && min <= max {
            out.push((min, max));
        }
        return out;
    }
    if !canonical {
        return out;
    }
    let p: i128 = body.parse().unwrap_or(0);
    push(&mut out, p, p);
    if p == 0 {
        return out;
    }
    let limit = i64::MAX as i128 + 1;
    let mut scale: i128 = 10;
    while p * scale <= limit {
        push(&mut out, p * scale, p * scale + scale - 1);
        scale *= 10;
    }
    out
}

impl Digits {
    /// The digit tokens of `tokenizer`'s vocabulary for numbers from `min` to `max`, ended by
    /// one of `ends`. Fails when the vocabulary cannot write every number of the range (a
    /// single digit, or the minus sign, without a token of its own), or when an end token is
    /// itself a digit.
    pub fn new(
        min: i64,
        max: i64,
        tokenizer: &Tokenizer,
        ends: Vec<u32>,
    ) -> Result<Self, EngineError> {
        if min > max {
            return Err(EngineError::Constraint(format!(
                "the range {min} to {max} is empty"
            )));
        }
        if ends.is_empty() {
            return Err(EngineError::Constraint(
                "nothing can end a number: the tokenizer has no end-of-turn token".into(),
            ));
        }
        let inner = tokenizer.inner();
        let mut tokens = Vec::new();
        for id in 0..tokenizer.vocab_size() as u32 {
            let Some(piece) = inner.id_to_token(id) else {
                continue;
            };
            // The raw piece holds digits and `-` as themselves in every style.
            if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                continue;
            }
            let text = tokenizer.token_text(id);
            let digits = text.strip_prefix('-').unwrap_or(&text);
            if text == piece && digits.bytes().all(|b| b.is_ascii_digit()) {
                tokens.push((id, text));
            }
        }
        let needed = (b'0'..=b'9')
            .map(|d| (d as char).to_string())
            .chain((min < 0).then(|| "-".to_string()));
        for need in needed {
            if !tokens.iter().any(|(_, t)| *t == need) {
                return Err(EngineError::Constraint(format!(
                    "the tokenizer has no token for `{need}`, so it cannot write every number from {min} to {max}"
                )));
            }
        }
        if let Some(end) = ends.iter().find(|e| tokens.iter().any(|(t, _)| t == *e)) {
            return Err(EngineError::Constraint(format!(
                "token {end} would both continue and end a number"
            )));
        }
        Ok(Self {
            min,
            max,
            tokens,
            ends,
        })
    }

    pub fn range(&self) -> (i64, i64) {
        (self.min, self.max)
    }

    pub fn ends(&self) -> &[u32] {
        &self.ends
    }

    /// The text of a digit token, `None` for any other token.
    pub fn text(&self, id: u32) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, s)| s.as_str())
    }

    /// The values `prefix` can still become.
    pub fn completions(&self, prefix: &str) -> Vec<(i128, i128)> {
        completions(self.min, self.max, prefix)
    }

    /// The value `prefix` stands for, when it is a whole answer in the range.
    pub fn value(&self, prefix: &str) -> Option<i64> {
        let v: i64 = prefix.parse().ok()?;
        (self.completions(prefix).first() == Some(&(v as i128, v as i128))).then_some(v)
    }

    /// The tokens allowed after `prefix`, in id order, end tokens included when the answer may
    /// end here. Never empty for a prefix this automaton produced.
    pub fn allowed(&self, prefix: &str) -> Vec<u32> {
        let mut allowed: Vec<u32> = self
            .tokens
            .iter()
            .filter(|(_, t)| {
                let next = format!("{prefix}{t}");
                next.len() <= MAX_CHARS && !self.completions(&next).is_empty()
            })
            .map(|(id, _)| *id)
            .collect();
        if self.value(prefix).is_some() {
            allowed.extend(&self.ends);
        }
        allowed.sort_unstable();
        allowed
    }
}

/// Named groups of values for an exact number distribution: inclusive ranges with labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Bins {
    bins: Vec<(i64, i64, String)>,
    /// Label of the values no bin holds, if there are any.
    rest: Option<String>,
    /// `(lo, hi, index)` by `lo`, for lookups.
    sorted: Vec<(i128, i128, usize)>,
}

impl Bins {
    /// Bins from inclusive ranges within `min..=max` (checked by the study), each labelled
    /// `lo-hi` (`lo to hi` when negative numbers would make that ambiguous, `lo` when the bin
    /// is one value); values no bin holds are reported together as `other`.
    pub fn new(min: i64, max: i64, ranges: &[(i64, i64)]) -> Self {
        let bins = ranges
            .iter()
            .map(|&(lo, hi)| {
                let label = if lo == hi {
                    lo.to_string()
                } else if lo < 0 || hi < 0 {
                    format!("{lo} to {hi}")
                } else {
                    format!("{lo}-{hi}")
                };
                (lo, hi, label)
            })
            .collect();
        let mut sorted = ranges.to_vec();
        sorted.sort_unstable();
        let mut at = min as i128;
        for (lo, hi) in sorted {
            if lo as i128 > at {
                break;
            }
            at = at.max(hi as i128 + 1);
        }
        let rest = (at <= max as i128).then(|| "other".to_string());
        let mut sorted: Vec<(i128, i128, usize)> = ranges
            .iter()
            .enumerate()
            .map(|(i, &(lo, hi))| (lo as i128, hi as i128, i))
            .collect();
        sorted.sort_unstable();
        Self { bins, rest, sorted }
    }

    /// One bin per value.
    pub fn each(min: i64, max: i64) -> Self {
        let ranges: Vec<(i64, i64)> = (min..=max).map(|v| (v, v)).collect();
        Self::new(min, max, &ranges)
    }

    /// The index of the bin `value` falls in, `labels().len() - 1` for the rest.
    pub fn bin_of(&self, value: i64) -> usize {
        let v = value as i128;
        self.only(&[(v, v)]).unwrap_or(self.bins.len())
    }

    /// The bin every value of `intervals` falls in (`bins.len()` for the rest), if they all
    /// fall in the same one. Bins do not overlap (the study checks it).
    fn only(&self, intervals: &[(i128, i128)]) -> Option<usize> {
        let sorted = &self.sorted;
        let mut found = None;
        for &(a, b) in intervals {
            let mut at = a;
            while at <= b {
                // The last bin starting at or before `at`, if it reaches `at`.
                let k = sorted.partition_point(|(lo, _, _)| *lo <= at);
                let (bin, end) = match k.checked_sub(1).map(|k| sorted[k]) {
                    Some((_, hi, i)) if hi >= at => (i, hi),
                    // The rest, up to the next bin's start.
                    _ => (
                        self.bins.len(),
                        sorted.get(k).map_or(i128::MAX, |(lo, _, _)| lo - 1),
                    ),
                };
                if *found.get_or_insert(bin) != bin {
                    return None;
                }
                if end >= b {
                    break;
                }
                at = end + 1;
            }
        }
        found
    }

    /// The labels, in the order of the distribution: the bins as given, then the rest.
    pub fn labels(&self) -> Vec<String> {
        self.bins
            .iter()
            .map(|(_, _, l)| l.clone())
            .chain(self.rest.clone())
            .collect()
    }
}

/// A number answer's exact distribution ([`number_distribution`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NumberDistribution {
    /// Each bin's probability, in the order of [`Bins::labels`].
    pub bins: Vec<(String, f64)>,
    /// Probability of prefixes left unexpanded when the walk's budget ran out: answers that
    /// may fall in more than one bin.
    pub unresolved: f64,
    /// Probability the model put outside the allowed tokens at the first step.
    pub outside: f64,
}

/// A prefix still to expand, ordered by probability (then by path, for a fixed order).
#[derive(Debug, Clone, PartialEq)]
struct Node {
    path: Vec<u32>,
    text: String,
    mass: f64,
}

impl Eq for Node {}

impl Ord for Node {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.mass
            .total_cmp(&other.mass)
            .then_with(|| other.path.cmp(&self.path))
    }
}

impl PartialOrd for Node {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The exact distribution of a constrained number answer after the prompt in `base` (one row),
/// whose next-token logits are `first`: tokens drawn at temperature 1 without truncation, among
/// the allowed ones.
///
/// A prefix whose answers all fall in one bin gives that bin its probability at once; only
/// prefixes spanning several bins are computed further, most probable first, at most `budget`
/// model rows. Bins by size (0-19,999, 20,000-49,999, ...) cut across digit prefixes ("3" may
/// become 3 or 35,000), so what the budget leaves open is reported as unresolved rather than
/// guessed; per-value bins of a range of a few hundred need a few dozen rows.
pub fn number_distribution(
    llama: &Llama,
    base: &Cache,
    first: &[f32],
    digits: &Digits,
    bins: &Bins,
    budget: usize,
) -> Result<NumberDistribution, EngineError> {
    let labels = bins.labels();
    let mut mass = vec![0.0f64; labels.len()];
    let mut open = std::collections::BinaryHeap::new();
    let root = Node {
        path: Vec::new(),
        text: String::new(),
        mass: 1.0,
    };
    let mut expand = |node: &Node,
                      logits: &[f32],
                      open: &mut std::collections::BinaryHeap<Node>| {
        let lp = log_softmax(logits);
        let allowed = digits.allowed(&node.text);
        let total: f64 = allowed.iter().map(|&t| (lp[t as usize] as f64).exp()).sum();
        for &t in &allowed {
            let m = node.mass * (lp[t as usize] as f64).exp() / total;
            let bin = match digits.text(t) {
                Some(piece) => {
                    let text = format!("{}{piece}", node.text);
                    let bin = bins.only(&digits.completions(&text));
                    if bin.is_none() {
                        open.push(Node {
                            path: [node.path.as_slice(), &[t]].concat(),
                            text,
                            mass: m,
                        });
                    }
                    bin
                }
                // An end token: the answer is the prefix itself.
                None => Some(bins.bin_of(digits.value(&node.text).expect("ends a whole answer"))),
            };
            if let Some(b) = bin {
                mass[b] += m;
            }
        }
        total
    };
    let outside = (1.0 - expand(&root, first, &mut open)).max(0.0);
    let mut left = budget;
    while left > 0 && !open.is_empty() {
        let mut batch: Vec<Node> = Vec::new();
        while batch.len() < WALK_ROWS.min(left) {
            match open.pop() {
                Some(n) => batch.push(n),
                None => break,
            }
        }
        left -= batch.len();
        // Prefixes of one length go through the model together, from the prompt, unpadded.
        batch.sort_by_key(|n| n.path.len());
        for group in batch.chunk_by(|a, b| a.path.len() == b.path.len()) {
            let mut cache = base.repeat_rows(group.len(), group[0].path.len())?;
            let feed: Vec<Vec<u32>> = group.iter().map(|n| n.path.clone()).collect();
            let logits = llama
                .forward(&feed, &mut cache, LogitsAt::Last)?
                .to_vec2::<f32>()?;
            for (node, row) in group.iter().zip(&logits) {
                expand(node, row, &mut open);
            }
        }
    }
    Ok(NumberDistribution {
        bins: labels.into_iter().zip(mass).collect(),
        unresolved: open.iter().map(|n| n.mass).sum(),
        outside,
    })
}

/// The most likely answer, token by token among the allowed ones (greedy), its digits fed to
/// `cache` (one row) after the prompt whose next-token logits are `first`. Returns the value and
/// the logits after its last digit; the end token is not fed.
pub fn greedy(
    llama: &Llama,
    cache: &mut Cache,
    first: Vec<f32>,
    digits: &Digits,
) -> Result<(i64, Vec<f32>), EngineError> {
    let mut text = String::new();
    let mut logits = first;
    loop {
        let best = digits
            .allowed(&text)
            .into_iter()
            .max_by(|&a, &b| {
                logits[a as usize]
                    .total_cmp(&logits[b as usize])
                    .then(b.cmp(&a))
            })
            .expect("a prefix always allows a token");
        let Some(piece) = digits.text(best) else {
            let v = digits.value(&text).expect("ends only a whole answer");
            return Ok((v, logits));
        };
        text.push_str(piece);
        logits = prefill(llama, cache, &[best])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_follow_the_range() {
        assert_eq!(completions(0, 120, ""), vec![(0, 120)]);
        assert_eq!(completions(0, 120, "1"), vec![(1, 1), (10, 19), (100, 120)]);
        assert_eq!(completions(0, 120, "13"), vec![(13, 13)]);
        assert_eq!(completions(0, 120, "0"), vec![(0, 0)]);
        assert_eq!(completions(0, 120, "01"), vec![]);
        assert_eq!(completions(0, 120, "-"), vec![]);
        assert_eq!(completions(-5, 5, "-"), vec![(-5, -1)]);
        assert_eq!(completions(-5, 5, "-0"), vec![]);
        assert_eq!(completions(-20, 5, "-1"), vec![(-1, -1), (-19, -10)]);
        assert_eq!(completions(50, 60, "5"), vec![(50, 59)]);
        assert_eq!(completions(50, 60, "7"), vec![]);
        // The extremes of i64 neither overflow nor vanish.
        let all = completions(i64::MIN, i64::MAX, "9");
        assert_eq!(
            all.last(),
            Some(&(9_000_000_000_000_000_000, i64::MAX as i128))
        );
        let low = completions(i64::MIN, i64::MAX, "-9223372036854775808");
        assert_eq!(low, vec![(i64::MIN as i128, i64::MIN as i128)]);
    }

    /// Llama 3 writes numbers in tokens of up to three digits: every one that starts a number
    /// in the range is allowed, and the answer ends exactly where the range says.
    #[test]
    fn llama3_digit_tokens_follow_the_range() {
        let tok = crate::tokenizer::tests::llama3();
        let id = |s: &str| tok.token_to_id(s).unwrap();
        let ends = tok.stop_ids();
        let d = Digits::new(0, 120, &tok, ends.clone()).unwrap();
        // "0".."9", "00".."99", "000".."999": 1,110 digit tokens, and the minus sign.
        let signs: Vec<&str> = d
            .tokens
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| t.starts_with('-'))
            .collect();
        assert_eq!(signs, ["-"]);
        assert_eq!(d.tokens.len(), 1111);
        let first = d.allowed("");
        assert!(first.contains(&id("120")) && first.contains(&id("7")));
        assert!(!first.contains(&id("121")) && !first.contains(&id("05")));
        assert_eq!(first.len(), 121, "0..=120 one token each, nothing longer");
        // "12" may end or take one more digit, "0" at most; "13" can only end.
        let after = d.allowed("12");
        assert_eq!(after.len(), 1 + ends.len());
        assert!(after.contains(&id("0")));
        assert_eq!(d.allowed("13"), ends);
        let neg = Digits::new(-50, -10, &tok, ends.clone()).unwrap();
        assert_eq!(
            neg.allowed("").len(),
            1,
            "only a minus sign starts a negative answer"
        );
        assert!(neg.allowed("-").contains(&id("15")));
        assert!(!neg.allowed("-").contains(&id("0")));
        assert_eq!(neg.value("-15"), Some(-15));
        assert_eq!(neg.value("-5"), None);
        // An end token that is a digit would make answers ambiguous.
        assert!(Digits::new(0, 9, &tok, vec![id("5")]).is_err());
    }

    #[test]
    fn bins_group_intervals() {
        let bins = Bins::new(0, 120, &[(18, 64), (0, 17)]);
        assert_eq!(bins.labels(), ["18-64", "0-17", "other"]);
        assert_eq!(bins.only(&[(3, 3), (30, 39)]), None);
        assert_eq!(bins.only(&[(20, 29)]), Some(0));
        assert_eq!(bins.only(&[(65, 120)]), Some(2));
        assert_eq!(bins.only(&[(10, 17), (5, 5)]), Some(1));
        assert_eq!(bins.only(&[(60, 70)]), None);
        assert_eq!(Bins::new(0, 64, &[(18, 64), (0, 17)]).rest, None);
        assert_eq!(
            Bins::new(0, 65, &[(18, 64), (0, 17)]).rest,
            Some("other".into())
        );
        assert_eq!(Bins::new(-3, 3, &[(-3, -1), (0, 0)]).bins[0].2, "-3 to -1");
        assert_eq!(Bins::each(1, 3).bins.len(), 3);
    }
}
