"""Fuzzing (issue 28): 550 generated device profiles, command lines and damaged model files per run, through the
real command line. Each ends in exit 0 or exit 2 with one line, never a traceback or a hang (tests/fuzzing.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

fuzzing = pytest.importorskip("tests.fuzzing", reason="hypothesis (the dev extra) is not installed")

#: cases per campaign (>= 500 in all, the issue's floor); the reliability run (benchmarks/reliability.py) runs more
CASES = {"profiles": 250, "command lines": 200, "model files": 100}


def _check(tally) -> None:  # noqa: ANN001
    assert tally.cases >= 1
    assert tally.tracebacks == 0 and not tally.failures, "\n".join(tally.failures[:10])


def test_fuzzed_device_profiles() -> None:
    t = fuzzing.fuzz_profiles(CASES["profiles"])
    _check(t)
    assert t.exits[2] > t.exits[0] > 0  # most edits break the profile; some keep it valid


def test_fuzzed_command_lines(tmp_path: Path) -> None:
    files = fuzzing.small_model_files(tmp_path / "m")
    t = fuzzing.fuzz_command_lines(CASES["command lines"], str(tmp_path / "m" / "m.onnx"))
    _check(t)


def test_fuzzed_model_files(tmp_path: Path) -> None:
    files = fuzzing.small_model_files(tmp_path / "m")
    assert ".onnx" in files
    t = fuzzing.fuzz_model_files(CASES["model files"], files)
    _check(t)
