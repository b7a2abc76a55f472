"""Pareto set over (quality up, estimated device latency down, size down) and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pareto_front(
    points: Sequence[dict[str, Any]], *, quality: str = "val", latency: str = "latency_ms", size: str = "size_mb"
) -> list[int]:
    """Indices of the points no other point dominates (>= quality, <= latency, <= size, one strictly)."""
    front = []
    for i, p in enumerate(points):
        dominated = False
        for j, q in enumerate(points):
            if i == j:
                continue
            ge = q[quality] >= p[quality] and q[latency] <= p[latency] and q[size] <= p[size]
            gt = q[quality] > p[quality] or q[latency] < p[latency] or q[size] < p[size]
            if ge and gt:
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


def plot_pareto(
    points: Sequence[dict[str, Any]],
    front: Sequence[int],
    chosen: int | None,
    dest: Path,
    *,
    title: str,
    metric_name: str,
    budget_ms: float | None = None,
    teacher_metric: float | None = None,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.io import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xs = [p["latency_ms"] for p in points]
    ys = [100 * p["val"] for p in points]
    sizes = [30 + 400 * (p["size_mb"] / max(q["size_mb"] for q in points)) for p in points]
    colors = ["tab:blue" if p.get("feasible", True) else "tab:gray" for p in points]
    ax.scatter(xs, ys, s=sizes, c=colors, alpha=0.5, edgecolors="none", label="candidates (area ~ size)")
    fr = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in fr], [ys[i] for i in fr], "-o", color="tab:orange", ms=4, label="Pareto set")
    labelled: set[str] = set()
    for i in sorted(set(front) | ({chosen} if chosen is not None else set()), key=lambda i: xs[i]):
        lab = points[i].get("skeleton", points[i]["label"])
        if lab in labelled:
            continue
        labelled.add(lab)
        ax.annotate(lab, (xs[i], ys[i]), fontsize=7, xytext=(4, -10), textcoords="offset points")
    if chosen is not None:
        ax.scatter([xs[chosen]], [ys[chosen]], marker="*", s=250, c="tab:red", label="chosen", zorder=5)
    if budget_ms is not None:
        ax.axvline(budget_ms, color="tab:red", ls="--", lw=1, label=f"latency budget {budget_ms:g} ms")
    if teacher_metric is not None:
        ax.axhline(100 * teacher_metric, color="k", ls=":", lw=1, label="teacher")
    ax.set_xscale("log")
    ax.set_xlabel("estimated device latency (ms, log scale)")
    ax.set_ylabel(f"validation {metric_name} (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return dest
