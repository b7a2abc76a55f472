"""Progress display: plain lines on a pipe or file (PlainReporter), rich bars with an ETA on a terminal, and the
CLI's reporter choice and Ctrl-C handling (a real `adaptc build` interrupted with SIGINT)."""

from __future__ import annotations

import io
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pytest
import typer

from adaptc import cli
from adaptc.core import progress
from adaptc.core.progress import NullReporter, PlainReporter, RichReporter, format_duration

TS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _plain(interval: float = 5.0) -> tuple[PlainReporter, io.StringIO, Clock]:
    buf, clock = io.StringIO(), Clock()
    return PlainReporter(file=buf, interval=interval, clock=clock), buf, clock


def _lines(buf: io.StringIO) -> list[str]:
    """The lines written so far, each checked for its timestamp and returned without it."""
    out = []
    for ln in buf.getvalue().splitlines():
        assert re.match(TS, ln), ln
        out.append(ln[20:])
    return out


def test_format_duration() -> None:
    assert format_duration(12.34) == "12.3s"
    assert format_duration(12.34, precise=False) == "12s"
    assert format_duration(192) == "3m12s"
    assert format_duration(3725) == "1h02m05s"
    assert format_duration(-1) == "0.0s"


def test_plain_start_advance_done_lines() -> None:
    rep, buf, clock = _plain()
    step = rep.step("distill student: 20 epochs", total=20)
    assert _lines(buf) == ["▸ distill student: 20 epochs 0/20"]
    clock.t = 64.0
    step.advance(1, note="val accuracy 0.9812")
    clock.t = 128.0
    step.advance(1, note="val accuracy 0.9850")
    clock.t = 1200.0
    step.done("best val 0.9850")
    assert _lines(buf)[1:] == [
        "· distill student: 20 epochs 1/20 — val accuracy 0.9812 — 1m04s, ETA 20m16s",
        "· distill student: 20 epochs 2/20 — val accuracy 0.9850 — 2m08s, ETA 19m12s",
        "✓ distill student: 20 epochs — best val 0.9850 (20m00s)",
    ]
    assert "\x1b" not in buf.getvalue()  # no ANSI


def test_plain_eta_from_mean_time_per_unit() -> None:
    rep, buf, clock = _plain()
    step = rep.step("train", total=4)
    clock.t = 64.0
    step.advance(1)  # 64 s a unit, 3 left
    assert _lines(buf)[-1] == "· train 1/4 — 1m04s, ETA 3m12s"
    clock.t = 70.0
    step.advance(3)  # 6 s after the last line, so it prints; all done: no ETA
    assert _lines(buf)[-1] == "· train 4/4 — 1m10s"
    clock.t = 70.3
    step.done()
    assert _lines(buf)[-1] == "✓ train (1m10s)"


def test_plain_without_total() -> None:
    rep, buf, clock = _plain()
    step = rep.step("search")
    clock.t = 2.0
    step.advance(note="rung 1")
    clock.t = 12.3
    step.done("3 candidates")
    assert _lines(buf) == ["▸ search", "· search — rung 1 — 2.0s", "✓ search — 3 candidates (12.3s)"]


def test_plain_throttles_fast_advances() -> None:
    rep, buf, clock = _plain(interval=5.0)
    step = rep.step("cost filter", total=1000)
    for _ in range(1000):  # 1000 items in 12 s
        clock.t += 0.012
        step.advance(1)
    step.done("40 left")
    lines = _lines(buf)
    assert lines[0] == "▸ cost filter 0/1000" and lines[-1] == "✓ cost filter — 40 left (12.0s)"
    advances = lines[1:-1]
    # the first advance, then one per 5 s: at ~0 s, ~5 s, ~10 s
    assert [ln.split()[3] for ln in advances] == ["1/1000", "418/1000", "835/1000"], advances


