"""pytest: hydra_client.plots on real jobs of a hydrad on loopback
(conftest.py), with matplotlib's Agg backend. Each test reads the Figure
back (axes labels, title, legend entries, colour-bar label, tick labels)
and checks that its artists hold finite data and that the rendered image
is not blank: a blank, mislabelled or unlabelled figure fails."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from hydra_client.plots import (plot_compensation_split, plot_compensation_vs_direct,  # noqa: E402
                                plot_direct_vs_total, plot_effect_table, plot_position_grid)

MIN_PT = 8  # no text on a figure smaller than this


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def not_blank(fig):
    """The rendered figure has many distinct colours: it is not empty."""
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].reshape(-1, 3)
    return len(np.unique(img, axis=0)) > 20 and img.std() > 10


def colorbar_label(fig, ax):
    """The label of the colour bar drawn beside ax (the other axes of fig)."""
    others = [a for a in fig.axes if a is not ax]
    assert len(others) == 1, [a.get_label() for a in fig.axes]
    return others[0].get_ylabel()


def readable(ax):
    texts = ax.get_xticklabels() + ax.get_yticklabels() + [ax.xaxis.label, ax.yaxis.label, ax.title]
    return min(t.get_fontsize() for t in texts if t.get_text()) >= MIN_PT


def title_names(ax, res, method):
    t = ax.get_title()
    return t.startswith(f"{res.model}: ") and f"\n{method}, n = {res.n_prompts} prompts" in t


def test_direct_vs_total(multi, tmp_path):
    fig = plot_direct_vs_total(multi)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xlabel() == "direct effect (mean over prompts, 95% interval)"
    assert ax.get_ylabel() == "total effect (mean over prompts, 95% interval)"
    assert title_names(ax, multi, "zero, mean")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["zero", "mean"] and "y = x" in legend
    # one colour per method: the points of each method's summary, finite
    points = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    n_units = len(multi.header["components"])
    assert sum(len(c.get_offsets()) for c in points) == 2 * n_units
    for c in points:
        assert np.isfinite(np.asarray(c.get_offsets())).all()
    colors = {tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in points}
    assert len(colors) == 2
    # the error bars (95% intervals) are drawn: one line collection per axis and method
    bars = [c for c in ax.collections if type(c).__name__ == "LineCollection"]
    assert len(bars) == 4 and all(len(b.get_segments()) == n_units for b in bars)
    assert readable(ax) and not_blank(fig)
    # a path writes the PNG; the return value is still the Figure
    fig2 = plot_direct_vs_total(multi, tmp_path / "dvt.png", method="mean")
    assert isinstance(fig2, Figure)
    assert open(tmp_path / "dvt.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(tmp_path / "dvt.png") > 20000
    assert [t.get_text() for t in fig2.axes[0].get_legend().get_texts()][0] == "mean"


def test_draws_into_given_axes(multi):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    out = plot_direct_vs_total(multi, ax=axes[0], method="zero")
    assert out is fig and len(fig.axes) == 2
    assert axes[0].get_xlabel().startswith("direct effect") and not axes[1].get_xlabel()
    out = plot_compensation_split(multi, ax=axes[1], method="zero")
    assert out is fig and axes[1].get_ylabel() == "mean compensation (logit)"


def test_effect_table_masks_the_diagonal(multi, tmp_path):
    fig = plot_effect_table(multi, tmp_path / "table.png", method="mean")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "downstream component" and ax.get_ylabel() == "ablated component"
    assert colorbar_label(fig, ax) == "mean change of direct effect (logit)\ndiagonal (own direct effect) masked"
    assert title_names(ax, multi, "mean")
    assert [t.get_text() for t in ax.get_yticklabels()] == multi.header["components"]
    assert [t.get_text() for t in ax.get_xticklabels()] == multi.slots
    img = next(a for a in ax.get_children() if isinstance(a, AxesImage))
    data = img.get_array()
    table = multi.effect_table(method="mean")
    off = table.to_numpy().copy()
    layers = [c for c in table.index if c in multi.slots]  # a head has no slot of its own
    assert len(layers) == 2 * multi.header["n_layers"]
    for comp in layers:
        i, j = list(table.index).index(comp), multi.slots.index(comp)
        assert data.mask[i, j], comp  # the diagonal is masked ...
        off[i, j] = np.nan
    assert np.isfinite(data.compressed()).all() and data.count() == np.isfinite(off).sum()
    # ... and the colour scale is the off-diagonal's, not the direct effects'
    lim = np.nanmax(np.abs(off))
    assert abs(img.norm.vmax - lim) <= 1e-9 * lim and abs(img.norm.vmin + lim) <= 1e-9 * lim
    assert lim < max(abs(table.loc[c, c]) for c in layers)
    assert readable(ax) and not_blank(fig)
    assert os.path.getsize(tmp_path / "table.png") > 20000
    with pytest.raises(ValueError, match="several methods"):
        plot_effect_table(multi)
    ci = plot_effect_table(multi, method="zero", stat="ci95")
    assert colorbar_label(ci, ci.axes[0]).startswith("95% interval half-width")


def test_compensation_vs_direct(multi):
    fig = plot_compensation_vs_direct(multi, method="zero", kind="attn")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "direct effect of the ablated attn layer"
    assert ax.get_ylabel() == "compensation (downstream change)"
    assert colorbar_label(fig, ax) == "layer of the ablated attn"
    assert title_names(ax, multi, "zero")
    pts = [c for c in ax.collections if isinstance(c, PathCollection)][0]
    off = np.asarray(pts.get_offsets())
    v = multi.variants
    sel = v[(v["method"] == "zero") & v["component"].str.match(r"^attn\.\d+$")]
    assert off.shape == (len(sel), 2) and np.isfinite(off).all()
    assert np.allclose(np.sort(off[:, 1]), np.sort(sel["compensation"].to_numpy()), rtol=1e-6)
    # a least-squares line per layer (4 prompts each), its slope the summary's (the server's fit)
    fits = {ln.get_gid(): ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("fit ")}
    assert sorted(fits) == [f"fit {k}" for k in range(multi.header["n_layers"])]
    s = multi.summary.xs("zero", level="method")
    for k in range(multi.header["n_layers"]):
        (x0, x1), (y0, y1) = fits[f"fit {k}"].get_data()
        want = s.loc[f"attn.{k}", "slope"]
        assert np.isnan(want) or abs((y1 - y0) / (x1 - x0) - want) <= 1e-4 * max(1.0, abs(want)), k
    assert readable(ax) and not_blank(fig)
    with pytest.raises(ValueError, match="no 'neuron' layer"):
        plot_compensation_vs_direct(multi, method="zero", kind="neuron")


def test_compensation_split(multi):
    fig = plot_compensation_split(multi, method="mean", kind="mlp")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "ablated mlp layer" and ax.get_ylabel() == "mean compensation (logit)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["by downstream attention",
                                                                  "by downstream MLPs"]
    assert title_names(ax, multi, "mean")
    s = multi.summary.xs("mean", level="method")
    mlps = [c for c in multi.header["components"] if c.startswith("mlp.")]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 2 * len(mlps) and np.isfinite(heights).all()
    assert np.allclose(heights[:len(mlps)], s.loc[mlps, "compensation_attn_mean"], rtol=1e-9)
    assert np.allclose(heights[len(mlps):], s.loc[mlps, "compensation_mlp_mean"], rtol=1e-9)
    assert readable(ax) and not_blank(fig)


def test_position_grid_heatmap(client, tmp_path):
    job = client.submit({"model": "tiny", "prompts": [{"ids": [5, 17, 250, 9, 33]}, {"ids": [7, 8, 9, 10, 11]}],
                         "ablations": {"components": ["resid_pre.1", "attn.2"],
                                       "groups": {"both mlps": ["mlp.0", "mlp.1"]},
                                       "methods": ["zero", {"patch": {"source": 1}}],
                                       "positions": {"each": "all"}}})
    job.follow(progress=False)
    res = job.results()
    fig = plot_position_grid(res, tmp_path / "grid.png", method="zero")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "intervened position" and ax.get_ylabel() == "component"
    assert colorbar_label(fig, ax) == "total effect (mean over prompts)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["resid_pre.1", "attn.2", "both mlps"]
    assert title_names(ax, res, "zero")
    img = next(a for a in ax.get_children() if isinstance(a, AxesImage))
    assert np.isfinite(np.asarray(img.get_array())).all()
    assert readable(ax) and not_blank(fig)
    assert os.path.getsize(tmp_path / "grid.png") > 1000
    with pytest.raises(ValueError, match="plot_position_grid"):
        plot_direct_vs_total(res, method="zero")
    # a grid over named spans: the spans label the columns
    spans = client.submit({"model": "tiny",
                           "prompts": [{"text": "the cat sat on the mat", "subject": "the cat",
                                        "spans": {"verb": " sat"}},
                                       {"text": "a dog ran in the park", "subject": "dog",
                                        "spans": {"verb": " ran"}}],
                           "ablations": {"components": ["resid_pre.1", "attn.2"], "methods": ["zero"],
                                         "positions": {"each": "spans"}}})
    spans.follow(progress=False)
    fig = plot_position_grid(spans.results(), tmp_path / "spans.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "intervened span"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["subject", "verb"]
    assert readable(ax) and not_blank(fig)
    # one position's effect table
    fig = plot_effect_table(res, method="zero", position=3)
    ax = fig.axes[0]
    assert ax.get_title().startswith("tiny: effect table at position 3\n")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["resid_pre.1", "attn.2", "both mlps"]
    img = next(a for a in ax.get_children() if isinstance(a, AxesImage))
    want = res.effect_table(method="zero", position=3).to_numpy()
    want[1, res.slots.index("attn.2")] = np.nan  # the diagonal: masked
    assert np.array_equal(img.get_array().filled(np.nan), want, equal_nan=True)
    with pytest.raises(ValueError, match="per-position grid"):
        plot_effect_table(res, method="zero")
