"""Tasks that exercise the export fallbacks (tests only; real torch models, nothing mocked).

- ``unconvertible``: an MLP whose hidden layer goes through ``torch.logcumsumexp`` (a smooth running max).
  ONNX and CoreML convert it; litert-torch has no lowering for ``aten.logcumsumexp``, so TFLite fails.
- ``drifted``: a bias-free ReLU MLP (positively homogeneous: scaling the input scales the logits, the
  prediction stays). The test inputs are 40x larger than the train split that calibrates static int8: the
  static artifact clips its inputs to the calibrated range and loses its accuracy (rejected by the parity
  gate), while dynamic-range int8, which measures ranges per input, keeps it.
"""

from __future__ import annotations

import torch
from torch import nn

import adaptc


def _blobs(n: int, g: torch.Generator, centers: torch.Tensor, scale: float = 1.0, noise: float = 1.0) -> adaptc.Split:
    y = torch.randint(0, len(centers), (n,), generator=g)
    x = centers[y] + noise * torch.randn(n, centers.shape[1], generator=g)
    return adaptc.Split((x * scale,), y)


def _fit(model: nn.Module, train: adaptc.Split, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.inputs[0]), train.targets).backward()
        opt.step()
    return model.eval()


class LogCumSumExp(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.logcumsumexp(h, dim=-1)


def unconvertible() -> adaptc.Task:
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(3, 16, generator=g) * 3
    train, val, test = (_blobs(n, g, centers) for n in (600, 200, 200))
    torch.manual_seed(0)
    model = _fit(nn.Sequential(nn.Linear(16, 32), LogCumSumExp(), nn.Linear(32, 3)), train)
    return adaptc.Task(name="unconvertible", model=model, example_inputs=(test.inputs[0][:1],), train=train, val=val,
                       test=test, input_names=("features",), output_names=("logits",),
                       description="MLP with logcumsumexp (no TFLite lowering)")


def drifted() -> adaptc.Task:
    g = torch.Generator().manual_seed(2)
    # positive features; a class raises its own 4 features: the classes differ in relative magnitude only,
    # so inputs clipped to the calibrated range all look alike
    centers = 5.0 + 3.0 * torch.eye(4).repeat_interleave(4, dim=1)
    train, val = _blobs(600, g, centers, noise=0.5), _blobs(200, g, centers, noise=0.5)
    test = _blobs(300, g, centers, scale=40.0, noise=0.5)
    torch.manual_seed(0)
    model = _fit(nn.Sequential(nn.Linear(16, 64, bias=False), nn.ReLU(), nn.Linear(64, 4, bias=False)), train)
    return adaptc.Task(name="drifted", model=model, example_inputs=(test.inputs[0][:1],), train=train, val=val,
                       test=test, input_names=("features",), output_names=("logits",),
                       description="bias-free MLP; test inputs 40x the calibration range")
