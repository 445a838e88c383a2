#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/NAME/): small valid
inputs of each format, so that fuzzing starts inside the parsers. Plain
python (struct, json); rerunning writes the same bytes."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def put(kind, name, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- job documents
put("job", "preset.json", json.dumps({"model": "m", "preset": "hydra",
                                      "prompts": ["The Eiffel Tower is in", {"ids": [1, 2, 3]}]}))
put("job", "full.json", json.dumps({
    "prompts": [{"text": "The Eiffel Tower is in", "subject": "Eiffel Tower", "target": " Paris"},
                {"ids": [5, 6, 7, 8]}],
    "target": {"token": " Paris", "foil": " Rome"},
    "ablations": {"components": ["*", "attn.*", "mlp.3", "head.1.*", "neuron.2.17", "embed"],
                  "methods": ["resample", "zero", "mean", "scale:0.5", "noise:0.1",
                              {"patch": {"source": 1}}],
                  "samples": 4, "seed": 7, "positions": [0, -1]},
    "metrics": ["logit", "logprob", "prob", "logit_diff", "kl", "rank"],
    "norm_scale": "ablated", "reuse": False, "precision": "tf32", "deadline_s": 30}))
put("job", "next.json", json.dumps({"prompts": [{"ids": [1, 2, 3, 4]}], "target": "next",
                                    "ablations": {"components": ["attn.0"], "methods": ["zero"],
                                                  "positions": "all"}}))
put("job", "substring.json", json.dumps({"prompts": ["a b c"], "ablations": {
    "components": ["mlp.*"], "methods": ["zero"], "positions": {"substring": "b"}}}))
put("job", "spans_patterns.json", json.dumps({
    "prompts": [{"text": "a b c d", "subject": "a", "spans": {"verb": " c", "end": " d"}},
                {"text": "e f g h", "spans": {"verb": " g"}}],
    "ablations": {"components": ["pattern.1.*", "head.0.1"], "methods": ["zero", "mean", "scale:0.5"],
                  "positions": {"each": "spans"}}}))


# ---- safetensors: 8-byte little-endian header length, JSON header, data
def safetensors(tensors, meta=None):
    header, blob = {}, b""
    if meta:
        header["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


put("safetensors", "f32.safetensors", safetensors(
    {"w": ("F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0.25, -0.5, 8)),
     "b": ("F32", [3], struct.pack("<3f", 0.1, 0.2, 0.3))}, {"format": "pt"}))
put("safetensors", "f16_bf16.safetensors", safetensors(
    {"h": ("F16", [4], struct.pack("<4e", 1.0, -2.0, 0.5, 65504.0)),
     "g": ("BF16", [2, 2], bytes([0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f, 0x80, 0xbf])),
     "s": ("F32", [], struct.pack("<f", 4.0))}))


# ---- GGUF v3: magic, version, n_tensors, n_kv, kvs, tensor infos, aligned data
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors, align=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, typ, val in kvs:
        out += gstr(key) + struct.pack("<I", typ)
        if typ == 8:
            out += gstr(val)
        elif typ == 4:
            out += struct.pack("<I", val)
        elif typ == 6:
            out += struct.pack("<f", val)
        elif typ == 7:
            out += struct.pack("<B", val)
        elif typ == 9:  # array: element type, count, elements
            et, items = val
            out += struct.pack("<IQ", et, len(items))
            for it in items:
                out += gstr(it) if et == 8 else struct.pack("<i", it)
    offset, data = 0, b""
    for name, dims, ggml_type, raw in tensors:
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
        pad = (align - len(raw) % align) % align
        data += raw + b"\0" * pad
        offset += len(raw) + pad
    out += b"\0" * ((align - len(out) % align) % align)
    return out + data


put("gguf", "small.gguf", gguf(
    [("general.architecture", 8, "llama"), ("llama.block_count", 4, 1),
     ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5), ("general.flag", 7, 1),
     ("tokenizer.ggml.tokens", 9, (8, ["<s>", "a", "b"])), ("tokenizer.ggml.token_type", 9, (5, [3, 1, 1]))],
    [("token_embd.weight", [4, 3], 0, struct.pack("<12f", *range(12))),
     ("output_norm.weight", [4], 0, struct.pack("<4f", 1, 1, 1, 1))]))

# ---- tokenizer.json: the tiny models' own files
for name in ("tiny-gpt2", "tiny-llama"):
    with open(os.path.join(ROOT, "tests", "data", name, "tokenizer.json"), "rb") as f:
        put("tokenizer_json", f"{name}.json", f.read())
put("tokenizer_json", "minimal.json", json.dumps({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
    "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": []}))
# Falcon's pre-tokenizers (splits after ByteLevel) and BLOOM's class in a class.
put("tokenizer_json", "splits.json", json.dumps({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "1": 3}, "merges": ["a b"]},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": " ?[^(\\s|[.,!?\u2026])]+"}, "behavior": "Isolated",
         "invert": False},
        {"type": "Punctuation", "behavior": "Contiguous"},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        {"type": "Digits", "individual_digits": False},
        {"type": "Split", "pattern": {"Regex": "[0-9][0-9][0-9]"}, "behavior": "Isolated", "invert": False}]},
    "added_tokens": []}))