def test_plain_strips_markup() -> None:
    rep, buf, _ = _plain()
    rep.message("[yellow]search: budget too tight, relaxing[/yellow]")
    rep.message("[dim]resume: model.onnx (fp32) already done[/dim]")
    rep.message("shape [1, 3, 224, 224] and a stray [/oops] tag")  # not markup: kept as it is
    step = rep.step("[bold]export[/bold]", total=2)
    step.advance(1, note="[dim]exported[/dim]")
    step.done("[green]ok[/green]")
    assert _lines(buf) == [
        "search: budget too tight, relaxing",
        "resume: model.onnx (fp32) already done",
        "shape [1, 3, 224, 224] and a stray [/oops] tag",
        "▸ export 0/2",
        "· export 1/2 — exported — 0.0s, ETA 0s",
        "✓ export — ok (0.0s)",
    ]


def test_plain_default_stream_is_stderr_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    PlainReporter().message("hello")
    err = capsys.readouterr().err
    assert re.fullmatch(TS + "hello\n", err), err


def test_rich_eta_column_only_with_a_total() -> None:
    rep = RichReporter()  # not started: nothing is drawn
    eta = rep.progress.columns[-1]
    with_total = rep.step("train", total=4)
    no_total = rep.step("search")
    with_total.advance(1)
    no_total.advance(1)
    t_total, t_none = rep.progress.tasks
    assert eta.render(t_total).plain.startswith("ETA ")
    assert eta.render(t_none).plain == ""


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize(
    ("quiet", "tty", "kind"),
    [
        (True, True, NullReporter),
        (True, False, NullReporter),
        (False, True, RichReporter),
        (False, False, PlainReporter),
    ],
)
def test_cli_reporter_choice(monkeypatch: pytest.MonkeyPatch, quiet: bool, tty: bool, kind: type) -> None:
    monkeypatch.setitem(cli._state, "quiet", quiet)
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    assert type(cli._reporter()) is kind
    assert isinstance(progress.current(), NullReporter)  # the Python API stays silent unless asked


def _main_raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> int:
    app = typer.Typer()

    @app.command()
    def boom() -> None:
        raise exc

    cmd = typer.main.get_command(app)
    monkeypatch.setattr(cli.typer.main, "get_command", lambda _app: cmd)
    return cli.main([])


def _abort_from_ctrl_c() -> click.exceptions.Abort:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as e:
        a = click.exceptions.Abort()
        a.__cause__ = e
        return a


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (KeyboardInterrupt(), "adaptc: interrupted; finished work is kept and a rerun resumes"),
        (_abort_from_ctrl_c(), "adaptc: interrupted; finished work is kept and a rerun resumes"),
        (click.exceptions.Abort(), "adaptc: aborted"),  # e.g. a declined prompt
    ],
)
def test_main_ctrl_c_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: BaseException, line: str
) -> None:
    assert _main_raising(monkeypatch, exc) == 130
    assert line in capsys.readouterr().err.splitlines()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_build_exits_130(tmp_path: Path) -> None:
    """A real build on a fresh cache (the digits teacher trains first, ~20 s), interrupted with SIGINT once its first
    progress line is on stderr (a pipe: plain lines): exit 130 with the interrupted line."""
    env = dict(os.environ, ADAPTC_CACHE=str(tmp_path / "cache"))
    args = [
        sys.executable,
        "-m",
        "adaptc",
        "build",
        "--device",
        "pixel8",
        "--no-search",
        "--formats",
        "onnx",
        "--out",
        str(tmp_path / "o"),
        "--runs",
        "10",
    ]

    def default_sigint() -> None:  # a parent that ignores SIGINT (a background job) would pass that on
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for ln in proc.stderr:
            lines.put(ln.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 45
        while True:
            ln = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert ln is not None, f"adaptc ended before a progress line: {seen}"
            seen.append(ln)
            if re.match(TS + "▸ ", ln):
                break
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while not lines.empty() and (ln := lines.get_nowait()) is not None:
        seen.append(ln)
    assert rc == 130, seen
    assert seen[-1] == "adaptc: interrupted; finished work is kept and a rerun resumes", seen
    assert not any("Traceback" in ln for ln in seen), seen
