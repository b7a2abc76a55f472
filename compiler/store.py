"""The build's state store: a SQLite database in the output folder (``.adaptc/state.sqlite``).

Finished work (an exported and checked artifact, a search trial) is recorded under a key that hashes
everything it depends on. An interrupted build run again with the same inputs finds those records and
skips the work; SQLite commits are atomic, so a kill never leaves a half-recorded step.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import StateError


def scores_key(key: str) -> str:
    """The key of an artifact record's per-sample test scores (stored beside the record)."""
    return key + "#scores"


#: the tables a build's state store holds (the search's trial store adds ``trials``)
_TABLES = {"stages": ["key", "stage", "value", "created"], "trials": None}


def store_problem(path: Path) -> str | None:
    """What is wrong with an existing state store, in words (None: it is an adaptc store that reads)."""
    try:
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            foreign = sorted(tables - set(_TABLES))
            if foreign:
                return f"is not an adaptc build state (it has the table(s) {', '.join(foreign)})"
            if "stages" in tables:
                cols = [r[1] for r in conn.execute("PRAGMA table_info(stages)")]
                if cols != _TABLES["stages"]:
                    return f"is not an adaptc build state (its stages table has the columns {', '.join(cols)})"
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                return f"is corrupt (SQLite's check: {check[0] if check else 'no answer'})"
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return f"is corrupt or not a database ({e})"
    return None


def check_store(out_dir: Path, resume: bool) -> str | None:
    """Before a build's long work: its folder's state store must read. A corrupt or foreign one stops a resuming
    build (:class:`StateError`, naming the way past it); without resuming it is moved aside (the artifacts stay)
    and a fresh one started. Returns the warning of a store moved aside, else None."""
    path = out_dir / ".adaptc" / "state.sqlite"
    if not path.exists():
        return None
    problem = store_problem(path)
    if problem is None:
        return None
    if resume:
        raise StateError(
            f"the build state {path} {problem}: run again with --no-resume (a fresh state; the artifacts in "
            f"{out_dir} stay) or `adaptc clean {out_dir}` first"
        )
    aside = path.with_name(f"state.sqlite.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    return f"the build state {path} {problem}: moved aside to {aside.name}; a fresh one was started"


def clean_state(out_dir: Path) -> list[Path]:
    """Remove a build folder's state (``.adaptc/``: the state store, trials, checkpoints, spilled teacher
    outputs), keeping its artifacts and reports. Returns what was removed."""
    state = out_dir / ".adaptc"
    if not state.is_dir():
        return []
    removed = sorted(state.iterdir())
    shutil.rmtree(state)
    return removed


class BuildStore:
    def __init__(self, path: str | Path, *, read_only: bool = False):
        """``read_only``: open an existing store without writing to it (another build's folder)."""
        self.path = Path(path)
        if read_only:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # WAL persists once set; switching
            self._conn.execute("PRAGMA journal_mode=WAL")  # needs the file to itself, so only the first opener does
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS stages (key TEXT PRIMARY KEY, stage TEXT NOT NULL, value TEXT NOT NULL, "
            "created REAL NOT NULL)"
        )

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT value FROM stages WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def records(self, stage: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, value) of every record of ``stage``."""
        for key, value in self._conn.execute("SELECT key, value FROM stages WHERE stage = ?", (stage,)):
            yield key, json.loads(value)

    def put(self, key: str, stage: str, value: dict[str, Any]) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO stages (key, stage, value, created) VALUES (?, ?, ?, ?)",
                (key, stage, json.dumps(value, default=str), time.time()),
            )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> BuildStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def data_fingerprint(*splits: Any) -> str:
    """A hash of data splits (``Split``: every input tensor and the targets; shapes, dtypes and values), so
    that stored results computed from data (trials, measured artifacts) are not reused for other data under the
    same task name."""
    h = hashlib.sha256()
    for sp in splits:
        for t in (*sp.inputs, sp.targets):
            if t is None:
                h.update(b"none")
            else:
                _hash_tensor(h, t)
    return h.hexdigest()[:20]


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _hash_tensor(h: hashlib._Hash, t: torch.Tensor) -> None:
    """Add a tensor's dtype, shape and values to ``h``."""
    t = t.detach().cpu()
    h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
    if t.dtype == torch.bfloat16:
        t = t.float()
    # row chunks of at most 64 MiB: a split memory-mapped from disk is hashed without being copied whole
    rows = max(1, (64 << 20) // max(1, t[:1].numel() * t.element_size())) if t.dim() else 1
    for i in range(0, max(1, len(t)) if t.dim() else 1, rows):
        chunk = t[i : i + rows].contiguous() if t.dim() else t.contiguous()
        h.update(chunk.numpy().reshape(-1).view(np.uint8).data)


def model_fingerprint(model: nn.Module, example_inputs: tuple[torch.Tensor, ...] = ()) -> str:
    """A hash of a model's architecture (module tree) and weights, and of the example input shapes."""
    h = hashlib.sha256()
    h.update(repr(model).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        _hash_tensor(h, v)
    for x in example_inputs:
        h.update(f"{tuple(x.shape)}{x.dtype}".encode())
    return h.hexdigest()[:20]
