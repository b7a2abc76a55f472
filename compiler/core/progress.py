"""Progress reporting for long steps, decoupled from how it is shown.

Library code asks :func:`current` for the active reporter and opens a step on it; the CLI installs a
rich progress display on a terminal and one plain line per event on a pipe or file (:class:`PlainReporter`), the
Python API installs nothing (silent) unless asked.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

log = logging.getLogger("adaptc")


class Step(Protocol):
    def advance(self, n: float = 1, *, note: str | None = None) -> None: ...
    def done(self, note: str | None = None) -> None: ...


class Reporter(Protocol):
    def step(self, description: str, total: float | None = None) -> Step: ...
    def message(self, text: str) -> None: ...


class _NullStep:
    def advance(self, n: float = 1, *, note: str | None = None) -> None:
        pass

    def done(self, note: str | None = None) -> None:
        pass


class NullReporter:
    def step(self, description: str, total: float | None = None) -> Step:
        log.debug("%s", description)
        return _NullStep()

    def message(self, text: str) -> None:
        log.info("%s", text)


def eta_seconds(elapsed: float, done: float, total: float | None) -> float | None:
    """Seconds left at the mean time per unit so far (``elapsed / done * (total - done)``); None when unknown."""
    if total is None or done <= 0 or done >= total:
        return None
    return elapsed / done * (total - done)


def format_duration(seconds: float, *, precise: bool = True) -> str:
    """``12.3s`` (``12s`` unless precise), ``3m12s``, ``1h02m05s``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if precise else f"{seconds:.0f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s"


def plain_text(text: str) -> str:
    """``text`` without rich markup (``[yellow]…[/yellow]``, ``[dim]``); as it is when it is not valid markup."""
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(text).plain
    except MarkupError:
        return text


# ------------------------------------------------------------------------------------------------ rich (a TTY)
class _RichStep:
    def __init__(self, reporter: RichReporter, description: str, total: float | None):
        self._r = reporter
        self._desc = description
        self._total = total
        self._n = 0.0
        self._t0 = time.perf_counter()
        self._id = reporter.progress.add_task(description, total=total, eta_end=None)

    def advance(self, n: float = 1, *, note: str | None = None) -> None:
        self._n += n
        desc = f"{self._desc} [dim]{note}[/dim]" if note else self._desc
        eta = eta_seconds(time.perf_counter() - self._t0, self._n, self._total)
        # the column counts down from this moment until the next advance
        eta_end = None if eta is None else time.monotonic() + eta
        self._r.progress.update(self._id, advance=n, description=desc, eta_end=eta_end)

    def done(self, note: str | None = None) -> None:
        p = self._r.progress
        p.remove_task(self._id)
        dt = time.perf_counter() - self._t0
        extra = f" — {note}" if note else ""
        p.console.print(f"[green]✓[/green] {self._desc}{extra} [dim]({dt:.1f}s)[/dim]")


def _eta_column() -> type[Any]:
    from rich.progress import Task, TimeRemainingColumn
    from rich.text import Text

    class MeanEtaColumn(TimeRemainingColumn):
        """rich's time-remaining column, from the mean time per unit since the step began (rich's own speed looks at
        the last 30 s only, so it stays blank for epochs a minute apart); blank without a total or an estimate."""

        def render(self, task: Task) -> Text:
            end = task.fields.get("eta_end")
            if task.total is None or task.finished or end is None:
                return Text("")
            left = format_duration(end - time.monotonic(), precise=False)
            return Text(f"ETA {left}", style="progress.remaining")

    return MeanEtaColumn


class RichReporter:
    """Live progress bars on stderr (rich); finished steps stay as one line each."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column

        def fixed() -> Column:  # on a narrow terminal the description wraps, the figures stay whole
            return Column(no_wrap=True)

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24, table_column=fixed()),
            MofNCompleteColumn(table_column=fixed()),
            TimeElapsedColumn(table_column=fixed()),
            _eta_column()(table_column=fixed()),
            console=Console(stderr=True),
            transient=False,
        )

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step(self, description: str, total: float | None = None) -> Step:
        return _RichStep(self, description, total)

    def message(self, text: str) -> None:
        self.progress.console.print(text)


# ------------------------------------------------------------------------------------ plain (a pipe or a file)
class _PlainStep:
    def __init__(self, reporter: PlainReporter, description: str, total: float | None):
        self._r = reporter
        self._desc = plain_text(description)
        self._total = total
        self._n = 0.0
        self._t0 = reporter.clock()
        self._last_line: float | None = None  # when the last advance line was printed
        self._r.line(f"▸ {self._desc}" + (f" 0/{total:g}" if total is not None else ""))

    def advance(self, n: float = 1, *, note: str | None = None) -> None:
        self._n += n
        now = self._r.clock()
        if self._last_line is not None and now - self._last_line < self._r.interval:
            return
        self._last_line = now
        elapsed = now - self._t0
        count = f" {self._n:g}/{self._total:g}" if self._total is not None else ""
        extra = f" — {plain_text(note)}" if note else ""
        eta = eta_seconds(elapsed, self._n, self._total)
        timing = format_duration(elapsed) + (f", ETA {format_duration(eta, precise=False)}" if eta is not None else "")
        self._r.line(f"· {self._desc}{count}{extra} — {timing}")

    def done(self, note: str | None = None) -> None:
        extra = f" — {plain_text(note)}" if note else ""
        self._r.line(f"✓ {self._desc}{extra} ({format_duration(self._r.clock() - self._t0)})")


class PlainReporter:
    """One plain line per event, for stderr redirected to a file or a pipe (a CI log): a step's start, its advances
    (at most one line per ``interval`` seconds for each step, the start and done lines aside) with ``k/N``, the note,
    the time so far and an ETA, and its end; messages without their rich markup. Each line begins with the time."""

    def __init__(
        self, file: IO[str] | None = None, *, interval: float = 5.0, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._file = file  # None: sys.stderr as it is when a line is written
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        f = self._file if self._file is not None else sys.stderr
        with self._lock:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            f.flush()

    def step(self, description: str, total: float | None = None) -> Step:
        return _PlainStep(self, description, total)

    def message(self, text: str) -> None:
        self.line(plain_text(text))


_current: contextvars.ContextVar[Reporter] = contextvars.ContextVar("adaptc_progress", default=NullReporter())  # noqa: B039 - NullReporter is stateless


def current() -> Reporter:
    return _current.get()


@contextlib.contextmanager
def using(reporter: Reporter) -> Iterator[Reporter]:
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)
