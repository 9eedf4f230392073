//! personas: simulate people with large language models running locally.
//!
//! The modules follow the data's path: source (presets, references, the hub cache and
//! downloads) -> model loading -> tokenizer and chat template -> engine (batched forward,
//! sampling, scoring, constraints) -> study (population, personas, questions) -> runner ->
//! report -> cli; `diagnostics` serves every step's error messages.

// The docs are for the people who work on personas as much as for its callers: they link the
// private helpers a public item is built on (`cargo doc --document-private-items` shows them).
#![allow(rustdoc::private_intra_doc_links)]

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
