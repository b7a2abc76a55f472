"""Skeleton extraction: structured width pruning (Torch-Pruning) and depth reduction by measured importance.

Depth reduction drops residual blocks of one or several containers (see :mod:`adaptc.slim.adapters` for the
layouts found by convention); a model of another layout names its containers with an ``adaptc_blocks``
attribute, or the caller with ``block_paths``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .adapters import (
    BlockRef,
    find_attention,
    find_block_containers,
    find_blocks,
    find_output_layer,
    removable_indices,
    residual_marker,
)
from .depth import Skip, block_importance, drop_blocks, max_droppable
from .width import OutputProjection, PruningError, count_params, project_to_teacher, prune_width

__all__ = [
    "BlockRef",
    "OutputProjection",
    "PruningError",
    "project_to_teacher",
    "Skeleton",
    "Skip",
    "block_importance",
    "count_params",
    "drop_blocks",
    "extract_skeleton",
    "find_attention",
    "find_block_containers",
    "find_blocks",
    "find_output_layer",
    "max_droppable",
    "prune_width",
    "removable_indices",
    "residual_marker",
]


@dataclass
class Skeleton:
    model: nn.Module
    width: float
    drop: int
    dropped_blocks: list[int]
    params: int


def extract_skeleton(
    teacher: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    width: float,
    drop: int = 0,
    channel_multiple: int = 8,
    importance: dict[int, float] | None = None,
    calibration_inputs: Sequence[torch.Tensor] | None = None,
    prune_importance: str = "magnitude",
    keep_output_dim: bool = True,
    block_paths: Sequence[str] | None = None,
) -> Skeleton:
    """Drop ``drop`` least important blocks, then prune every channel group to ``width``.

    With ``keep_output_dim=False`` (embedding models) the hidden size is pruned too and a projection back to
    the teacher's embedding size is appended, fitted on ``calibration_inputs`` (or the example inputs).
    ``block_paths``: the module paths of the containers whose blocks may be dropped (default: the teacher's
    ``adaptc_blocks``, else the layouts found by convention); ``importance`` is keyed by position in
    ``find_blocks(teacher, block_paths)``."""
    model = teacher
    dropped: list[int] = []
    if block_paths is not None:
        find_blocks(teacher, block_paths)  # a bad path fails now, whatever ``drop``
    if drop > 0:
        if importance is None:
            if calibration_inputs is None:
                raise ValueError("depth reduction needs block importance or calibration inputs")
            importance = block_importance(teacher, calibration_inputs, paths=block_paths)
        model, dropped = drop_blocks(teacher, drop, importance, paths=block_paths)
    student = prune_width(
        model,
        example_inputs,
        width,
        channel_multiple=channel_multiple,
        importance=prune_importance,  # type: ignore[arg-type]
        keep_output_dim=keep_output_dim,
    )
    if not keep_output_dim:
        student = project_to_teacher(student, teacher, tuple(calibration_inputs or example_inputs))
    return Skeleton(student, width, drop, dropped, count_params(student))
