#!/usr/bin/env python3
"""Every job document the README marks with `<!-- readme-job: smollm2 -->`
(the fenced JSON block right after the marker) runs as written with
`hydra run` on SmolLM2: exit 0, a header naming every unit, one variant row
per prompt x unit x method, every value finite.

usage: test_readme_jobs.py HYDRA ROOT   (exit 77 when the model is absent and
HYDRA_REQUIRE_MODELS is not 1)"""
import json
import os
import re
import subprocess
import sys
import tempfile

HYDRA, ROOT = sys.argv[1:3]
MODEL = os.path.join(ROOT, "models", "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.path.exists(MODEL):
    print(f"test_readme_jobs: {MODEL} is not here (deploy/get-model.sh smollm2-135m)")
    sys.exit(1 if os.environ.get("HYDRA_REQUIRE_MODELS") == "1" else 77)

readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
blocks = re.findall(r"<!-- readme-job: smollm2 -->\n```json\n(.*?)\n```", readme, re.S)
failures = 0


def check(what, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
    failures += not ok


check("the README has job examples", len(blocks) >= 2, f"{len(blocks)} found")
for k, text in enumerate(blocks):
    doc = json.loads(text)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(text)
        path = f.name
    p = subprocess.run([HYDRA, "run", "--model", MODEL, path], capture_output=True, text=True,
                       timeout=900)
    os.unlink(path)
    check(f"example {k}: hydra run exits 0", p.returncode == 0, p.stderr[-2000:])
    if p.returncode != 0:
        continue
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    header = next((r for r in rows if r["type"] == "header"), {})
    abl = doc["ablations"]
    units = list(abl.get("components", [])) + list(abl.get("groups", {}))
    expanded = header.get("components", [])
    check(f"example {k}: every group is a unit of the header",
          all(g in expanded for g in abl.get("groups", {})), expanded)
    variants = [r for r in rows if r["type"] == "variant"]
    n_methods = len(abl.get("methods", ["resample"]))
    runs = len(doc["prompts"])
    if abl.get("positions") == {"each": "all"}:  # a grid: a run per prompt and position
        runs = sum(len(r["tokens"]) for r in rows if r["type"] == "clean")
        check(f"example {k}: grid rows carry their position",
              all("position" in v for v in variants if v["type"] == "variant"))
    if abl.get("positions") == {"each": "spans"}:  # a run per prompt and named span
        runs = sum(len(set(p.get("spans", {})) | ({"subject"} if "subject" in p else set()))
                   for p in doc["prompts"])
        check(f"example {k}: span grid rows carry their span",
              all("span" in v and v["span"] in header.get("grid", []) for v in variants))
    want = runs * len(expanded) * n_methods
    check(f"example {k}: {want} variant rows", len(variants) == want, len(variants))
    check(f"example {k}: every value finite", not any(r.get("nonfinite") for r in rows),
          [r for r in rows if r.get("nonfinite")][:2])
    check(f"example {k}: units {units[:4]}... present",
          all(any(v["component"] == u for v in variants) for u in units if "*" not in u))
print(f"test_readme_jobs: {'FAILED' if failures else 'ok'} ({failures} failures)")
sys.exit(1 if failures else 0)
