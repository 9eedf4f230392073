//! Text to token ids and back, built on the `tokenizers` crate.
//!
//! A [`Tokenizer`] comes from a Hugging Face `tokenizer.json` (plus `tokenizer_config.json` for
//! BOS/EOS, `add_bos_token` and the chat template), or from the vocabulary in a GGUF file's
//! metadata, rebuilt as a `tokenizers` pipeline that reproduces llama.cpp (`gguf`).
//! [`DecodeStream`] turns generated ids into text as they come (`stream`).
//!
//! Control, unknown and user-defined tokens are added tokens, so chat markup such as
//! `<|im_start|>` encodes to its single id, as llama.cpp does with special-token parsing on.
//! [`Tokenizer::encode`] always parses them: our prompts come from our own chat templates.

mod gguf;
mod stream;

use std::fmt;
use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::tokenizer::Decoder as _;

use gguf::parse_byte_token;

#[cfg(test)]
pub(crate) use gguf::token_type;
pub use stream::DecodeStream;

/// Errors from loading a tokenizer or from encoding and decoding.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `tokenizer_config.json` is not valid JSON.
    #[error("cannot parse {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// GGUF tokenizer metadata is missing or has the wrong type.
    #[error("GGUF tokenizer metadata: {0}")]
    Metadata(String),
    /// The GGUF names a tokenizer model we do not implement.
    #[error("unsupported GGUF tokenizer model {0:?} (supported: \"gpt2\", \"llama\")")]
    UnsupportedModel(String),
    /// An error from the `tokenizers` crate (loading, encoding or decoding).
    #[error("tokenizer: {0}")]
    Tokenizers(#[source] tokenizers::Error),
}

/// Result alias for this module.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Token texts that end a turn or a document. llama.cpp stops on these whatever the file's
/// token types say, and so do we.
const STOP_TEXTS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<end_of_turn>",
];

/// How one token's text maps to the text it stands for (see [`Tokenizer::token_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceStyle {
    /// GPT-2 byte-level: each character stands for one byte.
    ByteLevel,
    /// SentencePiece: `▁` is a space and `<0xNN>` a raw byte.
    SentencePiece,
    /// Anything else: ask the tokenizer's decoder.
    Decoder,
}

/// A tokenizer with the special tokens and chat template of its model.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    style: PieceStyle,
    bos: Option<u32>,
    eos: Option<u32>,
    /// End-of-turn / end-of-message ids named by GGUF metadata.
    eog: Vec<u32>,
    add_bos: bool,
    vocab_size: usize,
    chat_template: Option<String>,
}

