#!/usr/bin/env python3
"""Goldens for "target": "next" (the true next token at every position).

Hugging Face `transformers` + torch forward hooks on the CPU (fp32, eager
attention, batch 1), through the hook helpers of make_ablation_golden.py;
none of hydra's code is used.

For each tiny model, the prompts of its ablation golden; for every prompt of
n tokens and every position t < n - 1 a readout: the model run on the prefix
ids[0..t] (causal attention: the same as the full prompt's run up to t),
target = ids[t + 1], read at t:

  clean_logit     centred logit of the target at t (logit - mean over vocab)
  ablations       for each (component, method, positions):
                    positions "last": the component replaced at t only;
                    positions "all": at every position 0..t
                  total_effect  = clean_logit - ablated centred target logit
                  direct_effect = DE(clean value at t) - DE(ablated value at t),
                                  DE with the clean run's final-norm scale at t
                                  and u = W_U[target] - mean row of W_U

Writes tests/golden/next_<name>.json:
  {"model", "source", "prompts": [ids...],
   "ablations": [{"component", "method", "positions"}...],
   "readouts": [{"prompt", "position", "target", "clean_logit",
                 "total_effect": [...], "direct_effect": [...]}]}  (per ablation)

Usage: python tests/golden/make_next_golden.py [--out tests]
"""
import argparse
import json
import os
import sys

import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_ablation_golden as mag  # noqa: E402  (hook helpers, no hydra code)

ABLATIONS = [("attn.0", "zero", "last"), ("mlp.1", "zero", "last"), ("attn.2", "scale:0.5", "last"),
             ("mlp.0", "zero", "all"), ("attn.1", "scale:0.5", "all")]


def readout(arch, prefix, target):
    cap = mag.forward(arch, prefix)
    inv = arch.inv_scale(cap["resid"])
    u = arch.u(target)
    return cap, inv, u, float(mag.centred(cap["logits"])[target])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    golden_dir = os.path.join(a.out, "golden")
    for name in ("tiny-gpt2", "tiny-llama"):
        path = os.path.join(a.out, "data", name)
        arch = mag.Arch(mag.load_eager(path))
        src = json.load(open(os.path.join(golden_dir, f"ablation_{name}.json")))
        prompts = [p["ids"] for p in src["prompts"]]
        rows = []
        for i, ids in enumerate(prompts):
            for t in range(len(ids) - 1):
                prefix, target = ids[: t + 1], ids[t + 1]
                cap, inv, u, clean = readout(arch, prefix, target)
                tot, de = [], []
                for comp, method, positions in ABLATIONS:
                    if positions == "last":
                        fn = mag.method_fn(method, comp, None, None, arch)
                    else:
                        fn = mag.method_fn_all(method, comp, {"ids": prefix}, None, arch)
                    ab = mag.forward(arch, prefix, {comp: fn}, positions)
                    tot.append(clean - float(mag.centred(ab["logits"])[target]))
                    de.append(arch.de(cap[comp], inv, u) - arch.de(ab[comp], inv, u))
                rows.append({"prompt": i, "position": t, "target": int(target),
                             "clean_logit": mag.rnd(clean), "total_effect": [mag.rnd(x) for x in tot],
                             "direct_effect": [mag.rnd(x) for x in de]})
        out = {"model": f"tests/data/{name}",
               "source": mag.SOURCE, "prompts": prompts,
               "ablations": [{"component": c, "method": m, "positions": p} for c, m, p in ABLATIONS],
               "readouts": rows}
        dst = os.path.join(golden_dir, f"next_{name}.json")
        with open(dst, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"{name}: {len(rows)} readouts x {len(ABLATIONS)} ablations -> {dst}")


if __name__ == "__main__":
    main()
