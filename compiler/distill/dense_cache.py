"""The teacher cache for inputs of a fixed shape (images, audio frames, fixed-length sequences).

Each quantity the teacher's pass captures (its output, the hidden states the losses read, penultimate features,
attention maps) becomes one ``(N, ...)`` array over the training split -- the output in float32, the rest in
float16 -- filled batch by batch during a single pass of the teacher. Where the arrays live follows the build's
memory budget (:func:`adaptc.distill.cache.cache_budget_bytes`), cheapest first:

1. in memory, every teacher layer (students of any depth read from one pass);
2. in memory, only the layers the requesting student's losses read;
3. on disk, every layer: float16 arrays in files under the spill folder (the build's ``.adaptc/spill``; a batch
   reads only its rows of the layers it needs, with plain reads: the OS's file cache holds them, not the
   process), when the disk has room (a 2 GiB margin kept free);
4. nowhere: the caller runs the teacher on every batch (``None``).

Batches then index the arrays: no teacher forward pass during training. The token-input cache
(:class:`adaptc.distill.cache.TeacherCache`) trims each sample to its length instead; this one needs no trimming.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import progress
from ..tasks.base import Split
from .taps import Captured, Taps

#: where disk-backed caches go (the build sets its ``.adaptc/spill``); None: the system's temporary folder
_SPILL_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("adaptc_spill_dir", default=None)
#: free disk space a spilled cache leaves untouched
DISK_MARGIN = 2 << 30
#: the most bytes of captured tensors one batch of the teacher's pass holds (float32)
PASS_BYTES = 512 << 20


@contextlib.contextmanager
def spill_to(folder: Path | None) -> Iterator[None]:
    """Disk-backed teacher caches made inside this block go under ``folder``."""
    token = _SPILL_DIR.set(folder)
    try:
        yield
    finally:
        _SPILL_DIR.reset(token)


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


class DenseTeacherCache:
    """The teacher's pass over ``split`` held as arrays; see the module docstring. Build it with :func:`make`
    (which returns None when neither memory nor disk can hold it)."""

    def __init__(
        self,
        teacher: nn.Module,
        split: Split,
        transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None,
        shapes: dict[str, list[tuple[int, ...]]],
        keep: dict[str, list[bool]],
        *,
        on_disk: bool,
        batch_size: int,
        description: str,
        holding: Any,
        estimated_bytes: int,
    ):
        t0 = time.perf_counter()
        self.n = len(split)
        self.holding = holding
        self.estimated_bytes = estimated_bytes
        self.where = "disk" if on_disk else "memory"
        self.folder: Path | None = None
        if on_disk:
            base = _SPILL_DIR.get()
            if base is not None:
                base.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix="teacher-", dir=base))
            # the arrays are scratch: gone with the cache (or at exit)
            weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        self.arrays: dict[str, list[np.ndarray | _RowFile | None]] = {}
        for kind, kind_shapes in shapes.items():
            dtype = np.float32 if kind == "out" else np.float16
            self.arrays[kind] = [
                self._alloc(f"{kind}{i}", (self.n, *s), dtype) if keep[kind][i] else None
                for i, s in enumerate(kind_shapes)
            ]
        taps = Taps(teacher, _example(split), features=bool(shapes["features"]))
        step = progress.current().step(description, total=self.n)
        try:
            with torch.no_grad():
                for i in range(0, self.n, batch_size):
                    idx = torch.arange(i, min(self.n, i + batch_size))
                    xs = tuple(t[idx] for t in split.inputs)
                    if transform is not None:
                        xs = transform(xs)
                    taps.clear()
                    out = _first(teacher.eval()(*xs))
                    cap = taps.captured
                    got = {
                        "out": [out],
                        "hidden": list(cap.hidden),
                        "attention": list(cap.attention),
                        "qkv": list(cap.qkv),
                        "features": [cap.features] if cap.features is not None else [],
                    }
                    for kind, arrs in self.arrays.items():
                        for a, t in zip(arrs, got[kind]):
                            if a is not None:
                                # converted by torch (vectorised), not numpy (float16 in software: 3x slower)
                                dt = torch.float32 if kind == "out" else torch.float16
                                a[i : i + len(idx)] = t.detach().to(dt).numpy()
                    step.advance(len(idx))
        finally:
            taps.remove()
        self.build_seconds = time.perf_counter() - t0
        step.done(f"{self.estimated_bytes / 2**20:,.0f} MiB in {self.where}")

    def _alloc(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray | _RowFile:
        if self.folder is None:
            return np.empty(shape, dtype)
        return _RowFile(self.folder / f"{name}.bin", shape, dtype)

    def batch(self, idx: torch.Tensor, length: int | None = None) -> tuple[torch.Tensor, Captured]:
        """The batch's teacher output and captures (float32); layers not held are None."""
        ids = idx.numpy()
        order = np.argsort(ids)  # memory-mapped rows read in file order, then put back in the batch's order
        back = np.argsort(order)

        def take(a: np.ndarray | _RowFile | None) -> torch.Tensor | None:
            if a is None:
                return None
            rows = a.rows(ids[order]) if isinstance(a, _RowFile) else a[ids[order]]
            return torch.from_numpy(np.ascontiguousarray(rows[back], dtype=np.float32))

        out = take(self.arrays["out"][0])
        assert out is not None
        feats = self.arrays["features"]
        cap = Captured(
            hidden=[take(a) for a in self.arrays["hidden"]],  # type: ignore[misc]
            attention=[take(a) for a in self.arrays["attention"]],  # type: ignore[misc]
            qkv=[take(a) for a in self.arrays["qkv"]],  # type: ignore[misc]
            features=take(feats[0]) if feats else None,
        )
        return out, cap


