#!/usr/bin/env python3
"""Hostile traffic against one hydrad on loopback (issue 21), all at once and
bounded in count and time (well under a minute):

  - big documents: 10,000-prompt text jobs of 2 MB, parsed, tokenized,
    planned and stored by the request workers (202);
  - amplifying documents: 1 MB of "next" x "all" whose plans would pass
    --job-memory-mib (413 before they are made);
  - unauthenticated bodies: 8 MB declared without a token, or with a wrong
    one (401 on the headers, before a body byte is kept);
  - bodies over --max-buffered-mib: 12 MB declared bodies sent slowly, held
    together until the cap (503 with Retry-After beyond it);
  - slow headers: one header line every 0.4 s (cut at --request-deadline-s);
  - abandoned result streams: opened, then the socket closed.

Meanwhile three clients poll GET /v1/health and RSS is sampled every 10 ms:
health's p99 must stay under 100 ms and RSS within RSS_BOUND_MIB of its
value before the abuse (in a sanitizer build, whose quarantine keeps freed
memory, RSS is reported only). Each abuse's answers are checked too.

usage: test_hostile.py HYDRAD ROOT"""
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.request

from hydra_testutil import Checks, Daemon

HYDRAD, ROOT = sys.argv[1:3]
TINY = os.path.join(ROOT, "tests", "data", "tiny-llama")
TOKEN = "hostile-token-0123456789abcdef"
HEALTH_P99_S = 0.100
RSS_BOUND_MIB = 192  # above the daemon's RSS before the abuse (Release: +87 MiB measured)
check = Checks("test_hostile")

d = Daemon(HYDRAD, TINY, {TOKEN: "mallory user"}, "--unit-prompts", "64", "--max-jobs-per-user", "8",
           "--max-variants", "10000000", "--job-memory-mib", "16", "--request-deadline-s", "2",
           "--stream-keepalive-s", "1", "--max-buffered-mib", "32", "--connection-limit", "256",
           "--per-ip-limit", "200", "--request-workers", "2")
PORT = d.port


