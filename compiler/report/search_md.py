"""Markdown for the student-search section of a report."""

from __future__ import annotations

from typing import Any

from ..measure.sampling import bracket, percent


def retention_text(q: dict[str, Any]) -> str:
    """``", 88.0% [79, 97] of the teacher's"``: the chosen student's retention of the teacher's test metric with its
    paired interval (``search.chosen``'s test_retention / test_retention_ci95), empty where unknown."""
    if "test_retention" not in q:
        return ""
    return f", {percent(q['test_retention'], q.get('test_retention_ci95'), 1)} of the teacher's"


def render_search(search: dict[str, Any]) -> list[str]:
    lines = ["## Student search", ""]
    if search.get("summary"):
        lines += [search["summary"], ""]
    if search.get("plot"):
        lines += [f"![Pareto set]({search['plot']})", ""]
    ch = search.get("chosen")
    if ch:
        lines += [
            f"- chosen: `{ch['candidate']}` — width {ch['width']:g}, {ch['drop']} block(s) dropped, scheme "
            f"{ch['scheme']}, {ch.get('params') or 0:,} parameters ({ch.get('compression', 0):.1f}x fewer than the "
            f"teacher); final training {ch['final_epochs']} epochs{' with QAT' if ch.get('qat') else ''}"
            + (f", via teacher assistant {ch['assistant']['skeleton']}" if ch.get("assistant") else ""),
            f"- validation {percent(ch['val'], ch.get('val_ci95'))} ({ch.get('val_measured', 'torch')}), "
            f"test {percent(ch['test'], ch.get('test_ci95'))} ({ch.get('test_measured', 'torch')})"
            + retention_text(ch) + "; measured" + ("; [a, b]: 95% interval over the split's samples (paired for the retention)"
                              if "test_ci95" in ch else ""),
            f"- why: {ch['why']}",
            "",
        ]
    pts = search.get("points") or []
    if pts:
        gap = any("val_gap_ci95" in p for p in pts)
        lines += ["| candidate | rung | val | " + ("gap to the best finalist | " if gap else "")
                  + "est. latency (E) | size | params | Pareto | chosen |",
                  "|---|---|---|" + ("---|" if gap else "") + "---|---|---|---|---|"]
        for p in sorted(pts, key=lambda p: (-p["val"], p["latency_ms"])):
            g = ""
            if gap:
                ci = p.get("val_gap_ci95")
                g = (f"{100 * p['val_gap']:+.2f} pt{bracket(ci, signed=True)} | " if ci
                     else "best | " if p.get("best_finalist") else "— | ")
            lines.append(f"| `{p['key']}` | {p['rung']} | {percent(p['val'], p.get('val_ci95'))} | {g}"
                         f"{p['latency_ms']:.3g} ms | "
                         f"{p['size_mb'] * 1024:.1f} KB | {p['params']:,} | {'●' if p.get('pareto') else ''} | "
                         f"{'✅' if p.get('chosen') else ''} |")
        lines.append("")
    dropped = [c for c in search.get("candidates", []) if not c.get("feasible")]
    if dropped:
        lines += [f"Dropped by the cost filter before training ({len(dropped)}):", ""]
        for c in dropped:
            lines.append(f"- `{c['candidate']['key']}`: {c['reason']}")
        lines.append("")
    skipped = search.get("not_costed") or []
    if skipped:
        lines += [f"Not costed ({len(skipped)} skeletons; every candidate of a smaller one breaks a budget that only "
                  "grows with size):", ""]
        lines += [f"- `{d['skeleton']}`: {d['reason']}" for d in skipped]
        lines.append("")
    return lines
