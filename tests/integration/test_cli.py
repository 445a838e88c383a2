#!/usr/bin/env python3
"""The hydra CLI's server commands against a real hydrad on loopback (tiny
GPT-2 of tests/data, a token file): models, tokenize, submit (--follow),
status, results (ndjson, csv, table, --after), cancel, retry, jobs, the server's
errors with their field paths and the documented exit codes, and check (CI
regression mode): a fresh baseline passes (0), a perturbed one drifts (1),
the JUnit XML is well formed with one testcase per component x method.

usage: test_cli.py HYDRA HYDRAD ROOT"""
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from hydra_testutil import Checks, Daemon, free_port

HYDRA, HYDRAD, ROOT = sys.argv[1:4]
check = Checks("test_cli")
TOKEN = "cli-token-0123456789abcdef"
server = Daemon(HYDRAD, os.path.join(ROOT, "tests", "data", "tiny-gpt2"), {TOKEN: "alice user"})
tmp, URL = server.tmp, server.url
ENV = dict(os.environ, HYDRA_URL=URL, HYDRA_TOKEN=TOKEN)


def hydra(*args, env=ENV, timeout=300):
    p = subprocess.run([HYDRA, *args], capture_output=True, text=True, env=env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def job_file(name, doc):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


try:
    rc, out, err = hydra("models")
    check("models lists tiny", rc == 0 and "tiny" in out and "gpt2" in out, out + err)
    rc, out, err = hydra("tokenize", "tiny", "the cat sat")
    check("tokenize prints ids and tokens", rc == 0 and len(out.strip().splitlines()) >= 2, out + err)

    prompts = ["the cat sat on the mat", "a dog ran in the park", "one two three four five",
               {"ids": [5, 17, 250, 9, 33]}]
    small = job_file("small.json", {"model": "tiny", "preset": "hydra", "prompts": prompts,
                                    "ablations": {"samples": 3}})
    rc, out, err = hydra("submit", small)
    job = out.strip()
    check("submit prints the job id", rc == 0 and len(job) >= 16, out + err)
    rc, out, err = hydra("submit", small, "--follow")
    check("submit --follow prints the table", rc == 0 and "component" in out and "attn.0" in out,
          out + err)
    check("submit --follow: progress lines on a non-terminal stderr", "variants" in err, err)
    lines = [x for x in err.splitlines() if "variants" in x]
    # before the server knows a rate (eta_s null: printed -/s) the ETA is unknown, not 0 s
    check("submit --follow: 'ETA ?' while no rate is known (was 'ETA 0s')",
          all("ETA ?" in x for x in lines if ", -/s," in x and " done:" not in x) and
          all("ETA" in x for x in lines), err)
    check("the table lists each prompt's tokens and target token",
          'prompt 0: "the cat sat on the mat" -> "' in out and 'prompt 3: "' in out, out[:400])
    rc, out, err = hydra("status", job)
    check("status", rc == 0 and "state" in out and job in out, out + err)
    rc, out, err = hydra("results", job)
    rows = [json.loads(x) for x in out.splitlines() if x.strip()]
    types = [r["type"] for r in rows]
    check("results ndjson: header, clean, variant, summary, end",
          rc == 0 and types[0] == "header" and types[-1] == "end" and "variant" in types
          and "summary" in types, types[:3])
    rc, out2, err = hydra("results", job, "--after", "3")
    check("results --after 3 skips 3 rows", rc == 0 and len(out2.splitlines()) == len(rows) - 3,
          (len(out2.splitlines()), len(rows)))
    rc, out, err = hydra("results", job, "--format", "csv")
    check("results csv", rc == 0 and out.startswith("prompt,position,component,method"), out[:80])
    rc, out, err = hydra("results", job, "--format", "table")
    check("results table", rc == 0 and "direct" in out and "mlp.1" in out, out + err)
    rc, out, err = hydra("jobs")
    check("jobs lists the job", rc == 0 and job in out, out + err)

    # a named job: status and jobs show its name, labels, counts, times (UTC) and its own rate
    named = job_file("named.json", {"model": "tiny", "prompts": prompts, "name": "cli run \u00e9",
                                    "labels": {"sweep": "a", "layer": "2"},
                                    "ablations": {"components": ["attn.*"], "methods": ["zero"]}})
    rc, out, err = hydra("submit", named, "--follow")
    nid = json.loads(server.get("/v1/jobs?name=cli%20run%20%C3%A9")[1])["jobs"][0]["id"]
    st = json.loads(server.get(f"/v1/jobs/{nid}")[1])

    def utc(t):
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(t)))
    rc, out, err = hydra("status", nid[:8])
    fields = dict((ln[:10].strip(), ln[10:]) for ln in out.splitlines() if len(ln) > 10)
    want = {"id": nid, "name": "cli run \u00e9", "labels": "layer=2, sweep=a", "prompts": "4",
            "created": utc(st["created_at"]), "started": utc(st["started_at"]),
            "finished": utc(st["finished_at"]), "rate": f"{st['progress']['rate']:.1f}/s", "eta": "-"}
    check("status ID-PREFIX: name, labels, prompts, created/started/finished (UTC), its rate, eta -",
          rc == 0 and all(fields.get(k) == v for k, v in want.items()),
          {k: (fields.get(k), v) for k, v in want.items() if fields.get(k) != v} or out + err)
    rc, out, err = hydra("jobs")
    line = next((ln for ln in out.splitlines() if ln.startswith(nid)), "")
    check("jobs: a line per job with its created time, prompts, variants and name",
          rc == 0 and out.split()[:1] == ["id"] and "name" in out.splitlines()[0]
          and utc(st["created_at"]) in line and " 4 " in line and line.endswith("cli run \u00e9")
          and f"{st['variants']}/{st['variants']}" in line, out + err)
    rc, out, err = hydra("jobs", "--name", "cli run \u00e9")
    check("jobs --name: that job alone", rc == 0 and [ln.split()[0] for ln in out.splitlines()[1:]] == [nid],
          out + err)
    rc, out, err = hydra("jobs", "--label", "sweep=a", "--state", "done")
    check("jobs --label sweep=a --state done: that job alone",
          rc == 0 and [ln.split()[0] for ln in out.splitlines()[1:]] == [nid], out + err)
    rc, out, err = hydra("jobs", "--state", "finished")
    check("jobs --state finished: exit 2 with the server's message naming the field",
          rc == 2 and "state" in err and "queued, running" in err and not out, f"exit {rc}: {out}{err}")
    rc, out, err = hydra("retry", job)
    check("retry of a done job: exit 3 with the server's 409 and its reason",
          rc == 3 and "409" in err and "only a failed job can be retried" in err, f"exit {rc}: {err}")

    big = job_file("big.json", {"model": "tiny", "preset": "hydra", "prompts": prompts * 60})
    rc, out, err = hydra("submit", big)
    rc2, out2, err2 = hydra("cancel", out.strip())
    check("cancel", rc == 0 and rc2 == 0 and "cancel" in out2, out2 + err2)
    cid = out.strip()
    for _ in range(200):  # the cancel lands at the next pass
        if "cancelled" in hydra("status", cid)[1]:
            break
        time.sleep(0.05)
    rc, out, err = hydra("results", cid, "--format", "table")
    check("results table of a cancelled job: exit 1, says it was cancelled (partial rows)",
          rc == 1 and "cancelled" in err and "nan s" not in out, f"exit {rc}: {err[-300:]} {out[:200]}")

    # errors: the server's message with its field path, and the exit codes
    bad = job_file("bad.json", {"model": "tiny", "prompts": ["x", "y"],
                                "ablations": {"components": ["mlp.40"], "methods": ["zero"]}})
    rc, out, err = hydra("submit", bad)
    check("a bad job: exit 2 with the field path", rc == 2 and "ablations.components" in err, err)
    nomodel = job_file("nomodel.json", {"model": "gpt3", "prompts": ["x"],
                                        "ablations": {"components": ["mlp.0"], "methods": ["zero"]}})
    rc, out, err = hydra("submit", nomodel)
    check("a job for a model not loaded: exit 2 (a bad job), naming the field",
          rc == 2 and "model" in err and "gpt3" in err, err)
    rc, out, err = hydra("jobs", env=dict(ENV, HYDRA_TOKEN="wrong-token-000000000000"))
    check("a wrong token: exit 3, HTTP 401", rc == 3 and "401" in err, err)
    rc, out, err = hydra("models", "--url", f"http://127.0.0.1:{free_port()}")
    check("no server: exit 3", rc == 3 and err.strip(), err)
    rc, out, err = hydra("status")
    check("usage error: exit 2", rc == 2, err)
    rc, out, err = hydra("results", "deadbeef" * 4)
    check("results of an unknown job: exit 2, the message on stderr, nothing on stdout",
          rc == 2 and not out and "404" in err and "{" not in err, f"stdout {out!r} stderr {err!r}")
    rc, out, err = hydra("status", "../../etc/passwd")
    check("a path-like id is refused before any request", rc == 2, err)
    rc, out, err = hydra("results", job, "--format", "xml")
    check("bad --format: exit 2", rc == 2, err)
    for argv in (("frobnicate", "x"), ("bogus",)):
        rc, out, err = hydra(*argv)
        check(f"unknown command {argv[0]}: exit 2, named", rc == 2 and f"unknown command {argv[0]}" in err,
              err)

    # check: CI regression mode
    base = os.path.join(tmp, "base.json")
    rc, out, err = hydra("check", "--write-baseline", "--baseline", base, small)
    doc = json.load(open(base)) if os.path.exists(base) else {}
    check("check --write-baseline", rc == 0 and len(doc.get("summary", {})) == 6, out + err)
    junit = os.path.join(tmp, "junit.xml")
    rc, out, err = hydra("check", "--baseline", base, small, "--junit", junit)
    check("check against a fresh baseline: exit 0", rc == 0 and "DRIFT" not in out, out + err)
    suite = ET.parse(junit).getroot()
    cases = suite.findall("./testsuite/testcase")
    check("JUnit: testsuites/testsuite with one testcase per component x method, no failures",
          suite.tag == "testsuites" and len(cases) == 6 and suite.get("failures") == "0"
          and suite.find("testsuite").get("tests") == "6"
          and all(c.get("classname") and c.get("name") for c in cases), ET.tostring(suite)[:300])
    key = sorted(doc["summary"])[2]
    doc["summary"][key]["total_effect"] += 0.05
    bad_base = os.path.join(tmp, "perturbed.json")
    json.dump(doc, open(bad_base, "w"))
    rc, out, err = hydra("check", "--baseline", bad_base, small, "--junit", junit)
    check("check against a perturbed baseline: exit 1, the drift named",
          rc == 1 and "DRIFT" in out and key.split()[0] in out and "total_effect" in out, out + err)
    suite = ET.parse(junit).getroot()
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    check("JUnit: the drifted component is the one failure",
          suite.get("failures") == "1" and len(failed) == 1 and failed[0].get("name") == key,
          ET.tostring(suite)[:400])
    rc, out, err = hydra("check", "--baseline", bad_base, small, "--atol", "0.1")
    check("a looser --atol accepts it", rc == 0, out + err)
    rc, out, err = hydra("check", "--baseline", os.path.join(tmp, "none.json"), small)
    check("check without a baseline file: exit 2", rc == 2, err)

    # Non-finite results: a copy of tiny whose position embeddings from 6 on are NaN, so a
    # prompt longer than 6 tokens gives NaN rows and the shorter ones stay finite.
    nan_dir = os.path.join(tmp, "nan-gpt2")
    os.makedirs(nan_dir)
    src = os.path.join(ROOT, "tests", "data", "tiny-gpt2")
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(os.path.join(src, name), nan_dir)
    blob = bytearray(open(os.path.join(src, "model.safetensors"), "rb").read())
    n_head = struct.unpack("<Q", blob[:8])[0]
    wpe = json.loads(blob[8:8 + n_head])["transformer.wpe.weight"]
    start = 8 + n_head + wpe["data_offsets"][0] + 6 * wpe["shape"][1] * 4
    end = 8 + n_head + wpe["data_offsets"][1]
    blob[start:end] = struct.pack("<f", float("nan")) * ((end - start) // 4)
    open(os.path.join(nan_dir, "model.safetensors"), "wb").write(bytes(blob))
    nan_doc = {"model": "tiny", "prompts": [{"ids": [5, 17, 250, 9]}, {"ids": [5, 17, 250, 9, 33, 4, 8, 9]},
                                            {"ids": [7, 3, 2, 60, 11]}],
               "ablations": {"components": ["attn.0", "mlp.1"], "methods": ["zero"]},
               "metrics": ["logit", "kl"]}
    nan_job = job_file("nan.json", nan_doc)
    nan_server = Daemon(HYDRAD, nan_dir, {TOKEN: "alice user"})
    try:
        rc, out, err = hydra("run", "--model", nan_dir, nan_job, "--format", "ndjson")
        local = [json.loads(x) for x in out.splitlines() if x.strip()]
        check("hydra run: non-finite rows warned on stderr, exit 0",
              rc == 0 and "non-finite" in err and local and local[-1]["type"] == "end"
              and local[-1]["nonfinite"] == 3, err[-300:])
        nan_env = dict(ENV, HYDRA_URL=nan_server.url)
        rc, out, err = hydra("submit", nan_job, "--follow", "--format", "ndjson", env=nan_env)
        remote = [json.loads(x) for x in out.splitlines() if x.strip()]
        summaries = lambda rows: [r for r in rows if r["type"] == "summary"]
        check("hydrad's summary of the same rows is hydra run's (null, never mean 0.0 +- 0.0)",
              rc == 0 and summaries(remote) == summaries(local) and len(summaries(local)) == 2,
              (summaries(remote), summaries(local)))
        check("summary: a non-finite count per component, the touched means null",
              all(r["nonfinite"] == 1 and r["n"] == 3 and r["total_effect"]["mean"] is None
                  for r in summaries(remote)), summaries(remote))
        bad = [r for r in remote if r["type"] == "variant" and r["prompt"] == 1]
        good = [r for r in remote if r["type"] == "variant" and r["prompt"] != 1]
        check("a NaN variant row: null values named in 'nonfinite', the asked-for kl kept",
              len(bad) == 2 and all("total_effect" in r["nonfinite"] and "kl" in r
                                    and r["total_effect"] is None for r in bad), bad)
        check("finite rows carry no marker", good and all("nonfinite" not in r for r in good), good)
        clean = [r for r in remote if r["type"] == "clean" and r["prompt"] == 1]
        check("the NaN clean row is marked too", clean and "logit" in clean[0]["nonfinite"], clean)
        jobs = json.loads(nan_server.get("/v1/jobs")[1])["jobs"]
        status = jobs[0] if jobs else {}
        check("the job's status warns of the non-finite rows",
              status.get("state") == "done" and status.get("error") is None
              and "non-finite" in (status.get("warning") or ""), status)
        nan_base = os.path.join(tmp, "nan-baseline.json")
        rc, out, err = hydra("check", "--write-baseline", "--baseline", nan_base, nan_job, env=nan_env)
        rc, out, err = hydra("check", "--baseline", nan_base, nan_job, env=nan_env)
        check("hydra check fails on non-finite values (null was read as 0 and passed)",
              rc == 1 and "non-finite" in out and "DRIFT" in out, out + err)
    finally:
        nan_server.stop()
finally:
    server.stop()

sys.exit(check.exit_code())