def rss_kib():
    with open(f"/proc/{d.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def exchange(data, wait=10, pause=None):
    """Sends data (pieces with a pause between them when pause is given) on a
    fresh socket; returns (status or None, what came back, seconds until the
    server answered or closed)."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=wait)
    t0, out = time.monotonic(), b""
    try:
        for piece in (data if pause is not None else [data]):
            s.sendall(piece)
            if pause:
                time.sleep(pause)
        s.settimeout(wait)
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
            if b"\r\n\r\n" in out and out.rstrip().endswith(b"}"):
                break
    except OSError:
        pass
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", out)
    return (int(m.group(1)) if m else None), out, time.monotonic() - t0


def post(body, token=TOKEN, path="/v1/jobs"):
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n")
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    return exchange(head.encode() + b"\r\n" + body, wait=60)


results = {}  # abuse -> list of statuses (or seconds)
lock = threading.Lock()


def record(name, value):
    with lock:
        results.setdefault(name, []).append(value)


WORDS = "the quick brown fox jumps over the lazy dog near the river bank at dusk".split()
BIG = json.dumps({"model": "tiny", "prompts": [
    {"text": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40)) + f" {i}"} for i in range(10000)],
    "ablations": {"components": ["attn.0"], "methods": ["zero"]}}).encode()
AMPLIFY = json.dumps({"model": "tiny", "prompts": [{"ids": [(5 * i + j) % 997 + 3 for j in range(127)]}
                                                   for i in range(2000)],
                      "target": "next", "ablations": {"components": ["attn.0"], "methods": ["zero"],
                                                      "positions": "all"}}).encode()


def abuse_big():
    for _ in range(3):
        code, out, _ = post(BIG)
        record("big", code)
        m = re.search(rb'"id":"([0-9a-f]{32})"', out)
        if m:
            record("big_ids", m.group(1).decode())


def abuse_amplify():
    for _ in range(6):
        code, out, _ = post(AMPLIFY)
        record("amplify", code)


def abuse_unauthenticated():
    for i in range(20):
        head = ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n"
                + ("Authorization: Bearer wrong-token-0123456789\r\n" if i % 2 else "") + "\r\n")
        code, _, took = exchange(head.encode() + b" " * 65536, wait=10)
        record("unauthenticated", code)
        record("unauthenticated_s", took)


def abuse_buffer_cap():
    """Five 12 MB declared bodies of one user held at once against a 32 MiB cap, of
    which one user holds at most half: one fits."""
    socks, answers = [], []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        s.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                   f"Content-Length: {12 << 20}\r\n\r\n").encode() + b" " * 4096)
        socks.append(s)
        time.sleep(0.05)
    for s in socks:
        s.settimeout(0.5)
        try:
            answers.append(s.recv(4096))
        except OSError:
            answers.append(b"")  # held: waiting for the rest of its body
    time.sleep(1.0)
    for s in socks:
        s.close()
    for a in answers:
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", a)
        record("buffer_cap", int(m.group(1)) if m else "held")
        if m and m.group(1) == b"503":
            record("buffer_cap_retry_after", b"retry-after" in a.lower())


def abuse_slow_headers():
    threads = []
    for _ in range(6):
        def one():
            lines = [b"GET /v1/health HTTP/1.1\r\n"] + [f"X-Slow-{k}: {k}\r\n".encode() for k in range(30)]
            _, _, took = exchange(lines, wait=15, pause=0.4)
            record("slow_headers_s", took)
        t = threading.Thread(target=one)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


def abuse_streams(job_id):
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        s.sendall((f"GET /v1/jobs/{job_id}/results HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                   "Accept: text/event-stream\r\n\r\n").encode())
        try:
            record("streams", s.recv(4096)[:12])
        except OSError:
            record("streams", b"")
        s.close()


def health_poller(stop, out):
    conn = None
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            conn.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.rstrip().endswith(b"}"):
                c = conn.recv(4096)
                if not c:
                    raise OSError("closed")
                got += c
            out.append(time.monotonic() - t0)
        except OSError:
            out.append(time.monotonic() - t0)
            conn = None
        time.sleep(0.02)


def rss_sampler(stop, peak):
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib())
        time.sleep(0.01)


# a job whose stream the abandoned streams open (a small one, done or not)
code, body = d.req("/v1/jobs", json.dumps({"model": "tiny", "prompts": [{"ids": [3, 4, 5, 6]}],
                                           "ablations": {"components": ["attn.0"], "methods": ["zero"]}}).encode())
stream_job = json.loads(body)["id"]
time.sleep(0.5)
base = rss_kib()
stop, lat, peak = threading.Event(), [], [base]
watchers = [threading.Thread(target=health_poller, args=(stop, lat)) for _ in range(3)]
watchers.append(threading.Thread(target=rss_sampler, args=(stop, peak)))
for t in watchers:
    t.start()
t0 = time.monotonic()
abusers = [threading.Thread(target=f) for f in (abuse_big, abuse_amplify, abuse_unauthenticated,
                                                abuse_buffer_cap, abuse_slow_headers)]
abusers.append(threading.Thread(target=abuse_streams, args=(stream_job,)))
for t in abusers:
    t.start()
for t in abusers:
    t.join(timeout=90)
elapsed = time.monotonic() - t0
time.sleep(0.2)
stop.set()
for t in watchers:
    t.join()
for jid in results.get("big_ids", []):  # their work is not the point: cancelled
    try:
        urllib.request.urlopen(urllib.request.Request(d.url + f"/v1/jobs/{jid}", method="DELETE",
                                                      headers={"Authorization": f"Bearer {TOKEN}"}), timeout=30)
    except OSError:
        pass

lat.sort()
p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None
grown = (peak[0] - base) / 1024
print(f"  abuse ran {elapsed:.1f} s; health: {len(lat)} requests, p50 {lat[len(lat) // 2] * 1e3:.1f} ms, "
      f"p99 {p99 * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms; RSS {base / 1024:.0f} MiB before, "
      f"peak +{grown:.1f} MiB")
print(f"  answers: { {k: v for k, v in results.items() if not k.endswith('_ids')} }")
check("every abuse ran to its end within 90 s", not any(t.is_alive() for t in abusers) and elapsed < 90,
      f"{elapsed:.1f} s")
check(f"/v1/health p99 < {HEALTH_P99_S * 1e3:.0f} ms throughout ({len(lat)} requests)",
      p99 is not None and p99 < HEALTH_P99_S and len(lat) >= 50, f"p99 {p99}")
cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(HYDRAD))), "CMakeCache.txt")
sanitized = os.path.exists(cache) and "HYDRA_SANITIZE:BOOL=ON" in open(cache).read()
if sanitized:
    print(f"note RSS peak +{grown:.1f} MiB: not checked in a sanitizer build (its quarantine keeps freed memory)")
else:
    check(f"RSS peak within {RSS_BOUND_MIB} MiB of its start", grown < RSS_BOUND_MIB, f"+{grown:.1f} MiB")
check("big documents: 3 x 2 MB 10,000-prompt jobs -> 202", results.get("big") == [202] * 3, results.get("big"))
check("amplifying documents: 6 x 1 MB 'next' x 'all' -> 413", results.get("amplify") == [413] * 6,
      results.get("amplify"))
check("unauthenticated 8 MB bodies: 20 x 401, each within 2 s (the body is not read)",
      results.get("unauthenticated") == [401] * 20 and max(results.get("unauthenticated_s", [99])) < 2,
      (results.get("unauthenticated"), max(results.get("unauthenticated_s", [99]))))
caps = results.get("buffer_cap", [])
check("one user's 12 MB bodies against --max-buffered-mib 32 (16 for one user): one held, four 503 "
      "with Retry-After",
      caps.count("held") == 1 and caps.count(503) == 4 and all(results.get("buffer_cap_retry_after", [])),
      caps)
slow = results.get("slow_headers_s", [])
check("slow headers: 6 connections cut off after the 2 s request deadline (bound 2-6 s)",
      len(slow) == 6 and all(2 <= x < 6 for x in slow), slow)
check("abandoned streams: 10 opened (200) and dropped",
      [x[:12] for x in results.get("streams", [])] == [b"HTTP/1.1 200"] * 10, results.get("streams"))
check("the daemon still answers and stops cleanly", d.get("/v1/health")[0] == 200 and d.stop() == 0)

# ---- idle connections and the request workers' shares: a daemon of two users
ALICE, BOB = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef0"
PER_IP = 16
d = Daemon(HYDRAD, TINY, {ALICE: "alice user", BOB: "bob user"}, "--per-ip-limit", str(PER_IP),
           "--request-deadline-s", "4", "--request-workers", "2")
PORT = d.port


def open_idle(n, request):
    """n connections from this address, each idle: after one answered
    keep-alive request when request is set, else never a byte sent."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        if request:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.rstrip().endswith(b"}"):
                piece = s.recv(4096)
                if not piece:
                    raise OSError("closed without an answer")
                got += piece
            if not got.startswith(b"HTTP/1.1 200"):
                raise OSError(f"answered {got[:12]!r}")
        socks.append(s)
    return socks


