#!/usr/bin/env python3
"""Golden results of hydra's newer interventions: residual-stream sites
(resid_pre.L, resid_mid.L, resid_post.L) and group ablations (several
components ablated together in one run), each as a job document a user would
write, with the rows `transformers` + torch forward hooks give for it.

Computed on the CPU in fp32 (eager attention, batch 1, no cache); none of
hydra's code is used. The hook plumbing, direct effects and clean records come
from make_ablation_golden.py (the engine goldens' script).

Definitions (the README's "Residual-stream sites" and "Groups"):
  resid_pre.L      the input of decoder layer L (a pre-hook on the layer)
  resid_post.L     the output of decoder layer L (a forward hook on it)
  resid_mid.L      the residual between attention and MLP of layer L: the
                   attention output o is replaced by f(r + o) - r, where r is
                   the layer's input in the same run (so r + o becomes f(r + o))
  pattern.L.H      head H's attention pattern in layer L (TransformerLens'
                   hook_pattern): torch's softmax is replaced, while layer L's
                   attention module runs (eager attention), by one that
                   changes head H's rows of its output at the intervened
                   query positions (zero, scale, or the source prompt's clean
                   rows; the pattern prompts all have one token count)
  direct effect    a residual site: DE(clean value) - DE(ablated value) at the
                   final position, read with the clean frozen norm scale; a
                   group: the summed drop of its slots' direct effects
  compensation     the summed change of the direct effects of the slots
                   downstream of the unit (after a residual site; after the
                   group's first slot and not in the group)
  positions        "last": the final position; "all": every position (patch
                   aligned from the end, as the engine goldens)
  methods          zero, scale:0.5, mean (final-position clean values averaged
                   over the prompts; "last" only), patch from prompt 1

Usage:
  python tests/golden/make_intervention_golden.py --out tests
Writes tests/golden/interventions_<name>.json for tiny-gpt2 and tiny-llama.
"""

import argparse
import contextlib
import json
import os
import sys

import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_ablation_golden as G  # noqa: E402

GROUPS = {
    "heads 0,1 of layer 1": ["head.1.0", "head.1.1"],
    "attn 0 and mlp 1": ["attn.0", "mlp.1"],
    "layers 1-2": ["attn.1", "mlp.1", "attn.2", "mlp.2"],
    "three neurons of mlp 2": ["neuron.2.3", "neuron.2.17", "neuron.2.40"],
}
RESID = ["resid_pre.0", "resid_pre.2", "resid_mid.0", "resid_mid.2", "resid_post.0", "resid_post.2"]
QKV = ["q.1.0", "k.1.1", "v.2.0", "q.0.3", "v.0.1"]
QKV_GROUPS = {"q and v of head 1.0": ["q.1.0", "v.1.0"], "keys 0 and 1 of layer 1": ["k.1.0", "k.1.1"]}
CASES = [
    ("residual sites, final position", RESID, {}, ["zero", "scale:0.5", "mean", "patch"], "last"),
    ("residual sites, every position", RESID, {}, ["zero", "patch"], "all"),
    ("groups, final position", [], GROUPS, ["zero", "scale:0.5", "mean", "patch"], "last"),
    ("groups and their members, every position", ["head.1.0", "attn.0"], GROUPS,
     ["zero", "patch"], "all"),
    ("queries, keys and values, final position", QKV, QKV_GROUPS,
     ["zero", "scale:0.5", "mean", "patch"], "last"),
    ("queries, keys and values, every position", QKV, QKV_GROUPS, ["zero", "patch"], "all"),
]


def layers(arch):
    m = arch.model
    return m.transformer.h if arch.family == "gpt2" else m.model.layers


def slot_of(comp):
    kind, L = comp.split(".")[0], int(comp.split(".")[1])
    return 1 + 2 * L if kind in ("attn", "head", "q", "k", "v", "pattern") else 2 + 2 * L


def attn_module(arch, L):
    return layers(arch)[L].attn if arch.family == "gpt2" else layers(arch)[L].self_attn


@contextlib.contextmanager
def patterned(arch, fns, capture=None):
    """While it is open, torch.nn.functional.softmax called inside layer L's
    attention module (eager attention's softmax of the scores) has head H's
    pattern [T queries, T keys] replaced by fns[(L, H)](pattern); capture,
    when given, receives every layer's patterns [H, T, T] as they leave."""
    orig = torch.nn.functional.softmax
    cur, handles = [None], []

    def enter(mod, args, L):
        cur[0] = L

    def leave(mod, args, out):
        cur[0] = None
    for L in range(arch.n_layers):
        m = attn_module(arch, L)
        handles.append(m.register_forward_pre_hook(lambda mod, args, L=L: enter(mod, args, L)))
        handles.append(m.register_forward_hook(leave))

    def softmax(x, *args, **kw):
        y = orig(x, *args, **kw)
        L = cur[0]
        if L is None:
            return y
        heads = [(H, f) for (l, H), f in fns.items() if l == L]
        if heads:
            y = y.clone()
            for H, f in heads:
                y[0, H] = f(y[0, H].clone())
        if capture is not None:
            capture[L] = y[0].detach().clone()
        return y
    torch.nn.functional.softmax = softmax
    try:
        yield
    finally:
        torch.nn.functional.softmax = orig
        for h in handles:
            h.remove()


def clean_pattern(arch, cl, comp):
    """Head H's clean pattern of layer L ([T, T]) for pattern.L.H."""
    full = cl.setdefault("pattern_full", {})
    if "all" not in full:
        got = {}
        with patterned(arch, {}, got):
            G.forward(arch, cl["ids"])
        assert len(got) == arch.n_layers, "the attention's softmax was not seen in every layer"
        for L, p in got.items():  # rows of probabilities, causal
            assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-5)
            assert float(p.triu(1).abs().max()) == 0.0
        full["all"] = got
    _, L, H = comp.split(".")
    return full["all"][int(L)][int(H)]


def resid_first_downstream(comp):
    kind, L = comp.split(".")[0], int(comp.split(".")[1])
    return {"resid_pre": 1, "resid_mid": 2, "resid_post": 3}[kind] + 2 * L


def at_positions(fn, positions):
    """fn on the final position's vector, or on every position's."""
    def apply(v):  # v: [T, ...]
        v = v.clone()
        if positions == "all":
            v[:] = fn(v.clone())
        else:
            v[-1] = fn(v[-1].clone())
        return v
    return apply


M64 = (1 << 64) - 1
TRACE_KEY = 0x7472616365  # "trace": hydra's ENGINE_TRACE_KEY


def mix(seed, a, b, c):
    """hydra's rng_mix (splitmix64 chained over the counters)."""
    sm = G.splitmix
    return sm(sm(sm(seed ^ 0x68796472) ^ a) ^ ((b * 0x100000001B3) & M64) ^ c)


def gaussian(key):
    """hydra's rng_gaussian: Box-Muller on two splitmix64 values, as float32."""
    import math
    r1, r2 = G.splitmix(key), G.splitmix(key ^ 0xD1B54A32D192ED03)
    u1 = ((r1 >> 11) + 1.0) / 9007199254740993.0
    u2 = (r2 >> 11) / 9007199254740992.0
    return G.np.float32(math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2))


def trace_noise(std, seed, prompt, positions, d):
    """{position: [d] noise} of a traced prompt (float32 as hydra adds it)."""
    std = G.np.float32(std)
    return {t: torch.tensor([std * gaussian(mix(seed, prompt << 20 | t, TRACE_KEY, c)) for c in range(d)],
                            dtype=torch.float32) for t in positions}


NOISE = {}  # {position: noise}: added to the embeddings by run() while set


def run(arch, ids, interventions, positions, box=None):
    """One forward of prompt ids with interventions {comp: fn(value) -> value}
    (fn on the final position's value, or on [T, ...] for "all"). Residual
    sites are hooked here; the rest by make_ablation_golden.forward. box, when
    given, receives each residual site's value at the final position after
    the intervention. Returns forward()'s captures, with each slot's output
    as the component computed it (before a resid_mid site changes it)."""
    handles, rest, true_out, pattern_fns = [], {}, {}, {}
    box = box if box is not None else {}
    L_ = layers(arch)
    if NOISE:  # causal tracing's corruption, before any other hook on the embeddings
        def corrupt(mod, args, out):
            out = out.clone()
            for t, z in NOISE.items():
                out[0, t] = out[0, t] + z
            return out
        handles.append(arch.embed_mod.register_forward_hook(corrupt))
    for comp, fn in interventions.items():
        kind = comp.split(".")[0]
        if kind in ("q", "k", "v"):  # a head's columns of the projection's output (before rotary)
            mod, cols = qkv_point(arch, comp)
            f = at_positions(fn, positions)

            def proj(mod, args, out, f=f, cols=cols):
                out = out.clone()
                out[0, :, cols] = f(out[0, :, cols].clone())
                return out
            handles.append(mod.register_forward_hook(proj))
            continue
        if kind == "pattern":  # head H's rows of layer L's softmax
            _, L, H = comp.split(".")
            pattern_fns[(int(L), int(H))] = at_positions(fn, positions)
            continue
        if not kind.startswith("resid_"):
            rest[comp] = fn
            continue
        L = int(comp.split(".")[1])
        f = at_positions(fn, positions)
        if kind == "resid_pre":
            def pre(mod, args, kwargs, f=f, comp=comp):
                if args:
                    x = args[0]
                    y = f(x[0])[None]
                    box[comp] = y[0, -1].detach().clone()
                    return (y,) + tuple(args[1:]), kwargs
                x = kwargs["hidden_states"]
                y = f(x[0])[None]
                box[comp] = y[0, -1].detach().clone()
                return args, {**kwargs, "hidden_states": y}
            handles.append(L_[L].register_forward_pre_hook(pre, with_kwargs=True))
        elif kind == "resid_post":
            def post(mod, args, out, f=f, comp=comp):
                y = f(out[0])[None]
                box[comp] = y[0, -1].detach().clone()
                return y
            handles.append(L_[L].register_forward_hook(post))
        else:  # resid_mid: the attention output o becomes f(r + o) - r
            r = {}

            def grab_in(mod, args, kwargs, r=r):
                r["x"] = (args[0] if args else kwargs["hidden_states"])[0].detach().clone()
            handles.append(L_[L].register_forward_pre_hook(grab_in, with_kwargs=True))

            def true_attn(mod, args, out, L=L):
                true_out[f"attn.{L}"] = out[0, -1].detach().clone()
            handles.append(arch.attn_out[L].register_forward_hook(true_attn))

            def mid(mod, args, out, f=f, r=r, comp=comp):
                o = out[0]
                y = f(r["x"] + o)
                box[comp] = y[-1].detach().clone()
                return (y - r["x"])[None]
            handles.append(arch.attn_out[L].register_forward_hook(mid))
    try:
        with patterned(arch, pattern_fns):
            cap = G.forward(arch, ids, rest, positions)
    finally:
        for h in handles:
            h.remove()
    cap.update(true_out)
    return cap


