#!/usr/bin/env python3
"""Goldens of the paper's equations (common/ablation/effects.c) from a plain
float64 numpy computation written from the paper (McGrath et al., arXiv
2307.15771), on seeded random inputs: the centred unembedding (Eq. 9), the
frozen-norm direction and direct effects (Eq. 10, LayerNorm and RMSNorm),
the total effect (Eq. 12), compensation (Eq. 33, sequential and parallel
residual), the Fig. 7d least-squares fit (null below 3 prompts and where the
direct effect's standard deviation over prompts is at most 1e-5 of the logit
scale) and Student's t quantiles of the 95% interval (mpmath's incomplete
beta function and root finder, 30 digits). Uses neither hydra nor its
outputs. Writes tests/golden/effects.json.

Usage: /work/venv-ref/bin/python tests/golden/make_effects_golden.py [--seed N]
(any Python with numpy and mpmath)
"""

import argparse
import json
import os

import mpmath
import numpy as np

FIT_MIN_PROMPTS = 3
FIT_MIN_SPREAD = 1e-5  # of the logit scale


def fit(x, y, x_scale):
    """Fig. 7d: slope and R^2 of y on x, None where the fit means nothing."""
    if len(x) < FIT_MIN_PROMPTS or np.std(x, ddof=1) <= FIT_MIN_SPREAD * x_scale:
        return None, None
    return float(np.polyfit(x, y, 1)[0]), float(np.corrcoef(x, y)[0, 1] ** 2)


def t_quantile(p, df):
    """t with P(T <= t) = p: P(T > t) = I_{df/(df+t^2)}(df/2, 1/2) / 2."""
    mpmath.mp.dps = 30
    tail = mpmath.mpf(1) - mpmath.mpf(p)
    f = lambda t: mpmath.betainc(df / mpmath.mpf(2), mpmath.mpf(1) / 2, 0,
                                 df / (df + t * t), regularized=True) / 2 - tail
    return float(mpmath.findroot(f, (mpmath.mpf(0), mpmath.mpf(1000)), solver="illinois"))


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def direction(u, ubar, gamma, beta, s, layernorm):
    """Eq. 10 with the norm's scale s frozen: x -> ((x - mean x) * s) * gamma
    (LayerNorm) or x * s * gamma (RMSNorm), read against u - ubar."""
    ud = u - ubar
    d = gamma * ud * s
    if layernorm:  # (x - mean x) . w == x . (w - mean w)
        d = d - d.mean()
    bias = float(beta @ ud) if beta is not None else 0.0
    return d, ud, bias


def downstream(s, of, parallel):
    """Slot s reads slot of's output: later slots, except layer L's MLP
    beside its attention when the residual is parallel."""
    if s <= of:
        return False
    return not (parallel and of % 2 == 1 and s == of + 1)


def compensation(clean, ablated, of, parallel):
    delta = ablated - clean
    down = [s for s in range(len(clean)) if downstream(s, of, parallel)]
    return {"delta": delta.tolist(), "direct": float(-delta[of]),
            "compensation": float(sum(delta[s] for s in down)),
            "compensation_attn": float(sum(delta[s] for s in down if s % 2 == 1)),
            "compensation_mlp": float(sum(delta[s] for s in down if s % 2 == 0))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "effects.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    d, vocab, layers = 24, 50, 4
    n_slots = 1 + 2 * layers
    out = {"seed": args.seed, "d": d, "vocab": vocab, "n_slots": n_slots, "directions": [],
           "compensation": [], "fits": []}
    unembed = f32(rng.normal(0, 1, (vocab, d)))
    ubar = unembed.mean(axis=0)
    out["unembed"] = unembed.ravel().tolist()
    out["ubar"] = ubar.tolist()
    for layernorm in (1, 0):
        for with_beta in ((1, 0) if layernorm else (0,)):
            gamma = f32(rng.normal(1, 0.3, d))
            beta = f32(rng.normal(0, 0.2, d)) if with_beta else None
            target = int(rng.integers(vocab))
            s = float(f32(rng.uniform(0.05, 2.0)))
            ys = f32(rng.normal(0, 3, (n_slots, d)))
            dvec, ud, bias = direction(unembed[target], ubar, gamma, beta, s, layernorm)
            out["directions"].append({
                "layernorm": layernorm, "target": target, "inv_scale": s,
                "gamma": gamma.tolist(), "beta": beta.tolist() if beta is not None else None,
                "dir": dvec.tolist(), "udir": ud.tolist(), "bias_term": bias,
                "outputs": ys.ravel().tolist(), "direct": (ys @ dvec).tolist()})
    for parallel in (0, 1):
        for of in range(n_slots):
            clean = f32(rng.normal(0, 2, n_slots))
            ablated = f32(rng.normal(0, 2, n_slots))
            case = {"parallel": parallel, "of": of, "clean": clean.tolist(),
                    "ablated": ablated.tolist()}
            case.update(compensation(clean, ablated, of, parallel))
            out["compensation"].append(case)
    for n in (2, 5, 40):
        x = rng.normal(0, 1, n)
        y = 0.7 * x + rng.normal(0, 0.5, n)
        slope, r2 = fit(x, y, 1.0)
        out["fits"].append({"x": x.tolist(), "y": y.tolist(), "x_scale": 1.0, "slope": slope,
                            "r2": r2})
    # direct effects that are exactly 0 read in fp32: noise of 1e-7 (null), and
    # a small real spread above the bound (fitted), on logit scales 1 and 20
    for sd, x_scale in ((1e-7, 1.0), (1e-7, 20.0), (5e-5, 1.0), (1e-4, 20.0), (3e-3, 20.0)):
        x = rng.normal(0, sd, 12)
        y = -0.8 * x + rng.normal(0, sd / 2, 12)
        slope, r2 = fit(x, y, x_scale)
        out["fits"].append({"x": x.tolist(), "y": y.tolist(), "x_scale": x_scale,
                            "slope": slope, "r2": r2})
    out["t_quantiles"] = [{"p": 0.975, "df": df, "t": t_quantile(0.975, df)}
                          for df in (1, 2, 3, 4, 5, 9, 14, 29, 100, 1000)]
    out["t_quantiles"] += [{"p": p, "df": df, "t": t_quantile(p, df)}
                           for p, df in ((0.995, 2), (0.9, 7), (0.6, 3.5))]
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
