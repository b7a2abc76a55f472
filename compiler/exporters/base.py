"""The exporter interface and registry: one exporter per format.

An exporter turns a torch model into a file for one runtime at one quantization scheme (``export``), loads
and runs that file (``load`` / ``run``, through the runtime registry of :mod:`adaptc.measure.runtimes`, so
parity checks and host measurements work the same for every format), describes it structurally
(``describe``) and, where numbers cannot be checked on this host, checks its structure against the torch
model (``verify``).

Adding a format means adding its row to :data:`adaptc.core.formats.FORMATS` and one module here named after
it that defines an :class:`Exporter` subclass (it registers itself under its ``format``; its ``suffix`` and
``runtime`` come from the table) and registers the handler of each scheme it makes with
:func:`adaptc.quant.registry.quantizer` (its ``schemes()``, best first, are those; its ``export`` calls
:func:`adaptc.quant.registry.handler_for`). If its runtime is new, a runner registers itself likewise in
:mod:`adaptc.measure.runtimes`.

Built-in formats: ``onnx`` (:mod:`.onnx`), ``tflite`` (:mod:`.tflite`), ``coreml`` (:mod:`.coreml`): the
modules named after the rows of the format table, imported on first use; a format whose converter is not
installed (ImportError) is not available.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..core.formats import FORMATS, artifact_filename, require_in_table
from ..core.names import unknown_name_message
from ..core.ptq import PTQConfig
from ..errors import AdaptcError, ExportError
from ..quant.registry import calibrations_for, handler_for, schemes_for
from ..tasks.base import Split

if TYPE_CHECKING:  # pragma: no cover
    from ..measure.runtimes import Runner


def runtime_unavailable_reason(runtime: str) -> str:
    if runtime == "coreml":
        return "CoreML prediction needs macOS"
    return f"the {runtime} runtime is not installed"


@dataclass
class ExportRequest:
    """Everything an exporter may need besides the destination and the scheme."""

    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...] = ("input",)
    output_names: tuple[str, ...] = ("output",)
    #: representative inputs for static quantization (real task data)
    calibration: Split | None = None
    #: an already exported fp32 file of the same model in this format (quantizers may start from it)
    fp32_artifact: Path | None = None
    #: how static int8 files are made: range estimator, calibration samples, modules kept in float
    #: (:class:`adaptc.core.ptq.PTQConfig`; equalization is applied to ``model`` before the request is made)
    ptq: PTQConfig = field(default_factory=PTQConfig)


def float_layers_of(request: ExportRequest, fmt: str) -> tuple[str, ...]:
    """``request.ptq.float_layers``, each checked to be a qualified module name of the model (as
    ``dict(model.named_modules())`` gives them). Raises ExportError (did you mean ...?) for one that is not."""
    names = tuple(request.ptq.float_layers)
    if names:
        import difflib

        modules = [m for m, _ in request.model.named_modules() if m]
        for n in names:
            if n not in modules:
                close = difflib.get_close_matches(n, modules, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ExportError(f"{fmt}: float layer {n!r} is not a module of the model{hint}")
    return names


def ptq_samples(request: ExportRequest, default: int) -> int:
    """How many calibration samples a static int8 file uses: ``request.ptq.samples`` (or the format's
    ``default``), capped by the calibration split's size."""
    n = request.ptq.samples or default
    return min(n, len(request.calibration)) if request.calibration is not None else n


@dataclass
class ExportedFile:
    path: Path
    format: str
    scheme: str
    #: how the file was made: converter, quantizer, options (goes into the report)
    recipe: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: arithmetic precision when it differs from the scheme's own (e.g. CoreML int8 weights with fp16 compute)
    precision: str | None = None


