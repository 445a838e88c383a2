#!/usr/bin/env python3
"""PyTorch side of tests/bench/sweep.sh: the "hydra" ablation sweep written the
way a researcher would with Hugging Face transformers and forward hooks.

SmolLM2 from the same GGUF (dequantised to fp32), sdpa attention,
torch.no_grad, torch.set_num_threads(--threads). The prompts' ids come from
tests/bench/sweep_prompts.json.

  clean pass   one forward of the 16 prompts, right-padded into one batch with
               an attention mask (right padding leaves every real position
               exactly as in an unpadded run: causal attention never reads a
               later pad); hooks keep each layer's self_attn and mlp output at
               each prompt's final position; target = the clean argmax there;
               centred logit = logit - mean over the vocabulary.
  ablations    for each component (attn.0, mlp.0, attn.1, ...) and each of the
               15 resamples: one forward of the same padded batch with a
               forward hook on that layer's self_attn (or mlp) that replaces
               the output at each prompt's final position by the clean output
               at the final position of another prompt; the centred target
               logit read at each prompt's final position, total effect =
               clean - ablated, averaged over the 15 draws. Logits come back
               for every position (the model's default), as a researcher's
               `model(ids, attention_mask=mask).logits[range(B), last]` does.
  draws        --draws hydra (default) makes the same draws as hydra's engine
               (splitmix64 of seed, prompt, component index, sample) so that
               the total effects can be compared one by one; --draws numpy
               uses numpy's default_rng(seed). Either way they cost nothing.

--components-subset K runs every K-th component only (as bench_sweep does);
extrapolated_s = measured_s * 60 / components run: every ablated forward costs
the same whatever the component. --hydra-rows FILE (bench_sweep --rows-out,
same subset) compares clean logits and total effects with hydra. --metrics
all also reads each ablated run's whole final-position distribution: the
target's log-prob and KL(clean || ablated), from log_softmax in float64 of
the fp32 logits, averaged over the draws (as hydra's --metrics all), and
compares them with the rows' "kl" and "logprob" when present.

Prints one key=value line (last line) for sweep.sh.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--components-subset", type=int, default=1)
    ap.add_argument("--draws", choices=("hydra", "numpy"), default="hydra")
    ap.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (fp32, TF32 off)")
    ap.add_argument("--tf32", action="store_true", help="TF32 matrix products on the GPU")
    ap.add_argument("--weights-bf16", action="store_true",
                    help="every weight rounded to bfloat16, arithmetic in fp32 "
                         "(hydra's --weights-dtype bf16)")
    ap.add_argument("--metrics", choices=("logit", "all"), default="logit",
                    help="all: the target's log-prob and KL(clean || ablated) of every run too")
    ap.add_argument("--hydra-rows", action="append", default=[],
                    help="bench_sweep --rows-out file to compare with (repeatable)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32  # fp32 unless asked, as hydra's default
    torch.backends.cudnn.allow_tf32 = a.tf32

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    prompts = json.load(open(a.prompts))["prompts"]
    P = len(prompts)
    lengths = [len(p["ids"]) for p in prompts]
    T = max(lengths)
    ids = torch.zeros(P, T, dtype=torch.long)  # right padding
    mask = torch.zeros(P, T, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : lengths[i]] = torch.tensor(p["ids"])
        mask[i, : lengths[i]] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    rows = torch.arange(P, device=dev)
    last = torch.tensor(lengths, device=dev) - 1

    if os.path.isdir(a.model):  # a Hugging Face folder (config.json + safetensors)
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32,
                                                     attn_implementation=a.attn)
    else:  # a GGUF file, dequantised
        model = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(a.model), gguf_file=os.path.basename(a.model),
            dtype=torch.float32, attn_implementation=a.attn)
    if a.weights_bf16:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    model.to(dev).eval()
    cfg = model.config
    # llama-style (model.layers[L].self_attn / .mlp) or GPT-2 (transformer.h[L].attn / .mlp)
    layers = model.model.layers if hasattr(model, "model") else model.transformer.h
    nL = len(layers)

    def attn_of(layer):
        return layer.self_attn if hasattr(layer, "self_attn") else layer.attn
    comps = [("attn" if i % 2 == 0 else "mlp", i // 2) for i in range(2 * nL)]
    run = comps[:: a.components_subset]

    def forward():
        return model(input_ids=ids, attention_mask=mask, use_cache=False).logits

    last_logits = [None]  # the latest forward's final-position logits, for --metrics all

    def centred_final(logits):
        lf = logits[rows, last]  # [P, V] at each prompt's final position
        last_logits[0] = lf
        return lf - lf.mean(dim=-1, keepdim=True)

    with torch.no_grad():
        forward()  # warm-up
        sync()
        t0, c0 = time.perf_counter(), time.process_time()

        # ---- clean pass: keep the components' outputs at the final positions
        clean_out = {}

        def keeper(key):
            def hook(mod, inp, out):
                o = out[0] if isinstance(out, tuple) else out
                clean_out[key] = o[rows, last].clone()
            return hook

        handles = []
        for L, layer in enumerate(layers):
            handles.append(attn_of(layer).register_forward_hook(keeper(("attn", L))))
            handles.append(layer.mlp.register_forward_hook(keeper(("mlp", L))))
        cl = centred_final(forward())
        for h in handles:
            h.remove()
        target = cl.argmax(dim=-1)
        clean_logit = cl[rows, target]
        full = a.metrics == "all"
        if full:  # the clean distribution at the final position, in float64
            clean_lp = torch.log_softmax(last_logits[0].double(), dim=-1)
            clean_p = clean_lp.exp()

        # ---- the sweep: one forward per (component, sample)
        rng = np.random.default_rng(a.seed)
        total = torch.zeros(P, len(run), dtype=torch.float64, device=dev)
        kl = torch.zeros_like(total)
        logprob = torch.zeros_like(total)
        for ci, (kind, L) in enumerate(run):
            mod = attn_of(layers[L]) if kind == "attn" else layers[L].mlp
            src_vals = clean_out[(kind, L)]
            for s in range(a.samples):
                if a.draws == "hydra":
                    src = torch.tensor([hydra_draw(a.seed, p, ci, s, P) for p in range(P)],
                                       device=dev)
                else:
                    r = torch.from_numpy(rng.integers(0, P - 1, size=P)).to(dev)
                    src = torch.where(r < rows, r, r + 1)
                repl = src_vals[src]

                def hook(mod, inp, out, repl=repl):
                    o = out[0] if isinstance(out, tuple) else out
                    o[rows, last] = repl
                    return out

                h = mod.register_forward_hook(hook)
                ab = centred_final(forward())[rows, target]
                h.remove()
                total[:, ci] += (clean_logit - ab).double()
                if full:
                    lp = torch.log_softmax(last_logits[0].double(), dim=-1)
                    kl[:, ci] += (clean_p * (clean_lp - lp)).sum(dim=-1)
                    logprob[:, ci] += lp[rows, target]
        total /= a.samples
        kl /= a.samples
        logprob /= a.samples
        sync()
        t = time.perf_counter() - t0
        total, target, clean_logit = total.cpu(), target.cpu(), clean_logit.cpu()
        kl, logprob = kl.cpu(), logprob.cpu()
        cpu_per_wall = (time.process_time() - c0) / t

    # ---- counted FLOPs of this work (the padded batch, logits at every position)
    d, V = cfg.hidden_size, cfg.vocab_size
    f = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d
    hd = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
    q = cfg.num_attention_heads * hd
    kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    kv *= hd
    n_mlp = 3 if getattr(cfg, "model_type", "") != "gpt2" else 2
    tok = P * T
    per_forward = nL * (tok * 2 * (d * q + 2 * d * kv + q * d + n_mlp * d * f)
                        + P * 2 * 2 * q * T * T) + tok * 2 * V * d
    forwards_run = 1 + len(run) * a.samples
    forwards_all = 1 + len(comps) * a.samples
    variants = len(run) * a.samples * P
    extrapolated = t * forwards_all / forwards_run

    for path in a.hydra_rows:
        h = json.load(open(path))
        tag = f"check hydra reuse={h['reuse']}:"
        h_logit = np.array([c["logit"] for c in h["clean"]])
        h_target = np.array([c["target"] for c in h["clean"]])
        same_t = int((h_target == target.numpy()).sum())
        print(f"{tag} clean targets equal {same_t}/{P}; clean centred target logit max |diff| "
              f"{np.abs(h_logit - clean_logit.numpy()).max():.1e} "
              f"(logits up to {np.abs(h_logit).max():.1f})")
        names = [f"{k}.{L}" for k, L in run]
        if h["components"] != names or h.get("samples") != a.samples:
            print(f"{tag} rows are for other components or samples: effects not compared")
            continue
        ht, tt = np.array(h["total_effect"]), total.numpy()
        mean_h, mean_t = ht.mean(0), tt.mean(0)
        print(f"{tag} total effect (mean of {a.samples} draws, draws {a.draws}) per prompt and "
              f"component: max |diff| {np.abs(ht - tt).max():.1e}, corr "
              f"{np.corrcoef(ht.ravel(), tt.ravel())[0, 1]:.6f}")
        for i in sorted(range(len(names)), key=lambda i: -abs(mean_t[i]))[:3]:
            print(f"{tag} {names[i]}: total effect, mean over prompts: hydra {mean_h[i]:.4f} "
                  f"torch {mean_t[i]:.4f}")
        for key, ref in (("kl", kl), ("logprob", logprob)):
            if key in h and a.metrics == "all":
                hv, tv = np.array(h[key]), ref.numpy()
                err = np.abs(hv - tv) / np.maximum(1.0, np.abs(tv))
                print(f"{tag} {key} (mean of {a.samples} draws) per prompt and component: max "
                      f"|diff| / max(1, |torch|) {err.max():.1e} (torch up to {np.abs(tv).max():.3g})")

    print(f"backend=torch-{torch.__version__}-{dev.type} tf32={int(a.tf32)} attn={a.attn} padding=right batch={P} tokens={T} "
          f"components={len(run)} components_all={len(comps)} samples={a.samples} "
          f"forwards={forwards_run} measured_s={t:.4f} extrapolated_s={extrapolated:.4f} "
          f"variants={variants} variants_all={len(comps) * a.samples * P} "
          f"variants_per_s={len(comps) * a.samples * P / extrapolated:.1f} flops_all={per_forward * forwards_all:.4e} "
          f"cpu_per_wall={cpu_per_wall:.2f}")


if __name__ == "__main__":
    main()
