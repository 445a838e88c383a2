#!/usr/bin/env python3
"""Issue 22's CLI points and result rows, against a real hydrad on loopback
(tiny GPT-2 of tests/data): each check names its point and fails when the
behaviour it asks for is missing.

  1 a trailing slash in HYDRA_URL; 2 the message without a token; 3 a
  target written as text hints {"token": ...}; 4 TransformerLens / Hugging
  Face component names refused with hydra's spelling; 5 a model not loaded
  lists the loaded ones, several models and no "model" is a 400; 6 `hydra
  models NAME` filters; 7 --help on every command; 8 no '0.0/s' for an
  unknown rate; 9 an unknown job id exits 2; 10 Ctrl-C on submit --follow
  says the job keeps running and how to cancel it; 11 a UTF-8 BOM is
  skipped; 12 submit --format without --follow is refused; 13 run.py takes
  HYDRA_URL / HYDRA_TOKEN; 14 a tokens-file error names the wrong part; 15
  `hydra forward` prints token strings; 16 CSV has clean rows with the
  prompt text; 17 headers carry seed, positions, target rule and prompt
  texts; and the statistics: the 95% interval from Student's t (t(0.975, 2)
  = 4.302652729749462, scipy.stats.t.ppf), slope and R^2 null (and '-' in
  the table) below 3 prompts and when the direct effect is exactly 0.

usage: test_cli_points.py HYDRA HYDRAD ROOT"""
import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from hydra_testutil import Checks, Daemon, free_port

HYDRA, HYDRAD, ROOT = sys.argv[1:4]
check = Checks("test_cli_points")
TOKEN = "points-token-0123456789abcdef"
MODEL = os.path.join(ROOT, "tests", "data", "tiny-gpt2")
server = Daemon(HYDRAD, MODEL, {TOKEN: "alice user"})
tmp, URL = server.tmp, server.url
ENV = dict(os.environ, HYDRA_URL=URL, HYDRA_TOKEN=TOKEN)
T975_DF2 = 4.302652729749462  # scipy.stats.t.ppf(0.975, 2)
PROMPTS = ["the cat sat on the mat", "a dog, a \"bird\" and a fish", "one two three four five"]


