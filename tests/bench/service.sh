#!/bin/bash
# tests/bench/service.sh - issue 5's service benchmark: what hydrad costs on
# top of the engine. Replaces the "## Service" section of tests/bench/RESULTS.md.
# Reports; never gates.
#  (a) small jobs on loopback: latency p50/p99 and jobs/s of POST
#      /v1/jobs?wait=stream with a tiny job (tiny-llama, 1 prompt, attn.0, zero)
#      at 1 and at CONNS connections, and GET /v1/health, each for DURATION s
#      with wrk (a Lua script checks every answer: 200 and, for a job, the end
#      row), or a Python keep-alive client when wrk is not installed; errors
#      are counted and reported (they should be 0).
#  (b) the service against `hydra run` on a medium job: the hydra preset on
#      SmolLM2-135M (60 components x 15 resamples) over the 16 prompts of
#      sweep_prompts.json (JOB=sweep) or the 6 of clients/examples/hydra_smollm2.json
#      (JOB=example), run by `BUILD/clients/hydra run` and through hydrad's
#      POST /v1/jobs?wait=stream with --unit-prompts = all prompts (one unit),
#      RUNS times each, interleaved; medians; overhead = service wall time over
#      hydra run's engine time (end row elapsed_s) - 1 (target <= 5%).
#   BUILD     build folder with server/hydrad and clients/hydra (default: build)
#   THREADS   engine threads for (b), both sides (default: nproc)
#   BACKEND   auto|cpu|cuda for (b), both sides (default: auto)
#   DURATION  seconds per wrk scenario (default 10)
#   CONNS     connections for the throughput scenarios (default 4)
#   RUNS      medium-job runs per side (default 3)
#   JOB       sweep (default; ~20-40 s a run on 2 cores) or example (~3x shorter)
#   WRK       wrk binary (default: wrk on PATH; "none" forces the Python client)
#   PARTS     ab (default), a or b: with one part the section is printed, not written
# The machine's other work slows every row: the load average at each step is
# recorded with the results.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILD=${BUILD:-build} THREADS=${THREADS:-$(nproc)} BACKEND=${BACKEND:-auto}
export DURATION=${DURATION:-10} CONNS=${CONNS:-4} RUNS=${RUNS:-3} JOB=${JOB:-sweep}
export WRK=${WRK:-$(command -v wrk || echo none)} PARTS=${PARTS:-ab}
export MODEL=${MODEL:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
export CMD="BUILD=$BUILD THREADS=$THREADS BACKEND=$BACKEND DURATION=$DURATION CONNS=$CONNS RUNS=$RUNS JOB=$JOB bash tests/bench/service.sh"
[ -x "$BUILD/server/hydrad" ] && [ -x "$BUILD/clients/hydra" ] ||
  { echo "service.sh: no $BUILD/server/hydrad or $BUILD/clients/hydra: build them first" >&2; exit 2; }
[ -s "$MODEL" ] || bash deploy/get-model.sh smollm2-135m models
TMP=$(mktemp -d)
export TMP
trap 'rm -rf "$TMP"' EXIT

rc=0
python3 - <<'PY' || rc=$?
import http.client, json, os, re, socket, statistics, subprocess, sys, time

build, threads, backend = os.environ["BUILD"], int(os.environ["THREADS"]), os.environ["BACKEND"]
duration, conns, runs = int(os.environ["DURATION"]), int(os.environ["CONNS"]), int(os.environ["RUNS"])
wrk, model, tmp = os.environ["WRK"], os.environ["MODEL"], os.environ["TMP"]
TOKEN = "tok-bench-0123456789abcdef"
with open(f"{tmp}/tokens", "w") as f:
    f.write(f"{TOKEN} bench user\n")
loads = []


def load(step):
    loads.append(f"{step} {open('/proc/loadavg').read().split()[0]}")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Daemon:
    def __init__(self, name, args):
        self.port = free_port()
        self.log = open(f"{tmp}/{name}.log", "wb")
        self.proc = subprocess.Popen(
            [f"{build}/server/hydrad", "--listen", "127.0.0.1", "--port", str(self.port),
             "--store", f"{tmp}/{name}.db", "--tokens", f"{tmp}/tokens"] + args,
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        t0 = time.time()
        while time.time() - t0 < 120:
            if self.proc.poll() is not None:
                sys.exit(f"service.sh: hydrad {name} exited {self.proc.returncode}; see its log")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/v1/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        sys.exit(f"service.sh: hydrad {name} did not answer /v1/health")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))] if xs else float("nan")