def qkv_point(arch, comp):
    """(module, columns) of q.L.H / k.L.H / v.L.H: llama's q_proj, k_proj or
    v_proj output, gpt2's fused c_attn output [q | k | v]; head H's head_dim
    columns."""
    kind, L, H = comp.split(".")
    L, H, hd = int(L), int(H), arch.head_dim
    if arch.family == "gpt2":
        off = {"q": 0, "k": 1, "v": 2}[kind] * arch.d_model
        return layers(arch)[L].attn.c_attn, slice(off + H * hd, off + (H + 1) * hd)
    attn = layers(arch)[L].self_attn
    return getattr(attn, kind + "_proj"), slice(H * hd, (H + 1) * hd)


def clean_values(arch, cl, comp):
    """A residual site's (or a head's q, k, v) clean values at every
    position ([T, width])."""
    full = cl.setdefault("resid_full", {})
    if comp not in full:
        got = {}

        def grab(v):
            got["v"] = v.clone()
            return v
        run(arch, cl["ids"], {comp: grab}, "all")
        full[comp] = got["v"]
    return full[comp]


def value_fn(arch, method, comp, i, cleans, means, positions, src_cl=None):
    """fn for `method` on component comp of prompt i; a patch reads prompt
    PATCH_SOURCE's clean values, or src_cl's (a pair's source) when given."""
    if method == "zero":
        return lambda v: torch.zeros_like(v)
    if method.startswith("scale:"):
        a = float(method.split(":")[1])
        return lambda v: v * a
    if method == "mean" and comp.startswith("pattern."):  # the pattern prompts share a length
        m = torch.stack([clean_pattern(arch, c, comp) for c in cleans]).mean(0)
        return (lambda v: m[-1].clone()) if positions == "last" else (lambda v: m.clone())
    if method == "mean" and positions == "all":  # every position: prompts of one length only
        assert len({len(c["ids"]) for c in cleans}) == 1
        m = torch.stack([clean_values(arch, c, comp) for c in cleans]).mean(0)
        return lambda v: m.clone().reshape(v.shape)
    if method == "mean":
        assert positions == "last"
        if comp not in means:
            means[comp] = torch.stack([clean_values(arch, c, comp)[-1] for c in cleans]).mean(0)
        m = means[comp]
        return lambda v: m.clone().reshape(v.shape)
    assert method == "patch"
    j, run_cl = PATCH_SOURCE, cleans[i]
    if src_cl is not None:
        cleans, j = [src_cl], 0
    if comp.startswith("pattern."):  # the pattern prompts have one token count
        src = clean_pattern(arch, cleans[j], comp)
        assert src.shape[0] == len(run_cl["ids"])
        if positions == "last":
            return lambda v: src[-1].clone()
        return lambda v: src.clone()
    if comp.startswith("resid_") or comp.split(".")[0] in ("q", "k", "v"):
        src = clean_values(arch, cleans[j], comp)
        if positions == "last":
            return lambda v: src[-1].clone()
        n_i, n_j = len(run_cl["ids"]), src.shape[0]
        k = min(n_i, n_j)

        def fn(v):
            v = v.clone()
            v[n_i - k:] = src[n_j - k:]
            return v
        return fn
    if positions == "last":
        return G.method_fn({"patch": j}, comp, cleans, means, arch)
    return G.method_fn_all({"patch": j}, comp, run_cl, cleans, arch)


PATCH_SOURCE = 1  # every prompt patched from prompt 1 (from itself: a no-op)


def unit_fields(arch, cl, cap, box, members):
    """The effect fields of one run whose hooks captured `cap` (and the
    intervened residual values in `box`): the ablated logit, the unit's direct
    effect, its compensation and every slot's direct effect at the clean
    run's norm scale."""
    u, inv = cl["u"], cl["inv"]
    ablated_logit = float(G.centred(cap["logits"])[cl["target"]])
    de = [arch.de(cap[c], inv, u) for c in arch.component_order]
    ns = len(de)
    if members[0].startswith("resid_"):
        (site,) = members
        fd = resid_first_downstream(site)
        direct = arch.de(clean_values(arch, cl, site)[-1], inv, u) - arch.de(box[site], inv, u)
        comp = sum(de[s] - cl["de"][s] for s in range(fd, ns))
    else:
        own = {slot_of(c) for c in members}
        direct = sum(cl["de"][s] - de[s] for s in own)
        comp = sum(de[s] - cl["de"][s] for s in range(min(own) + 1, ns) if s not in own)
    return {"total_effect": cl["clean_logit"] - ablated_logit, "ablated_logit": ablated_logit,
            "direct_effect": direct, "compensation": comp, "de_clean_scale": de}


