"""``adaptc quant-report``: each quantizable layer's int8 sensitivity for a task's model, as a table and a plot.

The same ranking the build's scheme walk uses to pick the layers a mixed-precision file keeps in float
(:mod:`adaptc.quant.sensitivity`), computed on the task's calibration data (its train split), optionally after
equalization + bias correction (:mod:`adaptc.quant.equalize`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.io import atomic_path
from ..tasks import Task, get_task


@dataclass
class QuantReport:
    task: str
    per_channel: bool
    equalized: bool
    samples: int
    #: most sensitive first (adaptc.quant.sensitivity.LayerSensitivity as dicts)
    layers: list[dict[str, Any]]
    equalization: dict[str, Any] | None = None
    method: str = field(
        default="each layer alone in int8 (weights symmetric, activations asymmetric per tensor, min-max), "
        "squared error of the model's outputs against float, relative to their variance over the calibration samples"
    )

    @property
    def total_macs(self) -> int:
        return sum(int(r["macs"]) for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "per_channel": self.per_channel,
            "equalized": self.equalized,
            "samples": self.samples,
            "method": self.method,
            "total_macs": self.total_macs,
            "layers": self.layers,
            **({"equalization": self.equalization} if self.equalization else {}),
        }


def quant_report(
    task: str | Task = "digits",
    *,
    per_channel: bool = True,
    equalize: bool = False,
    samples: int | None = None,
    task_options: dict[str, Any] | None = None,
) -> QuantReport:
    """Per-layer int8 sensitivity of ``task``'s model (most sensitive first)."""
    from ..quant.equalize import equalize as run_equalize
    from ..quant.sensitivity import layer_sensitivity

    t = get_task(task, **(task_options or {}))
    model, eq_info = t.model.eval(), None
    if equalize:
        model, info = run_equalize(model, t.train, per_channel=per_channel)
        eq_info = info.to_dict()
    rows = layer_sensitivity(
        model, t.train, per_channel=per_channel, samples=samples, classification=t.kind == "classification"
    )
    return QuantReport(
        task=t.name,
        per_channel=per_channel,
        equalized=equalize,
        samples=min(samples or 64, len(t.train)),
        layers=[r.to_dict() for r in rows],
        equalization=eq_info,
    )


def plot_quant_report(rep: QuantReport, path: str | Path, top: int = 40) -> Path:
    """A horizontal bar chart of the ``top`` most sensitive layers (log scale), coloured by layer kind, each
    labelled with its share of the model's MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rep.layers[:top][::-1]
    total = rep.total_macs or 1
    kinds = sorted({r["kind"] for r in rows})
    colours = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.6))
    ax.barh(range(len(rows)), [max(r["error"], 1e-12) for r in rows], color=[colours[r["kind"]] for r in rows])
    ax.set_yticks(range(len(rows)), [f"{r['name']}  ({100 * r['macs'] / total:.1f}% MACs)" for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("relative output error with only this layer in int8 (log scale)")
    gran = "per-channel" if rep.per_channel else "per-tensor"
    ax.set_title(f"{rep.task}: int8 sensitivity per layer ({gran}{', equalized' if rep.equalized else ''})")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in kinds]
    ax.legend(handles, kinds, fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


__all__ = ["QuantReport", "plot_quant_report", "quant_report"]
