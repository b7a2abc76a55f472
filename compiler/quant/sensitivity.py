"""Per-layer int8 sensitivity: how much the model's outputs move when one layer alone is quantized.

For each quantizable layer (convolutions and linear layers) the layer's weights are made int8 (symmetric, per
output channel or per tensor, as the scheme stores them) and its input activation int8 (asymmetric, one scale
per tensor, min-max over the calibration batch), everything else staying float; the outputs over the batch are
compared with the float model's: the squared error relative to the outputs' variance over the samples
(``error``: 0 is exact) and, for classifiers, the
top-1 agreement. Labels are not needed, so the ranking holds where labels are few (AIMET's layer-wise
sensitivity analysis and onnxruntime's ``qdq_loss_debug`` measure the same thing on their own graphs).

The build keeps the most sensitive layers in float, fewest first, until an int8 file passes the parity gate
(:mod:`adaptc.build.ptq`); ``adaptc quant-report`` prints the table and plots it. Hand-written: a one-layer
simulation on the torch module is format-independent and costs one forward pass per layer; the toolkits that
do this (AIMET, onnxruntime's debugger) work on their own graph formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..tasks.base import Split
from .equalize import fake_quantize_weight

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: multiply-accumulates one forward pass of the automatic sample count may cost (64 samples of a 0.3 GMAC model)
AUTO_MACS_BUDGET = 2e10


@dataclass(frozen=True)
class LayerSensitivity:
    #: qualified module name (what ``float_layers`` takes)
    name: str
    #: ``Conv2d``, ``Conv2d (depthwise)``, ``Linear``, ...
    kind: str
    macs: int
    params: int
    #: squared error of the model's outputs with only this layer in int8, relative to their variance (0: exact)
    error: float
    #: top-1 agreement with the float model (classifiers) with only this layer in int8
    top1_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantizable_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, _LAYERS) and n]


def _kind(m: nn.Module) -> str:
    k = type(m).__name__
    if isinstance(m, nn.Conv1d | nn.Conv2d) and m.groups > 1:
        k += " (depthwise)" if m.groups == m.in_channels == m.out_channels else f" (groups {m.groups})"
    return k


def layer_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """Multiply-accumulates of each quantizable layer for one sample (forward hooks on ``inputs[:1]``)."""
    macs: dict[str, int] = {}
    hooks = []
    for name in quantizable_layers(model):
        m = model.get_submodule(name)

        def hook(mod: Any, args: Any, out: torch.Tensor, name: str = name) -> None:
            per_out = mod.weight[0].numel()  # in_channels / groups x kernel (or in_features)
            macs[name] = macs.get(name, 0) + int(out[:1].numel()) * per_out

        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*(t[:1] for t in inputs))
    finally:
        for h in hooks:
            h.remove()
    return macs


def _fake_quant_activation(x: torch.Tensor) -> torch.Tensor:
    if not x.is_floating_point():
        return x
    lo, hi = float(x.min().clamp(max=0)), float(x.max().clamp(min=0))
    scale = max((hi - lo) / 255.0, 1e-12)
    zero = round(-lo / scale) - 128
    return ((x / scale).round() + zero).clamp(-128, 127).sub(zero).mul(scale)


def _error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Squared error relative to the outputs' variance over the samples (what tells inputs apart; an output
    dominated by a constant bias would hide any error behind its mean square)."""
    ref2 = ref.reshape(len(ref), -1)
    signal = float(ref2.var(0).mean()) if len(ref2) > 1 else 0.0
    if signal <= 0:
        signal = float((ref2**2).mean())
    return float(((out - ref) ** 2).mean()) / max(signal, 1e-12)


def layer_sensitivity(
    model: nn.Module,
    data: Split,
    *,
    per_channel: bool = True,
    samples: int | None = None,
    classification: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[LayerSensitivity]:
    """Every quantizable layer of ``model`` with its sensitivity on ``samples`` inputs of ``data``, most
    sensitive first. ``samples=None``: 64, fewer for a large model (one forward pass per layer over
    ``AUTO_MACS_BUDGET`` multiply-accumulates at most, and at least 8 samples)."""
    model = model.eval()
    macs = layer_macs(model, data.inputs)
    if samples is None:
        samples = max(8, min(64, int(AUTO_MACS_BUDGET / max(sum(macs.values()), 1))))
    n = min(samples, len(data))
    inputs = tuple(t[:n] for t in data.inputs)
    with torch.no_grad():
        ref = _first(model(*inputs))
    names = quantizable_layers(model)
    out: list[LayerSensitivity] = []
    for i, name in enumerate(names):
        m: Any = model.get_submodule(name)
        w = m.weight.data
        m.weight.data = fake_quantize_weight(w, per_channel)
        h = m.register_forward_pre_hook(lambda mod, args: (_fake_quant_activation(args[0]), *args[1:]))
        try:
            with torch.no_grad():
                q = _first(model(*inputs))
        finally:
            h.remove()
            m.weight.data = w
        top1 = None
        if classification and q.ndim == 2:
            top1 = float((q.argmax(1) == ref.argmax(1)).float().mean())
        out.append(
            LayerSensitivity(
                name=name,
                kind=_kind(m),
                macs=macs.get(name, 0),
                params=sum(p.numel() for p in m.parameters()),
                error=_error(q.float(), ref.float()),
                top1_agreement=top1,
            )
        )
        if progress is not None:
            progress(i + 1, len(names))
    return sorted(out, key=lambda s: s.error, reverse=True)


def _first(out: Any) -> torch.Tensor:
    while isinstance(out, tuple | list):
        out = out[0]
    return out


__all__ = ["LayerSensitivity", "layer_macs", "layer_sensitivity", "quantizable_layers"]
