//! The safetensors loader, offline, on a Hugging Face checkpoint this test writes itself from
//! the test GGUF (SmolLM2-135M-Instruct Q4_1): every tensor dequantized to f32, renamed to
//! Hugging Face names, Q and K un-permuted back to Hugging Face's rotate-half rope layout, and
//! saved twice: one bf16 `model.safetensors`, and two f32 shards with an index. Both must
//! predict what the GGUF model predicts on the llama.cpp reference prompts.
//!
//! Tolerances, from what this test measures on the 4 `next_token` prompts (max |logit
//! difference| over the reference model's top 20 tokens; those logits are ~15 to 32):
//!
//! * Against "dense GGUF": the GGUF's own tensors dequantized to f32 and run in GGUF's
//!   interleaved-rope layout. The network is then mathematically the same as a correctly
//!   converted checkpoint; only the order of sums inside q·k differs.
//!   - f32 shards: measured 1.5e-5 to 1.9e-5; allowed [`DENSE_TOL`] = 1e-3. A wrong
//!     un-permutation, rope layout or tensor name moves logits by whole units.
//!   - bf16 file: rounding each weight to bf16 (8 significant bits, relative error up to 2^-9)
//!     measured 0.031 to 0.049; allowed [`BF16_DENSE_TOL`] = 0.15 (3x).
//! * Against the GGUF model itself (`gguf::load`): it quantizes every projection's input to
//!   Q8_1 (8-bit blocks of 32) inside its Q4_1 matmuls while safetensors multiplies dense f32,
//!   and this model turns such perturbations into tenths of a logit over 30 layers (the same
//!   size as llama.cpp's f16 noise in tests/it/llamacpp.rs). Measured 0.20 to 0.50 (f32) and 0.20
//!   to 0.46 (bf16); allowed [`GGUF_TOL`] = 0.75, 1.5x the worst and the tolerance
//!   tests/it/llamacpp.rs allows against llama.cpp.
//! * Argmax: the same, or the reference's choice within [`NEAR_TIE`] of the top in the
//!   checkpoint's own logits. On the fossil-fuels prompt the quantized GGUF picks token 5230 by
//!   0.205 over 57, while both checkpoints (and dense GGUF, and llama.cpp) pick 57, 5230 being
//!   0.047 (f32) / 0.032 (bf16) behind: a near tie that Q8_1 noise flips.
//!
//! The measured numbers are printed with `--nocapture`.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor};
use personas::model::net::{llama3_freq_factors, Block, Embedding, Linear};
use personas::model::{gguf, safetensors, Config, Kernels, Llama, LoadOptions, Model, ModelFiles};
use personas::tokenizer::Tokenizer;

const DENSE_TOL: f32 = 1e-3;
const BF16_DENSE_TOL: f32 = 0.15;
const BF16_COMPUTE_TOL: f32 = 0.75;
const BF16_COMPUTE_NEAR_TIE: f32 = 0.25;
const BF16_COMPUTE_GGUF_TOL: f32 = 1.0;
const GGUF_TOL: f32 = 0.75;
const NEAR_TIE: f32 = 0.1;
const TOP: usize = 20;

// ---------------------------------------------------------------------------------------------
// GGUF -> Hugging Face conversion.
// ---------------------------------------------------------------------------------------------

/// llama.cpp's `permute` from convert_hf_to_gguf.py, for the tests of its inverse:
/// `w.reshape(n_head, 2, head_dim / 2, cols).swapaxes(1, 2).reshape(w.shape)`.
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let half = w.dims2().unwrap().0 / heads / 2;
    swap_row_axes(w, heads, (2, half))
}

/// Views each head's rows as `axes` and swaps the two axes (rows move within a head only).
fn swap_row_axes(w: &Tensor, heads: usize, axes: (usize, usize)) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, axes.0, axes.1, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

