"""The student's optimizer: AdamW over dense weights, SparseAdam over embedding tables that train lazily
(:attr:`adaptc.distill.trainer.DistillConfig.embeddings`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _embedding_tables(model: nn.Module) -> dict[str, nn.Embedding]:
    """``model``'s trainable embedding tables whose weight no other module shares (a tied table gets dense
    gradients), by module name."""
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, nn.Embedding) and m.weight.requires_grad and uses.get(id(m.weight)) == 1
    }


def _set_embedding_update(model: nn.Module, how: str, names: list[str] | None = None) -> list[str]:
    """Make ``model``'s embedding tables (those named, else every one :func:`_embedding_tables` finds) train the
    way ``how`` says (:attr:`DistillConfig.embeddings`); returns their names."""
    names = list(_embedding_tables(model)) if names is None else names
    for n in names:
        m = model.get_submodule(n)
        m.sparse = how == "lazy"  # type: ignore[assignment]
        m.weight.requires_grad_(how != "frozen")
    return names


class _Optimizer:
    """AdamW over the student's dense weights (and the loss's projections) plus SparseAdam over its embedding
    tables when they train lazily (sparse gradients). Written here because no torch optimizer takes both: AdamW
    rejects sparse gradients, SparseAdam dense ones. ``schedule`` makes one lr scheduler per optimizer (default
    constant); :meth:`step` steps the optimizers, then the schedulers."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        lr: float,
        weight_decay: float,
        schedule: Callable[[torch.optim.Optimizer], Any] | None = None,
    ):
        sparse = {id(m.weight): m.weight for m in _embedding_tables(model).values() if m.sparse}
        dense = [p for p in [*model.parameters(), *loss.parameters()] if p.requires_grad and id(p) not in sparse]
        self.parts: list[torch.optim.Optimizer] = [torch.optim.AdamW(dense, lr=lr, weight_decay=weight_decay)]
        if sparse:
            self.parts.append(torch.optim.SparseAdam(list(sparse.values()), lr=lr))
        self.schedulers = [schedule(o) for o in self.parts] if schedule is not None else []

    def reschedule(self, schedule: Callable[[torch.optim.Optimizer], Any], steps_done: int) -> None:
        """New schedulers (e.g. over more or fewer steps), advanced to where ``steps_done`` steps left off."""
        self.schedulers = [schedule(o) for o in self.parts]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (stepping a scheduler with no optimizer step between)
            for sch in self.schedulers:
                for _ in range(steps_done):
                    sch.step()

    def zero_grad(self) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=True)

    def step(self) -> None:
        for o in self.parts:
            o.step()
        for s in self.schedulers:
            s.step()
