"""Progress reporting for long steps, decoupled from how it is shown.

Library code asks :func:`current` for the active reporter and opens a step on it; the CLI installs a
rich progress display on stderr, the Python API installs nothing (silent) unless asked.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from typing import Protocol

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


class _RichStep:
    def __init__(self, reporter: RichReporter, description: str, total: float | None):
        self._r = reporter
        self._desc = description
        self._t0 = time.perf_counter()
        self._id = reporter.progress.add_task(description, total=total)

    def advance(self, n: float = 1, *, note: str | None = None) -> None:
        desc = f"{self._desc} [dim]{note}[/dim]" if note else self._desc
        self._r.progress.update(self._id, advance=n, description=desc)

    def done(self, note: str | None = None) -> None:
        p = self._r.progress
        p.remove_task(self._id)
        dt = time.perf_counter() - self._t0
        extra = f" — {note}" if note else ""
        p.console.print(f"[green]✓[/green] {self._desc}{extra} [dim]({dt:.1f}s)[/dim]")


class RichReporter:
    """Live progress bars on stderr (rich); finished steps stay as one line each."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
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