/// Undoes llama.cpp's `permute` on a Q or K projection (rows = heads * head_dim).
///
/// Within one head of `head_dim = 2 * half` rows, Hugging Face rotates halves: row `i` and row
/// `i + half` form rotary pair `i`. llama.cpp rotates adjacent rows: rows `2i` and `2i + 1` form
/// pair `i`. `permute` views a Hugging Face head as `(2, half)` (index `(s, i)` = row
/// `s * half + i`) and swaps the axes to `(half, 2)`, so GGUF row `2i + s` holds Hugging Face
/// row `s * half + i`. The inverse views a GGUF head as `(half, 2)` (index `(i, s)` = row
/// `2i + s`) and swaps back to `(2, half)`: Hugging Face row `s * half + i` takes GGUF row
/// `2i + s`, i.e. the even rows of the head first, then the odd rows. Only rows move, within
/// each head; the input (column) axis is untouched. K uses the number of KV heads.
fn unpermute(w: &Tensor, heads: usize) -> Tensor {
    let half = w.dims2().unwrap().0 / heads / 2;
    swap_row_axes(w, heads, (half, 2))
}

/// The Hugging Face name of a GGUF tensor; `None` for tensors a Hugging Face llama lacks.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        // Llama 3 scaling lives in config.json's rope_scaling in Hugging Face checkpoints.
        "rope_freqs.weight" => return None,
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = gguf
        .strip_prefix("blk.")
        .unwrap_or_else(|| panic!("unknown tensor {gguf}"));
    let (layer, what) = rest.split_once('.').unwrap();
    let what = match what {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        other => panic!("unknown tensor {gguf} ({other})"),
    };
    Some(format!("model.layers.{layer}.{what}"))
}

/// The test GGUF, its config and every tensor dequantized to f32 under its GGUF name.
struct Gguf {
    content: Content,
    cfg: Config,
    tensors: HashMap<String, Tensor>,
}

/// The test GGUF, read and dequantized once for all tests.
fn gguf_f32() -> &'static Gguf {
    static GGUF: OnceLock<Gguf> = OnceLock::new();
    GGUF.get_or_init(read_gguf)
}

fn read_gguf() -> Gguf {
    let path = common::test_gguf();
    let content = gguf::read_content(&path).unwrap();
    let cfg = gguf::config(&content, &path, &Device::Cpu).unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let tensors = content
        .tensor_infos
        .keys()
        .map(|name| {
            let q = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            (name.clone(), q.dequantize(&Device::Cpu).unwrap())
        })
        .collect();
    Gguf {
        content,
        cfg,
        tensors,
    }
}

/// The GGUF's tensors under Hugging Face names, Q and K un-permuted, still f32.
fn hf_tensors(g: &Gguf) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = g
        .tensors
        .iter()
        .filter_map(|(name, t)| {
            let hf = hf_name(name)?;
            let t = if name.ends_with(".attn_q.weight") {
                unpermute(t, g.cfg.num_attention_heads)
            } else if name.ends_with(".attn_k.weight") {
                unpermute(t, g.cfg.num_key_value_heads)
            } else {
                t.clone()
            };
            Some((hf, t))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write_config(dir: &Path, g: &Gguf, torch_dtype: &str) {
    let cfg = &g.cfg;
    assert_eq!(cfg.head_dim * cfg.num_attention_heads, cfg.hidden_size);
    assert!(cfg.rope_freq_factors.is_none() && cfg.rope_linear_factor.is_none());
    let tied = !g.content.tensor_infos.contains_key("output.weight");
    let json = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "vocab_size": cfg.vocab_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": tied,
        "torch_dtype": torch_dtype,
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}

fn write_tokenizer(dir: &Path, g: &Gguf) {
    let tok = Tokenizer::from_gguf(&g.content).unwrap();
    tok.inner().save(dir.join("tokenizer.json"), false).unwrap();
}

fn to_dtype(tensors: &[(String, Tensor)], dtype: DType) -> HashMap<String, Tensor> {
    tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_dtype(dtype).unwrap()))
        .collect()
}

