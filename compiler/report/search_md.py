"""Markdown for the search section of a report (filled in by the student search)."""

from __future__ import annotations

from typing import Any


def render_search(search: dict[str, Any]) -> list[str]:
    lines = ["## Student search", ""]
    if search.get("summary"):
        lines += [search["summary"], ""]
    return lines
