//! The test model against llama.cpp's own numbers (tests/fixtures, copied from
//! ../shared/reference: llama.cpp via llama-cpp-python 0.3.36, 2 threads).
//!
//! Tolerances. Both sides multiply Q4_1 weights by activations quantized to Q8_1, but llama.cpp
//! keeps its KV cache in f16 and runs attention through f16 (Q, probabilities), and sums in a
//! different order; over 30 layers that moves logits of magnitude ~30 by a few tenths. We
//! measured at most 0.50 (logit) and 0.37 (log-probability) on these prompts, and allow 0.75 on
//! logits and 0.5 on log-probabilities: tight enough that a wrong rope, norm, mask or head
//! layout (which move logits by whole units and reorder the top tokens) fails, loose enough for
//! llama.cpp's f16 noise. Where the argmax differs, the two leading tokens must be a near tie
//! in llama.cpp's own logits (less than the tolerance apart).

use crate::common;

use personas::engine::generate::generate;
use personas::engine::SamplingParams;
use personas::model::{gguf, Kernels, Llama};

const LOGIT_TOL: f32 = 0.75;
const LOGPROB_TOL: f32 = 0.5;
const F32_TOL: f32 = 0.5;
const NEAR_TIE: f32 = 0.25;

fn load(kernels: Kernels) -> Llama {
    let path = common::test_gguf();
    let content = gguf::read_content(&path).unwrap();
    gguf::load(&path, &content, &candle_core::Device::Cpu, kernels).unwrap()
}

