//! What can go wrong while the engine runs the network: the prompt, the tokenizer, a
//! constraint, an option the model cannot write, the chat template, the tensors.

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("constraint: {0}")]
    Constraint(String),
    #[error("option `{option}` cannot be an answer of this model: {why}")]
    Option { option: String, why: String },
    #[error("chat template: {0}")]
    Template(#[from] crate::chat::ChatError),
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl crate::diagnostics::Hint for EngineError {
    fn hint(&self) -> Option<String> {
        matches!(self, EngineError::Option { .. }).then(|| {
            "reword the option so the model's vocabulary can write it, distinct from the others"
                .into()
        })
    }
}
