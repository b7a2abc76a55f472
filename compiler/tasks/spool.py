"""The spool: a stream of batches written once to ``.npy`` files, then opened memory-mapped as a ``Split``.

A spool is a folder ``<root>/<fingerprint>/`` with one ``.npy`` file per model input (``input_0.npy``, ...),
``targets.npy`` when there are targets and ``meta.json``, written last: the mark of a complete spool. It is
written inside a temporary folder (``.adaptc-tmp-*``) renamed into place when complete, so a half-written spool
is never reused; a folder without its marker is rebuilt. Files are opened copy-on-write (``mmap_mode="c"``) and
wrapped zero-copy by ``torch.from_numpy``: indexing rows reads only those rows and nothing is written back.
Used by :mod:`adaptc.tasks.data` (the public functions) and ``Split.subset`` (:func:`gather_rows`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import progress as _progress
from ..core.cache import cache_dir
from ..errors import AdaptcError
from .base import Split

#: the layout of a spool folder; a spool of another format is rebuilt
FORMAT = 1
MARKER = "meta.json"
_TMP = ".adaptc-tmp-"


def spool_root() -> Path:
    """The default folder of spools: ``data/`` in the adaptc cache (``$ADAPTC_CACHE``, default ``~/.cache/adaptc``)."""
    return cache_dir() / "data"


def gather_rows(t: torch.Tensor, idx: torch.Tensor, folder: Path) -> torch.Tensor:
    """``t[idx]`` written chunk by chunk into an unnamed temporary file under ``folder`` and memory-mapped (a large
    subset of a streamed split: ``Split.subset``). The file goes when the tensor does."""
    if t.dtype == torch.bfloat16 or t.dim() == 0:
        return t[idx]
    folder.mkdir(parents=True, exist_ok=True)
    dtype = t[:0].numpy().dtype
    with tempfile.TemporaryFile(dir=folder, prefix=_TMP + "subset-") as f:
        out = np.memmap(f, dtype=dtype, mode="w+", shape=(len(idx), *t.shape[1:]))
    rows = max(1, (16 << 20) // max(1, t[:1].numel() * t.element_size()))
    for i in range(0, len(idx), rows):
        out[i : i + rows] = t[idx[i : i + rows]].numpy()
    return torch.from_numpy(out)


def _npy_header(dtype: np.dtype, shape: tuple[int, ...], total: int | None = None) -> bytes:
    """An .npy (1.0) header; ``total`` pads it to that many bytes (reserved before the row count is known)."""
    d = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    n = total if total is not None else -(-(len(d) + 11) // 64) * 64
    return b"\x93NUMPY\x01\x00" + (n - 10).to_bytes(2, "little") + (d.ljust(n - 11) + "\n").encode("latin1")


class _Column:
    """One .npy file written batch by batch; its header is patched with the row count when closed."""

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...]):
        self.path, self.dtype, self.row_shape, self.n = path, dtype, row_shape, 0
        self.reserve = len(_npy_header(dtype, (10**15, *row_shape)))
        self.f = open(path, "wb")  # noqa: SIM115 - closed by close() or the spool's abort()
        self.f.write(b"\0" * self.reserve)

    def write(self, a: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)
        self.n += len(a)

    def close(self) -> None:
        if not self.f.closed:
            self.f.seek(0)
            self.f.write(_npy_header(self.dtype, (self.n, *self.row_shape), self.reserve))
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()


class Spool:
    """Batches in, one .npy file per input (and targets) out, in a temporary folder renamed into place by finish()."""

    def __init__(self, root: Path, name: str, content_hash: bool):
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=_TMP, dir=root))
        except OSError as e:
            raise AdaptcError(f"spool folder {root} cannot be written: {e.strerror or e}") from None
        self.root, self.name, self.n, self.n_inputs = root, name, 0, 0
        self.cols: list[_Column] = []
        self.hash = hashlib.sha256() if content_hash else None

    def add(self, inputs: Sequence[np.ndarray], target: np.ndarray | None, where: str) -> None:
        arrays = [*inputs, target] if target is not None else list(inputs)
        if not self.cols:
            self.n_inputs = len(inputs)
            names = [f"input_{i}.npy" for i in range(len(inputs))] + (["targets.npy"] if target is not None else [])
            self.cols = [_Column(self.tmp / nm, a.dtype, a.shape[1:]) for nm, a in zip(names, arrays)]
        elif len(arrays) != len(self.cols) or len(inputs) != self.n_inputs:
            raise AdaptcError(
                f"{where}: {structure(len(inputs), target is not None)}, the first had "
                f"{structure(self.n_inputs, len(self.cols) > self.n_inputs)}"
            )
        for c, a in zip(self.cols, arrays):
            if a.shape[1:] != c.row_shape:
                raise AdaptcError(
                    f"{where}: {c.path.stem} has per-sample shape {a.shape[1:]}, the first "
                    f"sample {c.row_shape} (samples must share one shape)"
                )
            if a.dtype != c.dtype:
                if not np.can_cast(a.dtype, c.dtype, "same_kind"):
                    raise AdaptcError(f"{where}: {c.path.stem} is {a.dtype}, the first sample {c.dtype}")
                a = a.astype(c.dtype)
            if self.hash is not None:
                self.hash.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)
            c.write(a)
        self.n += len(arrays[0])

    def finish(self, dest: Path | None, extra: dict[str, Any]) -> Path:
        if self.n == 0:
            raise AdaptcError(f"{self.name}: no samples")
        for c in self.cols:
            c.close()
        if dest is None and self.hash is not None:
            self.hash.update(repr([(c.path.name, str(c.dtype), c.row_shape) for c in self.cols]).encode())
            dest = self.root / f"stream-{self.hash.hexdigest()[:20]}"
        assert dest is not None
        meta = {
            "format": FORMAT,
            "n": self.n,
            "inputs": self.n_inputs,
            "files": [c.path.name for c in self.cols],
            "source": self.name,
            **extra,
        }
        with open(self.tmp / MARKER, "w") as f:  # the mark of a complete spool: written last
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if open_spool(dest) is not None:  # the same data spooled before (or by another process meanwhile)
            self.abort()
            return dest
        shutil.rmtree(dest, ignore_errors=True)  # an incomplete or unreadable spool: replaced
        try:
            os.replace(self.tmp, dest)
        except OSError:
            if open_spool(dest) is None:
                raise
            self.abort()
        return dest

    def abort(self) -> None:
        for c in self.cols:
            c.f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def structure(n_inputs: int, target: bool) -> str:
    return f"{n_inputs} input{'s' if n_inputs != 1 else ''}{' and a target' if target else ', no target'}"


def open_spool(folder: Path) -> tuple[Split, dict[str, Any]] | None:
    """The split of a complete spool folder, or None (no marker, another format, missing or short files)."""
    try:
        meta = json.loads((folder / MARKER).read_text())
        if meta.get("format") != FORMAT:
            return None
        arrays = [np.load(folder / f, mmap_mode="c", allow_pickle=False) for f in meta["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(len(a) != meta["n"] for a in arrays):
        return None
    ts = [torch.from_numpy(a) for a in arrays]
    k = meta["inputs"]
    return Split(tuple(ts[:k]), ts[k] if len(ts) > k else None, spool_dir=folder.parent), meta


def spooled(
    fp: str | None,
    spool_dir: str | os.PathLike[str] | None,
    name: str,
    fill: Callable[[Spool, _progress.Step], None],
    total: int | None,
    show: bool,
    extra: dict[str, Any] | None = None,
) -> tuple[Split, dict[str, Any]]:
    """The split of spool ``fp`` under the root, spooled by ``fill`` unless complete (``fp`` None: named by a
    hash of the content once spooled)."""
    root = Path(spool_dir) if spool_dir is not None else spool_root()
    if fp is not None and (got := open_spool(root / fp)) is not None:
        _progress.log.info("%s: reusing its spool %s", name, root / fp)
        return got
    reporter = _progress.current() if show else _progress.NullReporter()
    step = reporter.step(f"spooling {name} to disk", total=total)
    sp = Spool(root, name, content_hash=fp is None)
    try:
        fill(sp, step)
        dest = sp.finish(root / fp if fp is not None else None, extra or {})
    except BaseException:
        sp.abort()
        raise
    got = open_spool(dest)
    if got is None:
        raise AdaptcError(f"{name}: the spool {dest} cannot be read back")
    step.done(f"{len(got[0])} samples, {sum(f.stat().st_size for f in dest.iterdir()) / 2**20:.0f} MB in {dest}")
    return got
