"""Atomic file output and hashing.

Every file adaptc writes goes through these helpers: the content is written to a temporary file in
the same directory, flushed and fsynced, then renamed over the destination with ``os.replace``
(atomic on POSIX). A crash or Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputError

_TMP_PREFIX = ".adaptc-tmp-"


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=_TMP_PREFIX, delete=True):
            pass
    except OSError as e:
        raise OutputError(f"output directory {str(p)!r} cannot be written: {e.strerror or e}") from None
    return p


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def working_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """The process's working directory set to ``path`` for the block (``contextlib.chdir`` needs Python 3.11).
    For libraries that write scratch files into the working directory (onnxruntime's shape inference)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield Path(path)
    finally:
        os.chdir(old)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success it is renamed to ``dest``.

    For tools that insist on writing a file (or a directory, e.g. a CoreML ``.mlpackage``) themselves.
    On an exception the temporary file or directory is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=dest.parent))
    tmp = tmpdir / dest.name
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {dest}")
        if tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        if dest.is_dir() and not dest.is_symlink():
            # Directories cannot be replaced atomically over a non-empty one: move the old one aside
            # first, then swap, then delete the old one.
            old = dest.parent / f"{_TMP_PREFIX}old-{dest.name}-{os.getpid()}"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (recursively through dicts, lists and tuples):
    JSON has no NaN or Infinity, and strict readers (JavaScript's JSON.parse, jq, Go) refuse Python's."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON of ``obj`` (non-finite floats as null: :func:`finite`; other objects by ``str``)."""
    return json.dumps(finite(obj), indent=indent, default=str, allow_nan=False)


def atomic_write_json(dest: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(dest, json_text(obj) + "\n")


@contextlib.contextmanager
def folder_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold a build folder for one process (``.adaptc/lock``, an advisory ``flock``): a second build into it stops
    at once with a one-line error naming the process that holds it. The operating system releases the lock when its
    process ends, however it ends, so the lock of a killed build is taken over by the next one with nothing to
    clean. Without ``fcntl`` (Windows) there is no lock. Written by hand: filelock's timeouts and lock files left
    behind add nothing here, and it cannot say who holds the lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield
        return
    d = Path(directory) / ".adaptc"
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 300, 0).decode("utf-8", errors="replace").strip() or "another process"
            raise OutputError(
                f"build folder {str(directory)!r} is in use by {owner}: wait for it to end, or build into another "
                "folder (--out)"
            ) from None
        import sys
        import time

        cmd = " ".join([Path(sys.argv[0]).name, *sys.argv[1:2]]) if sys.argv and sys.argv[0] else "python"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({cmd}, since {time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        yield
    finally:
        os.close(fd)  # (releases the lock)


def clean_stale_temporaries(directory: str | os.PathLike[str]) -> int:
    """Remove temporaries left behind by a killed process (they are never valid outputs). Call it while holding
    the folder (:func:`folder_lock`): then no other process of adaptc is writing there."""
    n = 0
    d = Path(directory)
    if not d.is_dir():
        return 0
    for p in d.glob(_TMP_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        n += 1
    return n


def sha256_path(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of a directory (e.g. ``.mlpackage``: over sorted relative paths and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode())
            h.update(b"\0")
            _hash_file_into(f, h)
    else:
        _hash_file_into(p, h)
    return h.hexdigest()


def _hash_file_into(path: Path, h: hashlib._Hash) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def path_size(path: str | os.PathLike[str]) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
