"""Depth reduction: drop the residual blocks (or transformer layers) whose removal changes the output least.

Importance of a block = KL divergence between the model's output distribution with and without that block
(skipped: its input passes through unchanged), averaged over real inputs. Blocks that change shapes
(``removable = False``) are never dropped, and at least ``min_blocks`` stay.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .adapters import find_blocks, removable_indices


class Skip(nn.Module):
    """Stands in for a dropped block: returns its first input unchanged."""

    removable = True

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return x


def _logp(model: nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    out = model(*inputs)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return torch.log_softmax(out.float().reshape(out.shape[0], -1), dim=-1)


@torch.no_grad()
def block_importance(model: nn.Module, inputs: Sequence[torch.Tensor]) -> dict[int, float]:
    """KL(full || block skipped) per removable block index (higher = more important)."""
    found = find_blocks(model)
    if found is None:
        return {}
    _, blocks = found
    model.eval()
    ref = _logp(model, inputs)
    scores: dict[int, float] = {}
    for i in removable_indices(blocks):
        orig = blocks[i]
        blocks[i] = Skip()
        try:
            lp = _logp(model, inputs)
        finally:
            blocks[i] = orig
        scores[i] = float(torch.sum(ref.exp() * (ref - lp), dim=-1).mean())
    return scores


def drop_blocks(
    model: nn.Module, drop: int, importance: dict[int, float], *, min_blocks: int = 1
) -> tuple[nn.Module, list[int]]:
    """A copy of ``model`` without the ``drop`` least important removable blocks. Returns (model, dropped)."""
    found = find_blocks(model)
    if drop <= 0 or found is None:
        return copy.deepcopy(model), []
    path, blocks = found
    drop = min(drop, len(importance), len(blocks) - min_blocks)
    victims = sorted(sorted(importance, key=lambda i: (importance[i], i))[:drop])
    student = copy.deepcopy(model)
    _, sblocks = find_blocks(student)  # type: ignore[misc]
    keep = [b for i, b in enumerate(sblocks) if i not in victims]
    new = nn.Sequential(*keep) if isinstance(sblocks, nn.Sequential) else nn.ModuleList(keep)
    parent = student
    parts = path.split(".")
    for part in parts[:-1]:
        parent = getattr(parent, part)
    setattr(parent, parts[-1], new)
    if hasattr(student, "config") and hasattr(student.config, "num_hidden_layers"):  # Hugging Face
        student.config.num_hidden_layers = len(keep)
    return student.eval(), victims


def max_droppable(model: nn.Module, min_blocks: int = 1) -> int:
    found = find_blocks(model)
    if found is None:
        return 0
    _, blocks = found
    return max(0, min(len(removable_indices(blocks)), len(blocks) - min_blocks))
