#!/usr/bin/env python3
"""The Hydra paper's analyses on SmolLM2-135M, through a running hydrad.

    python run.py --url http://127.0.0.1:PORT --token TOKEN --model smollm2 --out docs/replication
    HYDRA_URL=http://host:8080 HYDRA_TOKEN=TOKEN python run.py   (a server already running)

(run.sh starts hydrad and calls this.) Steps, each a job submitted with the
Python client (clients/python):
  1. filter: every prompt of tests/data/factual_prompts.json, clean run only
     (one cheap zero ablation of the embeddings): keep a prompt when the
     model's top token is a plausible answer (rule in the prompts file);
  2. the paper's design: "preset": "hydra" over the kept prompts (every
     attention and MLP layer, final position, resample x 15, clean
     maximum-likelihood target, centred logits, frozen final-norm scale);
  3. the same components with zero ablation, for the comparison.
Then the analyses (a)-(e) of REPLICATION.md: PNGs and a numbers file under
--out; the numbers are printed and written between the markers of
REPLICATION.md, so the report shows exactly what this command printed.
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from hydra_client import Client  # noqa: E402
from hydra_client.plots import plot_direct_vs_total, plot_effect_table  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plausible(token, answers):
    t = token.strip().lower()
    if not t:
        return False
    for a in answers:
        a = a.strip().lower()
        if a.startswith(t) or t.startswith(a):
            return True
    return False


def run_job(client, spec, what):
    t0 = time.time()
    job = client.submit(spec)
    job.follow(progress=False)
    res = job.results()
    dt = time.time() - t0
    print(f"[{what}] job {job.id}: {len(res.rows)} rows, {res.end['variants'] if res.end else '?'} "
          f"ablated runs, {dt:.1f} s (engine {res.end['elapsed_s'] if res.end else '?'} s)")
    return res, dt


def num(x):
    """A summary number, NaN where the server sent null (e.g. R^2 of a constant:
    the client's frames hold NaN already)."""
    return float("nan") if x is None else float(x)


def layer_of(name):
    return int(name.split(".")[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("HYDRA_URL"),
                    help="the hydrad to use (default: $HYDRA_URL)")
    ap.add_argument("--token", default=os.environ.get("HYDRA_TOKEN"),
                    help="its bearer token (default: $HYDRA_TOKEN)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "replication"))
    ap.add_argument("--report", default=os.path.join(ROOT, "REPLICATION.md"))
    ap.add_argument("--example", default="The Eiffel Tower")
    a = ap.parse_args()
    if not a.url or not a.token:
        ap.error("name the server and its token: --url URL --token TOKEN, or set HYDRA_URL "
                 "and HYDRA_TOKEN")
    os.makedirs(a.out, exist_ok=True)
    client = Client(a.url, a.token)
    data = json.load(open(os.path.join(ROOT, "tests", "data", "factual_prompts.json")))
    cand = data["prompts"]
    lines = []

    def say(s=""):
        print(s)
        lines.append(s)

    # ---- 1. filter -------------------------------------------------------
    spec = {"model": a.model, "prompts": [{"text": p["text"], "subject": p["subject"]} for p in cand],
            "ablations": {"components": ["embed"], "methods": ["zero"]}}
    res, _ = run_job(client, spec, "filter")
    clean = res.clean.sort_values("prompt")
    keep = [i for i, tok in zip(clean["prompt"], clean["target_token"])
            if plausible(tok, cand[i]["answers"])]
    by_rel = {}
    for i, p in enumerate(cand):
        k = by_rel.setdefault(p["relation"], [0, 0])
        k[0] += 1
        k[1] += i in keep
    say(f"Prompts written: {len(cand)}; kept (SmolLM2-135M's top token a plausible answer): "
        f"**{len(keep)}**.")
    say("")
    say("| relation | written | kept |")
    say("| --- | --- | --- |")
    for rel, (n, k) in by_rel.items():
        say(f"| {rel} | {n} | {k} |")
    kept = [cand[i] for i in keep]
    json.dump({"kept": [{"text": p["text"], "subject": p["subject"],
                         "top_token": clean.set_index("prompt").loc[i, "target_token"]}
                        for i, p in zip(keep, kept)]},
              open(os.path.join(a.out, "kept_prompts.json"), "w"), indent=1)

    # ---- 2. the paper's design, 3. zero ablation ------------------------------
    prompts = [{"text": p["text"], "subject": p["subject"]} for p in kept]
    hydra, t_h = run_job(client, {"model": a.model, "preset": "hydra", "prompts": prompts}, "hydra preset")
    zero, t_z = run_job(client, {"model": a.model, "preset": "hydra", "prompts": prompts,
                                 "ablations": {"components": ["*"], "methods": ["zero"]}}, "zero")
    hdr = hydra.header
    slots = hdr["slots"]
    L = hdr["n_layers"]
    say("")
    say(f"Model {hdr['model']} ({hdr['family']}, {L} layers, d_model {hdr['d_model']}), backend "
        f"{hdr['backend']} ({hdr['precision']}); {hdr['variants']} ablated runs in the preset job "
        f"(engine {hydra.end['elapsed_s']:.1f} s, {t_h:.1f} s through hydrad), {zero.end['variants']} "
        f"in the zero job ({t_z:.1f} s).")

    S = hydra.summary  # indexed by component, flat columns (one method per job)
    Z = zero.summary
    comps = [c for c in S.index if c.startswith(("attn.", "mlp."))]
    d = S.loc[comps, "direct_effect_mean"].to_numpy(float)
    t = S.loc[comps, "total_effect_mean"].to_numpy(float)
    comp = S.loc[comps, "compensation_mean"].to_numpy(float)
    ca = S.loc[comps, "compensation_attn_mean"].to_numpy(float)
    cm = S.loc[comps, "compensation_mlp_mean"].to_numpy(float)

    # self-check of the sign convention: the ablated slot's own change is -direct
    V = hydra.variants
    row = V.iloc[0]
    own = row["effects"][slots.index(row["component"])]
    assert abs(own + row["direct_effect"]) <= 1e-4 * max(1.0, abs(row["direct_effect"])), (own, row)

    # ---- (a) direct vs total ---------------------------------------------------
    plot_direct_vs_total(hydra, os.path.join(a.out, "direct_vs_total.png"),
                         title=f"SmolLM2-135M, {len(kept)} prompts, resample x15: direct vs total")
    under = [(c, di, ti) for c, di, ti in zip(comps, d, t) if di > 0.05 and ti < 0.8 * di]
    say("")
    say("**(a) Direct vs total effect** (mean over prompts, resample x 15): "
        f"corr(direct, total) = {np.corrcoef(d, t)[0, 1]:.3f}; components with direct effect > 0.05 "
        f"whose total effect is under 80% of it (compensated downstream): "
        + (", ".join(f"{c} ({di:.3f} -> {ti:.3f})" for c, di, ti in under) or "none") + ".")
    say("")
    say("| component | direct | total | compensation | attn part | MLP part | norm share | slope | R^2 |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, c in enumerate(comps):
        say(f"| {c} | {d[i]:+.3f} | {t[i]:+.3f} | {comp[i]:+.3f} | {ca[i]:+.3f} | {cm[i]:+.3f} | "
            f"{t[i] - d[i] + comp[i]:+.3f} | {num(S.loc[c, 'slope']):+.2f} | {num(S.loc[c, 'r2']):.2f} |")

    # ---- (b) per-layer compensation vs direct: slope and R^2 (Fig. 7d) ------------
    slopes = {c: {k: num(S.loc[c, k]) for k in ("slope", "r2")} for c in comps}
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    for k, kind in enumerate(("attn", "mlp")):
        cs = [c for c in comps if c.startswith(kind)]
        ax[k].bar([layer_of(c) for c in cs], [slopes[c]["slope"] for c in cs],
                  color="tab:blue" if kind == "attn" else "tab:orange")
        for c in cs:
            ax[k].annotate(f"{slopes[c]['r2']:.2f}", (layer_of(c), slopes[c]["slope"]), fontsize=5,
                           ha="center", va="bottom")
        ax[k].axhline(0, color="k", lw=0.6)
        ax[k].set_title(f"{kind} layers ablated: slope of compensation on direct effect (R^2 on bars)",
                        fontsize=7)
        ax[k].set_xlabel("layer")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "compensation_slopes.png"), dpi=110)
    plt.close(fig)
    strong = [c for c in comps if slopes[c]["r2"] >= 0.3 and slopes[c]["slope"] > 0.1]
    say("")
    say("**(b) Compensation against direct effect per layer** (least squares over prompts): "
        f"slope > 0.1 with R^2 >= 0.3 for {len(strong)} of {len(comps)} components"
        + (": " + ", ".join(f"{c} (slope {slopes[c]['slope']:.2f}, R^2 {slopes[c]['r2']:.2f})"
                            for c in strong) if strong else "") + ".")

    # ---- (c) one prompt: every layer's direct effect before and after -----------
    ex = next((i for i, p in enumerate(kept) if p["subject"] == a.example), 0)
    C = hydra.clean.set_index("prompt").loc[ex]
    Vex = V[V["prompt"] == ex].set_index("component")
    top = max(comps, key=lambda c: Vex.loc[c, "total_effect"] if c.startswith("attn") else -1e9)
    before = np.array(C["direct_effects"])
    after = before + np.array(Vex.loc[top, "effects"])
    fig, ax = plt.subplots(figsize=(10, 3))
    xs = np.arange(len(slots))
    ax.bar(xs - 0.2, before, 0.4, label="clean")
    ax.bar(xs + 0.2, after, 0.4, label=f"{top} resample-ablated")
    ax.set_xticks(xs)
    ax.set_xticklabels(slots, rotation=90, fontsize=5)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("direct effect on the target logit")
    ax.set_title(f"\"{kept[ex]['text']}\" -> {C['target_token']!r}: direct effects before and after "
                 f"ablating {top}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "example_prompt.png"), dpi=110)
    plt.close(fig)
    ups = sorted(((s, after[k] - before[k]) for k, s in enumerate(slots)
                  if k > slots.index(top)), key=lambda x: -x[1])[:3]
    say("")
    say(f"**(c) Example** \"{kept[ex]['text']}\" -> {C['target_token']!r} (clean centred logit "
        f"{C['logit']:.2f}): ablating {top} (the attention layer with the largest total effect "
        f"here: {Vex.loc[top, 'total_effect']:.3f}, direct {Vex.loc[top, 'direct_effect']:.3f}); "
        "largest downstream increases: " + ", ".join(f"{s} {v:+.3f}" for s, v in ups) + ".")

    # ---- (d) compensation split: attention (Hydra) vs MLP (reduced erasure) ------
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    for k, kind in enumerate(("attn", "mlp")):
        idx = [i for i, c in enumerate(comps) if c.startswith(kind)]
        ls = [layer_of(comps[i]) for i in idx]
        ax[k].bar(ls, ca[idx], label="by attention layers", color="tab:blue")
        ax[k].bar(ls, cm[idx], bottom=np.where(ca[idx] > 0, ca[idx], 0) * (cm[idx] > 0), label="by MLP layers",
                  color="tab:orange")
        ax[k].axhline(0, color="k", lw=0.6)
        ax[k].set_title(f"{kind} layer ablated: mean compensation, split", fontsize=8)
        ax[k].set_xlabel("layer")
        ax[k].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "compensation_split.png"), dpi=110)
    plt.close(fig)
    attn_idx = [i for i, c in enumerate(comps) if c.startswith("attn")]
    say("")
    say("**(d) Compensation split** (attention layers ablated, summed over layers): by downstream "
        f"attention {ca[attn_idx].sum():+.3f}, by downstream MLPs {cm[attn_idx].sum():+.3f}; "
        f"layers where attention compensation is the larger positive part: "
        + ", ".join(comps[i] for i in attn_idx if ca[i] > 0 and ca[i] >= cm[i]) + ".")

    # ---- (e) erasure: late MLPs with negative direct effects -------------------
    de_clean = np.array(list(hydra.clean["direct_effects"]))
    mean_de = de_clean.mean(0)
    late = [(s, mean_de[k], (de_clean[:, k] < 0).mean()) for k, s in enumerate(slots)
            if s.startswith("mlp.") and layer_of(s) >= (2 * L) // 3]
    neg = [x for x in late if x[1] < 0]
    say("")
    say(f"**(e) Erasure**: MLPs in the last third (layers >= {(2 * L) // 3}) with a negative mean "
        f"direct effect on the target: " + (", ".join(f"{s} ({m:+.3f}, negative on {f:.0%} of prompts)"
                                                    for s, m, f in neg) or "none")
        + f". Most negative slot overall: {slots[int(np.argmin(mean_de))]} ({mean_de.min():+.3f}).")

    # ---- zero vs resample ------------------------------------------------------
    tz = Z.loc[comps, "total_effect_mean"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(t, tz, c=["tab:blue" if c.startswith("attn") else "tab:orange" for c in comps], s=20)
    lim = [min(t.min(), tz.min(), 0) * 1.1, max(t.max(), tz.max()) * 1.1]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("total effect, resample x 15")
    ax.set_ylabel("total effect, zero ablation")
    ax.set_title("zero vs resample ablation, same layers", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "zero_vs_resample.png"), dpi=110)
    plt.close(fig)
    big = sorted(comps, key=lambda c: -abs(Z.loc[c, "total_effect_mean"]))[:3]
    say("")
    say(f"**Zero vs resample**: corr of total effects {np.corrcoef(t, tz)[0, 1]:.3f}; mean |total| "
        f"zero {np.abs(tz).mean():.3f} vs resample {np.abs(t).mean():.3f}; largest zero-ablation effects: "
        + ", ".join(f"{c} {Z.loc[c, 'total_effect_mean']:+.3f} (resample "
                    f"{S.loc[c, 'total_effect_mean']:+.3f})" for c in big) + ".")

    plot_effect_table(hydra, os.path.join(a.out, "effect_table.png"),
                      title="mean change of each downstream direct effect (resample x 15)")

    # ---- the numbers into the report ---------------------------------------------
    text = "\n".join(lines) + "\n"
    open(os.path.join(a.out, "numbers.md"), "w").write(text)
    if os.path.exists(a.report):
        rep = open(a.report).read()
        new = re.sub(r"(<!-- numbers:start -->\n).*?(<!-- numbers:end -->)",
                     lambda m: m.group(1) + text + m.group(2), rep, flags=re.S)
        open(a.report, "w").write(new)
    print(f"\nplots and numbers in {os.path.relpath(a.out, ROOT)}/")


if __name__ == "__main__":
    main()