# ---- BPE input texts
for i, text in enumerate(["The Eiffel Tower is in Paris.", "naïve café 1889 — ☃ 😀",
                          "  leading spaces\nand\ttabs  ", "日本語のテキスト", "'s 've 're don't",
                          "\xff\xfe not utf-8".encode("latin-1").decode("latin-1")]):
    put("bpe", f"text{i}.txt", text.encode("utf-8", "surrogateescape"))
put("bpe", "bytes.bin", bytes([0xff, 0xc3, 0x28, 0xe2, 0x82, 0, 0x41]))
# ---- raw HTTP requests (fuzz_http; the token is the fuzzer server's)
TOK = "Authorization: Bearer fuzz-token-0123456789abcdef\r\n"
job = json.dumps({"model": "tiny", "prompts": ["the cat", "a dog"],
                  "ablations": {"components": ["attn.0"], "methods": ["zero"]}})
reqs = {
    "health": "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
    "models": f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{TOK}\r\n",
    "model": f"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\n{TOK}\r\n",
    "tokenize": f"POST /v1/models/tiny/tokenize HTTP/1.1\r\nHost: x\r\n{TOK}Content-Length: 19\r\n\r\n"
                '{"text": "the cat"}',
    "submit": f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n{TOK}Content-Type: application/json\r\n"
              f"Content-Length: {len(job)}\r\n\r\n{job}",
    "submit_stream": f"POST /v1/jobs?wait=stream HTTP/1.1\r\nHost: x\r\n{TOK}Content-Length: {len(job)}\r\n\r\n{job}",
    "chunked": f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n{TOK}Transfer-Encoding: chunked\r\n\r\n"
               f"{len(job):x}\r\n{job}\r\n0\r\n\r\n",
    "jobs": f"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n{TOK}\r\n",
    "results": f"GET /v1/jobs/0123456789abcdef0123456789abcdef/results?after=2&format=csv HTTP/1.1\r\n"
               f"Host: x\r\n{TOK}Accept: text/event-stream\r\nLast-Event-ID: 3\r\n\r\n",
    "delete": f"DELETE /v1/jobs/0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: x\r\n{TOK}\r\n",
    "metrics": f"GET /metrics HTTP/1.1\r\nHost: x\r\n{TOK}\r\n",
    "dashboard": "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /dashboard.js HTTP/1.1\r\nHost: x\r\n\r\n",
    "pipelined": "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n" + f"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n{TOK}\r\n",
    "bad_method": f"PUT /v1/jobs HTTP/1.1\r\nHost: x\r\n{TOK}Content-Length: 2\r\n\r\n{{}}",
}
for name, text in reqs.items():
    put("http", f"{name}.txt", text)
print("seeds written under", os.path.relpath(os.path.join(HERE, "corpus"), ROOT))
