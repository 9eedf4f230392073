//! personas: simulate people with large language models running locally.
//!
//! The modules follow the data's path: registry of model presets -> hub download -> model
//! loading -> tokenizer and chat template -> engine (batched forward, sampling, scoring,
//! constraints) -> study (population, personas, questions) -> runner -> report -> cli.

pub mod engine;
pub mod model;
pub mod tokenizer;
