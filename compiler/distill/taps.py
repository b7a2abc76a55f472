"""Reading a model's intermediate behaviour with forward hooks: hidden states, attention maps, features.

Taps are found by convention so they work on the derived students too (same module names, fewer blocks):
- hidden states: the outputs of the model's repeated blocks (``blocks`` / ``layers`` / ``encoder.layer``), or
  else the outputs of the activation layers outside the output layer (e.g. a plain conv stack);
- attention maps: the outputs of modules named ``*.probs`` (adaptc zoo) — attention probabilities (B, H, T, T);
  Hugging Face models are read through their own ``output_attentions`` in :mod:`adaptc.tasks.minilm`;
- features: the input of the output layer (the penultimate representation), for relation distillation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..slim.adapters import find_blocks, find_output_layer

_ACTS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish)


@dataclass
class Captured:
    hidden: list[torch.Tensor] = field(default_factory=list)
    attention: list[torch.Tensor] = field(default_factory=list)
    features: torch.Tensor | None = None

    def clear(self) -> None:
        self.hidden.clear()
        self.attention.clear()
        self.features = None


class Taps:
    """Registers hooks on a model; ``captured`` is filled by each forward pass (cleared by :meth:`clear`)."""

    def __init__(self, model: nn.Module, example_inputs: tuple[torch.Tensor, ...], *, hidden: bool = True,
                 attention: bool = True, features: bool = True):
        self.captured = Captured()
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        out_layer = find_output_layer(model, example_inputs)
        if hidden:
            for m in self.hidden_modules(model, out_layer):
                self._hooks.append(m.register_forward_hook(self._on_hidden))
        if attention:
            for name, m in model.named_modules():
                if name.endswith(".probs") or name == "probs":
                    self._hooks.append(m.register_forward_hook(self._on_attention))
        if features and out_layer is not None:
            self._hooks.append(out_layer.register_forward_pre_hook(self._on_features))

    @staticmethod
    def hidden_modules(model: nn.Module, out_layer: nn.Module | None) -> list[nn.Module]:
        found = find_blocks(model)
        if found is not None:
            return list(found[1])
        head_modules = set(out_layer.modules()) if out_layer is not None else set()
        return [m for m in model.modules() if isinstance(m, _ACTS) and m not in head_modules][:-1] or \
            [m for m in model.modules() if isinstance(m, _ACTS)]

    def _on_hidden(self, mod: nn.Module, inp: object, out: object) -> None:
        if isinstance(out, (tuple, list)):
            out = out[0]
        self.captured.hidden.append(out)  # type: ignore[arg-type]

    def _on_attention(self, mod: nn.Module, inp: object, out: torch.Tensor) -> None:
        self.captured.attention.append(out)

    def _on_features(self, mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        self.captured.features = inp[0]

    def clear(self) -> None:
        self.captured.clear()

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def __enter__(self) -> "Taps":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Teacher layer for each student layer, by relative depth: student i -> round((i+1) * Lt / Ls) - 1."""
    if n_student == 0 or n_teacher == 0:
        return []
    return [min(n_teacher - 1, max(0, round((i + 1) * n_teacher / n_student) - 1)) for i in range(n_student)]
