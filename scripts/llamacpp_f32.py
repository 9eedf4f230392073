"""llama.cpp's next-token top-20 logits with an f32 KV cache and flash attention off, for the
next_token prompts of the shared reference: the same computation as personas' f32 forward
without llama.cpp's f16 attention path, so the two can be compared at a tighter tolerance.
Usage: python scripts/llamacpp_f32.py GGUF tests/fixtures/llamacpp_reference.json OUT.json
(needs llama-cpp-python==0.3.36 and numpy)."""
import sys, json
import numpy as np
import llama_cpp
from llama_cpp import Llama

gguf, ref_path, out_path = sys.argv[1:4]
ref = json.load(open(ref_path))
llm = Llama(model_path=gguf, n_ctx=4096, n_threads=2, verbose=False,
            type_k=0, type_v=0, flash_attn=False)  # 0 = GGML_TYPE_F32
out = {"reference": "llama.cpp via llama-cpp-python 0.3.36, n_threads=2, KV cache f32 "
       "(type_k=type_v=0), flash_attn off; made by scripts/llamacpp_f32.py", "next_token": []}
for case in ref["next_token"]:
    llm.reset(); llm.eval(case["ids"])
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    lg = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()
    top = np.argsort(-lg)[:20]
    out["next_token"].append({"prompt": case["prompt"], "ids": case["ids"],
                              "top20": [{"id": int(i), "logit": float(lg[i])} for i in top]})
json.dump(out, open(out_path, "w"), ensure_ascii=False, indent=1)
print("wrote", out_path)
