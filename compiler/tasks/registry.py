"""Task lookup: built-in names (``digits``, ``minilm``) or ``package.module:factory``."""

from __future__ import annotations

import importlib
from typing import Callable

from .._suggest import unknown_name_message
from ..errors import AdaptcError, TaskError
from .base import Task

_BUILTIN: dict[str, Callable[[], Task]] = {}


def register_task(name: str) -> Callable[[Callable[[], Task]], Callable[[], Task]]:
    def deco(factory: Callable[[], Task]) -> Callable[[], Task]:
        _BUILTIN[name] = factory
        return factory

    return deco


def builtin_tasks() -> list[str]:
    _load_builtins()
    return sorted(_BUILTIN)


def _load_builtins() -> None:
    if _BUILTIN:
        return
    from . import animal_mnist, digits, docstrings

    _BUILTIN["digits"] = digits.make_task
    _BUILTIN["docstrings"] = docstrings.make_task
    _BUILTIN["animal-mnist"] = animal_mnist.make_task

    def _minilm() -> Task:  # imported lazily: it needs the optional [text] extra
        from . import minilm

        return minilm.make_task()

    _BUILTIN["minilm"] = _minilm


def get_task(spec: "str | Task") -> Task:
    """A :class:`Task` from a built-in name or ``package.module:factory`` (``factory()`` returns a Task)."""
    if isinstance(spec, Task):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise TaskError("no task given: use a built-in name (digits) or package.module:factory")
    spec = spec.strip()
    _load_builtins()
    if ":" not in spec:
        if spec not in _BUILTIN:
            raise TaskError(
                unknown_name_message("task", spec, _BUILTIN) + "; a custom task is given as package.module:factory"
            )
        return _BUILTIN[spec]()
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise TaskError(f"task {spec!r} must look like package.module:factory")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise TaskError(f"task {spec!r}: cannot import module {mod_name!r}: {e}") from None
    except Exception as e:  # the user's module raised while importing
        raise TaskError(f"task {spec!r}: importing {mod_name!r} failed: {type(e).__name__}: {e}") from None
    factory = mod
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise TaskError(f"task {spec!r}: module {mod_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise TaskError(f"task {spec!r}: {attr!r} is not callable (expected a factory returning adaptc.Task)")
    try:
        task = factory()
    except AdaptcError:
        raise
    except Exception as e:
        raise TaskError(f"task {spec!r}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(task, Task):
        raise TaskError(f"task {spec!r}: the factory returned {type(task).__name__}, expected adaptc.Task")
    return task
