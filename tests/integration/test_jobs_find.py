#!/usr/bin/env python3
"""Jobs a user finds again (issue 22, item 3), against a real hydrad:

  1. "name" and "labels" in a job document: kept, shown in the job's status
     and in every list with its prompt and variant counts and times; bad
     ones refused with 400 naming the field;
  2. GET /v1/jobs/{id}/spec gives the stored document back (as submitted,
     "weights_dtype" pinned);
  3. an id prefix of >= 6 hex digits stands for the id on every job route;
     a prefix two jobs share is 400 naming the count; one that matches no
     job of the caller's, 404 (another user's job included);
  4. GET /v1/jobs pages with ?limit= and ?cursor= (next_cursor) and stays
     put while jobs are added; ?name=, ?label=, ?state= filter it.

On a PostgreSQL store when HYDRA_TEST_POSTGRES is set (with_postgres.sh),
else on SQLite.

usage: test_jobs_find.py HYDRAD ROOT"""
import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

from hydra_testutil import Checks, Daemon

HYDRAD, ROOT = sys.argv[1:3]
TINY = os.path.join(ROOT, "tests", "data", "tiny-gpt2")
TOKENS = {"find-token-alice-0123456789abcdef": "alice user",
          "find-token-bob-0123456789abcdef01": "bob user"}
ALICE, BOB = list(TOKENS)
check = Checks("test_jobs_find")


def spec(n_prompts=2, **extra):
    doc = {"model": "tiny",
           "prompts": [{"ids": [(7 * i + j) % 997 + 3 for j in range(4 + i)]} for i in range(n_prompts)],
           "ablations": {"components": ["attn.*", "mlp.*"], "methods": ["zero"]}}
    doc.update(extra)
    return doc


