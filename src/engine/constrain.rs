//! Constrained answers: the model may only produce text that a [`Pattern`] accepts, so a
//! sampled answer is valid by construction and never needs a retry.
//!
//! A pattern is a sequence of literal text and choices. A choice is a set of allowed strings
//! (options like "1".."7" or "Democrat"/"Republican", or an integer range spelled out); a JSON
//! object whose values are choices (the workshop's survey answer, `{"item": 1..7, ...}`) is the
//! same thing with literal keys and punctuation between the choices. Literals are forced token by
//! token; at a choice the next token is drawn from the model's distribution restricted to the
//! tokens that continue some option (a token trie), renormalized. Temperature applies first, then
//! top-k / top-p / min-p among the allowed tokens only, so truncation never empties the set.

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;

use super::error::EngineError;
use super::number::Digits;
use super::sampling::{sample, SamplingParams};
use super::score;
use crate::model::{Cache, Llama, LogitsAt};
use crate::tokenizer::Tokenizer;

/// What users (and studies) describe.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Literal(String),
    Choice(Vec<String>),
    /// A whole number from `min` to `max`, written digit by digit ([`Digits`]).
    Number {
        min: i64,
        max: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub pieces: Vec<Piece>,
}

impl Pattern {
    /// Exactly one of `options`.
    pub fn options(options: Vec<String>) -> Self {
        Self {
            pieces: vec![Piece::Choice(options)],
        }
    }

    /// An integer between `min` and `max` inclusive.
    pub fn integer(min: i64, max: i64) -> Self {
        Self {
            pieces: vec![Piece::Number { min, max }],
        }
    }

    /// A one-line JSON object with these keys in this order, each value a choice or a number
    /// (options are written as given: `5` for numbers, `"A"` with quotes for strings).
    pub fn json_object(fields: &[(String, Piece)]) -> Self {
        let mut pieces = Vec::new();
        for (i, (key, value)) in fields.iter().enumerate() {
            let open = if i == 0 { "{" } else { ", " };
            let key = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
            pieces.push(Piece::Literal(format!("{open}{key}: ")));
            pieces.push(value.clone());
        }
        pieces.push(Piece::Literal("}".into()));
        Self { pieces }
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: BTreeMap<u32, usize>,
    /// Index of the option that ends here.
    terminal: Option<usize>,
}

/// Options as token sequences in a trie.
#[derive(Debug, Clone)]
pub struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    pub fn new(options: &[Vec<u32>]) -> Self {
        let indexed: Vec<(usize, Vec<u32>)> = options.iter().cloned().enumerate().collect();
        Self::with_options(&indexed)
    }

    /// Token sequences, each ending option `.0` (an option may have several spellings).
    pub fn with_options(options: &[(usize, Vec<u32>)]) -> Self {
        let mut nodes = vec![Node::default()];
        for (i, ids) in options.iter().map(|(i, ids)| (*i, ids)) {
            let mut at = 0;
            for &id in ids {
                at = match nodes[at].children.get(&id) {
                    Some(&next) => next,
                    None => {
                        nodes.push(Node::default());
                        let next = nodes.len() - 1;
                        nodes[at].children.insert(id, next);
                        next
                    }
                };
            }
            nodes[at].terminal.get_or_insert(i);
        }
        Self { nodes }
    }

    pub fn allowed(&self, node: usize) -> Vec<u32> {
        self.nodes[node].children.keys().copied().collect()
    }
}

#[derive(Debug, Clone)]
enum Step {
    Forced(Vec<u32>),
    Choice(Trie),
    Number(Digits),
}

/// A pattern with every piece tokenized.
#[derive(Debug, Clone)]
pub struct Compiled {
    steps: Vec<Step>,
}

