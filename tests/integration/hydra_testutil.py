"""What the integration tests that start their own hydrad share: a check
counter, a free loopback port, and a daemon on the tiny GPT-2 (or another
model) with a token file and a scratch store, reached over HTTP with
urllib. (test_hydrad.py keeps its own, richer harness.)"""
import atexit
import json
import os
import resource
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


class Checks:
    """Prints "ok"/"FAIL" lines and counts failures."""

    def __init__(self, name):
        self.name, self.failures = name, 0

    def __call__(self, what, ok, detail=""):
        print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
        self.failures += not ok

    def exit_code(self):
        print(f"{self.name}: {'FAILED' if self.failures else 'ok'} ({self.failures} failures)")
        return 1 if self.failures else 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """hydrad serving one model as "tiny" on a free port (by default the CPU
    backend on one thread). tokens: {token: "USER ROLE"}; store: a path
    (default: a new scratch directory's hydra.db); fsize: a file-size limit in
    bytes (RLIMIT_FSIZE, soft); start_s: how long it may take to answer; extra:
    more flags."""

    def __init__(self, hydrad, model_dir, tokens, *extra, store=None, fsize=None, backend="cpu",
                 threads=1, start_s=15):
        self.tmp = tempfile.mkdtemp(prefix="hydra-test-")
        self.tokens_path = os.path.join(self.tmp, "tokens")
        with open(self.tokens_path, "w") as f:
            f.writelines(f"{t} {who}\n" for t, who in tokens.items())
        self.token = next(iter(tokens))
        self.store = store or os.path.join(self.tmp, "hydra.db")
        self.log_path = os.path.join(self.tmp, "hydrad.log")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the soft limit only: a test may lift it from outside (prlimit) once the "disk" has room
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, hard))) if fsize else None
        self.proc = subprocess.Popen(
            [hydrad, "--port", str(self.port), "--model", f"tiny={model_dir}", "--store",
             self.store, "--tokens", self.tokens_path, "--backend", backend, "--threads", str(threads), *extra],
            stderr=open(self.log_path, "w"), preexec_fn=limit)
        atexit.register(self._reap)  # a test that stops early leaves no daemon behind
        for _ in range(int(start_s / 0.05)):
            try:
                self.get("/v1/health")
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise SystemExit("hydrad did not start: " + open(self.log_path).read())

    def req(self, path, body=None, token=None):
        r = urllib.request.Request(self.url + path, data=body,
                                   headers={"Authorization": f"Bearer {token or self.token}"})
        with urllib.request.urlopen(r, timeout=60) as a:
            return a.status, a.read().decode()

    def get(self, path):
        return self.req(path)

    def submit(self, spec):
        return json.loads(self.req("/v1/jobs", json.dumps(spec).encode())[1])["id"]

    def wait(self, jid, until=("done", "failed", "cancelled"), timeout=120):
        """Polls the job's status until its state is in `until`; returns it."""
        end = time.time() + timeout
        while True:
            st = json.loads(self.get(f"/v1/jobs/{jid}")[1])
            if st["state"] in until or time.time() > end:
                return st
            time.sleep(0.05)

    def rows(self, jid):
        return [json.loads(x) for x in self.get(f"/v1/jobs/{jid}/results")[1].splitlines() if x]

    def run(self, spec):
        """Submits, waits for the end; returns (final status, rows)."""
        jid = self.submit(spec)
        st = self.wait(jid)
        return st, self.rows(jid)

    def _reap(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return self.proc.returncode

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
