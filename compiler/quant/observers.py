"""PT2E activation observers per range estimator (:data:`adaptc.core.ptq.CALIBRATIONS`), for the static int8
quantizer of :mod:`.pt2e` (TFLite int8, CoreML W8A8). Imports torchao: loaded only by :mod:`.pt2e`.

``prepare_pt2e`` takes observers of ``torchao.quantization.pt2e.observer`` (litert-torch's
``get_symmetric_quantization_config`` builds its specs from them):

- ``minmax``: torchao's ``MinMaxObserver``;
- ``mse``: torchao's ``HistogramObserver``, whose ``_non_linear_param_search`` minimises the L2 quantization
  error over its histogram (caffe2's norm minimisation): litert-torch's own default, so ``mse`` and the
  format's default make the same file;
- ``percentile`` and ``entropy``: hand-written, because torchao ships neither a percentile nor a KL-divergence
  observer. Both keep torchao's ``HistogramObserver`` (its histogram, merged across calibration batches, and its
  qparams computation) and replace only the range search over that histogram with
  :func:`adaptc.quant.ranges.percentile_threshold` (99.999th percentile of the magnitudes, as onnxruntime's
  ``Percentile``) or :func:`adaptc.quant.ranges.kl_threshold` (TensorRT's entropy calibration).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver

from .ranges import clip_to, kl_threshold, magnitude_histogram, percentile_threshold

#: litert-torch's activation observer argument (get_symmetric_quantization_config)
_EPS = 2**-12


class _ThresholdObserver(HistogramObserver):
    """A HistogramObserver whose range is ``[-t, t]`` clipped to the observed ``[min, max]``, with ``t`` from
    :meth:`threshold` over the histogram of magnitudes."""

    def threshold(self, abs_hist: np.ndarray, amax: float, signed: bool) -> float:
        raise NotImplementedError

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = float(self.min_val), float(self.max_val)
        abs_hist, amax = magnitude_histogram(self.histogram.detach().cpu().double().numpy(), lo, hi)
        if amax == 0.0 or not abs_hist.any():
            return self.min_val, self.max_val
        a, b = clip_to(self.threshold(abs_hist, amax, signed=lo < 0), lo, hi)
        like = self.min_val
        return torch.tensor(a, dtype=like.dtype, device=like.device), torch.tensor(
            b, dtype=like.dtype, device=like.device
        )


class PercentileObserver(_ThresholdObserver):
    """Range: the 99.999th percentile of the activation's magnitudes (outliers clipped)."""

    def threshold(self, abs_hist: np.ndarray, amax: float, signed: bool) -> float:
        return percentile_threshold(abs_hist, amax)


class EntropyObserver(_ThresholdObserver):
    """Range: TensorRT's KL-divergence search over the magnitudes. The quantized grid has 128 levels per side
    for a signed activation (255 over ``[-t, t]``) and 255 for a non-negative one (``[0, t]``)."""

    def threshold(self, abs_hist: np.ndarray, amax: float, signed: bool) -> float:
        return kl_threshold(abs_hist, amax, levels=128 if signed else 255)


#: the range estimator of litert-torch's own config (what ``calibration=None`` gives)
DEFAULT_CALIBRATION = "mse"

#: range estimator -> activation observer class
OBSERVERS: dict[str, Any] = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "entropy": EntropyObserver,
    "mse": HistogramObserver,
}


def with_activation_observer(config: Any, calibration: str | None) -> Any:
    """litert-torch's QuantizationConfig with its activation observer replaced by ``calibration``'s (the
    config unchanged for ``None``, the format's default)."""
    import dataclasses

    if calibration is None or calibration == DEFAULT_CALIBRATION:
        return config  # litert-torch's own spec: byte-identical files
    ctr = OBSERVERS[calibration].with_args(eps=_EPS)
    spec = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=ctr)
    return dataclasses.replace(config, input_activation=spec, output_activation=spec)


__all__ = ["DEFAULT_CALIBRATION", "OBSERVERS", "EntropyObserver", "PercentileObserver", "with_activation_observer"]
