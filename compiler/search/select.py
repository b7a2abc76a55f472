"""Selection among the last rung's candidates (skeleton x feasible scheme): the best validation metric q*; the
chosen candidate is the one with the lowest estimated device latency whose metric is >= q* - tolerance (ties:
smaller). Each finalist also gets its paired validation gap to the best one (can the split tell them apart?).
Where the metric cannot rank the finalists (the best within the tolerance of 0: e.g. a word accuracy of 0 after a
search the time budget cut short), the finalist that follows the teacher closest on validation is chosen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.quantity import margin_text
from ..core.stats import drop_interval, mean_interval
from ..profiles import DeviceProfile
from ..report.schema import CandidateRecord
from .halving import Halving
from .pareto import pareto_front


@dataclass
class Selection:
    #: every trained candidate that fits (dicts: the Pareto set and its plot read them), pareto / chosen marked
    points: list[dict[str, Any]]
    front: list[int]
    chosen: dict[str, Any]
    #: finalists other than the best whose validation gap to it reaches 0 (None without per-sample scores)
    unresolved: list[str] | None
    #: chosen by agreement with the teacher: the metric could not rank the finalists
    by_agreement: bool = False


def select(candidates: Sequence[CandidateRecord], halving: Halving, quality_tolerance: float) -> Selection:
    scores = halving.scores
    top_rung = max(v[0] for v in scores.values())
    finalists = [k for k, v in scores.items() if v[0] == top_rung]
    points: list[dict[str, Any]] = []
    for c in candidates:
        k = c.candidate.skeleton
        if k in scores and c.feasible:
            points.append(
                {
                    "key": c.candidate.key,
                    "skeleton": k,
                    "scheme": c.candidate.scheme,
                    "val": scores[k][1],
                    "rung": scores[k][0],
                    "latency_ms": c.latency_ms,
                    "size_mb": c.size_mb,
                    "params": c.params,
                    "feasible": True,
                    "label": f"{k} {c.candidate.scheme.replace('int8_static_per_channel', 'int8s')}",
                    "fidelity": halving.fidelity.get(k),
                }
            )
    final_pts = [p for p in points if p["skeleton"] in finalists]
    best_q = max(p["val"] for p in final_pts)
    by_agreement = halving.uninformative(finalists, quality_tolerance)
    if by_agreement:
        best_fid = max(halving.fidelity[k] or 0.0 for k in finalists)
        eligible = [p for p in final_pts if p["fidelity"] == best_fid]
    else:
        eligible = [p for p in final_pts if p["val"] >= best_q - quality_tolerance]
    chosen = min(eligible, key=lambda p: (p["latency_ms"], p["size_mb"], -p["val"]))
    best_key = max(final_pts, key=lambda p: p["val"])["skeleton"]
    unresolved = _validation_noise(points, halving.val_scores, finalists, best_key)
    front = pareto_front(points)
    for i, p in enumerate(points):
        p["pareto"] = i in front
        p["chosen"] = p["key"] == chosen["key"]
    return Selection(points, front, chosen, unresolved, by_agreement)


def _validation_noise(
    points: list[dict[str, Any]], val_scores: dict[str, np.ndarray | None], finalists: list[str], best: str
) -> list[str] | None:
    """Give each point its validation interval, and each finalist its paired gap to the best finalist
    (``val_gap_ci95``: best minus this one, on the same validation samples). Returns the finalists other than the
    best whose gap interval reaches 0 (the split cannot tell them apart), or None without per-sample scores."""
    ci = {k: mean_interval(v) for k, v in val_scores.items() if v is not None}
    ref = val_scores.get(best)
    gaps = {
        k: drop_interval(ref, v)
        for k in finalists
        if k != best and (v := val_scores.get(k)) is not None and ref is not None and len(v) == len(ref)
    }
    for p in points:
        if p["skeleton"] in ci:
            p["val_ci95"] = list(ci[p["skeleton"]])
        if p["skeleton"] == best and gaps:
            p["best_finalist"] = True
        if p["skeleton"] in gaps:
            p["val_gap"] = float(ref.mean() - val_scores[p["skeleton"]].mean())  # type: ignore[union-attr]
            p["val_gap_ci95"] = list(gaps[p["skeleton"]])
    if ref is None or len(gaps) < len(finalists) - 1:
        return None
    return [k for k in finalists if k in gaps and gaps[k][0] <= 0]


def cost_pareto(flat: Sequence[CandidateRecord]) -> list[dict[str, Any]]:
    """The Pareto set of the candidates by cost alone (nothing was trained: every ``val`` is 0)."""
    pts = [
        {
            "key": c.candidate.key,
            "val": 0.0,
            "latency_ms": c.latency_ms,
            "size_mb": c.size_mb,
            "broken": [v.budget for v in c.broken],
        }
        for c in flat
    ]
    return [pts[i] for i in pareto_front(pts)]


def nearest_message(profile: DeviceProfile, costs: Sequence[CandidateRecord], n: int = 3) -> str:
    near = sorted(costs, key=lambda c: (c.worst_overshoot, c.latency_ms))[:n]
    parts = []
    for c in near:
        broken = ", ".join(
            f"{v.budget} {v.value:.3g} > {v.limit:g} {v.unit} (+{margin_text(v.margin_pct)})" for v in c.broken
        )
        parts.append(f"{c.candidate.key}: {broken}")
    return f"no student candidate meets every budget of {profile.name}; nearest: " + "; ".join(parts)
