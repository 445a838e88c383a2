"""The HTTP client: jobs, streaming results, DataFrames."""
import json
import os
import sys
import time

import pandas as pd
import requests


class HydraError(Exception):
    """An error answered by hydrad (status, message, field) or a transport error."""

    def __init__(self, status, message, field=None):
        self.status, self.message, self.field = status, message, field
        where = f"{field}: " if field else ""
        super().__init__(f"hydrad {status}: {where}{message}")


class Client:
    """A hydrad server. url and token default to $HYDRA_URL and $HYDRA_TOKEN."""

    def __init__(self, url=None, token=None, timeout=30.0):
        self.url = (url or os.environ.get("HYDRA_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.token = token if token is not None else os.environ.get("HYDRA_TOKEN")
        self.timeout = timeout
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    def _request(self, method, path, **kw):
        kw.setdefault("timeout", self.timeout)
        try:
            r = self.session.request(method, self.url + path, **kw)
        except requests.RequestException as e:
            raise HydraError(0, f"cannot reach {self.url}: {e}") from e
        if r.status_code >= 400:
            try:
                body = r.json()
                err = body.get("error", body)
                if isinstance(err, dict):
                    raise HydraError(r.status_code, err.get("message", r.text), err.get("field"))
                raise HydraError(r.status_code, str(err))
            except ValueError:
                raise HydraError(r.status_code, r.text.strip()) from None
        return r

    def health(self):
        return self._request("GET", "/v1/health").json()

    def models(self):
        return self._request("GET", "/v1/models").json()

    def tokenize(self, model, text):
        return self._request("POST", f"/v1/models/{model}/tokenize", json={"text": text}).json()

    def jobs(self):
        return self._request("GET", "/v1/jobs").json()

    def submit(self, spec):
        """Submits a job document (dict or JSON text); returns a Job."""
        data = spec if isinstance(spec, str) else json.dumps(spec)
        r = self._request("POST", "/v1/jobs", data=data.encode(),
                          headers={"Content-Type": "application/json"})
        return Job(self, r.json()["id"])

    def job(self, job_id):
        return Job(self, job_id)


class Job:
    def __init__(self, client, job_id):
        self.client, self.id = client, job_id

    def __repr__(self):
        return f"Job({self.id!r})"

    def status(self):
        return self.client._request("GET", f"/v1/jobs/{self.id}").json()

    def cancel(self):
        return self.client._request("DELETE", f"/v1/jobs/{self.id}").json()

    def follow(self, progress=True, poll_s=0.5, file=sys.stderr):
        """Waits for the job to end, showing progress (tqdm when installed and
        progress is on). Returns the final status; raises HydraError when the
        job failed or was cancelled."""
        bar = None
        if progress:
            try:
                from tqdm import tqdm
                bar = tqdm(total=0, unit="variant", file=file, desc=self.id[:12])
            except ImportError:
                bar = None
        last_line = 0.0
        while True:
            st = self.status()
            p = st.get("progress", {})
            done, total = p.get("variants_done", 0), p.get("variants_total", 0)
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.refresh()
            elif progress and time.time() - last_line > 5:
                eta = p.get("eta_s")
                print(f"job {self.id}: {st['state']} {done}/{total} variants"
                      + (f", ETA {eta:.0f} s" if eta else ""), file=file)
                last_line = time.time()
            if st["state"] in ("done", "failed", "cancelled"):
                break
            time.sleep(poll_s)
        if bar is not None:
            bar.close()
        if st["state"] != "done":
            raise HydraError(0, f"job {self.id} {st['state']}: {st.get('error')}")
        return st

    def rows(self, after=None):
        """Every result row so far (waits for the stream's end when the job runs)."""
        params = {"wait": "stream"}
        if after is not None:
            params["after"] = after
        r = self.client._request("GET", f"/v1/jobs/{self.id}/results", params=params, stream=True,
                                 timeout=None)
        return [json.loads(line) for line in r.iter_lines() if line.strip()]

    def results(self):
        return Results(self.rows())


class Results:
    """A job's rows as DataFrames: header (dict), clean, variants, summary."""

    def __init__(self, rows):
        self.rows = rows
        by = {}
        for r in rows:
            by.setdefault(r.get("type"), []).append(r)
        self.header = (by.get("header") or [{}])[0]
        self.slots = self.header.get("slots", [])
        self.clean = pd.DataFrame(by.get("clean", []))
        self.variants = pd.DataFrame(by.get("variant", []))
        self.summary = pd.DataFrame(by.get("summary", []))
        self.end = (by.get("end") or [None])[0]

    def position_grid(self, method=None, value="total_effect", stat="mean"):
        """A per-position grid's summary ("positions": {"each": ...}) as a
        wide frame: rows the ablated components and groups (in the job's
        order), columns the intervened positions, values the mean of `value`
        over the prompts that have that position. Raises ValueError on a job
        without a grid or a method it lacks."""
        s = self.summary
        if "position" not in s.columns or "grid" not in self.header:
            raise ValueError("this job has no per-position grid (\"positions\": {\"each\": ...})")
        methods = list(s["method"].unique())
        if method is None:
            if len(methods) > 1:
                raise ValueError(f"the job has several methods {methods}: name one")
            method = methods[0]
        if method not in methods:
            raise ValueError(f"the job has no method {method!r} (it has {methods})")
        s = s[s["method"] == method]
        units = [u for u in self.header.get("components", []) if u in set(s["component"])]
        grid = pd.DataFrame(index=units, columns=self.header["grid"], dtype=float)
        for _, r in s.iterrows():
            v = r[value]
            grid.loc[r["component"], int(r["position"])] = v.get(stat) if isinstance(v, dict) else v
        grid.index.name, grid.columns.name = "component", "position"
        return grid

    def effect_table(self, method=None, stat="mean"):
        """The mean effect table as a wide frame: rows the ablated component,
        columns the downstream slots, values the mean change of each slot's
        direct effect (from the summary rows)."""
        s = self.summary
        if method is not None:
            s = s[s["method"] == method]
        data = {r["component"]: r["effects"][stat] if isinstance(r["effects"], dict) else r["effects"]
                for _, r in s.iterrows()}
        return pd.DataFrame.from_dict(data, orient="index", columns=self.slots)