class _RowFile:
    """An ``(N, ...)`` array in a file, written and read by rows with plain reads and writes (``pread``), not
    memory-mapped: the pages a batch reads go to the OS's file cache, which the kernel reclaims, instead of the
    process's resident set (what a memory budget and a peak-RSS figure count)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.row_bytes = int(math.prod(shape[1:])) * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, self.row_bytes * shape[0])
        weakref.finalize(self, os.close, self.fd)

    def __setitem__(self, rows: slice, value: np.ndarray) -> None:
        data = np.ascontiguousarray(value, dtype=self.dtype).tobytes()
        os.pwrite(self.fd, data, (rows.start or 0) * self.row_bytes)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (ascending), runs of consecutive rows read at once."""
        out = np.empty((len(ids), *self.shape[1:]), self.dtype)
        flat = out.reshape(len(ids), -1).view(np.uint8)
        i = 0
        while i < len(ids):
            j = i + 1
            while j < len(ids) and ids[j] == ids[j - 1] + 1:
                j += 1
            n = (j - i) * self.row_bytes
            buf = os.pread(self.fd, n, int(ids[i]) * self.row_bytes)
            flat[i:j] = np.frombuffer(buf, np.uint8).reshape(j - i, -1)
            i = j
        return out


def _example(split: Split) -> tuple[torch.Tensor, ...]:
    return tuple(t[:1] for t in split.inputs)


def _free_disk(folder: Path | None) -> int:
    try:
        return shutil.disk_usage(folder if folder is not None and folder.exists() else tempfile.gettempdir()).free
    except OSError:
        return 0


def make(
    teacher: nn.Module,
    split: Split,
    transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None,
    wanted: Any,
    budget_bytes: int,
    batch_size: int = 64,
) -> DenseTeacherCache | None:
    """The cache of ``teacher`` over ``split`` held where the budget allows (see the module docstring), or None
    when it fits neither in memory nor on disk. ``wanted``: a :class:`adaptc.distill.cache.Holding`."""
    ex = _example(split)
    taps = Taps(teacher, ex, features=wanted.features)
    try:
        with torch.no_grad():
            xs = transform(ex) if transform is not None else ex
            out = _first(teacher.eval()(*xs))
        cap = taps.captured
        shapes: dict[str, list[tuple[int, ...]]] = {
            "out": [tuple(out.shape[1:])],
            "hidden": [tuple(h.shape[1:]) for h in cap.hidden],
            "attention": [tuple(a.shape[1:]) for a in cap.attention],
            "qkv": [tuple(q.shape[1:]) for q in cap.qkv] if wanted.relations else [],
            "features": [tuple(cap.features.shape[1:])] if cap.features is not None and wanted.features else [],
        }
    finally:
        taps.remove()
    n = len(split)

    def keep_of(h: Any) -> dict[str, list[bool]]:
        return {
            "out": [True],
            "hidden": [h.hidden_layers is None or k in h.hidden_layers for k in range(len(shapes["hidden"]))],
            "attention": [
                h.attention_layers is None or k in h.attention_layers for k in range(len(shapes["attention"]))
            ],
            "qkv": [True] * len(shapes["qkv"]),
            "features": [True] * len(shapes["features"]),
        }

    def size(keep: dict[str, list[bool]]) -> int:
        return sum(
            n * math.prod(s) * (4 if kind == "out" else 2)
            for kind, ss in shapes.items()
            for s, k in zip(ss, keep[kind])
            if k
        )

    full_h = wanted.every_layer()
    full, kept = size(keep_of(full_h)), size(keep_of(wanted))
    what = f"teacher outputs over the {n:,} training samples (one pass, for all trials)"
    # the pass's batch holds every captured tensor in float32: at most PASS_BYTES of them (CRAFT at 384 x 384
    # captures about 200 MB a sample: 64 at once ran a 24 GB machine out of memory)
    captured = sum(4 * math.prod(sh) for ss in shapes.values() for sh in ss)
    batch_size = max(1, min(batch_size, PASS_BYTES // max(1, captured)))
    # cheapest first: every layer in memory, the student's layers in memory, every layer on disk
    for holding, nbytes, on_disk in ((full_h, full, False), (wanted, kept, False), (full_h, full, True)):
        room = nbytes + DISK_MARGIN <= _free_disk(_SPILL_DIR.get()) if on_disk else nbytes <= budget_bytes
        if room:
            return DenseTeacherCache(
                teacher, split, transform, shapes, keep_of(holding), on_disk=on_disk, holding=holding,
                estimated_bytes=nbytes, batch_size=batch_size, description=what,
            )  # fmt: skip
    progress.current().message(
        f"[yellow]teacher outputs over the training split ({full / 2**30:.1f} GiB) fit neither the memory budget "
        f"({budget_bytes / 2**30:.1f} GiB) nor the free disk: the teacher runs on every batch[/yellow]"
    )
    return None


def release_memory() -> None:
    """Hand the C heap's free memory back to the OS (glibc ``malloc_trim``; elsewhere nothing): after a trial the
    freed activations of its batches otherwise stay resident, and the next trial's peak lands on top of them."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_bytes() -> int:
    """This process's resident memory now (Linux), else 0."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
