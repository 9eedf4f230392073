//! The engine: everything that runs the network to produce answers. Generation and sampling
//! here; batched prompts, exact option scoring and constraints build on the same forward pass.

pub mod constrain;
pub mod generate;
pub mod number;
pub mod sampling;
pub mod score;
pub mod session;

pub use generate::{Generation, StopReason};
pub use sampling::SamplingParams;

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
