#!/usr/bin/env python3
"""Writes the GGUF seed corpus for the `gguf` fuzz target into fuzz/seeds/gguf/.

Seeds are small (a few KiB each) but complete: valid headers with llama metadata, a
tokenizer and tiny tensors, so the fuzzer starts past candle's header reader and reaches
personas' own checks (`read_content`, `config`, `Tokenizer::from_gguf`).

    python3 fuzz/make_gguf_seeds.py [path/to/model.gguf]

With a model path (default: target/models/smollm2-135m-q4_1.gguf when present) it also
writes `smollm2-head-64k.gguf`, the model's first 64 KiB (a truncated real header), and
`smollm2-shrunk.gguf`, the model's real metadata with the vocabulary cut to 256 tokens
and tiny tensors in place of the weights.
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds", "gguf")

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
# GGML tensor types
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1 = 0, 1, 2, 3
GGML_Q8_0 = 8
BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_Q4_0: (32, 18), GGML_Q4_1: (32, 20), GGML_Q8_0: (32, 34)}

SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
              BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


class Writer:
    def __init__(self, version=3):
        self.version = version

    def length(self, n):
        return struct.pack("<I" if self.version == 1 else "<Q", n)

    def string(self, s):
        b = s.encode("utf-8") if isinstance(s, str) else s
        return self.length(len(b)) + b

    def value(self, vtype, v):
        if vtype == STRING:
            return self.string(v)
        if vtype == ARRAY:
            etype, items = v
            out = struct.pack("<I", etype) + self.length(len(items))
            for item in items:
                out += self.value(etype, item)
            return out
        return struct.pack(SCALAR_FMT[vtype], v)

    def file(self, metadata, tensors, alignment=32):
        """metadata: [(key, vtype, value)]; tensors: [(name, dims (ggml order), ggml type)]."""
        out = b"GGUF" + struct.pack("<I", self.version)
        out += self.length(len(tensors)) + self.length(len(metadata))
        for key, vtype, v in metadata:
            out += self.string(key) + struct.pack("<I", vtype) + self.value(vtype, v)
        offset = 0
        datas = []
        for name, dims, ttype in tensors:
            out += self.string(name) + struct.pack("<I", len(dims))
            for d in dims:
                out += self.length(d)
            out += struct.pack("<I", ttype) + struct.pack("<Q", offset)
            n = 1
            for d in dims:
                n *= d
            block, size = BLOCK[ttype]
            data = tensor_bytes(ttype, n // block * size)
            datas.append(data)
            offset += len(data)
            offset = (offset + alignment - 1) // alignment * alignment
        out += b"\0" * ((-len(out)) % alignment)
        for data in datas:
            out += data + b"\0" * ((-len(data)) % alignment)
        return out


def tensor_bytes(ttype, nbytes):
    if ttype == GGML_F32:
        n = nbytes // 4
        return struct.pack("<%df" % n, *[1.0 + 0.25 * (i % 4) for i in range(n)])
    return bytes((i * 37 + 11) % 256 for i in range(nbytes))


def llama_meta(**over):
    meta = [
        ("general.architecture", STRING, "llama"),
        ("general.name", STRING, "tiny"),
        ("general.alignment", U32, 32),
        ("llama.context_length", U32, 256),
        ("llama.embedding_length", U32, 8),
        ("llama.feed_forward_length", U32, 16),
        ("llama.block_count", U32, 1),
        ("llama.attention.head_count", U32, 2),
        ("llama.attention.head_count_kv", U32, 1),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.rope.freq_base", F32, 10000.0),
        ("llama.vocab_size", U32, 0),  # replaced below
    ]
    out = []
    for key, vtype, v in meta:
        short = key.split(".", 1)[1] if key.startswith("llama.") else key
        if short in over:
            if over[short] is None:
                continue
            vtype, v = over[short]
        out.append((key, vtype, v))
    for key, val in over.items():
        full = key if key.startswith("general.") else "llama." + key
        if val is not None and not any(k == full for k, _, _ in out):
            out.append((full, val[0], val[1]))
    return out


def tensors(vocab, hidden=8, extra=()):
    ts = [
        ("token_embd.weight", [hidden, vocab], GGML_F32),
        ("output_norm.weight", [hidden], GGML_F32),
        ("blk.0.attn_norm.weight", [hidden], GGML_F32),
        ("blk.0.attn_q.weight", [32, 2], GGML_Q4_0),
        ("blk.0.ffn_down.weight", [32, 1], GGML_Q8_0),
    ]
    return ts + list(extra)


def gpt2_tokenizer(pre="smollm"):
    byte_tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "Ġ", "H", "e", "l", "o", ",",
                   "w", "r", "d", "!", "1", "2", "3", "4", "5", "ü", "n", "ï", "c", "ö", "é"]
    merged = ["He", "ll", "llo", "Hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", "Ġ1"]
    tokens = byte_tokens + merged
    types = [3, 3, 3] + [1] * (len(tokens) - 3)
    merges = ["H e", "l l", "ll o", "He llo", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ 1"]
    return tokens, [
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.pre", STRING, pre),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
        ("tokenizer.ggml.merges", ARRAY, (STRING, merges)),
        ("tokenizer.ggml.bos_token_id", U32, 0),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.add_bos_token", BOOL, False),
        ("tokenizer.chat_template", STRING,
         "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"),
    ]


def spm_tokenizer():
    tokens = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "<0xC3>", "▁", "H", "e", "l", "o",
              "▁H", "ll", "llo", "ello", "▁Hello", ",", "w", "r", "d", "▁w", "or", "▁world",
              "1", "2", "<|im_end|>", "[EXTRA]", ""]
    types = [2, 3, 3, 6, 6, 6] + [1] * (len(tokens) - 6)
    types[tokens.index("<|im_end|>")] = 1  # made CONTROL by the loader
    types[tokens.index("[EXTRA]")] = 4
    scores = [0.0] * 6 + [-float(i) for i in range(len(tokens) - 6)]
    return tokens, [
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.scores", ARRAY, (F32, scores)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
        ("tokenizer.ggml.unknown_token_id", U32, 0),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.eot_token_id", U32, 25),
        ("tokenizer.ggml.add_space_prefix", BOOL, True),
    ]


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print("%-28s %6d bytes" % (name, len(data)))


def read_gguf(path):
    """(metadata [(key, vtype, value)], tensor infos) of a GGUF v2/v3 file."""
    f = open(path, "rb")

    def rd(fmt):
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

    def rstr():
        return f.read(rd("<Q")).decode("utf-8", "replace")

    def rval(t):
        if t == STRING:
            return rstr()
        if t == ARRAY:
            et, n = rd("<I"), rd("<Q")
            return (et, [rval(et) for _ in range(n)])
        return rd(SCALAR_FMT[t])

    assert f.read(4) == b"GGUF"
    version = rd("<I")
    assert version in (2, 3)
    n_tensors, n_kv = rd("<Q"), rd("<Q")
    meta = []
    for _ in range(n_kv):
        key = rstr()
        t = rd("<I")
        meta.append((key, t, rval(t)))
    return meta


def shrink(meta, keep=256):
    """The real metadata with the vocabulary cut to `keep` tokens (merges that use only
    kept tokens), and vocab_size dropped so the vocabulary comes from token_embd."""
    tokens = dict((k, v) for k, _, v in meta).get("tokenizer.ggml.tokens", (STRING, []))[1][:keep]
    kept = set(tokens)
    out = []
    for key, t, v in meta:
        if key.endswith(".vocab_size"):
            continue
        if t == ARRAY and key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                                  "tokenizer.ggml.scores"):
            v = (v[0], v[1][:keep])
        elif t == ARRAY and key == "tokenizer.ggml.merges":
            ms = [m for m in v[1] if len(m.split(" ")) == 2 and all(p in kept for p in m.split(" "))
                  and m.replace(" ", "") in kept]
            v = (v[0], ms[:keep])
        elif t == ARRAY and len(v[1]) > 64:
            v = (v[0], v[1][:64])
        out.append((key, t, v))
    return out, len(tokens)


def main():
    os.makedirs(OUT, exist_ok=True)
    w3 = Writer(3)

    tokens, tok = gpt2_tokenizer()
    meta = llama_meta(vocab_size=(U32, len(tokens))) + tok
    write("tiny-gpt2.gguf", w3.file(meta, tensors(len(tokens))))

    tokens, tok = spm_tokenizer()
    meta = llama_meta(vocab_size=None, **{
        "rope.scaling.type": (STRING, "linear"),
        "rope.scaling.factor": (F32, 2.0),
        "attention.key_length": (U32, 4),
        "general.alignment": (U32, 64),
    }) + tok
    rope = [("rope_freqs.weight", [2], GGML_F32)]
    write("tiny-spm-rope.gguf", Writer(3).file(meta, tensors(len(tokens), extra=rope), alignment=64))

    tokens, tok = gpt2_tokenizer(pre="llama-bpe")
    meta = llama_meta(vocab_size=(U64, len(tokens)), head_count_kv=None) + tok
    write("tiny-gpt2-v2.gguf", Writer(2).file(meta, tensors(len(tokens))))

    tokens, tok = gpt2_tokenizer(pre="qwen2")
    meta = llama_meta(vocab_size=(I32, len(tokens))) + tok
    write("tiny-gpt2-v1.gguf", Writer(1).file(meta, tensors(len(tokens))))

    # Header only: metadata, no tensors.
    write("meta-only.gguf", w3.file(llama_meta(vocab_size=(U32, 4)), []))

    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "..", "target", "models", "smollm2-135m-q4_1.gguf")
    if os.path.exists(model):
        with open(model, "rb") as f:
            write("smollm2-head-64k.gguf", f.read(64 * 1024))
        real, n = shrink(read_gguf(model))
        write("smollm2-shrunk.gguf", w3.file(real, tensors(n, hidden=8)))
    else:
        print("no %s: skipping the seeds taken from a real model" % model)


if __name__ == "__main__":
    main()
