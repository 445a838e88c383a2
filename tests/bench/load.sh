#!/bin/bash
# tests/bench/load.sh - issue 21's load benchmark: hydrad of this tree against
# hydrad of a base commit, measured in the same run, rounds interleaved.
# Replaces the "## Load" section of tests/bench/RESULTS.md. Reports; never
# gates.
#  (a) jobs per second: CONNS clients each submit a tiny job (tiny-llama,
#      1 prompt of 4 ids, attn.0, zero) with POST /v1/jobs?wait=stream, one
#      after another on a keep-alive connection, for DURATION s; a job counts
#      when its end row arrived.
#  (b) /v1/health under a large job's commit: one job of PROMPTS prompts x
#      every neuron, head and sublayer of tiny-llama (zero) in one unit (about
#      PROMPTS x 310 rows, stored in one transaction) while two clients poll
#      /v1/health every 10 ms; health latency p50/p99/max over the job, and
#      the job's wall time.
#   BUILD       this tree's build folder (default: build)
#   BASE        the commit to compare with (default: 45c5ab3)
#   BASE_BUILD  a build folder of BASE with server/hydrad (default: built
#               here, from `git archive BASE`, into a scratch folder: minutes)
#   ROUNDS      rounds, each running both builds (default 3); medians reported
#   DURATION    seconds of (a) per round and build (default 10)
#   CONNS       clients of (a) (default 4)
#   PROMPTS     prompts of (b)'s job (default 200)
# The machine's other work slows every row: the load average at each round is
# recorded with the results.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILD=${BUILD:-build} BASE=${BASE:-45c5ab3} ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10}
export CONNS=${CONNS:-4} PROMPTS=${PROMPTS:-200}
TMP=$(mktemp -d)
export TMP
trap 'rm -rf "$TMP"' EXIT
if [ -z "${BASE_BUILD:-}" ]; then
  echo "load.sh: building $BASE's hydrad in $TMP/base (BASE_BUILD skips this)" >&2
  mkdir -p "$TMP/base"
  git archive "$BASE" | tar -x -C "$TMP/base"
  cmake -S "$TMP/base" -B "$TMP/base/build" -DCMAKE_BUILD_TYPE=Release -DENABLE_CUDA=OFF >/dev/null
  cmake --build "$TMP/base/build" -j "$(nproc)" --target hydrad >/dev/null
  BASE_BUILD=$TMP/base/build
fi
export BASE_BUILD
export CMD="ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS PROMPTS=$PROMPTS BASE=$BASE bash tests/bench/load.sh"
if ! [ -x "$BUILD/server/hydrad" ] || ! [ -x "$BASE_BUILD/server/hydrad" ]; then
  echo "load.sh: no $BUILD/server/hydrad or $BASE_BUILD/server/hydrad" >&2
  exit 2
fi

python3 - <<'PY' >"$TMP/section.md"
import http.client, json, os, socket, statistics, subprocess, sys, threading, time

build, base_build, tmp = os.environ["BUILD"], os.environ["BASE_BUILD"], os.environ["TMP"]
rounds, duration, conns, prompts = (int(os.environ[k]) for k in ("ROUNDS", "DURATION", "CONNS", "PROMPTS"))
TOKEN = "tok-load-0123456789abcdef"
with open(f"{tmp}/tokens", "w") as f:
    f.write(f"{TOKEN} bench user\n")
TINY = os.path.join(os.getcwd(), "tests", "data", "tiny-llama")
HEAD = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
SMALL = json.dumps({"model": "tiny", "prompts": [{"ids": [3, 4, 5, 6]}],
                    "ablations": {"components": ["attn.0"], "methods": ["zero"]}})
LARGE = json.dumps({"model": "tiny", "prompts": [{"ids": [(7 * i + j) % 997 + 3 for j in range(8)]}
                                                 for i in range(prompts)],
                    "ablations": {"components": ["*"] + [f"head.{l}.*" for l in range(3)]
                                   + [f"neuron.{l}.*" for l in range(3)], "methods": ["zero"]}})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, name):
    port = free_port()
    store = f"{tmp}/{name}.db"
    for ext in ("", "-wal", "-shm", ".lock"):
        if os.path.exists(store + ext):
            os.remove(store + ext)
    p = subprocess.Popen([binary, "--port", str(port), "--model", f"tiny={TINY}", "--store", store,
                          "--tokens", f"{tmp}/tokens", "--backend", "cpu", "--threads", "1",
                          "--unit-prompts", str(prompts), "--max-jobs-per-user", "64",
                          "--log-level", "error"], stderr=open(f"{tmp}/{name}.log", "a"))
    for _ in range(400):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/v1/health")
            if c.getresponse().status == 200:
                return p, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{binary} did not start")


