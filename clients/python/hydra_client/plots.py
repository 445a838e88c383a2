"""The paper's figures from a job's Results (matplotlib, an optional
dependency: pip install 'hydra-client[plots]').

Every function draws into ``ax`` when given (else a new figure), returns the
Figure, and writes ``path`` only when one is given. Titles name the model,
the method and the number of prompts; font sizes are those of a printed
figure (9-11 pt). McGrath et al., arXiv 2307.15771: direct vs total effect
(Figs. 2, 4), the effect table (Figs. 1, 3, 8), compensation against direct
effect per layer (Fig. 7d), and the compensation's split into downstream
attention (the Hydra effect) and downstream MLPs (reduced erasure).
"""
from __future__ import annotations

import os
import re
from typing import Any, List, Optional, Tuple, Union

import numpy as np

try:
    import matplotlib
    import matplotlib.ticker
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError("hydra_client.plots needs matplotlib: pip install matplotlib "
                      "(or pip install 'hydra-client[plots]')") from e

from .results import Results

PathLike = Union[str, "os.PathLike[str]", None]

TICK_PT, LABEL_PT, TITLE_PT, LEGEND_PT = 9, 10, 11, 9
METHOD_COLORS = ["tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive"]
KIND_MARKERS = {"attn": "o", "mlp": "s", "head": "^", "neuron": "v", "resid_pre": "D",
                "resid_mid": "D", "resid_post": "D", "embed": "*", "q": "<", "k": "<", "v": "<",
                "pattern": ">"}


def _axes(ax: Optional[Axes], figsize: Tuple[float, float]) -> Tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _finish(fig: Figure, ax: Axes, path: PathLike, dpi: int) -> Figure:
    ax.tick_params(labelsize=TICK_PT)
    if path:
        fig.savefig(path, dpi=dpi)
    return fig


def _kind(name: str) -> str:
    return name.split(".", 1)[0]


def _layer(name: str) -> Optional[int]:
    m = re.match(r"^(?:attn|mlp|head|neuron|resid_pre|resid_mid|resid_post|q|k|v|pattern)\.(\d+)",
                 name)
    return int(m.group(1)) if m else None


def _title(res: Results, what: str, methods: List[str]) -> str:
    return f"{res.model}: {what}\n{', '.join(methods)}, n = {res.n_prompts} prompts"


def _summary(res: Results, method: str) -> Any:
    """The summary rows of one method, indexed by component (one position
    refused: the grid has its own picture)."""
    s = res.summary.reset_index()
    if "position" in s.columns:
        raise ValueError("a per-position job: draw it with plot_position_grid")
    if "method" in s.columns:
        s = s[s["method"] == method]
    return s.set_index("component")


def plot_direct_vs_total(results: Results, path: PathLike = None, *, method: Optional[str] = None,
                         ax: Optional[Axes] = None, title: Optional[str] = None, label_top: int = 6,
                         dpi: int = 150) -> Figure:
    """Mean direct effect (x) against mean total effect (y) of every ablated
    component with their 95% intervals (McGrath et al. Figs. 2, 4): points
    below y = x were compensated downstream. Every method of the job (or the
    one named) gets its own colour and legend entry; markers tell attention
    (o) from MLP (s) layers. The `label_top` largest are named."""
    methods = results.methods if method is None else [results._method(method)]
    if not methods:
        raise ValueError("the job has no summary rows yet")
    fig, ax = _axes(ax, (5.5, 5.0))
    xs_all, ys_all = [], []
    for k, m in enumerate(methods):
        s = _summary(results, m)
        x, y = s["direct_effect_mean"].to_numpy(float), s["total_effect_mean"].to_numpy(float)
        xerr = s["direct_effect_ci95"].to_numpy(float) if "direct_effect_ci95" in s else None
        yerr = s["total_effect_ci95"].to_numpy(float) if "total_effect_ci95" in s else None
        color = METHOD_COLORS[k % len(METHOD_COLORS)]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor=color, alpha=0.35, lw=0.8)
        for kind in dict.fromkeys(_kind(c) for c in s.index):
            sel = np.array([_kind(c) == kind for c in s.index])
            ax.scatter(x[sel], y[sel], color=color, marker=KIND_MARKERS.get(kind, "o"), s=26,
                       edgecolors="white", linewidths=0.4, zorder=3)
        ax.scatter([], [], color=color, marker="o", label=m)  # one legend entry per method
        order = np.argsort(-np.maximum(np.abs(x), np.abs(y)))[:label_top]
        for i in order:
            ax.annotate(s.index[i], (x[i], y[i]), fontsize=TICK_PT - 1, xytext=(3, 3),
                        textcoords="offset points")
        xs_all.append(x)
        ys_all.append(y)
    allv = np.concatenate(xs_all + ys_all)
    allv = allv[np.isfinite(allv)]
    lo, hi = (min(allv.min(), 0.0), max(allv.max(), 0.0)) if allv.size else (-1.0, 1.0)
    pad = 0.08 * ((hi - lo) or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8, label="y = x")
    kinds = sorted({_kind(c) for m in methods for c in _summary(results, m).index})
    for kind in kinds:
        ax.scatter([], [], color="gray", marker=KIND_MARKERS.get(kind, "o"), label=f"{kind} (marker)")
    ax.axhline(0, color="0.7", lw=0.6, zorder=0)
    ax.axvline(0, color="0.7", lw=0.6, zorder=0)
    ax.set_xlabel("direct effect (mean over prompts, 95% interval)", fontsize=LABEL_PT)
    ax.set_ylabel("total effect (mean over prompts, 95% interval)", fontsize=LABEL_PT)
    ax.set_title(title or _title(results, "direct vs total effect", methods), fontsize=TITLE_PT)
    ax.legend(fontsize=LEGEND_PT, title="method", title_fontsize=LEGEND_PT, loc="best")
    return _finish(fig, ax, path, dpi)


