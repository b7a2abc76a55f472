"""A task whose teacher Torch-Pruning cannot prune consistently (a raw parameter used outside any layer)."""

import torch
from torch import nn

import adaptc


class _RawParam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 16) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w.T


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 16)
        self.mixer = _RawParam()
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.mixer(torch.relu(self.a(x)))))


def make_task() -> adaptc.Task:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> adaptc.Split:
        x = torch.randn(n, 4, generator=g)
        return adaptc.Split((x,), (x[:, 0] > 0).long() + (x[:, 1] > 0).long())

    return adaptc.Task(name="untraceable", model=Net().eval(), example_inputs=(torch.randn(1, 4),), train=split(200),
                       val=split(50), test=split(50), input_names=("x",), output_names=("logits",))
