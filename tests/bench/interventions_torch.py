#!/usr/bin/env python3
"""PyTorch side of tests/bench/interventions.sh: a per-position patching grid
and a ROME causal trace on SmolLM2-135M, written the way a researcher would
with Hugging Face transformers and forward hooks, two ways:

  naive    one full forward of the prompt per cell (the intervention hooked
           in at its layer and position), batch 1, use_cache=False.
  cached   the run being intervened on (the clean prompt for the grid, the
           corrupted one for the trace) once with use_cache=True per prompt;
           for a cell at position p its past_key_values truncated before p
           (positions < p are the same in every cell that intervenes at p:
           causal attention), then a forward over the positions >= p only,
           with the same hooks.

Both: SmolLM2 from the GGUF, dequantised to fp32 (as hydra reads it), sdpa
attention, torch.no_grad, torch.set_num_threads(--threads), logits of the
final position only (logits_to_keep=1), centred (minus the vocabulary mean)
as hydra's. The timed part includes each prompt's clean pass(es) and not
model loading, as hydra's elapsed_s.

  grid     4 prompts of 10 tokens in two counterfactual pairs (0 <-> 1,
           2 <-> 3); cell (prompt i, layer L, position t): resid_pre.L of
           prompt i's run at t replaced by its counterfactual's clean
           resid_pre.L at t (noising). Target: prompt i's clean argmax.
  trace    4 prompts with a subject; the subject's token embeddings get
           hydra's seeded noise (scale x the embedding table's std; the draws
           of tests/golden/make_intervention_golden.py); cell (prompt i, unit,
           position t): the clean (noise-free) value of the unit restored at t.
           Units: resid_pre.L for every layer, and (--windows) ROME's windows
           of 10 MLP and 10 attention outputs around every layer
           (L - 5 .. L + 4, clipped), each restored together as a group.
           Target: the clean run's argmax.

Modes:
  --write-jobs DIR  writes hydra's jobs DIR/grid.json and DIR/trace.json
                    (targets named: the clean argmax from transformers), each
                    with a JOB.meta.json for the run mode, then exits.
  --job JOB [--hydra-rows ROWS] ... [--way naive|cached ...]
                    times each baseline on each job (one model load);
                    --naive-subset / --cached-subset K runs the units whose
                    index is a multiple of K (every prompt and position of
                    them) and extrapolates by all units over those run (a
                    cell's cost depends on its position, never on its unit);
                    ROWS (hydra run's ndjson of that job) are compared with
                    every cell run, exit 1 past --bound; --retries N reruns
                    a step whose CPU/wall was under 0.9 x threads.
Prints a check line and a key=value line per job and way for interventions.sh.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))

GRID_TEXTS = ["The Eiffel Tower is located in the city of", "The Colosseum is located in the city of",
              "The Louvre museum is located in the city of",
              "The Statue of Liberty is located in the city of"]
GRID_PAIRS = [1, 0, 3, 2]
TRACE_TEXTS = [("The Eiffel Tower is located in the city of", "The Eiffel Tower"),
               ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux"),
               ("The Statue of Liberty is located in the city of", "The Statue of Liberty"),
               ("The Great Wall is located in the country of", "The Great Wall")]
WINDOW = 10  # ROME's window of restored MLP / attention layers


def load(path, threads):
    torch.set_num_threads(threads)
    d, f = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    return tok, model.eval()


def units_of(kind, n_layers, windows):
    """[(name, [(site, layer)])]: hydra's components first, then its groups."""
    units = [(f"resid_pre.{L}", [("resid_pre", L)]) for L in range(n_layers)]
    if kind == "trace" and windows:
        for site in ("mlp", "attn"):
            for L in range(n_layers):
                lo, hi = max(0, L - WINDOW // 2), min(n_layers, L + WINDOW - WINDOW // 2)
                units.append((f"{site} window {L}", [(site, l) for l in range(lo, hi)]))
    return units


class Hooks:
    """The cell's interventions on the model: noise on the embeddings of the
    subject positions, and values written at one index of a site."""

    def __init__(self, model):
        self.model = model
        self.layers = model.model.layers

    def module(self, site, L):
        layer = self.layers[L]
        return {"resid_pre": layer, "mlp": layer.mlp, "attn": layer.self_attn}[site]

    def forward(self, ids, offset=0, cache=None, edits=(), noise=None):
        """Centred final-position logits of ids[offset:] (after cache, which
        holds positions < offset), with edits [(site, L, position, value)] and
        noise {position: [d]} added to the embeddings."""
        handles = []
        if noise:
            def corrupt(mod, args, out):
                out = out.clone()
                for t, z in noise.items():
                    if t >= offset:
                        out[0, t - offset] += z
                return out
            handles.append(self.model.model.embed_tokens.register_forward_hook(corrupt))
        for site, L, t, v in edits:
            k = t - offset
            if site == "resid_pre":
                def pre(mod, args, kwargs, k=k, v=v):
                    if args:
                        h = args[0].clone()
                        h[0, k] = v
                        return (h,) + tuple(args[1:]), kwargs
                    h = kwargs["hidden_states"].clone()
                    h[0, k] = v
                    return args, {**kwargs, "hidden_states": h}
                handles.append(self.module(site, L).register_forward_pre_hook(pre, with_kwargs=True))
            else:
                def post(mod, args, out, k=k, v=v):
                    o = out[0] if isinstance(out, tuple) else out
                    o[0, k] = v
                    return out
                handles.append(self.module(site, L).register_forward_hook(post))
        try:
            out = self.model(input_ids=ids[:, offset:], past_key_values=cache,
                             use_cache=cache is not None, logits_to_keep=1)
        finally:
            for h in handles:
                h.remove()
        lg = out.logits[0, -1]
        return lg - lg.mean(), out.past_key_values

    def states(self, ids, noise=None):
        """{(site, L): [T, d]} of a run: every layer's input, MLP and attention output."""
        got, handles = {}, []
        for L, layer in enumerate(self.layers):
            def pre(mod, args, kwargs, L=L):
                got[("resid_pre", L)] = (args[0] if args else kwargs["hidden_states"])[0].clone()
            handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
            for site in ("mlp", "attn"):
                def post(mod, args, out, key=(site, L)):
                    got[key] = (out[0] if isinstance(out, tuple) else out)[0].clone()
                handles.append(self.module(site, L).register_forward_hook(post))
        try:
            lg, _ = self.forward(ids, noise=noise)
        finally:
            for h in handles:
                h.remove()
        return got, lg


def subject_span(tok, text, subject):
    """The subject's token positions (offset mapping, as the goldens find them)."""
    enc = tok(text, return_offsets_mapping=True)
    a = text.index(subject)
    b = a + len(subject)
    return [k for k, (x, y) in enumerate(enc["offset_mapping"]) if x < b and y > a and y > x]


def noise_std(model, scale):
    return scale * float(model.model.embed_tokens.weight.detach().double().std(unbiased=False))


def trace_noise(std, seed, prompt, span, d):
    import make_intervention_golden as IG  # hydra's draws, reproduced for the goldens
    return IG.trace_noise(std, seed, prompt, span, d)


def write_jobs(a):
    tok, model = load(a.model, a.threads)
    hooks = Hooks(model)
    for kind in ("grid", "trace"):
        write_job(a, tok, model, hooks, kind, os.path.join(a.write_jobs, kind + ".json"))


def write_job(a, tok, model, hooks, kind, path):
    texts = GRID_TEXTS if kind == "grid" else [t for t, _ in TRACE_TEXTS]
    ids = [tok(t)["input_ids"] for t in texts]
    meta = {"kind": kind, "ids": ids, "windows": a.windows}
    with torch.no_grad():
        targets = [int(hooks.forward(torch.tensor([x]))[0].argmax()) for x in ids]
    if kind == "grid":
        for i, j in enumerate(GRID_PAIRS):
            if len(ids[i]) != len(ids[j]):
                sys.exit(f"grid prompts {i} and {j} differ in length: {len(ids[i])}, {len(ids[j])}")
        prompts = [{"text": t, "target": targets[i], "counterfactual": {"prompt": GRID_PAIRS[i]}}
                   for i, t in enumerate(texts)]
        abl = {"components": ["resid_pre.*"], "methods": [{"patch": {"source": "counterfactual"}}],
               "positions": {"each": "all"}}
        job = {"prompts": prompts, "ablations": abl}
    else:
        prompts = [{"text": t, "subject": s, "target": targets[i]}
                   for i, (t, s) in enumerate(TRACE_TEXTS)]
        abl = {"components": ["resid_pre.*"], "methods": ["restore"], "positions": {"each": "all"}}
        units = units_of("trace", len(hooks.layers), a.windows)
        groups = {name: [f"{s}.{L}" for s, L in members] for name, members in units
                  if not name.startswith("resid_pre.")}
        if groups:
            abl["groups"] = groups
        job = {"prompts": prompts, "trace": {"scale": a.scale, "seed": a.seed}, "ablations": abl}
        meta["spans"] = [subject_span(tok, t, s) for t, s in TRACE_TEXTS]
        meta["std"] = noise_std(model, a.scale)
        meta["seed"] = a.seed
    meta["targets"] = targets
    with open(path, "w") as f:
        json.dump(job, f, indent=1)
    with open(path + ".meta.json", "w") as f:
        json.dump(meta, f)
    print(f"wrote {path}: {kind}, {len(ids)} prompts of {[len(x) for x in ids]} tokens, "
          f"targets {[tok.decode([t]) for t in targets]}")


def run_baseline(a, hooks, job, way, subset, hydra_rows):
    """Times one baseline way over one job; returns its key=value line."""
    meta = json.load(open(job + ".meta.json"))
    kind = meta["kind"]
    nL, d = len(hooks.layers), hooks.model.config.hidden_size
    units = units_of(kind, nL, meta["windows"])
    run_units = [(ui, u) for ui, u in enumerate(units) if ui % subset == 0]
    ids = [torch.tensor([x]) for x in meta["ids"]]
    P = len(ids)
    noises = [trace_noise(meta["std"], meta["seed"], i, meta["spans"][i], d) for i in range(P)] \
        if kind == "trace" else [None] * P
    cells, forwards, tokens = {}, 0, 0
    with torch.no_grad():
        hooks.forward(ids[0])  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(P):
            T = ids[i].shape[1]
            tg = meta["targets"][i]
            # the run intervened on, and where each cell's values come from
            if kind == "grid":
                run_noise = None
                src, _ = hooks.states(ids[GRID_PAIRS[i]])
            else:
                run_noise = noises[i]
                src, _ = hooks.states(ids[i])  # the clean run: what "restore" puts back
            base, cache = hooks.forward(ids[i], cache=DynamicCache() if way == "cached" else None,
                                        noise=run_noise)
            forwards, tokens = forwards + 2, tokens + 2 * T
            if way == "cached":
                kv = [(layer.keys, layer.values) for layer in cache.layers]
            base_logit = float(base[tg])
            for t in range(T):
                for ui, (name, members) in run_units:
                    edits = [(s, L, t, src[(s, L)][t]) for s, L in members]
                    if way == "naive" or t == 0:
                        lg, _ = hooks.forward(ids[i], edits=edits, noise=run_noise)
                        tokens += T
                    else:
                        prefix = DynamicCache(ddp_cache_data=[(k[:, :, :t], v[:, :, :t]) for k, v in kv])
                        lg, _ = hooks.forward(ids[i], offset=t, cache=prefix, edits=edits,
                                              noise=run_noise)
                        tokens += T - t
                    forwards += 1
                    ab = float(lg[tg])
                    cells[(i, name, t)] = (ab, base_logit - ab, base_logit)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    n_all = sum(ids[i].shape[1] for i in range(P)) * len(units)
    extrapolated = wall * len(units) / len(run_units)
    ok = check(kind, way, hydra_rows, cells, meta, a.bound) if hydra_rows else True
    line = (f"kind={kind} way={way} backend=torch-{torch.__version__} attn=sdpa units={len(run_units)} "
            f"units_all={len(units)} cells={len(cells)} cells_all={n_all} forwards={forwards} "
            f"tokens={tokens} measured_s={wall:.4f} extrapolated_s={extrapolated:.4f} "
            f"cpu_per_wall={cpu / wall:.2f}")
    return line, ok, cpu / wall


def run_all(a):
    """Every job x way, each timed step rerun (up to --retries more times) when
    other work took the cores (CPU/wall under 0.9 x threads): the least
    disturbed try is kept."""
    _, model = load(a.model, a.threads)
    hooks = Hooks(model)
    rows = a.hydra_rows or [None] * len(a.job)
    failed = False
    for job, hydra_rows in zip(a.job, rows):
        for way in a.way:
            subset = a.naive_subset if way == "naive" else a.cached_subset
            best = None
            for attempt in range(a.retries + 1):
                line, ok, cpw = run_baseline(a, hooks, job, way, subset, hydra_rows)
                print(f"  {line.split(' backend')[0]} try {attempt + 1}: {line.split('measured_s=')[1]}",
                      file=sys.stderr, flush=True)
                failed |= not ok
                if best is None or cpw > best[1]:
                    best = (line + f" tries={attempt + 1}", cpw)
                if cpw >= 0.9 * a.threads:
                    break
            print(best[0], flush=True)
    if failed:
        sys.exit(1)


def check(kind, way, path, cells, meta, bound_rel):
    """Every cell run against hydra's variant row (same prompt, unit,
    position); prints one line, returns whether all are within the bound."""
    rows = [json.loads(line) for line in open(path) if line.strip()]
    clean = {r["prompt"]: r for r in rows if r.get("type") == "clean"}
    var = {(r["prompt"], r["component"], r["position"]): r for r in rows if r.get("type") == "variant"}
    tag = f"check {kind} {way}:"
    same_t = sum(clean[i]["target"] == t for i, t in enumerate(meta["targets"]) if i in clean)
    base = {i: v[2] for (i, _, _), v in cells.items()}
    d_base = max(abs(clean[i]["logit"] - b) for i, b in base.items())
    scale = max(abs(clean[i]["logit"]) for i in clean)
    missing = [k for k in cells if k not in var]
    err_ab = max((abs(var[k]["ablated_logit"] - v[0]) for k, v in cells.items() if k in var), default=float("nan"))
    err_te = max((abs(var[k]["total_effect"] - v[1]) for k, v in cells.items() if k in var), default=float("nan"))
    te = np.array([v[1] for k, v in cells.items() if k in var])
    ht = np.array([var[k]["total_effect"] for k in cells if k in var])
    bound = bound_rel * scale
    ok = not missing and len(clean) == len(meta["targets"]) and same_t == len(clean) and \
        max(d_base, err_ab, err_te) <= bound
    print(f"{tag} targets equal {same_t}/{len(meta['targets'])}; {len(cells)} cells, {len(missing)} "
          f"missing from hydra's rows; max |diff|: run's centred target logit {d_base:.1e}, ablated "
          f"logit {err_ab:.1e}, total effect {err_te:.1e} (logit scale {scale:.2f}, bound "
          f"{bound_rel:g} x scale = {bound:.1e}; total effects up to {np.abs(te).max():.2f}, corr "
          f"{np.corrcoef(te, ht)[0, 1]:.6f}): {'ok' if ok else 'FAILED'}", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--write-jobs", metavar="DIR")
    ap.add_argument("--job", action="append", default=[], help="a job --write-job wrote (repeatable)")
    ap.add_argument("--way", action="append", choices=("naive", "cached"),
                    help="baselines to time, in order (repeatable; default naive, cached)")
    ap.add_argument("--retries", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--naive-subset", type=int, default=1)
    ap.add_argument("--cached-subset", type=int, default=1)
    ap.add_argument("--windows", type=int, default=1, help="trace: restore MLP/attention windows too")
    ap.add_argument("--scale", type=float, default=3)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--hydra-rows", action="append",
                    help="hydra run's ndjson of each --job, in the same order")
    ap.add_argument("--bound", type=float, default=1e-3,
                    help="largest |torch - hydra| allowed, as a fraction of the largest |clean logit|")
    a = ap.parse_args()
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    a.way = a.way or ["naive", "cached"]
    if a.hydra_rows and len(a.hydra_rows) != len(a.job):
        ap.error("--hydra-rows: one per --job")
    if a.write_jobs:
        write_jobs(a)
    else:
        run_all(a)


if __name__ == "__main__":
    main()