class Exporter(abc.ABC):
    """Subclasses that set ``format`` register themselves under it (a key of
    :data:`adaptc.core.formats.FORMATS`); ``suffix`` and ``runtime`` are set from that table."""

    format: ClassVar[str]
    #: suffix of the files it writes (from the format table)
    suffix: ClassVar[str]
    #: runtime that runs the files (key of :mod:`adaptc.measure.runtimes`; from the format table)
    runtime: ClassVar[str]
    #: whether its files are byte-identical when made again from the same model, data and toolchain (the report's
    #: ``reproducible``), and why not where they are not
    reproducible: ClassVar[str] = (
        "byte-identical when made again from the same inputs, seed and toolchain (checked on two builds from fresh "
        "caches: docs/RELIABILITY.md)"
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fmt = cls.__dict__.get("format")
        if fmt is None:
            return  # an intermediate base class
        require_in_table("format", fmt, FORMATS)
        cls.suffix = FORMATS[fmt].suffix
        cls.runtime = FORMATS[fmt].runtime
        _EXPORTERS[fmt] = cls

    def schemes(self) -> tuple[str, ...]:
        """Quantization schemes this exporter can produce, best first: those it registered handlers for
        (:func:`adaptc.quant.registry.quantizer`)."""
        return schemes_for(self.format)

    def calibrations(self) -> tuple[str, ...]:
        """Range estimators its static int8 schemes offer (``request.ptq.calibration``), cheapest first."""
        return calibrations_for(self.format)

    @abc.abstractmethod
    def export(self, request: ExportRequest, scheme: str, dest: Path) -> ExportedFile:
        """Write the artifact for ``scheme`` to ``dest`` atomically (through the scheme's registered handler).
        Raises ExportError with the op and format."""

    @abc.abstractmethod
    def describe(self, path: Path) -> dict[str, Any]:
        """Structural facts about a file: op counts, weight dtypes and bytes, inputs and outputs."""

    def load(self, path: Path, threads: int = 1) -> Runner:
        """A runner for the file in this format's runtime. Raises AdaptcError where the runtime is missing."""
        from ..measure.runtimes import open_runner, runtime_available

        if not runtime_available(self.runtime):
            raise AdaptcError(
                f"{self.format}: no {self.runtime} runtime on this host ({runtime_unavailable_reason(self.runtime)})"
            )
        return open_runner(self.runtime, path, threads)

    def run(self, path: Path, inputs: Sequence[np.ndarray], threads: int = 1) -> list[np.ndarray]:
        """One call of the file on ``inputs`` (NumPy arrays in the model's input order)."""
        return self.load(path, threads).run(list(inputs))

    def verify(self, request: ExportRequest, path: Path, scheme: str) -> dict[str, Any] | None:
        """Structural check of the file against the torch model (``{"passed": bool, ...}``), or None.

        Formats whose runtime runs on this host are checked numerically by the parity gate instead.
        """
        return None

    def revision(self, scheme: str) -> int:
        """How many times the recipe of ``scheme`` changed what it writes (0: never; registered with its
        handler). Part of a build's artifact record key, so a resumed build re-exports the files a newer recipe
        would write differently and keeps the others."""
        return handler_for(self.format, scheme).revision if scheme in self.schemes() else 0

    def filename(self, scheme: str, stem: str = "model") -> str:
        return artifact_filename(self.format, scheme, stem)


_EXPORTERS: dict[str, type[Exporter]] = {}


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    """Register ``cls`` under its format. Subclasses that set ``format`` are registered already; this stays
    for code that decorates its exporter explicitly."""
    _EXPORTERS[cls.format] = cls
    return cls


def _load_builtin_exporters() -> None:
    """Import the exporter module of every format in the table (``adaptc.exporters.<format>``): each registers
    its exporter class. A missing converter (ImportError) leaves that format unavailable."""
    for fmt in FORMATS:
        if fmt in _EXPORTERS:
            continue
        with contextlib.suppress(ImportError):
            importlib.import_module(f"{__package__}.{fmt}")


def available_formats() -> list[str]:
    _load_builtin_exporters()
    return sorted(_EXPORTERS)


def requantize_file(fmt: str, fp32_file: Path, scheme: str, dest: Path) -> ExportedFile:
    """Quantize an exported fp32 file with ``scheme`` as ``adaptc export`` would (for the schemes that work on
    the file alone: onnx int8_dynamic / fp16, tflite int8_dynamic / int8_weight_only / fp16); no model needed.
    Calibration and benchmarks use it to make the same files adaptc ships from graphs they wrote themselves."""
    req = ExportRequest(model=None, example_inputs=(), fp32_artifact=Path(fp32_file))  # type: ignore[arg-type]
    return get_exporter(fmt).export(req, scheme, Path(dest))


def get_exporter(fmt: str) -> Exporter:
    _load_builtin_exporters()
    if fmt not in _EXPORTERS:
        raise AdaptcError(unknown_name_message("format", fmt, _EXPORTERS))
    return _EXPORTERS[fmt]()
