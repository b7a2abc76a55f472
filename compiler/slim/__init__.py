"""Skeleton extraction: structured width pruning (Torch-Pruning) and depth reduction by measured importance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .adapters import find_attention, find_blocks, find_output_layer, removable_indices
from .depth import Skip, block_importance, drop_blocks, max_droppable
from .width import PruningError, count_params, prune_width

__all__ = ["PruningError", "Skeleton", "Skip", "block_importance", "count_params", "drop_blocks", "extract_skeleton",
           "find_attention", "find_blocks", "find_output_layer", "max_droppable", "prune_width", "removable_indices"]


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
) -> Skeleton:
    """Drop ``drop`` least important blocks, then prune every channel group to ``width``."""
    model = teacher
    dropped: list[int] = []
    if drop > 0:
        if importance is None:
            if calibration_inputs is None:
                raise ValueError("depth reduction needs block importance or calibration inputs")
            importance = block_importance(teacher, calibration_inputs)
        model, dropped = drop_blocks(teacher, drop, importance)
    student = prune_width(model, example_inputs, width, channel_multiple=channel_multiple,
                          importance=prune_importance)  # type: ignore[arg-type]
    return Skeleton(student, width, drop, dropped, count_params(student))
