"""Extra golden data from llama.cpp (llama-cpp-python 0.3.36) for a GGUF, complementing
llamacpp_golden.py: logits at a fixed set of 64 token ids for the next_token prompts, answer-token
logprobs for the survey prompts, and greedy continuations with the top-2 logit margin of every step.
Usage: python llamacpp_extra.py GGUF SPEC.json OUT.json
SPEC: the golden spec ({"next_token": [prompt...], ...}); only "next_token" is read here.
Prompts are raw text (chat markup included where wanted), tokenized with special tokens parsed,
no BOS added (SmolLM2's GGUF has add_bos=false).

Output keys:
 next_token[i]: prompt, ids, logsumexp (over the full vocab), max_logit, argmax,
   logits: 64 {id, logit, logprob}; ids = the top 20 (by logit, descending) then 44 spread ids
   (SPREAD below, in order, skipping any already in the top 20 and taking the next fallback)
 answer_logprobs: for next_token[2] the tokens "1".."7" and for next_token[3] "0","1":
   {prompt_index, tokens: [{text, id, logit, logprob, prob_renorm}], expected} where prob_renorm is
   the softmax over the listed tokens only and expected = sum(value * prob_renorm)
 greedy[j]: prompt, ids, n, greedy_ids, text, steps: [{id, logit, second_id, second_logit, margin}]
   (margin = top-1 minus top-2 logit at that step; a divergence at a small margin is a near tie).
   Generation stops after n tokens or at EOS (included)."""
import sys, json
import numpy as np
import llama_cpp
from llama_cpp import Llama

gguf, spec_path, out = sys.argv[1:4]
spec = json.load(open(spec_path))
llm = Llama(model_path=gguf, n_ctx=4096, n_threads=2, verbose=False)
V = llm.n_vocab()

WORKSHOP_SYSTEM = ("You are a virtual person simulator that creates individual synthetic personas, one at a time, "
                   "that I can specify and then ask them any questions I like. Don\u2019t change out of your role unless "
                   "I ask you to. This means that you respond in the style that the persona would and that you answer "
                   "the way the persona would \u2013 no matter the implications. Be brief. Do not write any additional "
                   "explanations unless I ask you to.")
JIM_USER = ("Please create a synthetic persona called \"Jim\" who is a 45-year-old farmer in Iowa with a high school "
            "education, a family with 3 children who are in high school, and family revenues between 50 and 80k a year.")
GREEDY = [
    {"prompt": f"<|im_start|>system\n{WORKSHOP_SYSTEM}<|im_end|>\n<|im_start|>user\n{JIM_USER}<|im_end|>\n"
               "<|im_start|>assistant\n", "n": 32},
    {"prompt": "The capital of France is", "n": 32},
]
# 44 spread ids: small/special ids, decade steps, then an even spread over the vocab; FALLBACK pads
# the list back to 64 when a spread id is already among a prompt's top 20.
SPREAD = [0, 1, 2, 3, 10, 100, 198, 1000, 10000] + [int(round(k * (V - 1) / 34)) for k in range(1, 35)] + [V // 2 + 1]
SPREAD = list(dict.fromkeys(SPREAD))[:44]
FALLBACK = [int(round((k + 0.5) * (V - 1) / 40)) for k in range(40)]
assert len(SPREAD) == 44, len(SPREAD)

def last_logits():
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(V,)).copy()

def tok(s):
    return llm.tokenize(s.encode(), add_bos=False, special=True)

def lse(lg):
    m = float(lg.max()); return float(np.log(np.exp(lg.astype(np.float64) - m).sum()) + m)

res = {"model_file": gguf.split("/")[-1], "reference": "llama.cpp via llama-cpp-python 0.3.36, n_threads=2",
       "spread_ids": SPREAD, "fallback_ids": FALLBACK, "next_token": [], "answer_logprobs": [], "greedy": []}
ANSWERS = {2: [str(d) for d in range(1, 8)], 3: ["0", "1"]}
for pi, p in enumerate(spec["next_token"]):
    ids = tok(p); llm.reset(); llm.eval(ids); lg = last_logits(); z = lse(lg)
    top = [int(i) for i in np.argsort(-lg, kind="stable")[:20]]
    chosen = list(top)
    for i in SPREAD + FALLBACK:
        if len(chosen) == 64: break
        if i not in chosen: chosen.append(i)
    assert len(chosen) == 64
    res["next_token"].append({"prompt": p, "ids": ids, "logsumexp": z, "max_logit": float(lg.max()),
        "argmax": int(np.argmax(lg)),
        "logits": [{"id": i, "logit": float(lg[i]), "logprob": float(lg[i] - z)} for i in chosen]})
    if pi in ANSWERS:
        toks = []
        for t in ANSWERS[pi]:
            tid = tok(t); assert len(tid) == 1, (t, tid); tid = tid[0]
            toks.append({"text": t, "id": tid, "logit": float(lg[tid]), "logprob": float(lg[tid] - z)})
        a = np.array([x["logit"] for x in toks], dtype=np.float64); pr = np.exp(a - a.max()); pr /= pr.sum()
        for x, q in zip(toks, pr): x["prob_renorm"] = float(q)
        res["answer_logprobs"].append({"prompt_index": pi, "tokens": toks,
                                       "expected": float(sum(int(x["text"]) * x["prob_renorm"] for x in toks))})
for g in GREEDY:
    ids = tok(g["prompt"]); llm.reset(); llm.eval(ids); outp = []; steps = []
    for _ in range(g["n"]):
        lg = last_logits(); o = np.argsort(-lg, kind="stable")[:2]; t, s = int(o[0]), int(o[1])
        outp.append(t)
        steps.append({"id": t, "logit": float(lg[t]), "second_id": s, "second_logit": float(lg[s]),
                      "margin": float(lg[t] - lg[s])})
        if t == llm.token_eos(): break
        llm.eval([t])
    res["greedy"].append({"prompt": g["prompt"], "ids": ids, "n": g["n"], "greedy_ids": outp,
                          "text": llm.detokenize(outp).decode("utf-8", "replace"), "steps": steps})
json.dump(res, open(out, "w"), ensure_ascii=False, indent=1)
print("wrote", out, {k: len(v) for k, v in res.items() if isinstance(v, list)})