/// One `model.safetensors`.
fn write_single(dir: &Path, tensors: &[(String, Tensor)], dtype: DType) {
    candle_core::safetensors::save(&to_dtype(tensors, dtype), dir.join("model.safetensors"))
        .unwrap();
}

/// Two shards split by layer, as `save_pretrained` names them, plus the index.
fn write_sharded(dir: &Path, tensors: &[(String, Tensor)], dtype: DType, layers: usize) {
    let shard_of = |name: &str| -> usize {
        match name.strip_prefix("model.layers.") {
            Some(rest) => {
                let layer: usize = rest.split('.').next().unwrap().parse().unwrap();
                usize::from(layer >= layers / 2)
            }
            None if name == "model.embed_tokens.weight" => 0,
            None => 1,
        }
    };
    let files = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0usize;
    for (name, t) in tensors {
        let s = shard_of(name);
        let t = t.to_dtype(dtype).unwrap();
        total += t.elem_count() * dtype.size_in_bytes();
        weight_map.insert(name.clone(), files[s].into());
        shards[s].insert(name.clone(), t);
    }
    for (file, shard) in files.iter().zip(&shards) {
        assert!(!shard.is_empty());
        candle_core::safetensors::save(shard, dir.join(file)).unwrap();
    }
    let index = serde_json::json!({
        "metadata": { "total_size": total },
        "weight_map": weight_map,
    });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Running and comparing.
// ---------------------------------------------------------------------------------------------

fn ids(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn prompts() -> Vec<Vec<u32>> {
    common::reference()["next_token"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| ids(&c["ids"]))
        .collect()
}

/// The GGUF model's last-position logits on the reference prompts, computed once.
fn gguf_logits() -> &'static [Vec<f32>] {
    static LOGITS: OnceLock<Vec<Vec<f32>>> = OnceLock::new();
    LOGITS.get_or_init(|| {
        let path = common::test_gguf();
        let content = gguf::read_content(&path).unwrap();
        let llama = gguf::load(&path, &content, &Device::Cpu, Kernels::Candle).unwrap();
        prompts()
            .iter()
            .map(|p| common::last_logits(&llama, p))
            .collect()
    })
}

/// The same network with every weight dequantized to dense f32 (GGUF names, GGUF interleaved
/// rope): no activation quantization, so it differs from a correctly converted f32 checkpoint
/// only by the order of sums.
fn dense_logits() -> &'static [Vec<f32>] {
    static LOGITS: OnceLock<Vec<Vec<f32>>> = OnceLock::new();
    LOGITS.get_or_init(|| {
        let dense = dense_gguf(gguf_f32());
        prompts()
            .iter()
            .map(|p| common::last_logits(&dense, p))
            .collect()
    })
}

fn argmax(xs: &[f32]) -> usize {
    personas::engine::sampling::argmax(xs)
}

/// Max |logit difference| over `reference`'s top 20, after checking the argmax: the same, or
/// the reference's choice is a near tie with the top in the checkpoint's own logits (the
/// checkpoint would pick it too but for a difference under `near_tie`).
fn compare(what: &str, reference: &[f32], got: &[f32], near_tie: f32) -> f32 {
    assert_eq!(reference.len(), got.len(), "{what}: vocabulary size");
    assert!(
        got.iter().all(|x| x.is_finite()),
        "{what}: non-finite logits"
    );
    let (want, have) = (argmax(reference), argmax(got));
    if want != have {
        let margin = got[have] - got[want];
        assert!(
            margin < near_tie,
            "{what}: argmax {have} vs reference {want}, not a near tie in ours ({margin})"
        );
        eprintln!(
            "{what}: argmax {have} vs reference {want}: near tie, {margin:.3} apart in ours \
             ({:.3} in the reference)",
            reference[want] - reference[have]
        );
    }
    let mut order: Vec<usize> = (0..reference.len()).collect();
    order.sort_by(|a, b| reference[*b].total_cmp(&reference[*a]));
    order[..TOP]
        .iter()
        .map(|&i| (reference[i] - got[i]).abs())
        .fold(0.0, f32::max)
}

