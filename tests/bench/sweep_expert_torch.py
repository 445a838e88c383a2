#!/usr/bin/env python3
"""The expert PyTorch baseline of tests/bench/sweep.sh (issue 24): the same
"hydra" sweep as sweep_torch.py (every attention and MLP layer of a
Llama-family model, resample x 15 with hydra's draws, the final position,
the clean argmax target), written the way someone who knows the algorithm
writes it by hand in plain PyTorch, without hooks:

  weights      from transformers (the GGUF dequantised to fp32, as
               sweep_torch.py loads it), then, once and untimed (as at load): Q/K/V as one matrix and
               gate/up as one, each with its RMSNorm weight folded into its
               input columns (RMSNorm has no bias: exact up to rounding); the
               final norm's weight folded into each prompt's centred target
               row of the unembedding.
  clean pass   each prompt once: keeps at its final position every layer's
               residual before attention and before the MLP, and every
               attention and MLP output (the resample sources); keeps every
               layer's keys rotated relative to the final position (so the
               final position's query needs no rotary) and values; target =
               the clean argmax, centred logit = logit - mean over the vocab.
  ablated runs one final-position row each, joining right after its ablated
               sub-stage (never computed): its residual is the clean one
               before the sub-stage plus the source prompt's output of it.
               All rows of the sweep in one batch, sorted by where they join,
               processed sub-stage by sub-stage over the rows joined so far
               (products in chunks of --chunk rows); prefix attention as one
               batched product per prompt over its cached keys (every row of
               the prompt, every head), plus each row's own key.
  readout      only the centred target logit: one dot product per row with
               the folded target direction, times the final norm's 1/rms.

--distinct: run each distinct (prompt, component, source) once and weight
the averages by how often it was drawn (the draws are with replacement), as
hydra's engine does (issue 24 item 1a); default off: every draw is a row.
--device cuda (the GPU suite, tests/gpu/run.sh): the same on a GPU, fp32
(TF32 off) unless --tf32.
--hydra-rows FILE (bench_sweep --rows-out over all components) compares the
clean targets and logits and every total effect with hydra's.

Prints one key=value line (last line) for sweep.sh.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

M64 = (1 << 64) - 1


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def hydra_draw(seed, p, c, s, n_prompts):
    """The source prompt hydra's engine draws for (prompt p, component c, sample s)."""
    x = splitmix(splitmix(splitmix(seed ^ 0x68796472) ^ p) ^ ((c * 0x100000001B3) & M64) ^ s)
    r = x % (n_prompts - 1)
    return r if r < p else r + 1


def rotate(x, pos, inv_freq):
    """Rotary of x [..., n, heads, hd] at positions pos [n] (halves, as Llama)."""
    ang = pos[:, None].to(torch.float32) * inv_freq[None, :]  # [n, hd/2]
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