def closed_by_server(s, wait):
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


# 1. Idle connections fill --per-ip-limit (half after a request, half never
# used); new requests from the same address still get in, each in place of
# the longest idle connection; the newer idle ones are left alone.
# The new connections stay open (keep-alive), so each needs a slot.
idle = open_idle(PER_IP // 2, True) + open_idle(PER_IP // 2, False)
new_ok, took, fresh = [], [], []
for _ in range(6):
    t0 = time.monotonic()
    try:
        fresh += open_idle(1, True)
        new_ok.append(200)
    except OSError as e:
        new_ok.append(repr(e))
    took.append(time.monotonic() - t0)
time.sleep(0.5)
closed = [closed_by_server(s, 0.05) for s in idle]
for s in fresh:
    s.close()
print(f"  idle: {PER_IP} idle connections; 6 new requests {new_ok} in {max(took) * 1e3:.0f} ms at most; "
      f"closed by the server: {closed}")
check(f"{PER_IP} idle connections (--per-ip-limit {PER_IP}) lock nobody out: 6 new requests from the same "
      "address answered 200 within 2 s", new_ok == [200] * 6 and max(took) < 2, (new_ok, took))
check("the 6 longest idle connections were closed to make room, the other 10 left open",
      closed == [True] * 6 + [False] * (PER_IP - 6), closed)
for s in idle:
    s.close()
time.sleep(0.3)

# 2. Connections with a request under way are never closed for room: 16 whose
# headers never end hold the address's slots until --request-deadline-s (4 s)
# cuts them; a 17th is refused meanwhile, and answered after the cut.
busy = []
for _ in range(PER_IP):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
    busy.append(s)
time.sleep(0.3)
refused, _, _ = exchange(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wait=2)
kept = [not closed_by_server(s, 0.01) for s in busy]
time.sleep(4.5)
after, _, _ = exchange(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wait=5)
for s in busy:
    s.close()
check(f"{PER_IP} connections with requests under way: the next is refused (no answer), none of them closed; "
      "once the request deadline cut them, a new request is answered",
      refused is None and all(kept) and after == 200, (refused, kept.count(True), after))

# 3. Alice's six parallel 1 MiB texts to tokenize (about 1 s of work each) take
# at most one of the two request workers and half of the request queue (4 of
# 8: the others a 503 at once); Bob's small job, submitted meanwhile, is
# stored at once. Before the shares it waited behind hers (2.7 s measured).
TEXT = json.dumps({"text": "a" * ((1 << 20) - 100)}).encode()
SMALL = json.dumps({"model": "tiny", "prompts": [{"ids": [3, 4, 5, 6]}],
                    "ablations": {"components": ["attn.0"], "methods": ["zero"]}}).encode()
BOB_SUBMIT_S = 1.5
alice = []


def tokenize_big():
    code, out, took = post(TEXT, ALICE, "/v1/models/tiny/tokenize")
    with lock:
        alice.append((code, b"one user's share" in out, took))


ts = [threading.Thread(target=tokenize_big) for _ in range(6)]
for t in ts:
    t.start()
time.sleep(0.4)
health = []
for _ in range(5):
    t0 = time.monotonic()
    health.append((d.get("/v1/health")[0], time.monotonic() - t0))
t0 = time.monotonic()
bob_code, bob_out, _ = post(SMALL, BOB)
bob_s = time.monotonic() - t0
for t in ts:
    t.join()
codes = sorted(c for c, _, _ in alice)
print(f"  tokenize: Alice {[(c, round(x, 2)) for c, _, x in alice]}; Bob's submit {bob_code} in "
      f"{bob_s * 1e3:.0f} ms; health {max(x for _, x in health) * 1e3:.1f} ms at most")
check("Alice's 6 parallel 1 MiB tokenize requests: 4 answered 200, 2 refused 503 naming her share",
      codes == [200] * 4 + [503] * 2 and all(named for c, named, _ in alice if c == 503), alice)
check(f"Bob's small job submitted meanwhile: 202 within {BOB_SUBMIT_S} s (loopback)",
      bob_code == 202 and bob_s < BOB_SUBMIT_S, (bob_code, bob_s, bob_out[-200:]))
check("/v1/health meanwhile: 200 within 100 ms", all(c == 200 and x < 0.1 for c, x in health), health)
check("the second daemon stops cleanly", d.stop() == 0)
sys.exit(check.exit_code())
