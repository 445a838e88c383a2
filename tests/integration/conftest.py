"""pytest fixtures of the Python client's tests (test_python_client.py,
test_python_figures.py): one hydrad on loopback for the session, serving
the random tiny GPT-2 of tests/data as "tiny" with a token file (the CPU
backend, one thread). HYDRAD names the daemon, HYDRA_ROOT the checkout."""
import os
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.environ.get("HYDRA_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from hydra_client import Client, HydraError  # noqa: E402
from hydra_testutil import free_port  # noqa: E402

TOKEN = "pytest-token-0123456789abcdef"
OTHER_TOKEN = "other-token-abcdef0123456789"
HYDRAD = os.environ.get("HYDRAD", os.path.join(ROOT, "build", "server", "hydrad"))


def start_hydrad(models, tmp, extra=()):
    """hydrad with models ({name: path}) and the two users' tokens; returns
    (process, url) once /v1/health answers."""
    with open(os.path.join(tmp, "tokens"), "w") as f:
        f.write(f"{TOKEN} alice user\n{OTHER_TOKEN} bob user\n")
    port = free_port()
    args = [HYDRAD, "--port", str(port), "--store", os.path.join(tmp, "hydra.db"), "--tokens",
            os.path.join(tmp, "tokens"), "--backend", "cpu", "--threads", "1", *extra]
    for name, path in models.items():
        args += ["--model", f"{name}={path}"]
    log = open(os.path.join(tmp, "hydrad.log"), "w")
    proc = subprocess.Popen(args, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            Client(url, TOKEN).health()
            return proc, url
        except HydraError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail("hydrad did not come up: " + open(os.path.join(tmp, "hydrad.log")).read())


def stop_hydrad(proc):
    proc.terminate()
    proc.wait(timeout=60)


@pytest.fixture(scope="session")
def server():
    """(url, scratch folder) of a hydrad serving the tiny GPT-2 as "tiny"."""
    tmp = tempfile.mkdtemp(prefix="hydra-pytest-")
    proc, url = start_hydrad({"tiny": os.path.join(ROOT, "tests", "data", "tiny-gpt2")}, tmp)
    yield url, tmp
    stop_hydrad(proc)


@pytest.fixture(scope="session")
def client(server):
    return Client(server[0], TOKEN)


@pytest.fixture(scope="session")
def multi(client):
    """Results of a finished job with two methods over attention and MLP
    layers and a head: the frames', tables' and figures' common case."""
    job = client.submit({"model": "tiny", "prompts": ["the cat sat on the mat", "a dog ran in the park",
                                                      "one two three four five", {"ids": [5, 17, 250, 9, 33]}],
                         "ablations": {"components": ["attn.*", "mlp.*", "head.1.0"],
                                       "methods": ["zero", "mean"]}})
    job.follow(progress=False)
    return job.results()
