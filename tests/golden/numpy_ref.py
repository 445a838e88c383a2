#!/usr/bin/env python3
"""Second opinion on the goldens: a plain-numpy (float64) forward pass that
uses neither transformers nor hydra, compared against tests/golden/*.f32.

It spells out the math the C code has to match:
  * GPT-2: Conv1D weights are stored [in, out] (y = x @ W + b); c_attn packs
    q|k|v along the output axis; gelu_new (tanh form); LN eps 1e-5; logits use
    the tied wte (no lm_head tensor in the file).
  * Llama (safetensors, HF layout): RoPE in "rotate_half" form: dim i is paired
    with dim i + head_dim/2.
  * SmolLM2 read straight from the GGUF with our own Q4_1 / Q8_0 dequantiser,
    WITHOUT un-permuting attn_q / attn_k: with llama.cpp's row order the RoPE
    pairs are adjacent dims (2i, 2i+1) (llama.cpp's LLAMA_ROPE_TYPE_NORM).
    transformers instead un-permutes q/k at load time and then uses
    rotate_half; both give the same logits, which this script checks.

Usage: python tests/golden/numpy_ref.py [--smollm2 PATH.gguf] [--out tests]
"""

import argparse
import json
import os

import numpy as np


def load_safetensors_dir(path):
    from safetensors.numpy import load_file
    idx = os.path.join(path, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx)
             else ["model.safetensors"])
    w = {}
    for f in files:
        w.update({k: v.astype(np.float64) for k, v in load_file(os.path.join(path, f)).items()})
    return w


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def attention(q, k, v):
    """q [H,T,D], k/v [Hkv,T,D]; causal; grouped-query by h // (H/Hkv)."""
    H, T, D = q.shape
    rep = H // k.shape[0]
    k = np.repeat(k, rep, axis=0)
    v = np.repeat(v, rep, axis=0)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(D)
    s = s + np.triu(np.full((T, T), -np.inf), 1)
    return softmax(s) @ v  # [H,T,D]


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def gpt2_forward(w, cfg, ids):
    E, H = cfg["n_embd"], cfg["n_head"]
    D = E // H
    eps = cfg["layer_norm_epsilon"]
    T = len(ids)
    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:T]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = layernorm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (qkv[:, i * E:(i + 1) * E].reshape(T, H, D).transpose(1, 0, 2) for i in range(3))
        a = attention(q, k, v).transpose(1, 0, 2).reshape(T, E)
        x = x + a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layernorm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layernorm(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)
    return x @ w["transformer.wte.weight"].T


