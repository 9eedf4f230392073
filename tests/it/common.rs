//! Shared test helpers: where the test model is, and the llama.cpp reference numbers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

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

/// The binary, offline, with no user presets and no `PERSONAS_*` settings from outside.
pub fn personas() -> Command {
    let mut cmd = Command::cargo_bin("personas").unwrap();
    cmd.env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        // No `<config dir>/personas/models.toml` of the user's: this directory does not exist.
        .env(
            "XDG_CONFIG_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-no-config"),
        )
        .env_remove("PERSONAS_MODEL")
        .env_remove("PERSONAS_MODELS")
        .env_remove("PERSONAS_MODELS_FILE")
        .env_remove("PERSONAS_DEVICE")
        .timeout(Duration::from_secs(900));
    cmd
}

pub fn gguf() -> String {
    test_gguf().display().to_string()
}

/// Runs `cmd`, requires success, returns stdout.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A study of 8 respondents asked with history (so each respondent is a group of its own and
/// the journal grows one line at a time), copied into `dir`; scripts/slurm_test.sh runs it too.
pub fn resumable_study(dir: &Path) -> PathBuf {
    let path = dir.join("study.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eight-respondents.toml"),
        &path,
    )
    .unwrap();
    path
}
