"""Runtimes that run exported files: one small runner class per runtime, registered by name.

A :class:`Runner` subclass that sets ``runtime`` (a name of :data:`adaptc.core.formats.RUNTIME_NAMES`)
registers itself under it when its module is imported, unless it says it cannot run on this host
(``available = False``: CoreML off macOS). The built-in runners live in the modules named after the runtimes
of the format table (``adaptc.measure.<runtime>_runtime``: :mod:`.onnxruntime_runtime`,
:mod:`.tflite_runtime`, :mod:`.coreml_runtime`), each imported only when its runtime is asked for, so a
measurement subprocess loads the runtime it measures and no other; a runtime whose module cannot be
imported (ImportError) is not available. :func:`register_runtime` stays for other runner factories.

Kept free of torch imports (and of the runtimes' own packages until a runner is made).
"""

from __future__ import annotations

import abc
import contextlib
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import numpy as np

from ..core.formats import RUNTIME_NAMES, require_in_table


class Runner(abc.ABC):
    runtime: ClassVar[str]
    #: whether the runtime can run on this host (a subclass that cannot does not register itself)
    available: ClassVar[bool] = True
    #: largest batch a call accepts (None: any)
    max_batch: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("runtime")
        if name is None:
            return  # an intermediate base class
        require_in_table("runtime", name, RUNTIME_NAMES)
        if cls.available:
            _RUNTIMES[name] = cast(RunnerFactory, cls)  # a concrete runner's __init__(path, threads, timing)

    @classmethod  # noqa: B027 - an optional hook (a no-op unless a runner overrides it)
    def preload(cls) -> None:
        """Import the runtime's own package (a measurement imports it before its memory baseline, so its code
        pages are not counted as the model's)."""

    @abc.abstractmethod
    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one call; inputs in the model's input order (cast to the expected dtypes here)."""

    @property
    @abc.abstractmethod
    def input_names(self) -> list[str]: ...

    def version(self) -> str:
        return ""

    def timed_call(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """A zero-argument callable running one inference on ``inputs``, bound once (what latency times).

        Runners override this to keep per-call Python work (dtype casts, (de)quantization of int8 inputs)
        out of the timed region, as the runtimes' own benchmark tools do.
        """
        return lambda: self.run(inputs)


class RunnerFactory(Protocol):
    """A runner class or factory: ``(path, threads, timing=...) -> Runner`` (``timing``: see :func:`open_runner`)."""

    def __call__(self, path: Path, threads: int, *, timing: bool = ...) -> Runner: ...


_RUNTIMES: dict[str, RunnerFactory] = {}


def register_runtime(name: str) -> Callable[[RunnerFactory], RunnerFactory]:
    """Register a runner factory ``(path, threads, timing=False) -> Runner`` under ``name`` (Runner subclasses that set
    ``runtime`` need not: they register themselves)."""

    def deco(factory: RunnerFactory) -> RunnerFactory:
        _RUNTIMES[name] = factory
        return factory

    return deco


def _load_runtime(runtime: str) -> None:
    """Import the built-in runner module of ``runtime`` (``<runtime>_runtime``), which registers its runner;
    nothing when it is registered already, not a built-in runtime, or its module cannot be imported."""
    if runtime in _RUNTIMES or runtime not in RUNTIME_NAMES:
        return
    with contextlib.suppress(ImportError):
        importlib.import_module(f"{__package__}.{runtime}_runtime")


def runner_class(runtime: str) -> RunnerFactory:
    """The registered runner (class or factory) of ``runtime``. Raises AdaptcError when there is none here."""
    _load_runtime(runtime)
    if runtime not in _RUNTIMES:
        from ..errors import AdaptcError

        for rt in RUNTIME_NAMES:
            _load_runtime(rt)
        raise AdaptcError(f"no runner for runtime {runtime!r} on this host (known: {', '.join(sorted(_RUNTIMES))})")
    return _RUNTIMES[runtime]


def open_runner(runtime: str, path: str | Path, threads: int = 1, *, timing: bool = False) -> Runner:
    """A runner for ``path``. ``timing``: for latency measurements, the runtime's default kernels (what runs);
    otherwise for numerics, as the graph specifies (see :mod:`.onnxruntime_runtime`)."""
    return runner_class(runtime)(Path(path), threads, timing=timing)


def runtime_available(runtime: str) -> bool:
    _load_runtime(runtime)
    return runtime in _RUNTIMES


def run_batched(runner: Runner, arrays: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
    """The runner's first output over all rows of ``arrays``, in batches the runner accepts."""
    n = len(arrays[0])
    bs = min(runner.max_batch or batch, batch)
    outs = []
    for i in range(0, n, bs):
        outs.append(np.asarray(runner.run([a[i : i + bs] for a in arrays])[0]))
    return np.concatenate(outs, axis=0)
