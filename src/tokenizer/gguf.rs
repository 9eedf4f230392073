//! GGUF vocabularies (`tokenizer.ggml.*`) rebuilt as `tokenizers` pipelines that reproduce
//! llama.cpp, the program GGUF files are made for:
//!
//! * `tokenizer.ggml.model = "gpt2"`: byte-level BPE with ranked merges. Text is first split by
//!   the regexes llama.cpp (`llama-vocab.cpp`) uses for the file's `tokenizer.ggml.pre`, applied
//!   one after the other, each keeping the text between matches as pieces too.
//! * `tokenizer.ggml.model = "llama"`: SentencePiece BPE. llama.cpp repeatedly merges the
//!   adjacent pair whose concatenation is the highest-scoring token; a BPE whose merges are all
//!   two-token splits of every token, ranked by that token's score, does the same. Spaces become
//!   `▁`, each run of text gets a `▁` prefix (`add_space_prefix`), and characters outside the
//!   vocabulary fall back to `<0xNN>` byte tokens.

use std::collections::{HashMap, HashSet};

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::{
    byte_fallback::ByteFallback, byte_level::ByteLevel as ByteLevelDecoder,
};
use tokenizers::decoders::{fuse::Fuse, sequence::Sequence as DecoderSequence, strip::Strip};
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper};

use super::{PieceStyle, Result, Tokenizer, TokenizerError, STOP_TEXTS};

impl Tokenizer {
    /// Builds the tokenizer stored in a GGUF file's metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(content: &Content) -> Result<Self> {
        let meta = &content.metadata;
        let model = meta_str(meta, "tokenizer.ggml.model")?;
        let tokens = meta_strings(meta, "tokenizer.ggml.tokens")?;
        let types = match meta.get("tokenizer.ggml.token_type") {
            Some(_) => meta_array(meta, "tokenizer.ggml.token_type", int_value)?,
            None => vec![token_type::NORMAL.into(); tokens.len()],
        };
        let vocab = GgufVocab::new(tokens, &types)?;
        let pre = meta_str(meta, "tokenizer.ggml.pre")
            .ok()
            .and_then(PreTokenization::for_pre);
        let (mut inner, style, default_add_bos) = match model {
            "gpt2" => (
                byte_level_bpe(meta, &vocab)?,
                PieceStyle::ByteLevel,
                pre.is_some_and(|p| p.add_bos),
            ),
            "llama" => (
                sentencepiece(meta, &vocab)?,
                PieceStyle::SentencePiece,
                true,
            ),
            other => return Err(TokenizerError::UnsupportedModel(other.to_owned())),
        };

        // Special tokens are matched in the raw text, before any normalizer, as in llama.cpp.
        let added = |ty: &[i32], special: bool| -> Vec<AddedToken> {
            let tokens = vocab
                .tokens
                .iter()
                .zip(&vocab.types)
                .filter(|(_, t)| ty.contains(t));
            tokens
                .map(|(text, _)| AddedToken::from(text.clone(), special).normalized(false))
                .collect()
        };
        inner.add_special_tokens(&added(&[token_type::CONTROL, token_type::UNKNOWN], true));
        // User-defined tokens are not special: llama.cpp shows them even when skipping specials.
        inner.add_tokens(&added(&[token_type::USER_DEFINED], false));

        let n = vocab.tokens.len();
        let id = |key: &str| {
            let id = meta
                .get(key)
                .and_then(int_value)
                .and_then(|v| u32::try_from(v).ok());
            id.filter(|&id| (id as usize) < n)
        };
        // llama.cpp's defaults for SentencePiece files that do not name BOS/EOS.
        let spm_default = |id: u32| (model == "llama" && (id as usize) < n).then_some(id);
        Ok(Self {
            inner,
            style,
            bos: id("tokenizer.ggml.bos_token_id").or_else(|| spm_default(1)),
            eos: id("tokenizer.ggml.eos_token_id").or_else(|| spm_default(2)),
            eog: ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
                .iter()
                .filter_map(|k| id(k))
                .collect(),
            add_bos: meta
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(default_add_bos),
            vocab_size: n,
            chat_template: meta_str(meta, "tokenizer.chat_template")
                .ok()
                .map(str::to_owned),
        })
    }
}

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
pub(crate) mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const BYTE: i32 = 6;
}

/// GPT-2's pre-tokenizer regex.
const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Each digit on its own (SmolLM, StarCoder and others run this before [`RE_GPT2`]).
const RE_DIGIT: &str = r"\p{N}";