def inv_rms(x, eps):
    return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class Weights:
    def __init__(self, model):
        cfg = model.config
        self.d = cfg.hidden_size
        self.H = cfg.num_attention_heads
        self.KV = cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or self.d // self.H
        self.f = cfg.intermediate_size
        self.eps = cfg.rms_norm_eps
        self.V = cfg.vocab_size
        rs = getattr(cfg, "rope_scaling", None)
        if rs and rs.get("rope_type", rs.get("type")) not in (None, "default"):
            raise SystemExit(f"sweep_expert_torch: rope scaling {rs} is not implemented")
        if cfg.model_type not in ("llama", "mistral", "qwen2") or getattr(cfg, "mlp_bias", False):
            raise SystemExit(f"sweep_expert_torch: model type {cfg.model_type} is not implemented")
        self.inv_freq = model.model.rotary_emb.inv_freq.float()
        self.embed = model.model.embed_tokens.weight.detach()
        self.layers = []
        for layer in model.model.layers:
            at, mlp = layer.self_attn, layer.mlp
            if at.q_proj.bias is not None or at.o_proj.bias is not None:
                raise SystemExit("sweep_expert_torch: attention biases are not implemented")
            g1 = layer.input_layernorm.weight.detach()[None, :]
            g2 = layer.post_attention_layernorm.weight.detach()[None, :]
            wqkv = torch.cat((at.q_proj.weight, at.k_proj.weight, at.v_proj.weight)) * g1
            wgu = torch.cat((mlp.gate_proj.weight, mlp.up_proj.weight)) * g2
            self.layers.append((wqkv.detach().t().contiguous(), at.o_proj.weight.detach().t().contiguous(),
                                wgu.detach().t().contiguous(), mlp.down_proj.weight.detach().t().contiguous()))
        self.final_w = model.model.norm.weight.detach()
        self.unembed = model.lm_head.weight.detach()
        self.u_mean = self.unembed.mean(0)

    def split_qkv(self, qkv):
        q, kv = self.H * self.hd, self.KV * self.hd
        n = qkv.shape[0]
        return (qkv[:, :q].view(n, self.H, self.hd), qkv[:, q:q + kv].view(n, self.KV, self.hd),
                qkv[:, q + kv:].view(n, self.KV, self.hd))


def clean_pass(W, ids_list):
    """Each prompt's forward: the final position's residuals and outputs per
    sub-stage, keys (relative to the final position) and values, logits."""
    L = len(W.layers)
    P = len(ids_list)
    keep = {k: torch.empty(L, P, W.d) for k in ("pre", "mid", "attn", "mlp")}
    keys, values, logits = [], [], torch.empty(P, W.V)
    scale = W.hd ** -0.5
    for p, ids in enumerate(ids_list):
        T = len(ids)
        pos = torch.arange(T)
        x = W.embed[torch.tensor(ids)].clone()
        ks, vs = [], []
        for li, (wqkv, wo, wgu, wd) in enumerate(W.layers):
            keep["pre"][li, p] = x[-1]
            q, k, v = W.split_qkv((x * inv_rms(x, W.eps)) @ wqkv)
            qr, kr = rotate(q, pos, W.inv_freq), rotate(k, pos, W.inv_freq)
            ks.append(rotate(k[:-1], pos[:-1] - (T - 1), W.inv_freq))  # relative to the final position
            vs.append(v[:-1])
            rep = W.H // W.KV
            o = F.scaled_dot_product_attention(qr.transpose(0, 1),
                                               kr.repeat_interleave(rep, 1).transpose(0, 1),
                                               v.repeat_interleave(rep, 1).transpose(0, 1),
                                               is_causal=True, scale=scale)
            a = o.transpose(0, 1).reshape(T, -1) @ wo
            keep["attn"][li, p] = a[-1]
            x = x + a
            keep["mid"][li, p] = x[-1]
            gu = (x * inv_rms(x, W.eps)) @ wgu
            m = (F.silu(gu[:, :W.f]) * gu[:, W.f:]) @ wd
            keep["mlp"][li, p] = m[-1]
            x = x + m
        keys.append(ks)
        values.append(vs)
        xf = x[-1:] * inv_rms(x[-1:], W.eps) * W.final_w
        logits[p] = (xf @ W.unembed.t())[0]
    return keep, keys, values, logits


