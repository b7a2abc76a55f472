"""A cache of the teacher's outputs and intermediate behaviour over the training split.

When the training inputs are fixed (no augmentation, no adversarial or domain-mixed batches), the teacher
computes the same thing for a sample every epoch and in every trial of a search. The cache runs the teacher
once over the split and keeps, per sample, its output and what the caller's losses read of what the taps see
(hidden states, attention maps, last-layer query/key/value projections for the relation term, penultimate
features for a classifier's relation term: embedding tasks relate their output embeddings instead), trimmed to
the sample's own length for token inputs and stored in float16. A batch is then assembled by padding to the
batch's length: padded key columns of attention maps are 0 (what a masked softmax gives) and padded positions
are excluded by the losses' masks.
For a student with a quarter of the teacher's compute this removes more than half of the training time.

Memory: attention maps dominate (all-MiniLM-L6-v2: about 2 MB per 128-token text for its six layers). The cache
keeps every layer when the estimated total fits its budget (``ADAPTC_TEACHER_CACHE_MB``, default a quarter of
the memory available when it is built), so the trials of a search -- students of different depths -- share one
pass of the teacher; otherwise it keeps only the teacher layers the requesting student's losses read (a 2-layer
student reads 2 of 6 attention maps) -- and, when the student has fewer heads, only their head mean, which is
all the attention loss compares then -- and a later request for layers it does not hold rebuilds it with the
union. What the losses see is the same either way (head means computed before, not after, float16 storage).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..core import progress
from ..errors import AdaptcError
from ..tasks.base import Split
from .taps import Captured, Taps


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _lengths(xs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
    from .trainer import _token_mask

    m = _token_mask(xs)
    return None if m is None else m.sum(1)


def _available_bytes() -> int:
    """Memory available now (Linux: MemAvailable), else half the physical memory, else 4 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 4 << 30


#: the build's memory budget in bytes (``--memory-budget``); None: not set
_MEMORY_BUDGET: contextvars.ContextVar[int | None] = contextvars.ContextVar("adaptc_memory_budget", default=None)


@contextlib.contextmanager
def memory_budget(nbytes: int | None) -> Iterator[None]:
    """Teacher caches made inside this block keep within ``nbytes`` of resident memory for the whole process
    (see :func:`cache_budget_bytes`)."""
    token = _MEMORY_BUDGET.set(nbytes)
    try:
        yield
    finally:
        _MEMORY_BUDGET.reset(token)


def cache_budget_bytes() -> int:
    """``ADAPTC_TEACHER_CACHE_MB`` if set; else, under a build's memory budget (:func:`memory_budget`), half of
    what the budget leaves above the process's resident memory now (the rest is for training); else a quarter of
    the memory available now."""
    env = os.environ.get("ADAPTC_TEACHER_CACHE_MB")
    if env:
        try:
            mb = float(env)
        except ValueError:
            mb = -1.0
        if not mb >= 0:
            raise AdaptcError(f"ADAPTC_TEACHER_CACHE_MB must be a number of megabytes >= 0, got {env!r}")
        return int(mb * (1 << 20))
    budget = _MEMORY_BUDGET.get()
    if budget is not None:
        from .dense_cache import rss_bytes

        return max(0, budget - rss_bytes()) // 2
    return _available_bytes() // 4


Layers = Collection[int] | None  # teacher layer indices; None = all


def _layers(x: Layers) -> frozenset[int] | None:
    return None if x is None else frozenset(x)


