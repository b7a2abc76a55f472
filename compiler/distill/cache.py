"""A cache of the teacher's outputs and intermediate behaviour over the training split.

When the training inputs are fixed (no augmentation, no adversarial or domain-mixed batches), the teacher
computes the same thing for a sample every epoch and in every trial of a search. The cache runs the teacher
once over the split and keeps, per sample, its output and what the taps read (hidden states, attention maps,
last-layer query/key/value projections, penultimate features), trimmed to the sample's own length for token
inputs and stored in float16. A batch is then assembled by padding to the batch's length: padded key columns
of attention maps are 0 (what a masked softmax gives) and padded positions are excluded by the losses' masks.
For a student with a quarter of the teacher's compute this removes more than half of the training time.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch import nn

from .. import progress
from ..tasks.base import Split
from .taps import Captured, Taps


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _lengths(xs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
    from .trainer import _token_mask

    m = _token_mask(xs)
    return None if m is None else m.sum(1)


class TeacherCache:
    def __init__(self, teacher: nn.Module, split: Split, example_inputs: tuple[torch.Tensor, ...], *,
                 transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None, batch_size: int = 64):
        self.n = len(split)
        self.out: list[torch.Tensor] = []
        self.hidden: list[list[torch.Tensor]] = []
        self.attention: list[list[torch.Tensor]] = []
        self.qkv: list[list[torch.Tensor]] = []
        self.features: list[torch.Tensor | None] = []
        taps = Taps(teacher, example_inputs)
        step = progress.current().step("teacher outputs over the training split (cached for all trials)",
                                       total=self.n)
        lengths = _lengths(split.inputs)
        order = torch.argsort(lengths) if lengths is not None else torch.arange(self.n)
        slots: list[Any] = [None] * self.n
        try:
            with torch.no_grad():
                for i in range(0, self.n, batch_size):
                    idx = order[i : i + batch_size]
                    xs = tuple(t[idx] for t in split.inputs)
                    if transform is not None:
                        xs = transform(xs)
                    taps.clear()
                    out = _first(teacher.eval()(*xs)).float()
                    cap = taps.captured
                    lens = _lengths(xs)
                    for j, k in enumerate(idx.tolist()):
                        L = int(lens[j]) if lens is not None else None
                        slots[k] = (
                            out[j].clone(),
                            [self._cut(h[j], L, 0) for h in cap.hidden],
                            [self._cut(a[j], L, 1, 2) for a in cap.attention],
                            [self._cut(q[j], L, 0) for q in cap.qkv],
                            (self._cut(cap.features[j], L, 0) if cap.features is not None and cap.features.dim() >= 3
                             else cap.features[j].clone().half() if cap.features is not None else None),
                        )
                    step.advance(len(idx))
        finally:
            taps.remove()
        for o, h, a, q, f in slots:
            self.out.append(o)
            self.hidden.append(h)
            self.attention.append(a)
            self.qkv.append(q)
            self.features.append(f)
        step.done()

    @staticmethod
    def _cut(t: torch.Tensor, length: int | None, *dims: int) -> torch.Tensor:
        if length is not None:
            for d in dims:
                if t.dim() > d and t.shape[d] > length:
                    t = t.narrow(d, 0, length)
        return t.clone().half()

    @staticmethod
    def _pad_stack(items: list[torch.Tensor], length: int | None, dims: tuple[int, ...]) -> torch.Tensor:
        if length is None:
            return torch.stack([x.float() for x in items])
        out = []
        for x in items:
            pad: list[int] = []
            for d in range(x.dim() - 1, -1, -1):
                pad += [0, (length - x.shape[d]) if d in dims else 0]
            out.append(torch.nn.functional.pad(x.float(), pad))
        return torch.stack(out)

    def batch(self, idx: torch.Tensor, length: int | None) -> tuple[torch.Tensor, Captured]:
        ids = idx.tolist()
        out = torch.stack([self.out[i] for i in ids])
        n_h, n_a, n_q = len(self.hidden[ids[0]]), len(self.attention[ids[0]]), len(self.qkv[ids[0]])
        cap = Captured(
            hidden=[self._pad_stack([self.hidden[i][k] for i in ids], length, (0,)) for k in range(n_h)],
            attention=[self._pad_stack([self.attention[i][k] for i in ids], length, (1, 2)) for k in range(n_a)],
            qkv=[self._pad_stack([self.qkv[i][k] for i in ids], length, (0,)) for k in range(n_q)],
            features=(self._pad_stack([self.features[i] for i in ids], length if self.features[ids[0]].dim() >= 2
                                      else None, (0,))  # type: ignore[union-attr]
                      if self.features[ids[0]] is not None else None),
        )
        return out, cap


_CACHES: "weakref.WeakKeyDictionary[nn.Module, dict[int, TeacherCache]]" = weakref.WeakKeyDictionary()


def teacher_cache(teacher: nn.Module, split: Split, example_inputs: tuple[torch.Tensor, ...],
                  transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None) -> TeacherCache:
    """The cache for (teacher, split), built on first use and shared by later calls in this process."""
    per = _CACHES.setdefault(teacher, {})
    key = id(split.inputs[0])
    if key not in per:
        per.clear()  # one split at a time: caches are large
        per[key] = TeacherCache(teacher, split, example_inputs, transform=transform)
    return per[key]