def hydra(*args, env=ENV, timeout=300):
    p = subprocess.run([HYDRA, *args], capture_output=True, text=True, env=env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def job_file(name, doc, bom=False):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write((b"\xef\xbb\xbf" if bom else b"") + json.dumps(doc).encode())
    return path


def job(components=("attn.0", "mlp.1"), methods=("zero",), prompts=PROMPTS, positions=None,
        **more):
    doc = {"model": "tiny", "prompts": list(prompts),
           "ablations": {"components": list(components), "methods": list(methods), "seed": 11}}
    if positions is not None:
        doc["ablations"]["positions"] = positions
    doc.update(more)
    return doc


def rows_of(text):
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def post_status(url, doc):
    r = urllib.request.Request(url + "/v1/jobs", data=json.dumps(doc).encode(),
                               headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(r, timeout=60) as a:
            return a.status, a.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


try:
    # 1: trailing slashes
    rc, out, err = hydra("jobs", env=dict(ENV, HYDRA_URL=URL + "//"))
    check("1 HYDRA_URL with trailing slashes works (was //v1/jobs 404)", rc == 0, f"{rc} {err}")
    # 2: no token
    rc, out, err = hydra("jobs", env={k: v for k, v in ENV.items() if k != "HYDRA_TOKEN"})
    check("2 no token: exit 3, says to pass --token or set HYDRA_TOKEN",
          rc == 3 and "no token" in err and "--token" in err and "HYDRA_TOKEN" in err, err)
    # 3: a target written as text
    rc, out, err = hydra("submit", job_file("paris.json", job(target=" Paris")))
    check("3 \"target\": \" Paris\" hints {\"token\": \" Paris\"}",
          rc == 2 and '{"token": " Paris"}' in err, err)
    # 4: other libraries' names
    for name, want in (("blocks.3.attn.hook_z", "did you mean attn.3"),
                       ("model.layers.1.mlp", "did you mean mlp.1"),
                       ("transformer.h.0.attn", "did you mean attn.0")):
        rc, out, err = hydra("submit", job_file("foreign.json", job(components=[name])))
        check(f"4 {name}: refused with hydra's spelling ({want})",
              rc == 2 and want in err and "ablations.components[0]" in err, err)
    # 5: a model not loaded; several models and none named
    rc, out, err = hydra("submit", job_file("gpt3.json", dict(job(), model="gpt3")))
    check("5 a model not loaded: exit 2, the loaded ones listed", rc == 2 and "loaded: tiny" in err,
          err)
    two = Daemon(HYDRAD, MODEL, {TOKEN: "alice user"}, "--model", f"other={MODEL}")
    try:
        nameless = job()
        del nameless["model"]
        st, body = post_status(two.url, nameless)
        check("5 several models, no \"model\": 400 naming the field and the models",
              st == 400 and '"model"' in body and "tiny" in body and "other" in body, f"{st} {body}")
        rc, out, err = hydra("models", "other", env=dict(ENV, HYDRA_URL=two.url))
        lines = out.strip().splitlines()
        check("6 hydra models NAME: only that model",
              rc == 0 and len(lines) == 2 and lines[1].startswith("other") and "tiny" not in out,
              out + err)
    finally:
        two.stop()
    rc, out, err = hydra("models", "smollm2")
    check("6 hydra models NAME not loaded: exit 2, the loaded ones listed",
          rc == 2 and "smollm2" in err and "tiny" in err, err)
    # 7: --help everywhere
    for cmd in ("models", "tokenize", "submit", "status", "results", "cancel", "retry", "jobs",
                "check", "run", "table", "info", "forward"):
        rc, out, err = hydra(cmd, "--help")
        check(f"7 hydra {cmd} --help: usage on stdout, exit 0",
              rc == 0 and "usage" in out and "unknown option" not in err, f"{rc} {out[:100]} {err}")
    # hydra table on lines that are not result rows: an error naming the line, never a crash
    for bad in ('{"type": 5}', "{}", "[]", '{"type": null}'):
        path = os.path.join(tmp, "notrows.ndjson")
        with open(path, "w") as f:
            f.write(bad + "\n")
        rc, out, err = hydra("table", path)
        check(f"hydra table of {bad}: exit 1 naming the line", rc == 1 and "notrows.ndjson:1" in err
              and '"type"' in err, f"{rc} {err}")
    # hydra run's options: numbers checked, an unknown option named as such
    jf = job_file("opts.json", job())
    for args, want in ((("--threads", "abc"), "--threads: expected a non-negative integer"),
                       (("--max-rows", "-5"), "--max-rows: expected a non-negative integer"),
                       (("--memory-budget", "lots"), "--memory-budget: expected a non-negative number"),
                       (("--bogus", "1"), "unknown option --bogus"), (("--bogus",), "unknown option --bogus")):
        rc, out, err = hydra("run", "--model", MODEL, jf, *args)
        check(f"hydra run {' '.join(args)}: usage error naming it", rc == 2 and want in err, f"{rc} {err}")
    # 9: unknown job ids
    for cmd in ("status", "results", "cancel"):
        rc, out, err = hydra(cmd, "deadbeef" * 4)
        check(f"9 hydra {cmd} of an unknown job: exit 2 (was 3)", rc == 2 and "404" in err,
              f"{rc} {err}")
    # 11: a byte order mark
    rc, out, err = hydra("submit", job_file("bom.json", job(), bom=True))
    check("11 a job file starting with a UTF-8 BOM is accepted", rc == 0 and out.strip(), err)
    # 12: --format without --follow
    rc, out, err = hydra("submit", job_file("fmt.json", job()), "--format", "csv")
    check("12 submit --format csv without --follow: refused, exit 2",
          rc == 2 and "--follow" in err and not out, f"{rc} {out} {err}")

    # 8, 16, 17 and the statistics on one 3-prompt job
    rc, out, err = hydra("submit", job_file("three.json", job()), "--follow", "--format", "ndjson")
    rows = rows_of(out)
    check("8 no '0.0/s' or '0/s' for a rate (unknown: '-/s')",
          rc == 0 and "variants" in err and " 0.0/s" not in err and " 0/s" not in err, err)
    head = rows[0] if rows else {}
    check("17 the header carries the seed, positions, target rule and prompt texts",
          head.get("seed") == 11 and head.get("positions") == "last"
          and head.get("target") == "argmax" and head.get("prompts") == PROMPTS, head)
    clean = [r for r in rows if r["type"] == "clean"]
    check("17 clean rows carry their prompt's text",
          [r.get("text") for r in clean] == PROMPTS, [r.get("text") for r in clean])
    jid = [x for x in err.split() if len(x) == 32]
    jid = jid[0] if jid else ""
    rc, text, err = hydra("results", jid, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(text)))
    got = [(r["prompt"], r["text"], r["target_token"]) for r in table if r.get("type") == "clean"]
    want = [(str(r["prompt"]), r["text"], r["target_token"]) for r in clean]
    check("16 CSV: a clean row per prompt with its text (quoted) and target token",
          rc == 0 and got == want and len(got) == 3, (got, want))
    check("16 CSV: the variant rows are typed", rc == 0 and sum(r["type"] == "variant" for r in table)
          == len([r for r in rows if r["type"] == "variant"]), text[:300])
    summaries = [r for r in rows if r["type"] == "summary"]
    worst = 0.0
    for s in summaries:
        for key in ("direct_effect", "total_effect", "compensation"):
            xs = [r[key] for r in rows if r["type"] == "variant"
                  and r["component"] == s["component"] and r["method"] == s["method"]]
            mean = sum(xs) / len(xs)
            sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
            want_ci = T975_DF2 * sd / math.sqrt(len(xs))
            worst = max(worst, abs(s[key]["ci95"] - want_ci) / max(want_ci, 1e-12))
    check("stats: ci95 = t(0.975, n-1) sd / sqrt(n) from the variant rows, to 1e-9 relative",
          len(summaries) == 2 and worst <= 1e-9, f"worst relative error {worst:.3g}")
    check("stats: with 3 prompts the fit is reported",
          all(isinstance(s["fit"]["slope"], float) for s in summaries), [s["fit"] for s in summaries])

    # the fit's refusals: 2 prompts; a direct effect that is exactly 0 (the
    # intervention at position 0 leaves the component's final-position output alone)
    rc, out, err = hydra("submit", job_file("two.json", job(prompts=PROMPTS[:2])), "--follow",
                         "--format", "ndjson")
    fits = [r["fit"] for r in rows_of(out) if r["type"] == "summary"]
    check("stats: below 3 prompts slope and r2 are null, with the reason",
          rc == 0 and fits and all(f["slope"] is None and f["r2"] is None
                                   and "3 prompts" in f.get("undefined", "") for f in fits), fits)
    rc, out, err = hydra("results", [x for x in err.split() if len(x) == 32][0], "--format", "table")
    body = [ln.split() for ln in out.splitlines() if ln.startswith(("attn.0", "mlp.1"))]
    check("stats: the table prints '-' for them", rc == 0 and body and all(b[-2:] == ["-", "-"]
                                                                             for b in body), out)
    flat = job(components=["mlp.1"], positions=[0],
               prompts=PROMPTS + ["so it goes on and on", "here we are again now"])
    rc, out, err = hydra("submit", job_file("flat.json", flat), "--follow", "--format", "ndjson")
    srows = rows_of(out)
    direct = [r["direct_effect"] for r in srows if r["type"] == "variant"]
    fits = [r["fit"] for r in srows if r["type"] == "summary"]
    check("stats: a direct effect at rounding level (|x| <= 1e-5) gives no fit, with the reason",
          rc == 0 and direct and max(abs(x) for x in direct) <= 1e-5 and fits
          and fits[0]["slope"] is None and "rounding" in fits[0].get("undefined", ""),
          (direct, fits))

    # 10: Ctrl-C while following
    # a job of some seconds even on a fast machine; the signal goes as soon as
    # the CLI prints its first progress line (not after a fixed sleep the job
    # may outrun)
    big = job_file("big.json", {"model": "tiny", "preset": "hydra", "prompts": PROMPTS * 400})
    p = subprocess.Popen([HYDRA, "submit", big, "--follow"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    first = p.stderr.readline()  # "submitted"
    first += p.stderr.readline()  # the first progress line: following, Ctrl-C handled
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    err = first + err
    ids = [x for x in err.split() if len(x) == 32]
    bid = ids[0] if ids else ""
    check("10 Ctrl-C on submit --follow: exit 130, the job keeps running, how to cancel it",
          p.returncode == 130 and "keeps running" in err and f"hydra cancel {bid}" in err,
          f"{p.returncode} {err[-400:]}")
    rc, out, err = hydra("status", bid)
    check("10 ... and it does keep running", rc == 0 and "cancelled" not in out, out + err)
    hydra("cancel", bid)

    # 13: run.py takes the server from the environment
    runpy = os.path.join(ROOT, "clients", "examples", "replication", "run.py")
    bare = {k: v for k, v in os.environ.items() if k not in ("HYDRA_URL", "HYDRA_TOKEN")}
    deps = "import numpy, pandas, matplotlib, requests"
    python = next((x for x in (sys.executable, "/usr/bin/python3")
                   if subprocess.run([x, "-c", deps], capture_output=True).returncode == 0),
                  sys.executable)
    p = subprocess.run([python, runpy, "--out", tmp], capture_output=True, text=True,
                       env=bare, timeout=120)
    if "No module named" in p.stderr:
        print(f"test_cli_points: note: run.py's imports are missing here: {p.stderr[-200:]}")
    else:
        check("13 run.py without --url/--token or HYDRA_URL/HYDRA_TOKEN: says both ways",
              p.returncode == 2 and "HYDRA_TOKEN" in p.stderr and "--token" in p.stderr, p.stderr)
        dead = f"http://127.0.0.1:{free_port()}"
        p = subprocess.run([python, runpy, "--out", tmp, "--report", os.path.join(tmp, "x")],
                           capture_output=True, text=True, timeout=120,
                           env=dict(bare, HYDRA_URL=dead, HYDRA_TOKEN=TOKEN))
        check("13 run.py takes HYDRA_URL/HYDRA_TOKEN (then fails to reach the dead server)",
              p.returncode != 0 and "HYDRA_TOKEN" not in p.stderr and p.stderr, p.stderr[-300:])

    # 14: tokens-file errors name the part
    for line, want in (("justonetoken", "one field"), ("abcdefgh1234 bob", "role (third field) is missing"),
                       ("abcdefgh1234 bob user extra", "a fourth field"), ("short bob user", "token (first field)"),
                       ("abcdefgh1234 bob root", "neither user nor admin")):
        path = os.path.join(tmp, "bad-tokens")
        with open(path, "w") as f:
            f.write("# a comment\n" + line + "\n")
        p = subprocess.run([HYDRAD, "--port", str(free_port()), "--model", f"tiny={MODEL}", "--store",
                            os.path.join(tmp, "t.db"), "--tokens", path, "--backend", "cpu"],
                           capture_output=True, text=True, timeout=60)
        check(f"14 tokens file '{line.split()[0][:4]}...': the line and the part named ({want})",
              p.returncode != 0 and f"{path}:2:" in p.stderr and want in p.stderr
              and "abcdefgh1234" not in p.stderr, p.stderr[-300:])

    # a token on two lines (alice's, then bob's as admin): refused, not the last line winning
    path = os.path.join(tmp, "dup-tokens")
    with open(path, "w") as f:
        f.write("abcdefgh1234 alice user\nabcdefgh1234 bob admin\n")
    p = subprocess.run([HYDRAD, "--port", str(free_port()), "--model", f"tiny={MODEL}", "--store",
                        os.path.join(tmp, "t.db"), "--tokens", path, "--backend", "cpu"],
                       capture_output=True, text=True, timeout=60)
    check("14 tokens file with one token on two lines: refused naming both lines, not the token",
          p.returncode != 0 and f"{path}:2:" in p.stderr and "line 1" in p.stderr
          and "abcdefgh1234" not in p.stderr, p.stderr[-300:])

    p = subprocess.run([HYDRAD, "--port", str(free_port()), "--model", f"x={MODEL}", "--model",
                        f"x={MODEL}", "--store", os.path.join(tmp, "t.db"), "--no-auth"],
                       capture_output=True, text=True, timeout=60)
    check("hydrad with one model name twice: refused naming it", p.returncode != 0
          and 'the name "x" is given twice' in p.stderr, p.stderr[-300:])

    # 15: forward prints token strings
    rc, out, err = hydra("forward", "--model", MODEL, "--ids", "5,17,250", "--top", "3")
    check("15 hydra forward: the input's and the top tokens' strings beside their ids",
          rc == 0 and 'input: 5 "' in out and out.count('"') >= 12, out + err)
finally:
    server.stop()

sys.exit(check.exit_code())
