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
     an earlier job's rows are intact; the daemon keeps answering. Once the
     limit is lifted (prlimit on the running daemon), POST
     /v1/jobs/{id}/retry requeues the job from its first pending unit and it
     finishes, every row once.

usage: test_faults.py HYDRAD ROOT"""
import json
import os
import resource
import shutil
import sys
import tempfile
import time

from hydra_testutil import Checks, Daemon

HYDRAD, ROOT = sys.argv[1:3]
TINY = os.path.join(ROOT, "tests", "data", "tiny-gpt2")
TOKENS = {"faults-token-0123456789abcdef": "alice user"}
check = Checks("test_faults")


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
    d = Daemon(HYDRAD, model, TOKENS)
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
d = Daemon(HYDRAD, TINY, TOKENS, "--memory-budget", "2")
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
d = Daemon(HYDRAD, TINY, TOKENS, "--unit-prompts", "4", fsize=1 << 20)
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
rows_again = d.rows(first["id"]) if first else []
check("full disk: the earlier job's rows are intact", effects(rows_again) == effects(small_rows) != [],
      (len(rows_again), len(small_rows)))
check("full disk: health still answers", d.get("/v1/health")[0] == 200)
# the disk has room again: the failed job is retried from its first pending unit
resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
units_at_failure = st["progress"]["units_done"]
code, body = d.req(f"/v1/jobs/{st['id']}/retry", b"")
ans = json.loads(body)
check("full disk: POST /v1/jobs/{id}/retry once there is room -> 202 from its first pending unit",
      code == 202 and ans.get("units_done") == units_at_failure and ans.get("state") == "running",
      (code, ans, units_at_failure))
st2 = d.wait(st["id"], timeout=300)
rows_retried = d.rows(st["id"])
keys = [(r["prompt"], r["component"]) for r in rows_retried if r["type"] == "variant"]
check("full disk: the retried job finishes, every (prompt, component) row once",
      st2["state"] == "done" and len(keys) == len(set(keys)) == 400 * 6
      and [r["type"] for r in rows_retried].count("header") == 1, (st2["state"], len(keys), len(set(keys))))
check("full disk: the daemon stops cleanly", d.stop() == 0)

# 5: kill -9 in the middle of a job, restart on the same store with another
# --unit-prompts: the job resumes the units it was split into (not the new
# size's), every row exactly once, equal to an uninterrupted run
slow = {"model": "tiny", "prompts": [f"prompt {i} of the restart test" for i in range(30)],
        "ablations": {"components": ["*"], "methods": ["resample"], "samples": 300}}
ref = Daemon(HYDRAD, TINY, TOKENS, "--unit-prompts", "3")
st, want = ref.run(slow)
ref.stop()
d = Daemon(HYDRAD, TINY, TOKENS, "--unit-prompts", "3")
jid = d.submit(slow)
deadline = time.monotonic() + 300  # by the clock, not a poll count: ASan on 2 cores is slow
while time.monotonic() < deadline:
    st = json.loads(d.get(f"/v1/jobs/{jid}")[1])
    if st["progress"]["units_done"] >= 2 or st["state"] != "running" and st["state"] != "queued":
        break
    time.sleep(0.01)
d.kill()
check("restart: killed after some units, before the end",
      2 <= st["progress"]["units_done"] < st["progress"]["n_units"], st["progress"])
d2 = Daemon(HYDRAD, TINY, TOKENS, "--unit-prompts", "7", store=d.store)
st = d2.wait(jid, timeout=300)
got = d2.rows(jid)
keys = [(r["prompt"], r["component"]) for r in got if r["type"] == "variant"]
check("restart with another --unit-prompts: the job finishes", st["state"] == "done", st)
check("restart: every (prompt, component) row exactly once",
      len(keys) == len(set(keys)) == 30 * 6, (len(keys), len(set(keys))))
w = {(r["prompt"], r["component"]): r["total_effect"] for r in want if r["type"] == "variant"}
worst = max((abs(r["total_effect"] - w.get((r["prompt"], r["component"]), 1e9))
             for r in got if r["type"] == "variant"), default=1e9)
check("restart: rows equal an uninterrupted run (1e-5)", worst <= 1e-5, worst)
check("restart: the daemon stops cleanly", d2.stop() == 0)

sys.exit(check.exit_code())
