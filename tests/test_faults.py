"""Faults on purpose (issue 28): SIGKILL at ten points of a real build (training, export, measurement, report)
and a rerun after each, and an output that runs out of room (tests/faults.py)."""

from __future__ import annotations

from pathlib import Path

from tests import faults


def test_killed_builds_resume_to_the_same_result(tmp_path: Path) -> None:
    rep = faults.kill_and_resume(tmp_path, kills=10, seed=0)
    assert rep.kills >= 10, rep
    assert set(rep.by_phase) == set(faults.PHASES), rep.by_phase  # every phase was hit
    assert rep.half_written_seen == [], rep.half_written_seen
    assert rep.records_redone == [] and rep.records_kept > 0, rep.records_redone
    assert rep.tracebacks == 0
    assert rep.same_choice and rep.same_metrics, rep.differences


def test_a_full_disk_ends_in_one_line_exit_2(tmp_path: Path) -> None:
    cases = faults.disk_full(tmp_path)
    assert cases
    for c in cases:
        assert c["exit"] == 2 and not c["traceback"] and len(c["lines"]) == 1, c
        assert "space" in c["lines"][0] or "too large" in c["lines"][0].lower(), c
