"""llama.cpp reference numbers for GGUFs in several quantization formats: token ids, next-token
top-20 logits (f16 KV cache, llama-cpp-python's default, and again with an f32 KV cache), and
greedy continuations. One JSON fixture per model, in the schema of
../shared/reference/llamacpp_golden.py (fields model_file, reference, tokenize, next_token, greedy)
plus model_sha256, kv_type ("f16", for next_token and greedy), next_token_f32kv, spec_file and
settings.

Usage (from anywhere; paths are relative to the repository root):
    python scripts/llamacpp_formats.py [GGUF ...] [--spec SPEC.json] [--out-dir DIR]
                                       [--threads N] [--greedy-cap N]
Default GGUFs: target/models/smollm2-135m-{q4_0,q4_1,q4_k_m,q5_k_m,q6_k,q8_0}.gguf,
target/models/llama-1b-q4_k_m.gguf, target/models/llama-1b-q4_0.gguf.
Default spec: ../shared/reference/smollm2-135m-q4_1.spec.json
({"tokenize": [str], "next_token": [prompt], "greedy": [{"prompt", "n"}]}).
Output: tests/fixtures/llamacpp_formats/<gguf stem>.json.

Same logic as llamacpp_golden.py: n_ctx=4096, prompts are raw text tokenized with special tokens
parsed and no BOS added; next_token evaluates the prompt after a reset and takes the last
position's logits (top 20 with log-probabilities over the full vocabulary); greedy takes the
argmax step by step (stopping at EOS). Greedy n is capped at --greedy-cap (default 24).
Models with more than 500M parameters (the random-weight 1B models) get a reduced profile:
only the first 2 next_token prompts and greedy n=8, to keep the fixtures small.
Flash attention is off in both runs (the default in 0.3.36); the f32 run uses type_k=type_v=0
(GGML_TYPE_F32).

Needs llama-cpp-python==0.3.36 and numpy, e.g.
    target/models-venv/bin/python scripts/llamacpp_formats.py
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)

DEFAULT_MODELS = [f"target/models/smollm2-135m-{q}.gguf"
                  for q in ("q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k", "q8_0")] + [
    "target/models/llama-1b-q4_k_m.gguf", "target/models/llama-1b-q4_0.gguf"]
DEFAULT_SPEC = "../shared/reference/smollm2-135m-q4_1.spec.json"
DEFAULT_OUT = "tests/fixtures/llamacpp_formats"
N_CTX = 4096
BIG_PARAMS = 500_000_000
BIG_NEXT_TOKEN = 2
BIG_GREEDY_N = 8


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def load(gguf, threads, f32kv):
    kw = dict(type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32) if f32kv else {}
    return Llama(model_path=gguf, n_ctx=N_CTX, n_threads=threads, verbose=False,
                 flash_attn=False, **kw)


def last_logits(llm):
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def tok(llm, s):
    return llm.tokenize(s.encode(), add_bos=False, special=True)


def next_token(llm, prompts):
    out = []
    for p in prompts:
        ids = tok(llm, p)
        llm.reset(); llm.eval(ids); lg = last_logits(llm)
        top = np.argsort(-lg, kind="stable")[:20]
        lse = float(np.log(np.exp(lg - lg.max()).sum()) + lg.max())
        out.append({"prompt": p, "ids": ids,
                    "top20": [{"id": int(i), "logit": float(lg[i]), "logprob": float(lg[i] - lse)}
                              for i in top]})
    return out


def greedy(llm, cases):
    out = []
    for g in cases:
        ids = tok(llm, g["prompt"])
        llm.reset(); llm.eval(ids); outp = []
        for _ in range(g["n"]):
            t = int(np.argmax(last_logits(llm))); outp.append(t)
            if t == llm.token_eos():
                break
            llm.eval([t])
        out.append({"prompt": g["prompt"], "n": g["n"], "ids": ids, "greedy_ids": outp,
                    "text": llm.detokenize(outp).decode("utf-8", "replace")})
    return out


def run_model(gguf, spec, spec_path, out_dir, threads, greedy_cap):
    t0 = time.time()
    stem = os.path.splitext(os.path.basename(gguf))[0]
    llm = load(gguf, threads, f32kv=False)
    n_params = int(llama_cpp.llama_model_n_params(llm._model.model))
    big = n_params > BIG_PARAMS
    prompts = spec.get("next_token", [])
    cases = [{"prompt": g["prompt"], "n": min(g["n"], greedy_cap)} for g in spec.get("greedy", [])]
    if big:
        prompts = prompts[:BIG_NEXT_TOKEN]
        cases = [{"prompt": g["prompt"], "n": min(g["n"], BIG_GREEDY_N)} for g in cases]
    res = {"model_file": os.path.basename(gguf),
           "model_sha256": sha256(gguf),
           "model_n_params": n_params,
           "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, n_threads={threads}, "
                        f"n_ctx={N_CTX}, flash_attn off; made by scripts/llamacpp_formats.py",
           "spec_file": os.path.basename(spec_path),
           "kv_type": "f16",
           "settings": {"n_ctx": N_CTX, "n_threads": threads, "flash_attn": False,
                        "add_bos": False, "special": True, "greedy_cap": greedy_cap,
                        "reduced_profile": big},
           "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
           "tokenize": [{"text": s, "ids": tok(llm, s)} for s in spec.get("tokenize", [])]}
    res["next_token"] = next_token(llm, prompts)
    res["greedy"] = greedy(llm, cases)
    del llm
    llm = load(gguf, threads, f32kv=True)
    res["next_token_f32kv"] = next_token(llm, prompts)
    del llm
    res["elapsed_s"] = round(time.time() - t0, 1)
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, stem + ".json")
    with open(out, "w") as f:
        json.dump(res, f, ensure_ascii=False, indent=1)
        f.write("\n")
    top1 = [c["top20"][0]["id"] for c in res["next_token"]]
    top1_f32 = [c["top20"][0]["id"] for c in res["next_token_f32kv"]]
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {res['elapsed_s']} s): top1 {top1}, "
          f"top1 f32kv {top1_f32}, greedy {[g['greedy_ids'] for g in res['greedy']]}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", nargs="*", default=DEFAULT_MODELS)
    ap.add_argument("--spec", default=DEFAULT_SPEC)
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--greedy-cap", type=int, default=24)
    a = ap.parse_args()
    spec = json.load(open(a.spec))
    missing = [g for g in a.gguf if not os.path.exists(g)]
    if missing:
        sys.exit(f"missing GGUF(s): {missing}")
    t0 = time.time()
    for g in a.gguf:
        run_model(g, spec, a.spec, a.out_dir, a.threads, a.greedy_cap)
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
