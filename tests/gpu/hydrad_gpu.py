#!/usr/bin/env python3
"""hydrad on the CUDA backend, over HTTP (a step of tests/gpu/run.sh).

    python3 tests/gpu/hydrad_gpu.py HYDRAD ROOT [GPT2_DIR]

1. The tiny Llama's transformers-hooks golden (tests/golden/ablation_tiny-llama.json)
   submitted to `hydrad --backend cuda --unit-prompts 2`: zero, mean and
   scale:0.5 on every component, every metric. Total effect, ablated logit and
   log-prob within 1e-4 x the largest clean logit, KL within 1e-4 x max(1, KL),
   rank within 1 (test_engine's bounds). The mean ablation's source is the
   mean over all of the job's prompts while each unit holds two, so this also
   checks the source store kept on the device between units.
2. Two users' jobs on a GPT-2-small-shaped model (GPT2_DIR, tests/gpu/make_models.py),
   submitted together so that hydrad's round-robin alternates their units:
   alice the hydra preset (resample x 15, every attention and MLP layer),
   bob zero and mean ablations with every metric. The same jobs on
   `hydrad --backend cpu` (CPU checked against the goldens by the CPU suite)
   give the reference: total effects and log-probs within 1e-4 x the largest
   clean logit, KL within 1e-4 x max(1, KL), the same clean targets.
3. GET /v1/health names the cuda backend; once every job has ended,
   hydra_source_store_bytes is 0 (each job's store freed on the device).

Exit status 0 when every check passed, 1 otherwise."""
import json
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from hydra_testutil import Checks, Daemon  # noqa: E402

GPU = os.environ.get("GPU_HYDRAD_BACKEND", "cuda")  # cpu: a dry run of the script without a GPU
TOKENS = {"alice-token-0123456789": "alice user", "bob-token-0123456789ab": "bob user"}
ALICE, BOB = list(TOKENS)
check = Checks("hydrad_gpu")


def store_bytes(d):
    text = d.req("/metrics")[1]
    m = re.search(r'^hydra_source_store_bytes\{model="tiny"\}\s+([0-9.e+]+)\s*$', text, re.M)
    return float(m.group(1)) if m else None


def variants(rows):
    return {(r["prompt"], r["component"], json.dumps(r["method"])): r for r in rows if r.get("type") == "variant"}


def close(name, got, want, bound):
    """got/want: {key: value}; bound(want value) -> allowed |diff|."""
    missing = sorted(set(want) - set(got), key=str)
    if missing:
        return check(name, False, f"{len(missing)} missing, first {missing[0]}")
    worst = max(((abs(got[k] - v) - bound(v), k) for k, v in want.items()), key=lambda x: x[0])
    k = worst[1]
    return check(f"{name} ({len(want)} rows)", worst[0] <= 0 and all(g == g for g in got.values()),
                 f"at {k}: got {got[k]!r}, want {want[k]!r}, bound {bound(want[k]):.3g}")


def run_jobs(d, jobs):
    """Submits (token, spec) pairs back to back; returns each job's (status, rows)
    and whether the source-store gauge was seen above 0 while they ran."""
    ids = [json.loads(d.req("/v1/jobs", json.dumps(spec).encode(), token=t)[1])["id"] for t, spec in jobs]
    seen, end = False, time.time() + 300
    while time.time() < end:
        states = [json.loads(d.req(f"/v1/jobs/{j}", token=t)[1])["state"] for j, (t, _) in zip(ids, jobs)]
        if all(s in ("done", "failed", "cancelled") for s in states):
            break
        seen |= (store_bytes(d) or 0) > 0
        time.sleep(0.02)
    out = []
    for j, (t, _) in zip(ids, jobs):
        st = json.loads(d.req(f"/v1/jobs/{j}", token=t)[1])
        rows = [json.loads(x) for x in d.req(f"/v1/jobs/{j}/results", token=t)[1].splitlines() if x]
        out.append((st, rows))
    return out, seen


def freed(d):
    """The gauge after every job has ended (the worker retains after its unit)."""
    for _ in range(100):
        b = store_bytes(d)
        if b == 0:
            return b
        time.sleep(0.05)
    return b


