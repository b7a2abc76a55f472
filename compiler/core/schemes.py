"""Quantization schemes by name: what each one means, independent of the export format.

A scheme is a small frozen config object (in the spirit of torchao's ``quantize_(model, config)``);
each exporter registers the schemes it can produce and the handler that produces them
(see :mod:`adaptc.exporters`). Profiles list the schemes a device runs well, best first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

SchemeName = Literal[
    "int8_static_per_channel", "int8_static_per_tensor", "int8_dynamic", "int8_weight_only", "fp16", "fp32"
]
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True)
class Scheme:
    name: SchemeName
    #: precision of the stored weights
    weights: Precision
    #: precision the activations are computed in
    activations: Precision
    #: weights quantized per output channel (int8 only)
    per_channel: bool
    #: needs calibration data (static activation ranges)
    needs_calibration: bool
    description: str

    @property
    def precision(self) -> Precision:
        """The precision that decides compute cost (what the device's arithmetic runs in)."""
        return self.activations

    @property
    def weight_bytes_per_param(self) -> float:
        return {"fp32": 4.0, "fp16": 2.0, "int8": 1.0}[self.weights]


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(
            "int8_static_per_channel",
            "int8",
            "int8",
            True,
            True,
            "int8 weights (symmetric, per output channel) and int8 activations (asymmetric, per tensor, "
            "ranges calibrated on task data)",
        ),
        Scheme(
            "int8_static_per_tensor",
            "int8",
            "int8",
            False,
            True,
            "int8 weights and activations, one scale per tensor, calibrated on task data",
        ),
        Scheme(
            "int8_dynamic",
            "int8",
            "int8",
            True,
            False,
            "int8 weights; activation ranges computed at run time for each input (no calibration)",
        ),
        Scheme(
            "int8_weight_only",
            "int8",
            "fp32",
            True,
            False,
            "int8 weights dequantized to float at load or run time; float arithmetic",
        ),
        Scheme("fp16", "fp16", "fp16", False, False, "half-precision weights and arithmetic"),
        Scheme("fp32", "fp32", "fp32", False, False, "single-precision float (the reference)"),
    )
}
assert set(SCHEMES) == set(get_args(SchemeName))


def get_scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        from .names import unknown_name_message

        raise ValueError(unknown_name_message("quantization scheme", name, SCHEMES)) from None


def is_int8(name: str) -> bool:
    return SCHEMES[name].weights == "int8"
