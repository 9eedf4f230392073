//! The integration tests, in one binary: one link of the crate and its dependencies instead
//! of one per file, and one process whose test threads keep both cores busy to the end.
//!
//! Model tests read the test model from `PERSONAS_TEST_GGUF` (and the per-format copies from
//! `PERSONAS_TEST_MODELS`); `scripts/test` fetches them first. Run one group with
//! `cargo test --test it cli::` (or `runner::`, `llamacpp::`, `safetensors::`, `cache::`,
//! `report::`). The report test also needs Chromium (`scripts/test` installs it where it can).

mod cache;
mod cli;
mod common;
mod llamacpp;
mod report;
mod runner;
mod safetensors;
