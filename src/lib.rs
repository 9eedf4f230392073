//! personas: simulate people with large language models running locally.
//!
//! The modules follow the data's path: source (presets, references, the hub cache and
//! downloads) -> model loading -> tokenizer and chat template -> engine (batched forward,
//! sampling, scoring, constraints) -> study (population, personas, questions) -> runner ->
//! report -> cli; `diagnostics` serves every step's error messages.

pub mod chat;
pub mod cli;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod model;
pub mod report;
pub mod runner;
pub mod source;
pub mod study;
pub mod tokenizer;

pub use error::{Error, Result};
