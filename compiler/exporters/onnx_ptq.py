"""Static int8 for the ONNX exporter: activation ranges through onnxruntime's calibrators, and the ONNX nodes of
the modules kept in float (:class:`adaptc.core.ptq.PTQConfig`).

Ranges. Every method runs one of onnxruntime's calibrators (``create_calibrator``, its augmented model written in
the handler's work folder), and the ranges go to ``quantize_static`` through its ``calibration_cache_path``
(``save_tensors_data``): ``quantize_static`` itself then only quantizes.

- ``minmax`` (the format's default): ``CalibrationMethod.MinMax``, over all samples at once, as
  ``quantize_static`` calibrates (byte-identical files);
- ``percentile``: ``CalibrationMethod.Percentile`` (99.999th percentile of the magnitudes, 2,048 bins);
- ``entropy``: ``CalibrationMethod.Entropy`` (onnxruntime's TensorRT-style KL search) with 512 histogram bins.
  Through ``quantize_static`` the Entropy calibrator gets its default 128 bins for 128 quantized bins, and the
  search has then a single candidate, the whole range: the same file as MinMax. 512 bins give 193 candidates
  (onnxruntime's search is a Python loop: 2,048 bins cost about 1 s per tensor);
- ``mse``: onnxruntime has no MSE calibrator; its Entropy calibrator's histograms (signed values, merged across
  batches) with the range search replaced by :func:`adaptc.quant.ranges.mse_range` (a ``HistogramCollector``
  subclass set on the calibrator before it collects).

Histogram calibrators keep every intermediate output of one ``collect_data`` call until they histogram it, so
they are fed one batch at a time (memory: one batch of activations, plus one histogram per tensor).

Float layers. The dynamo exporter records each node's module path in its ``pkg.torch.onnx.name_scopes`` metadata
(``['', 'features', 'features.0', 'features.0.0', 'conv2d']``), which ``quant_pre_process`` keeps. A module kept
in float excludes every node whose scopes name it. The exporter fuses a BatchNorm into the convolution before
it and labels the fused node with the BatchNorm's scope: a forward pass with hooks finds the BatchNorm modules
that take a kept module's output directly, and their nodes are excluded too.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import ExportError
from ..quant.ranges import mse_range

#: the range estimators offered for ONNX static int8
ONNX_CALIBRATIONS = ("minmax", "percentile", "entropy", "mse")
DEFAULT_CALIBRATION = "minmax"
#: onnxruntime calibrator options per method (create_calibrator's extra_options)
_OPTIONS: dict[str, dict[str, Any]] = {
    "minmax": {},
    "percentile": {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
    "entropy": {"num_bins": 512, "num_quantized_bins": 128},
    "mse": {"num_bins": 2048},
}
_SCOPES = "pkg.torch.onnx.name_scopes"
#: what the recipe says each method runs
RANGE_ESTIMATORS = {
    "minmax": "onnxruntime MinMax calibrator",
    "percentile": "onnxruntime Percentile calibrator (99.999th percentile of magnitudes, 2048 bins)",
    "entropy": "onnxruntime Entropy calibrator (KL search, 512 bins, 128 quantized bins)",
    "mse": "onnxruntime Entropy calibrator's histograms, least-squared-error range (adaptc.quant.ranges.mse_range)",
}


class CalibrationReader:
    """Feeds onnxruntime's calibrator ``batch`` rows at a time."""

    def __init__(self, names: Sequence[str], arrays: Sequence[np.ndarray], batch: int):
        self._names, self._arrays, self._batch, self._i = list(names), list(arrays), batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._arrays[0]):
            return None
        sl = slice(self._i, self._i + self._batch)
        self._i += self._batch
        return {k: a[sl] for k, a in zip(self._names, self._arrays)}

    def rewind(self) -> None:
        self._i = 0


def _mse_collector(symmetric: bool, num_bins: int) -> Any:
    from onnxruntime.quantization.calibrate import HistogramCollector

    class MseCollector(HistogramCollector):
        """onnxruntime's histogram of signed values (as for Entropy); the range of least squared error."""

        def compute_collection_result(self) -> dict[str, tuple[Any, ...]]:
            out = {}
            for name, (hist, edges, lo, hi, *_) in self.histogram_dict.items():
                a, b = mse_range(hist, edges, float(lo), float(hi))
                out[name] = (np.array(a, dtype=np.float32), np.array(b, dtype=np.float32), hist, edges)
            return out

    return MseCollector("entropy", symmetric, num_bins, 128, 99.999, "same")


