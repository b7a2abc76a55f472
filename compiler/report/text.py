"""How reports write numbers: fractions in percent with their intervals (report.md, the terminal, the search summary)."""

from __future__ import annotations


def bracket(ci: tuple[float, float] | list[float] | None, digits: int = 1, signed: bool = False) -> str:
    """How reports write an interval of a fraction: `` [a, b]`` in percent (points), empty without one."""
    if ci is None:
        return ""
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f" [{f.format(100 * ci[0])}, {f.format(100 * ci[1])}]"


def percent(value: float, ci: tuple[float, float] | list[float] | None = None, digits: int = 2) -> str:
    """A fraction in percent with ``digits`` decimals, and its interval (one decimal fewer) where there is one."""
    return f"{100 * value:.{digits}f}%" + bracket(ci, max(0, digits - 1))
