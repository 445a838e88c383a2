"""pytest: the Python client (clients/python) against a real hydrad on
loopback, serving the random tiny GPT-2 of tests/data with a token file
(conftest.py starts it).

Run by ctest (`python_client`, with test_python_figures.py) as:
    python3 -m pytest -q tests/integration/test_python_client.py tests/integration/test_python_figures.py
with HYDRAD (the daemon binary) and HYDRA_ROOT set.

Goldens not from hydra: Student's t quantiles from published tables
(t_{0.975} with 1, 2, 3, 9, 29 degrees of freedom), numpy's mean and
standard deviation over the variant rows."""
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pytest
from conftest import OTHER_TOKEN, ROOT, TOKEN, start_hydrad, stop_hydrad

from hydra_client import Client, HydraError, JobTimeout, Results, to_hydra
from hydra_client.names import translate_spec
from hydra_client.stats import t_quantile

PROMPTS = ["the cat sat on the mat", "a dog ran in the park", "one two three four five",
           {"ids": [5, 17, 250, 9, 33]}]
REL = 1e-5  # fp32 effects summed in double by the server and by numpy
# A job of seconds on any CPU, for the tests that cancel it or time out
# waiting: every draw a full forward (the hydra preset's 15 samples with reuse
# ended inside 0.3 s on a Xeon core with AVX-512); it never runs to its end.
LONG = {"model": "tiny", "preset": "hydra", "prompts": PROMPTS * 60,
        "ablations": {"samples": 1000, "each_draw": True}, "reuse": False}


def close(a, b, rel=REL):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.all(np.abs(a - b) <= rel * np.maximum(1.0, np.abs(b)))


def test_models_and_tokenize(client):
    models = client.models()
    names = [m["id"] if isinstance(m, dict) else m for m in (models.get("models", models)
                                                             if isinstance(models, dict) else models)]
    assert "tiny" in names
    toks = client.tokenize("tiny", "the cat")
    assert toks["ids"] and all(isinstance(i, int) for i in toks["ids"])