@dataclass(frozen=True)
class Holding:
    """What a teacher cache holds, or what a caller's losses read from it.

    ``hidden_layers`` / ``attention_layers``: teacher layer indices (None: every layer); ``attention_head_mean``:
    attention maps as their head mean only; ``features``: the teacher's penultimate features (for a token model,
    the input of its last linear layer: on MiniLM 4x the width of a hidden state); ``relations``: the last
    attention layer's query/key/value projections (MiniLM relations; on MiniLM 3x a hidden state per token)."""

    hidden_layers: frozenset[int] | None = None
    attention_layers: frozenset[int] | None = None
    attention_head_mean: bool = False
    features: bool = True
    relations: bool = True

    @classmethod
    def of(
        cls,
        hidden_layers: Layers = None,
        attention_layers: Layers = None,
        attention_head_mean: bool = False,
        features: bool = True,
        relations: bool = True,
    ) -> Holding:
        return cls(_layers(hidden_layers), _layers(attention_layers), attention_head_mean, features, relations)

    def every_layer(self) -> Holding:
        """Every layer with every head (what the cache holds when that fits its budget) of the kinds asked for:
        a caller that reads no hidden states (or no attention maps) reads none at any depth."""

        def every(x: frozenset[int] | None) -> frozenset[int] | None:
            return x if x == frozenset() else None

        return replace(
            self,
            hidden_layers=every(self.hidden_layers),
            attention_layers=every(self.attention_layers),
            attention_head_mean=False,
        )

    def covers(self, wanted: Holding) -> bool:
        def layers(held: frozenset[int] | None, w: frozenset[int] | None) -> bool:
            return held is None or (w is not None and w <= held)

        return (
            layers(self.hidden_layers, wanted.hidden_layers)
            and layers(self.attention_layers, wanted.attention_layers)
            and (wanted.attention_head_mean or not self.attention_head_mean or not wanted.attention_layers)
            and (self.features or not wanted.features)
            and (self.relations or not wanted.relations)
        )

    def union(self, wanted: Holding) -> Holding:
        def layers(a: frozenset[int] | None, b: frozenset[int] | None) -> frozenset[int] | None:
            return None if a is None or b is None else a | b

        return Holding(
            layers(self.hidden_layers, wanted.hidden_layers),
            layers(self.attention_layers, wanted.attention_layers),
            self.attention_head_mean and wanted.attention_head_mean,
            self.features or wanted.features,
            self.relations or wanted.relations,
        )


def _head_mean(a: torch.Tensor) -> torch.Tensor:
    """(H, T, T) attention maps of one sample -> (1, T, T), averaged in float32."""
    return a.float().mean(0, keepdim=True)


