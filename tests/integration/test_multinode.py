#!/usr/bin/env python3
"""Several hydrad workers on one PostgreSQL store (issue 8), each a real
daemon on loopback, the database a private cluster (with_postgres.sh sets
HYDRA_TEST_POSTGRES):

  1. three workers share a job of many units: each runs some of them; one is
     killed with kill -9 in the middle; the others finish the job (its
     leased unit is claimed again when the lease runs out); every
     (prompt, component) row is stored exactly once, the rows are numbered
     without gaps, and they equal a single-node SQLite run's within 1e-5;
     another node streams the results;
  2. the whole set is killed in the middle of a job and three workers start
     again (two under their old names, which free their own leases at
     start, one new): the job completes, rows exactly once, equal;
  3. a job submitted to one node is cancelled through another; the node
     running it stops at its next pass and the job stays cancelled;
  4. a worker whose clock runs an hour ahead (libfaketime, where installed)
     neither steals live leases nor keeps a dead worker's: leases are judged
     by the database server's clock;
  5. deploy/slurm/hydrad-workers.sh, as Slurm would run it with two GPUs
     (on the CPU backend here): two workers come up, share a job, and stop
     cleanly on SIGTERM;
  6. the database server restarts mid-job (every connection drops): the
     workers reconnect and the job completes, rows exactly once, equal;
  7. a worker holding another file under the job's model name (one weight
     changed): it runs none of the job's units, the job waits while only
     that worker is up and its status says so, and the job finishes on its
     own model, rows exactly once, equal.

usage: test_multinode.py HYDRAD ROOT"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from hydra_testutil import Checks, Daemon, free_port

HYDRAD, ROOT = sys.argv[1:3]
URL = os.environ.get("HYDRA_TEST_POSTGRES")
if not URL:
    sys.exit("test_multinode: HYDRA_TEST_POSTGRES is not set (run it under with_postgres.sh)")
TINY = os.path.join(ROOT, "tests", "data", "tiny-gpt2")
TOKENS = {"multinode-token-0123456789abcdef": "alice admin"}
LEASE = "2"
check = Checks("test_multinode")


def job(n_prompts, tag):
    return {"model": "tiny", "prompts": [f"{tag} prompt {i} about a cat" for i in range(n_prompts)],
            "ablations": {"components": ["*"], "methods": ["resample"], "samples": 1000,
                          "each_draw": True}}


def worker(name, *extra, model=TINY):
    return Daemon(HYDRAD, model, TOKENS, "--unit-prompts", "2", "--lease-s", LEASE,
                  "--worker-id", name, *extra, store=URL)


def variants(rows):
    return {(r["prompt"], r["component"]): r["total_effect"] for r in rows if r["type"] == "variant"}


def status(d, jid):
    return json.loads(d.get(f"/v1/jobs/{jid}")[1])


def wait_units(d, jid, at_least, timeout=300):
    end = time.monotonic() + timeout
    st = status(d, jid)
    while st["progress"]["units_done"] < at_least and st["state"] in ("queued", "running") \
            and time.monotonic() < end:
        time.sleep(0.02)
        st = status(d, jid)
    return st


def variants_run(d):
    """hydra_variants_total of a node's /metrics: the variants it ran."""
    for line in d.get("/metrics")[1].splitlines():
        if line.startswith("hydra_variants_total "):
            return int(float(line.split()[1]))
    return -1


def check_rows(what, rows, want, n_prompts):
    keys = [(r["prompt"], r["component"]) for r in rows if r["type"] == "variant"]
    check(f"{what}: every (prompt, component) row exactly once",
          len(keys) == len(set(keys)) == len(want) and len(want) == n_prompts * 6,
          (len(keys), len(set(keys)), len(want)))
    got = variants(rows)
    worst = max((abs(v - want.get(k, 1e9)) for k, v in got.items()), default=1e9)
    check(f"{what}: rows equal a single-node SQLite run (1e-5)", worst <= 1e-5, worst)
    kinds = [r["type"] for r in rows]
    check(f"{what}: one header first, one summary and end last",
          kinds[0] == "header" and kinds.count("header") == 1 and kinds[-1] == "end"
          and kinds.count("end") == 1 and kinds.count("summary") >= 1, kinds[:2] + kinds[-2:])


