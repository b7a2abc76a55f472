"""The documentation: links resolve, pages the code names exist, the README stays short, and every benchmark
table in docs/ is what ``benchmarks/tables.py`` renders from the results JSON (none typed by hand or stale).

Text only: no torch, no adaptc import.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
TABLES_PY = ROOT / "benchmarks" / "tables.py"

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def rel(p: Path) -> str:
    p = p.resolve()
    return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link and code markup dropped, lower case, punctuation removed (word
    characters, hyphens and spaces kept), spaces to hyphens."""
    s = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    s = re.sub(r"<[^>]+>", "", s).replace("`", "").strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(page: Path) -> frozenset[str]:
    """Every heading anchor of a page, with GitHub's -1, -2, ... for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(FENCE.sub("", page.read_text())):
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


@lru_cache(maxsize=None)
def tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("adaptc_benchmark_tables", TABLES_PY)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- (a) links ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page: Path) -> None:
    bad = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
            continue
        if anchor:
            if dest.suffix != ".md":
                bad.append(f"{target}: an anchor into a file that is not markdown")
            elif anchor not in anchors(dest):
                bad.append(f"{target}: no heading #{anchor} in {rel(dest)}")
    assert not bad, f"{rel(page)}: broken links:\n" + "\n".join(bad)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    """Every page of docs/ is linked from the README or from a page linked from it (no orphan page)."""
    reached, todo = {README}, [README]
    while todo:
        page = todo.pop()
        for target in links(page):
            path = target.partition("#")[0]
            if not path or re.match(r"^[a-z][a-z0-9+.-]*:", path, re.I):
                continue
            dest = (page.parent / path).resolve()
            if dest.suffix == ".md" and dest.exists() and dest not in reached:
                reached.add(dest)
                todo.append(dest)
    orphans = [rel(p) for p in PAGES if p.resolve() not in {r.resolve() for r in reached}]
    assert not orphans, f"docs pages no link leads to: {orphans}"


def test_slug_rules() -> None:
    assert slug("Bring your own model: the `Task` interface") == "bring-your-own-model-the-task-interface"
    assert slug("`adaptc calibrate`") == "adaptc-calibrate"
    assert slug("3. Successive halving") == "3-successive-halving"
    assert slug("What moved retention, and what was tried") == "what-moved-retention-and-what-was-tried"


# -- (b) pages the code names ------------------------------------------------------------------------------------
def test_docs_pages_named_in_the_code_exist() -> None:
    named: dict[str, list[str]] = {}
    for py in sorted((ROOT / "compiler").rglob("*.py")):
        for ref in re.findall(r"docs/[\w/.-]+\.md", py.read_text(encoding="utf-8", errors="replace")):
            named.setdefault(ref, []).append(rel(py))
    assert named, "no docs/*.md reference found in compiler/ (the pattern or the layout changed)"
    missing = {ref: where for ref, where in named.items() if not (ROOT / ref).is_file()}
    assert not missing, f"pages named in the code that do not exist: {missing}"


# -- (c) the README is the front door -------------------------------------------------------------------------------
def test_readme_is_at_most_300_lines() -> None:
    n = len(README.read_text().splitlines())
    assert n <= 300, f"README.md has {n} lines (at most 300: move detail to docs/)"


# -- (d) generated tables ----------------------------------------------------------------------------------------
def test_tables_module_is_light() -> None:
    """benchmarks/tables.py imports neither adaptc nor torch (it regenerates docs anywhere in a second)."""
    code = (f"import importlib.util, sys; s = importlib.util.spec_from_file_location('t', {str(TABLES_PY)!r}); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "[m.render(n) for n in m.TABLES]; "
            "bad = [k for k in sys.modules if k.split('.')[0] in ('torch', 'adaptc', 'numpy', 'onnx')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def _blocks() -> list[tuple[str, str, str]]:
    out = []
    for page in PAGES:
        for name, body in tables().blocks(page.read_text()):
            out.append((rel(page), name, body))
    return out


def test_table_markers_are_paired() -> None:
    for page in PAGES:
        text = page.read_text()
        opened = re.findall(r"<!-- table:([\w.-]+) -->", text)
        closed = re.findall(r"<!-- /table:([\w.-]+) -->", text)
        found = [name for name, _ in tables().blocks(text)]
        assert opened == closed == found, f"{rel(page)}: unpaired or nested table markers {opened} / {closed}"


@pytest.mark.parametrize("page,name,body", _blocks(), ids=lambda v: v if isinstance(v, str) and "\n" not in v else "")
def test_table_block_matches_its_results_json(page: str, name: str, body: str) -> None:
    assert name in tables().TABLES, f"{page}: unknown table {name!r} (known: {', '.join(tables().TABLES)})"
    expected = tables().render(name)
    assert body == expected, (f"{page}: table {name!r} differs from what benchmarks/tables.py renders from "
                              f"benchmarks/results/ (typed by hand or stale): run python benchmarks/tables.py --all")


def test_every_table_is_in_the_docs() -> None:
    shown = {name for _, name, _ in _blocks()}
    assert shown, "no generated table in docs/"
    assert set(tables().TABLES) <= shown, f"tables no docs page shows: {sorted(set(tables().TABLES) - shown)}"
    assert not any(name for p, name, _ in _blocks() if p == "README.md"), "README.md holds no measured tables"


def test_benchmark_scripts_handle_table_before_heavy_imports() -> None:
    """Each benchmark with results gets --table, handled before it imports torch, numpy or adaptc."""
    heavy = re.compile(r"^(import (torch|numpy)|from (torch|numpy|adaptc|minilm_ood|minilm_bench|export_bench|models)\b)",
                       re.M)
    for bench in tables().BENCHMARKS:
        script = next(p for p in (ROOT / "benchmarks" / f"{bench}_bench.py", ROOT / "benchmarks" / f"{bench}.py")
                      if p.exists())
        src = script.read_text()
        intercept = src.find('"--table" in sys.argv')
        first_heavy = heavy.search(src)
        assert intercept >= 0, f"{rel(script)} has no --table"
        assert first_heavy is None or intercept < first_heavy.start(), (
            f"{rel(script)}: --table is handled after a heavy import ({first_heavy.group(0)!r})")