# ---------------------------------------------------------------- (a) small jobs
TINY_JOB = {"model": "tiny", "prompts": [{"ids": [5, 17, 42, 7]}],
            "ablations": {"components": ["attn.0"], "methods": ["zero"]}}
LUA = r'''
-- wrk script: "job" POSTs a tiny job with ?wait=stream, "health" GETs /v1/health.
-- Every answer is checked (200; a job's stream ends with its end row).
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  mode, ok, bad = args[1], 0, 0
  local h = { ["Authorization"] = "Bearer " .. args[2] }
  if mode == "job" then
    h["Content-Type"] = "application/json"
    req = wrk.format("POST", "/v1/jobs?wait=stream", h, args[3])
  else
    req = wrk.format("GET", "/v1/health", h, nil)
  end
end
function request() return req end
function response(status, headers, body)
  if status == 200 and (mode ~= "job" or string.find(body, '"type":"end"', 1, true)) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_s=%.3f ok=%d bad=%d connect=%d read=%d write=%d " ..
                         "status=%d timeout=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
                         summary.requests, summary.duration / 1e6, o, b, e.connect, e.read, e.write,
                         e.status, e.timeout, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
                         latency:percentile(99) / 1e3, latency.max / 1e3))
end
'''


def run_wrk(port, mode, c):
    lua = f"{tmp}/bench.lua"
    with open(lua, "w") as f:
        f.write(LUA)
    body = json.dumps(TINY_JOB, separators=(",", ":"))
    p = subprocess.run([wrk, "-t1", f"-c{c}", f"-d{duration}s", "--timeout", "10s", "-s", lua,
                        f"http://127.0.0.1:{port}", "--", mode, TOKEN, body],
                       capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"^RESULT (.*)$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        sys.exit(f"service.sh: wrk failed ({p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}")
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["errors"] = int(r["bad"] + r["connect"] + r["read"] + r["write"] + r["timeout"])
    r["rate"] = r["requests"] / r["duration_s"]
    return r


def run_python_client(port, mode, c):
    """The fallback: c threads, each one keep-alive connection, for duration s."""
    import threading
    lat, errors, lock = [], [0], threading.Lock()
    body = json.dumps(TINY_JOB).encode()
    stop = time.time() + duration

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.time() < stop:
            t0 = time.perf_counter()
            try:
                if mode == "job":
                    conn.request("POST", "/v1/jobs?wait=stream", body=body,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
                else:
                    conn.request("GET", "/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
                r = conn.getresponse()
                data = r.read()
                good = r.status == 200 and (mode != "job" or b'"type":"end"' in data)
            except OSError:
                good = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with lock:
                lat.append(time.perf_counter() - t0)
                errors[0] += not good
        conn.close()

    t0 = time.time()
    ts = [threading.Thread(target=worker) for _ in range(c)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    d = time.time() - t0
    return {"requests": len(lat), "duration_s": d, "rate": len(lat) / d, "errors": errors[0],
            "p50_ms": pct(lat, 50) * 1e3, "p90_ms": pct(lat, 90) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
            "max_ms": max(lat) * 1e3 if lat else float("nan")}


use_wrk = wrk != "none" and os.access(wrk, os.X_OK)
client = "wrk" if use_wrk else "python"
if use_wrk:
    client = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split("[")[0].strip() \
        or "wrk"
small = []
parts = os.environ["PARTS"]
if "a" in parts:
    log("(a) small jobs on tiny-llama...")
    d = Daemon("small", ["--model", "tiny=tests/data/tiny-llama", "--backend", "cpu", "--threads", "1",
                         "--unit-prompts", "8", "--max-jobs-per-user", "1000"])
    try:
        for name, mode, c in (("POST /v1/jobs?wait=stream, tiny job", "job", 1),
                              ("POST /v1/jobs?wait=stream, tiny job", "job", conns),
                              ("GET /v1/health", "health", conns)):
            load(f"{mode} c{c}")
            r = (run_wrk if use_wrk else run_python_client)(d.port, mode, c)
            log(f"  {name}, {c} connection(s): {r['requests']:.0f} in {r['duration_s']:.1f} s, "
                f"{r['rate']:.1f}/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']}")
            small.append((name, c, r))
    finally:
        d.stop()
    if "b" not in parts:
        sys.exit(3)  # printed only

# ---------------------------------------------------------------- (b) medium job
if os.environ["JOB"] == "example":
    medium = json.load(open("clients/examples/hydra_smollm2.json"))
    medium.setdefault("ablations", {})["seed"] = 0
    job_text = (f"the {len(medium['prompts'])} text prompts of `clients/examples/hydra_smollm2.json` "
                f"(tokenized by each side from the GGUF)")
else:
    sweep = json.load(open("tests/bench/sweep_prompts.json"))
    medium = {"preset": "hydra", "prompts": [{"ids": p["ids"]} for p in sweep["prompts"]], "ablations": {"seed": 0}}
    job_text = f"the {len(sweep['prompts'])} prompts of `sweep_prompts.json` (token ids)"
n_prompts = len(medium["prompts"])
job_path = f"{tmp}/medium.json"
with open(job_path, "w") as f:
    json.dump(medium, f)
body = json.dumps(medium).encode()


def end_row(rows):
    return next((r for r in reversed(rows) if r.get("type") == "end"), {})


def effects(rows):
    return {(r["prompt"], r["component"], r["method"]): r.get("total_effect") for r in rows
            if r.get("type") == "variant"}


def hydra_run():
    t0 = time.perf_counter()
    p = subprocess.run([f"{build}/clients/hydra", "run", "--model", model, job_path, "--threads", str(threads),
                        "--backend", backend, "--format", "ndjson"], capture_output=True, timeout=3600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"service.sh: hydra run failed: {p.stderr.decode()[-500:]}")
    rows = [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip()]
    return wall, end_row(rows).get("elapsed_s", float("nan")), rows


def service_run(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/jobs?wait=stream", body=body,
                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    wall = time.perf_counter() - t0
    conn.close()
    if r.status != 200:
        sys.exit(f"service.sh: POST /v1/jobs?wait=stream answered {r.status}: {data[:300]!r}")
    rows = [json.loads(ln) for ln in data.splitlines() if ln.strip()]
    return wall, end_row(rows).get("elapsed_s", float("nan")), rows


log(f"(b) medium job: hydra preset, {n_prompts} prompts, SmolLM2-135M, {runs} runs each...")
d = Daemon("medium", ["--model", f"smollm2={model}", "--backend", backend, "--threads", str(threads),
                      "--unit-prompts", str(n_prompts)])
run_wall, run_engine, svc_wall, svc_job = [], [], [], []
same = None
try:
    # warm-up: one small job through the daemon (first-job allocations)
    warm = dict(medium, prompts=medium["prompts"][:2], ablations={"seed": 0, "samples": 1})
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=600)
    c.request("POST", "/v1/jobs?wait=stream", body=json.dumps(warm),
              headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    c.getresponse().read()
    c.close()
    for i in range(runs):
        load(f"run {i + 1}")
        w, e, rrows = hydra_run()
        run_wall.append(w)
        run_engine.append(e)
        log(f"  hydra run {i + 1}: {w:.2f} s process, {e:.2f} s engine")
        w, e, srows = service_run(d.port)
        svc_wall.append(w)
        svc_job.append(e)
        log(f"  hydrad     {i + 1}: {w:.2f} s client wall, {e:.2f} s job running")
        if same is None:
            a, b = effects(rrows), effects(srows)
            same = (len(rrows) == len(srows) and set(a) == set(b) and
                    all(abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(a[k])) for k in a))
            n_rows, n_variants = len(srows), len(b)
            samples = next((r.get("samples") for r in srows if r.get("type") == "header"), None)
finally:
    d.stop()
load("end")

# ---------------------------------------------------------------- report
med = statistics.median
overhead = med(svc_wall) / med(run_engine) - 1
cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
how = (f"{client} with a Lua script: keep-alive connections, every answer checked" if use_wrk else
       "a Python client: one keep-alive connection per thread, every answer checked")
lines = ["| request | connections | requests | per second | p50 ms | p90 ms | p99 ms | max ms | errors |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for name, c, r in small:
    lines.append(f"| {name} | {c} | {r['requests']:.0f} | {r['rate']:.1f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                 f"{r['p99_ms']:.2f} | {r['max_ms']:.2f} | {r['errors']} |")
table_a = "\n".join(lines)
fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
spread = lambda xs: (max(xs) / min(xs) - 1) * 100
table_b = "\n".join([
    "| path | median s | runs s | vs hydra run engine |",
    "| --- | ---: | --- | ---: |",
    f"| `hydra run`, engine (end row `elapsed_s`) | {med(run_engine):.2f} | {fmt(run_engine)} | 1.000 |",
    f"| `hydra run`, whole process (model loading included) | {med(run_wall):.2f} | {fmt(run_wall)} | "
    f"{med(run_wall) / med(run_engine):.3f} |",
    f"| hydrad `POST /v1/jobs?wait=stream`, client wall time | {med(svc_wall):.2f} | {fmt(svc_wall)} | "
    f"{med(svc_wall) / med(run_engine):.3f} |",
    f"| hydrad, the job's running time (end row `elapsed_s`) | {med(svc_job):.2f} | {fmt(svc_job)} | "
    f"{med(svc_job) / med(run_engine):.3f} |"])
errors = sum(r["errors"] for _, _, r in small)
section = f"""## Service: hydrad on loopback (small-job latency, overhead against `hydra run`)

Written by `tests/bench/service.sh` (command: `{os.environ['CMD']}`).
Machine: {cpu}, {os.cpu_count()} cores visible (shared with other work; 1-minute
load average at the start of each step: {', '.join(loads)}), {time.strftime('%Y-%m-%d', time.gmtime())}.

**Small jobs** ({how}; {duration} s per row): hydrad with
tiny-llama (`--backend cpu --threads 1`, SQLite store on the local disk with
its fsyncs, log level info), one user. A job is `POST /v1/jobs?wait=stream` of
one 4-token prompt, component attn.0, method zero: parsed, planned, stored,
queued, run, its 5 result rows stored and streamed back, all in one request;
its latency is submit to the stream's end. Errors: answers that are not 200
(for a job: without its end row), and connect/read/write/timeout errors:
{errors} in all.

{table_a}

**Medium job**: the hydra preset (attn.* and mlp.*, resample x {samples}, seed 0)
over {job_text} on SmolLM2-135M (Q4_1 GGUF): {n_variants} variant rows
({n_variants * (samples or 1)} ablated runs), {n_rows} result rows in all; `--threads {threads}`,
`--backend {backend}` on both sides; hydrad with `--unit-prompts {n_prompts}` (one
work unit). {runs} runs of each, interleaved (hydra run, then hydrad); the
daemon ran one 2-prompt warm-up job first. Same rows and effects on both
sides (within 1e-4): {'yes' if same else 'NO'}.

{table_b}

Service overhead: hydrad's client wall time over hydra run's engine time:
**{overhead * 100:+.1f}%** (the service keeps the model loaded, so against hydra
run's whole process it is {(med(svc_wall) / med(run_wall) - 1) * 100:+.1f}%). The runs' spread (slowest over
fastest - 1) is {spread(run_engine):.0f}% for hydra run's engine and {spread(svc_wall):.0f}% for hydrad: an
overhead within that is noise of the shared machine, not the service's cost.

Target (issue 5): service overhead <= 5% against `hydra run` for the same job.
"""
with open(f"{tmp}/section.md", "w") as f:
    f.write(section)
print(section)
if parts != "ab":
    sys.exit(3)
PY
[ "$rc" = 3 ] && { echo "PARTS=$PARTS: RESULTS.md left as it was" >&2; exit 0; }
[ "$rc" = 0 ] || exit "$rc"
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## Service" "$TMP/section.md"
echo "wrote tests/bench/RESULTS.md (section \"Service\")" >&2
