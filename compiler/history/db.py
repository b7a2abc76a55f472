"""The history database (see the package docstring for the records): SQLite in WAL mode, one transaction per run.

Written with the standard library's sqlite3, not an ORM: two tables keyed by run, each row holding its record as
JSON beside the columns queries filter on, so a record can gain fields without a migration; the schema version in
``meta`` says when a layout change needs one (:data:`MIGRATIONS`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.cache import cache_dir
from ..errors import HistoryError
from .records import report_records

SCHEMA_VERSION = 1
#: marks the file as adaptc's (SQLite's application_id header field): "adtc"
APPLICATION_ID = 0x61647463
#: schema version -> the step that brings a database of that version to the next one
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, created_utc TEXT, recorded_utc TEXT, command TEXT, "
    "task TEXT, device TEXT, status TEXT, build_dir TEXT, report_sha256 TEXT UNIQUE, record TEXT NOT NULL, "
    "report TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS runs_by_task_device ON runs (task, device, created_utc)",
    "CREATE TABLE IF NOT EXISTS artifacts (run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE, "
    "file TEXT NOT NULL, format TEXT, scheme TEXT, shipped INTEGER, record TEXT NOT NULL, PRIMARY KEY (run_id, file))",
)


def default_path() -> Path:
    """``$ADAPTC_HISTORY``, else ``history.sqlite`` in adaptc's cache folder."""
    env = os.environ.get("ADAPTC_HISTORY")
    return Path(env).expanduser() if env else cache_dir() / "history.sqlite"


def resolve_path(history: str | os.PathLike[str] | bool | None) -> Path | None:
    """The history file a build records into: ``None`` / ``True`` the default, ``False`` none, else that path."""
    if history is False:
        return None
    if history is None or history is True:
        return default_path()
    return Path(history).expanduser()


class History:
    """One open history database (a context manager). ``create``: make the file when it does not exist."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, timeout_s: float = 60.0):
        self.path = Path(path)
        if self.path.is_dir():
            raise HistoryError(f"history {self.path} is a folder, not a history file")
        exists = self.path.exists()
        if exists:
            _check_header(self.path)
        elif not create:
            raise HistoryError(f"no build history at {self.path} (a build records one; --history names another)")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise HistoryError(f"cannot create the history's folder {self.path.parent}: {e.strerror}") from None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._open(exists, timeout_s)
                break
            except sqlite3.OperationalError as e:
                # Two builds opening a new history at once: switching it to WAL needs the file to itself, and
                # SQLite answers "database is locked" there without waiting on the busy timeout, so wait here.
                self.close()
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise HistoryError(f"history {self.path} cannot be used: {e} (it is left as it is)") from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as e:
                self.close()
                raise HistoryError(f"history {self.path} cannot be used: {e} (it is left as it is)") from None

    # -- opening ---------------------------------------------------------------------------------------------
    def _open(self, exists: bool, timeout_s: float) -> None:
        self.conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        if exists:
            self._check()  # before anything is written: a file that is not ours is left as it was
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # WAL persists in the file once set
            self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self._prepare()

    def _check(self) -> None:
        """An existing file: adaptc's (its application id and meta table), of a schema this adaptc reads."""
        self.conn.execute("BEGIN")  # one read snapshot: another build may be creating the history right now
        try:
            app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = (
                self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if ("meta" in tables)
                else None
            )
        finally:
            self.conn.execute("COMMIT")
        if not tables:
            return  # an empty database (a file created and never written): made a history below
        if app_id != APPLICATION_ID or "meta" not in tables:
            raise HistoryError(f"{self.path} is a SQLite database but not an adaptc history: it is left as it is")
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"history {self.path} has schema version {version}, newer than this adaptc's {SCHEMA_VERSION}: "
                "upgrade adaptc or give another --history (the file is left as it is)"
            )

    def _prepare(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        with self._write():
            if not tables:
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                for stmt in _SCHEMA:
                    self.conn.execute(stmt)
                self.conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('created_utc', ?)",
                    (str(SCHEMA_VERSION), _utc()),
                )
            version = int(self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](self.conn)
                version += 1
                self.conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``: a second writer waits for the busy timeout)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------------
    def add_report(
        self,
        report: dict[str, Any],
        build_dir: Path,
        *,
        command: str,
        git: tuple[str | None, bool | None] = (None, None),
    ) -> str | None:
        """Record one build's report (a dict as report.json holds it). Returns the run id, or None when the same
        report (by content) is already recorded."""
        run, arts, text, digest = report_records(report, build_dir, command=command, git=git)
        try:
            with self._write():
                if self.conn.execute("SELECT 1 FROM runs WHERE report_sha256 = ?", (digest,)).fetchone():
                    return None
                self.conn.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run["run_id"], run["created_utc"], run["recorded_utc"], command, run["task"], run["device"],
                     run["status"], run["build_dir"], digest, json.dumps(run), text),
                )  # fmt: skip
                self.conn.executemany(
                    "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?)",
                    [(run["run_id"], a["file"], a["format"], a["scheme"], int(a["shipped"]), json.dumps(a))
                     for a in arts],
                )  # fmt: skip
        except sqlite3.DatabaseError as e:
            raise HistoryError(f"could not record the build in history {self.path}: {e}") from None
        return str(run["run_id"])

    # -- reading ---------------------------------------------------------------------------------------------
    def runs(self, task: str | None = None, device: str | None = None, limit: int | None = None) -> list[dict]:
        """Run records, oldest first (the newest ``limit`` when given)."""
        where, args = _filters(task=task, device=device)
        sql = f"SELECT record FROM runs{where} ORDER BY created_utc DESC, recorded_utc DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(r[0]) for r in self.conn.execute(sql, args)][::-1]

    def artifacts(self, run_ids: list[str] | None = None) -> list[dict]:
        rows = self.conn.execute("SELECT run_id, record FROM artifacts ORDER BY run_id, file").fetchall()
        keep = None if run_ids is None else set(run_ids)
        return [json.loads(rec) for rid, rec in rows if keep is None or rid in keep]

    def runs_by_id(self, run_ids: list[str]) -> list[dict]:
        marks = ", ".join("?" * len(run_ids))
        rows = self.conn.execute(f"SELECT record FROM runs WHERE run_id IN ({marks})", run_ids) if run_ids else []
        return [json.loads(r[0]) for r in rows]

    def report(self, run_id: str) -> dict | None:
        row = self.conn.execute("SELECT report FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else json.loads(row[0])


def _is_busy(e: sqlite3.OperationalError) -> bool:
    text = str(e)
    return "locked" in text or "busy" in text


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite before sqlite3 touches it (it would not say so until the first query)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise HistoryError(f"cannot read history {path}: {e.strerror}") from None
    if head and head != _SQLITE_MAGIC:
        raise HistoryError(f"{path} is not an adaptc history (not a SQLite database): it is left as it is")


def _filters(**eq: str | None) -> tuple[str, list[str]]:
    cond = [(k, v) for k, v in eq.items() if v]
    if not cond:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k, _ in cond), [v for _, v in cond if v]


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def open_history(path: str | os.PathLike[str] | None = None, *, create: bool = False) -> History:
    """The history at ``path`` (default: :func:`default_path`); ``create``: make it when missing."""
    return History(resolve_path(path) or default_path(), create=create)


def record_build(
    report: Any,
    build_dir: str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    command: str = "build",
) -> str | None:
    """Append a finished build (a :class:`~adaptc.report.BuildReport` or its dict) to the history; the git commit
    is that of the working directory. Returns the run id (None: already recorded)."""
    from .records import git_state

    data = report.model_dump(mode="json") if hasattr(report, "model_dump") else dict(report)
    with History(resolve_path(path) or default_path(), create=True) as h:
        return h.add_report(data, Path(build_dir), command=command, git=git_state(Path.cwd()))


def import_builds(folders: list[str | os.PathLike[str]], path: str | os.PathLike[str] | None = None) -> list[str]:
    """Add the reports of build folders (or report.json files) written before or elsewhere; returns the new run ids
    (a report already recorded is skipped)."""
    added = []
    with History(resolve_path(path) or default_path(), create=True) as h:
        for f in folders:
            report, folder = read_report(Path(f))
            rid = h.add_report(report, folder.resolve(), command="import")
            if rid:
                added.append(rid)
    return added


def read_report(path: Path) -> tuple[dict[str, Any], Path]:
    """A build's report.json as a dict, and its folder (reports of earlier schema versions too: records read only
    what they hold)."""
    f = path / "report.json" if path.is_dir() else path
    if not f.is_file():
        raise HistoryError(f"{path}: no report.json there (give a build folder or its report.json)")
    try:
        report = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HistoryError(f"{f}: not a readable build report ({e})") from None
    if not isinstance(report, dict) or not {"schema_version", "task", "device", "artifacts"} <= set(report):
        raise HistoryError(f"{f}: not an adaptc build report (no schema_version, task, device and artifacts)")
    return report, f.parent


