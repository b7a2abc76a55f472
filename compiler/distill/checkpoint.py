"""Per-epoch checkpoints of a distillation, so that an interrupted trial resumes from its last finished epoch.

After every distillation epoch (not the QAT epochs: those rebuild the student's modules; an interruption there
resumes from the last distillation epoch) the trainer saves, atomically, everything the next epoch depends on:
the student's and the loss's weights (the loss holds learnable projections), the optimizers and their
learning-rate schedules, the random states (the batch order's generator and torch's global one), the history,
the best epoch's weights and validation scores, and the epoch count (a time budget may have fitted it). A
resumed trial then trains exactly the epochs an uninterrupted one would have, with the same result.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.io import atomic_path

#: version of the checkpoint's content; a file of another version is ignored (the trial starts over)
VERSION = 1


class EpochCheckpoint:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def save(
        self,
        *,
        epoch: int,
        epochs: int,
        student: nn.Module,
        loss: nn.Module,
        opt: Any,
        generator: torch.Generator,
        history: list[dict[str, Any]],
        best: tuple[float, dict[str, torch.Tensor] | None, Any],
    ) -> None:
        state = {
            "version": VERSION,
            "epoch": epoch,
            "epochs": epochs,
            "student": student.state_dict(),
            "loss": loss.state_dict(),
            "optimizers": [o.state_dict() for o in opt.parts],
            "schedulers": [s.state_dict() for s in opt.schedulers],
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": history,
            "best_val": best[0],
            "best_state": best[1],
            "best_scores": best[2],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def restore(
        self, student: nn.Module, loss: nn.Module, opt: Any, generator: torch.Generator
    ) -> dict[str, Any] | None:
        """Load the last finished epoch into ``student``, ``loss``, ``opt`` and ``generator`` (and torch's random
        state); returns the rest (``epoch``, ``epochs``, ``history``, ``best_val``, ``best_state``,
        ``best_scores``), or None when there is no usable checkpoint."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
            if state.get("version") != VERSION or len(state["optimizers"]) != len(opt.parts):
                return None
            student.load_state_dict(state["student"])
            loss.load_state_dict(state["loss"])
            for o, s in zip(opt.parts, state["optimizers"]):
                o.load_state_dict(s)
            for sch, s in zip(opt.schedulers, state["schedulers"]):
                sch.load_state_dict(s)
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        except Exception:  # unreadable or from another student: start over
            return None
        return state

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