def _up(d):
    try:
        return d.get("/v1/health")[0] == 200
    except OSError:
        return False


def stream(d, jid):
    """The job's whole result stream from node d, as rows."""
    r = urllib.request.Request(d.url + f"/v1/jobs/{jid}/results?wait=stream",
                               headers={"Authorization": f"Bearer {d.token}"})
    with urllib.request.urlopen(r, timeout=300) as a:
        return [json.loads(x) for x in a.read().decode().splitlines() if x]


# the reference: one node on SQLite
N1, N2 = 40, 30
ref = Daemon(HYDRAD, TINY, TOKENS, "--unit-prompts", "2")
t0 = time.monotonic()
_, ref1 = ref.run(job(N1, "one"))
t1 = time.monotonic()
_, ref2 = ref.run(job(N2, "two"))
ref.stop()
print(f"  reference runs on one SQLite node: {t1 - t0:.1f} s and {time.monotonic() - t1:.1f} s")
want1, want2 = variants(ref1), variants(ref2)

# 1: three workers, one killed with kill -9 mid-job
nodes = [worker(f"w{i}") for i in range(3)]
jid = nodes[0].submit(job(N1, "one"))
st = wait_units(nodes[2], jid, 3)
check("1: the job spans many units and is under way on a node it was not submitted to",
      st["progress"]["n_units"] == N1 // 2 and st["progress"]["units_done"] >= 3, st["progress"])
end = time.monotonic() + 120
busy = [variants_run(d) for d in nodes]
while not all(v > 0 for v in busy) and time.monotonic() < end:
    time.sleep(0.05)
    busy = [variants_run(d) for d in nodes]
st = status(nodes[2], jid)
check("1: every worker ran units of the job, which is not done yet",
      all(v > 0 for v in busy) and st["state"] == "running", (busy, st["progress"]))
nodes[1].kill()
t_kill = time.monotonic()
streamed = stream(nodes[2], jid)
st = nodes[2].wait(jid, timeout=300)
check("1: the job completes after a worker's kill -9", st["state"] == "done", st)
check_rows("1", streamed, want1, N1)
rows = nodes[0].rows(jid)
check("1: another node reads the same rows", rows == streamed, (len(rows), len(streamed)))
check("1: the rows are numbered without gaps",
      st["rows"] == len(rows) and all(int(nodes[0].get(f"/v1/jobs/{jid}/results?after={k}")[1]
                                          .count("\n")) == len(rows) - k for k in (0, 7, len(rows))),
      (st["rows"], len(rows)))
for d in (nodes[0], nodes[2]):
    check(f"1: worker {d.port} stops cleanly", d.stop() == 0)

# 2: the whole set killed mid-job, restarted (two old names, one new)
nodes = [worker(f"w{i}") for i in range(3)]
jid = nodes[1].submit(job(N2, "two"))
st = wait_units(nodes[0], jid, 4)
for d in nodes:
    d.kill()
check("2: killed after some units, before the end",
      4 <= st["progress"]["units_done"] < st["progress"]["n_units"], st["progress"])
nodes = [worker("w0"), worker("w1"), worker("w9")]
st = nodes[2].wait(jid, timeout=300)
check("2: after the restart of every worker the job completes", st["state"] == "done", st)
check_rows("2", nodes[0].rows(jid), want2, N2)

# 3: submitted to one node, cancelled through another
jid = nodes[0].submit(job(N1, "three"))
wait_units(nodes[0], jid, 1)
r = urllib.request.Request(nodes[2].url + f"/v1/jobs/{jid}", method="DELETE",
                           headers={"Authorization": f"Bearer {nodes[2].token}"})
with urllib.request.urlopen(r, timeout=60) as a:
    ans = json.loads(a.read())
check("3: another node cancels the job", ans.get("state") == "cancelled", ans)
time.sleep(2 * float(LEASE))  # the running units' workers learn of it when they renew
done_then = status(nodes[0], jid)["progress"]["units_done"]
time.sleep(2 * float(LEASE))
st = status(nodes[1], jid)
check("3: the job stays cancelled and no unit is stored after it",
      st["state"] == "cancelled" and st["progress"]["units_done"] == done_then < N1 // 2, st)
check("3: every node still answers", all(d.get("/v1/health")[0] == 200 for d in nodes))
for d in nodes:
    check(f"3: worker {d.port} stops cleanly", d.stop() == 0)


def log_text(d):
    with open(d.log_path) as f:
        return f.read()


# 4: a worker whose clock is an hour ahead (libfaketime)
lib = next((p for p in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1") if os.path.exists(p)),
           None)
if not lib:
    print("skip 4: libfaketime is not installed (apt-get install faketime)")
else:
    live = worker("w-live")
    jid = live.submit(job(N2, "two"))  # the reference run's spec
    wait_units(live, jid, 1)
    asan = os.environ.get("ASAN_OPTIONS")
    # an ASan build wants its runtime first among the libraries; libfaketime may come first
    os.environ.update(LD_PRELOAD=lib, FAKETIME="+1h", FAKETIME_DONT_RESET="1",
                      ASAN_OPTIONS=(asan + ":" if asan else "") + "verify_asan_link_order=0")
    try:
        ahead = worker("w-ahead")
    finally:
        for k in ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_RESET", "ASAN_OPTIONS"):
            os.environ.pop(k, None)
        if asan is not None:
            os.environ["ASAN_OPTIONS"] = asan
    first = log_text(ahead).split(" ", 1)[0]
    stamp = time.mktime(time.strptime(first, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime(0))
    check("4: the second worker's clock is an hour ahead", stamp > time.time() + 3000, first)
    st = wait_units(live, jid, status(live, jid)["progress"]["units_done"] + 4)
    busy = [variants_run(d) for d in (live, ahead)]
    check("4: both workers run units", all(v > 0 for v in busy) and st["state"] == "running",
          (busy, st["state"]))
    ahead.kill()
    st = live.wait(jid, timeout=120)
    check("4: the worker ahead killed, the other finishes its unit (its lease ran out by the "
          "database's clock, not the dead worker's)", st["state"] == "done", st)
    got = live.rows(jid)
    check_rows("4", got, want2, N2)
    stolen = [ln for d in (live, ahead) for ln in log_text(d).splitlines()
              if "stored by another worker" in ln or "another worker took it" in ln]
    check("4: no live lease was taken (no unit ran twice)", not stolen, stolen[:3])
    check("4: the live worker stops cleanly", live.stop() == 0)


# 5: the Slurm script with two "GPUs"
def two_free_ports():
    for _ in range(50):
        p = free_port()
        try:
            with socket.socket() as a:
                a.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise SystemExit("no two free ports in a row")


tmp = tempfile.mkdtemp(prefix="hydra-slurm-")
with open(os.path.join(tmp, "tokens"), "w") as f:
    f.writelines(f"{t} {who}\n" for t, who in TOKENS.items())
port = two_free_ports()
env = dict(os.environ, SLURM_JOB_GPUS="0,1", SLURM_CPUS_PER_TASK="2", HYDRA_STORE=URL,
           HYDRA_MODEL=f"tiny={TINY}", HYDRA_TOKENS=os.path.join(tmp, "tokens"),
           HYDRA_PORT=str(port), HYDRAD=HYDRAD, HYDRA_BACKEND="cpu")
log = open(os.path.join(tmp, "slurm.log"), "w")
script = subprocess.Popen(["bash", os.path.join(ROOT, "deploy", "slurm", "hydrad-workers.sh")],
                          env=env, stdout=log, stderr=subprocess.STDOUT)
slurm = []
for i in range(2):
    d = Daemon.__new__(Daemon)  # the script's workers, reached like the others
    d.url, d.token, d.port = f"http://127.0.0.1:{port + i}", next(iter(TOKENS)), port + i
    slurm.append(d)
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        if all(d.get("/v1/health")[0] == 200 for d in slurm):
            break
    except OSError:
        time.sleep(0.1)
check("5: the Slurm script starts one worker per GPU", all(_up(d) for d in slurm),
      open(os.path.join(tmp, "slurm.log")).read()[-500:])
if all(_up(d) for d in slurm):
    # A job submitted to each worker: each starts its own at once, so both run
    # units however fast one job is (job "two" took 0.6 s on one Xeon core,
    # about the 0.5 s a worker takes to see another's submission).
    jid = slurm[0].submit(job(N2, "two"))
    jid1 = slurm[1].submit(job(N1, "one"))
    st = slurm[1].wait(jid, timeout=300)
    st1 = slurm[0].wait(jid1, timeout=300)
    check("5: the Slurm workers finish the jobs", st["state"] == "done" and st1["state"] == "done",
          (st, st1))
    check_rows("5", slurm[1].rows(jid), want2, N2)
    check_rows("5, the second job", slurm[0].rows(jid1), want1, N1)
    busy = [variants_run(d) for d in slurm]
    check("5: both Slurm workers ran units", all(v > 0 for v in busy), busy)
script.send_signal(signal.SIGTERM)
try:
    rc = script.wait(timeout=120)
except subprocess.TimeoutExpired:
    script.kill()
    rc = "hung"
check("5: SIGTERM stops the Slurm script and its workers", rc in (0, 143) and
      not any(_up(d) for d in slurm), (rc, open(os.path.join(tmp, "slurm.log")).read()[-500:]))
shutil.rmtree(tmp, ignore_errors=True)

# 6: the database restarts mid-job
nodes = [worker("w0"), worker("w1")]
jid = nodes[0].submit(job(N2, "two"))
st = wait_units(nodes[1], jid, 3)
# (the restarted server keeps the descriptors it inherits: no pipes, or this waits for it)
out = subprocess.run(os.environ["HYDRA_TEST_POSTGRES_RESTART"].split(), stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
check("6: the database server restarted mid-job",
      out.returncode == 0 and st["state"] == "running", (out.returncode, st["state"]))
end = time.monotonic() + 300
while time.monotonic() < end:
    try:
        st = status(nodes[1], jid)
        if st["state"] not in ("queued", "running"):
            break
    except OSError:  # the status read itself may meet the dropped connection once
        pass
    time.sleep(0.1)
check("6: after the database restart the job completes", st["state"] == "done", st)
check_rows("6", nodes[0].rows(jid), want2, N2)
for d in nodes:
    check(f"6: worker {d.port} stops cleanly", d.stop() == 0)

# 7: a worker holding another file under the model's name
other = tempfile.mkdtemp(prefix="hydra-other-model-")
for f in os.listdir(TINY):
    if not f.endswith(".hydra-fingerprint"):
        shutil.copy(os.path.join(TINY, f), other)
with open(os.path.join(other, "model.safetensors"), "r+b") as fh:  # one weight's exponent changed
    fh.seek(-1, os.SEEK_END)
    last = fh.read(1)
    fh.seek(-1, os.SEEK_END)
    fh.write(bytes([last[0] ^ 1]))
wa = worker("w-a")
jid = wa.submit(job(N2, "two"))
st = wait_units(wa, jid, 2)
wa.kill()
wb = worker("w-b", model=other)
fp = {n: json.loads(n.get("/v1/models/tiny")[1])["fingerprint"] for n in (wb,)}
time.sleep(2 * float(LEASE) + 1)  # w-a's lease runs out: the unit would be free to take
st_b = status(wb, jid)
check("7: with only a worker holding another file up, the job waits and its status says so",
      st_b["state"] == "running" and "another file" in (st_b.get("waiting") or "") and
      st_b["progress"]["units_done"] == st["progress"]["units_done"], st_b)
wa = worker("w-a")
st = wa.wait(jid, timeout=300)
check("7: the job finishes on its own model, its note gone",
      st["state"] == "done" and st.get("waiting") is None, st)
check_rows("7", wa.rows(jid), want2, N2)
check("7: the worker holding the other file ran none of its variants", variants_run(wb) == 0,
      variants_run(wb))
jb = wb.submit(job(2, "b"))
st = wb.wait(jb, timeout=120)
check("7: a job submitted to that worker pins its file and runs there",
      st["state"] == "done" and st.get("model_fingerprint") == fp[wb] and variants_run(wb) > 0,
      (st, variants_run(wb)))
for d in (wa, wb):
    check(f"7: worker {d.port} stops cleanly", d.stop() == 0)
shutil.rmtree(other, ignore_errors=True)

sys.exit(check.exit_code())