def sweep(W, keep, keys, values, lengths, dirs, rows, chunk):
    """The ablated runs: rows = (prompt, join stage, start residual) sorted
    by join stage; returns each row's centred target logit."""
    prompt, start, x = rows
    n_all = x.shape[0]
    L = len(W.layers)
    scale = W.hd ** -0.5
    rep = W.H // W.KV
    # per stage, the rows joined so far (sorted by start: a prefix)
    active = torch.searchsorted(start, torch.arange(2 * L), right=True).tolist()
    by_prompt = [torch.nonzero(prompt == p).flatten() for p in range(len(lengths))]
    for k in range(2 * L):
        n = active[k]
        if n == 0:
            continue
        li = k // 2
        wqkv, wo, wgu, wd = W.layers[li]
        for c0 in range(0, n, chunk):
            c1 = min(n, c0 + chunk)
            xs = x[c0:c1]
            h = xs * inv_rms(xs, W.eps)
            if k % 2 == 0:  # attention over the prefix cache and the row's own key
                q, kk, vv = W.split_qkv(h @ wqkv)  # the final position: no rotary (relative keys)
                heads = torch.empty(c1 - c0, W.H, W.hd)
                for p, idx in enumerate(by_prompt):
                    r = idx[(idx >= c0) & (idx < c1)] - c0
                    if r.numel() == 0:
                        continue
                    m = r.numel()
                    qg = q[r].view(m, W.KV, rep, W.hd).permute(1, 0, 2, 3).reshape(W.KV, m * rep, W.hd)
                    kp, vp = keys[p][li].transpose(0, 1), values[p][li].transpose(0, 1)  # [KV, T-1, hd]
                    s_pre = torch.bmm(qg, kp.transpose(1, 2)) * scale  # [KV, m*rep, T-1]
                    s_own = (qg * kk[r].transpose(0, 1).repeat_interleave(rep, 1)).sum(-1, keepdim=True) * scale
                    pr = torch.softmax(torch.cat((s_pre, s_own), -1), -1)
                    o = torch.bmm(pr[..., :-1], vp) + pr[..., -1:] * vv[r].transpose(0, 1).repeat_interleave(rep, 1)
                    heads[r] = o.view(W.KV, m, rep, W.hd).permute(1, 0, 2, 3).reshape(m, W.H, W.hd)
                xs += heads.view(c1 - c0, -1) @ wo
            else:
                gu = h @ wgu
                xs += (F.silu(gu[:, :W.f]) * gu[:, W.f:]) @ wd
    return (x * inv_rms(x, W.eps) * dirs[prompt]).sum(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=4096, help="rows per product")
    ap.add_argument("--runs", type=int, default=1, help="timed sweeps (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed sweeps before them")
    ap.add_argument("--distinct", action="store_true",
                    help="each distinct (prompt, component, source) once, weighted by its draws")
    ap.add_argument("--hydra-rows", action="append", default=[])
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU suite")
    ap.add_argument("--tf32", action="store_true", help="TF32 products on a GPU (default: fp32)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32

    prompts = json.load(open(a.prompts))["prompts"]
    ids_list = [p["ids"] for p in prompts]
    lengths = [len(i) for i in ids_list]
    P = len(prompts)
    if os.path.isdir(a.model):
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(a.model), gguf_file=os.path.basename(a.model), dtype=torch.float32)
    model.eval()
    model.to(dev)
    torch.set_default_device(dev)  # every tensor the sweep makes, on the model's device
    L = model.config.num_hidden_layers
    n_comp = 2 * L

    W = Weights(model)  # folded once, as at load

    def one_sweep():
        """The clean pass and every ablated run: the timed part."""
        keep, keys, values, logits = clean_pass(W, ids_list)
        centred = logits - logits.mean(-1, keepdim=True)
        target = centred.argmax(-1)
        clean_logit = centred[torch.arange(P), target]
        dirs = (W.unembed[target] - W.u_mean) * W.final_w  # [P, d]: the folded target rows
        # the rows: (prompt, component, source) per draw, or each distinct one once
        draws = {}
        for p in range(P):
            for c in range(n_comp):
                for s in range(a.samples):
                    key = (p, c, hydra_draw(a.seed, p, c, s, P))
                    if a.distinct:
                        draws[key] = draws.get(key, 0) + 1
                    else:
                        draws[(p, c, s, key[2])] = 1
        items = list(draws.items())
        prompt = torch.tensor([k[0] for k, _ in items])
        comp = torch.tensor([k[1] for k, _ in items])
        src = torch.tensor([k[-1] for k, _ in items])
        weight = torch.tensor([w for _, w in items], dtype=torch.float64)
        layer, is_mlp = comp // 2, comp % 2 == 1
        start = comp + 1  # the sub-stage after the ablated one
        order = torch.argsort(start, stable=True)
        prompt, comp, src, weight, layer, is_mlp, start = (t[order] for t in (
            prompt, comp, src, weight, layer, is_mlp, start))
        base = torch.where(is_mlp[:, None], keep["mid"][layer, prompt], keep["pre"][layer, prompt])
        out = torch.where(is_mlp[:, None], keep["mlp"][layer, src], keep["attn"][layer, src])
        x = base + out
        ab = sweep(W, keep, keys, values, lengths, dirs, (prompt, start, x), a.chunk)
        total = torch.zeros(P, n_comp, dtype=torch.float64)
        total.index_put_((prompt, comp), weight * (clean_logit[prompt] - ab).double(), accumulate=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return total / a.samples, target.cpu(), clean_logit.cpu(), len(items)

    with torch.no_grad():
        for _ in range(a.warmup):
            one_sweep()
        times = []
        c0 = time.process_time()
        for _ in range(a.runs):
            t0 = time.perf_counter()
            total, target, clean_logit, n_rows = one_sweep()
            times.append(time.perf_counter() - t0)
        cpu_per_wall = (time.process_time() - c0) / sum(times)
    t = float(np.median(times))

    cfg = model.config
    d, f, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    hd = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    attn_mm, mlp_mm = 2 * (d * (q + 2 * kv) + q * d), 2 * 3 * d * f
    flops = sum(T * L * (attn_mm + mlp_mm) + L * 2 * q * T * (T + 1) + 2 * V * d for T in lengths)
    per_row = n_rows / (P * n_comp)  # rows per (prompt, component), on average
    for p in range(P):
        for c in range(n_comp):
            for k in range(c + 1, n_comp):
                flops += per_row * (mlp_mm if k % 2 else attn_mm + 4 * q * lengths[p])
    for path in a.hydra_rows:
        h = json.load(open(path))
        tag = (f"check expert{' --distinct' if a.distinct else ''} vs hydra reuse={h['reuse']} "
               f"each_draw={h.get('each_draw', 1)}:")
        h_logit = np.array([c["logit"] for c in h["clean"]])
        h_target = np.array([c["target"] for c in h["clean"]])
        print(f"{tag} clean targets equal {int((h_target == target.numpy()).sum())}/{P}; clean "
              f"centred target logit max |diff| {np.abs(h_logit - clean_logit.numpy()).max():.1e} "
              f"(logits up to {np.abs(h_logit).max():.1f})")
        names = [f"{'mlp' if c % 2 else 'attn'}.{c // 2}" for c in range(n_comp)]
        if h["components"] != names or h.get("samples") != a.samples:
            print(f"{tag} rows are for other components or samples: effects not compared")
            continue
        ht, tt = np.array(h["total_effect"]), total.cpu().numpy()
        scale = np.abs(h_logit).max()
        print(f"{tag} total effect per prompt and component ({P * n_comp}): max |diff| "
              f"{np.abs(ht - tt).max():.1e} = {np.abs(ht - tt).max() / scale:.1e} of the logit "
              f"scale {scale:.2f} (bound 1e-4: {'within' if np.abs(ht - tt).max() <= 1e-4 * scale else 'OVER'})")
    print(f"backend=torch-{torch.__version__}-expert{'-' + dev.type if dev.type != 'cpu' else ''} "
          f"tf32={int(a.tf32)} distinct={int(a.distinct)} chunk={a.chunk} "
          f"components={n_comp} components_all={n_comp} samples={a.samples} rows={n_rows} "
          f"runs={a.runs} measured_s={t:.4f} extrapolated_s={t:.4f} "
          f"variants_all={n_comp * a.samples * P} flops_all={flops:.4e} cpu_per_wall={cpu_per_wall:.2f}")


if __name__ == "__main__":
    main()