def calibrate(
    pre: Path,
    work: Path,
    names: Sequence[str],
    arrays: Sequence[np.ndarray],
    method: str | None,
    op_types: Sequence[str] | None,
    batch: int = 32,
) -> tuple[Any, Path]:
    """Activation ranges of the preprocessed model ``pre`` over ``arrays`` with ``method`` (``None``: min-max),
    saved as an onnxruntime calibration cache in ``work``. Returns (the CalibrationMethod to give
    ``quantize_static`` with the cache, the cache's path)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    method = method or DEFAULT_CALIBRATION
    ort_method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
        "mse": CalibrationMethod.Entropy,
    }[method]
    # the tensors quantize_static would calibrate: those of the op types it quantizes
    ops = list(op_types) if op_types else sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(
        pre, ops, augmented_model_path=str(work / "augmented.onnx"), calibrate_method=ort_method,
        extra_options=dict(_OPTIONS[method]),
    )  # fmt: skip
    if method == "mse":
        calibrator.collector = _mse_collector(False, _OPTIONS["mse"]["num_bins"])
    if method == "minmax":
        calibrator.collect_data(CalibrationReader(names, arrays, batch))  # reduced outputs only: all at once
    else:
        for i in range(0, len(arrays[0]), batch):
            calibrator.collect_data(CalibrationReader(names, [a[i : i + batch] for a in arrays], batch))
    ranges = calibrator.compute_data()
    cache = work / f"ranges-{method}.json"
    save_tensors_data(ranges, cache)
    del calibrator
    return ort_method, cache


def _bn_after(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], kept: Sequence[str]) -> dict[str, str]:
    """BatchNorm modules that take a kept module's output directly (one forward pass with hooks): the dynamo
    exporter fuses them into the convolution and labels the fused node with the BatchNorm's scope."""
    names = {m: n for n, m in model.named_modules()}
    # the tensors are kept alive with their names: an id() of a freed tensor is reused by later ones
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    found: dict[str, str] = {}
    hooks = []

    def after(mod: nn.Module, args: Any, out: Any) -> None:
        name = names.get(mod, "")
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and args and id(args[0]) in outputs:
            found[name] = outputs[id(args[0])][0]
        if isinstance(out, torch.Tensor) and any(name == k or name.startswith(k + ".") for k in kept):
            outputs[id(out)] = (name, out)

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(after))
    try:
        with torch.no_grad():
            model.eval()(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return found


def float_nodes(
    pre: Path, model: nn.Module, example_inputs: tuple[torch.Tensor, ...], layers: Sequence[str]
) -> list[str]:
    """Names of the ONNX nodes of ``pre`` that compute the modules ``layers`` (qualified names): every node whose
    ``pkg.torch.onnx.name_scopes`` name one of them or a BatchNorm fused into one. Raises ExportError for a layer
    that matches no node (a file without the dynamo exporter's metadata, or a module the graph does not run)."""
    if not layers:
        return []
    fused = _bn_after(model, example_inputs, layers)
    owner = {k: k for k in layers} | {bn: fused[bn] for bn in fused}
    m = onnx.load(str(pre), load_external_data=False)
    out: list[str] = []
    matched: set[str] = set()
    for node in m.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if _SCOPES not in meta:
            continue
        try:
            scopes = ast.literal_eval(meta[_SCOPES])
        except (ValueError, SyntaxError):
            continue
        hit = [owner[s] for s in scopes if s in owner]
        if hit:
            out.append(node.name)
            matched.update(hit)
    missing = [k for k in layers if k not in matched]
    if missing:
        raise ExportError(
            f"onnx: float layer(s) {', '.join(missing)} match no node of the ONNX graph (no {_SCOPES} metadata, "
            "or the module does not run in the exported forward pass)"
        )
    return out


__all__ = [
    "CalibrationReader",
    "DEFAULT_CALIBRATION",
    "ONNX_CALIBRATIONS",
    "RANGE_ESTIMATORS",
    "calibrate",
    "float_nodes",
]
