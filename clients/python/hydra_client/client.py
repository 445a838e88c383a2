"""The HTTP client: a server, its jobs, waiting for them, their rows."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, TextIO, Union
from urllib.parse import urlsplit

import pandas as pd
import requests

from .names import translate_spec
from .results import Results

Spec = Union[Dict[str, Any], str, "os.PathLike[str]"]
Status = Dict[str, Any]
ENDED = ("done", "failed", "cancelled")


class HydraError(Exception):
    """An error answered by hydrad (status, message, field), a transport
    error (status 0) or a job that ended without its results (status 0)."""

    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        self.status, self.message, self.field = status, message, field
        where = f"{field}: " if field else ""
        super().__init__(f"hydrad {status}: {where}{message}")


class JobTimeout(HydraError, TimeoutError):
    """Job.wait's timeout passed before the job ended (the job goes on)."""


class Client:
    """A hydrad server.

    url and token default to $HYDRA_URL and $HYDRA_TOKEN (url then to
    http://127.0.0.1:8080); timeout is each request's, in seconds."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("HYDRA_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.token = token if token is not None else os.environ.get("HYDRA_TOKEN")
        self.timeout = timeout
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        try:
            r = self.session.request(method, self.url + path, **kw)
        except requests.RequestException as e:
            raise HydraError(0, f"cannot reach {self.url}: {e}") from e
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                raise HydraError(r.status_code, r.text.strip()) from None
            err = body.get("error", body) if isinstance(body, dict) else body
            if isinstance(err, dict):
                raise HydraError(r.status_code, str(err.get("message", r.text)), err.get("field"))
            raise HydraError(r.status_code, str(err))
        return r

    def health(self) -> Dict[str, Any]:
        """GET /v1/health."""
        return self._request("GET", "/v1/health").json()

    def models(self) -> Dict[str, Any]:
        """The models the server holds (GET /v1/models)."""
        return self._request("GET", "/v1/models").json()

    def tokenize(self, model: str, text: str) -> Dict[str, Any]:
        """The model's token ids and strings for text."""
        return self._request("POST", f"/v1/models/{model}/tokenize", json={"text": text}).json()

    def job_pages(self, limit: Optional[int] = None, **filters: Optional[str]) -> Iterator[Dict[str, Any]]:
        """Every page of GET /v1/jobs (newest first), following the server's
        cursor. filters: name=, label= ("KEY" or "KEY=VALUE"), state=."""
        params: Dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        if limit is not None:
            params["limit"] = limit
        path: Optional[str] = "/v1/jobs"
        while path:
            page = self._request("GET", path, params=params).json()
            yield page
            if page.get("next_cursor"):
                path, params = "/v1/jobs", dict(params, cursor=page["next_cursor"])
            elif page.get("next"):  # a URL (the older form), its query the next page's
                parts = urlsplit(page["next"])
                path, params = parts.path + (f"?{parts.query}" if parts.query else ""), {}
            else:
                path = None

    def jobs(self, name: Optional[str] = None, label: Optional[str] = None,
             state: Optional[str] = None, limit: Optional[int] = None) -> pd.DataFrame:
        """Your jobs (an admin's: everyone's) as a frame, newest first, every
        page: index id; columns name, labels, user, model, state,
        created_at, started_at, finished_at (UTC timestamps), prompts,
        variants, variants_done, rate (variants/s), eta_s, queue_position,
        waiting (why a job waits), rows, error, warning; NaN/None where the
        server does not know. limit caps the rows fetched; name, label
        ("KEY" or "KEY=VALUE") and state filter on the server."""
        found: List[Dict[str, Any]] = []
        for page in self.job_pages(limit=None if limit is None else min(limit, 100),
                                   name=name, label=label, state=state):
            found.extend(page.get("jobs", []))
            if limit is not None and len(found) >= limit:
                found = found[:limit]
                break
        return jobs_frame(found)

    def submit(self, spec: Spec, name: Optional[str] = None) -> "Job":
        """Submits a job document (a dict, JSON text, or the path of a JSON
        file: a str or os.PathLike) and returns its Job. A str that is not
        JSON text (it does not start with "{") is a path: FileNotFoundError
        names it when there is no such file. Component names in
        TransformerLens's spelling are translated to hydra's
        (hydra_client.names.to_hydra; ValueError naming the field and hydra's
        spelling where there is no counterpart). name sets the job's "name".
        Raises HydraError on the server's refusal."""
        if isinstance(spec, os.PathLike) or (isinstance(spec, str) and not spec.lstrip().startswith("{")):
            path = os.fspath(spec)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"submit: no job file {path!r} (a job is a dict, JSON text "
                                        "starting with '{', or the path of a JSON file)")
            with open(path, encoding="utf-8") as f:
                spec = f.read()
        if isinstance(spec, str):
            try:
                doc = json.loads(spec)
            except ValueError:  # the server's answer names what is wrong
                doc = None
        else:
            doc = dict(spec)
        if isinstance(doc, dict):
            doc = translate_spec(doc)
            if name is not None:
                doc["name"] = name
            body = json.dumps(doc).encode()
        else:
            body = spec.encode() if isinstance(spec, str) else b""
        r = self._request("POST", "/v1/jobs", data=body, headers={"Content-Type": "application/json"})
        return Job(self, r.json()["id"])

    def job(self, job_id: str) -> "Job":
        """The job of that id (no request is made)."""
        return Job(self, job_id)


