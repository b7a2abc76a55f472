"""Adversarial training inputs: FGSM or PGD on the inputs, or on the token embeddings for token models.

For float inputs (images, features) the perturbation is applied to the input tensor; for integer token ids
it is applied to the output of the token embedding layer through a forward hook (the only continuous place).
The perturbation maximises the distillation loss against the teacher, so the student learns to match the
teacher in an eps-ball around the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass(frozen=True)
class AdversarialConfig:
    method: Literal["fgsm", "pgd"] = "fgsm"
    #: L-infinity radius, relative to the input's standard deviation (float inputs) or the embedding's
    eps: float = 0.03
    steps: int = 3  # PGD only
    #: fraction of each batch replaced by adversarial examples
    fraction: float = 0.5


def _embedding(model: nn.Module) -> nn.Embedding | None:
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return m
    return None


def perturb(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    cfg: AdversarialConfig,
) -> tuple[tuple[torch.Tensor, ...], Callable[[], None] | None]:
    """Adversarial version of ``inputs``. For token models returns the ids and a hook-installer undo function:
    the returned ``remove`` must be called after the student's forward on the adversarial batch."""
    x = inputs[0]
    was_training = model.training
    if x.is_floating_point():
        scale = x.detach().std().clamp_min(1e-6) * cfg.eps
        delta = torch.zeros_like(x, requires_grad=True)
        steps = 1 if cfg.method == "fgsm" else cfg.steps
        step = scale if cfg.method == "fgsm" else 2.5 * scale / steps
        for _ in range(steps):
            loss = loss_fn(model(x + delta, *inputs[1:]))
            (g,) = torch.autograd.grad(loss, delta)
            delta = (delta + step * g.sign()).clamp(-scale, scale).detach().requires_grad_(True)
        model.train(was_training)
        return (x + delta.detach(),) + tuple(inputs[1:]), None
    emb = _embedding(model)
    if emb is None:
        return inputs, None
    scale = emb.weight.detach().std() * cfg.eps
    holder: dict[str, torch.Tensor] = {}

    def add_delta(mod: nn.Module, inp: object, out: torch.Tensor) -> torch.Tensor:
        if "delta" not in holder:
            holder["delta"] = torch.zeros_like(out, requires_grad=True)
        return out + holder["delta"]

    h = emb.register_forward_hook(add_delta)
    steps = 1 if cfg.method == "fgsm" else cfg.steps
    step = scale if cfg.method == "fgsm" else 2.5 * scale / steps
    try:
        for _ in range(steps):
            loss = loss_fn(model(*inputs))
            (g,) = torch.autograd.grad(loss, holder["delta"])
            holder["delta"] = (holder["delta"] + step * g.sign()).clamp(-scale, scale).detach().requires_grad_(True)
    finally:
        h.remove()
    fixed = holder["delta"].detach()
    h2 = emb.register_forward_hook(lambda mod, inp, out: out + fixed[: out.shape[0]])
    model.train(was_training)
    return inputs, h2.remove