/// Llama 3's regex, with the contractions spelled out per case as llama.cpp has them: `(?i:)`
/// would also let Unicode case folding match `'ſ` for `'s`.
const RE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's regex: Llama 3's with single digits.
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How llama.cpp splits text for a byte-level BPE vocabulary, by `tokenizer.ggml.pre`.
struct PreTokenization {
    /// Regexes applied in turn, each splitting the pieces the previous one left.
    regexes: &'static [&'static str],
    /// Take a whole word when it is itself a token, skipping merges (Llama 3).
    ignore_merges: bool,
    /// llama.cpp's BOS default for this family when the file does not say.
    add_bos: bool,
}

impl PreTokenization {
    fn for_pre(pre: &str) -> Option<Self> {
        let (regexes, ignore_merges, add_bos): (&'static [&'static str], _, _) = match pre {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => (&[RE_LLAMA3], true, true),
            "dbrx" | "smaug-bpe" => (&[RE_LLAMA3], false, false),
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" | "hunyuan" => {
                (&[RE_QWEN2], false, false)
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => (&[RE_DIGIT, RE_GPT2], false, false),
            "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "exaone4" | "gigachat" | "mellum" => {
                (&[RE_GPT2], false, false)
            }
            _ => return None,
        };
        Some(Self {
            regexes,
            ignore_merges,
            add_bos,
        })
    }

    fn pre_tokenizer(&self) -> Result<PreTokenizerWrapper> {
        let mut steps = Vec::new();
        for re in self.regexes {
            let pattern = SplitPattern::Regex((*re).to_owned());
            let split = Split::new(pattern, tokenizers::SplitDelimiterBehavior::Isolated, false);
            steps.push(PreTokenizerWrapper::Split(
                split.map_err(TokenizerError::Tokenizers)?,
            ));
        }
        // The splits did the work; ByteLevel only maps each byte to its printable character.
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, false,
        )));
        Ok(PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(
            steps,
        )))
    }
}

/// A GGUF vocabulary, cleaned up as llama.cpp does when loading it.
struct GgufVocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    /// Token text to id; of duplicates the first wins.
    ids: HashMap<String, u32>,
}

impl GgufVocab {
    fn new(mut tokens: Vec<String>, types: &[i64]) -> Result<Self> {
        if types.len() < tokens.len() {
            return Err(TokenizerError::Metadata(
                "token_type is shorter than tokens".into(),
            ));
        }
        let mut types: Vec<i32> = types[..tokens.len()].iter().map(|&t| t as i32).collect();
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, token) in tokens.iter_mut().enumerate() {
            if token.is_empty() {
                *token = format!("[EMPTY_{i}]"); // llama.cpp's name; "" could never be produced
            }
            if ids.contains_key(token.as_str()) {
                eprintln!("warning: GGUF vocabulary repeats {token:?} (id {i}); keeping the first");
            } else {
                ids.insert(token.clone(), i as u32);
            }
            // End markers typed as normal text would be split up; llama.cpp makes them control.
            if types[i] == token_type::NORMAL && STOP_TEXTS.contains(&token.as_str()) {
                types[i] = token_type::CONTROL;
            }
        }
        Ok(Self { tokens, types, ids })
    }

    fn bpe_vocab(&self) -> Vocab {
        self.ids.iter().map(|(t, &id)| (t.clone(), id)).collect()
    }
}

/// GPT-2 style byte-level BPE from `tokenizer.ggml.tokens` / `merges` / `pre`.
fn byte_level_bpe(meta: &Metadata, vocab: &GgufVocab) -> Result<tokenizers::Tokenizer> {
    let pre = meta_str(meta, "tokenizer.ggml.pre").unwrap_or("");
    let pre_tokenization = PreTokenization::for_pre(pre).unwrap_or_else(|| {
        let note = "splitting with GPT-2's regex, which may differ from llama.cpp";
        eprintln!("warning: unknown GGUF pre-tokenizer {pre:?}: {note}");
        PreTokenization {
            regexes: &[RE_GPT2],
            ignore_merges: false,
            add_bos: false,
        }
    });

    let mut merges: Merges = Vec::new();
    let mut seen = HashSet::new();
    for merge in meta_strings(meta, "tokenizer.ggml.merges")? {
        // As llama.cpp: the separator is the first space after the first byte.
        let Some((pos, _)) = merge.char_indices().skip(1).find(|&(_, c)| c == ' ') else {
            continue;
        };
        let (left, right) = (&merge[..pos], &merge[pos + 1..]);
        let known = [left, right, &format!("{left}{right}")]
            .iter()
            .all(|t| vocab.ids.contains_key(*t));
        // A repeated pair keeps its first rank, as in llama.cpp (`tokenizers` would keep the last).
        if known && seen.insert((left.to_owned(), right.to_owned())) {
            merges.push((left.to_owned(), right.to_owned()));
        }
    }

    let bpe = BPE::builder()
        .vocab_and_merges(vocab.bpe_vocab(), merges)
        .ignore_merges(pre_tokenization.ignore_merges)
        .build()
        .map_err(TokenizerError::Tokenizers)?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenization.pre_tokenizer()?));
    tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::default())));
    Ok(tokenizer)
}

