"""A job's result rows as tidy pandas frames, its effect table, its
per-position grid and its effect tensor (xarray)."""
from __future__ import annotations

import numbers
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .stats import ci95 as _ci95

Row = Dict[str, Any]

# Summary fields whose value is {"mean": .., "ci95": ..}: flattened to
# FIELD_mean, FIELD_ci95. "fit" ({"slope", "r2"}) becomes slope, r2.
_FIT_KEYS = {"slope": "slope", "r2": "r2"}
_STATS = ("mean", "ci95", "sd", "n")


def _num(v: Any) -> Any:
    """None (JSON null: an undefined statistic) as NaN."""
    return np.nan if v is None else v


def _flat_summary(row: Row) -> Row:
    out: Row = {}
    for key, v in row.items():
        if key in ("type", "effects"):
            continue
        if key == "fit" and isinstance(v, dict):
            for k, x in v.items():
                out[_FIT_KEYS.get(k, f"fit_{k}")] = _num(x)
        elif isinstance(v, dict):
            for k, x in v.items():
                out[f"{key}_{k}"] = _num(x)
        else:
            out[key] = _num(v)
    for k in _FIT_KEYS.values():  # a job without a fit still has the columns
        out.setdefault(k, np.nan)
    return out


def _frame(rows: List[Row]) -> pd.DataFrame:
    """Rows as a frame; a column of numbers and nulls is float (null NaN)."""
    df = pd.DataFrame([{k: v for k, v in r.items() if k != "type"} for r in rows])
    for col in df.columns:
        vals = df[col].dropna()
        if len(vals) < len(df) and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                       for v in vals):
            df[col] = df[col].astype(float)
    return df


