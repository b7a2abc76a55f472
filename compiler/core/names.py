"""'Did you mean ...?' messages for unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name_message(what: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} (known: {', '.join(known)})"
