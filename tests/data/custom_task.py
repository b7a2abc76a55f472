"""A user task for the tests: a tiny MLP on synthetic, linearly separable data (the README's example)."""

import torch
from torch import nn

import adaptc

NOT_CALLABLE = 42


def make_task(hidden: int = 64, noise: float = 1.0) -> adaptc.Task:
    """Options (``--task-option hidden=32``): the MLP's hidden width and the blobs' noise."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=g) * 3

    def split(n: int) -> adaptc.Split:
        y = torch.randint(0, 3, (n,), generator=g)
        x = centers[y] + noise * torch.randn(n, 16, generator=g)
        return adaptc.Split((x,), y)

    train, val, test = split(600), split(200), split(200)
    model = nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.inputs[0]), train.targets).backward()
        opt.step()
    return adaptc.Task(name="tiny-mlp", model=model.eval(), example_inputs=(test.inputs[0][:1],), train=train,
                       val=val, test=test, input_names=("features",), output_names=("logits",),
                       description="synthetic 3-class blobs, MLP")


def returns_wrong_type() -> dict:
    return {"model": None}


def raises() -> adaptc.Task:
    raise RuntimeError("dataset not found")