class Results:
    """A job's rows as pandas frames.

    Attributes:
        rows: every row as the server sent it (dicts).
        header: the header row (model, family, n_layers, components: the
            ablated units in order, methods, slots: the downstream components
            of the effect table, grid: the positions of a per-position job).
        clean: one row per prompt (prompt, tokens, target, target_token,
            logit, direct_effects: a list over ``slots``, ...).
        variants: one row per prompt x ablated unit x method (x position),
            flat columns (total_effect, direct_effect, compensation,
            compensation_attn, compensation_mlp, norm_share, effects: a list
            over ``slots``).
        summary: one row per ablated unit (x method where the job has
            several, x position on a per-position job), indexed by
            component[, method][, position], flat columns
            ``total_effect_mean``, ``total_effect_ci95``,
            ``direct_effect_mean``, ..., ``slope``, ``r2`` (NaN where the
            server reports them undefined), ``n``.
        end: the end row (None while the job runs).
    """

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows: List[Row] = list(rows)
        by: Dict[Any, List[Row]] = {}
        for r in self.rows:
            by.setdefault(r.get("type"), []).append(r)
        self.header: Row = (by.get("header") or [{}])[0]
        self.slots: List[str] = list(self.header.get("slots", []))
        self._summary_rows = by.get("summary", [])
        self._variant_rows = by.get("variant", [])
        self.clean = _frame(by.get("clean", []))
        self.variants = _frame(self._variant_rows)
        self.methods: List[str] = list(dict.fromkeys(
            [r["method"] for r in self._summary_rows + self._variant_rows if "method" in r]))
        self.grid: Optional[List[Any]] = self.header.get("grid")
        # a per-position grid's rows carry "position"; a grid over named spans
        # ({"each": "spans"}) carries "span" (its grid: the span names)
        self.grid_key: str = "span" if self.header.get("grid_of") == "span" else "position"
        self.summary = self._summary_frame()
        ends = by.get("end") or []
        self.end: Optional[Row] = ends[0] if ends else None

    def __repr__(self) -> str:
        return (f"Results(model={self.header.get('model')!r}, prompts={len(self.clean)}, "
                f"units={len(self.header.get('components', []))}, methods={self.methods}, "
                f"rows={len(self.rows)})")

    @property
    def model(self) -> str:
        """The model's name on the server."""
        return str(self.header.get("model", ""))

    @property
    def n_prompts(self) -> int:
        """How many prompts the job ran."""
        return int(self.header.get("n_prompts", len(self.clean)))

    def _summary_frame(self) -> pd.DataFrame:
        df = pd.DataFrame([_flat_summary(r) for r in self._summary_rows])
        if df.empty:
            return df
        keys = ["component"]
        if len(self.methods) > 1:
            keys.append("method")
        if self.grid_key == "position" and "position" in df.columns:
            df["position"] = df["position"].astype(int)
            keys.append("position")
        elif self.grid_key == "span" and "span" in df.columns:
            keys.append("span")
        return df.set_index(keys)

    def _method(self, method: Optional[str]) -> str:
        if not self.methods:
            raise ValueError("the job has no variant or summary rows yet")
        if method is None:
            if len(self.methods) > 1:
                raise ValueError(f"the job has several methods {self.methods}: name one (method=...)")
            return self.methods[0]
        if method not in self.methods:
            raise ValueError(f"the job has no method {method!r} (it has {self.methods})")
        return method

    def _units(self, rows: List[Row]) -> List[str]:
        present = list(dict.fromkeys(r["component"] for r in rows))
        order = [u for u in self.header.get("components", []) if u in set(present)]
        return order + [u for u in present if u not in set(order)]

    def _position(self, position: Optional[Any]) -> Optional[Any]:
        """A grid cell named by position= (a position, or a span's name on a
        grid over spans)."""
        if self.grid is None:
            if position is not None:
                raise ValueError("position= is for a per-position job (\"positions\": {\"each\": ...}); "
                                 "this job has none")
            return None
        if position is None:
            raise ValueError(f"this job has a per-{self.grid_key} grid ({self.grid_key}s {self.grid}): "
                             "name one (position=...) or use position_grid()")
        if position not in self.grid:
            raise ValueError(f"the job has no {self.grid_key} {position!r} (its grid is {self.grid})")
        return position

    def effect_table(self, method: Optional[str] = None, stat: str = "mean",
                     position: Optional[int] = None) -> pd.DataFrame:
        """The effect table as a wide frame: rows the ablated components (in
        the job's order), columns the downstream ``slots``, values `stat` over
        prompts of the change of each slot's direct effect when the row's
        component is ablated (the paper's Figs. 1, 3, 8; the diagonal is
        minus the ablated component's own direct effect).

        stat: "mean" (the server's summary), "ci95" (half-width of the 95%
        interval: Student's t with n - 1 degrees of freedom), "sd" or "n",
        computed from the variant rows. method: required where the job has
        several. position: required on a per-position job.
        Raises ValueError on a method or position the job lacks or an
        unknown stat."""
        if stat not in _STATS:
            raise ValueError(f"stat {stat!r}: expected one of {list(_STATS)}")
        method = self._method(method)
        position = self._position(position)

        def keep(r: Row) -> bool:
            return r.get("method") == method and (position is None or r.get(self.grid_key) == position)

        if stat == "mean":
            rows = [r for r in self._summary_rows if keep(r)]
            data: Dict[str, List[Any]] = {}
            for r in rows:
                e = r.get("effects")
                mean = e.get("mean") if isinstance(e, dict) else e
                data[r["component"]] = list(mean) if mean is not None else []
            units = self._units(rows)
            table = pd.DataFrame([[_num(x) for x in data[u]] for u in units], index=units,
                                 columns=self.slots, dtype=float)
        else:
            tensor, units = self._tensor(method, position)  # prompt x unit x slot
            if stat == "n":
                values = np.isfinite(tensor).sum(axis=0).astype(float)
            elif stat == "sd":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    values = np.nanstd(tensor, axis=0, ddof=1)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    values = _ci95(tensor, axis=0)
            table = pd.DataFrame(values, index=units, columns=self.slots, dtype=float)
        table.index.name, table.columns.name = "ablated", "downstream"
        return table

    def _tensor(self, method: str, position: Optional[int]):
        """The variant rows' effects as an array prompt x unit x slot (NaN
        where a prompt has no row) and the unit names."""
        rows = [r for r in self._variant_rows
                if r.get("method") == method and (position is None or r.get(self.grid_key) == position)]
        units = self._units(rows)
        prompts = self._prompts()
        pi = {p: k for k, p in enumerate(prompts)}
        ui = {u: k for k, u in enumerate(units)}
        out = np.full((len(prompts), len(units), len(self.slots)), np.nan)
        for r in rows:
            out[pi[r["prompt"]], ui[r["component"]]] = [_num(x) for x in r["effects"]]
        return out, units

    def _prompts(self) -> List[int]:
        if len(self.clean) and "prompt" in self.clean.columns:
            return sorted(int(p) for p in self.clean["prompt"])
        return sorted({int(r["prompt"]) for r in self._variant_rows})

    def position_grid(self, method: Optional[str] = None, value: str = "total_effect",
                      stat: str = "mean") -> pd.DataFrame:
        """A per-position grid's summary ("positions": {"each": ...}) as a
        wide frame: rows the ablated components and groups (in the job's
        order), columns the intervened positions, values `stat` ("mean" or
        "ci95") of `value` (total_effect, direct_effect, compensation, ...)
        over the prompts that have that position. Raises ValueError on a job
        without a grid, a method it lacks or a value it does not report."""
        if self.grid is None or self.grid_key not in self.summary.index.names:
            raise ValueError("this job has no per-position grid (\"positions\": {\"each\": ...})")
        method = self._method(method)
        col = f"{value}_{stat}"
        if col not in self.summary.columns:
            have = sorted({c.rsplit("_", 1)[0] for c in self.summary.columns if c.endswith("_mean")})
            raise ValueError(f"the summary has no {col!r} (values: {have}; stats: mean, ci95)")
        s = self.summary.reset_index()
        s = s[s["method"] == method] if "method" in s.columns else s
        units = self._units([{"component": c} for c in s["component"]])
        grid = pd.DataFrame(index=units, columns=self.grid, dtype=float)
        for comp, pos, v in zip(s["component"], s[self.grid_key], s[col]):
            grid.loc[comp, int(pos) if self.grid_key == "position" else pos] = v
        grid.index.name, grid.columns.name = "component", self.grid_key
        return grid

    def to_xarray(self, method: Optional[str] = None, position: Optional[int] = None):
        """The effect tensor as an ``xarray.DataArray`` with dims
        (prompt, ablated, downstream): the change of each downstream slot's
        direct effect when the ablated unit is ablated, per prompt (NaN where
        a prompt has no row). An ``ablation_method`` dim leads where the job
        has several methods and none is named (not "method": DataArray.sel
        takes a keyword of that name); a ``position`` dim follows ``ablated`` on a
        per-position job unless one position is named. attrs: model, slots'
        meaning, n_prompts. Raises ImportError (saying how to install it)
        without xarray."""
        try:
            import xarray as xr
        except ImportError as e:
            raise ImportError("Results.to_xarray needs xarray: pip install xarray "
                              "(or pip install 'hydra-client[xarray]')") from e
        methods = self.methods if method is None and len(self.methods) > 1 else [self._method(method)]
        if self.grid is not None and position is not None:
            self._position(position)
        positions = [position] if self.grid is None or position is not None else list(self.grid)
        per_method = []
        units: List[str] = self._units(self._variant_rows)
        for m in methods:
            per_pos = []
            for p in positions:
                t, us = self._tensor(m, p)
                full = np.full((t.shape[0], len(units), t.shape[2]), np.nan)
                for k, u in enumerate(us):
                    full[:, units.index(u)] = t[:, k]
                per_pos.append(full)
            per_method.append(np.stack(per_pos, axis=2))  # prompt x unit x position x slot
        data = np.stack(per_method, axis=0)
        key = self.grid_key
        dims = ["ablation_method", "prompt", "ablated", key, "downstream"]
        coords: Dict[str, Any] = {"ablation_method": methods, "prompt": self._prompts(), "ablated": units,
                                  key: positions, "downstream": self.slots}
        if len(methods) == 1 and (method is not None or len(self.methods) <= 1):
            data, dims = data[0], dims[1:]
            del coords["ablation_method"]
        if self.grid is None or position is not None:
            axis = dims.index(key)
            data = data.take(0, axis=axis)
            dims.remove(key)
            del coords[key]
        return xr.DataArray(data, dims=dims, coords=coords, name="effect",
                            attrs={"model": self.model, "n_prompts": self.n_prompts,
                                   "description": "change of the downstream component's direct effect "
                                                  "on the target logit when the ablated unit is ablated"})
