"""Atomic writes: a failure mid-write leaves the previous file intact and no temporaries behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaptc.core.io import atomic_path, atomic_write_json, atomic_write_text, clean_stale_temporaries, sha256_path


def test_atomic_write_replaces(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    atomic_write_json(f, {"a": 1})
    atomic_write_json(f, {"a": 2})
    assert f.read_text().strip().endswith("}") and '"a": 2' in f.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failure_mid_write_keeps_old_file(tmp_path: Path) -> None:
    f = tmp_path / "model.onnx"
    atomic_write_text(f, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(f) as tmp:
            tmp.write_text("half of a new fi")
            raise RuntimeError("killed")
    assert f.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_directory_artifacts_and_stale_cleanup(tmp_path: Path) -> None:
    d = tmp_path / "m.mlpackage"
    for content in ("v1", "v2"):
        with atomic_path(d) as tmp:
            tmp.mkdir()
            (tmp / "weights.bin").write_text(content)
    assert (d / "weights.bin").read_text() == "v2"
    h = sha256_path(d)
    assert len(h) == 64
    (tmp_path / ".adaptc-tmp-leftover").mkdir()
    assert clean_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]


def test_corrupt_or_foreign_state_store_is_named_and_got_past(tmp_path: Path) -> None:
    """A build folder whose state store is not a readable adaptc store: a resuming build stops at once with one
    line naming it and the ways past it (exit 2); `--no-resume` moves it aside and builds; `adaptc clean` removes
    the state and keeps the artifacts."""
    import sqlite3

    from tests.conftest import run_cli

    out = tmp_path / "b"
    args = ["export", "--out", str(out), "--formats", "onnx", "--runs", "5"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    state = out / ".adaptc" / "state.sqlite"
    artifacts = sorted(p.name for p in out.iterdir() if p.is_file())
    assert "model.onnx" in artifacts and "report.json" in artifacts
    for content in ("garbage", "foreign"):
        for extra in ("-wal", "-shm"):
            Path(f"{state}{extra}").unlink(missing_ok=True)
        state.unlink()
        if content == "garbage":
            state.write_bytes(b"not a database " * 100)
        else:
            c = sqlite3.connect(state)
            c.execute("CREATE TABLE users (id INTEGER)")
            c.commit()
            c.close()
        r = run_cli(*args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert str(state) in lines[0] and "--no-resume" in lines[0] and "adaptc clean" in lines[0]
        assert ("not a database" if content == "garbage" else "not an adaptc build state") in lines[0]
    r = run_cli(*args, "--no-resume")
    assert r.returncode == 0, r.stderr
    assert any(p.name.startswith("state.sqlite.unreadable-") for p in (out / ".adaptc").iterdir())
    assert "moved aside" in (out / "report.json").read_text()
    r = run_cli("clean", str(out))
    assert r.returncode == 0 and "artifacts and reports kept" in r.stdout, r.stderr
    assert not (out / ".adaptc").exists()
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == artifacts
    r = run_cli("clean", str(tmp_path / "nope"))
    assert r.returncode == 2 and "is not a folder" in r.stderr


def test_a_second_build_into_a_folder_in_use_stops_and_a_killed_builds_lock_is_taken_over(tmp_path: Path) -> None:
    """The folder lock: a build into a folder another process holds stops at once (exit 2, one line naming the
    process); once that process is killed (SIGKILL: nothing cleaned up), the next build takes the folder over."""
    import signal
    import subprocess
    import sys

    from tests.conftest import run_cli

    out = tmp_path / "b"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from adaptc.core.io import folder_lock\n"
         f"with folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        args = ["export", "--out", str(out), "--formats", "onnx", "--runs", "5"]
        r = run_cli(*args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "is in use by process" in lines[0] and str(holder.pid) in lines[0], lines[0]
        assert not (out / "model.onnx").exists()  # (stopped before any work)
        r = run_cli("clean", str(out))
        assert r.returncode == 2 and "is in use by process" in r.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert (out / "model.onnx").exists()