def plot_effect_table(results: Results, path: PathLike = None, *, method: Optional[str] = None,
                      ax: Optional[Axes] = None, title: Optional[str] = None, stat: str = "mean",
                      position: Optional[int] = None, mask_diagonal: bool = True,
                      dpi: int = 150) -> Figure:
    """Heatmap of the effect table (McGrath et al. Figs. 1, 3, 8): rows the
    ablated component, columns every downstream component, colour the change
    of its direct effect (`stat` over prompts). The diagonal (minus the
    ablated component's own direct effect) is masked (drawn grey) so that
    the compensation sets the colour scale; mask_diagonal=False keeps it.
    position: one position of a per-position job (named in the title)."""
    m = results._method(method)
    t = results.effect_table(method=m, stat=stat, position=position)
    v = t.to_numpy(float).copy()
    if mask_diagonal:
        for i, comp in enumerate(t.index):
            if comp in t.columns:
                v[i, list(t.columns).index(comp)] = np.nan
    finite = v[np.isfinite(v)]
    lim = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    fig, ax = _axes(ax, (max(6.0, 0.17 * v.shape[1] + 2.5), max(4.0, 0.17 * v.shape[0] + 2.0)))
    cmap = matplotlib.colormaps["RdBu_r"].copy()
    cmap.set_bad("0.8")
    diverging = stat == "mean"
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cmap if diverging else "viridis",
                   vmin=-lim if diverging else 0.0, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(v.shape[1]))
    ax.set_xticklabels(t.columns, rotation=90, fontsize=TICK_PT - 1)
    ax.set_yticks(range(v.shape[0]))
    ax.set_yticklabels(t.index, fontsize=TICK_PT - 1)
    ax.set_xlabel("downstream component", fontsize=LABEL_PT)
    ax.set_ylabel("ablated component", fontsize=LABEL_PT)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    what = {"mean": "mean", "ci95": "95% interval half-width of the", "sd": "sd of the",
            "n": "prompts counted for the"}[stat]
    cb.set_label(f"{what} change of direct effect (logit)"
                 + ("\ndiagonal (own direct effect) masked" if mask_diagonal else ""), fontsize=LABEL_PT)
    cb.ax.tick_params(labelsize=TICK_PT)
    what = "effect table" if position is None else f"effect table at position {position}"
    ax.set_title(title or _title(results, what, [m]), fontsize=TITLE_PT)
    return _finish(fig, ax, path, dpi)


def plot_compensation_vs_direct(results: Results, path: PathLike = None, *,
                                method: Optional[str] = None, kind: str = "attn",
                                ax: Optional[Axes] = None, title: Optional[str] = None,
                                dpi: int = 150) -> Figure:
    """Compensation against direct effect, per prompt, for every ablated
    layer of one kind ("attn" or "mlp"), coloured by layer, with each
    layer's least-squares line (McGrath et al. Fig. 7d: the slope is the
    share of a layer's direct effect that downstream layers restore)."""
    m = results._method(method)
    v = results.variants
    v = v[(v["method"] == m) & v["component"].map(lambda c: _kind(c) == kind)]
    if "position" in v.columns:
        raise ValueError("a per-position job: draw it with plot_position_grid")
    if v.empty:
        raise ValueError(f"the job ablated no {kind!r} layer with method {m!r}")
    layers = v["component"].map(_layer).to_numpy(float)
    fig, ax = _axes(ax, (5.8, 4.6))
    norm = matplotlib.colors.Normalize(vmin=np.nanmin(layers), vmax=max(np.nanmax(layers), np.nanmin(layers) + 1))
    cmap = matplotlib.colormaps["viridis"]
    sc = ax.scatter(v["direct_effect"], v["compensation"], c=layers, cmap=cmap, norm=norm, s=14,
                    alpha=0.8, linewidths=0)
    for layer in sorted(set(layers[np.isfinite(layers)])):
        sel = layers == layer
        x, y = v["direct_effect"].to_numpy(float)[sel], v["compensation"].to_numpy(float)[sel]
        if len(x) >= 3 and np.ptp(x) > 0:
            slope, icept = np.polyfit(x, y, 1)
            xx = np.array([x.min(), x.max()])
            ax.plot(xx, slope * xx + icept, color=cmap(norm(layer)), lw=1.0, gid=f"fit {int(layer)}")
    ax.axhline(0, color="0.7", lw=0.6, zorder=0)
    ax.axvline(0, color="0.7", lw=0.6, zorder=0)
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label(f"layer of the ablated {kind}", fontsize=LABEL_PT)
    cb.ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    cb.ax.tick_params(labelsize=TICK_PT)
    ax.set_xlabel(f"direct effect of the ablated {kind} layer", fontsize=LABEL_PT)
    ax.set_ylabel("compensation (downstream change)", fontsize=LABEL_PT)
    ax.set_title(title or _title(results, f"compensation vs direct effect, {kind} layers", [m]),
                 fontsize=TITLE_PT)
    return _finish(fig, ax, path, dpi)