def check_resid_run(arch, cl, cap, box, site):
    """A residual-site run: every slot before the site is the clean run's, and
    the final residual is the site's value plus every later slot's output."""
    de = [arch.de(cap[c], cl["inv"], cl["u"]) for c in arch.component_order]
    fd = resid_first_downstream(site)
    assert all(abs(de[s] - cl["de"][s]) <= 1e-5 for s in range(fd)), site
    resid = box[site] + sum(cap[arch.component_order[s]] for s in range(fd, len(de)))
    err = float((resid - cap["resid"]).abs().max() / max(1.0, float(cap["resid"].abs().max())))
    assert err < 1e-5, (site, err)


def unit_row(arch, cleans, means, i, name, members, method, positions, src_cl=None, label=None):
    cl = cleans[i]
    fns = {c: value_fn(arch, method, c, i, cleans, means, positions, src_cl) for c in members}
    box = {}
    cap = run(arch, cl["ids"], fns, positions, box)
    if members[0].startswith("resid_"):
        check_resid_run(arch, cl, cap, box, members[0])
    row = {"prompt": i, "component": name,
           "method": label or (f"patch:{PATCH_SOURCE}" if method == "patch" else method),
           "positions": positions}
    row.update(unit_fields(arch, cl, cap, box, members))
    if "foil" in cl:
        row["logit_diff"] = float(cap["logits"][cl["target"]] - cap["logits"][cl["foil"]])
    return row


def clean_record(arch, ids, target=None, foil=None):
    cap = G.forward(arch, ids)
    lg = cap["logits"]
    t = int(lg.argmax()) if target is None else target
    u, inv = arch.u(t), arch.inv_scale(cap["resid"])
    cl = {"ids": ids, "cap": cap, "target": t, "u": u, "inv": inv,
          "clean_logit": float(G.centred(lg)[t]), "logp": torch.log_softmax(lg, -1)}
    cl["de"] = [arch.de(cap[c], inv, u) for c in arch.component_order]
    if foil is not None:
        cl["foil"] = foil
        cl["logit_diff"] = float(lg[t] - lg[foil])
    return cl


PAIR_COMPONENTS = ["attn.0", "attn.1", "attn.2", "mlp.1", "head.1.0", "resid_pre.1", "resid_post.2"]
PAIR_GROUPS = {"attn 0 and mlp 2": ["attn.0", "mlp.2"]}
PAIR_PATTERNS = ["pattern.1.0", "pattern.2.3"]  # the denoising pairs have equal lengths


def pair_cases(arch, prompts, only_noising=False):
    """Paired prompts: each prompt's counterfactual (its own ids, or another
    prompt of the job), per-prompt targets and foils; noising at the final
    position (a pair may differ in length there) and denoising at every
    position (pairs of equal length, so attention patterns are patched too)."""
    rng = G.np.random.default_rng(4242)
    vocab = arch.model.config.vocab_size

    def corrupt(ids, k):
        ids = list(ids)
        for t in rng.choice(len(ids) - 1, size=k, replace=False):
            ids[t] = int(rng.integers(0, vocab))
        return ids
    n = len(prompts)
    own = [corrupt(ids, 2) for ids in prompts]
    short = own[2][:-2]  # prompt 2's counterfactual is 2 tokens shorter
    # noising: prompt 0 own ids, 1 -> prompt 3, 2 a shorter text, 3 -> prompt 0
    cf_noise = [{"ids": own[0]}, {"prompt": 3}, {"ids": short}, {"prompt": 0}]
    cf_ids = [own[0], prompts[3], short, prompts[0]]
    cases = []
    for title, denoise, positions, cf_doc, cf_tok in (
            ("paired prompts, noising, final position", False, "last", cf_noise, cf_ids),
            ("paired prompts, denoising, every position", True, "all",
             [{"ids": o} for o in own], own)):
        if only_noising and denoise:
            continue
        # target: the clean prompt's argmax; foil: the counterfactual's (or its runner-up)
        targets, foils = [], []
        for i in range(n):
            a = G.forward(arch, prompts[i])["logits"]
            b = G.forward(arch, cf_tok[i])["logits"]
            t = int(a.argmax())
            f = int(b.argmax())
            if f == t:
                f = int(torch.topk(b, 2).indices[1])
            targets.append(t)
            foils.append(f)
        runs = [cf_tok[i] if denoise else prompts[i] for i in range(n)]
        srcs = [prompts[i] if denoise else cf_tok[i] for i in range(n)]
        cleans = [clean_record(arch, runs[i], targets[i], foils[i]) for i in range(n)]
        src_cls = [clean_record(arch, srcs[i]) for i in range(n)]
        comps = PAIR_COMPONENTS + (PAIR_PATTERNS if denoise else [])
        job = {"prompts": [{"ids": prompts[i], "target": targets[i], "foil": foils[i],
                            "counterfactual": cf_doc[i]} for i in range(n)],
               "ablations": {"components": comps, "groups": PAIR_GROUPS,
                             "methods": [{"patch": {"source": "counterfactual"}}, "zero"],
                             "positions": positions},
               "metrics": ["logit_diff"]}
        if denoise:
            job["ablations"]["patching"] = "denoising"
        units = [(c, [c]) for c in comps] + list(PAIR_GROUPS.items())
        rows = []
        for i in range(n):
            for un, members in units:
                rows.append(unit_row(arch, cleans, None, i, un, members, "patch", positions,
                                     src_cls[i], "patch:counterfactual"))
                rows.append(unit_row(arch, cleans, None, i, un, members, "zero", positions))
        clean = [{"prompt": i, "target": cl["target"], "clean_logit": cl["clean_logit"],
                  "logit_diff": cl["logit_diff"]} for i, cl in enumerate(cleans)]
        cases.append({"name": title, "job": job, "clean": clean, "rows": rows})
        G.log(f"  {title}: {len(rows)} rows")
    return cases