class TeacherCache:
    def __init__(
        self,
        teacher: nn.Module,
        split: Split,
        example_inputs: tuple[torch.Tensor, ...],
        *,
        transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None,
        batch_size: int = 64,
        wanted: Holding = Holding(),
        budget_bytes: int | None = None,
    ):
        t0 = time.perf_counter()
        self.n = len(split)
        self.out: list[torch.Tensor] = []
        self.hidden: list[list[torch.Tensor | None]] = []
        self.attention: list[list[torch.Tensor | None]] = []
        self.qkv: list[list[torch.Tensor]] = []
        self.features: list[torch.Tensor | None] = []
        # penultimate features only when asked (the relation term of classifiers reads them; embedding tasks
        # relate their outputs)
        taps = Taps(teacher, example_inputs, features=wanted.features)
        lengths = _lengths(split.inputs)
        # every layer if that fits the budget (one teacher pass serves students of any depth), else the requested
        full, kept = self._estimate(teacher, taps, example_inputs, transform, lengths, wanted)
        budget = cache_budget_bytes() if budget_bytes is None else budget_bytes
        #: what is held
        self.holding = wanted.every_layer() if full <= budget else wanted
        self.estimated_bytes = full if full <= budget else kept
        hold = self.holding
        what = (
            ""
            if full <= budget
            else (
                f", {self._describe()} (all layers: {full / 2**30:.1f} GiB, over the {budget / 2**30:.1f} GiB budget)"
            )
        )
        step = progress.current().step(
            f"teacher outputs over the training split (cached for all trials{what})", total=self.n
        )
        order = torch.argsort(lengths) if lengths is not None else torch.arange(self.n)
        slots: list[Any] = [None] * self.n
        keep_h = [hold.hidden_layers is None or k in hold.hidden_layers for k in range(self._n_hidden)]
        keep_a = [hold.attention_layers is None or k in hold.attention_layers for k in range(self._n_attention)]
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
                            [self._cut(h[j], L, 0) if k_ else None for h, k_ in zip(cap.hidden, keep_h)],
                            [
                                self._cut(_head_mean(a[j]) if hold.attention_head_mean else a[j], L, 1, 2)
                                if k_
                                else None
                                for a, k_ in zip(cap.attention, keep_a)
                            ],
                            [self._cut(q[j], L, 0) for q in cap.qkv] if hold.relations else [],
                            (
                                self._cut(cap.features[j], L if cap.features.dim() >= 3 else None, 0)
                                if cap.features is not None
                                else None
                            ),
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
        #: wall seconds of the teacher's pass (what a later pass over another split of this data costs per sample)
        self.build_seconds = time.perf_counter() - t0
        step.done()

    def _estimate(
        self,
        teacher: nn.Module,
        taps: Taps,
        example_inputs: tuple[torch.Tensor, ...],
        transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None,
        lengths: torch.Tensor | None,
        wanted: Holding,
    ) -> tuple[int, int]:
        """Bytes of the cache with every layer and with only the requested ones (float16; see
        :meth:`Holding.every_layer`), from the shapes the taps read on the example input: per token for hidden
        states and projections, per token pair for attention maps."""
        xs = transform(example_inputs) if transform is not None else example_inputs
        taps.clear()
        with torch.no_grad():
            out = _first(teacher.eval()(*xs))
        cap = taps.captured
        self._n_hidden, self._n_attention = len(cap.hidden), len(cap.attention)

        def per_sample(t: torch.Tensor, dims: int) -> torch.Tensor:
            n = t[0].numel()
            if lengths is None or dims == 0 or t.dim() < 3:
                return torch.full((self.n,), float(n))
            tokens = t.shape[1] if dims == 1 else t.shape[-1]  # (B, T, D) / (B, H, T, T)
            return lengths.double() ** dims * (n / tokens**dims)

        def size(ts: list[torch.Tensor], dims: int, keep: Layers) -> float:
            return float(sum(per_sample(t, dims).sum() for k, t in enumerate(ts) if keep is None or k in keep))

        feats = [cap.features] if cap.features is not None else []
        feat_dims = 1 if cap.features is not None and cap.features.dim() >= 3 else 0
        qkv = cap.qkv if wanted.relations else []
        fixed = 2 * (size(qkv, 1, None) + size(feats, feat_dims, None)) + 4 * out[0].numel() * self.n

        def held(h: Holding) -> int:
            attention = [a[:, :1] if h.attention_head_mean else a for a in cap.attention]
            return int(fixed + 2 * (size(cap.hidden, 1, h.hidden_layers) + size(attention, 2, h.attention_layers)))

        sizes = held(wanted.every_layer()), held(wanted)
        taps.clear()
        return sizes

    def _describe(self) -> str:
        def one(name: str, held: frozenset[int] | None, n: int) -> str:
            return f"{name} of teacher layers {sorted(held)} of {n}" if held is not None else f"all {name}"

        h = self.holding
        return (
            one("hidden states", h.hidden_layers, self._n_hidden)
            + ", "
            + one(
                "head-averaged attention maps" if h.attention_head_mean else "attention maps",
                h.attention_layers,
                self._n_attention,
            )
        )

    @staticmethod
    def _cut(t: torch.Tensor, length: int | None, *dims: int) -> torch.Tensor:
        if length is not None:
            for d in dims:
                if t.dim() > d and t.shape[d] > length:
                    t = t.narrow(d, 0, length)
        # one copy, straight to float16 (no float32 intermediate per sample)
        return t.to(torch.float16, memory_format=torch.contiguous_format, copy=True)

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
        """The batch's teacher output and captures; layers the cache does not hold are None."""
        ids = idx.tolist()
        out = torch.stack([self.out[i] for i in ids])
        h0, a0, n_q = self.hidden[ids[0]], self.attention[ids[0]], len(self.qkv[ids[0]])
        cap = Captured(
            hidden=[
                self._pad_stack([self.hidden[i][k] for i in ids], length, (0,)) if h0[k] is not None else None  # type: ignore[misc]
                for k in range(len(h0))
            ],
            attention=[
                self._pad_stack([self.attention[i][k] for i in ids], length, (1, 2))  # type: ignore[misc]
                if a0[k] is not None
                else None
                for k in range(len(a0))
            ],
            qkv=[self._pad_stack([self.qkv[i][k] for i in ids], length, (0,)) for k in range(n_q)],
            features=(
                self._pad_stack(
                    [self.features[i] for i in ids], length if self.features[ids[0]].dim() >= 2 else None, (0,)
                )
                if self.features[ids[0]] is not None
                else None
            ),
        )
        return out, cap


