"""What a user (or a task, for its defaults) sets for the student search: :class:`SearchOptions`.

Every field left at ``None`` is not set: the search takes the task's default (``Task.search_defaults``, itself a
``SearchOptions``), else adaptc's (:class:`adaptc.search.SearchConfig`). The CLI and the API build this object
directly; :func:`adaptc.search.resolve_config` turns the layers into the configuration the search runs with.
Pure data on the ground floor, because tasks (which carry defaults) sit below the search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

Assistant = Literal["off", "on", "auto"]


@dataclass(frozen=True)
class SearchOptions:
    #: width multipliers to search, in (0, 1]
    widths: Sequence[float] | None = None
    #: most residual blocks / layers to drop (None at every layer: up to half of the removable blocks)
    max_blocks_dropped: int | None = None
    #: distillation epochs per successive-halving rung
    rung_epochs: Sequence[int] | None = None
    #: at most this many training samples per rung trial (a fixed seeded subset; the final training uses all)
    rung_samples: int | None = None
    #: epochs of the chosen student's final distillation
    final_epochs: int | None = None
    #: successive halving keeps the best 1/eta of each rung
    eta: int | None = None
    #: metric points (fraction: 0.01 = 1 point) within which a faster candidate is preferred to the best one
    quality_tolerance: float | None = None
    #: seconds the search may take
    time_budget_s: float | None = None
    #: teacher assistant for the final training
    assistant: Assistant | None = None
    #: "auto" uses an assistant when teacher / student parameters reach this
    assistant_threshold: float | None = None
    #: how channels are ranked for width pruning
    importance: str | None = None
    #: quantization-aware training in the final training when the chosen scheme is int8
    qat: bool | None = None
    #: draw the Pareto plot
    plot: bool | None = None
    #: keep the model's output size when pruning (None at every layer: classifiers keep it; embedding models
    #: narrow it only when no candidate keeping it fits)
    keep_output_dim: bool | None = None
    #: when no candidate fits, try once more at half the grid's smallest width (down to 1/16)
    extend_widths: bool | None = None
    #: host threads for training and the teacher's passes (None: the faster of 1 and every usable core,
    #: measured on the teacher's training step: tiny models train fastest on one thread, larger ones on all)
    threads: int | None = None
    #: resident memory the build may use, in MiB (None: half of the memory available when it starts): decides
    #: whether the teacher's outputs are held in memory, spilled to disk or recomputed per batch
    memory_budget_mb: float | None = None
    #: the final training starts from the chosen skeleton's best rung trial (its weights, already distilled on
    #: the rung's samples) instead of the fresh skeleton
    warm_start: bool | None = None
    #: distillation settings: a mapping changes single fields of :class:`adaptc.distill.DistillConfig` over the
    #: task's (``{"lr": 1e-3}``); a ``DistillConfig`` is used as given (the task's distillation defaults, its loss
    #: weights included, do not apply)
    distill: Mapping[str, Any] | Any = None
    #: loss term -> weight, changed over the resolved loss weights (``{"ce": 0.0}`` is ``--ablate ce``)
    loss_weights: Mapping[str, float] | None = None

    def over(self, base: SearchOptions | None) -> SearchOptions:
        """These options layered over ``base``: a field set here wins; distillation mappings and loss weights
        merge key by key (a ``DistillConfig`` set here replaces the base's distillation settings whole)."""
        if base is None:
            return self
        merged: dict[str, Any] = {}
        given = _given_config(self)
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(base, f.name)
            if f.name == "loss_weights" and given:
                merged[f.name] = mine  # a DistillConfig given as is: only the weights set alongside it change
            elif f.name in ("distill", "loss_weights") and isinstance(mine, Mapping) and isinstance(theirs, Mapping):
                merged[f.name] = {**theirs, **mine}
            else:
                merged[f.name] = mine if mine is not None else theirs
        return SearchOptions(**merged)

    def set_fields(self) -> dict[str, Any]:
        """The fields set here (not None), by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _given_config(opts: SearchOptions) -> bool:
    return opts.distill is not None and not isinstance(opts.distill, Mapping)
