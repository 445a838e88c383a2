"""The few statistics the client computes itself from variant rows (the
server computes the summary rows' own): Student's t quantile and the 95%
interval's half-width, the same definition hydrad's summaries use."""
from __future__ import annotations

import math

import numpy as np


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_quantile(p: float, df: float) -> float:
    """The p-quantile (0.5 <= p < 1) of Student's t with df degrees of freedom."""
    if not 0.5 <= p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile: expected 0.5 <= p < 1 and df > 0, got p={p}, df={df}")
    tail = 2.0 * (1.0 - p)  # P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2)
    lo, hi = 0.0, 1.0
    while _betainc(df / 2.0, 0.5, df / (df + hi * hi)) > tail:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _betainc(df / 2.0, 0.5, df / (df + mid * mid)) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def ci95(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Half-width of the 95% interval of the mean along axis: Student's t
    with n - 1 degrees of freedom times sd / sqrt(n), NaN values left out;
    NaN where fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    n = np.sum(np.isfinite(v), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.nanstd(v, axis=axis, ddof=1) if v.size else np.full(n.shape, np.nan)
    t = np.vectorize(lambda k: t_quantile(0.975, k - 1) if k >= 2 else np.nan, otypes=[float])(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return t * sd / np.sqrt(n)