/// Loads a checkpoint directory through `Model::load` for `kernels`, with its logits on the
/// prompts.
fn load_checkpoint(dir: &Path, kernels: Kernels) -> (Model, Vec<Vec<f32>>) {
    let files = ModelFiles::Safetensors {
        dir: dir.to_path_buf(),
    };
    let options = LoadOptions {
        kernels,
        ..Default::default()
    };
    let model = Model::load(&files, &Device::Cpu, None, options).unwrap();
    let logits = prompts()
        .iter()
        .map(|p| common::last_logits(&model.llama, p))
        .collect();
    (model, logits)
}

/// What must hold of any checkpoint written from the GGUF, whatever its dtype.
fn check_loaded(model: &Model, g: &Gguf, dir: &Path) {
    // config.json round-trips to the GGUF's hyper-parameters; only the rope layout differs.
    let want = Config {
        rope_interleaved: false,
        ..g.cfg.clone()
    };
    assert_eq!(model.llama.cfg, want);
    assert_eq!(safetensors::config(dir).unwrap(), want);
    // The copied tokenizer encodes the reference prompts as llama.cpp did.
    for case in common::reference()["next_token"].as_array().unwrap() {
        let text = case["prompt"].as_str().unwrap();
        assert_eq!(
            model.tokenizer.encode(text, false).unwrap(),
            ids(&case["ids"]),
            "tokenizer.json encodes {text:?} differently"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn unpermute_inverts_llamacpp_permute() {
    let (heads, hd, cols) = (3, 8, 5);
    let hf = Tensor::arange(0f32, (heads * hd * cols) as f32, &Device::Cpu)
        .unwrap()
        .reshape((heads * hd, cols))
        .unwrap();
    let gguf = permute(&hf, heads);
    assert_ne!(gguf.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    assert_eq!(
        unpermute(&gguf, heads).to_vec2::<f32>().unwrap(),
        hf.to_vec2::<f32>().unwrap()
    );
    // The explicit row map: Hugging Face row h*hd + s*half + i is GGUF row h*hd + 2i + s.
    let (g, h) = (gguf.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    let half = hd / 2;
    for head in 0..heads {
        for s in 0..2 {
            for i in 0..half {
                assert_eq!(h[head * hd + s * half + i], g[head * hd + 2 * i + s]);
            }
        }
    }
}

/// The reason for the un-permutation: rotating adjacent pairs of a GGUF-layout vector and then
/// un-permuting equals un-permuting first and rotating halves.
#[test]
fn unpermuted_rope_halves_equals_interleaved_rope() {
    let (b, heads, t, hd) = (1, 2, 3, 8);
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (b, heads, t, hd), &dev).unwrap();
    let angles: Vec<f32> = (0..t * hd / 2).map(|k| 0.3 * k as f32 + 0.1).collect();
    let angles = Tensor::from_vec(angles, (t, hd / 2), &dev).unwrap();
    let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
    // A head vector's last axis is what a Q/K row index within a head was: reorder it like rows.
    let unperm = |x: &Tensor| {
        let rows = x.reshape((b * heads * t, hd)).unwrap().t().unwrap();
        unpermute(&rows.contiguous().unwrap(), 1)
            .t()
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b, heads, t, hd))
            .unwrap()
    };
    let interleaved = unperm(&candle_nn::rotary_emb::rope_i(&x, &cos, &sin).unwrap());
    let halves = candle_nn::rotary_emb::rope(&unperm(&x), &cos, &sin).unwrap();
    let diff = (interleaved - halves)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-6, "rope layouts disagree by {diff}");
}

/// Writes a checkpoint, loads it, checks config and tokenizer, and returns the worst logit
/// differences against (quantized GGUF, dense GGUF).
fn roundtrip(
    what: &str,
    dtype: DType,
    sharded: bool,
    kernels: Kernels,
    near_tie: f32,
) -> (f32, f32) {
    let g = gguf_f32();
    let tensors = hf_tensors(g);
    assert!(
        tensors.iter().all(|(n, _)| n != "lm_head.weight"),
        "the test GGUF ties its embeddings"
    );
    let dir = tempfile::tempdir().unwrap();
    let torch_dtype = match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    };
    write_config(dir.path(), g, torch_dtype);
    if sharded {
        write_sharded(dir.path(), &tensors, dtype, g.cfg.num_hidden_layers);
        assert_eq!(safetensors::weight_files(dir.path()).unwrap().len(), 2);
        assert!(!dir.path().join("model.safetensors").exists());
    } else {
        write_single(dir.path(), &tensors, dtype);
        assert_eq!(
            safetensors::weight_files(dir.path()).unwrap(),
            vec![dir.path().join("model.safetensors")]
        );
    }
    write_tokenizer(dir.path(), g);
    let matrix_weights: usize = tensors
        .iter()
        .filter(|(_, t)| t.rank() == 2)
        .map(|(_, t)| t.elem_count())
        .sum();
    drop(tensors);

    let (model, logits) = load_checkpoint(dir.path(), kernels);
    check_loaded(&model, g, dir.path());
    // bf16 matrices stay as stored, two bytes a weight (the tied table once), for personas'
    // half-precision kernels (the network around them in f32); f32 checkpoints go to candle.
    // Through candle (as on a GPU) bf16 stays bf16 and the network computes in it.
    let (count, bytes, computes_in) = match (dtype, kernels.packs()) {
        (DType::BF16, true) => (
            7 * g.cfg.num_hidden_layers + 1,
            2 * matrix_weights,
            DType::F32,
        ),
        _ => (0, 0, dtype),
    };
    assert_eq!(model.llama.packed_count(), count, "{what}: kept as stored");
    assert_eq!(model.llama.packed_bytes(), bytes, "{what}: bytes kept");
    assert_eq!(model.llama.dtype(), computes_in, "{what}: computes in");
    drop(model);
    let (mut worst, mut worst_dense) = (0f32, 0f32);
    for (i, got) in logits.iter().enumerate() {
        let d = compare(
            &format!("{what} vs GGUF, prompt {i}"),
            &gguf_logits()[i],
            got,
            near_tie,
        );
        let d_dense = compare(
            &format!("{what} vs dense GGUF, prompt {i}"),
            &dense_logits()[i],
            got,
            near_tie,
        );
        eprintln!(
            "{what}, prompt {i}: max |logit diff| over top {TOP}: {d:.4} vs GGUF, \
             {d_dense:.2e} vs dense GGUF"
        );
        worst = worst.max(d);
        worst_dense = worst_dense.max(d_dense);
    }
    eprintln!("{what}: worst {worst:.4} vs GGUF, {worst_dense:.2e} vs dense GGUF");
    (worst, worst_dense)
}