def golden_tiny(hydrad, root):
    print("== tiny Llama golden (transformers hooks) on hydrad --backend cuda")
    g = json.load(open(os.path.join(root, "tests", "golden", "ablation_tiny-llama.json")))
    comps = g["component_order"]
    methods = ["zero", "mean", "scale:0.5"]
    job = {"model": "tiny", "prompts": [{"ids": p["ids"]} for p in g["prompts"]],
           "ablations": {"components": comps, "methods": methods},
           "metrics": ["logit", "logprob", "kl", "rank"]}
    want = {(a["prompt"], a["component"], json.dumps(a["method"])): a for a in g["ablations"]
            if a["method"] in methods and "positions" not in a and a["component"] in comps}
    d = Daemon(hydrad, os.path.join(root, "tests", "data", "tiny-llama"), TOKENS, "--unit-prompts", "2",
               backend=GPU, start_s=60)
    try:
        health = json.loads(d.get("/v1/health")[1])
        check(f"GET /v1/health: backend {GPU}", health.get("backend") == GPU, json.dumps(health)[:200])
        [(st, rows)], _ = run_jobs(d, [(ALICE, job)])
        check("golden job done", st["state"] == "done", json.dumps(st)[:300])
        got = variants(rows)
        check("one variant row per golden ablation", set(got) >= set(want) and len(want) == 3 * len(comps) * len(
            g["prompts"]), f"{len(set(want) - set(got))} of {len(want)} missing")
        scale = max(abs(p["clean_logit"]) for p in g["prompts"])
        tol = 1e-4 * scale
        for f in ("total_effect", "ablated_logit", "logprob"):
            close(f"{f} = transformers' within {tol:.2g}", {k: got[k][f] for k in want if k in got},
                  {k: a[f] for k, a in want.items()}, lambda v: tol)
        close("kl = transformers' within 1e-4 x max(1, kl)", {k: got[k]["kl"] for k in want if k in got},
              {k: a["kl"] for k, a in want.items()}, lambda v: 1e-4 * max(1.0, v))
        close("rank = transformers' within 1", {k: got[k]["rank"] for k in want if k in got},
              {k: a["rank"] for k, a in want.items()}, lambda v: 1.0)
        clean = {r["prompt"]: r for r in rows if r.get("type") == "clean"}
        check("clean targets = transformers'",
              all(clean.get(i, {}).get("target") in (p["target"], {"id": p["target"]}) or
                  (clean.get(i, {}).get("target") or {}).get("id") == p["target"]
                  for i, p in enumerate(g["prompts"])),
              json.dumps([clean.get(i, {}).get("target") for i in range(len(g["prompts"]))])[:200])
        b = freed(d)
        check("hydra_source_store_bytes 0 once the job ended", b == 0, f"{b}")
    finally:
        print("hydrad log tail:", open(d.log_path).read()[-600:].replace("\n", "\n  "))
        d.stop()


def two_users(hydrad, model):
    print(f"== two users' jobs on {model}: hydrad --backend cuda against --backend cpu")
    rng = random.Random(7)
    vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
    prompts = lambda n: [{"ids": [rng.randrange(vocab) for _ in range(rng.randint(8, 16))]} for _ in range(n)]
    alice = {"model": "tiny", "preset": "hydra", "prompts": prompts(16), "ablations": {"seed": 11}}
    bob = {"model": "tiny", "prompts": prompts(8), "ablations": {"components": ["attn.2", "mlp.5", "attn.11"],
           "methods": ["zero", "mean"]}, "metrics": ["logit", "logprob", "prob", "kl", "rank"]}
    jobs = [(ALICE, alice), (BOB, bob)]
    results = {}
    for key, backend in (("gpu", GPU), ("cpu", "cpu")):
        d = Daemon(hydrad, model, TOKENS, "--unit-prompts", "4", backend=backend, threads=os.cpu_count(),
                   start_s=120)
        try:
            t0 = time.time()
            results[key], seen = run_jobs(d, jobs)
            print(f"{backend} ({key}): both jobs in {time.time() - t0:.2f} s")
            if key == "gpu":
                check(f"{GPU}: both jobs done", all(st["state"] == "done" for st, _ in results["gpu"]),
                      json.dumps([st for st, _ in results["gpu"]])[:400])
                print(("ok   " if seen else "note ") + "source-store gauge seen > 0 while the jobs ran")
                b = freed(d)
                check(f"{GPU}: hydra_source_store_bytes 0 once both jobs ended", b == 0, f"{b}")
        finally:
            if key == "gpu":
                print("hydrad log tail:", open(d.log_path).read()[-600:].replace("\n", "\n  "))
            d.stop()
    check("cpu: both jobs done", all(st["state"] == "done" for st, _ in results["cpu"]), "")
    for who, (gpu, cpu) in zip(("alice", "bob"), zip(results["gpu"], results["cpu"])):
        gv, cv = variants(gpu[1]), variants(cpu[1])
        gc = {r["prompt"]: r for r in gpu[1] if r.get("type") == "clean"}
        cc = {r["prompt"]: r for r in cpu[1] if r.get("type") == "clean"}
        check(f"{who}: same clean targets ({len(cc)} prompts)",
              len(cc) > 0 and all(json.dumps(gc.get(p, {}).get("target")) == json.dumps(r.get("target"))
                                  for p, r in cc.items()), "")
        check(f"{who}: same variant rows", len(cv) > 0 and set(gv) == set(cv), f"cuda {len(gv)} cpu {len(cv)}")
        scale = max(abs(r["logit"]) for r in cc.values()) if cc and all("logit" in r for r in cc.values()) \
            else max(abs(r["ablated_logit"]) for r in cv.values())
        tol = 1e-4 * max(1.0, scale)
        fields = ("total_effect", "ablated_logit") + (("logprob",) if who == "bob" else ())
        for f in fields:
            close(f"{who}: {f} {GPU} = cpu within {tol:.2g}", {k: gv[k][f] for k in cv if k in gv},
                  {k: r[f] for k, r in cv.items()}, lambda v: tol)
        if who == "bob":
            close(f"bob: kl {GPU} = cpu within 1e-4 x max(1, kl)", {k: gv[k]["kl"] for k in cv if k in gv},
                  {k: r["kl"] for k, r in cv.items()}, lambda v: 1e-4 * max(1.0, v))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    hydrad, root = sys.argv[1], sys.argv[2]
    golden_tiny(hydrad, root)
    if len(sys.argv) > 3 and os.path.isdir(sys.argv[3]):
        two_users(hydrad, sys.argv[3])
    sys.exit(check.exit_code())


if __name__ == "__main__":
    main()
