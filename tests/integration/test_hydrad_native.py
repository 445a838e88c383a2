#!/usr/bin/env python3
"""hydrad with --weights-dtype native (issue 23) on SmolLM2-135M's Q4_1 GGUF
(its token embedding Q8_0 and tied: the unembedding is the same blocks),
over HTTP on loopback: the model lists native weights; a job's clean,
variant and summary rows equal those of `hydra run --weights-dtype fp32`
(the dequantised-at-load computation) on the same file bit for bit (the
same floats parsed from the same digits; every float compared), for an
ablation job and for a causal trace (whose noise scale is the embedding
table's spread, read from its blocks row by row); a job that
asks for fp32 weights is refused naming the field; hydrad's resident memory
stays under half the model's fp32 weights (the blocks take 1/4 to 1/8 of
them; bound: 0.5).

usage: test_hydrad_native.py HYDRA HYDRAD ROOT   (exit 77 when the model is
absent and HYDRA_REQUIRE_MODELS is not 1)"""
import json
import os
import subprocess
import sys
import urllib.error

from hydra_testutil import Checks, Daemon

HYDRA, HYDRAD, ROOT = sys.argv[1:4]
MODEL = os.environ.get("HYDRA_SMOLLM2") or os.path.join(
    ROOT, "models", "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.path.exists(MODEL):
    print(f"test_hydrad_native: {MODEL} is absent")
    sys.exit(1 if os.environ.get("HYDRA_REQUIRE_MODELS") == "1" else 77)

check = Checks("test_hydrad_native")
TOKEN = "native-token-0123456789abcdef"
JOB = {"prompts": ["The capital of France is", "The Eiffel Tower is in the city of"],
       "ablations": {"components": ["attn.3", "mlp.20", "head.5.1"],
                     "methods": ["zero", "mean"]}}
TRACE = {"prompts": [{"text": "The Space Needle is in downtown", "subject": "The Space Needle",
                      "target": " Seattle"}],
         "trace": {"scale": 3, "seed": 1},
         "ablations": {"components": ["resid_pre.0", "resid_pre.16", "mlp.10"],
                       "methods": ["restore"], "positions": {"each": "all"}},
         "metrics": ["prob"]}
# SmolLM2-135M: 134,515,008 parameters (tied), 4 bytes each in fp32
FP32_BYTES = 134515008 * 4


def result_rows(lines):
    """The clean, variant and summary rows (header and end carry the run's
    own facts: job id, weights, times)."""
    rows = [json.loads(x) for x in lines if x.strip()]
    return [r for r in rows if r.get("type") not in ("header", "end")]


def fp32_rows(job, name):
    """hydra run's rows of the job with the weights dequantised at load."""
    path = os.path.join(server.tmp, name)
    with open(path, "w") as f:
        json.dump(job, f)
    p = subprocess.run([HYDRA, "run", "--model", MODEL, path, "--format", "ndjson",
                        "--weights-dtype", "fp32", "--threads", "1"],
                       capture_output=True, text=True, timeout=600)
    check(f"hydra run with fp32 weights ({name})", p.returncode == 0, p.stderr[-500:])
    return result_rows(p.stdout.splitlines())


def same_rows(what, native, fp32):
    first = next((i for i, (a, b) in enumerate(zip(native, fp32)) if a != b), None)
    check(f"all {len(native)} rows of hydrad's native {what} equal the fp32 run's, bit for bit",
          len(native) == len(fp32) and first is None,
          f"{len(native)} vs {len(fp32)} rows; first differing: "
          f"{json.dumps(native[first])[:300] if first is not None else '-'} vs "
          f"{json.dumps(fp32[first])[:300] if first is not None else '-'}")


def rss_bytes(pid):
    """Resident bytes of the process less its shared libraries' pages (a
    CUDA build maps cuBLAS and the CUDA runtime, 150 MB and more, whether or
    not a GPU is there): the heap, the stacks and the model file's mapping."""
    total, path = 0, ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                path = fields[5] if len(fields) > 5 else ""
            elif fields and fields[0] == "Rss:" and ".so" not in os.path.basename(path):
                total += int(fields[1]) * 1024
    return total if total else -1


server = Daemon(HYDRAD, MODEL, {TOKEN: "alice user"}, "--weights-dtype", "native", start_s=300)
try:
    models = json.loads(server.get("/v1/models")[1])
    listed = json.dumps(models)
    check("/v1/models says the model holds native weights", '"weights_dtype": "native"' in listed,
          listed[:300])

    status, rows = server.run(dict(JOB, model="tiny"))
    check("the native job finished", status["state"] == "done", json.dumps(status)[:300])
    header = next((r for r in rows if r.get("type") == "header"), {})
    check("its header says weights_dtype native", header.get("weights_dtype") == "native",
          json.dumps(header)[:300])
    native = result_rows(json.dumps(r) for r in rows)

    fp32 = fp32_rows(JOB, "job.json")
    kinds = sorted({r.get("type") for r in native})
    check("rows of every kind came back (clean, variant, summary)",
          kinds == ["clean", "summary", "variant"] and len(native) == 2 + 2 * 3 * 2 + 3 * 2,
          f"{kinds}, {len(native)} rows")
    same_rows("ablation job", native, fp32)

    status, rows = server.run(dict(TRACE, model="tiny"))
    check("the native trace finished", status["state"] == "done", json.dumps(status)[:300])
    native = result_rows(json.dumps(r) for r in rows)
    check("the trace has a variant row per component and position",
          sum(r.get("type") == "variant" for r in native) >= 3 * 6, f"{len(native)} rows")
    same_rows("causal trace", native, fp32_rows(TRACE, "trace.json"))

    try:
        server.req("/v1/jobs", json.dumps(dict(JOB, model="tiny", weights_dtype="fp32")).encode())
        check("a job asking for fp32 weights is refused", False, "accepted")
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        check("a job asking for fp32 weights is refused naming weights_dtype (422)",
              e.code == 422 and "weights_dtype" in body, f"{e.code} {body[:300]}")

    rss = rss_bytes(server.proc.pid)
    check(f"hydrad's resident memory (less shared libraries) {rss / 2**20:.0f} MiB is under half the fp32 weights' "
          f"{FP32_BYTES / 2**20:.0f} MiB", 0 < rss < FP32_BYTES / 2, f"{rss} bytes")
finally:
    check("hydrad stopped cleanly", server.stop() == 0, open(server.log_path).read()[-500:])
sys.exit(check.exit_code())