#[test]
fn bf16_single_file_matches_gguf() {
    let (worst, worst_dense) = roundtrip(
        "bf16 model.safetensors",
        DType::BF16,
        false,
        Kernels::detect(),
        NEAR_TIE,
    );
    assert!(
        worst_dense < BF16_DENSE_TOL,
        "bf16 vs dense GGUF: {worst_dense}"
    );
    assert!(worst < GGUF_TOL, "bf16 vs GGUF: {worst}");
}

/// What a GPU runs, on the CPU: candle's kernels with the bf16 weights, hidden states and KV
/// cache in bf16 (attention scores and softmax in f32). bf16 activations (8 significant bits
/// after every norm, projection and residual) move logits further than bf16 weights alone:
/// measured 0.14 to 0.38 vs dense GGUF (allowed [`BF16_COMPUTE_TOL`] = 0.75) and 0.24 to 0.71
/// vs the quantized GGUF (allowed [`BF16_COMPUTE_GGUF_TOL`] = 1.0); the one argmax that moves
/// is a near tie 0.001 apart in the GGUF and 0.125 in bf16 (allowed
/// [`BF16_COMPUTE_NEAR_TIE`] = 0.25).
#[test]
fn bf16_computed_in_bf16_as_on_a_gpu() {
    let (worst, worst_dense) = roundtrip(
        "bf16 through candle in bf16",
        DType::BF16,
        false,
        Kernels::Candle,
        BF16_COMPUTE_NEAR_TIE,
    );
    assert!(
        worst_dense < BF16_COMPUTE_TOL,
        "bf16 compute vs dense GGUF: {worst_dense}"
    );
    assert!(
        worst < BF16_COMPUTE_GGUF_TOL,
        "bf16 compute vs GGUF: {worst}"
    );
}

