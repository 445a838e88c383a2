"""The paper's two standard pictures from a job's Results (matplotlib, PNG)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _kind_color(name):
    return "tab:blue" if name.startswith("attn") else "tab:orange" if name.startswith("mlp") else "gray"


def plot_direct_vs_total(results, path, method=None, title=None):
    """Mean direct effect against mean total effect of every ablated component
    (McGrath et al. Fig. 2/4): points below y = x were compensated downstream."""
    s = results.summary
    if method is not None:
        s = s[s["method"] == method]
    x = np.array([r["mean"] for r in s["direct_effect"]])
    y = np.array([r["mean"] for r in s["total_effect"]])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x, y, c=[_kind_color(c) for c in s["component"]], s=28)
    span = max(np.abs(x).max(), np.abs(y).max()) or 1.0
    for xi, yi, name in zip(x, y, s["component"]):
        if max(abs(xi), abs(yi)) > 0.15 * span:  # label the large ones; the cluster near 0 stays legible
            ax.annotate(name, (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
    lim = [min(x.min(), y.min(), 0) * 1.1, max(x.max(), y.max(), 0) * 1.1]
    ax.plot(lim, lim, "k--", lw=0.8, label="y = x")
    ax.set_xlabel("direct effect (mean over prompts)")
    ax.set_ylabel("total effect (mean over prompts)")
    ax.set_title(title or "direct vs total effect (blue: attention, orange: MLP)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_effect_table(results, path, method=None, title=None):
    """Heatmap of the mean effect table: rows the ablated component, columns
    every downstream slot, values the change of its direct effect."""
    t = results.effect_table(method=method)
    v = t.values.astype(float)
    lim = np.nanmax(np.abs(v)) or 1.0
    fig, ax = plt.subplots(figsize=(max(6, 0.16 * v.shape[1] + 2), max(4, 0.16 * v.shape[0] + 1.5)))
    im = ax.imshow(v, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(v.shape[1]))
    ax.set_xticklabels(t.columns, rotation=90, fontsize=5)
    ax.set_yticks(range(v.shape[0]))
    ax.set_yticklabels(t.index, fontsize=5)
    ax.set_xlabel("downstream component (its direct effect's change)")
    ax.set_ylabel("ablated component")
    fig.colorbar(im, ax=ax, shrink=0.7)
    ax.set_title(title or "effect table", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_position_grid(results, path=None, method=None, value="total_effect", ax=None, title=None):
    """The layer x position heatmap of a per-position grid (activation
    patching's classic picture): rows the ablated components, columns the
    intervened positions (labelled with the first prompt's tokens when the
    prompts share a length), colour the mean `value`. Returns the Figure;
    draws into `ax` when given; writes `path` when given."""
    g = results.position_grid(method=method, value=value)
    v = g.values.astype(float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(5, 0.45 * v.shape[1] + 2.5), max(3, 0.32 * v.shape[0] + 1.5)))
    else:
        fig = ax.figure
    lim = np.nanmax(np.abs(v)) if np.isfinite(v).any() else 1.0
    im = ax.imshow(v, cmap="RdBu_r", vmin=-(lim or 1.0), vmax=lim or 1.0, aspect="auto")
    labels = [str(p) for p in g.columns]
    clean = results.clean
    if len(clean) and "tokens" in clean.columns:
        lengths = {len(t) for t in clean["tokens"]}
        if len(lengths) == 1:
            toks = clean["tokens"].iloc[0]
            labels = [f"{toks[p]!r} {p}" if p < len(toks) else str(p) for p in g.columns]
    ax.set_xticks(range(v.shape[1]))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(v.shape[0]))
    ax.set_yticklabels(g.index, fontsize=8)
    ax.set_xlabel("intervened position")
    ax.set_ylabel("component")
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(f"{value.replace('_', ' ')} (mean over prompts)")
    n = len(results.clean)
    m = method or results.summary["method"].iloc[0]
    ax.set_title(title or f"{results.header.get('model', '')}: {m}, n = {n}", fontsize=9)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig
