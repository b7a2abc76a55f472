"""The trial store: every finished trial (skeleton, rung, epochs, seed -> validation metric and weights) in the
build's SQLite database; weights in ``.adaptc/trials/<key>.pt`` (written atomically, before the row)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.io import atomic_path
from ..store import BuildStore


class TrialStore:
    def __init__(self, store: BuildStore, out_dir: Path):
        self.store = store
        self.dir = out_dir / ".adaptc" / "trials"
        self.dir.mkdir(parents=True, exist_ok=True)
        store.connection.execute(
            "CREATE TABLE IF NOT EXISTS trials (key TEXT PRIMARY KEY, skeleton TEXT, rung TEXT, epochs INTEGER, "
            "seed INTEGER, val REAL, seconds REAL, checkpoint TEXT, info TEXT, created REAL)"
        )

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.store.connection.execute(
            "SELECT skeleton, rung, epochs, seed, val, seconds, checkpoint, info FROM trials WHERE key = ?", (key,)
        ).fetchone()
        if row is None or not Path(row[6]).exists():
            return None
        return {
            "skeleton": row[0],
            "rung": row[1],
            "epochs": row[2],
            "seed": row[3],
            "val": row[4],
            "seconds": row[5],
            "checkpoint": row[6],
            "info": json.loads(row[7] or "{}"),
        }

    def put(
        self,
        key: str,
        *,
        skeleton: str,
        rung: str,
        epochs: int,
        seed: int,
        val: float,
        seconds: float,
        model: nn.Module,
        info: dict[str, Any],
    ) -> None:
        ckpt = self.dir / f"{key}.pt"
        with atomic_path(ckpt) as tmp:
            torch.save(model, tmp)  # the whole module: pruned shapes differ from the teacher's
        with self.store.connection:
            self.store.connection.execute(
                "INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    skeleton,
                    rung,
                    epochs,
                    seed,
                    val,
                    seconds,
                    str(ckpt),
                    json.dumps(info, default=str),
                    time.time(),
                ),
            )

    def load_model(self, rec: dict[str, Any]) -> nn.Module:
        return torch.load(rec["checkpoint"], map_location="cpu", weights_only=False).eval()

    def final_model(self) -> nn.Module | None:
        """The student of the build's last final training (what the build exported), or None."""
        row = self.store.connection.execute(
            "SELECT key FROM trials WHERE rung = 'final' ORDER BY created DESC LIMIT 1"
        ).fetchone()
        rec = self.get(row[0]) if row else None
        return self.load_model(rec) if rec else None

    @classmethod
    def open_final(cls, out_dir: Path) -> nn.Module:
        """The final student of a finished build folder (benchmarks load the model a build chose)."""
        from ..errors import AdaptcError

        db = Path(out_dir) / ".adaptc" / "state.sqlite"
        if not db.is_file():
            raise AdaptcError(f"{out_dir}: not an adaptc build folder (no .adaptc/state.sqlite)")
        with BuildStore(db) as store:
            pointer = store.get("final_student")
        if pointer is not None:  # the trial store may be elsewhere (a fleet's, shared by its devices)
            state = (Path(out_dir) / pointer["state"]).resolve()
            with BuildStore(state / ".adaptc" / "state.sqlite") as store:
                trials = cls(store, state)
                rec = trials.get(pointer["trial"])
                model = trials.load_model(rec) if rec else None
        else:
            with BuildStore(db) as store:
                model = cls(store, Path(out_dir)).final_model()
        if model is None:
            raise AdaptcError(f"{out_dir}: no finished final training in this build folder (search off, or unfinished)")
        return model

    def best_of(self, keys: list[str]) -> dict[str, Any] | None:
        """Of the stored trials ``keys``, the one with the best validation metric, ties broken by the agreement with
        the teacher (None: none stored). The record carries its ``key``."""
        recs = [{**r, "key": k} for k in keys if (r := self.get(k)) is not None]
        return max(recs, key=lambda r: (r["val"], r["info"].get("fidelity", -2.0)), default=None)

    def finished(self) -> list[dict[str, Any]]:
        """Every stored trial, oldest first: skeleton, rung, epochs, validation metric, seconds (and why it
        stopped early, when it did)."""
        rows = self.store.connection.execute(
            "SELECT skeleton, rung, epochs, val, seconds, info FROM trials ORDER BY created"
        ).fetchall()
        out = []
        for sk, rung, epochs, val, secs, info in rows:
            rec = {"skeleton": sk, "rung": rung, "epochs": epochs, "val": val, "seconds": round(secs, 1)}
            stopped = json.loads(info or "{}").get("stopped")
            if stopped:
                rec["stopped"] = stopped
            out.append(rec)
        return out

    @staticmethod
    def counts(store: BuildStore, since: float) -> dict[str, Any]:
        """How many trials ``store`` holds, how many were made since the Unix time ``since``, how many of them are
        rung and final trainings ({} when it has no trials table yet); reads without creating anything."""
        conn = store.connection
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'trials'").fetchone():
            return {}
        rows = conn.execute("SELECT rung, created FROM trials").fetchall()
        return {
            "in_store": len(rows),
            "trained": sum(1 for _, c in rows if c >= since),
            "rung_trials": sum(1 for r, _ in rows if r != "final"),
            "final_trials": sum(1 for r, _ in rows if r == "final"),
        }

    def count(self) -> int:
        return int(self.store.connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
