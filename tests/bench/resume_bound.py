"""How far a resumed job's rows are from an uninterrupted run's (issue 21): the
hydra preset (60 components x 15 resamples) of clients/examples/hydra_smollm2.json
on SmolLM2-135M, --unit-prompts 1, on hydrad's CPU backend; kill -9 after
KILL_AT units (default 2), restart on the same store; every numeric field of
every clean, variant and summary row compared. By hand; reports, never gates.

usage: KILL_AT=2 python3 tests/bench/resume_bound.py HYDRAD MODEL.gguf SCRATCH_DIR [THREADS]"""
import json, os, signal, socket, subprocess, sys, time, urllib.request
hydrad = sys.argv[1]; model = sys.argv[2]; tmp = sys.argv[3]; threads = sys.argv[4] if len(sys.argv) > 4 else "2"
tok = "tok-resume-0123456789"
open(f"{tmp}/tokens", "w").write(f"{tok} alice user\n")
job = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients",
                              "examples", "hydra_smollm2.json")))
job["model"] = "smol"
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def start(store):
    p = port()
    proc = subprocess.Popen([hydrad, "--port", str(p), "--model", f"smol={model}", "--store", store, "--tokens", f"{tmp}/tokens",
                             "--backend", "cpu", "--threads", threads, "--unit-prompts", "1", "--fingerprint-cache", "off"],
                            stderr=open(f"{tmp}/log", "a"))
    for _ in range(600):
        try:
            req(p, "/v1/health"); return proc, p
        except OSError: time.sleep(0.1)
    raise SystemExit("no start")
def req(p, path, body=None):
    r = urllib.request.Request(f"http://127.0.0.1:{p}{path}", data=body, headers={"Authorization": f"Bearer {tok}"})
    with urllib.request.urlopen(r, timeout=600) as a: return a.read()
def rows(p, jid): return [json.loads(x) for x in req(p, f"/v1/jobs/{jid}/results").decode().splitlines() if x]
def wait(p, jid, units=None):
    while True:
        st = json.loads(req(p, f"/v1/jobs/{jid}"))
        if st["state"] in ("done", "failed") or (units and st["progress"]["units_done"] >= units): return st
        time.sleep(0.05)
# reference
proc, p = start(f"{tmp}/ref.db")
t0 = time.time(); jid = json.loads(req(p, "/v1/jobs", json.dumps(job).encode()))["id"]; st = wait(p, jid)
ref = rows(p, jid); proc.kill(); proc.wait()
print("reference", st["state"], len(ref), f"{time.time()-t0:.1f}s", flush=True)
# interrupted
proc, p = start(f"{tmp}/res.db")
jid = json.loads(req(p, "/v1/jobs", json.dumps(job).encode()))["id"]; st = wait(p, jid, units=int(os.environ.get("KILL_AT", "2")))
proc.send_signal(signal.SIGKILL); proc.wait()
print("killed at units_done", st["progress"]["units_done"], flush=True)
proc, p = start(f"{tmp}/res.db")
st = wait(p, jid); got = rows(p, jid); proc.kill(); proc.wait()
print("resumed", st["state"], len(got))
json.dump([ref, got], open(f"{tmp}/rows_{os.environ.get('KILL_AT','2')}.json", "w"))
def numbers(x, path=""):
    if isinstance(x, bool) or x is None: return
    if isinstance(x, (int, float)): yield path, float(x); return
    if isinstance(x, dict):
        for k, v in x.items():
            if k not in ("elapsed_s", "rows", "time", "elapsed"): yield from numbers(v, path + "." + k)
    if isinstance(x, list):
        for i, v in enumerate(x): yield from numbers(v, f"{path}[{i}]")
def key(r): return (r["type"], r.get("prompt"), r.get("component"), r.get("method"))
R = {key(r): dict(numbers(r)) for r in ref if r["type"] in ("variant", "clean", "summary")}
G = {key(r): dict(numbers(r)) for r in got if r["type"] in ("variant", "clean", "summary")}
print("same keys", set(R) == set(G), len(R))
worst = {}
for k in R:
    for f, v in R[k].items():
        d = abs(G.get(k, {}).get(f, float("inf")) - v)
        t = k[0]
        if d > worst.get(t, (0,))[0]: worst[t] = (d, k, f, v)
for t, w in worst.items(): print(t, "max abs diff", w)
import re
fam = {}
for k in R:
    if k[0] != "variant": continue
    for f, v in R[k].items():
        name = re.sub(r"\[\d+\]", "[]", f)
        d = abs(G[k][f] - v)
        fam[name] = max(fam.get(name, 0), d)
for n, d in sorted(fam.items(), key=lambda x: -x[1])[:12]: print(" variant field", n, d)
print("clean rows bitwise equal:", all(R[k] == G.get(k) for k in R if k[0] == "clean"))
bitwise = all(R[k] == G.get(k) for k in R)
print("bitwise equal:", bitwise)
