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