GRID_COMPONENTS = ["attn.0", "mlp.1", "head.1.0", "resid_pre.1", "resid_mid.2"]
GRID_GROUPS = {"attn 0 and mlp 2": ["attn.0", "mlp.2"]}


def grid_case(arch, cleans, comps=GRID_COMPONENTS, groups=GRID_GROUPS,
              methods=("zero", "scale:0.5", "patch"), title="per-position grid, every position"):
    """A per-position grid ("positions": {"each": "all"}): one run per prompt,
    unit, method and position t, intervening at t alone (patch from prompt
    PATCH_SOURCE aligned from the end: t - n_i + n_j, left alone below 0)."""
    def full(cl, comp):
        if comp.startswith("pattern."):
            return clean_pattern(arch, cl, comp)
        return clean_values(arch, cl, comp) if comp.startswith("resid_") else G.full_value(arch, cl, comp)

    def at_t(method, comp, i, t):
        def fn(v):  # v: [T, ...], every position
            v = v.clone()
            if method == "zero":
                v[t] = torch.zeros_like(v[t])
            elif method == "scale:0.5":
                v[t] = v[t] * 0.5
            else:
                src = full(cleans[PATCH_SOURCE], comp)
                s = t - len(cleans[i]["ids"]) + src.shape[0]
                if s >= 0:
                    v[t] = src[s]
            return v
        return fn
    units = [(c, [c]) for c in comps] + list(groups.items())
    rows = []
    for i, cl in enumerate(cleans):
        for t in range(len(cl["ids"])):
            for un, members in units:
                for m in methods:
                    fns = {c: at_t(m, c, i, t) for c in members}
                    row = grid_row(arch, cl, un, members, fns, t)
                    row.update({"prompt": i, "method": f"patch:{PATCH_SOURCE}" if m == "patch" else m,
                                "position": t})
                    rows.append(row)
    job = {"prompts": [{"ids": c["ids"]} for c in cleans],
           "ablations": {"components": list(comps), "groups": groups,
                         "methods": [m if m != "patch" else {"patch": {"source": PATCH_SOURCE}}
                                     for m in methods],
                         "positions": {"each": "all"}}}
    G.log(f"  {title}: {len(rows)} rows")
    return {"name": title, "job": job, "rows": rows}


PATTERN_UNITS = {  # (components, groups) per model size
    "tiny": (["pattern.0.1", "pattern.1.0", "pattern.2.3"],
             {"patterns 1.0 and 1.1": ["pattern.1.0", "pattern.1.1"],
              "pattern 1.0 and head 2.1": ["pattern.1.0", "head.2.1"]}),
    "smollm2": (["pattern.2.4", "pattern.14.0", "pattern.25.7"],
                {"patterns of layer 20, heads 0-2": ["pattern.20.0", "pattern.20.1", "pattern.20.2"]}),
}
# SmolLM2's pattern prompts: one token count (14), so that every prompt's pattern rows can patch
# every other's
PATTERN_TEXTS = ["When Mary and John went to the store, John gave a drink to",
                 "When Mary and John went to the store, Mary gave a drink to",
                 "When Tom and Anna went to the park, Anna gave a ball to"]


PATTERN_RESAMPLE = (3, 11)  # (samples, seed) of the pattern cases' resample


def pattern_resample_row(arch, cleans, i, u, name, members, samples, seed, positions):
    """A resample row: the mean over the draws hydra makes (unit index u) of
    the row of a patch from the drawn prompt."""
    n = len(cleans)
    recs = [unit_row(arch, cleans, {}, i, name, members, "patch", positions,
                     src_cl=cleans[G.resample_source(seed, i, u, s, n)], label="resample")
            for s in range(samples)]
    row = dict(recs[0])
    for f in ("total_effect", "ablated_logit", "direct_effect", "compensation"):
        row[f] = sum(r[f] for r in recs) / samples
    row["de_clean_scale"] = [sum(r["de_clean_scale"][q] for r in recs) / samples
                             for q in range(len(recs[0]["de_clean_scale"]))]
    return row