def plot_compensation_split(results: Results, path: PathLike = None, *,
                            method: Optional[str] = None, kind: str = "attn",
                            ax: Optional[Axes] = None, title: Optional[str] = None,
                            dpi: int = 150) -> Figure:
    """Per ablated layer of one kind ("attn" or "mlp"): mean compensation by
    downstream attention layers (the Hydra effect) and by downstream MLPs
    (mostly reduced erasure), side by side with their 95% intervals."""
    m = results._method(method)
    s = _summary(results, m)
    s = s[[(_kind(c) == kind and _layer(c) is not None) for c in s.index]]
    if s.empty:
        raise ValueError(f"the job ablated no {kind!r} layer with method {m!r}")
    layers = np.array([_layer(c) for c in s.index], dtype=float)
    fig, ax = _axes(ax, (max(5.5, 0.22 * len(s) + 2.5), 3.8))
    w = 0.4
    for off, col, color, label in ((-w / 2, "compensation_attn", "tab:blue", "by downstream attention"),
                                   (w / 2, "compensation_mlp", "tab:orange", "by downstream MLPs")):
        err = s.get(f"{col}_ci95")
        ax.bar(layers + off, s[f"{col}_mean"].to_numpy(float), w, color=color, label=label,
               yerr=None if err is None else err.to_numpy(float), error_kw={"lw": 0.7, "alpha": 0.7})
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel(f"ablated {kind} layer", fontsize=LABEL_PT)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("mean compensation (logit)", fontsize=LABEL_PT)
    ax.legend(fontsize=LEGEND_PT)
    ax.set_title(title or _title(results, f"compensation split, {kind} layers ablated", [m]),
                 fontsize=TITLE_PT)
    return _finish(fig, ax, path, dpi)


def plot_position_grid(results: Results, path: PathLike = None, *, method: Optional[str] = None,
                       value: str = "total_effect", ax: Optional[Axes] = None,
                       title: Optional[str] = None, dpi: int = 150) -> Figure:
    """The layer x position heatmap of a per-position grid (activation
    patching's classic picture): rows the ablated components, columns the
    intervened positions (labelled with the first prompt's tokens when the
    prompts share a length) or, on a grid over named spans, the spans,
    colour the mean `value` over prompts."""
    m = results._method(method)
    g = results.position_grid(method=m, value=value)
    v = g.to_numpy(float)
    fig, ax = _axes(ax, (max(5.0, 0.45 * v.shape[1] + 2.5), max(3.0, 0.32 * v.shape[0] + 1.8)))
    finite = v[np.isfinite(v)]
    lim = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    im = ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    labels = [str(p) for p in g.columns]
    clean = results.clean
    spans = results.grid_key == "span"
    if not spans and len(clean) and "tokens" in clean.columns:
        if len({len(t) for t in clean["tokens"]}) == 1:
            toks = clean["tokens"].iloc[0]
            labels = [f"{toks[p]!r} {p}" if p < len(toks) else str(p) for p in g.columns]
    ax.set_xticks(range(v.shape[1]))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=TICK_PT)
    ax.set_yticks(range(v.shape[0]))
    ax.set_yticklabels(g.index, fontsize=TICK_PT)
    ax.set_xlabel("intervened span" if spans else "intervened position", fontsize=LABEL_PT)
    ax.set_ylabel("component", fontsize=LABEL_PT)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(f"{value.replace('_', ' ')} (mean over prompts)", fontsize=LABEL_PT)
    cb.ax.tick_params(labelsize=TICK_PT)
    ax.set_title(title or _title(results, "per-span grid" if spans else "per-position grid", [m]),
                 fontsize=TITLE_PT)
    return _finish(fig, ax, path, dpi)
