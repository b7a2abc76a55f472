"""Markdown for the student-search section of a report, and its prose (the search writes data only)."""

from __future__ import annotations

from .schema import ChosenStudent, SearchReport
from .text import bracket, percent


def retention_text(chosen: ChosenStudent | None) -> str:
    """``", 88.0% [79, 97] of the teacher's"``: the chosen student's retention of the teacher's test metric with its
    paired interval, empty where unknown."""
    if chosen is None or chosen.test_retention is None:
        return ""
    return f", {percent(chosen.test_retention, chosen.test_retention_ci95, 1)} of the teacher's"


def _top_rung_best(search: SearchReport) -> tuple[float, str]:
    """The best validation metric at the last rung, and its skeleton (the first such point)."""
    top = max(p.rung for p in search.points)
    best = max((p for p in search.points if p.rung == top), key=lambda p: p.val)
    return best.val, best.skeleton


def why_text(search: SearchReport, device: str, metric_name: str) -> str:
    """Why the search chose its student: the selection rule with its figures."""
    chosen = next(p for p in search.points if p.chosen)
    best_q, _ = _top_rung_best(search)
    tol = search.options.get("quality_tolerance", 0.0)
    return (
        f"fastest (estimated {chosen.latency_ms:.3g} ms on {device}) of the candidates within "
        f"{100 * tol:.1f} points of the best validation {metric_name} "
        f"({100 * best_q:.2f}%) at the last rung, and fits every budget"
    )


def summary_text(search: SearchReport, device: str, metric_name: str) -> str:
    """The search in one paragraph: candidates, what fitted, what trained, what was chosen and why."""
    ch = search.chosen
    if ch is None:
        return "No candidate fits every budget (nothing was trained)."
    n = len(search.candidates)
    costed = len({(c.candidate.width, c.candidate.drop) for c in search.candidates})
    feasible = sum(1 for c in search.candidates if c.feasible)
    params = ch.params or 1
    unresolved = ch.finalists_within_noise
    top = max(s.rung for s in search.scores.values())
    finalists = sum(1 for s in search.scores.values() if s.rung == top)
    _, best_key = _top_rung_best(search)
    return (
        f"{n} candidates ({costed} skeletons x {n // max(1, costed)} schemes"
        + (f"; {len(search.not_costed)} larger skeletons not costed" if search.not_costed else "")
        + "); "
        f"{feasible} fit the budgets before training; "
        f"{len(search.scores)} skeletons trained over {len(search.rungs)} rung(s). Chosen: **{ch.candidate}** "
        f"({ch.params:,} parameters, {search.teacher_params / max(1, params):.1f}x fewer than "
        f"the teacher), test {metric_name} {percent(ch.test, ch.test_ci95)} in torch"
        + retention_text(ch)
        + f" — {why_text(search, device, metric_name)}."
        + (
            f" The validation split cannot separate {len(unresolved)} of the other {finalists - 1} "
            f"finalist skeletons from the best one, {best_key} (paired 95% interval of the gap reaches 0): "
            f"{', '.join(unresolved)}."
            if unresolved
            else ""
        )
    )


def render_search(search: SearchReport, device: str, metric_name: str) -> list[str]:
    lines = ["## Student search", "", summary_text(search, device, metric_name), ""]
    if search.plot:
        lines += [f"![Pareto set]({search.plot})", ""]
    ch = search.chosen
    if ch:
        lines += [
            f"- chosen: `{ch.candidate}` — width {ch.width:g}, {ch.drop} block(s) dropped, scheme "
            f"{ch.scheme}, {ch.params or 0:,} parameters ({ch.compression:.1f}x fewer than the "
            f"teacher); final training {ch.final_epochs} epochs{' with QAT' if ch.qat else ''}"
            + (f", via teacher assistant {ch.assistant['skeleton']}" if ch.assistant else "")
            + (
                f", starting from its {ch.warm_start['rung']} trial ({ch.warm_start['epochs']} epoch(s) on the rung's "
                "samples)"
                if ch.warm_start
                else ""
            )
            + (f"; agreement with the teacher on validation {ch.fidelity:.1%}" if ch.fidelity is not None else ""),
            f"- validation {percent(ch.val, ch.val_ci95)} ({ch.val_measured}), "
            f"test {percent(ch.test, ch.test_ci95)} ({ch.test_measured})"
            + retention_text(ch)
            + "; measured"
            + (
                "; [a, b]: 95% interval over the split's samples (paired for the retention)"
                if ch.test_ci95 is not None
                else ""
            ),
            f"- why: {why_text(search, device, metric_name)}",
            "",
        ]
    pts = search.points
    if pts:
        gap = any(p.val_gap_ci95 is not None for p in pts)
        lines += [
            "| candidate | rung | val | "
            + ("gap to the best finalist | " if gap else "")
            + "est. latency (E) | size | params | Pareto | chosen |",
            "|---|---|---|" + ("---|" if gap else "") + "---|---|---|---|---|",
        ]
        for p in sorted(pts, key=lambda p: (-p.val, p.latency_ms)):
            g = ""
            if gap:
                ci = p.val_gap_ci95
                g = (
                    f"{100 * (p.val_gap or 0.0):+.2f} pt{bracket(ci, signed=True)} | "
                    if ci
                    else "best | "
                    if p.best_finalist
                    else "— | "
                )
            lines.append(
                f"| `{p.key}` | {p.rung} | {percent(p.val, p.val_ci95)} | {g}"
                f"{p.latency_ms:.3g} ms | "
                f"{p.size_mb * 1024:.1f} KB | {p.params:,} | {'●' if p.pareto else ''} | "
                f"{'✅' if p.chosen else ''} |"
            )
        lines.append("")
    dropped = [c for c in search.candidates if not c.feasible]
    if dropped:
        lines += [f"Dropped by the cost filter before training ({len(dropped)}):", ""]
        for c in dropped:
            lines.append(f"- `{c.candidate.key}`: {c.reason}")
        lines.append("")
    skipped = search.not_costed
    if skipped:
        lines += [
            f"Not costed ({len(skipped)} skeletons; every candidate of a smaller one breaks a budget that only "
            "grows with size):",
            "",
        ]
        lines += [f"- `{d.skeleton}`: {d.reason}" for d in skipped]
        lines.append("")
    return lines