def rope_half(x, theta):
    """HF rotate_half RoPE. x [H,T,D]."""
    H, T, D = x.shape
    inv = 1.0 / theta ** (np.arange(0, D, 2) / D)
    ang = np.arange(T)[:, None] * inv[None, :]          # [T, D/2]
    c, s = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def rope_adjacent(x, theta):
    """llama.cpp LLAMA_ROPE_TYPE_NORM: rotate pairs (2i, 2i+1). x [H,T,D]."""
    H, T, D = x.shape
    inv = 1.0 / theta ** (np.arange(0, D, 2) / D)
    ang = np.arange(T)[:, None] * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def llama_forward(w, c, ids, rope):
    """w uses HF names; weights are [out, in] (y = x @ W.T)."""
    E, H, Hkv, L = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["num_hidden_layers"]
    D = c.get("head_dim") or E // H
    eps, theta = c["rms_norm_eps"], c["rope_theta"]
    T = len(ids)
    x = w["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, H, D).transpose(1, 0, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, Hkv, D).transpose(1, 0, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, Hkv, D).transpose(1, 0, 2)
        a = attention(rope(q, theta), rope(k, theta), v).transpose(1, 0, 2).reshape(T, H * D)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        h = silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)
        x = x + h @ w[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


# ---- GGUF, with our own dequantisers -------------------------------------
def dequant(t):
    from gguf import GGMLQuantizationType as Q
    rows = int(np.prod([int(s) for s in t.shape[1:]]))
    n0 = int(t.shape[0])  # ggml ne0: elements per row
    raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
    if t.tensor_type == Q.F32:
        return raw.view("<f4").astype(np.float64).reshape(rows, n0)
    if t.tensor_type == Q.Q4_1:   # block of 32: f16 d, f16 m, 16 bytes of nibbles
        b = raw.reshape(-1, 20)
        d = b[:, 0:2].copy().view("<f2").astype(np.float64)
        m = b[:, 2:4].copy().view("<f2").astype(np.float64)
        qs = b[:, 4:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64)  # elems 0-15 low, 16-31 high
        return (q * d + m).reshape(rows, n0)
    if t.tensor_type == Q.Q8_0:   # block of 32: f16 d, 32 x int8
        b = raw.reshape(-1, 34)
        d = b[:, 0:2].copy().view("<f2").astype(np.float64)
        q = b[:, 2:].copy().view(np.int8).astype(np.float64)
        return (q * d).reshape(rows, n0)
    raise NotImplementedError(t.tensor_type.name)


def load_gguf_llama(path):
    from gguf import GGUFReader
    r = GGUFReader(path)

    def f(key):
        return r.fields[key].contents()

    c = {"hidden_size": f("llama.embedding_length"), "num_attention_heads": f("llama.attention.head_count"),
         "num_key_value_heads": f("llama.attention.head_count_kv"), "num_hidden_layers": f("llama.block_count"),
         "rms_norm_eps": f("llama.attention.layer_norm_rms_epsilon"), "rope_theta": f("llama.rope.freq_base")}
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    sub = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
           "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
           "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    w = {}
    for t in r.tensors:
        if t.name in names:
            hf = names[t.name]
        else:
            _, l, kind, _ = t.name.split(".")
            hf = f"model.layers.{l}.{sub[kind]}.weight"
        a = dequant(t)
        w[hf] = a.reshape(-1) if a.shape[0] == 1 else a
    return w, c


def compare(name, golden_dir, fwd):
    j = json.load(open(os.path.join(golden_dir, name + ".json")))
    V = j["vocab"]
    g = np.fromfile(os.path.join(golden_dir, j["logits_file"]), dtype="<f4").reshape(-1, V)
    r, worst, am_ok = 0, 0.0, True
    for p in j["prompts"]:
        out = fwd(p["ids"])
        for pos, am in zip(p["positions"], p["argmax"]):
            row = g[r]
            r += 1
            worst = max(worst, float(np.abs(out[pos] - row).max() / (np.abs(row).max())))
            am_ok &= int(out[pos].argmax()) == am
    assert r == g.shape[0]
    print(f"{name}: {r} rows, max |numpy - golden| / max|golden| = {worst:.2e}, argmax {'ok' if am_ok else 'MISMATCH'}")
    return worst, am_ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests")
    ap.add_argument("--smollm2")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    gd, dd = os.path.join(a.out, "golden"), os.path.join(a.out, "data")
    res = []
    d = os.path.join(dd, "tiny-gpt2")
    w, c = load_safetensors_dir(d), json.load(open(os.path.join(d, "config.json")))
    res.append(compare("tiny-gpt2", gd, lambda ids: gpt2_forward(w, c, ids)))
    for name in ("tiny-llama", "tiny-llama-sharded"):
        d = os.path.join(dd, name)
        w2, c2 = load_safetensors_dir(d), json.load(open(os.path.join(d, "config.json")))
        c2.setdefault("rope_theta", (c2.get("rope_parameters") or {}).get("rope_theta"))
        res.append(compare(name, gd, lambda ids: llama_forward(w2, c2, ids, rope_half)))
    if a.smollm2:
        w3, c3 = load_gguf_llama(a.smollm2)
        res.append(compare("smollm2-135m", gd, lambda ids: llama_forward(w3, c3, ids, rope_adjacent)))
    ok = all(wst <= a.tol and am for wst, am in res)
    print("numpy reference agrees with goldens" if ok else "DISAGREEMENT")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
