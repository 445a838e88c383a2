#!/usr/bin/env python3
"""Faults hydrad must survive (issue 9), each against a real daemon:

  1. the model's files vanish after start: the weights were read into memory
     at load, jobs still run and give the same rows as before;
  2. the model's files are truncated after start: likewise;
  3. a job over the memory budget (--memory-budget): the job fails with a
     message naming the budget; the daemon keeps serving, and a job that fits
     runs after it;
  4. a full disk: hydrad runs under a file-size limit (RLIMIT_FSIZE) that its
     SQLite store outgrows in the middle of a large job: that job fails with
     an error naming the store, in its status and at the end of its stream;
     an earlier job's rows are intact; the daemon keeps answering.

usage: test_faults.py HYDRAD ROOT"""
import json
import resource
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HYDRAD, ROOT = sys.argv[1:3]
TOKEN = "faults-token-0123456789abcdef"
failures = 0


def check(what, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
    failures += not ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, model_dir, *extra, fsize=None):
        self.tmp = tempfile.mkdtemp(prefix="hydra-faults-")
        with open(os.path.join(self.tmp, "tokens"), "w") as f:
            f.write(f"{TOKEN} alice user\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [HYDRAD, "--port", str(self.port), "--model", f"tiny={model_dir}", "--store",
             os.path.join(self.tmp, "hydra.db"), "--tokens", os.path.join(self.tmp, "tokens"),
             "--backend", "cpu", "--threads", "1", *extra],
            stderr=open(os.path.join(self.tmp, "hydrad.log"), "w"),
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize)))
            if fsize else None)
        for _ in range(300):
            try:
                self.get("/v1/health")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("hydrad did not start: " + open(os.path.join(self.tmp, "hydrad.log")).read())

    def req(self, path, body=None):
        r = urllib.request.Request(self.url + path, data=body,
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(r, timeout=60) as a:
            return a.status, a.read().decode()

    def get(self, path):
        return self.req(path)

    def run(self, spec):
        """Submits, waits for the end; returns (final status, rows)."""
        _, body = self.req("/v1/jobs", json.dumps(spec).encode())
        jid = json.loads(body)["id"]
        for _ in range(1200):
            st = json.loads(self.get(f"/v1/jobs/{jid}")[1])
            if st["state"] in ("done", "failed", "cancelled"):
                break
            time.sleep(0.05)
        rows = [json.loads(x) for x in self.get(f"/v1/jobs/{jid}/results")[1].splitlines() if x]
        return st, rows

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return self.proc.returncode


def effects(rows):
    return sorted((r["prompt"], r["component"], round(r["total_effect"], 6))
                  for r in rows if r["type"] == "variant")


SPEC = {"model": "tiny", "prompts": ["the cat sat on the mat", "a dog ran in the park"],
        "ablations": {"components": ["attn.*", "mlp.*"], "methods": ["zero"]}}

# 1 and 2: the model's files vanish, then are truncated, after start
for fault in ("vanish", "truncate"):
    model = tempfile.mkdtemp(prefix="hydra-model-")
    for f in os.listdir(os.path.join(ROOT, "tests", "data", "tiny-gpt2")):
        shutil.copy(os.path.join(ROOT, "tests", "data", "tiny-gpt2", f), model)
    d = Daemon(model)
    st, before = d.run(SPEC)
    for f in os.listdir(model):
        p = os.path.join(model, f)
        if fault == "vanish":
            os.remove(p)
        else:
            with open(p, "r+b") as fh:
                fh.truncate(17)
    st2, after = d.run(SPEC)
    check(f"model files {fault} after start: the next job still runs",
          st["state"] == "done" and st2["state"] == "done", (st, st2))
    check(f"model files {fault} after start: same rows", effects(before) == effects(after) != [],
          (len(before), len(after)))
    check(f"model files {fault}: the daemon stops cleanly", d.stop() == 0)
    shutil.rmtree(model, ignore_errors=True)

# 3: over the memory budget
d = Daemon(os.path.join(ROOT, "tests", "data", "tiny-gpt2"), "--memory-budget", "2")
big = {"model": "tiny", "prompts": [{"ids": list(range(1, 101))} for _ in range(60)],
       "ablations": {"components": ["neuron.0.*"], "methods": ["resample"], "samples": 1,
                     "positions": "all"}}
st, _ = d.run(big)
check("a job over the memory budget fails, naming the budget",
      st["state"] == "failed" and "memory budget" in (st.get("error") or ""), st)
st, rows = d.run(SPEC)
check("the daemon keeps serving: a job that fits runs after it",
      st["state"] == "done" and any(r["type"] == "end" for r in rows), st)
check("health after the failed job", d.get("/v1/health")[0] == 200)
check("the daemon stops cleanly", d.stop() == 0)

# 4: the disk fills up (a 1 MiB file-size limit on the daemon's files)
d = Daemon(os.path.join(ROOT, "tests", "data", "tiny-gpt2"), "--unit-prompts", "4",
           fsize=1 << 20)
st, small_rows = d.run(SPEC)
check("full disk: a small job before it is done", st["state"] == "done", st)
huge = {"model": "tiny", "prompts": [f"prompt number {i} about cats and dogs" for i in range(400)],
        "ablations": {"components": ["*"], "methods": ["zero"]}}
st, _ = d.run(huge)
print("  full disk: the failed job:", st.get("error"))
check("full disk: the job that outgrows the store fails, naming the store",
      st["state"] == "failed" and "store" in (st.get("error") or ""), st)
try:
    _, again = d.get(f"/v1/jobs/{st['id']}/results?wait=stream")
    ended = True
except OSError as e:
    ended, again = False, str(e)
check("full disk: the failed job's stream ends", ended, again[:200])
jobs = json.loads(d.get("/v1/jobs")[1])["jobs"]
first = next((j for j in jobs if j["state"] == "done"), None)
rows_again = [json.loads(x) for x in d.get(f"/v1/jobs/{first['id']}/results")[1].splitlines() if x] \
    if first else []
check("full disk: the earlier job's rows are intact", effects(rows_again) == effects(small_rows) != [],
      (len(rows_again), len(small_rows)))
check("full disk: health still answers", d.get("/v1/health")[0] == 200)
check("full disk: the daemon stops cleanly", d.stop() == 0)

print(f"test_faults: {'FAILED' if failures else 'ok'} ({failures} failures)")
sys.exit(1 if failures else 0)