#[test]
fn f32_sharded_matches_gguf() {
    let (worst, worst_dense) = roundtrip(
        "f32 2 shards",
        DType::F32,
        true,
        Kernels::detect(),
        NEAR_TIE,
    );
    assert!(worst_dense < DENSE_TOL, "f32 vs dense GGUF: {worst_dense}");
    assert!(worst < GGUF_TOL, "f32 vs GGUF: {worst}");
}

/// The GGUF network with every weight dequantized to dense f32, GGUF names and layout.
fn dense_gguf(g: &Gguf) -> Llama {
    let t = |name: &str| g.tensors[name].clone();
    let lin = |name: &str| Linear::new(QMatMul::Tensor(t(name)));
    let blocks = (0..g.cfg.num_hidden_layers)
        .map(|i| {
            let p = format!("blk.{i}");
            Block {
                attn_norm: t(&format!("{p}.attn_norm.weight")),
                wq: lin(&format!("{p}.attn_q.weight")),
                wk: lin(&format!("{p}.attn_k.weight")),
                wv: lin(&format!("{p}.attn_v.weight")),
                wo: lin(&format!("{p}.attn_output.weight")),
                ffn_norm: t(&format!("{p}.ffn_norm.weight")),
                w_gate: lin(&format!("{p}.ffn_gate.weight")),
                w_up: lin(&format!("{p}.ffn_up.weight")),
                w_down: lin(&format!("{p}.ffn_down.weight")),
            }
        })
        .collect();
    assert!(g.cfg.rope_interleaved);
    Llama::new(
        g.cfg.clone(),
        Embedding::Dense(t("token_embd.weight")),
        blocks,
        t("output_norm.weight"),
        lin("token_embd.weight"),
        Device::Cpu,
    )
}

/// Hugging Face transformers' `_compute_llama3_parameters` (modeling_rope_utils.py), written
/// out step by step in f32 as torch computes it, returning the divisor of each pair's inverse
/// frequency (what llama.cpp stores as `rope_freqs.weight`).
// `!(a < b) && !(a > c)` mirrors torch's `~(wavelen < high) * ~(wavelen > low)`.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn transformers_llama3_factors(
    dim: usize,
    base: f32,
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    old_context_len: f32,
) -> Vec<f32> {
    // _compute_default_rope_parameters: 1 / base ** (arange(0, dim, 2) / dim)
    let inv_freq: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|k| 1.0 / base.powf(k as f32 / dim as f32))
        .collect();
    let low_freq_wavelen = old_context_len / low_freq_factor;
    let high_freq_wavelen = old_context_len / high_freq_factor;
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            // torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
            let llama = if wavelen > low_freq_wavelen {
                f / factor
            } else {
                f
            };
            let smooth = (old_context_len / wavelen - low_freq_factor)
                / (high_freq_factor - low_freq_factor);
            let smoothed = (1.0 - smooth) * llama / factor + smooth * llama;
            let medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
            let scaled = if medium { smoothed } else { llama };
            f / scaled
        })
        .collect()
}

