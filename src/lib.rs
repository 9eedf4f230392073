//! personas: simulate people with large language models running locally.
//!
//! The modules follow the data's path: registry of model presets -> hub download -> model
//! loading -> tokenizer and chat template -> engine (batched forward, sampling, scoring,
//! constraints) -> study (population, personas, questions) -> runner -> report -> cli.

pub mod chat;
pub mod cli;
pub mod engine;
pub mod error;
pub mod hub;
pub mod locate;
pub mod model;
pub mod registry;
pub mod report;
pub mod runner;
pub mod study;
pub mod tokenizer;

pub use error::{Error, Result};
