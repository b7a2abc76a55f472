"""Quantization-aware training that matches adaptc's int8 export scheme.

Export (ONNX QDQ and TFLite PT2E static int8): weights symmetric int8 per output channel
(scale = max|w| / 127), activations asymmetric int8 per tensor (ranges from calibration). During QAT every
Conv / Linear sees fake-quantized weights (per channel, symmetric) and fake-quantized inputs (per tensor,
asymmetric, EMA-observed range), with straight-through gradients.

Written by hand rather than with torch.ao / torchao PT2E QAT because adaptc needs the trained *float*
module back (it is then exported by every format's own quantizer, with the same grids): the PT2E QAT graph
is an exported GraphModule that cannot be re-exported through litert-torch / coremltools unchanged.
``strip_qat`` removes the wrappers and snaps each weight onto its int8 grid, so the exporter's per-channel
quantization reproduces exactly the weights seen in training.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, w.dim()))
    scale = (w.detach().abs().amax(dim=dims, keepdim=True) / 127.0).clamp_min(1e-12)
    q = torch.clamp(torch.round(w / scale), -127, 127) * scale
    return w + (q - w).detach()  # straight-through estimator


class ActObserver(nn.Module):
    """Per-tensor asymmetric int8 fake quantization with an EMA min/max range."""

    # buffers (registered in __init__)
    lo: torch.Tensor
    hi: torch.Tensor
    seen: torch.Tensor

    def __init__(self, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            return x
        if self.training:
            lo, hi = x.detach().min(), x.detach().max()
            if not bool(self.seen):
                self.lo.copy_(lo)
                self.hi.copy_(hi)
                self.seen.fill_(True)
            else:
                self.lo.lerp_(lo, self.momentum)
                self.hi.lerp_(hi, self.momentum)
        lo, hi = torch.minimum(self.lo, torch.zeros(())), torch.maximum(self.hi, torch.zeros(()))
        scale = ((hi - lo) / 255.0).clamp_min(1e-8)
        zp = torch.round(-128 - lo / scale)
        q = (torch.clamp(torch.round(x / scale) + zp, -128, 127) - zp) * scale
        return x + (q - x).detach()


class QATConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.inner = conv
        self.act = ActObserver()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.inner
        return c._conv_forward(self.act(x), fake_quant_weight(c.weight), c.bias)


class QATLinear(nn.Module):
    def __init__(self, lin: nn.Linear):
        super().__init__()
        self.inner = lin
        self.act = ActObserver()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.act(x), fake_quant_weight(self.inner.weight), self.inner.bias)


def prepare_qat(model: nn.Module, skip: set[nn.Module] | None = None) -> nn.Module:
    """Wrap every Conv2d / Linear of ``model`` in place (except ``skip``); returns the model."""
    skip = skip or set()
    for name, child in list(model.named_children()):
        if child in skip:
            continue
        if isinstance(child, nn.Conv2d):
            setattr(model, name, QATConv2d(child))
        elif isinstance(child, nn.Linear):
            setattr(model, name, QATLinear(child))
        else:
            prepare_qat(child, skip)
    return model


@torch.no_grad()
def strip_qat(model: nn.Module, snap_weights: bool = True) -> nn.Module:
    """Remove the QAT wrappers in place; with ``snap_weights`` put each weight on its int8 grid."""
    for name, child in list(model.named_children()):
        if isinstance(child, (QATConv2d, QATLinear)):
            inner = child.inner
            if snap_weights:
                inner.weight.copy_(fake_quant_weight(inner.weight))
            setattr(model, name, inner)
        else:
            strip_qat(child, snap_weights)
    return model


def has_qat(model: nn.Module) -> bool:
    return any(isinstance(m, (QATConv2d, QATLinear)) for m in model.modules())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy with every Conv -> BatchNorm pair folded into the conv (the BN becomes an Identity).

    The pairs are found by tracing the model with torch.fx; the folding is done on the model's own module
    tree, so it keeps its classes (and can be saved, pruned and exported as before). A model torch.fx cannot
    trace is returned unfolded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    m = copy.deepcopy(model).eval()
    try:
        gm = torch.fx.symbolic_trace(m)
    except Exception:
        return m
    mods = dict(gm.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(mods.get(node.target), nn.BatchNorm2d):
            prev = node.args[0]
            if (
                isinstance(prev, torch.fx.Node)
                and prev.op == "call_module"
                and isinstance(mods.get(prev.target), nn.Conv2d)
                and len(prev.users) == 1
            ):
                pairs.append((str(prev.target), str(node.target)))
    for conv_name, bn_name in pairs:
        # (pairs holds Conv2d -> BatchNorm2d names)
        conv, bn = cast(nn.Conv2d, m.get_submodule(conv_name)), cast(nn.BatchNorm2d, m.get_submodule(bn_name))
        m.set_submodule(conv_name, fuse_conv_bn_eval(conv, bn))
        m.set_submodule(bn_name, nn.Identity())
    return m