def pattern_cases(arch, prompts, small):
    """pattern.L.H at the final position, at every position and as a
    per-position grid: zero, scale:0.5 and patch from prompt PATCH_SOURCE,
    on prompts of one token count. Checks first that zeroing a head's
    pattern is zeroing the head (its output is the pattern times the
    values) and that a pattern patched from its own prompt changes nothing."""
    comps, groups = PATTERN_UNITS["smollm2" if small else "tiny"]
    cleans = [clean_record(arch, ids) for ids in prompts]
    assert len({len(c["ids"]) for c in cleans}) == 1, [len(c["ids"]) for c in cleans]
    cl, p = cleans[0], comps[1]
    head = "head." + p.split(".", 1)[1]
    a = run(arch, cl["ids"], {p: lambda v: torch.zeros_like(v)}, "all")["logits"]
    b = run(arch, cl["ids"], {head: lambda v: torch.zeros_like(v)}, "all")["logits"]
    same = float((a - b).abs().max())
    own = clean_pattern(arch, cl, p)
    c = run(arch, cl["ids"], {p: lambda v: own.clone()}, "all")["logits"]
    noop = float((c - cl["cap"]["logits"]).abs().max())
    assert same < 1e-4 and noop < 1e-5, (same, noop)
    G.log(f"  patterns: zero {p} vs zero {head} max |logit diff| {same:.2e}; own pattern {noop:.2e}")
    cases = []
    samples, seed = PATTERN_RESAMPLE
    for title, positions in (("attention patterns, final position", "last"),
                             ("attention patterns, every position", "all")):
        methods = ["zero", "scale:0.5", "patch", "mean"] + ([] if small else ["resample"])
        units = [(c, [c]) for c in comps] + list(groups.items())
        rows = []
        for i in range(len(cleans)):
            for u, (un, members) in enumerate(units):
                for m in methods:
                    if m == "resample":
                        rows.append(pattern_resample_row(arch, cleans, i, u, un, members, samples, seed,
                                                         positions))
                    else:
                        rows.append(unit_row(arch, cleans, {}, i, un, members, m, positions))
        job = {"prompts": [{"ids": c["ids"]} for c in cleans],
               "ablations": {"components": comps, "groups": groups,
                             "methods": [m if m != "patch" else {"patch": {"source": PATCH_SOURCE}}
                                         for m in methods],
                             "samples": samples, "seed": seed, "positions": positions}}
        cases.append({"name": title, "job": job, "rows": rows})
        G.log(f"  {title}: {len(rows)} rows")
    cases.append(grid_case(arch, cleans[:2] if small else cleans, comps[:2], dict(list(groups.items())[:1]),
                           ("zero", "patch"), "attention patterns, per-position grid"))
    return cases


def grid_row(arch, cl, name, members, fns, t):
    """The fields of one grid run (interventions at position t via "all" hooks)."""
    box = {}
    cap = run(arch, cl["ids"], fns, "all", box)
    return {"component": name, **unit_fields(arch, cl, cap, box, members)}


SPAN_TEXTS = [("the cat sat on the mat", "the cat", {"verb": " sat", "place": " the mat"}),
              ("a dog ran in the park", "dog", {"verb": " ran", "place": " the park"}),
              ("one two three four five", "two three", {"place": " five", "verb": " four"})]


def token_span(enc, text, sub):
    """The tokens overlapping the first occurrence of sub (hydra's
    tokenizer_find_substring: every non-empty token that overlaps it)."""
    a = text.index(sub)
    b = a + len(sub)
    return [k for k, (x, y) in enumerate(enc["offset_mapping"]) if x < b and y > a and y > x]


def span_grid_case(arch, path, tok=None, methods=("zero", "scale:0.5", "patch"), n_prompts=3):
    """A grid over named spans ("positions": {"each": "spans"}): one run per
    prompt, unit, method and span (the subject, then each prompt's "spans"),
    intervening at every token of the span. A patch from prompt PATCH_SOURCE
    pairs positions from the end over each prompt's listed positions (every
    span's tokens, in order), as hydra does."""
    if tok is None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(os.path.join(G.REPO_ROOT, path))
    texts = SPAN_TEXTS[:n_prompts]
    prompts, cells, names = [], [], []
    for text, subject, spans in texts:
        enc = tok(text, return_offsets_mapping=True)
        prompts.append(enc["input_ids"])
        c = sorted([(token_span(enc, text, s), n) for n, s in [("subject", subject)] + list(spans.items())])
        cells.append(c)
        names += [n for _, n in c if n not in names]
    cleans = [clean_record(arch, ids) for ids in prompts]
    listed = [[t for ts, _ in c for t in ts] for c in cells]

    def full(cl, comp):
        if comp.startswith("pattern."):
            return clean_pattern(arch, cl, comp)
        return clean_values(arch, cl, comp) if comp.startswith("resid_") else G.full_value(arch, cl, comp)

    def at_span(method, comp, i, ts):
        src = full(cleans[PATCH_SOURCE], comp) if method == "patch" else None  # not inside a hook

        def fn(v):  # v: [T, ...], every position
            v = v.clone()
            for t in ts:
                if method == "zero":
                    v[t] = torch.zeros_like(v[t])
                elif method == "scale:0.5":
                    v[t] = v[t] * 0.5
                else:
                    li, lj = listed[i], listed[PATCH_SOURCE]
                    kk = len(lj) - (len(li) - li.index(t))
                    if kk >= 0:
                        v[t] = src[lj[kk]]
            return v
        return fn
    units = [(c, [c]) for c in GRID_COMPONENTS] + list(GRID_GROUPS.items())
    rows = []
    for i, cl in enumerate(cleans):
        for ts, name in cells[i]:
            for un, members in units:
                for m in methods:
                    fns = {c: at_span(m, c, i, ts) for c in members}
                    row = grid_row(arch, cl, un, members, fns, None)
                    row.update({"prompt": i, "method": f"patch:{PATCH_SOURCE}" if m == "patch" else m,
                                "span": name})
                    rows.append(row)
    job = {"prompts": [{"text": t, "subject": s, "spans": sp} for t, s, sp in texts],
           "ablations": {"components": GRID_COMPONENTS, "groups": GRID_GROUPS,
                         "methods": [m if m != "patch" else {"patch": {"source": PATCH_SOURCE}}
                                     for m in methods],
                         "positions": {"each": "spans"}}}
    G.log(f"  per-span grid: {len(rows)} rows (spans {names}, cells {cells})")
    return {"name": "per-span grid", "job": job, "rows": rows, "tokens": prompts}


