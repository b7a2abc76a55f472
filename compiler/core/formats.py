"""The one table of export formats: the runtime that runs each one, its file suffixes, and the file tag of each
quantization scheme. Every other module reads it (profiles validate against it, exporters and runtimes register
under its names, the CLI lists it); nothing else spells these facts out.

Pure data, in the spirit of Sony MCT's target-platform schema: what a format *is* lives here, how a file of it
is *made* (:mod:`adaptc.exporters`) or *run* (:mod:`adaptc.measure.runtimes`) lives with its registered handler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from .names import unknown_name_message
from .schemes import SCHEMES

Format = Literal["onnx", "tflite", "coreml"]
Runtime = Literal["onnxruntime", "tflite", "coreml"]
FORMAT_NAMES: tuple[str, ...] = get_args(Format)
RUNTIME_NAMES: tuple[str, ...] = get_args(Runtime)


@dataclass(frozen=True)
class FormatInfo:
    name: str
    #: the runtime that runs its files (key of the runtime registry)
    runtime: str
    #: the suffix of the files adaptc writes
    suffix: str
    #: other suffixes of files of this format that adaptc reads
    also_reads: tuple[str, ...] = ()
    #: files are directories (CoreML ML packages)
    directory: bool = False


FORMATS: dict[str, FormatInfo] = {
    f.name: f
    for f in (
        FormatInfo("onnx", "onnxruntime", ".onnx"),
        FormatInfo("tflite", "tflite", ".tflite"),
        FormatInfo("coreml", "coreml", ".mlpackage", also_reads=(".mlmodel",), directory=True),
    )
}
assert tuple(FORMATS) == FORMAT_NAMES

#: the runtime each format runs on (the predictor and the host measurement use it)
FORMAT_RUNTIME: dict[str, str] = {f.name: f.runtime for f in FORMATS.values()}
#: the runtime that runs a file, by its suffix
RUNTIME_BY_SUFFIX: dict[str, str] = {s: f.runtime for f in FORMATS.values() for s in (f.suffix, *f.also_reads)}

#: the tag a scheme's file carries before the suffix (``model.int8.tflite``); fp32 has none
SCHEME_TAGS: dict[str, str] = {
    "fp32": "",
    "int8_static_per_channel": ".int8",
    "int8_static_per_tensor": ".int8pt",
    "int8_dynamic": ".int8dyn",
    "int8_weight_only": ".int8w",
    "fp16": ".fp16",
}
assert set(SCHEME_TAGS) == set(SCHEMES)


def require_in_table(what: str, name: str, known: Iterable[str]) -> None:
    """A registered exporter or runtime must be named in this table first (``what``: "format" or "runtime")."""
    if name not in known:
        raise ValueError(unknown_name_message(what, name, known) + ": add it to adaptc.core.formats.FORMATS first")


def artifact_filename(fmt: str, scheme: str, stem: str = "model") -> str:
    """The file name of a format's artifact at a scheme: ``model.int8.tflite``, ``model.fp16.mlpackage``."""
    return f"{stem}{SCHEME_TAGS.get(scheme, f'.{scheme}')}{FORMATS[fmt].suffix}"


def runtime_for_file(path: str) -> str | None:
    """The runtime of a file by its suffix, or None."""
    lower = str(path).lower().rstrip("/")
    return next((rt for s, rt in RUNTIME_BY_SUFFIX.items() if lower.endswith(s)), None)
