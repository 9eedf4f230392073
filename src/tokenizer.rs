//! TEMPORARY stub until the real tokenizer module lands.
use std::path::Path;
pub struct Tokenizer;
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct TokenizerError;
impl Tokenizer {
    pub fn from_gguf(
        _c: &candle_core::quantized::gguf_file::Content,
    ) -> Result<Self, TokenizerError> {
        Ok(Tokenizer)
    }
    pub fn from_file(_p: &Path, _c: Option<&Path>) -> Result<Self, TokenizerError> {
        Ok(Tokenizer)
    }
    pub fn chat_template(&self) -> Option<String> {
        None
    }
}
