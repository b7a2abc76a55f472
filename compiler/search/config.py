"""The configuration a search runs with (:class:`SearchConfig`): adaptc's defaults, under the task's
``search_defaults``, under what the user set (:class:`adaptc.core.search_options.SearchOptions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..core.search_options import SearchOptions
from ..distill import DistillConfig, LossWeights
from ..errors import AdaptcError
from ..tasks.base import Task

DEFAULT_WIDTHS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.125)


@dataclass
class SearchConfig:
    """Every option of the search, resolved (the fields of :class:`SearchOptions`, each with its value)."""

    widths: Sequence[float] = DEFAULT_WIDTHS
    #: most blocks to drop (None: up to half of the removable blocks)
    max_blocks_dropped: int | None = None
    rung_epochs: Sequence[int] = (6, 18)
    final_epochs: int = 30
    eta: int = 3
    #: points of the task metric within which a faster candidate is preferred to the best one
    quality_tolerance: float = 0.01
    time_budget_s: float | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    #: teacher assistant for the final training: "off" (default: on the benchmarks it did not help), "on", or
    #: "auto" (when teacher/student parameters >= assistant_threshold)
    assistant: str = "off"
    assistant_threshold: float = 12.0
    importance: str = "magnitude"
    #: quantization-aware training in the final training when the chosen scheme is int8
    qat: bool = True
    plot: bool = True
    #: at most this many training samples per rung trial (a fixed seeded subset; the final training uses all)
    rung_samples: int | None = None
    #: keep the model's output size when pruning. None: classifiers keep it; embedding models keep it when
    #: some candidate with the teacher's hidden size fits the budgets, and otherwise narrow the hidden size
    #: too, with a projection back to the teacher's embedding size (e.g. a 5 MB budget cannot hold
    #: MiniLM's 30522 x 384 word-embedding table even in int8, so echo-dot students get a narrower hidden size)
    keep_output_dim: bool | None = None
    #: when no candidate fits, try once more at half the grid's smallest width (down to 1/16) before giving up
    extend_widths: bool = True
    #: host threads for training and the teacher's passes (None: measured, see SearchOptions.threads)
    threads: int | None = None
    #: resident memory budget of the build in MiB (None: half of the memory available at the start)
    memory_budget_mb: float | None = None
    #: the final training starts from the chosen skeleton's best rung trial instead of the fresh skeleton
    warm_start: bool = True


def as_options(user: SearchOptions | Mapping[str, Any] | bool | None) -> SearchOptions:
    """What the user set, as :class:`SearchOptions` (``True``: nothing set; a mapping: its fields by name)."""
    if isinstance(user, SearchOptions):
        return user
    if user is True or user is None:
        return SearchOptions()
    if isinstance(user, Mapping):
        known = {f.name for f in fields(SearchOptions)}
        unknown = sorted(set(user) - known)
        if unknown:
            from ..core.names import unknown_name_message

            raise AdaptcError(
                "unknown search option: " + "; ".join(unknown_name_message("search option", k, known) for k in unknown)
            )
        return SearchOptions(**dict(user))
    raise AdaptcError(f"search must be True, False, SearchOptions or a dict of its fields (got {type(user).__name__})")


def resolve_config(task: Task, user: SearchOptions | Mapping[str, Any] | bool | None) -> SearchConfig:
    """The search configuration for a task: the task's ``search_defaults`` under what the user set.

    ``distill``: a mapping changes single fields of the task's distillation defaults (``{"lr": 1e-3}``); a
    :class:`DistillConfig` is taken as it is (the task's defaults do not apply: a dataclass cannot tell a field
    set to the global default from one left unset). ``loss_weights`` (term -> weight, e.g. ``{"ce": 0}`` for
    ``--ablate ce``) changes single terms of the resolved loss weights: the task's own when it sets them, else the
    global default."""
    mine = as_options(user)
    merged = mine.over(task.search_defaults)
    cfg = merged.distill
    if not isinstance(cfg, DistillConfig):
        try:
            cfg = DistillConfig(**dict(cfg or {}))
        except (TypeError, ValueError) as e:
            raise AdaptcError(f"bad distillation option: {e}") from None
    loss_weights = dict(merged.loss_weights or {})
    known = LossWeights().__dict__
    for term, w in loss_weights.items():
        if term not in known:
            raise AdaptcError(f"unknown loss term {term!r} (known: {', '.join(known)})")
        if not isinstance(w, (int, float)) or not w >= 0:
            raise AdaptcError(f"loss weight {term} must be a number >= 0, got {w!r}")
    if loss_weights:
        cfg = replace(cfg, weights=replace(cfg.weights, **{k: float(v) for k, v in loss_weights.items()}))
    values = {k: v for k, v in merged.set_fields().items() if k not in ("distill", "loss_weights")}
    return SearchConfig(**values, distill=cfg)


def validate_widths(widths: Sequence[float]) -> tuple[float, ...]:
    if not widths:
        raise AdaptcError("the width grid is empty")
    bad = [w for w in widths if not (0 < float(w) <= 1)]
    if bad:
        raise AdaptcError(f"width multipliers must be in (0, 1]; got {', '.join(f'{b:g}' for b in bad)}")
    return tuple(sorted({float(w) for w in widths}, reverse=True))


def config_record(cfg: SearchConfig, seed: int, keep_output: bool) -> dict[str, Any]:
    """The report's record of the configuration a search ran with."""
    d = cfg.distill
    distill = {k: v for k, v in d.__dict__.items() if k not in ("domain_data",)}
    distill["weights"] = d.weights.__dict__
    distill["adversarial"] = d.adversarial.__dict__ if d.adversarial else None
    distill["domain_data"] = len(d.domain_data) if d.domain_data is not None else None
    return {
        "widths": list(validate_widths(cfg.widths)),
        "max_blocks_dropped": cfg.max_blocks_dropped,
        "rung_epochs": list(cfg.rung_epochs),
        "final_epochs": cfg.final_epochs,
        "eta": cfg.eta,
        "quality_tolerance": cfg.quality_tolerance,
        "time_budget_s": cfg.time_budget_s,
        "assistant": cfg.assistant,
        "assistant_threshold": cfg.assistant_threshold,
        "seed": seed,
        "rung_samples": cfg.rung_samples,
        "keep_output_dim": keep_output,
        "threads": cfg.threads,
        "memory_budget_mb": cfg.memory_budget_mb,
        "warm_start": cfg.warm_start,
        "distill": distill,
    }