def _time(v: Any) -> Any:
    return pd.NaT if v is None else pd.Timestamp(float(v), unit="s", tz="UTC")


def jobs_frame(jobs: List[Dict[str, Any]]) -> pd.DataFrame:
    """The job list's entries as a frame indexed by id (see Client.jobs)."""
    cols = ["name", "labels", "user", "model", "state", "created_at", "started_at", "finished_at",
            "prompts", "variants", "variants_done", "rate", "eta_s", "queue_position", "waiting",
            "rows", "error", "warning"]
    out = []
    for j in jobs:
        p = j.get("progress") or {}
        out.append({"id": j.get("id"), "name": j.get("name"), "labels": j.get("labels") or {},
                    "user": j.get("user"), "model": j.get("model"), "state": j.get("state"),
                    "created_at": _time(j.get("created_at")), "started_at": _time(j.get("started_at")),
                    "finished_at": _time(j.get("finished_at")),
                    "prompts": _count(j.get("prompts")),
                    "variants": _count(j.get("variants", p.get("variants_total"))),
                    "variants_done": _count(p.get("variants_done")),
                    "rate": _count(p.get("rate")), "eta_s": _count(p.get("eta_s")),
                    "queue_position": _count(j.get("queue_position")), "waiting": j.get("waiting"),
                    "rows": _count(j.get("rows")), "error": j.get("error"), "warning": j.get("warning")})
    df = pd.DataFrame(out, columns=["id"] + cols)
    for c in ("created_at", "started_at", "finished_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df.set_index("id")


def _count(v: Any) -> Any:
    """A number of the job list, NaN where the server sent null or nothing."""
    return float("nan") if v is None else v


class Job:
    """One job on the server: its status, document, rows and results."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client, self.id = client, job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> Status:
        """The job's status (state, progress, times, error)."""
        return self.client._request("GET", f"/v1/jobs/{self.id}").json()

    def spec(self) -> Dict[str, Any]:
        """The job document as the server stored it (GET /v1/jobs/{id}/spec)."""
        return self.client._request("GET", f"/v1/jobs/{self.id}/spec").json()

    def cancel(self) -> Status:
        """Cancels the job (it stops at its next pass)."""
        return self.client._request("DELETE", f"/v1/jobs/{self.id}").json()

    @staticmethod
    def _ended(st: Status, check: bool) -> Status:
        if check and st["state"] != "done":
            raise HydraError(0, f"job {st.get('id')} {st['state']}: {st.get('error')}")
        return st

    def wait(self, timeout: Optional[float] = None, poll_s: float = 0.5, check: bool = True,
             on_status: Optional[Callable[[Status], None]] = None) -> Status:
        """Polls until the job ends; returns its final status. Raises
        JobTimeout after timeout seconds (the job goes on), HydraError when
        the job failed or was cancelled (unless check is False). on_status
        sees every status polled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status()
            if on_status is not None:
                on_status(st)
            if st["state"] in ENDED:
                return self._ended(st, check)
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(0, f"job {self.id} still {st['state']} after {timeout} s")
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))

    async def wait_async(self, timeout: Optional[float] = None, poll_s: float = 0.5,
                         check: bool = True) -> Status:
        """Job.wait for asyncio code (a notebook cell, a gather of several
        jobs): the requests run in a thread, the waits are asyncio.sleep, so
        the event loop is never blocked."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            st = await loop.run_in_executor(None, self.status)
            if st["state"] in ENDED:
                return self._ended(st, check)
            if deadline is not None and loop.time() >= deadline:
                raise JobTimeout(0, f"job {self.id} still {st['state']} after {timeout} s")
            await asyncio.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - loop.time())))

    def __await__(self):
        """``await job`` waits for it (Job.wait_async with no timeout) and
        returns its Results."""
        async def done() -> Results:
            await self.wait_async()
            return await asyncio.get_running_loop().run_in_executor(None, self.results)
        return done().__await__()

    def follow(self, progress: bool = True, poll_s: float = 0.5, file: TextIO = sys.stderr,
               timeout: Optional[float] = None) -> Status:
        """Job.wait showing progress (a tqdm bar when tqdm is installed, else
        a line every 5 s). Returns the final status; raises HydraError when
        the job failed or was cancelled, JobTimeout after timeout seconds."""
        bar = None
        if progress:
            try:
                from tqdm import tqdm
                bar = tqdm(total=0, unit="variant", file=file, desc=self.id[:12])
            except ImportError:
                bar = None
        last_line = [0.0]

        def show(st: Status) -> None:
            p = st.get("progress") or {}
            done, total = p.get("variants_done", 0), p.get("variants_total", 0)
            if bar is not None:
                bar.total, bar.n = total, done
                bar.refresh()
            elif progress and time.time() - last_line[0] > 5:
                rate, eta = p.get("rate"), p.get("eta_s")
                print(f"job {self.id}: {st['state']} {done}/{total} variants"
                      + (f", {rate:.1f}/s" if rate is not None else "")
                      + (f", ETA {eta:.0f} s" if eta is not None else "")
                      + (f" ({st['waiting']})" if st.get("waiting") else ""), file=file)
                last_line[0] = time.time()

        try:
            return self.wait(timeout=timeout, poll_s=poll_s, on_status=show)
        finally:
            if bar is not None:
                bar.close()

    def rows(self, after: Optional[int] = None) -> List[Dict[str, Any]]:
        """Every result row (waits for the stream's end while the job runs)."""
        params: Dict[str, Any] = {"wait": "stream"}
        if after is not None:
            params["after"] = after
        r = self.client._request("GET", f"/v1/jobs/{self.id}/results", params=params, stream=True,
                                 timeout=None)
        return [json.loads(line) for line in r.iter_lines() if line.strip()]

    def results(self) -> Results:
        """The job's rows as Results (frames, effect table, grid, tensor).
        Of a job that failed or was cancelled (its stream's end row says so):
        HydraError naming the job's error when no result row was stored, else
        a RuntimeWarning naming it, and Results of the rows stored before it
        ended."""
        rows = self.rows()
        end = rows[-1] if rows and rows[-1].get("type") == "end" else {}
        if end.get("state") in ("failed", "cancelled"):
            why = f"job {self.id} {end['state']}: {end.get('error')}"
            if not any(r.get("type") in ("clean", "variant") for r in rows):
                raise HydraError(0, why + " (no result row was stored)")
            warnings.warn(f"{why}; these results hold the {len(rows) - 1} rows stored before it "
                          "ended", RuntimeWarning, stacklevel=2)
        return Results(rows)
