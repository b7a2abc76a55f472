"""A text corpus without downloads: docstrings of the Python standard library, read with ``ast`` (no imports).

Each record: (module, qualified object name, docstring). Cached as JSON in the adaptc cache dir (parsing the
standard library takes a few seconds). Test suites, site-packages and demo packages are skipped.
``package_docstrings`` reads installed third-party packages the same way (the minilm task's unlabelled text, the
benchmark's out-of-domain check).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..core.cache import cache_dir
from ..core.io import atomic_write_json

_SKIP = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "__pycache__",
    "ensurepip",
    "turtledemo",
    "__phello__",
}
_VERSION = 1


@dataclass(frozen=True)
class Doc:
    module: str
    name: str
    text: str

    @property
    def package(self) -> str:
        return self.module.split(".")[0]

    @property
    def key(self) -> str:
        return f"{self.module}:{self.name}"


def _scan(root: str) -> list[Doc]:
    out: list[Doc] = []
    for dp, dns, fns in os.walk(root):
        rel = os.path.relpath(dp, root)
        if any(p in _SKIP for p in rel.split(os.sep)):
            dns[:] = []
            continue
        dns.sort()
        for fn in sorted(fns):
            if not fn.endswith(".py"):
                continue
            path = os.path.join(dp, fn)
            mod = os.path.relpath(path, root)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            try:
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, OSError):
                continue
            stack: list[tuple[ast.AST, str]] = [(tree, "")]
            while stack:
                node, prefix = stack.pop(0)
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        q = f"{prefix}.{child.name}" if prefix else child.name
                        d = ast.get_docstring(child)
                        if d:
                            out.append(Doc(mod, q, d))
                        stack.append((child, q))
                if isinstance(node, ast.Module):
                    d = ast.get_docstring(node)
                    if d:
                        out.append(Doc(mod, "<module>", d))
    return out


def _cached_scan(root: str, name: str, key: str | None) -> list[Doc]:
    """``_scan(root)``, kept as JSON in the adaptc cache dir under ``name`` and a hash of ``key`` (what the
    docstrings depend on: versions, paths); not cached when ``key`` is None."""
    if key is None:
        return _scan(root)
    tag = hashlib.sha256(f"{_VERSION}{key}".encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}-{tag}.json"
    if path.exists():
        try:
            return [Doc(**d) for d in json.loads(path.read_text())]
        except (ValueError, TypeError):
            pass
    docs = _scan(root)
    atomic_write_json(path, [d.__dict__ for d in docs])
    return docs


def load_docstrings() -> list[Doc]:
    root = sysconfig.get_paths()["stdlib"]
    return _cached_scan(root, "stdlib-docstrings", f"{sys.version}{root}")


def _installed_version(pkg: str, dists_of: Mapping[str, list[str]]) -> str | None:
    """The version(s) of the distribution(s) that install top-level package ``pkg`` (None if unknown);
    ``dists_of``: ``importlib.metadata.packages_distributions()``."""
    from importlib import metadata

    dists = dists_of.get(pkg)
    if not dists:
        return None
    try:
        return ",".join(f"{d}=={metadata.version(d)}" for d in sorted(set(dists)))
    except metadata.PackageNotFoundError:
        return None


def package_docstrings(packages: Sequence[str]) -> list[Doc]:
    """Docstrings of installed third-party packages (read with ``ast``, never imported); a package that is not
    installed gives none. Cached per package and installed version in the adaptc cache dir (torch and
    transformers take about 20 s each to parse)."""
    from importlib import metadata

    site = sysconfig.get_paths()["purelib"]
    dists_of = metadata.packages_distributions()  # reads every installed distribution: once, not per package
    out: list[Doc] = []
    for pkg in packages:
        root = os.path.join(site, pkg)
        if os.path.isdir(root):
            version = _installed_version(pkg, dists_of)
            out += _cached_scan(root, f"package-docstrings-{pkg}", None if version is None else f"{root}{version}")
    return out


def stable_bucket(key: str, buckets: int = 100) -> int:
    """A deterministic bucket for a string (for splits that do not depend on Python's hash seed)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % buckets
