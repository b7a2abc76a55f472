"""Activation range searches over a histogram, hand-written where a toolchain ships none (NumPy only).

- :func:`percentile_threshold`: the magnitude below which a share of the values lies (outliers clipped); used by
  the PT2E percentile observer (torchao ships no percentile observer).
- :func:`kl_threshold`: TensorRT's entropy calibration (Migacz, "8-bit inference with TensorRT", GTC 2017): the
  clipping threshold whose quantized distribution is closest, in KL divergence, to the float one; used by the
  PT2E entropy observer (torchao ships none).
- :func:`mse_range`: the range that minimises the expected squared quantization error (clipping error outside,
  uniform rounding noise ``step**2 / 12`` inside); used for ONNX ``mse`` (onnxruntime ships no MSE calibrator).

All work on a histogram of counts and return float bounds; the callers turn them into their toolchain's types.
"""

from __future__ import annotations

import numpy as np

#: the share of magnitudes kept by ``percentile`` calibration (onnxruntime's default, TensorRT's 99.999)
PERCENTILE = 99.999


def magnitude_histogram(hist: np.ndarray, lo: float, hi: float, bins: int = 2048) -> tuple[np.ndarray, float]:
    """Fold a histogram of values over ``[lo, hi]`` (equal bins) into one of magnitudes over ``[0, amax]``
    (``bins`` equal bins). Each source bin is split into 8 sub-bins first, so that the coarser or shifted
    destination bins are filled smoothly (no empty bins from aliasing, which the KL search would punish)."""
    hist = np.asarray(hist, dtype=np.float64)
    amax = max(abs(lo), abs(hi))
    if amax == 0.0 or hist.sum() == 0 or hi <= lo:
        return np.zeros(bins), amax
    up = 8
    n = len(hist)
    width = (hi - lo) / n
    centers = lo + (np.arange(n * up) + 0.5) * (width / up)
    idx = np.minimum((np.abs(centers) / amax * bins).astype(np.int64), bins - 1)
    return np.bincount(idx, weights=np.repeat(hist, up) / up, minlength=bins), amax


def percentile_threshold(abs_hist: np.ndarray, amax: float, percentile: float = PERCENTILE) -> float:
    """The upper edge of the first bin of a magnitude histogram at which ``percentile`` % of the values lie."""
    total = abs_hist.sum()
    if total == 0:
        return amax
    cdf = np.cumsum(abs_hist) / total
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return min(amax, (i + 1) * amax / len(abs_hist))


def kl_threshold(abs_hist: np.ndarray, amax: float, levels: int = 128, max_candidates: int = 512) -> float:
    """TensorRT's KL-divergence threshold over a magnitude histogram: for each candidate end bin ``i``, the
    reference ``p`` is ``hist[:i]`` with the clipped outliers added to its last bin, the candidate ``q`` is
    ``hist[:i]`` merged into ``levels`` quantization bins and spread back evenly over the bins where ``p`` is
    not zero; the ``i`` of least ``KL(p || q)`` gives the threshold. Candidates are evenly spaced, at most
    ``max_candidates`` of them. (TensorRT smooths zeros with an epsilon; here ``q`` is floored instead, which
    only matters where clipped outliers land in an empty region: such a candidate loses.)"""
    hist = np.asarray(abs_hist, dtype=np.float64)
    n = len(hist)
    total = hist.sum()
    if n <= levels or total == 0:
        return amax
    cum = np.cumsum(hist)
    candidates = np.unique(np.linspace(levels, n, min(max_candidates, n - levels + 1)).astype(np.int64))
    best_kl, best_i = np.inf, n
    for i in candidates:
        sliced = hist[:i]
        p = sliced.copy()
        p[-1] += total - cum[i - 1]
        merged = i // levels
        starts = np.arange(levels) * merged
        group = np.minimum(np.arange(i) // merged, levels - 1)
        nonzero = p != 0
        q_sum = np.add.reduceat(sliced, starts)
        q_norm = np.add.reduceat(nonzero.astype(np.float64), starts)
        q = np.where(nonzero, q_sum[group] / np.maximum(q_norm[group], 1.0), 0.0)
        if q.sum() == 0:
            continue
        p /= p.sum()
        q /= q.sum()
        kl = float(np.sum(p[nonzero] * np.log(p[nonzero] / np.maximum(q[nonzero], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, int(i)
    return best_i * amax / n


def clip_to(threshold: float, lo: float, hi: float) -> tuple[float, float]:
    """The symmetric clipping range ``[-threshold, threshold]`` intersected with the observed ``[lo, hi]``."""
    return max(lo, -threshold), min(hi, threshold)


def mse_range(
    hist: np.ndarray, edges: np.ndarray, lo: float, hi: float, levels: int = 256, steps: int = 128, rounds: int = 3
) -> tuple[float, float]:
    """The range ``[a, b]`` (``lo <= a <= 0 <= b <= hi``) of least expected squared error for ``levels``-level
    affine quantization of the values a histogram describes (bins ``edges``): values outside are clipped (error:
    the distance squared), values inside are rounded (error: ``step**2 / 12``). Coordinate descent over ``steps``
    candidate fractions of ``hi`` and of ``lo`` for each end."""
    h = np.asarray(hist, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    c = (e[:-1] + e[1:]) / 2
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if h.sum() == 0 or hi - lo <= 0:
        return lo, hi
    fractions = np.linspace(1.0 / steps, 1.0, steps)

    def error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        below = np.maximum(a[:, None] - c, 0.0)
        above = np.maximum(c - b[:, None], 0.0)
        inside = ((below == 0) & (above == 0)) @ h
        step = (b - a) / (levels - 1)
        return (below**2 + above**2) @ h + inside * step**2 / 12

    a, b = lo, hi
    for _ in range(rounds):
        if hi > 0:
            cand = hi * fractions
            b = float(cand[np.argmin(error(np.full(steps, a), cand))])
        if lo < 0:
            cand = lo * fractions
            a = float(cand[np.argmin(error(cand, np.full(steps, b)))])
    return a, b


__all__ = ["PERCENTILE", "clip_to", "kl_threshold", "magnitude_histogram", "mse_range", "percentile_threshold"]
