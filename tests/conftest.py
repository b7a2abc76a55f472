"""Shared fixtures. Tests run real torch / onnxruntime code; nothing is mocked.

The adaptc cache (trained teachers) is shared across the test session in a temporary folder, so the digits
teacher is trained once per run; the user's own config dir is isolated so a local `host.yaml` cannot leak in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.mktemp("adaptc-cache")
    config = tmp_path_factory.mktemp("xdg-config")
    os.environ.setdefault("ADAPTC_CACHE", str(cache))
    os.environ["XDG_CONFIG_HOME"] = str(config)
    os.environ.pop("ADAPTC_PROFILE_PATH", None)
    os.environ.pop("ADAPTC_HISTORY", None)  # builds record into the session's cache folder, not a user's history


DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def digits_task():
    from adaptc.tasks import get_task

    return get_task("digits")


def data_env() -> dict[str, str]:
    """Environment for a CLI run that imports task factories from tests/data (``--task module:function``)."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(DATA), os.environ.get("PYTHONPATH")]))}


def data_task(spec: str):
    """A task factory from tests/data (``module:function``), imported the way ``--task`` imports it."""
    import sys

    from adaptc.tasks import get_task

    if str(DATA) not in sys.path:
        sys.path.insert(0, str(DATA))
    return get_task(spec)


@pytest.fixture(scope="session")
def token_task():
    """A tiny trained transformer classifier over token ids (tests/data/token_task.py, a few seconds)."""
    return data_task("token_task:make_task")


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900
            ) -> subprocess.CompletedProcess[str]:
    """Run the real `adaptc` entry point in a subprocess (exit codes and stderr as a user sees them)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "adaptc", *args], capture_output=True, text=True, cwd=cwd, env=e,
                          timeout=timeout)
