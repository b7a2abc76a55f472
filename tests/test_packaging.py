"""Packaging: every sub-package is listed in pyproject, and a non-editable wheel ships the profiles."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from .conftest import ROOT


def test_every_subpackage_is_listed() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    found = {"adaptc"} | {f"adaptc.{p.parent.relative_to(ROOT / 'compiler').as_posix().replace('/', '.')}"
                          for p in (ROOT / "compiler").rglob("__init__.py") if p.parent != ROOT / "compiler"}
    found.add("adaptc.device_profiles")
    assert found == listed, (found - listed, listed - found)


def test_wheel_contains_profiles(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    whl = next(tmp_path.glob("adaptc-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    shipped = {Path(n).name for n in names if n.startswith("adaptc/device_profiles/") and n.endswith(".yaml")}
    assert {p.name for p in (ROOT / "device_profiles").glob("*.yaml")} == shipped
    assert "adaptc/cli/__init__.py" in names and "adaptc/build/run.py" in names


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = 'python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt -e ".[dev,text,vision,ray]" && python -m pytest'
    assert cmd in readme and cmd in ci
    assert "pip install -c constraints.txt . && adaptc build --device pixel8" in readme
    assert "torch==2.13.0\n" in (ROOT / "constraints.txt").read_text()
