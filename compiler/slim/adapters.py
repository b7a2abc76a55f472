"""What structured slimming needs to know about a model, found by convention (not by model class).

- attention modules: a module with ``q``/``k``/``v`` ``nn.Linear`` children and ``num_heads`` (adaptc's zoo),
  or Hugging Face BERT self-attention (``query``/``key``/``value`` and ``num_attention_heads``);
- blocks: the repeated residual units a depth reduction may drop (``model.blocks``, ``model.layers``, or a
  Hugging Face ``encoder.layer``); a block whose ``removable`` attribute is False (a shape-changing
  block) is never dropped;
- the output layer: the last ``nn.Linear`` (or 1x1 conv) producing the model's output, never pruned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class AttentionInfo:
    module: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    heads_attr: str  # attribute holding the head count

    @property
    def num_heads(self) -> int:
        return int(getattr(self.module, self.heads_attr))


def find_attention(model: nn.Module) -> list[AttentionInfo]:
    out = []
    for m in model.modules():
        if all(isinstance(getattr(m, n, None), nn.Linear) for n in ("q", "k", "v")) and hasattr(m, "num_heads"):
            out.append(AttentionInfo(m, m.q, m.k, m.v, "num_heads"))  # type: ignore[arg-type]
        elif all(isinstance(getattr(m, n, None), nn.Linear) for n in ("query", "key", "value")) and hasattr(
            m, "num_attention_heads"
        ):
            out.append(AttentionInfo(m, m.query, m.key, m.value, "num_attention_heads"))  # type: ignore[arg-type]
    return out


def update_attention_after_pruning(info: AttentionInfo, heads: int) -> None:
    """Keep the attention module's bookkeeping consistent with its pruned q/k/v layers."""
    m = info.module
    setattr(m, info.heads_attr, int(heads))
    if hasattr(m, "all_head_size"):  # Hugging Face BERT
        m.all_head_size = info.q.out_features  # type: ignore[assignment]
    if hasattr(m, "attention_head_size"):
        m.attention_head_size = info.q.out_features // int(heads)  # type: ignore[assignment]


_BLOCK_PATHS = ("blocks", "layers", "encoder.layer")


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList | nn.Sequential] | None:
    """(path, container) of the model's repeated blocks (an nn.ModuleList / nn.Sequential), if any.

    The container is the shallowest module whose path ends in ``blocks``, ``layers`` or ``encoder.layer``
    (so wrapped models, e.g. a student with an output projection, are found too)."""
    best: tuple[str, nn.ModuleList | nn.Sequential] | None = None
    for name, m in model.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)) or len(m) == 0:
            continue
        if any(name == s or name.endswith("." + s) for s in _BLOCK_PATHS) and (
            best is None or name.count(".") < best[0].count(".")
        ):
            best = (name, m)
    return best


def removable_indices(container: nn.ModuleList | nn.Sequential) -> list[int]:
    return [i for i, b in enumerate(container) if getattr(b, "removable", True)]


def find_output_layer(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> nn.Module | None:
    """The layer that produces the model's (first) output: the last Linear / Conv run in forward whose weight
    the output depends on (a layer computed but unused, like a BERT pooler, is skipped)."""
    order: list[nn.Module] = []
    layer_types = (nn.Linear, nn.Conv2d, nn.Conv1d)
    # QAT wrappers (adaptc.distill.qat) hold the layer as ``.inner`` and run it functionally
    hooks = [
        m.register_forward_hook(lambda mod, i, o: order.append(mod))
        for m in model.modules()
        if isinstance(m, layer_types) or isinstance(getattr(m, "inner", None), layer_types)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            out = model(*example_inputs)
            if isinstance(out, (tuple, list)):
                out = out[0]
            if isinstance(out, dict):
                out = next(iter(out.values()))
            weights = [getattr(m, "weight", None) if not hasattr(m, "inner") else m.inner.weight for m in order]  # type: ignore[union-attr]
            live = [w for w in weights if isinstance(w, torch.Tensor) and w.requires_grad]
            grads = (
                torch.autograd.grad(out.float().sum(), live, allow_unused=True) if live and out.requires_grad else []
            )
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    used = {id(w) for w, g in zip(live, grads) if g is not None} if grads else None
    for m in reversed(order):
        w = m.inner.weight if hasattr(m, "inner") else getattr(m, "weight", None)  # type: ignore[union-attr]
        if used is None or id(w) in used:
            return m
    return order[-1] if order else None


def iter_named_leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in model.named_modules():
        if not list(m.children()):
            yield name, m
