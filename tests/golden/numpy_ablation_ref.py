#!/usr/bin/env python3
"""Second opinion on the ablation goldens of the tiny models: a plain-numpy
(float64) forward pass with the interventions written out by hand, compared
against tests/golden/ablation_tiny-*.json. Uses neither transformers nor hydra
(only the math helpers of numpy_ref.py).

Usage: python tests/golden/numpy_ablation_ref.py [--out tests]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_ref import (attention, gelu_new, layernorm, load_safetensors_dir,  # noqa: E402
                       rmsnorm, rope_half, silu)


def forward(w, c, family, ids, abl=None, positions="last", full=None):
    """abl: (component, fn(value) -> value) applied at the final position, or
    with positions="all" to the [T, ...] values of every position at once.
    full: None, or a dict that receives every component's [T, ...] values.
    Returns (final logits, {component: final-position output}, final-norm input)."""
    abl_comp, abl_fn = abl if abl else (None, None)
    T = len(ids)
    cap = {}

    def hit(name, vec, idx=None):
        """Record vec[-1] (or its idx part) as `name`, applying the ablation."""
        if name == abl_comp:
            vec = vec.copy()
            if positions == "all":
                if idx is None:
                    vec = abl_fn(vec.copy())
                else:
                    vec[:, idx] = abl_fn(np.array(vec[:, idx]))
            elif idx is None:
                vec[-1] = abl_fn(vec[-1].copy())
            else:
                vec[-1, idx] = abl_fn(np.array(vec[-1, idx]))
        cap[name] = vec[-1].copy() if idx is None else np.array(vec[-1, idx])
        if full is not None:
            full[name] = vec.copy() if idx is None else np.array(vec[:, idx])
        return vec

    if family == "gpt2":
        E, H, L, eps = c["n_embd"], c["n_head"], c["n_layer"], c["layer_norm_epsilon"]
        D = E // H
        x = hit("embed", w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:T])
        for l in range(L):
            p = f"transformer.h.{l}."
            h = layernorm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
            qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
            q, k, v = (qkv[:, i * E:(i + 1) * E].reshape(T, H, D).transpose(1, 0, 2) for i in range(3))
            a = attention(q, k, v).transpose(1, 0, 2).reshape(T, E)
            for hh in range(H):
                a = hit(f"head.{l}.{hh}", a, slice(hh * D, (hh + 1) * D))
            x = x + hit(f"attn.{l}", a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"])
            h = layernorm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
            h = gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
            for n in range(h.shape[1]):
                h = hit(f"neuron.{l}.{n}", h, n)
            x = x + hit(f"mlp.{l}", h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"])
        resid = x[-1].copy()
        x = layernorm(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)
        return (x @ w["transformer.wte.weight"].T)[-1], cap, resid

    E, H, Hkv, L = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["num_hidden_layers"]
    D = c.get("head_dim") or E // H
    eps, theta = c["rms_norm_eps"], c["rope_parameters"]["rope_theta"]
    x = hit("embed", w["model.embed_tokens.weight"][ids])
    for l in range(L):
        p = f"model.layers.{l}."
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, H, D).transpose(1, 0, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, Hkv, D).transpose(1, 0, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, Hkv, D).transpose(1, 0, 2)
        a = attention(rope_half(q, theta), rope_half(k, theta), v).transpose(1, 0, 2).reshape(T, H * D)
        for hh in range(H):
            a = hit(f"head.{l}.{hh}", a, slice(hh * D, (hh + 1) * D))
        x = x + hit(f"attn.{l}", a @ w[p + "self_attn.o_proj.weight"].T)
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        h = silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)
        for n in range(h.shape[1]):
            h = hit(f"neuron.{l}.{n}", h, n)
        x = x + hit(f"mlp.{l}", h @ w[p + "mlp.down_proj.weight"].T)
    resid = x[-1].copy()
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return (x @ head.T)[-1], cap, resid


M64 = (1 << 64) - 1


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def resample_source(seed, p, c, s, n):
    """hydra's resample draw: prompt p, component index c, sample s, n prompts."""
    r = splitmix(splitmix(splitmix(seed ^ 0x68796472) ^ p) ^ ((c * 0x100000001B3) & M64) ^ s) % (n - 1)
    return r if r < p else r + 1