/// The model under each way personas can run it on a CPU: candle's quantized matmuls and
/// attention (what a GPU runs), dense f32 copies of the weights, and personas' packed kernels on
/// every path this CPU has (AMX, AVX-512, AVX2, portable Rust; the default is the first). The
/// packed paths give the same bits as each other (src/model/cpu/tests.rs), so `slow` = false
/// leaves out the portable and AVX2 ones, which are many times slower, for long generations.
fn kernels(slow: bool) -> Vec<(&'static str, Llama)> {
    let mut candle = load(Kernels::Candle);
    candle.set_cpu_attention(false);
    let mut dense = load(Kernels::Candle);
    assert!(dense.densify(2 << 30).unwrap() > 0);
    let mut out = vec![("candle", candle), ("dense f32", dense)];
    for kind in [
        Kernels::Amx,
        Kernels::Avx512,
        Kernels::Avx2,
        Kernels::Portable,
    ] {
        if !kind.available() {
            eprintln!("note: this CPU cannot run the {kind} kernels: not checked here");
            continue;
        }
        if !slow && matches!(kind, Kernels::Avx2 | Kernels::Portable) {
            continue;
        }
        let llama = load(kind);
        assert_eq!(
            llama.packed_count(),
            211,
            "every projection and the output head"
        );
        out.push((kind.name(), llama));
    }
    out
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn log_sum_exp(xs: &[f32]) -> f32 {
    let max = xs.iter().copied().fold(f32::MIN, f32::max);
    max + xs.iter().map(|x| (x - max).exp()).sum::<f32>().ln()
}

#[test]
fn next_token_top20_matches_llamacpp() {
    for (kernel, llama) in kernels(true) {
        eprintln!("kernel: {kernel}");
        top20_matches(&llama);
    }
}

fn top20_matches(llama: &Llama) {
    top20_matches_in(llama, &common::reference());
}

fn top20_matches_in(llama: &Llama, reference: &serde_json::Value) {
    for case in reference["next_token"].as_array().unwrap() {
        let logits = common::last_logits(llama, &ids(&case["ids"]));
        let lse = log_sum_exp(&logits);
        let top = case["top20"].as_array().unwrap();
        for t in top {
            let id = t["id"].as_u64().unwrap() as usize;
            let want_logit = t["logit"].as_f64().unwrap() as f32;
            let want_lp = t["logprob"].as_f64().unwrap() as f32;
            assert!(
                (logits[id] - want_logit).abs() < LOGIT_TOL,
                "token {id}: logit {} vs llama.cpp {want_logit} for {:?}",
                logits[id],
                case["prompt"]
            );
            assert!(
                (logits[id] - lse - want_lp).abs() < LOGPROB_TOL,
                "token {id}: logprob {} vs llama.cpp {want_lp}",
                logits[id] - lse
            );
        }
        // Our top 20 is llama.cpp's top 20, up to the near ties at its lower edge.
        let edge = top[19]["logit"].as_f64().unwrap() as f32;
        let mut ours: Vec<usize> = (0..logits.len()).collect();
        ours.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        for &id in &ours[..20] {
            let in_ref = top.iter().any(|t| t["id"].as_u64().unwrap() as usize == id);
            assert!(
                in_ref || logits[id] < edge + LOGIT_TOL,
                "token {id} is in our top 20 (logit {}) but far outside llama.cpp's",
                logits[id]
            );
        }
        let ref_best = top[0]["id"].as_u64().unwrap() as usize;
        let our_best = ours[0];
        if our_best != ref_best {
            let gap = top[0]["logit"].as_f64().unwrap() as f32
                - top
                    .iter()
                    .find(|t| t["id"].as_u64().unwrap() as usize == our_best)
                    .map(|t| t["logit"].as_f64().unwrap() as f32)
                    .expect("our argmax is in llama.cpp's top 20");
            assert!(
                gap < LOGIT_TOL,
                "argmax {our_best} vs llama.cpp {ref_best}: not a near tie (gap {gap})"
            );
            eprintln!(
                "argmax differs by a near tie ({gap:.3}) on {:?}",
                case["prompt"]
            );
        }
    }
}

#[test]
fn greedy_continuations_match_llamacpp() {
    for (kernel, llama) in kernels(false) {
        eprintln!("kernel: {kernel}");
        greedy_matches(&llama);
    }
}

fn greedy_matches(llama: &Llama) {
    greedy_matches_in(llama, &common::reference());
}

fn greedy_matches_in(llama: &Llama, reference: &serde_json::Value) {
    // SmolLM2's end token; llama.cpp stopped at its EOS too.
    let stop = [2u32];
    for case in reference["greedy"].as_array().unwrap() {
        let prompt = ids(&case["ids"]);
        let want = ids(&case["greedy_ids"]);
        let got = generate(
            llama,
            &prompt,
            &SamplingParams::greedy(want.len()),
            &stop,
            0,
            &mut |_| true,
        )
        .unwrap()
        .tokens;
        if got == want[..want.len().min(got.len())] && got.len() == want.len() {
            continue;
        }
        // A divergence is allowed only where llama.cpp's choice and ours were a near tie in our
        // own logits at that step.
        let step = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        let mut context = prompt.clone();
        context.extend_from_slice(&want[..step]);
        let logits = common::last_logits(llama, &context);
        let ours = got.get(step).copied().unwrap_or(2) as usize;
        let theirs = want.get(step).copied().unwrap_or(2) as usize;
        let gap = (logits[ours] - logits[theirs]).abs();
        assert!(
            gap < LOGIT_TOL,
            "greedy diverges from llama.cpp at step {step} ({ours} vs {theirs}), gap {gap}, for {:?}",
            case["prompt"]
        );
        eprintln!("greedy diverges at step {step} on a near tie ({gap:.3})");
    }
}

/// llama.cpp with an f32 KV cache and flash attention off computes what personas computes
/// (scripts/llamacpp_f32.py). Its own default (f16 cache) differs from it by up to 0.31 on these
/// prompts: this model turns perturbations of 1e-3 in attention into tenths of a logit, so
/// summation order alone explains the 0.39 we measure. Where the argmax differs, both tokens are
/// within 0.25 in our logits: only on the survey prompt, where llama.cpp's two settings disagree
/// with each other too; there the two leading tokens are 0.05 apart with candle's kernels and
/// 0.10 to 0.15 with the int8, attention and SwiGLU kernels (their worst logit difference is
/// 0.41), which move with perturbations of 1e-7 (an exp rounded differently).
#[test]
fn next_token_matches_llamacpp_f32_attention_closely() {
    for (kernel, llama) in kernels(true) {
        eprintln!("kernel: {kernel}");
        f32_attention_matches(&llama);
    }
}

fn f32_attention_matches(llama: &Llama) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llamacpp_f32kv.json"
    ))
    .unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let worst = worst_logit_difference(llama, &reference["next_token"], NEAR_TIE, "f32");
    eprintln!("worst logit difference against llama.cpp f32: {worst}");
    assert!(worst < F32_TOL, "worst logit difference {worst}");
}