_CACHES: weakref.WeakKeyDictionary[nn.Module, dict[int, Any]] = weakref.WeakKeyDictionary()


def teacher_cache(
    teacher: nn.Module,
    split: Split,
    example_inputs: tuple[torch.Tensor, ...],
    transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None,
    wanted: Holding = Holding(),
    *,
    budget_bytes: int | None = None,
) -> TeacherCache | Any | None:
    """The cache for (teacher, split), built on first use and shared by later calls in this process; None when
    it fits neither the memory budget nor the disk (inputs of a fixed shape; see :mod:`.dense_cache`).

    ``wanted``: what the caller's losses read (see :class:`Holding`). A cache that does not hold it is rebuilt
    with the union of what it held and what is asked."""
    sub = _SUBSETS.get(id(split.inputs[0]))
    if sub is not None and sub[0]() is split.inputs[0]:
        # a subset of a split the cache covers (a search's rung subset of its training split): one teacher pass
        whole = teacher_cache(teacher, sub[1], example_inputs, transform, wanted, budget_bytes=budget_bytes)
        return None if whole is None else _SubsetView(whole, sub[2])
    per = _CACHES.setdefault(teacher, {})
    key = id(split.inputs[0])
    old = per.get(key)
    if old is None or not old.holding.covers(wanted):
        if old is not None:
            wanted = old.holding.union(wanted)
        del old
        per.clear()  # one split at a time: caches are large (the old one is freed before the new pass)
        if _lengths(split.inputs) is None:  # inputs of a fixed shape: arrays, in memory or on disk
            from . import dense_cache

            budget = cache_budget_bytes() if budget_bytes is None else budget_bytes
            dense = dense_cache.make(teacher, split, transform, wanted, budget)
            if dense is None:
                return None
            per[key] = dense
        else:
            per[key] = TeacherCache(
                teacher, split, example_inputs, transform=transform, wanted=wanted, budget_bytes=budget_bytes
            )
    return per[key]


#: subsets registered by :func:`register_subset`: id(first input) -> (its weak reference, the whole, positions)
_SUBSETS: dict[int, tuple[weakref.ref[torch.Tensor], Split, torch.Tensor]] = {}


def register_subset(subset: Split, whole: Split, positions: torch.Tensor) -> None:
    """Declare ``subset`` the samples ``positions`` of ``whole``: a teacher cache over ``subset`` is then served
    from the one over ``whole`` (one teacher pass for a search's rung trials and its final training)."""
    for k in [k for k, v in _SUBSETS.items() if v[0]() is None]:
        del _SUBSETS[k]
    _SUBSETS[id(subset.inputs[0])] = (weakref.ref(subset.inputs[0]), whole, torch.as_tensor(positions).long())


class _SubsetView:
    """A cache over a subset, reading the cache of the whole split at the subset's positions."""

    def __init__(self, whole: Any, positions: torch.Tensor):
        self.whole, self.positions = whole, positions
        self.n = len(positions)
        self.holding = whole.holding
        self.build_seconds = whole.build_seconds * self.n / max(1, whole.n)

    def batch(self, idx: torch.Tensor, length: int | None) -> tuple[torch.Tensor, Captured]:
        return self.whole.batch(self.positions[idx], length)  # type: ignore[no-any-return,unused-ignore]
