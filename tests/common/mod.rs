//! Shared test helpers: where the test model is, and the llama.cpp reference numbers.
#![allow(dead_code)]

use std::path::PathBuf;

/// The test model (SmolLM2-135M-Instruct Q4_1). `scripts/test` fetches it first and exports
/// its path; a missing model fails the test loudly rather than skipping it.
pub fn test_gguf() -> PathBuf {
    let path = std::env::var_os("PERSONAS_TEST_GGUF")
        .map(PathBuf::from)
        .expect(
            "PERSONAS_TEST_GGUF is not set: run `scripts/test`, which fetches the test model first",
        );
    assert!(
        path.exists(),
        "test model {} is missing: run `scripts/test`",
        path.display()
    );
    path
}

pub fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llamacpp_reference.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Next-token logits after `prompt`, computed from an empty cache in one pass.
pub fn last_logits(llama: &personas::model::Llama, prompt: &[u32]) -> Vec<f32> {
    let mut cache = llama.new_cache(1, prompt.len()).unwrap();
    let logits = llama
        .forward(
            &[prompt.to_vec()],
            &mut cache,
            personas::model::LogitsAt::Last,
        )
        .unwrap();
    logits.squeeze(0).unwrap().to_vec1().unwrap()
}