def jobs_per_second(port):
    done, stop = [0] * conns, time.monotonic() + duration

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            c.request("POST", "/v1/jobs?wait=stream", SMALL, HEAD)
            r = c.getresponse()
            body = r.read()
            if r.status == 200 and b'"type":"end"' in body:
                done[k] += 1
    t0 = time.monotonic()
    ts = [threading.Thread(target=client, args=(k,)) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.monotonic() - t0)


def health_under_commit(port):
    lat, stop = [], threading.Event()

    def poll():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            t0 = time.monotonic()
            c.request("GET", "/v1/health")
            c.getresponse().read()
            lat.append(time.monotonic() - t0)
            time.sleep(0.01)
    ts = [threading.Thread(target=poll) for _ in range(2)]
    for t in ts:
        t.start()
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/jobs?wait=stream", LARGE, HEAD)
    r = c.getresponse()
    body = r.read()
    if r.status != 200 or b'"type":"end"' not in body[-4096:]:
        raise SystemExit(f"the large job failed: {r.status} {body[:300]!r}")
    rows = body.count(b"\n")
    wall = time.monotonic() - t0
    stop.set()
    for t in ts:
        t.join()
    lat.sort()
    return {"p50": lat[len(lat) // 2] * 1e3, "p99": lat[int(0.99 * (len(lat) - 1))] * 1e3,
            "max": lat[-1] * 1e3, "wall": wall, "rows": rows}


res = {"new": [], "base": []}
loads = []
for k in range(rounds):
    for side, b in (("new", build), ("base", base_build)) if k % 2 == 0 else (("base", base_build), ("new", build)):
        p, port = start(os.path.join(b, "server", "hydrad"), side)
        try:
            jps = jobs_per_second(port)
            h = health_under_commit(port)
        finally:
            p.terminate()
            p.wait(60)
        h["jps"] = jps
        res[side].append(h)
        loads.append(open("/proc/loadavg").read().split()[0])
        print(f"round {k + 1} {side}: {jps:.1f} jobs/s; health p50 {h['p50']:.2f} p99 {h['p99']:.2f} "
              f"max {h['max']:.1f} ms over the large job ({h['rows']} rows, {h['wall']:.2f} s)", file=sys.stderr)

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                       text=True).stdout.strip()
base = subprocess.run(["git", "rev-parse", "--short", os.environ["BASE"]], capture_output=True, text=True).stdout.strip()
print(f"## Load: hydrad jobs per second and /v1/health under a large job's commit, against {base}\n")
print(f"`{os.environ['CMD']}` on {time.strftime('%Y-%m-%d', time.gmtime())}: {cpu}, {os.cpu_count()} cores, "
      f"load average after each run {', '.join(loads)}. New: {head}{' (with uncommitted changes)' if dirty else ''}; "
      f"base: {base}; both Release builds, CPU backend, one engine thread, rounds interleaved "
      f"(new first in odd rounds). Medians of {rounds} rounds; ratio new / base (for latencies and wall "
      f"time, below 1 is better).\n")
print("| metric | new | base | new / base | new per round | base per round |")
print("| --- | ---: | ---: | ---: | --- | --- |")
for key, name, fmt in (("jps", f"tiny jobs per second ({conns} clients, ?wait=stream)", "{:.1f}"),
                       ("p50", "health p50 during the large job, ms", "{:.2f}"),
                       ("p99", "health p99 during the large job, ms", "{:.2f}"),
                       ("max", "health max during the large job, ms", "{:.1f}"),
                       ("wall", f"large job wall time, s ({res['new'][0]['rows']} rows in one unit)", "{:.2f}")):
    n = statistics.median(r[key] for r in res["new"])
    b = statistics.median(r[key] for r in res["base"])
    print(f"| {name} | {fmt.format(n)} | {fmt.format(b)} | {n / b if b else float('nan'):.2f} | "
          f"{', '.join(fmt.format(r[key]) for r in res['new'])} | {', '.join(fmt.format(r[key]) for r in res['base'])} |")
PY
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## Load:" "$TMP/section.md"
cat "$TMP/section.md"