#[test]
fn llama3_freq_factors_match_transformers() {
    let got = llama3_freq_factors(64, 500000.0, 8.0, 1.0, 4.0, 8192.0);
    let want = transformers_llama3_factors(64, 500000.0, 8.0, 1.0, 4.0, 8192.0);
    assert_eq!(got.len(), 32);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * w,
            "pair {i}: factor {g}, transformers {w}"
        );
    }
    // High frequencies (wavelength < 8192 / 4 = 2048 positions: pairs 0..=14 for theta 5e5,
    // head_dim 64) keep their frequency; low ones (wavelength > 8192: pairs 18..) are slowed 8x;
    // the pairs in between move smoothly and monotonically from 1 to 8.
    let wavelen = |i: usize| 2.0 * std::f64::consts::PI * 500000f64.powf(2.0 * i as f64 / 64.0);
    for (i, &f) in got.iter().enumerate() {
        if wavelen(i) < 2048.0 {
            assert_eq!(f, 1.0, "pair {i}");
        } else if wavelen(i) > 8192.0 {
            assert!((f - 8.0).abs() < 1e-6, "pair {i}: {f}");
        } else {
            assert!(f > 1.0 && f < 8.0, "pair {i}: {f}");
        }
    }
    assert!(
        got.windows(2).all(|w| w[1] >= w[0]),
        "not monotone: {got:?}"
    );
    let medium = (0..32).filter(|&i| got[i] > 1.0 && got[i] < 8.0).count();
    assert_eq!(medium, 3, "{got:?}");
    assert_eq!((got[14], got[18]), (1.0, 8.0), "{got:?}");
}

#[test]
fn config_json_llama3_rope_scaling() {
    let dir = tempfile::tempdir().unwrap();
    // Llama 3.2 1B's config.json, abridged.
    let json = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "vocab_size": 128256,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "max_position_embeddings": 131072,
        "rope_scaling": {
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3"
        },
        "tie_word_embeddings": true,
        "torch_dtype": "bfloat16",
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009]
    });
    std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
    let cfg = safetensors::config(dir.path()).unwrap();
    let factors = cfg.rope_freq_factors.clone().expect("llama3 rope_scaling");
    assert_eq!(
        factors,
        llama3_freq_factors(64, 500000.0, 32.0, 1.0, 4.0, 8192.0)
    );
    let want = transformers_llama3_factors(64, 500000.0, 32.0, 1.0, 4.0, 8192.0);
    assert!(factors
        .iter()
        .zip(&want)
        .all(|(g, w)| (g - w).abs() <= 1e-4 * w));
    assert_eq!((factors[0], factors[31]), (1.0, 32.0));
    assert!(!cfg.rope_interleaved);
    assert_eq!((cfg.num_key_value_heads, cfg.head_dim), (8, 64));
    // The scaling reaches the rotary frequencies: the lowest pair turns 32x slower.
    let base = 1.0 / 500000f64.powf(62.0 / 64.0);
    assert!((cfg.inv_freq()[31] - base / 32.0).abs() < 1e-9 * base);

    // Without rope_scaling (or with the "default" type) there is nothing to scale.
    let mut plain = json.clone();
    plain.as_object_mut().unwrap().remove("rope_scaling");
    std::fs::write(dir.path().join("config.json"), plain.to_string()).unwrap();
    assert_eq!(
        safetensors::config(dir.path()).unwrap().rope_freq_factors,
        None
    );
    let mut default = json.clone();
    default["rope_scaling"]["rope_type"] = "default".into();
    std::fs::write(dir.path().join("config.json"), default.to_string()).unwrap();
    assert_eq!(
        safetensors::config(dir.path()).unwrap().rope_freq_factors,
        None
    );
}