impl Compiled {
    /// Tokenizes literals and options. Option strings are encoded as they would follow the
    /// literal before them, so the trie holds the tokenization the model itself would produce.
    pub fn new(pattern: &Pattern, tokenizer: &Tokenizer) -> Result<Self, EngineError> {
        let enc = |s: &str| score::encode(tokenizer, s);
        let mut steps = Vec::new();
        let mut before = String::new();
        // Set when a choice took the first token of the literal after it as its terminator.
        let mut skip_first = false;
        for (p, piece) in pattern.pieces.iter().enumerate() {
            match piece {
                Piece::Literal(text) => {
                    let mut ids = enc(text)?;
                    if std::mem::take(&mut skip_first) && !ids.is_empty() {
                        ids.remove(0);
                    }
                    steps.push(Step::Forced(ids));
                    before = text.clone();
                }
                Piece::Choice(options) => {
                    if options.is_empty() {
                        return Err(EngineError::Constraint("a choice has no options".into()));
                    }
                    let base = enc(&before)?;
                    let mut seqs = Vec::with_capacity(options.len());
                    for o in options {
                        seqs.push(vec![score::continuation(tokenizer, &before, &base, o)?]);
                    }
                    score::check_options(
                        tokenizer,
                        options
                            .iter()
                            .zip(&seqs)
                            .map(|(o, s)| (o.as_str(), s[0].as_slice())),
                    )?;
                    // "1" and "10": the shorter option is chosen only by what ends it, the
                    // literal after the choice or else the end of the turn.
                    if score::is_ambiguous(seqs.iter().map(|s| s[0].as_slice())) {
                        let ends = match pattern.pieces.get(p + 1) {
                            Some(Piece::Literal(next)) => {
                                skip_first = true;
                                enc(next)?.into_iter().take(1).collect()
                            }
                            _ => tokenizer.stop_ids(),
                        };
                        for s in &mut seqs {
                            let ids = s.remove(0);
                            s.extend(ends.iter().map(|&e| [ids.as_slice(), &[e]].concat()));
                        }
                    }
                    let flat: Vec<(usize, Vec<u32>)> = seqs
                        .into_iter()
                        .enumerate()
                        .flat_map(|(i, s)| s.into_iter().map(move |ids| (i, ids)))
                        .collect();
                    steps.push(Step::Choice(Trie::with_options(&flat)));
                    before.clear();
                }
                Piece::Number { min, max } => {
                    // The answer ends with what follows it, or with the end of the turn.
                    let ends = match pattern.pieces.get(p + 1) {
                        Some(Piece::Literal(next)) => {
                            skip_first = true;
                            enc(next)?.into_iter().take(1).collect()
                        }
                        _ => tokenizer.stop_ids(),
                    };
                    steps.push(Step::Number(Digits::new(*min, *max, tokenizer, ends)?));
                    before.clear();
                }
            }
        }
        Ok(Self { steps })
    }
}

impl Compiled {
    /// For a pattern that is a single choice among one-token options ("1".."7", "A"/"B"): the
    /// allowed tokens, in the order the decoder offers them, and the option each one picks.
    /// Such an answer is one draw from the prompt's logits: [`decode_constrained`] would make
    /// the same draw, and needs no model pass after it.
    pub fn single_token(&self) -> Option<(Vec<u32>, Vec<usize>)> {
        let [Step::Choice(trie)] = self.steps.as_slice() else {
            return None;
        };
        let mut ids = Vec::new();
        let mut picks = Vec::new();
        for (&token, &child) in &trie.nodes[0].children {
            let node = &trie.nodes[child];
            if !node.children.is_empty() {
                return None;
            }
            ids.push(token);
            picks.push(node.terminal?);
        }
        Some((ids, picks))
    }
}

/// What a row answered at one choice or number of its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The index of the option.
    Option(usize),
    Number(i64),
}

/// Where one row is inside its pattern.
#[derive(Debug, Clone)]
struct Cursor {
    step: usize,
    /// Position in a forced literal, or trie node in a choice.
    at: usize,
    /// The digits written so far in a number.
    digits: String,
    choices: Vec<Pick>,
}

impl Cursor {
    fn done(&self, c: &Compiled) -> bool {
        self.step >= c.steps.len()
    }

    /// Whether the next token is decided without the model: a literal, or a number that can
    /// only end.
    fn forced(&self, c: &Compiled) -> bool {
        match c.steps.get(self.step) {
            Some(Step::Forced(_)) => true,
            Some(Step::Number(d)) => d.allowed(&self.digits).len() == 1,
            _ => false,
        }
    }

    /// Skips empty literals and finished steps.
    fn settle(&mut self, c: &Compiled) {
        while let Some(Step::Forced(ids)) = c.steps.get(self.step) {
            if self.at < ids.len() {
                break;
            }
            self.step += 1;
            self.at = 0;
        }
    }

    fn next_token(
        &mut self,
        c: &Compiled,
        logits: &[f32],
        params: &SamplingParams,
        history: &[u32],
        rng: &mut ChaCha20Rng,
    ) -> u32 {
        match &c.steps[self.step] {
            Step::Forced(ids) => {
                let t = ids[self.at];
                self.at += 1;
                self.settle(c);
                t
            }
            Step::Choice(trie) => {
                let allowed = trie.allowed(self.at);
                let t = sample(logits, params, history, Some(&allowed), rng);
                self.at = trie.nodes[self.at].children[&t];
                let node = &trie.nodes[self.at];
                // Options are prefix-free in practice ("1".."7"); where one is a prefix of
                // another, the shorter one wins, so every path ends.
                if let Some(opt) = node.terminal {
                    self.choices.push(Pick::Option(opt));
                    self.step += 1;
                    self.at = 0;
                    self.settle(c);
                }
                t
            }
            Step::Number(digits) => {
                let allowed = digits.allowed(&self.digits);
                let t = sample(logits, params, history, Some(&allowed), rng);
                match digits.text(t) {
                    Some(piece) => self.digits.push_str(piece),
                    None => {
                        let v = digits
                            .value(&self.digits)
                            .expect("ends only a whole answer");
                        self.choices.push(Pick::Number(v));
                        self.digits.clear();
                        self.step += 1;
                        self.at = 0;
                        self.settle(c);
                    }
                }
                t
            }
        }
    }
}