/// SentencePiece BPE from `tokenizer.ggml.tokens` / `scores` / `token_type`.
fn sentencepiece(meta: &Metadata, vocab: &GgufVocab) -> Result<tokenizers::Tokenizer> {
    let scores = match meta.get("tokenizer.ggml.scores") {
        Some(_) => {
            let score = |v: &Value| v.to_f32().ok().or_else(|| int_value(v).map(|x| x as f32));
            meta_array(meta, "tokenizer.ggml.scores", score)?
        }
        None => vec![0.0; vocab.tokens.len()],
    };
    if scores.len() < vocab.tokens.len() {
        return Err(TokenizerError::Metadata(
            "scores is shorter than tokens".into(),
        ));
    }
    let add_space_prefix = meta
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(true);

    let mut builder = BPE::builder()
        .vocab_and_merges(vocab.bpe_vocab(), sentencepiece_merges(vocab, &scores))
        .byte_fallback(true)
        .fuse_unk(true);
    let mut types = vocab.tokens.iter().zip(&vocab.types);
    if let Some((unk, _)) = types.find(|(_, &t)| t == token_type::UNKNOWN) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder.build().map_err(TokenizerError::Tokenizers)?;

    let replace = |from: &str, to: &str| Replace::new(from, to).map_err(TokenizerError::Tokenizers);
    let mut normalizers = vec![NormalizerWrapper::Replace(replace(" ", "▁")?)];
    let mut decoders = vec![
        DecoderWrapper::Replace(replace("▁", " ")?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if add_space_prefix {
        // Per run of text between special tokens, as llama.cpp prefixes each such fragment.
        normalizers.insert(0, NormalizerWrapper::Prepend(Prepend::new("▁".into())));
        // The prefix is not part of the text; after Fuse, so stripped once per decode.
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(NormalizerWrapper::Sequence(NormalizerSequence::new(
        normalizers,
    ))));
    tokenizer.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(
        decoders,
    ))));
    Ok(tokenizer)
}

/// BPE merges equivalent to SentencePiece's score-driven merging: every split of every token
/// into two tokens, ranked by the whole token's score, highest first.
fn sentencepiece_merges(vocab: &GgufVocab, scores: &[f32]) -> Merges {
    // Byte tokens are reached only by fallback; control and unknown tokens are split out of the
    // text before the BPE sees it.
    let mergeable = |id: u32| {
        !matches!(
            vocab.types[id as usize],
            token_type::BYTE | token_type::CONTROL | token_type::UNKNOWN
        )
    };
    let mut ranked: Vec<(f32, u32, &str, &str)> = Vec::new();
    for (id, token) in vocab.tokens.iter().enumerate() {
        let id = id as u32;
        if !mergeable(id) || vocab.ids.get(token) != Some(&id) {
            continue;
        }
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            let parts = vocab.ids.get(left).zip(vocab.ids.get(right));
            if parts.is_some_and(|(&l, &r)| mergeable(l) && mergeable(r)) {
                ranked.push((scores[id as usize], id, left, right));
            }
        }
    }
    // Ties (rare: scores are usually distinct) go to the lower id, then the shorter left part.
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.len().cmp(&b.2.len()))
    });
    ranked
        .into_iter()
        .map(|(_, _, l, r)| (l.to_owned(), r.to_owned()))
        .collect()
}

/// The byte of a `<0xNN>` byte-fallback token.
pub(super) fn parse_byte_token(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 2)
}

type Metadata = HashMap<String, Value>;

fn meta_str<'a>(meta: &'a Metadata, key: &str) -> Result<&'a str> {
    match meta.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(TokenizerError::Metadata(format!("{key} is not a string"))),
        None => Err(TokenizerError::Metadata(format!("missing {key}"))),
    }
}

/// An array's elements, each converted by `item`.
fn meta_array<T>(meta: &Metadata, key: &str, item: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>> {
    let bad = || TokenizerError::Metadata(format!("{key} is not an array of the expected type"));
    match meta.get(key) {
        Some(Value::Array(values)) => values.iter().map(|v| item(v).ok_or_else(bad)).collect(),
        Some(_) => Err(bad()),
        None => Err(TokenizerError::Metadata(format!("missing {key}"))),
    }
}

fn meta_strings(meta: &Metadata, key: &str) -> Result<Vec<String>> {
    meta_array(meta, key, |v| v.to_string().ok().cloned())
}

/// Any GGUF integer (ids are stored as U32 or I32 depending on the converter).
fn int_value(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => i64::try_from(x).ok()?,
        Value::I64(x) => x,
        _ => return None,
    })
}
