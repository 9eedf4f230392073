#!/usr/bin/env python3
"""personas against llama.cpp's own tools at their best, in one run, with peak memory. Not part
of CI.

    python3 scripts/compare_tools.py [--models GGUF,GGUF,...] [--threads 2] [--out results.json]
                                     [--prefill 128] [--decode 64] [--rows 16,64]
                                     [--survey-respondents 20] [--personas target/release/personas]
                                     [--skip-survey]

Needs `cargo build --release`, scripts/build_llamacpp.sh (llama-bench, llama-batched-bench) and,
for the survey, llama-cpp-python 0.3.36 in target/models-venv or target/llamacpp-venv (what
scripts/llamacpp_formats.py installs). Models default to the test model in Q4_1 and the random
1B (scripts/make_models.py) in Q4_K_M and Q4_0, whichever exist under target/models/.

Workloads, the same on both sides, each model, --threads threads:
    prefill  --prefill tokens into an empty cache. llama.cpp: `llama-bench -p N -n 0` (its best:
             the whole prompt in one batch, flash attention as it picks); personas:
             `personas bench --prefill N`.
    decode   one sequence, --decode tokens after a short prompt. llama.cpp: `llama-bench -p 0
             -n N`; personas: `personas bench --decode N` (greedy, one token per step).
    rows     R sequences decoded together from one shared 64-token prompt (R in --rows).
             llama.cpp: `llama-batched-bench -npp 64 -ntg 64 -npl R -pps` (prompt shared, its
             "S_TG t/s"); personas: `personas bench --prefill 64 --decode 64 --rows R`.
    survey   the workshop's privacy survey, --survey-respondents x 8 items scored exactly.
             llama.cpp: ../shared/reference/llamacpp_survey.py survey-cached (two-level prefix
             cache, KV rewinds); personas: `personas run examples/privacy-calculus-separate.toml
             --mode exact`. Answers per second.
    memory   peak resident memory (max RSS from /usr/bin/time) of the decode run on each side.

llama-bench and llama-batched-bench run with their defaults otherwise (mmap on, f16 KV cache).
Output: a table per model and, with --out, all raw figures as JSON. Each figure is also given as
a share of this machine's ceiling, measured in the same run (`personas bench --ceilings`): the
multiply-add peak of all threads for prefill, many rows and the survey (its multiply-adds from
the tokens the run computed), the read bandwidth for one row's decoding (its weights once a
token). Both tools do the same work per token, so both get a share.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "llamacpp", "bin")
SURVEY_SCRIPT = os.path.join(os.path.dirname(ROOT), "shared", "reference", "llamacpp_survey.py")
STUDY = os.path.join(ROOT, "examples", "privacy-calculus-separate.toml")
DEFAULT_MODELS = ["smollm2-135m-q4_1", "llama-1b-q4_k_m", "llama-1b-q4_0"]


def run(cmd, timeout=1800, env=None):
    """Runs `cmd` under /usr/bin/time -v; returns (stdout, stderr, max RSS in MB)."""
    timed = ["/usr/bin/time", "-v"] + cmd if os.path.exists("/usr/bin/time") else cmd
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(timed, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return p.stdout, p.stderr, (int(m.group(1)) / 1024 if m else None)


def llama_bench(gguf, threads, prefill, decode):
    out, _, _ = run([os.path.join(BIN, "llama-bench"), "-m", gguf, "-t", str(threads), "-p",
                     str(prefill), "-n", "0", "-r", "3", "-o", "json"])
    pp = json.loads(out)[0]["avg_ts"]
    out, _, rss = run([os.path.join(BIN, "llama-bench"), "-m", gguf, "-t", str(threads), "-p", "0",
                       "-n", str(decode), "-r", "3", "-o", "json"])
    tg = json.loads(out)[0]["avg_ts"]
    return {"prefill_tok_s": pp, "decode_tok_s": tg, "peak_mb": rss}


def llama_batched(gguf, threads, rows):
    ctx = 64 + rows * 64 + 256
    out, err, rss = run([os.path.join(BIN, "llama-batched-bench"), "-m", gguf, "-t", str(threads),
                         "-c", str(ctx), "-b", "2048", "-ub", "512", "-npp", "64", "-ntg", "64",
                         "-npl", str(rows), "-pps"])
    text = out + err
    # |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[0] == "64" and cells[2] == str(rows):
            return {"rows": rows, "decode_tok_s": float(cells[7]), "peak_mb": rss}
    raise RuntimeError(f"cannot read llama-batched-bench's table:\n{text[-2000:]}")


def venv_python():
    for v in ("models-venv", "llamacpp-venv"):
        py = os.path.join(ROOT, "target", v, "bin", "python")
        if os.path.exists(py) and subprocess.run([py, "-c", "import llama_cpp"],
                                                 capture_output=True).returncode == 0:
            return py
    return None


def llama_survey(gguf, respondents):
    py = venv_python()
    if py is None:
        raise RuntimeError("llama-cpp-python is not installed (see scripts/llamacpp_formats.py)")
    out, _, rss = run([py, SURVEY_SCRIPT, gguf, "survey-cached", str(respondents)])
    m = re.search(r"([0-9.]+) answers/s", out)
    return {"answers_per_second": float(m.group(1)), "peak_mb": rss}


def personas_bench(binary, gguf, threads, prefill, decode, rows=1, ceilings=False):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    # --ceilings: the machine's peaks measured after the timed runs (its 256 MiB read buffer
    # counts in that run's peak memory, so never in the run whose memory is reported).
    out, _, rss = run([binary, "bench", "--model", gguf, "--prefill", str(prefill), "--decode",
                       str(decode), "--rows", str(rows), "--threads", str(threads), "--repeats",
                       "2", "--json"] + (["--ceilings"] if ceilings else []), env=env)
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_mb"] = rss
    return res


def personas_survey(binary, gguf, threads, respondents):
    with tempfile.TemporaryDirectory() as tmp:
        text = open(STUDY).read()
        text = re.sub(r"(?m)^size = \d+", f"size = {respondents}", text, count=1)
        study = os.path.join(tmp, "study.toml")
        open(study, "w").write(text)
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        _, _, rss = run([binary, "run", study, "--mode", "exact", "--quiet", "--out",
                         os.path.join(tmp, "out"), "--model", gguf], env=env)
        manifest = json.load(open(os.path.join(tmp, "out", "manifest.json")))
        t = manifest["timings"]
        return {"answers_per_second": t["answers_per_second"], "peak_mb": rss,
                "kernels": (manifest.get("model") or {}).get("kernels"),
                "macs_per_s": t.get("multiply_adds", 0) / t["run_seconds"] if t["run_seconds"] else 0}


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=128)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--rows", default="16,64")
    ap.add_argument("--survey-respondents", type=int, default=20)
    ap.add_argument("--skip-survey", action="store_true")
    ap.add_argument("--personas", default=os.path.join(ROOT, "target", "release", "personas"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    models = a.models.split(",") if a.models else [
        p for p in (os.path.join(ROOT, "target", "models", m + ".gguf") for m in DEFAULT_MODELS)
        if os.path.exists(p)]
    rows = [int(r) for r in a.rows.split(",") if r]
    results = []
    for gguf in models:
        name = os.path.basename(gguf)
        r = {"model": name, "llama.cpp": {}, "personas": {}}
        lc, pe = r["llama.cpp"], r["personas"]
        # The machine's ceilings, measured before and after the model's runs (see `personas
        # bench --ceilings`); the higher of the two stands, since on a shared VM they sag at
        # moments (two vCPUs on one core halve the multiply-add peak).
        ceilings = [personas_bench(a.personas, gguf, a.threads, 1, 1, ceilings=True)["ceilings"]]
        lc.update(llama_bench(gguf, a.threads, a.prefill, a.decode))
        p1 = personas_bench(a.personas, gguf, a.threads, a.prefill, a.decode)
        pe.update({"prefill_tok_s": p1["prefill_tok_s"], "decode_tok_s": p1["decode_tok_s"],
                   "peak_mb": p1["peak_mb"]})
        for n in rows:
            lc[f"rows{n}_tok_s"] = llama_batched(gguf, a.threads, n)["decode_tok_s"]
            pe[f"rows{n}_tok_s"] = personas_bench(a.personas, gguf, a.threads, 64, 64, n)["decode_tok_s"]
        survey_macs_s = None
        if not a.skip_survey:
            try:
                lc["survey_answers_s"] = llama_survey(gguf, a.survey_respondents)["answers_per_second"]
            except Exception as e:  # the personas side still runs
                print(f"llama.cpp survey: {e}", file=sys.stderr)
            sv = personas_survey(a.personas, gguf, a.threads, a.survey_respondents)
            pe["survey_answers_s"] = sv["answers_per_second"]
            survey_macs_s = sv["macs_per_s"]
        ceilings.append(personas_bench(a.personas, gguf, a.threads, 1, 1, ceilings=True)["ceilings"])
        c = dict(ceilings[0])
        for key in ("int8_macs_per_s", "f32_fmas_per_s", "read_bytes_per_s"):
            c[key] = max((x[key] for x in ceilings if x.get(key)), default=None)
        r["ceilings"], r["ceilings_measured"] = c, ceilings
        # Work per unit of each figure, and the ceiling that bounds it: a prefill token's
        # multiply-adds against the multiply-add peak, a decoded token's weight bytes against
        # read bandwidth, a batched token's multiply-adds (with the output head) against the
        # peak. Both tools do the same work per token. For the survey, personas' own count (its
        # filler included, which llama.cpp does not compute): its share only.
        w = p1["work"]
        peak = c["f32_fmas_per_s"] if w["f32_products"] else c["int8_macs_per_s"]
        per = {"prefill_tok_s": (w["prefill_token_macs"], peak),
               "decode_tok_s": (w["token_bytes"], c["read_bytes_per_s"])}
        per.update({f"rows{n}_tok_s": (w["decode_token_macs"], peak) for n in rows})
        survey_share = survey_macs_s / peak if survey_macs_s and peak else None
        results.append(r)
        print(f"\n{name} ({a.threads} threads)")
        int8 = c.get("int8_macs_per_s")
        print(f"ceilings: {int8 and round(int8 / 1e9, 1)} G byte multiply-adds/s "
              f"({c.get('int8_instruction')}), {c['f32_fmas_per_s'] / 1e9:.1f} G f32 FMA/s, "
              f"{c['read_bytes_per_s'] / 1e9:.1f} GB/s read")
        print("| workload | llama.cpp | personas | personas / llama.cpp | llama.cpp, share of "
              "ceiling | personas, share of ceiling |\n| --- | --- | --- | --- | --- | --- |")
        keys = ["prefill_tok_s", "decode_tok_s"] + [f"rows{n}_tok_s" for n in rows] + \
            ["survey_answers_s", "peak_mb"]
        for k in keys:
            x, y = lc.get(k), pe.get(k)
            if x is None and y is None:
                continue
            rt = ratio(y, x)
            label = "peak memory MB (ratio: lower is better)" if k == "peak_mb" else k
            work, top = per.get(k, (None, None))
            share = lambda v: f"{100 * v * work / top:.0f}%" if v and work and top else "-"
            sx, sy = share(x), share(y)
            if k == "survey_answers_s" and survey_share:
                sy = f"{100 * survey_share:.0f}%"
            r.setdefault("shares", {})[k] = {"llama.cpp": sx, "personas": sy}
            print(f"| {label} | {x and round(x, 1)} | {y and round(y, 1)} | {rt} | {sx} | {sy} |",
                  flush=True)
    if a.out:
        json.dump(results, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
