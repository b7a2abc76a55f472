"""A task on which plain min-max int8 fails for a reason no range estimator fixes (tests only; real torch).

``outlier``: a small CNN trained to tell which quadrant of an 8x8 image holds a bright blob, then given one huge
weight in its second convolution that reads a dead channel (the first layer's channel 0, always 0 after its
ReLU): no effect in float, but with one int8 scale per tensor the rest of that layer's weights round to zero.
Keeping that one layer in float is what passes the gate; no range estimator or equalization can (a dead
channel is left alone by equalization).
"""

from __future__ import annotations

import torch
from torch import nn

import adaptc


def _data(n: int, g: torch.Generator) -> adaptc.Split:
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    for i, c in enumerate(y.tolist()):
        r, q = divmod(c, 2)
        x[i, 0, 4 * r + 1 : 4 * r + 4, 4 * q + 1 : 4 * q + 4] += 2.0
    return adaptc.Split((x,), y)


def outlier() -> adaptc.Task:
    g = torch.Generator().manual_seed(1)
    train, val, test = _data(256, g), _data(64, g), _data(200, g)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.inputs[0]), train.targets).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        model[0].weight[0].zero_()
        model[0].bias[0] = -1.0  # channel 0 of the first layer: always 0 after its ReLU
        model[2].weight[0, 0, 0, 0] = 500 * model[2].weight.abs().max()  # reads only that dead channel
    return adaptc.Task(
        name="ptq-outlier", model=model, example_inputs=(test.inputs[0][:1],), train=train, val=val, test=test
    )
