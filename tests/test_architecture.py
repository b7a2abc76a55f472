"""The shape of the code: the layer table of docs/ARCHITECTURE.md holds for every import in compiler/ (module
level, inside functions and under TYPE_CHECKING alike), so no two packages import each other; modules stay small."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .conftest import ROOT

SRC = ROOT / "compiler"
#: the longest a module may grow (lines); a longer one is split by concern
MAX_MODULE_LINES = 450


def _layers() -> dict[str, int]:
    """Package (or top-level module) -> layer, from the table in docs/ARCHITECTURE.md (``| 3 | `measure` | ...``)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text[text.index("## Layers") :]
    layers: dict[str, int] = {}
    for row in re.finditer(r"^\|\s*(\d+)\s*\|([^|]*)\|", section, re.M):
        for name in re.findall(r"`([\w.]+)`", row.group(2)):
            layers[name] = int(row.group(1))
    return layers


def _unit(parts: tuple[str, ...]) -> str:
    """The layer unit of a module inside adaptc: its top-level package, or the top-level module itself."""
    return parts[0] if parts else "__init__"


def _imports() -> list[tuple[str, str, str]]:
    """(file, importing unit, imported unit) for every import of another adaptc unit."""
    found = []
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC).with_suffix("").parts
        pkg = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
        here = _unit(rel if rel[-1] != "__init__" else rel[:-1] or ("__init__",))
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets: list[tuple[str, ...]] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = tuple(node.module.split(".")) if node.module else ()
                if mod:
                    targets.append(base + mod)
                else:  # from . import x, y: each name is a module or a name of the package
                    targets += [base + (a.name,) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "adaptc":
                targets.append(tuple(node.module.split(".")[1:]))
            elif isinstance(node, ast.Import):
                targets += [tuple(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "adaptc"]
            for t in targets:
                there = _unit(t)
                if there != here:
                    found.append((str(f.relative_to(ROOT)), here, there))
    return found


def test_layer_table_covers_every_package() -> None:
    layers = _layers()
    units = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in SRC.glob("*.py")}
    assert units <= set(layers) | {"__main__"}, f"not in the layer table: {sorted(units - set(layers))}"


def test_every_import_goes_down_the_layers() -> None:
    layers = _layers()
    wrong = [
        f"{f}: {a} (layer {layers.get(a)}) imports {b} (layer {layers.get(b)})"
        for f, a, b in _imports()
        if a in layers and b in layers and layers[b] >= layers[a]
    ]
    assert not wrong, "imports against the layer table of docs/ARCHITECTURE.md:\n" + "\n".join(sorted(set(wrong)))


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for _, a, b in _imports():
        graph.setdefault(a, set()).add(b)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    cycles = sorted(a for a in graph if a in reach(a))
    assert not cycles, f"packages on an import cycle: {cycles}"


def test_modules_stay_small() -> None:
    long = {
        str(f.relative_to(ROOT)): n
        for f in SRC.rglob("*.py")
        if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {long}"


#: torch's and numpy's draws that read a process-wide generator unless they are handed one
_TORCH_DRAWS = {"rand", "randn", "randint", "randperm", "bernoulli", "multinomial", "normal"}
#: the only global seeding allowed: the trainers' ``seed_everything`` (dropout and weight init read torch's global
#: generator, which no argument can replace) and ``seeded_init``'s forked state
_GLOBAL_SEEDING = {("tasks/training.py", "seed_everything"), ("tasks/training.py", "seeded_init")}


def test_every_random_draw_names_its_generator() -> None:
    """Reproducible by seed (issue 28): every random draw in the package passes an explicit generator (torch's
    ``generator=``, numpy's ``default_rng(seed)`` / ``random.Random(seed)`` objects), never the legacy global API
    (``np.random.rand``, ``random.shuffle``); global seeding only in the functions that must set it."""
    bad = []
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC).as_posix()
        tree = ast.parse(f.read_text(), str(f))
        fns = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                inside = [fn for fn in fns if fn.lineno <= node.lineno <= (fn.end_lineno or fn.lineno)]
                name = max(inside, key=lambda fn: fn.lineno).name if inside else "<module>"
                attr, owner = node.func.attr, ast.unparse(node.func.value)
                keywords = {k.arg for k in node.keywords}
                if owner == "torch" and attr in _TORCH_DRAWS and "generator" not in keywords:
                    bad.append(f"{rel}:{node.lineno} torch.{attr} without generator=")
                elif owner == "np.random" and attr not in ("default_rng", "Generator", "seed"):
                    bad.append(f"{rel}:{node.lineno} np.random.{attr} (the global generator)")
                elif owner == "random" and attr not in ("Random", "seed"):
                    bad.append(f"{rel}:{node.lineno} random.{attr} (the global generator)")
                elif (owner, attr) in {("torch", "manual_seed"), ("np.random", "seed"), ("random", "seed")} and (
                    rel,
                    name,
                ) not in _GLOBAL_SEEDING:
                    bad.append(f"{rel}:{node.lineno} {owner}.{attr} in {name} (global seeding)")
    assert not bad, "random draws without an explicit generator:\n" + "\n".join(sorted(set(bad)))
