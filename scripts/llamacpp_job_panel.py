#!/usr/bin/env python3
"""llama.cpp's speed on the workshop's job panel (examples/job-panel.toml), for comparison with
`personas run examples/job-panel.toml`. Not part of CI.

    target/llamacpp-venv/bin/python scripts/llamacpp_job_panel.py GGUF

llama.cpp gets its best setup for this study: the shared system text evaluated once, each job's
persona once, each question from that saved state (two-level prefix cache, as
../shared/reference/llamacpp_survey.py does for the privacy survey), and all 20 samples of a
question drawn from that one set of next-token logits restricted to the options' tokens (every
option here is one token, so one draw is a whole answer). Prompts follow personas' layout
(ChatML; persona appended to the system prompt; question, newline, instruction); the
instruction wording may differ from personas' by a few tokens. Prints answers/s.
"""
import sys
import time
import tomllib

import numpy as np
import llama_cpp
from llama_cpp import Llama

SYSTEM = ("You are a virtual person simulator that creates individual synthetic personas, one at a time, "
          "that I can specify and then ask them any questions I like. Don\u2019t change out of your role "
          "unless I ask you to. This means that you respond in the style that the persona would and that "
          "you answer the way the persona would \u2013 no matter the implications. Be brief. Do not write "
          "any additional explanations unless I ask you to.")


def instruction(q):
    if q["type"] == "scale":
        return f"Answer with a single number from {q['min']} ({q['min_label']}) to {q['max']} ({q['max_label']})."
    if q["type"] == "yes_no":
        return f"Answer {q.get('no', 'No')} for No or {q.get('yes', 'Yes')} for Yes."
    opts = [o if isinstance(o, str) else f"{o['code']} ({o['label']})" for o in q["options"]]
    return "Answer with " + ", ".join(opts[:-1]) + " or " + opts[-1] + "."


def options(q):
    if q["type"] == "scale":
        return [str(i) for i in range(q["min"], q["max"] + 1)]
    if q["type"] == "yes_no":
        return [str(q.get("no", "No")), str(q.get("yes", "Yes"))]
    return [o if isinstance(o, str) else o["code"] for o in q["options"]]


def main():
    gguf = sys.argv[1]
    study = tomllib.load(open(sys.argv[2] if len(sys.argv) > 2 else "examples/job-panel.toml", "rb"))
    samples = study["sampling"]["samples"]
    people = study["population"]["people"]
    questions = study["questions"]
    llm = Llama(model_path=gguf, n_ctx=2048, n_threads=2, n_batch=512, verbose=False)
    rng = np.random.default_rng(study.get("seed", 0))

    def logits():
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()

    def rewind(k):
        llm.n_tokens = k
        llm._ctx.kv_cache_seq_rm(-1, k, -1)

    def tok(text):
        return llm.tokenize(text.encode(), add_bos=False, special=True)

    def prompt(person, q):
        persona = f"Your occupation is {person['job'].lower()}. {person['concerns']}"
        return (f"<|im_start|>system\n{SYSTEM}\n\n{persona}<|im_end|>\n<|im_start|>user\n"
                f"{q['text']}\n{instruction(q)}<|im_end|>\n<|im_start|>assistant\n")

    def common(a, b):
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        return k

    ids = {(j, i): tok(prompt(p, q)) for j, p in enumerate(people) for i, q in enumerate(questions)}
    option_ids = [[tok(o)[0] for o in options(q)] for q in questions]
    shared = min(common(ids[(0, 0)], t) for t in ids.values())
    answers = 0
    evaluated = 0
    t0 = time.perf_counter()
    llm.reset()
    llm.eval(ids[(0, 0)][:shared])
    evaluated += shared
    for j in range(len(people)):
        own = min(common(ids[(j, 0)], ids[(j, i)]) for i in range(len(questions)))
        rewind(shared)
        llm.eval(ids[(j, 0)][shared:own])
        evaluated += own - shared
        for i in range(len(questions)):
            rewind(own)
            rest = ids[(j, i)][own:]
            llm.eval(rest)
            evaluated += len(rest)
            lg = logits()[option_ids[i]]
            p = np.exp(lg - lg.max())
            p /= p.sum()
            rng.choice(len(p), size=samples, p=p)
            answers += samples
    dt = time.perf_counter() - t0
    print(f"job panel (two-level prefix cache, {samples} draws per item): {len(people)} jobs x "
          f"{len(questions)} questions x {samples} samples, {evaluated} tokens evaluated, "
          f"{dt:.2f}s = {answers / dt:.1f} answers/s")


if __name__ == "__main__":
    main()