TRACE_TEXTS = [("the cat sat on the mat", "the cat"), ("a dog ran in the park", "dog"),
               ("one two three four five", "two three")]
TRACE_UNITS = ["resid_pre.0", "resid_pre.2", "attn.1", "mlp.1"]
TRACE_GROUPS = {"mlp window 0-1": ["mlp.0", "mlp.1"]}


def trace_cases(arch, path, tok=None, only_last=False):
    """Causal tracing: each prompt's subject embeddings get seeded noise (as
    hydra draws it) in every run; "restore" puts the clean run's state back
    at one position (a grid over every position), or at the subject's last
    token. The target is the clean run's argmax, named in the job."""
    global NOISE
    if tok is None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(os.path.join(G.REPO_ROOT, path))
    W_E = arch.embed_mod.weight if hasattr(arch.embed_mod, "weight") else arch.model.transformer.wte.weight
    emb_std = float(W_E.detach().double().std(unbiased=False))
    d = arch.d_model
    prompts, spans = [], []
    for text, subject in TRACE_TEXTS:
        enc = tok(text, return_offsets_mapping=True)
        a = text.index(subject)
        b = a + len(subject)
        span = [k for k, (x, y) in enumerate(enc["offset_mapping"]) if x < b and y > a and y > x]
        prompts.append(enc["input_ids"])
        spans.append(span)
    cases = []
    for title, trace, positions, methods in (
            ("causal trace, per-position grid", {"std": 0.5, "seed": 7}, {"each": "all"}, ["restore"]),
            ("causal trace, the subject's last token", {"scale": 3, "seed": 2}, "subject",
             ["restore", "zero"])):
        if only_last and isinstance(positions, dict):
            continue
        std = trace.get("std", trace.get("scale", 0) * emb_std)
        clean = [clean_record(arch, ids) for ids in prompts]
        targets = [c["target"] for c in clean]
        corrupted = []
        for i, ids in enumerate(prompts):
            NOISE = trace_noise(std, trace["seed"], i, spans[i], d)
            corrupted.append(clean_record_run(arch, ids, targets[i]))
        NOISE = {}
        units = [(c, [c]) for c in TRACE_UNITS] + list(TRACE_GROUPS.items())
        rows = []
        for i, ids in enumerate(prompts):
            NOISE = trace_noise(std, trace["seed"], i, spans[i], d)
            where = range(len(ids)) if isinstance(positions, dict) else [spans[i][-1]]
            for t in where:
                for un, members in units:
                    for m in methods:
                        fns = {c: restore_at(arch, clean[i], c, t, m) for c in members}
                        row = grid_row(arch, corrupted[i], un, members, fns, t)
                        row.update({"prompt": i, "method": m})
                        if isinstance(positions, dict):
                            row["position"] = t
                        rows.append(row)
            NOISE = {}
        job = {"prompts": [{"text": text, "subject": subject, "target": targets[i]}
                           for i, (text, subject) in enumerate(TRACE_TEXTS)],
               "trace": trace,
               "ablations": {"components": TRACE_UNITS, "groups": TRACE_GROUPS, "methods": methods,
                             "positions": positions}}
        cl = [{"prompt": i, "target": c["target"], "clean_logit": c["clean_logit"]}
              for i, c in enumerate(corrupted)]
        cases.append({"name": title, "job": job, "clean": cl, "rows": rows, "tokens": prompts})
        G.log(f"  {title}: {len(rows)} rows (noise std {std:.4f}, subjects {spans})")
    return cases


def clean_record_run(arch, ids, target):
    """clean_record of a run through run() (so the trace noise applies)."""
    cap = run(arch, ids, {}, "last")
    lg = cap["logits"]
    u, inv = arch.u(target), arch.inv_scale(cap["resid"])
    cl = {"ids": ids, "cap": cap, "target": target, "u": u, "inv": inv,
          "clean_logit": float(G.centred(lg)[target]), "logp": torch.log_softmax(lg, -1)}
    cl["de"] = [arch.de(cap[c], inv, u) for c in arch.component_order]
    return cl


def restore_at(arch, clean, comp, t, method):
    """fn([T, ...]) putting the clean run's value of comp back at position t
    (restore), or zeroing it there."""
    global NOISE
    saved, NOISE = NOISE, {}
    src = clean_values(arch, clean, comp) if comp.startswith("resid_") else G.full_value(arch, clean, comp)
    NOISE = saved

    def fn(v):
        v = v.clone()
        v[t] = torch.zeros_like(v[t]) if method == "zero" else src[t]
        return v
    return fn