/// The largest difference between `llama`'s logits and llama.cpp's top 20 over `cases` (each
/// with `ids` and `top20`), after checking that where the argmax differs the two tokens are
/// within `near_tie` of each other.
fn worst_logit_difference(
    llama: &Llama,
    cases: &serde_json::Value,
    near_tie: f32,
    what: &str,
) -> f32 {
    let mut worst = 0f32;
    for case in cases.as_array().unwrap() {
        let logits = common::last_logits(llama, &ids(&case["ids"]));
        let top = case["top20"].as_array().unwrap();
        for t in top {
            let id = t["id"].as_u64().unwrap() as usize;
            worst = worst.max((logits[id] - t["logit"].as_f64().unwrap() as f32).abs());
        }
        let ours = personas::engine::sampling::argmax(&logits);
        let theirs = top[0]["id"].as_u64().unwrap() as usize;
        let margin = logits[ours] - logits[theirs];
        assert!(
            margin < near_tie,
            "{what}: argmax {ours} vs llama.cpp {theirs} with margin {margin}"
        );
    }
    worst
}

/// The test model requantized by llama.cpp's `llama-quantize` to each format personas packs
/// (`scripts/test` makes them with scripts/make_models.py; tests/fixtures/llamacpp_formats holds
/// llama.cpp's numbers on each, from scripts/llamacpp_formats.py), run by personas' default
/// kernels against llama.cpp with an f32 KV cache (what personas computes in).
///
/// Tolerances, measured: Q4_0 0.42, Q8_0 0.53, Q6_K 0.54, Q5_K_M 0.49, Q4_K_M 0.48 (candle's
/// kernels 0.38, 0.60, 0.45, 0.69, 0.40), hence 0.75 for every block format, as for the Q4_1
/// model. F16 (kept as stored, [`personas::model::cpu::half`]) quantizes no inputs: 0.012
/// measured (llama.cpp rounds the inputs of its f16 products to f16; personas keeps them f32),
/// so 0.05.
/// Inputs are quantized as llama.cpp quantizes them for each format (per 32 for Q4_0/Q8_0, per
/// 256 for K-quants, its Q8_K); quantizing K-quant inputs per 32 instead put Q4_K_M 1.25 away.
/// The kernels' products themselves are checked against exact dense products in src/model/cpu/tests.rs.
/// Where the argmax differs, the two tokens must be a near tie within the tolerance.
#[test]
fn every_packed_format_matches_llamacpp() {
    let dir = std::env::var_os("PERSONAS_TEST_MODELS")
        .map(std::path::PathBuf::from)
        .expect("PERSONAS_TEST_MODELS is not set: run `scripts/test`, which makes the models");
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llamacpp_formats"
    );
    for (format, tol) in [
        ("f16", 0.05),
        ("q4_0", 0.75),
        ("q8_0", 0.75),
        ("q6_k", 0.75),
        ("q5_k_m", 0.75),
        ("q4_k_m", 0.75),
    ] {
        let name = format!("smollm2-135m-{format}");
        let text = std::fs::read_to_string(format!("{fixtures}/{name}.json")).unwrap();
        let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
        let path = dir.join(format!("{name}.gguf"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}: run `scripts/test`", path.display()));
        assert_eq!(
            sha256_hex(&bytes),
            reference["model_sha256"].as_str().unwrap(),
            "{} is not the file llama.cpp's numbers were taken on",
            path.display()
        );
        let content = gguf::read_content(&path).unwrap();
        let kernels = Kernels::detect();
        let llama = gguf::load(&path, &content, &candle_core::Device::Cpu, kernels).unwrap();
        assert!(llama.packed_count() > 0, "{format}: nothing packed");
        let worst = worst_logit_difference(&llama, &reference["next_token_f32kv"], tol, format);
        eprintln!("{format} ({kernels} kernels): worst logit difference {worst}");
        assert!(
            worst < tol,
            "{format}: worst logit difference {worst} (tolerance {tol})"
        );
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
