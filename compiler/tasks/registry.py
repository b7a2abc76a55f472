"""Task lookup: built-in names (``digits``, ``minilm``) or ``package.module:factory``, with options passed to the
factory as keyword arguments (``get_task("minilm", max_length=64)``; CLI ``--task-option max_length=64``)."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.names import unknown_name_message
from ..errors import AdaptcError, TaskError
from .base import Task

_TASKS: dict[str, Callable[..., Task]] = {}
_builtins_loaded = False


def register_task(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Register a task factory under ``name`` (``--task NAME``). The built-in tasks register this way too: each is
    a module of this package whose ``make_task`` is decorated (its docstring's first line is the summary)."""

    def deco(factory: Callable[..., Task]) -> Callable[..., Task]:
        _TASKS[name] = factory
        return factory

    return deco


def builtin_tasks() -> list[str]:
    _load_builtins()
    return sorted(_TASKS)


@dataclass(frozen=True)
class TaskInfo:
    name: str
    summary: str
    #: the factory's options (keyword arguments) and their defaults: ``--task-option KEY=VALUE``
    options: dict[str, Any] = field(default_factory=dict)


def _signature(factory: Callable[..., Task]) -> tuple[dict[str, inspect.Parameter], bool]:
    """A factory's keyword parameters, and whether it takes any keyword (``**kwargs``, or no signature to read)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return {}, True
    named = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def factory_options(factory: Callable[..., Task]) -> dict[str, Any]:
    """A factory's keyword options and their defaults (None for an option without one)."""
    return {k: None if p.default is p.empty else p.default for k, p in _signature(factory)[0].items()}


def list_tasks(pattern: str = "*") -> list[TaskInfo]:
    """The built-in tasks whose names match the wildcard ``pattern``, with a one-line summary and their options
    (nothing is loaded: no data, no teacher)."""
    _load_builtins()
    out = []
    for name in sorted(n for n in _TASKS if fnmatch.fnmatchcase(n, pattern)):
        factory = _TASKS[name]
        out.append(TaskInfo(name, _summary(factory), factory_options(factory)))
    return out


def _load_builtins() -> None:
    """Import every module of this package once: the built-in tasks register themselves. (The minilm module imports
    without its optional [text] extra; its factory says how to install it.)"""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for mod in pkgutil.iter_modules(sys.modules[__package__].__path__):
        importlib.import_module(f"{__package__}.{mod.name}")


def _summary(factory: Callable[..., Task]) -> str:
    """A task's one-line summary: its module's docstring for the built-ins (the factory's where the module
    registers several tasks), else the factory's."""
    module = sys.modules.get(factory.__module__)
    builtin = factory.__module__.startswith(f"{__package__}.")
    if builtin and factory.__doc__ and sum(f.__module__ == factory.__module__ for f in _TASKS.values()) > 1:
        builtin = False
    doc = ((module.__doc__ if builtin and module is not None else factory.__doc__) or "").strip()
    return re.sub(r"^Built-in task ``[^`]+``:\s*", "", doc.split("\n")[0]) if doc else ""


def _coerce(value: Any, default: Any) -> Any:
    """A CLI option's text as the type of the factory parameter's default (int, float, bool, str)."""
    if not isinstance(value, str) or default is inspect.Parameter.empty or default is None or isinstance(default, str):
        return value
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    return type(default)(value)


def _call_factory(spec: str, factory: Callable[..., Task], options: dict[str, Any]) -> Task:
    """``factory(**options)``, the options checked against its signature (one-line errors, values from the CLI
    converted to the type of each parameter's default)."""
    if options:
        named, takes_any = _signature(factory)
        unknown = [] if takes_any else sorted(set(options) - set(named))
        if unknown:
            accepted = ", ".join(f"{k}={p.default!r}" if p.default is not p.empty else k for k, p in named.items())
            raise TaskError(f"task {spec!r} has no option {', '.join(unknown)} (its options: {accepted or 'none'})")
        try:
            options = {k: _coerce(v, named[k].default) if k in named else v for k, v in options.items()}
        except ValueError as e:
            raise TaskError(f"task {spec!r}: bad option value: {e}") from None
    try:
        return factory(**options)
    except AdaptcError:
        raise
    except Exception as e:
        raise TaskError(f"task {spec!r}: the factory raised {type(e).__name__}: {e}") from None


def get_task(spec: str | Task, **options: Any) -> Task:
    """A :class:`Task` from a built-in name or ``package.module:factory`` (``factory(**options)`` returns a Task).
    ``options``: keyword arguments of the factory (``minilm``: ``max_length``, the tokens per text, default 128);
    strings are converted to the type of the parameter's default, so CLI values work as they are."""
    if isinstance(spec, Task):
        if options:
            raise TaskError(f"task options ({', '.join(options)}) need a task name, not a Task object")
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise TaskError("no task given: use a built-in name (digits) or package.module:factory")
    spec = spec.strip()
    _load_builtins()
    if ":" not in spec:
        if spec not in _TASKS:
            raise TaskError(
                unknown_name_message("task", spec, _TASKS) + "; a custom task is given as package.module:factory"
            )
        return _call_factory(spec, _TASKS[spec], options)
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise TaskError(f"task {spec!r} must look like package.module:factory")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise TaskError(f"task {spec!r}: cannot import module {mod_name!r}: {e}") from None
    except Exception as e:  # the user's module raised while importing
        raise TaskError(f"task {spec!r}: importing {mod_name!r} failed: {type(e).__name__}: {e}") from None
    factory: Any = mod
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise TaskError(f"task {spec!r}: module {mod_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise TaskError(f"task {spec!r}: {attr!r} is not callable (expected a factory returning adaptc.Task)")
    task = _call_factory(spec, factory, options)
    if not isinstance(task, Task):
        raise TaskError(f"task {spec!r}: the factory returned {type(task).__name__}, expected adaptc.Task")
    return task