def make(arch, name, path, prompts, golden_dir, small=False, tok=None, model_field=None):
    """small (SmolLM2): zero and patch only, noising pairs only, and the
    per-position grids over two prompts (a smaller file)."""
    cleans = [clean_record(arch, ids) for ids in prompts]
    every = sorted({c for cs in GROUPS.values() for c in cs} | {"head.1.0", "attn.0"})
    means = {c: torch.stack([G.comp_value(arch, cl["cap"], c).reshape(-1) for cl in cleans]).mean(0)
             for c in every}
    for c in RESID:
        means[c] = torch.stack([clean_values(arch, cl, c)[-1] for cl in cleans]).mean(0)

    # self-checks: a no-op (scale:1, patch from itself) changes nothing;
    # resid_post.L and resid_pre.L+1 are the same vector
    worst = 0.0
    for c in RESID:
        cl = cleans[0]
        for pos in ("last", "all"):
            cap = run(arch, cl["ids"], {c: lambda v: v * 1.0}, pos)
            worst = max(worst, abs(float(G.centred(cap["logits"])[cl["target"]]) - cl["clean_logit"]))
    assert worst <= 1e-5, worst
    for L in range(arch.n_layers - 1):
        a = clean_values(arch, cleans[1], f"resid_post.{L}")
        b = clean_values(arch, cleans[1], f"resid_pre.{L + 1}")
        assert torch.equal(a, b), L
    G.log(f"  no-op residual interventions: max |logit change| {worst:.2e}; resid_post.L == resid_pre.L+1")

    cases = []
    for title, comps, groups, methods, positions in CASES:
        if small:
            methods = [m for m in methods if m in ("zero", "patch")]
        units = [(c, [c]) for c in comps] + list(groups.items())
        job = {"prompts": [{"ids": cl["ids"]} for cl in cleans],
               "ablations": {"methods": [m if m != "patch" else {"patch": {"source": PATCH_SOURCE}}
                                         for m in methods],
                             "positions": positions}}
        if comps:
            job["ablations"]["components"] = comps
        if groups:
            job["ablations"]["groups"] = groups
        rows = []
        for i in range(len(cleans)):
            for un, members in units:
                for m in methods:
                    rows.append(unit_row(arch, cleans, means, i, un, members, m, positions))
        cases.append({"name": title, "job": job, "rows": rows})
        G.log(f"  {title}: {len(rows)} rows")
    cases += pair_cases(arch, prompts, only_noising=small)
    if small:
        cases.append(grid_case(arch, cleans[:2], methods=("zero", "patch")))
        cases.append(span_grid_case(arch, path, tok, methods=("zero", "patch"), n_prompts=2))
    else:
        cases.append(grid_case(arch, cleans))
        cases.append(span_grid_case(arch, path, tok))
    cases += trace_cases(arch, path, tok)
    if small:
        pattern_prompts = [tok(s, add_special_tokens=False)["input_ids"] for s in PATTERN_TEXTS]
    else:
        pattern_prompts = [ids[:min(len(x) for x in prompts)] for ids in prompts]
    cases += pattern_cases(arch, pattern_prompts, small)

    def r(v):
        return [G.rnd(x) for x in v] if isinstance(v, list) else G.rnd(v) if isinstance(v, float) else v

    lines = ["{", f'  "model": {json.dumps(model_field or path)},', f'  "source": {json.dumps(G.SOURCE)},',
             f'  "component_order": {json.dumps(arch.component_order)},', '  "prompts": [']
    lines += ["    " + json.dumps({"ids": cl["ids"], "target": cl["target"],
                                   "clean_logit": G.rnd(cl["clean_logit"]),
                                   "de": [G.rnd(x) for x in cl["de"]]})
              + ("," if k + 1 < len(cleans) else "") for k, cl in enumerate(cleans)]
    lines += ["  ],", '  "cases": [']
    for k, c in enumerate(cases):
        clean = f'"clean": {json.dumps([{k: r(v) for k, v in x.items()} for x in c["clean"]])}, ' \
            if "clean" in c else ""
        lines += ["    {" + f'"name": {json.dumps(c["name"])}, "job": {json.dumps(c["job"])}, '
                  + clean + '"rows": [']
        lines += ["      " + json.dumps({key: r(v) for key, v in row.items()})
                  + ("," if q + 1 < len(c["rows"]) else "") for q, row in enumerate(c["rows"])]
        lines += ["    ]}" + ("," if k + 1 < len(cases) else "")]
    lines += ["  ]", "}"]
    out = os.path.join(golden_dir, f"interventions_{name}.json")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(out))
    G.log(f"  wrote {G.rel(out)} ({os.path.getsize(out)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests")
    ap.add_argument("--only", nargs="*", default=["tiny-gpt2", "tiny-llama"])
    ap.add_argument("--smollm2", help="SmolLM2-135M-Instruct.Q4_1.gguf: also its (smaller) golden")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    for name in args.only:
        path = os.path.join(args.out, "data", name)
        G.log(f"[{name}] {G.rel(path)}")
        arch = G.Arch(G.load_eager(path))
        prompts = G.tiny_prompts(G.TINY_SEEDS[name], arch.model.config.vocab_size)
        make(arch, name, G.rel(path), prompts, os.path.join(args.out, "golden"))
    if args.smollm2:
        from transformers import AutoTokenizer
        G.log(f"[smollm2-135m] {args.smollm2}")
        d, f = os.path.split(os.path.abspath(args.smollm2))
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        arch = G.Arch(G.load_eager(d, gguf_file=f))
        prompts = [tok(s, add_special_tokens=False)["input_ids"] for s in G.SMOLLM2_PROMPTS]
        make(arch, "smollm2-135m", None, prompts, os.path.join(args.out, "golden"), small=True,
             tok=tok, model_field="$SMOLLM2")


if __name__ == "__main__":
    main()
