"""The exporter interface and registry: one exporter per format.

An exporter turns a torch model into a file for one runtime at one quantization scheme, and can
describe that file structurally. Running a file is the runtime's job (:mod:`adaptc.measure.runtimes`), so
parity checks and host measurements work the same for every format. Adding a format means adding one
module that defines an :class:`Exporter` subclass decorated with :func:`register_exporter`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .._suggest import unknown_name_message
from ..errors import AdaptcError
from ..tasks.base import Split


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
    #: modules (by qualified name or type name) to keep in float
    keep_float: tuple[str, ...] = ()


@dataclass
class ExportedFile:
    path: Path
    format: str
    scheme: str
    #: how the file was made: converter, quantizer, options (goes into the report)
    recipe: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Exporter(abc.ABC):
    format: ClassVar[str]
    suffix: ClassVar[str]
    #: runtime that runs the files (key of :mod:`adaptc.measure.runtimes`)
    runtime: ClassVar[str]

    @abc.abstractmethod
    def schemes(self) -> tuple[str, ...]:
        """Quantization schemes this exporter can produce, best first."""

    @abc.abstractmethod
    def export(self, request: ExportRequest, scheme: str, dest: Path) -> ExportedFile:
        """Write the artifact for ``scheme`` to ``dest`` atomically. Raises ExportError with the op and format."""

    @abc.abstractmethod
    def describe(self, path: Path) -> dict[str, Any]:
        """Structural facts about a file: op counts, weight dtypes and bytes, inputs and outputs."""

    def filename(self, scheme: str, stem: str = "model") -> str:
        tag = {"fp32": "", "int8_static_per_channel": ".int8", "int8_static_per_tensor": ".int8pt",
               "int8_dynamic": ".int8dyn", "int8_weight_only": ".int8w", "fp16": ".fp16"}.get(scheme, f".{scheme}")
        return f"{stem}{tag}{self.suffix}"


_EXPORTERS: dict[str, type[Exporter]] = {}


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    _EXPORTERS[cls.format] = cls
    return cls


def _load_builtin_exporters() -> None:
    from . import onnx as _onnx  # noqa: F401

    for mod in ("tflite", "coreml"):
        try:
            __import__(f"{__package__}.{mod}")
        except ImportError:
            pass


def available_formats() -> list[str]:
    _load_builtin_exporters()
    return sorted(_EXPORTERS)


def get_exporter(fmt: str) -> Exporter:
    _load_builtin_exporters()
    if fmt not in _EXPORTERS:
        raise AdaptcError(unknown_name_message("format", fmt, _EXPORTERS))
    return _EXPORTERS[fmt]()
