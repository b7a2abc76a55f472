"""How a static int8 file is calibrated and prepared: the post-training quantization moves, as one frozen config.

A scheme (:mod:`.schemes`) says *what* an int8 file is; a :class:`PTQConfig` says *how* its ranges and weights
were obtained, in the spirit of NNCF's ``quantize(model, dataset, subset_size=..., fast_bias_correction=...,
ignored_scope=...)``:

- ``calibration``: how activation ranges are estimated from the calibration samples (:data:`CALIBRATIONS`);
  each format maps the name onto its toolchain's own machinery (onnxruntime calibrators, PT2E observers) and
  lists what it offers in :func:`adaptc.quant.registry.calibrations_for`. ``None`` (the default) is the
  format's own default, which is what every file made before these moves used: min-max for ONNX, the
  HistogramObserver's L2 search (``mse``) for PT2E (TFLite, CoreML W8A8), so default files stay byte-identical;
- ``samples``: calibration samples from the task's train split (capped by its size); ``None`` is the format's
  own default (ONNX 512, TFLite / CoreML 256);
- ``equalize``: cross-layer equalization with bias absorption and bias correction on the torch model, before
  any format is made (:mod:`adaptc.quant.equalize`), so that every format gains;
- ``float_layers``: modules (qualified names) kept in float, the most sensitive first
  (:mod:`adaptc.quant.sensitivity`): a mixed-precision file.

The build's scheme walk (:mod:`adaptc.build.ptq`) tries these moves cheapest first until the artifact passes the
parity gate, bounded by the ``--quant-effort`` (:data:`EFFORTS`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

Calibration = Literal["minmax", "percentile", "entropy", "mse"]
#: range estimators by name, cheapest and simplest first
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)
CALIBRATION_HELP = {
    "minmax": "the observed minimum and maximum of each activation (the 'just quantize' baseline)",
    "percentile": "the 99.999th percentile of each activation's magnitudes: outliers clipped",
    "entropy": "the range that minimises the KL divergence between float and quantized histograms (TensorRT's)",
    "mse": "the range that minimises the squared quantization error over each activation's histogram",
}

Effort = Literal["fast", "default", "max"]
EFFORTS: tuple[str, ...] = get_args(Effort)
EFFORT_HELP = {
    "fast": "min-max calibration only (one file per int8 scheme)",
    "default": "then other range estimators, equalization + bias correction, then up to 8 layers in float",
    "max": "every range estimator, equalization, then up to a quarter of the layers in float",
}


@dataclass(frozen=True)
class PTQConfig:
    """One way of making a static int8 file (the defaults: each format's own plain post-training quantization)."""

    #: range estimator; None: the format's own default (ONNX min-max, PT2E HistogramObserver = mse)
    calibration: Calibration | None = None
    #: calibration samples (from the task's train split, capped by its size); None: the format's own default
    samples: int | None = None
    #: cross-layer equalization + bias absorption + bias correction on the torch model first
    equalize: bool = False
    #: qualified module names kept in float (fp32 in ONNX / TFLite, fp16 compute in CoreML)
    float_layers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.calibration is not None and self.calibration not in CALIBRATIONS:
            from .names import unknown_name_message

            raise ValueError(unknown_name_message("calibration method", self.calibration, CALIBRATIONS))
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"calibration samples must be at least 1 (got {self.samples})")

    @property
    def is_default(self) -> bool:
        return self == PTQConfig(samples=self.samples)

    def describe(self) -> str:
        """One line for progress and reports: ``percentile + equalization + 3 float layers`` (``default``: the
        format's own range estimator)."""
        parts: list[str] = [self.calibration or "default"]
        if self.equalize:
            parts.append("equalization")
        if self.float_layers:
            n = len(self.float_layers)
            parts.append(f"{n} float layer{'s' if n != 1 else ''}")
        return " + ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["float_layers"] = list(self.float_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PTQConfig:
        return cls(
            calibration=d.get("calibration"),
            samples=None if d.get("samples") is None else int(d["samples"]),
            equalize=bool(d.get("equalize", False)),
            float_layers=tuple(d.get("float_layers", ())),
        )


__all__ = ["CALIBRATIONS", "CALIBRATION_HELP", "EFFORTS", "EFFORT_HELP", "Calibration", "Effort", "PTQConfig"]
