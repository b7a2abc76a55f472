"""CLI basics: help, version, exit codes, no tracebacks for bad input."""

from __future__ import annotations

from pathlib import Path

import adaptc

from .conftest import run_cli


def test_help_and_version() -> None:
    r = run_cli("--help")
    assert r.returncode == 0 and "build" in r.stdout and "devices" in r.stdout
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"adaptc {adaptc.__version__}"
    r = run_cli("build", "--help")
    assert r.returncode == 0 and "--device" in r.stdout and "--out" in r.stdout


def test_usage_errors_exit_2() -> None:
    r = run_cli("build", "--runs", "notanumber")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("no-such-command")
    assert r.returncode == 2


def test_bad_inputs_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_text("nope")
    for args in (("analyze", str(bad)), ("predict", str(bad), "--device", "pixel8"),
                 ("build", "--formats", "tensorrt", "--device", "pixel8", "--out", str(tmp_path / "o")),
                 ("predict", str(bad), "--device", "pixel8", "--precision", "int4")):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("adaptc: error:"), (args, r.stderr)


def test_debug_shows_traceback() -> None:
    r = run_cli("--debug", "devices", "show", "pixle8")
    assert r.returncode == 2 and "Traceback" in r.stderr
