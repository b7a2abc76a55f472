"""Reading a model's intermediate behaviour with forward hooks: hidden states, attention maps, features.

Taps are found by convention so they work on the derived students too (same module names, fewer blocks):
- hidden states: the outputs of the model's repeated blocks, in model order over all their containers
  (:func:`adaptc.slim.adapters.find_blocks`: ``blocks`` / ``layers`` / ``encoder.layer``, torchvision
  ``features``, ResNet ``layer1``.., timm stages, the model's ``adaptc_blocks`` or the ``block_paths`` given), or
  else the outputs of the activation layers outside the output layer (e.g. a plain conv stack);
- attention maps: the outputs of modules named ``*.probs`` (adaptc zoo) — attention probabilities (B, H, T, T);
  Hugging Face self-attention modules (eager attention) return ``(output, probabilities)``: read from there;
- the last attention layer's query / key / value projections, for MiniLM-style relations;
- features: the input of the output layer (the penultimate representation), for relation distillation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..slim.adapters import find_attention, find_blocks, find_output_layer

_ACTS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish)


@dataclass
class Captured:
    hidden: list[torch.Tensor] = field(default_factory=list)
    attention: list[torch.Tensor] = field(default_factory=list)
    features: torch.Tensor | None = None
    #: the last attention layer's query, key and value projections (B, T, D) for MiniLM relations
    qkv: list[torch.Tensor] = field(default_factory=list)
    #: the attention mask of the batch (B, T) when the model takes one, for token relations
    mask: torch.Tensor | None = None

    def clear(self) -> None:
        self.hidden.clear()
        self.attention.clear()
        self.qkv.clear()
        self.features = None
        self.mask = None


class Taps:
    """Registers hooks on a model; ``captured`` is filled by each forward pass (cleared by :meth:`clear`)."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: tuple[torch.Tensor, ...],
        *,
        hidden: bool = True,
        attention: bool = True,
        features: bool = True,
        block_paths: Sequence[str] | None = None,
    ):
        self.captured = Captured()
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        out_layer = find_output_layer(model, example_inputs)
        if hidden:
            for m in self.hidden_modules(model, out_layer, block_paths):
                self._hooks.append(m.register_forward_hook(self._on_hidden))
        if attention:
            probs = [m for name, m in model.named_modules() if name.endswith(".probs") or name == "probs"]
            for m in probs:
                self._hooks.append(m.register_forward_hook(self._on_attention))
            attn = find_attention(model)
            if not probs:
                # Hugging Face eager attention returns (output, attention probabilities)
                for a in attn:
                    self._hooks.append(a.module.register_forward_hook(self._on_attention_tuple))
            if attn:
                last = attn[-1]
                for lin in (last.q, last.k, last.v):
                    self._hooks.append(lin.register_forward_hook(self._on_qkv))
        if features and out_layer is not None:
            self._hooks.append(out_layer.register_forward_pre_hook(self._on_features))

    @staticmethod
    def hidden_modules(
        model: nn.Module, out_layer: nn.Module | None, block_paths: Sequence[str] | None = None
    ) -> list[nn.Module]:
        blocks = find_blocks(model, block_paths)
        if blocks:
            return [b.module for b in blocks]
        head_modules = set(out_layer.modules()) if out_layer is not None else set()
        return [m for m in model.modules() if isinstance(m, _ACTS) and m not in head_modules][:-1] or [
            m for m in model.modules() if isinstance(m, _ACTS)
        ]

    def _on_hidden(self, mod: nn.Module, inp: object, out: object) -> None:
        if isinstance(out, (tuple, list)):
            out = out[0]
        self.captured.hidden.append(out)  # type: ignore[arg-type]

    def _on_attention(self, mod: nn.Module, inp: object, out: torch.Tensor) -> None:
        self.captured.attention.append(out)

    def _on_attention_tuple(self, mod: nn.Module, inp: object, out: object) -> None:
        if isinstance(out, (tuple, list)) and len(out) > 1 and isinstance(out[1], torch.Tensor) and out[1].dim() == 4:
            self.captured.attention.append(out[1])

    def _on_qkv(self, mod: nn.Module, inp: object, out: torch.Tensor) -> None:
        if out.dim() == 3:
            self.captured.qkv.append(out)

    def _on_features(self, mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        self.captured.features = inp[0]

    def clear(self) -> None:
        self.captured.clear()

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Teacher layer for each student layer, by relative depth: student i -> round((i+1) * Lt / Ls) - 1."""
    if n_student == 0 or n_teacher == 0:
        return []
    return [min(n_teacher - 1, max(0, round((i + 1) * n_teacher / n_student) - 1)) for i in range(n_student)]
