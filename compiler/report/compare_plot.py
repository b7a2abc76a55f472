"""The picture of ``adaptc compare``: every artifact of both builds, metric against estimated device latency.

A table says which numbers moved; the plot shows where each file went. Baseline files are hollow grey, the
candidate's are filled (one colour per format), an arrow joins the two builds' files of one name, a star marks
what each build ships, the bars are the metric's 95% interval over the test samples, the dashed line is the
candidate's latency budget. Files without a metric measured on this host (CoreML off macOS) or without a device
estimate cannot be placed; the caption counts them.

Hand-written: a plot of adaptc's own reports (matplotlib draws it).
"""

from __future__ import annotations

from pathlib import Path

from .compare import load_build
from .schema import ArtifactReport, BuildReport

_COLOURS = {"onnx": "tab:blue", "tflite": "tab:orange", "coreml": "tab:green"}


def _point(a: ArtifactReport) -> tuple[float, float, tuple[float, float] | None] | None:
    if a.status not in ("ok", "rejected") or a.device is None or a.parity is None:
        return None
    lat, metric = a.device.latency.value, a.parity.metric.value
    if lat is None or metric is None or lat <= 0:
        return None
    ci = a.parity.metric.ci95
    return lat, 100 * metric, ((100 * ci[0], 100 * ci[1]) if ci else None)


def plot_comparison(baseline: str | Path, candidate: str | Path, dest: str | Path) -> Path:
    """Write the comparison plot of two builds (folders or ``report.json`` files) to ``dest`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from ..core.io import atomic_path

    (rb, _), (rc, _) = load_build(baseline), load_build(candidate)
    fig, ax = plt.subplots(figsize=(8.5, 4.8), dpi=120)
    placed: dict[str, dict[str, tuple[float, float]]] = {"baseline": {}, "candidate": {}}
    missing = 0
    for which, rep in (("baseline", rb), ("candidate", rc)):
        for a in rep.artifacts:
            pt = _point(a)
            if pt is None:
                missing += a.status in ("ok", "rejected")
                continue
            x, y, ci = pt
            placed[which][a.file] = (x, y)
            colour = _COLOURS.get(a.format, "tab:purple")
            face = "none" if which == "baseline" else colour
            edge = "tab:gray" if which == "baseline" else colour
            if ci is not None:
                ax.errorbar([x], [y], yerr=[[y - ci[0]], [ci[1] - y]], fmt="none", ecolor=edge, alpha=0.35, lw=1)
            ax.scatter(
                [x],
                [y],
                s=45,
                facecolors=face,
                edgecolors=edge,
                linewidths=1.2,
                marker="o" if a.status == "ok" else "x",
                zorder=3,
            )
            if a.file == rep.chosen:
                ax.scatter(
                    [x],
                    [y],
                    marker="*",
                    s=260,
                    facecolors="none" if which == "baseline" else "tab:red",
                    edgecolors="tab:red",
                    linewidths=1.2,
                    zorder=4,
                )
            if which == "candidate":
                ax.annotate(a.file, (x, y), fontsize=6.5, xytext=(5, 3), textcoords="offset points")
    for name, (x1, y1) in placed["candidate"].items():
        if name in placed["baseline"]:
            x0, y0 = placed["baseline"][name]
            if (x0, y0) != (x1, y1):
                ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 0.8})
    budget = (rc.device.get("budgets") or {}).get("max_latency_ms")
    if budget:
        ax.axvline(budget, color="tab:red", ls="--", lw=1)
    # legend by proxy artists: what the marks mean, not one entry per file
    handles = [
        plt.Line2D([], [], ls="", marker="o", mfc="none", mec="tab:gray", label="baseline"),
        *[
            plt.Line2D([], [], ls="", marker="o", color=c, label=f"candidate {f}")
            for f, c in _COLOURS.items()
            if any(a.format == f for a in rc.artifacts)
        ],
        plt.Line2D([], [], ls="", marker="*", mfc="tab:red", mec="tab:red", ms=11, label="shipped"),
        plt.Line2D([], [], ls="", marker="x", color="0.3", label="rejected by the gate"),
    ]
    if budget:
        handles.append(plt.Line2D([], [], color="tab:red", ls="--", lw=1, label=f"latency budget {budget:g} ms"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    xs = [x for pts in placed.values() for x, _ in pts.values()] + ([budget] if budget else [])
    log = bool(xs) and max(xs) / min(xs) > 10  # a log axis only where the files span an order of magnitude
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel(f"estimated latency on {rc.device.get('name')} (ms{', log scale' if log else ''})")
    ax.set_ylabel(f"test {rc.task.metric_name} in the file's runtime (%)")
    title = f"{rc.task.name} on {rc.device.get('name')}: {_label(rb)} -> {_label(rc)}"
    if missing:
        title += f"\n({missing} file(s) not placed: no metric measured on this host or no device estimate)"
    ax.set_title(title, fontsize=8.5)
    fig.tight_layout()
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return dest


def _label(r: BuildReport) -> str:
    return f"{r.status}, {r.created_utc[:16].replace('T', ' ')}"