def test_submit_follow_results_frames(client):
    job = client.submit({"model": "tiny", "preset": "hydra", "prompts": PROMPTS,
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
        de = res.summary.loc[comp, "direct_effect_mean"]
        assert abs(table.loc[comp, comp] + de) <= 1e-4 * max(1.0, abs(de)), comp
    # every variant row's effects add up: total = direct - compensation + norm_share
    v = res.variants
    err = (v["total_effect"] - (v["direct_effect"] - v["compensation"] + v["norm_share"])).abs().max()
    assert err <= 1e-4


def test_summary_is_flat_and_sortable(multi):
    s = multi.summary
    assert s.index.names == ["component", "method"]
    for col in ("total_effect_mean", "total_effect_ci95", "direct_effect_mean", "direct_effect_ci95",
                "compensation_mean", "compensation_attn_mean", "compensation_mlp_mean", "slope", "r2"):
        assert col in s.columns, col
        assert s[col].dtype == float, (col, s[col].dtype)
    assert (s["n"] == len(PROMPTS)).all() and s["n"].dtype.kind == "i"
    assert not any(isinstance(x, (dict, list)) for x in s.to_numpy().ravel())
    top = s.sort_values("total_effect_mean", ascending=False)
    assert top["total_effect_mean"].is_monotonic_decreasing
    # each summary mean is the mean of its variant rows
    v = multi.variants
    for (comp, method), row in s.iterrows():
        sel = v[(v["component"] == comp) & (v["method"] == method)]
        assert len(sel) == len(PROMPTS)
        for col in ("total_effect", "direct_effect", "compensation"):
            assert close(row[f"{col}_mean"], sel[col].mean()), (comp, method, col)


def test_effect_table_per_method_and_stat(multi):
    """Two methods: effect_table names them instead of keeping the last;
    stat="ci95" is honoured (Student's t, n - 1 degrees of freedom)."""
    assert multi.methods == ["zero", "mean"]
    with pytest.raises(ValueError, match=r"several methods \['zero', 'mean'\]"):
        multi.effect_table()
    with pytest.raises(ValueError, match=r"no method 'resample' \(it has \['zero', 'mean'\]\)"):
        multi.effect_table(method="resample")
    with pytest.raises(ValueError, match="stat 'median'"):
        multi.effect_table(method="zero", stat="median")
    with pytest.raises(ValueError, match="position="):
        multi.effect_table(method="zero", position=2)
    units = multi.header["components"]
    v = multi.variants
    t3 = 3.182446305284263  # t_{0.975} with 3 degrees of freedom (4 prompts), from tables
    for method in ("zero", "mean"):
        mean = multi.effect_table(method=method)
        ci = multi.effect_table(method=method, stat="ci95")
        sd = multi.effect_table(method=method, stat="sd")
        n = multi.effect_table(method=method, stat="n")
        assert list(mean.index) == units and list(mean.columns) == multi.slots
        for comp in units:
            e = np.array(list(v[(v["component"] == comp) & (v["method"] == method)]["effects"]))
            assert e.shape == (len(PROMPTS), len(multi.slots))
            assert close(mean.loc[comp], e.mean(0)), (method, comp)
            assert close(sd.loc[comp], e.std(0, ddof=1)), (method, comp)
            assert close(ci.loc[comp], t3 * e.std(0, ddof=1) / 2.0), (method, comp)
            assert (n.loc[comp] == len(PROMPTS)).all()
    assert not close(multi.effect_table(method="zero"), multi.effect_table(method="mean"))
    if "seed" in multi.header:  # a server with Student's t summaries (its headers name the seed)
        for method in ("zero", "mean"):
            ci = multi.effect_table(method=method, stat="ci95")
            s = multi.summary.xs(method, level="method")
            for comp in (c for c in units if c in multi.slots):  # the diagonal is -direct effect
                assert close(ci.loc[comp, comp], s.loc[comp, "direct_effect_ci95"], 1e-6), (method, comp)


def test_t_quantile_against_tables():
    for df, ref in ((1, 12.706204736174705), (2, 4.302652729911275), (3, 3.182446305284263),
                    (9, 2.2621571627409915), (29, 2.045229642132703)):
        assert abs(t_quantile(0.975, df) - ref) <= 1e-9 * ref, df
    assert abs(t_quantile(0.5, 7)) <= 1e-12


def test_null_statistics_are_nan():
    """slope and r2 null (undefined: fewer than 3 prompts, a direct effect
    at rounding level) become NaN in float columns; ci95 null too."""
    rows = [{"type": "header", "model": "m", "n_prompts": 2, "components": ["attn.0", "mlp.0"],
             "slots": ["embed", "attn.0", "mlp.0"]},
            {"type": "summary", "component": "attn.0", "method": "zero", "n": 2, "nonfinite": 0,
             "total_effect": {"mean": 0.5, "ci95": None}, "direct_effect": {"mean": 0.25, "ci95": 1.5},
             "fit": {"slope": None, "r2": None, "undefined": "fewer than 3 prompts"},
             "effects": [0.0, -0.25, 0.125]},
            {"type": "summary", "component": "mlp.0", "method": "zero", "n": 2, "nonfinite": 0,
             "total_effect": {"mean": 0.75, "ci95": 0.5}, "direct_effect": {"mean": 0.5, "ci95": 0.25},
             "fit": {"slope": None, "r2": None}, "effects": [0.0, 0.0, -0.5]}]
    s = Results(rows).summary
    assert list(s.index) == ["attn.0", "mlp.0"]
    assert s["slope"].dtype == float and s["slope"].isna().all() and s["r2"].isna().all()
    assert np.isnan(s.loc["attn.0", "total_effect_ci95"]) and s.loc["mlp.0", "total_effect_ci95"] == 0.5
    assert s.loc["attn.0", "fit_undefined"] == "fewer than 3 prompts"


def test_two_prompts_fit_is_nan(client):
    """Below 3 prompts the server's Fig. 7d fit is undefined: NaN in the
    frame (where the server says so: headers naming the seed), float always;
    clean rows carry the prompt text there."""
    job = client.submit({"model": "tiny", "prompts": PROMPTS[:2],
                         "ablations": {"components": ["attn.1", "mlp.1"], "methods": ["zero"]}})
    job.wait()
    res = job.results()
    s = res.summary
    assert list(s.index) == ["attn.1", "mlp.1"] and s.index.name == "component"
    assert s["slope"].dtype == float and s["r2"].dtype == float
    if "seed" in res.header:
        assert s["slope"].isna().all() and s["r2"].isna().all()
        assert (s["fit_undefined"] == "fewer than 3 prompts").all()
        assert list(res.clean["text"]) == PROMPTS[:2]


def test_errors_name_the_field(client, server):
    with pytest.raises(HydraError) as e:
        client.submit({"model": "tiny", "prompts": ["x"],
                       "ablations": {"components": ["mlp.40"], "methods": ["zero"]}})
    assert e.value.status in (400, 422)
    assert e.value.field and e.value.field.startswith("ablations.components")
    with pytest.raises(HydraError) as e:  # JSON text the server parses: its message, not Python's
        client.submit('{"model": "tiny", "prompts": ["x"],}')
    assert e.value.status == 400 and "JSON" in str(e.value), str(e.value)
    with pytest.raises(HydraError) as e:
        Client(server[0], "wrong-token-0000000000000000").jobs()
    assert e.value.status == 401


def test_other_users_job_is_invisible(client, server):
    job = client.submit({"model": "tiny", "prompts": PROMPTS[:2],
                         "ablations": {"components": ["attn.0"], "methods": ["zero"]}})
    job.follow(progress=False)
    bob = Client(server[0], OTHER_TOKEN)
    with pytest.raises(HydraError) as e:
        bob.job(job.id).status()
    assert e.value.status == 404
    assert job.id not in bob.jobs().index


def test_cancel(client):
    job = client.submit(LONG)
    job.cancel()
    with pytest.raises(HydraError):
        job.follow(progress=False)
    assert job.status()["state"] == "cancelled"


def test_wait_timeout_then_async(client):
    """wait(timeout=) raises JobTimeout while the job goes on; wait_async
    waits without blocking the event loop; `await job` gives Results."""
    big = client.submit(LONG)
    t0 = time.monotonic()
    with pytest.raises(JobTimeout) as e:
        big.wait(timeout=0.3, poll_s=0.1)
    assert time.monotonic() - t0 < 5 and isinstance(e.value, TimeoutError)
    assert big.status()["state"] in ("queued", "running")
    big.cancel()
    small = [client.submit({"model": "tiny", "prompts": PROMPTS[:2],
                            "ablations": {"components": ["mlp.1"], "methods": ["zero"]}}) for _ in range(2)]

    async def main():
        ticks = 0

        async def ticker():  # runs while the jobs are awaited: the loop is free
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        states = await asyncio.gather(big.wait_async(check=False, poll_s=0.05),
                                      *(j.wait_async(poll_s=0.05) for j in small))
        res = await small[0]
        t.cancel()
        return states, res, ticks

    states, res, ticks = asyncio.run(main())
    assert [s["state"] for s in states] == ["cancelled", "done", "done"]
    assert isinstance(res, Results) and len(res.variants) == 2
    assert ticks >= 1


def test_submit_a_file(client, tmp_path):
    """submit("job.json") reads the file (a str path or a Path); a path with
    no file is a FileNotFoundError naming it, never sent as the document."""
    doc = {"model": "tiny", "prompts": PROMPTS[:2], "ablations": {"components": ["mlp.0"], "methods": ["zero"]}}
    path = tmp_path / "job.json"
    path.write_text(__import__("json").dumps(doc))
    for given in (str(path), path):
        st = client.submit(given).wait(timeout=120)
        assert st["state"] == "done" and st["progress"]["variants_total"] == 2, st
    with pytest.raises(FileNotFoundError) as e:
        client.submit(str(tmp_path / "no-such-job.json"))
    assert "no-such-job.json" in str(e.value)


def test_results_of_an_ended_job_name_how_it_ended(client):
    """results() of a job cancelled after some rows: a RuntimeWarning naming
    the job and how it ended, with the rows stored before; of one cancelled
    before any row: HydraError naming it (was: empty frames, no word)."""
    job = client.submit(LONG)
    deadline = time.monotonic() + 120
    while job.status().get("rows", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    job.wait(timeout=120, check=False)
    with pytest.warns(RuntimeWarning, match=f"job {job.id} cancelled"):
        res = job.results()
    assert len(res.clean) > 0
    never = client.submit({"model": "tiny", "preset": "hydra", "prompts": PROMPTS * 40,
                           "ablations": {"samples": 15}, "deadline_s": 0.001})
    st = never.wait(timeout=120, check=False)
    assert st["state"] == "failed", st
    with pytest.raises(HydraError, match=f"job {never.id} failed: .*deadline"):
        never.results()


def test_jobs_frame_and_spec(client):
    doc = {"model": "tiny", "prompts": PROMPTS[:3],
           "ablations": {"components": ["attn.1", "mlp.2"], "methods": ["zero"]}}
    for _ in range(2):  # more jobs than a page of 2 (the test may run alone)
        client.submit(doc).wait()
    job = client.submit(doc, name="pytest capitals")
    job.wait()
    jobs = client.jobs()
    assert isinstance(jobs, pd.DataFrame) and job.id in jobs.index
    row = jobs.loc[job.id]
    assert row["name"] == "pytest capitals" and row["model"] == "tiny" and row["state"] == "done"
    assert isinstance(row["created_at"], pd.Timestamp) and row["created_at"].tzinfo is not None
    assert row["created_at"] <= row["started_at"] <= row["finished_at"]
    assert abs((pd.Timestamp.now(tz="UTC") - row["created_at"]).total_seconds()) < 600
    assert row["prompts"] == 3 and row["variants"] == 3 * 2 == row["variants_done"]
    assert row["labels"] == {} and np.isnan(row["eta_s"]) and row["waiting"] is None
    assert jobs["created_at"].is_monotonic_decreasing  # newest first
    assert len(client.jobs(limit=2)) == 2
    # every page, through the server's cursor: the same jobs as one big page
    pages = list(client.job_pages(limit=2))
    assert len(pages) >= 2 and all(len(p["jobs"]) <= 2 for p in pages)
    assert [j["id"] for p in pages for j in p["jobs"]] == list(jobs.index)
    labelled = client.submit(dict(doc, labels={"figure": "7d"}))
    labelled.wait()
    assert list(client.jobs(label="figure=7d").index) == [labelled.id]
    assert client.jobs(label="figure=7d").loc[labelled.id, "labels"] == {"figure": "7d"}
    assert list(client.jobs(name="pytest capitals").index) == [job.id]
    spec = client.job(job.id[:10]).spec()  # a unique prefix names the job
    assert spec["model"] == "tiny" and spec["prompts"] == doc["prompts"]
    assert spec["ablations"]["components"] == ["attn.1", "mlp.2"] and spec["name"] == "pytest capitals"


def test_transformerlens_names():
    cases = {"blocks.3.attn.hook_z": "attn.3", ("blocks.3.attn.hook_z", 5): "head.3.5",
             "blocks.3.attn.hook_z[5]": "head.3.5", "blocks.3.attn.hook_z.5": "head.3.5",
             "blocks.3.hook_mlp_out": "mlp.3", "blocks.3.hook_attn_out": "attn.3",
             "blocks.3.hook_resid_pre": "resid_pre.3", "blocks.12.hook_resid_mid": "resid_mid.12",
             "blocks.0.hook_resid_post": "resid_post.0", ("blocks.2.mlp.hook_post", 17): "neuron.2.17",
             ("blocks.4.attn.hook_q", 1): "q.4.1", ("blocks.4.attn.hook_pattern", 2): "pattern.4.2",
             "blocks.*.hook_mlp_out": "mlp.*", "hook_embed": "embed",
             "model.layers.7.self_attn": "attn.7", "transformer.h.2.mlp": "mlp.2",
             "attn.3": "attn.3", "head.5.*": "head.5.*", "embed": "embed"}
    for name, want in cases.items():
        assert to_hydra(name) == want, name
    for bad, why in (("blocks.3.ln1.hook_scale", "hook 'ln1.hook_scale'"),
                     ("blocks.3.mlp.hook_post", "give its index"),
                     (("blocks.3.hook_mlp_out", 2), "takes no index"),
                     ("blocks.x.attn.hook_z", "not a TransformerLens hook name"),
                     (("attn.3", 1), "index goes with a TransformerLens hook name")):
        with pytest.raises(ValueError) as e:
            to_hydra(bad)
        msg = str(e.value)
        assert why in msg and "attn.L, mlp.L, head.L.H" in msg and "blocks.3.attn.hook_z -> attn.3" in msg, msg
    doc = translate_spec({"ablations": {"components": ["blocks.0.attn.hook_z", ("blocks.1.attn.hook_z", 2)],
                                        "groups": {"late": ["blocks.2.hook_mlp_out"]}}})
    assert doc["ablations"] == {"components": ["attn.0", "head.1.2"], "groups": {"late": ["mlp.2"]}}
    with pytest.raises(ValueError, match=r"^ablations\.components\[1\]: component 'blocks.1.ln2.hook_scale'"):
        translate_spec({"ablations": {"components": ["attn.0", "blocks.1.ln2.hook_scale"]}})


def test_submit_translates_names(client):
    job = client.submit({"model": "tiny", "prompts": PROMPTS[:2],
                         "ablations": {"components": ["blocks.0.attn.hook_z", ("blocks.1.attn.hook_z", 3),
                                                      "blocks.2.hook_mlp_out"],
                                       "groups": {"first mlps": ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]},
                                       "methods": ["zero"]}})
    job.wait()
    res = job.results()
    assert res.header["components"] == ["attn.0", "head.1.3", "mlp.2", "first mlps"]
    with pytest.raises(ValueError, match="hydra spells components"):
        client.submit({"model": "tiny", "prompts": PROMPTS[:2],
                       "ablations": {"components": ["blocks.0.ln1.hook_normalized"]}})


def test_to_xarray(multi):
    xr = pytest.importorskip("xarray")
    da = multi.to_xarray(method="mean")
    assert isinstance(da, xr.DataArray)
    assert da.dims == ("prompt", "ablated", "downstream")
    assert da.shape == (len(PROMPTS), len(multi.header["components"]), len(multi.slots))
    assert list(da.coords["downstream"].values) == multi.slots
    v = multi.variants
    for _, r in v[v["method"] == "mean"].iterrows():
        assert close(da.sel(prompt=r["prompt"], ablated=r["component"]).values, r["effects"])
    assert close(da.mean("prompt").values, multi.effect_table(method="mean").values)
    both = multi.to_xarray()
    assert both.dims == ("ablation_method", "prompt", "ablated", "downstream")
    assert list(both.coords["ablation_method"].values) == ["zero", "mean"]
    assert close(both.sel(ablation_method="zero").values, multi.to_xarray(method="zero").values)
    assert not close(both.sel(ablation_method="mean").values, multi.to_xarray(method="zero").values)


def test_to_xarray_without_xarray(multi, monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)  # import xarray raises ImportError
    with pytest.raises(ImportError, match=r"to_xarray needs xarray: pip install xarray"):
        multi.to_xarray(method="zero")


def test_position_grid_frame(client):
    """A per-position grid: rows and summaries carry `position`, the grid
    frame is component x position, the summary is indexed by it too."""
    job = client.submit({"model": "tiny", "prompts": [{"ids": [5, 17, 250, 9, 33]}, {"ids": [7, 8, 9, 10, 11]}],
                         "ablations": {"components": ["resid_pre.1", "attn.2"],
                                       "groups": {"both mlps": ["mlp.0", "mlp.1"]},
                                       "methods": ["zero", {"patch": {"source": 1}}],
                                       "positions": {"each": "all"}}})
    job.follow(progress=False)
    res = job.results()
    assert res.header["grid"] == [0, 1, 2, 3, 4]
    assert "position" in res.variants.columns and "position" in res.summary.index.names
    assert res.summary.index.names == ["component", "method", "position"]
    assert len(res.variants) == 2 * 3 * 2 * 5
    g = res.position_grid(method="zero")
    assert list(g.index) == ["resid_pre.1", "attn.2", "both mlps"] and list(g.columns) == [0, 1, 2, 3, 4]
    assert g.notna().all().all()
    v = res.variants
    sel = v[(v["method"] == "zero") & (v["component"] == "attn.2") & (v["position"] == 3)]
    assert close(g.loc["attn.2", 3], sel["total_effect"].mean())
    with pytest.raises(ValueError):
        res.position_grid()  # two methods: name one
    with pytest.raises(ValueError):
        res.position_grid(method="mean")
    with pytest.raises(ValueError, match="per-position grid"):
        res.effect_table(method="zero")
    t = res.effect_table(method="zero", position=4)
    assert t.shape == (3, len(res.slots)) and t.notna().all().all()


SPAN_JOB = {"model": "tiny",
            "prompts": [{"text": "the cat sat on the mat", "subject": "the cat",
                         "spans": {"verb": " sat", "place": " the mat"}},
                        {"text": "a dog ran in the park", "spans": {"verb": " ran", "place": " the park"}}],
            "ablations": {"components": ["resid_pre.1", "attn.2"], "methods": ["zero", {"patch": {"source": 1}}],
                          "positions": {"each": "spans"}}}


def test_span_grid_frame(client):
    """A grid over named spans: rows and summaries carry `span`, the grid
    frame is component x span (names in token order), position= takes a
    span's name; a span a prompt lacks averages over the others."""
    job = client.submit(SPAN_JOB)
    job.follow(progress=False)
    res = job.results()
    assert res.header["grid"] == ["subject", "verb", "place"] and res.grid_key == "span"
    assert res.summary.index.names == ["component", "method", "span"]
    assert len(res.variants) == (3 + 2) * 2 * 2
    g = res.position_grid(method="zero")
    assert list(g.columns) == ["subject", "verb", "place"] and g.columns.name == "span"
    v = res.variants
    sel = v[(v["method"] == "zero") & (v["component"] == "attn.2") & (v["span"] == "place")]
    assert len(sel) == 2 and close(g.loc["attn.2", "place"], sel["total_effect"].mean())
    subj = v[(v["method"] == "zero") & (v["component"] == "attn.2") & (v["span"] == "subject")]
    assert list(subj["prompt"]) == [0] and close(g.loc["attn.2", "subject"], subj["total_effect"].mean())
    t = res.effect_table(method="zero", position="verb")
    assert t.shape == (2, len(res.slots)) and t.notna().all().all()
    with pytest.raises(ValueError, match="no span 3"):
        res.effect_table(method="zero", position=3)


def test_readme_python_snippet():
    """The README's Python-client example (after `<!-- readme-python -->`)
    runs as written against a hydrad serving SmolLM2 as "smollm2"
    ($HYDRA_URL, $HYDRA_TOKEN set), in a scratch folder."""
    model = os.path.join(ROOT, "models", "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(model):
        if os.environ.get("HYDRA_REQUIRE_MODELS") == "1":
            pytest.fail(f"{model} is not here (deploy/get-model.sh smollm2-135m)")
        pytest.skip(f"{model} is not here (deploy/get-model.sh smollm2-135m)")
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"<!-- readme-python -->\n```python\n(.*?)\n```", readme, re.S)
    assert blocks, "the README has no <!-- readme-python --> example"
    tmp = tempfile.mkdtemp(prefix="hydra-readme-py-")
    proc, url = start_hydrad({"smollm2": model}, tmp)
    try:
        env = dict(os.environ, HYDRA_URL=url, HYDRA_TOKEN=TOKEN, MPLBACKEND="Agg",
                   PYTHONPATH=os.path.join(ROOT, "clients", "python"))
        for k, code in enumerate(blocks):
            p = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True,
                               text=True, timeout=500)
            assert p.returncode == 0, f"example {k}:\n{p.stderr[-3000:]}"
            for png in re.findall(r"\"([\w.-]+\.png)\"", code):
                assert os.path.getsize(os.path.join(tmp, png)) > 10000, png
    finally:
        stop_hydrad(proc)


def test_optional_dependencies():
    """hydra_client needs neither matplotlib nor xarray; hydra_client.plots
    without matplotlib says how to install it."""
    code = ("import sys; sys.modules['matplotlib'] = None; sys.modules['xarray'] = None\n"
            "import hydra_client\n"
            "from hydra_client import Client, Results, to_hydra\n"
            "try:\n    import hydra_client.plots\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "clients", "python"))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "hydra_client.plots needs matplotlib: pip install matplotlib" in p.stdout, p.stdout