def runs(
    task: str | None = None,
    device: str | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Run records (oldest first) of the history at ``path`` (default: :func:`default_path`)."""
    with open_history(path) as h:
        return h.runs(task, device, limit)


def artifacts(run_ids: list[str] | None = None, *, path: str | os.PathLike[str] | None = None) -> list[dict]:
    with open_history(path) as h:
        return h.artifacts(run_ids)


def runs_frame(task: str | None = None, device: str | None = None, *, path: str | os.PathLike[str] | None = None):  # noqa: ANN201
    """:func:`runs` as a pandas DataFrame (pandas is not a dependency: install it for this)."""
    try:
        import pandas as pd
    except ImportError:
        raise HistoryError("runs_frame needs pandas (pip install pandas); runs() returns plain records") from None
    return pd.DataFrame(runs(task, device, path=path))


def export_records(fmt: str, path: str | os.PathLike[str] | None = None, *, what: str = "artifacts") -> str:
    """Every run (``what="runs"``) or artifact joined with its run (``"artifacts"``) as CSV or JSON lines."""
    if fmt not in ("csv", "jsonl"):
        raise HistoryError(f"unknown export format {fmt!r} (known: csv, jsonl)")
    with open_history(path) as h:
        rs = h.runs()
        by_id = {r["run_id"]: r for r in rs}
        if what == "runs":
            rows = rs
        else:
            keep = ("run_id", "created_utc", "task", "device", "git_commit", "status")
            rows = [{**{k: by_id.get(a["run_id"], {}).get(k) for k in keep}, **a} for a in h.artifacts()]
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    return buf.getvalue()


def dashboard_data(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What the dashboard draws (see the package docstring)."""
    from ..core import __version__
    from .records import regressions_between, stored_build_report

    with open_history(path) as h:
        rs = h.runs()
        arts = h.artifacts()
        last: dict[tuple[str, str], dict] = {}
        loaded: dict[str, Any] = {}  # run id -> its report, read once (each serves as candidate, then as baseline)

        def report_of(run: dict) -> Any:
            if run["run_id"] not in loaded:
                loaded[run["run_id"]] = stored_build_report(h.report(run["run_id"]))
            return loaded[run["run_id"]]

        for r in rs:
            key = (r["task"], r["device"])
            prev = last.get(key)
            r["baseline_run"] = prev["run_id"] if prev else None
            r["regressions"] = regressions_between((report_of(prev), prev), (report_of(r), r)) if prev else []
            r["regressed"] = bool(r["regressions"])
            if r["status"] in ("ok", "partial"):
                last[key] = r
    devices = {r["device"]: {"display_name": r.get("device_display"), "budgets": r.get("budgets") or {}} for r in rs}
    tasks = {r["task"]: {"metric_name": r.get("metric_name")} for r in rs}
    return {
        "generated_utc": _utc(),
        "history": str(resolve_path(path) or default_path()),
        "adaptc_version": __version__,
        "runs": rs,
        "artifacts": arts,
        "devices": devices,
        "tasks": tasks,
    }


def baseline_for(
    report: dict[str, Any], path: str | os.PathLike[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The last release before ``report`` in the history: the newest run of the same task and device that shipped
    something (status ok or partial) and is not this report itself. (stored report, run record), or None."""
    from .records import report_digest

    digest = report_digest(report)[1]
    task, device = _get_name(report, "task"), _get_name(report, "device")
    with open_history(path) as h:
        rows = h.conn.execute(
            "SELECT run_id, report_sha256 FROM runs WHERE task = ? AND device = ? AND status IN ('ok', 'partial') "
            "AND created_utc <= ? ORDER BY created_utc DESC, recorded_utc DESC",
            (task, device, str(report.get("created_utc") or "9999")),
        ).fetchall()
        for run_id, sha in rows:
            if sha != digest:
                rep = h.report(run_id)
                run = next(iter(h.runs_by_id([run_id])), None)
                if rep is not None and run is not None:
                    return rep, run
    return None


def _get_name(report: dict[str, Any], key: str) -> str | None:
    v = report.get(key)
    return v.get("name") if isinstance(v, dict) else None