/// A finished constrained row: the option chosen at each choice, and the tokens produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstrainedAnswer {
    pub choices: Vec<Pick>,
    pub tokens: Vec<u32>,
}

/// Decodes every row of `cache` under its pattern (`patterns[r]`, compiled), starting from its
/// next-token logits `logits[r]`, drawing with `rngs[r]`. Rows end when their pattern is complete.
///
/// Forced text costs no sampling and needs no logits until the next choice, so each row's run of
/// decided tokens (a drawn token and the literal after it, e.g. `, "next_key": `) goes through
/// the model in one multi-token step; rows advance by the shortest run in the batch and keep the
/// rest for the next step.
pub fn decode_constrained(
    llama: &Llama,
    cache: &mut Cache,
    mut logits: Vec<Vec<f32>>,
    params: &SamplingParams,
    patterns: &[&Compiled],
    mut rngs: Vec<ChaCha20Rng>,
) -> Result<Vec<ConstrainedAnswer>, EngineError> {
    let n = patterns.len();
    let mut cursors: Vec<Cursor> = (0..n)
        .map(|_| Cursor {
            step: 0,
            at: 0,
            digits: String::new(),
            choices: Vec::new(),
        })
        .collect();
    for (c, p) in cursors.iter_mut().zip(patterns) {
        c.settle(p);
    }
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); n];
    // Decided tokens not yet fed to the model, per row.
    let mut pending: Vec<std::collections::VecDeque<u32>> = vec![Default::default(); n];
    let mut active: Vec<usize> = (0..n).filter(|&i| !cursors[i].done(patterns[i])).collect();
    if active.len() < n {
        cache.retain_rows(&active)?;
        logits = active.iter().map(|&i| logits[i].clone()).collect();
    }
    while !active.is_empty() {
        let mut still = Vec::with_capacity(active.len());
        for (row, &i) in active.iter().enumerate() {
            if pending[i].is_empty() {
                // A decision from this row's logits, then whatever is forced after it.
                loop {
                    let t = cursors[i].next_token(
                        patterns[i],
                        &logits[row],
                        params,
                        &tokens[i],
                        &mut rngs[i],
                    );
                    tokens[i].push(t);
                    pending[i].push_back(t);
                    if !cursors[i].forced(patterns[i]) {
                        break;
                    }
                }
            }
            if cursors[i].done(patterns[i]) {
                // Nothing more to draw: the last tokens need no model pass.
                pending[i].clear();
            } else {
                still.push(row);
            }
        }
        if still.is_empty() {
            break;
        }
        if still.len() < active.len() {
            cache.retain_rows(&still)?;
            active = still.iter().map(|&r| active[r]).collect();
        }
        let k = active.iter().map(|&i| pending[i].len()).min().unwrap_or(1);
        let feed: Vec<Vec<u32>> = active
            .iter()
            .map(|&i| pending[i].drain(..k).collect())
            .collect();
        let out = llama.forward(&feed, cache, LogitsAt::Last)?;
        logits = out.to_vec2::<f32>()?;
    }
    Ok(cursors
        .into_iter()
        .zip(tokens)
        .map(|(c, tokens)| ConstrainedAnswer {
            choices: c.choices,
            tokens,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_shares_prefixes_and_marks_ends() {
        let t = Trie::new(&[vec![5, 6], vec![5, 7], vec![8]]);
        assert_eq!(t.allowed(0), vec![5, 8]);
        let n5 = t.nodes[0].children[&5];
        assert_eq!(t.allowed(n5), vec![6, 7]);
        assert_eq!(t.nodes[t.nodes[n5].children[&7]].terminal, Some(1));
    }

    #[test]
    fn single_token_choices_are_recognised() {
        let one = Compiled {
            steps: vec![Step::Choice(Trie::new(&[vec![8], vec![5]]))],
        };
        assert_eq!(one.single_token(), Some((vec![5, 8], vec![1, 0])));
        let two = Compiled {
            steps: vec![Step::Choice(Trie::new(&[vec![8], vec![5, 6]]))],
        };
        assert_eq!(two.single_token(), None);
        let literal = Compiled {
            steps: vec![
                Step::Forced(vec![1]),
                Step::Choice(Trie::new(&[vec![8], vec![5]])),
            ],
        };
        assert_eq!(literal.single_token(), None);
    }

    #[test]
    fn json_object_pattern_interleaves_keys_and_choices() {
        let p = Pattern::json_object(&[
            ("a".into(), Piece::Choice(vec!["1".into(), "2".into()])),
            ("b".into(), Piece::Choice(vec!["\"x\"".into()])),
        ]);
        assert_eq!(
            p.pieces,
            vec![
                Piece::Literal("{\"a\": ".into()),
                Piece::Choice(vec!["1".into(), "2".into()]),
                Piece::Literal(", \"b\": ".into()),
                Piece::Choice(vec!["\"x\"".into()]),
                Piece::Literal("}".into()),
            ]
        );
    }
}