impl fmt::Debug for Tokenizer {
    // Not derived: the inner tokenizer would print the whole vocabulary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos_token())
            .field("eos", &self.eos_token())
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`, with `tokenizer_config.json` (when given) for the
    /// BOS/EOS tokens, `add_bos_token` and `chat_template`.
    ///
    /// Without a config, BOS/EOS are guessed from well-known token names, and BOS is added when
    /// the tokenizer's own post-processor adds it (as Llama 3's does).
    pub fn from_file(tokenizer_json: &Path, config_json: Option<&Path>) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_file(tokenizer_json).map_err(TokenizerError::Tokenizers)?;
        let config = config_json.map(read_config).transpose()?;
        let config = |key: &str| config.as_ref().and_then(|c| c.get(key));
        let special = |key: &str, fallbacks: &[&str]| {
            config(key)
                .and_then(special_token_content)
                .and_then(|t| inner.token_to_id(&t))
                .or_else(|| fallbacks.iter().find_map(|t| inner.token_to_id(t)))
        };
        let bos = special("bos_token", &["<|begin_of_text|>", "<s>", "<bos>"]);
        let eos = special(
            "eos_token",
            &["<|eot_id|>", "<|im_end|>", "</s>", "<eos>", "<|endoftext|>"],
        );
        let add_bos = match config("add_bos_token").and_then(|v| v.as_bool()) {
            Some(add) => add,
            None => bos.is_some_and(|bos| {
                let with_special = inner.encode_fast("", true);
                with_special.is_ok_and(|e| e.get_ids().first() == Some(&bos))
            }),
        };
        let style = match inner.get_decoder().map(serde_json::to_string) {
            Some(Ok(json)) if json.contains("\"ByteLevel\"") => PieceStyle::ByteLevel,
            Some(Ok(json)) if json.contains("Metaspace") || json.contains("ByteFallback") => {
                PieceStyle::SentencePiece
            }
            _ => PieceStyle::Decoder,
        };
        Ok(Self {
            vocab_size: inner.get_vocab_size(true),
            inner,
            style,
            bos,
            eos,
            eog: Vec::new(),
            add_bos,
            chat_template: config("chat_template").and_then(chat_template_from_config),
        })
    }

    /// Encodes `text`, parsing special tokens in it. With `add_special`, BOS is prepended when
    /// the model wants one ([`add_bos`](Self::add_bos)).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        // BOS is added here, not by a post-processor, so that both sources behave alike.
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(TokenizerError::Tokenizers)?;
        let bos = self.bos.filter(|_| add_special && self.add_bos);
        Ok(bos
            .into_iter()
            .chain(encoding.get_ids().iter().copied())
            .collect())
    }

    /// Decodes ids to text; `skip_special` leaves out control tokens such as `<|im_end|>`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(TokenizerError::Tokenizers)
    }

    /// The text one token stands for, e.g. `" Hello"` for `ĠHello` or `▁Hello`. A token that
    /// is only part of a UTF-8 character shows as U+FFFD; special tokens show their markup.
    pub fn token_text(&self, id: u32) -> String {
        let Some(piece) = self.inner.id_to_token(id) else {
            return String::new();
        };
        let added = self.inner.get_added_vocabulary().simple_id_to_token(id);
        if added.is_some() {
            return piece;
        }
        match self.style {
            PieceStyle::ByteLevel => ByteLevelDecoder::default()
                .decode(vec![piece.clone()])
                .unwrap_or(piece),
            PieceStyle::SentencePiece => match parse_byte_token(&piece) {
                Some(byte) => String::from_utf8_lossy(&[byte]).into_owned(),
                None => piece.replace('▁', " "),
            },
            PieceStyle::Decoder => self.inner.decode(&[id], false).unwrap_or(piece),
        }
    }

    /// The id of a token given its exact text (e.g. `"<|im_end|>"`).
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// The BOS token's id and text, if the model has one.
    pub fn bos_token(&self) -> Option<(u32, String)> {
        self.bos
            .and_then(|id| Some((id, self.inner.id_to_token(id)?)))
    }

    /// The EOS token's id and text, if the model has one.
    pub fn eos_token(&self) -> Option<(u32, String)> {
        self.eos
            .and_then(|id| Some((id, self.inner.id_to_token(id)?)))
    }

    /// Whether [`encode`](Self::encode) with `add_special` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids that end generation, sorted: EOS, end-of-turn and end-of-message, and the
    /// well-known end markers (`<|im_end|>`, `<|eot_id|>`, `<|end_of_text|>`, ...) present.
    pub fn stop_ids(&self) -> Vec<u32> {
        let named = STOP_TEXTS.iter().filter_map(|t| self.inner.token_to_id(t));
        let mut ids: Vec<u32> = self
            .eos
            .into_iter()
            .chain(self.eog.iter().copied())
            .chain(named)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Number of token ids (the model's vocabulary, added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The model's chat template (GGUF `tokenizer.chat_template` or `tokenizer_config.json`'s
    /// `chat_template`), if it ships one.
    pub fn chat_template(&self) -> Option<String> {
        self.chat_template.clone()
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// A fresh [`DecodeStream`] for streaming generated ids as text.
    pub fn decode_stream(&self, skip_special: bool) -> DecodeStream {
        DecodeStream::new(skip_special)
    }
}

fn read_config(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
        path: path.to_owned(),
        source,
    })
}

/// `"bos_token": "<s>"` or `"bos_token": {"content": "<s>", ...}`.
fn special_token_content(value: &serde_json::Value) -> Option<String> {
    let content = value.get("content").unwrap_or(value);
    content.as_str().map(str::to_owned)
}

/// `chat_template` is a string, or a list of `{name, template}` whose "default" is the chat one.
fn chat_template_from_config(value: &serde_json::Value) -> Option<String> {
    let default = || {
        let list = value.as_array()?;
        list.iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))?
            .get("template")
    };
    value
        .as_str()
        .or_else(|| default()?.as_str())
        .map(str::to_owned)
}

#[cfg(test)]
pub(crate) mod tests;
