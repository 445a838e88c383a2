"""pytest: the Python client (clients/python) against a real hydrad on
loopback, serving the random tiny GPT-2 of tests/data with a token file.

Run by ctest (`python_client`) as:
    python3 -m pytest -q tests/integration/test_python_client.py
with HYDRAD (the daemon binary) and HYDRA_ROOT set."""
import os
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest

ROOT = os.environ.get("HYDRA_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from hydra_client import Client, HydraError  # noqa: E402
from hydra_client.plots import plot_direct_vs_total, plot_effect_table, plot_position_grid  # noqa: E402
from hydra_testutil import free_port  # noqa: E402

TOKEN = "pytest-token-0123456789abcdef"
PROMPTS = ["the cat sat on the mat", "a dog ran in the park", "one two three four five",
           {"ids": [5, 17, 250, 9, 33]}]


@pytest.fixture(scope="module")
def server():
    hydrad = os.environ.get("HYDRAD", os.path.join(ROOT, "build", "server", "hydrad"))
    tmp = tempfile.mkdtemp(prefix="hydra-pytest-")
    with open(os.path.join(tmp, "tokens"), "w") as f:
        f.write(f"{TOKEN} alice user\nother-token-abcdef0123456789 bob user\n")
    port = free_port()
    proc = subprocess.Popen([hydrad, "--port", str(port), "--model",
                             f"tiny={os.path.join(ROOT, 'tests', 'data', 'tiny-gpt2')}",
                             "--store", os.path.join(tmp, "hydra.db"), "--tokens",
                             os.path.join(tmp, "tokens"), "--backend", "cpu", "--threads", "1"],
                            stderr=open(os.path.join(tmp, "hydrad.log"), "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            Client(url, TOKEN).health()
            break
        except HydraError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("hydrad did not come up: " + open(os.path.join(tmp, "hydrad.log")).read())
    yield url, tmp
    proc.terminate()
    proc.wait(timeout=60)


def test_models_and_tokenize(server):
    c = Client(server[0], TOKEN)
    models = c.models()
    names = [m["id"] if isinstance(m, dict) else m for m in (models.get("models", models)
                                                             if isinstance(models, dict) else models)]
    assert "tiny" in names
    toks = c.tokenize("tiny", "the cat")
    assert toks["ids"] and all(isinstance(i, int) for i in toks["ids"])


def test_submit_follow_results_frames(server):
    c = Client(server[0], TOKEN)
    job = c.submit({"model": "tiny", "preset": "hydra", "prompts": PROMPTS,
                    "ablations": {"samples": 3}})
    st = job.follow(progress=False)
    assert st["state"] == "done"
    res = job.results()
    L = res.header["n_layers"]
    n_comp = 2 * L
    assert isinstance(res.clean, pd.DataFrame) and len(res.clean) == len(PROMPTS)
    assert len(res.variants) == len(PROMPTS) * n_comp
    assert len(res.summary) == n_comp
    table = res.effect_table()
    assert table.shape == (n_comp, len(res.slots))
    assert list(table.columns) == res.slots
    # the effect table's diagonal is minus the mean direct effect of the ablated component
    for comp in table.index:
        de = res.summary.set_index("component").loc[comp, "direct_effect"]["mean"]
        assert abs(table.loc[comp, comp] + de) <= 1e-4 * max(1.0, abs(de)), comp
    # every variant row's effects add up: total = direct - compensation + norm_share
    v = res.variants
    err = (v["total_effect"] - (v["direct_effect"] - v["compensation"] + v["norm_share"])).abs().max()
    assert err <= 1e-4


def test_plots_are_written(server, tmp_path):
    c = Client(server[0], TOKEN)
    job = c.submit({"model": "tiny", "preset": "hydra", "prompts": PROMPTS[:3],
                    "ablations": {"samples": 2}})
    job.follow(progress=False)
    res = job.results()
    for fn, name in ((plot_direct_vs_total, "dvt.png"), (plot_effect_table, "table.png")):
        path = fn(res, str(tmp_path / name))
        assert os.path.getsize(path) > 2000
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_errors_name_the_field(server):
    c = Client(server[0], TOKEN)
    with pytest.raises(HydraError) as e:
        c.submit({"model": "tiny", "prompts": ["x"],
                  "ablations": {"components": ["mlp.40"], "methods": ["zero"]}})
    assert e.value.status in (400, 422)
    assert e.value.field and e.value.field.startswith("ablations.components")
    with pytest.raises(HydraError) as e:
        Client(server[0], "wrong-token-0000000000000000").jobs()
    assert e.value.status == 401


def test_other_users_job_is_invisible(server):
    alice = Client(server[0], TOKEN)
    job = alice.submit({"model": "tiny", "prompts": PROMPTS[:2],
                        "ablations": {"components": ["attn.0"], "methods": ["zero"]}})
    job.follow(progress=False)
    bob = Client(server[0], "other-token-abcdef0123456789")
    with pytest.raises(HydraError) as e:
        bob.job(job.id).status()
    assert e.value.status == 404


def test_cancel(server):
    c = Client(server[0], TOKEN)
    job = c.submit({"model": "tiny", "preset": "hydra", "prompts": PROMPTS * 40,
                    "ablations": {"samples": 15}})
    job.cancel()
    with pytest.raises(HydraError):
        job.follow(progress=False)
    assert job.status()["state"] == "cancelled"


def test_position_grid_frame_and_heatmap(server, tmp_path):
    """A per-position grid: rows and summaries carry `position`, the grid
    frame is component x position, the heatmap is labelled."""
    c = Client(server[0], TOKEN)
    job = c.submit({"model": "tiny", "prompts": [{"ids": [5, 17, 250, 9, 33]}, {"ids": [7, 8, 9, 10, 11]}],
                    "ablations": {"components": ["resid_pre.1", "attn.2"], "groups": {"both mlps": ["mlp.0", "mlp.1"]},
                                  "methods": ["zero", {"patch": {"source": 1}}],
                                  "positions": {"each": "all"}}})
    job.follow(progress=False)
    res = job.results()
    assert res.header["grid"] == [0, 1, 2, 3, 4]
    assert "position" in res.variants.columns and "position" in res.summary.columns
    assert len(res.variants) == 2 * 3 * 2 * 5
    g = res.position_grid(method="zero")
    assert list(g.index) == ["resid_pre.1", "attn.2", "both mlps"] and list(g.columns) == [0, 1, 2, 3, 4]
    assert g.notna().all().all()
    with pytest.raises(ValueError):
        res.position_grid()  # two methods: name one
    with pytest.raises(ValueError):
        res.position_grid(method="mean")
    fig = plot_position_grid(res, tmp_path / "grid.png", method="zero")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "intervened position" and ax.get_ylabel() == "component"
    assert fig.axes[1].get_ylabel().startswith("total effect")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["resid_pre.1", "attn.2", "both mlps"]
    assert os.path.getsize(tmp_path / "grid.png") > 1000