def call(d, method, path, body=None, token=ALICE):
    """(status, parsed JSON body or None)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    r = urllib.request.Request(d.url + path, data=data, method=method,
                               headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(r, timeout=60) as a:
            status, text = a.status, a.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def error_field(answer):
    return ((answer or {}).get("error") or {}).get("field") if isinstance(answer, dict) else None


PG = os.environ.get("HYDRA_TEST_POSTGRES")
d = Daemon(HYDRAD, TINY, TOKENS, store=PG)
try:
    # 1. names and labels
    named = spec(3, name="sweep layer 2 \u00e9", labels={"sweep": "a", "layer": "2"})
    st, ans = call(d, "POST", "/v1/jobs", named)
    check("a named, labelled job -> 202", st == 202, (st, ans))
    jid = ans["id"]
    job = d.wait(jid)
    check("its status: name, labels, prompts 3, variants 18, created/started/finished times",
          job.get("name") == named["name"] and job.get("labels") == named["labels"]
          and job.get("prompts") == 3 and job.get("variants") == 18
          and job.get("created_at", 0) > 1.6e9 and job.get("started_at", 0) >= job["created_at"]
          and job.get("finished_at", 0) >= job["started_at"], job)
    check("its status: spec_url", job.get("spec_url") == f"/v1/jobs/{jid}/spec", job)
    plain = d.submit(spec(2))
    job2 = d.wait(plain)
    check("a job without them: name null, labels {}", job2.get("name") is None
          and job2.get("labels") == {} and job2.get("prompts") == 2, job2)
    bad = [("name", 5, "name"), ("name", "", "name"), ("name", "x" * 65, "name"),
           ("name", "tab\there", "name"), ("labels", ["a"], "labels"),
           ("labels", {f"k{i}": "v" for i in range(17)}, "labels"),
           ("labels", {"bad key": "v"}, "labels.bad key"), ("labels", {"k": 1}, "labels.k"),
           ("labels", {"k": "v" * 101}, "labels.k"), ("labels", {"k": "line\nbreak"}, "labels.k")]
    for key, value, field in bad:
        st, ans = call(d, "POST", "/v1/jobs", spec(2, **{key: value}))
        check(f"{key} {json.dumps(value)[:30]} -> 400 naming {field}",
              st == 400 and error_field(ans) == field, (st, ans))
    st, ans = call(d, "POST", "/v1/jobs", spec(2, nam="x"))
    check("a misspelt \"name\" -> 400: did you mean name?", st == 400 and "did you mean name?" in json.dumps(ans), (st, ans))

    # 2. the document back
    st, back = call(d, "GET", f"/v1/jobs/{jid}/spec")
    pinned = dict(named, weights_dtype="fp32")
    check("GET /v1/jobs/{id}/spec: the document as submitted, weights_dtype pinned",
          st == 200 and back == pinned, (st, back))
    st, ans = call(d, "GET", f"/v1/jobs/{jid}/spec", token=BOB)
    check("another user's spec -> 404", st == 404, (st, ans))

    # 3. id prefixes
    for n in (6, 8, 31):
        st, ans = call(d, "GET", f"/v1/jobs/{jid[:n]}")
        check(f"GET /v1/jobs/<{n}-digit prefix> -> the job", st == 200 and ans.get("id") == jid, (st, ans))
    st, ans = call(d, "GET", f"/v1/jobs/{jid[:8]}/spec")
    check("spec by prefix", st == 200 and ans == pinned, st)
    st, text = call(d, "GET", f"/v1/jobs/{jid[:8]}/results")
    check("results by prefix: the job's rows", st == 200 and isinstance(text, str)
          and len([x for x in text.splitlines() if x]) == len(d.rows(jid)), st)
    st, ans = call(d, "GET", f"/v1/jobs/{jid[:5]}")
    check("a 5-digit prefix -> 404", st == 404, (st, ans))
    st, ans = call(d, "GET", f"/v1/jobs/{jid[:8]}", token=BOB)
    check("another user's job by prefix -> 404", st == 404, (st, ans))
    st, ans = call(d, "DELETE", f"/v1/jobs/{jid[:8]}")
    check("DELETE by prefix (a done job): 200, state done", st == 200 and ans.get("state") == "done"
          and ans.get("id") == jid, (st, ans))
    other = "0" * 32 if not jid.startswith("0" * 6) else "f" * 32
    st, ans = call(d, "GET", f"/v1/jobs/{other[:6]}")
    check("a prefix no job has -> 404", st == 404, (st, ans))

    # 4. lists: fields, pages, filters
    ids = [jid, plain] + [d.submit(spec(2, name=f"page {i}", labels={"sweep": "b" if i % 2 else "a"}))
                          for i in range(5)]
    for i in ids:
        d.wait(i)
    st, page = call(d, "GET", "/v1/jobs")
    entry = next((j for j in page.get("jobs", []) if j["id"] == jid), {})
    check("a list entry: name, labels, prompts, variants, times", entry.get("name") == named["name"]
          and entry.get("labels") == named["labels"] and entry.get("prompts") == 3
          and entry.get("variants") == 18 and entry.get("created_at") and entry.get("started_at")
          and entry.get("finished_at"), entry)
    order = [j["id"] for j in page["jobs"]]
    check("newest first", order[:len(ids)] == ids[::-1], order)
    seen, cursor, pages, added = [], None, 0, None
    while True:
        q = "/v1/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        st, page = call(d, "GET", q)
        if st != 200:
            check("a page -> 200", False, (st, page))
            break
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        if pages == 1:  # a job added between pages must not shift the later ones
            added = d.submit(spec(2, name="late"))
        cursor = page.get("next_cursor")
        check(f"page {pages}: next is the same query with the cursor",
              cursor is None and page.get("next") is None
              or page.get("next") == f"/v1/jobs?limit=2&cursor={cursor}", page.get("next"))
        if not cursor or pages > 10:
            break
    check("pages of 2: every job once, in order, the one added meanwhile not among them",
          seen == ids[::-1] and pages == 4, (seen, ids[::-1], pages))
    d.wait(added)
    for q, want in ((f"name={urllib.request.quote(named['name'])}", [jid]),
                    ("name=page%203", [ids[5]]), ("label=sweep=b", [ids[5], ids[3]]),
                    ("label=sweep", ids[:1:-1] + [jid]), ("label=layer=2", [jid]),
                    ("label=nope", []), ("state=done&name=late", [added])):
        st, page = call(d, "GET", "/v1/jobs?" + q)
        got = [j["id"] for j in page.get("jobs", [])] if st == 200 else (st, page)
        check(f"?{q}: {len(want)} jobs", got == want, (got, want))
    st, page = call(d, "GET", "/v1/jobs?label=sweep&limit=1")
    st2, page2 = call(d, "GET", page.get("next") or "/none")
    check("a filtered page's next keeps the filter", st2 == 200 and
          [j["id"] for j in page2.get("jobs", [])] == [ids[5]], (page.get("next"), page2))
    for q, field in (("limit=0", "limit"), ("cursor=zz", "cursor"), ("cursor=" + "0" * 47, "cursor"),
                     ("state=finished", "state"), ("after=" + "0" * 32, "after")):
        st, ans = call(d, "GET", "/v1/jobs?" + q)
        check(f"?{q} -> 400 naming {field}", st == 400 and error_field(ans) == field, (st, ans))
    st, page = call(d, "GET", "/v1/jobs", token=BOB)
    check("bob's list: none of alice's", st == 200 and page.get("jobs") == [], page)
finally:
    d.stop()

# 3 again: two jobs sharing a prefix (planted in the store), then 400 naming the count
twin = jid[:10] + ("0" if jid[10] != "0" else "1") + jid[11:]
if PG:
    cols = subprocess.run(["psql", "-Atq", PG, "-c", "SELECT column_name FROM information_schema.columns "
                           "WHERE table_name = 'hydra_jobs' AND column_name NOT IN ('key', 'id')"],
                          capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", PG, "-c",
                    f"INSERT INTO hydra_jobs (id, {', '.join(cols)}) SELECT '{twin}', {', '.join(cols)} "
                    f"FROM hydra_jobs WHERE id = '{jid}'"], check=True)
else:
    db = sqlite3.connect(d.store)
    key = db.execute("SELECT key FROM jobs WHERE id = ?", (jid,)).fetchone()[0]
    cols = [r[1] for r in db.execute("PRAGMA table_info(jobs)") if r[1] not in ("key", "id")]
    db.execute(f"INSERT INTO jobs (id, {', '.join(cols)}) SELECT ?, {', '.join(cols)} FROM jobs WHERE key = ?",
               (twin, key))
    db.commit()
    db.close()
d = Daemon(HYDRAD, TINY, TOKENS, store=d.store)
try:
    st, ans = call(d, "GET", f"/v1/jobs/{jid[:10]}")
    msg = ((ans or {}).get("error") or {}).get("message", "") if isinstance(ans, dict) else ""
    check("a prefix two jobs share -> 400 saying it matches 2 jobs", st == 400 and "2 jobs" in msg, (st, ans))
    st, ans = call(d, "GET", f"/v1/jobs/{jid[:11]}")
    check("one digit more -> the job", st == 200 and ans.get("id") == jid, (st, ans))
    st, ans = call(d, "DELETE", f"/v1/jobs/{jid[:10]}")
    check("DELETE with the shared prefix -> 400", st == 400, (st, ans))
finally:
    d.stop()
sys.exit(check.exit_code())
