//! Streaming detokenization: generated ids in, complete UTF-8 text out.

use super::{Result, Tokenizer, TokenizerError};

/// Incremental detokenizer: feed generated ids one at a time, get back text pieces that are
/// complete UTF-8, so a character split across byte tokens appears once its last byte arrives.
///
/// It keeps the state of `tokenizers`' own step decoding ([`step_decode_stream`], what its
/// `DecodeStream` runs) without borrowing the tokenizer, so it can be stored next to it: each
/// step decodes the ids since the last emitted text plus the new one and emits what goes beyond
/// that text; a trailing U+FFFD (an incomplete character) waits for more bytes.
///
/// [`step_decode_stream`]: tokenizers::tokenizer::step_decode_stream
#[derive(Debug, Clone, Default)]
pub struct DecodeStream {
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
    skip_special: bool,
}

impl DecodeStream {
    /// A new stream; `skip_special` leaves control tokens out of the text.
    pub fn new(skip_special: bool) -> Self {
        Self {
            skip_special,
            ..Self::default()
        }
    }

    /// Adds one id; returns the text it completes, if any.
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>> {
        tokenizers::tokenizer::step_decode_stream(
            tokenizer.inner(),
            vec![id],
            self.skip_special,
            &mut self.ids,
            &mut self.prefix,
            &mut self.prefix_index,
        )
        .map_err(TokenizerError::Tokenizers)
    }

    /// Returns whatever is held back (an incomplete character shows as U+FFFD) and resets.
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>> {
        let full = tokenizer.decode(&self.ids, self.skip_special)?;
        let rest = full.get(self.prefix.len()..).unwrap_or_default().to_owned();
        *self = Self::new(self.skip_special);
        Ok((!rest.is_empty()).then_some(rest))
    }
}
