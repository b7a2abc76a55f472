"""``adaptc calibrate``: micro-benchmarks of this machine fitted into the predictor's constants (its ``host`` profile).

:mod:`.suite` (which micro-benchmark graphs: shapes, layers, tags), :mod:`.onnx_writer` and :mod:`.tflite_writer`
(the graphs written directly as ONNX / TFLite, fp32 and int8, without torch), :mod:`.driver` (measuring them,
fitting the constants with :mod:`adaptc.predict.fit`, writing the host profile: :func:`calibrate_host`).
"""

from __future__ import annotations

from .driver import MicroResult, calibrate_host, keep_faster
from .onnx_writer import onnx_input, quantize_onnx, write_onnx
from .suite import Layer, Micro, memory_suite, suite
from .tflite_writer import tflite_input, write_tflite

__all__ = [
    "Layer",
    "Micro",
    "MicroResult",
    "calibrate_host",
    "keep_faster",
    "memory_suite",
    "onnx_input",
    "quantize_onnx",
    "suite",
    "tflite_input",
    "write_onnx",
    "write_tflite",
]