def log_softmax(x):
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def check(name, root):
    g = json.load(open(os.path.join(root, "golden", f"ablation_{name}.json")))
    path = os.path.join(root, "data", name)
    c = json.load(open(os.path.join(path, "config.json")))
    family = c["model_type"]
    w = load_safetensors_dir(path)
    if family == "gpt2":
        W_U, gamma, beta = w["transformer.wte.weight"], w["transformer.ln_f.weight"], w["transformer.ln_f.bias"]
        eps = c["layer_norm_epsilon"]
    else:
        W_U, gamma, beta = w["lm_head.weight"], w["model.norm.weight"], None
        eps = c["rms_norm_eps"]

    def inv_scale(x):
        return 1 / np.sqrt(x.var() + eps) if family == "gpt2" else 1 / np.sqrt((x * x).mean() + eps)

    def de(y, inv, u):
        if family == "gpt2":
            y = y - y.mean()
        return float((y * inv * gamma) @ u)

    order = g["component_order"]
    clean = []
    worst = {}

    def cmp(key, got, want, tol):
        d = float(np.max(np.abs(np.asarray(got, float) - np.asarray(want, float))))
        worst[key] = max(worst.get(key, 0.0), d)
        assert d <= tol, (name, key, got, want)

    for pr in g["prompts"]:
        full = {}
        lg, cap, resid = forward(w, c, family, pr["ids"], full=full)
        t = int(lg.argmax())
        assert t == pr["target"]
        u = W_U[t] - W_U.mean(0)
        inv = inv_scale(resid)
        clean.append(dict(ids=pr["ids"], cap=cap, full=full, t=t, u=u, inv=inv, lg=lg,
                          cl=float(lg[t] - lg.mean())))
        cmp("clean_logit", clean[-1]["cl"], pr["clean_logit"], 1e-4)
        cmp("inv_scale", inv, pr["inv_scale"], 1e-6)
        cmp("de", [de(cap[k], inv, u) for k in order], pr["de"], 1e-4)
    n = len(clean)
    all_comps = set(r["component"] for r in g["ablations"])
    means = {k: np.mean([cl["cap"][k] for cl in clean], axis=0) for k in all_comps}
    # resample draws index the components by first appearance in the ablations
    first = []
    for r in g["ablations"]:
        if r["component"] not in first:
            first.append(r["component"])
    if "resample_components" in g:
        assert g["resample_components"] == first, (name, g["resample_components"], first)

    def measure(cl, k, fn, positions):
        """The record fields of one run (rank None where a logit ties the target)."""
        lg, cap, resid = forward(w, c, family, cl["ids"], (k, fn), positions)
        t = cl["t"]
        al = float(lg[t] - lg.mean())
        lp = log_softmax(lg)
        lpc = log_softmax(cl["lg"])
        # rank: skip where another logit ties the target within the fp32 error
        rank = int((lg > lg[t]).sum()) if np.sort(np.abs(lg - lg[t]))[1] > 1e-4 else None
        return {"ablated_logit": al, "total_effect": cl["cl"] - al,
                "de_clean_scale": np.array([de(cap[x], cl["inv"], cl["u"]) for x in order]),
                "ablated_inv_scale": inv_scale(resid), "logprob": float(lp[t]),
                "kl": float((np.exp(lpc) * (lpc - lp)).sum()), "rank": rank}

    n_all = n_res = 0
    for r in g["ablations"]:
        cl = clean[r["prompt"]]
        k, m = r["component"], r["method"]
        positions = r.get("positions", "last")
        n_all += positions == "all"
        if m == "resample":
            # mean over the samples of a patch from each drawn source
            n_res += 1
            assert positions == "last"
            i, ci = r["prompt"], first.index(k)
            recs = [measure(cl, k, lambda v, k=k, s=resample_source(r["seed"], i, ci, q, n):
                            np.broadcast_to(clean[s]["cap"][k], np.shape(v)).copy(), positions)
                    for q in range(r["samples"])]
            got = {f: sum(x[f] for x in recs) / len(recs) for f in recs[0] if f != "rank"}
            got["rank"] = (None if any(x["rank"] is None for x in recs)
                           else sum(x["rank"] for x in recs) / len(recs))
        else:
            got = None
        if got is not None:
            pass
        elif positions == "all":
            # every position; a patch aligns from the end: position t of this
            # prompt (length n_i) takes the source's (length n_j) position
            # t - n_i + n_j, and keeps its own value where that is < 0
            if m == "zero":
                fn = lambda v: np.zeros_like(v)
            else:
                def fn(v, k=k, s=m["patch"]):
                    src = clean[s]["full"][k]
                    n_i, n_j = len(v), len(src)
                    v = v.copy()
                    for t in range(n_i):
                        if t - n_i + n_j >= 0:
                            v[t] = src[t - n_i + n_j]
                    return v
        elif m == "zero":
            fn = lambda v: np.zeros_like(v)
        elif m == "mean":
            fn = lambda v, k=k: np.broadcast_to(means[k], np.shape(v)).copy()
        elif isinstance(m, dict):
            fn = lambda v, k=k, s=m["patch"]: np.broadcast_to(clean[s]["cap"][k], np.shape(v)).copy()
        else:
            a = float(m.split(":")[1])
            fn = lambda v, a=a: v * a
        if got is None:
            got = measure(cl, k, fn, positions)
        cmp("ablated_logit", got["ablated_logit"], r["ablated_logit"], 1e-4)
        cmp("total_effect", got["total_effect"], r["total_effect"], 1e-4)
        cmp("de_clean_scale", got["de_clean_scale"], r["de_clean_scale"], 1e-4)
        # relative: zeroing llama's embed at every position zeroes the whole
        # residual stream, and its inv_scale is 1/sqrt(eps) = 316.2
        cmp("ablated_inv_scale", got["ablated_inv_scale"], r["ablated_inv_scale"],
            1e-6 * max(1.0, r["ablated_inv_scale"]))
        cmp("logprob", got["logprob"], r["logprob"], 1e-4)
        cmp("kl", got["kl"], r["kl"], 1e-5)
        if got["rank"] is not None:
            # a resample rank is a mean of integers, kept to 8 digits
            assert abs(got["rank"] - r["rank"]) <= 1e-7 * max(1.0, abs(r["rank"])), (name, got["rank"], r)
    print(f"[{name}] {n} prompts, {len(g['ablations'])} ablations ({n_all} at all positions, "
          f"{n_res} resample) match; max abs diff: "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="tests")
    args = ap.parse_args()
    for name in ("tiny-gpt2", "tiny-llama"):
        check(name, args.out)


if __name__ == "__main__":
    main()
