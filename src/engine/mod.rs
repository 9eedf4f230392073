//! The engine: everything that runs the network to produce answers. Generation and sampling
//! here; batched prompts, exact option scoring and constraints build on the same forward pass.

pub mod constrain;
mod error;
pub mod generate;
pub mod number;
pub mod sampling;
pub mod score;
pub mod session;

pub use error::EngineError;
pub use generate::{Generation, StopReason};
pub use sampling::SamplingParams;
