"""What structured slimming needs to know about a model, found by convention (not by model class).

- attention modules: a module with ``q``/``k``/``v`` ``nn.Linear`` children and ``num_heads`` (adaptc's zoo),
  or Hugging Face BERT self-attention (``query``/``key``/``value`` and ``num_attention_heads``);
- blocks: the repeated residual units a depth reduction may drop, as one flat list (:class:`BlockRef`) over one
  or several containers (nn.Sequential / nn.ModuleList), found in this order of precedence:
  1. the container paths the caller names (``paths`` / ``block_paths``);
  2. the model's ``adaptc_blocks = ("path", ...)`` attribute (class or instance; on a sub-module, relative to it);
  3. by convention: the shallowest containers whose path ends in ``blocks``, ``layers`` or ``encoder.layer``
     (zoo transformers, Hugging Face encoders, timm ``blocks`` and ``stages.i.blocks``), and CNN containers named
     ``features`` (torchvision MobileNet / EfficientNet), ``stages`` or ``layer1``, ``layer2``, ... (ResNet) whose
     blocks say whether they are residual. A container element that is itself a Sequential of such blocks (timm
     ``blocks.i``, torchvision EfficientNet ``features.i``) is a stage: its blocks are listed instead.
  A block is droppable when it says it is a residual unit (:func:`residual_marker`: ``removable``,
  ``use_res_connect``, ``has_skip`` / ``has_residual``, a ResNet block without ``downsample`` at stride 1, an
  identity ``shortcut``); a block that says nothing is droppable in the transformer-style and named containers
  (not in the CNN ones, and never a lone layer). Shape-changing blocks are never dropped;
- the output layer: the last ``nn.Linear`` (or 1x1 conv) producing the model's output, never pruned.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import AdaptcError


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


# ---------------------------------------------------------------------------------------------- blocks

#: container paths (suffixes) of transformer-style layouts: their blocks are droppable unless they say otherwise
_LAYER_SUFFIXES = ("blocks", "layers", "encoder.layer")
#: container names of CNN layouts (torchvision ``features``, timm ``stages``, ResNet ``layer1``..``layer4``):
#: used only where their blocks say whether they are residual (see :func:`residual_marker`), else left alone
_CNN_NAMES = re.compile(r"(?:^|\.)(?:features|stages|layer\d+)$")
_CONTAINERS = (nn.Sequential, nn.ModuleList)


@dataclass(eq=False)
class BlockRef:
    """One repeated block: ``container[index]``, the module at ``path`` (its container at ``container_path``)."""

    path: str
    container: nn.ModuleList | nn.Sequential
    index: int
    container_path: str = ""
    #: whether depth reduction may drop it (a residual unit that keeps its input's shape)
    droppable: bool = True

    @property
    def module(self) -> nn.Module:
        return self.container[self.index]


def _unit_stride(stride: object) -> bool:
    return all(s == 1 for s in (stride if isinstance(stride, (tuple, list)) else (stride,)))


def residual_marker(block: nn.Module) -> bool | None:
    """Whether ``block`` says it is a residual unit whose input passes through unchanged in shape (it can be
    skipped), from the attributes common layouts set; None where it says nothing.

    ``removable`` (adaptc), ``use_res_connect`` (torchvision MobileNet / EfficientNet), ``has_skip`` /
    ``has_residual`` (timm), ResNet blocks (``conv1`` and ``downsample``: residual without a downsample at
    stride 1), ``shortcut`` (an ``nn.Identity`` shortcut; a bool is taken as is)."""
    for attr in ("removable", "use_res_connect", "has_skip", "has_residual"):
        if hasattr(block, attr):
            return bool(getattr(block, attr))
    if hasattr(block, "downsample") and hasattr(block, "conv1"):
        return block.downsample is None and _unit_stride(getattr(block, "stride", 1))
    if hasattr(block, "shortcut"):
        s = block.shortcut
        return s if isinstance(s, bool) else isinstance(s, nn.Identity)
    return None


def _is_stage(m: nn.Module) -> bool:
    """A Sequential / ModuleList of blocks inside a container (timm ``blocks.i``, torchvision ``features.i``)."""
    return isinstance(m, _CONTAINERS) and any(residual_marker(c) is not None for c in m.children())


def _says_residual(container: nn.Module) -> bool:
    return any(residual_marker(c) is not None or _is_stage(c) for c in container.children())


def _units(container: nn.ModuleList | nn.Sequential, cpath: str, default: bool) -> list[BlockRef]:
    out: list[BlockRef] = []
    for i, (key, m) in enumerate(container._modules.items()):
        if m is None:
            continue
        path = f"{cpath}.{key}" if cpath else key
        if _is_stage(m):
            out += _units(m, path, default)  # type: ignore[arg-type]
            continue
        mark = residual_marker(m)
        droppable = mark if mark is not None else default and any(True for _ in m.children())
        out.append(BlockRef(path, container, i, cpath, droppable))
    return out


def _auto_containers(model: nn.Module) -> list[tuple[str, nn.ModuleList | nn.Sequential, bool]]:
    named = [(n, m) for n, m in model.named_modules() if n and isinstance(m, _CONTAINERS) and len(m)]
    layers = [n for n, _ in named if any(n == s or n.endswith("." + s) for s in _LAYER_SUFFIXES)]
    # the shallowest such containers (a wrapped model's are found too); several at one depth: timm stages.i.blocks
    layers = [n for n in layers if n.count(".") == min(x.count(".") for x in layers)]
    out: list[tuple[str, nn.ModuleList | nn.Sequential, bool]] = []
    for n, m in named:
        if any(n.startswith(p + ".") for p, _, _ in out):
            continue  # inside a container taken already
        if n in layers:
            out.append((n, m, True))
        elif _CNN_NAMES.search(n) and _says_residual(m) and not any(x.startswith(n + ".") for x in layers):
            out.append((n, m, False))
    return out


def _declared_paths(model: nn.Module) -> tuple[tuple[str, ...], str] | None:
    """The ``adaptc_blocks`` of the model (or of the shallowest sub-module declaring it), as model paths."""
    for name, m in model.named_modules():
        declared = getattr(m, "adaptc_blocks", None)
        if declared is not None:
            paths = (declared,) if isinstance(declared, str) else tuple(declared)
            return tuple(f"{name}.{p}" if name else p for p in paths), f"{type(m).__name__}.adaptc_blocks"
    return None


def _resolve(model: nn.Module, path: str, source: str) -> nn.ModuleList | nn.Sequential:
    try:
        m: nn.Module | None = model.get_submodule(path)
    except AttributeError:
        m = None
    if isinstance(m, _CONTAINERS):
        return m
    what = "no such module" if m is None else f"a {type(m).__name__}, not an nn.Sequential / nn.ModuleList"
    names = [n for n, c in model.named_modules() if n and isinstance(c, _CONTAINERS)]
    near = difflib.get_close_matches(path, names, n=6, cutoff=0.0)
    hint = f"containers nearby: {', '.join(near)}" if near else "the model has no nn.Sequential / nn.ModuleList"
    raise AdaptcError(f"block container {path!r} ({source}) in {type(model).__name__}: {what}; {hint}")


def find_block_containers(
    model: nn.Module, paths: Sequence[str] | None = None
) -> list[tuple[str, nn.ModuleList | nn.Sequential, bool]]:
    """(path, container, droppable by default) of each container of blocks, in model order: those at ``paths``,
    else at the model's ``adaptc_blocks``, else the layouts found by convention (see the module docstring).
    A named path that is not an nn.Sequential / nn.ModuleList raises :class:`AdaptcError`."""
    source = "block_paths"
    if paths is None:
        declared = _declared_paths(model)
        if declared is not None:
            paths, source = declared
    if paths is None:
        return _auto_containers(model)
    paths = (paths,) if isinstance(paths, str) else tuple(paths)
    return [(p, _resolve(model, p, source), True) for p in dict.fromkeys(paths)]


def find_blocks(model: nn.Module, paths: Sequence[str] | None = None) -> list[BlockRef]:
    """The model's repeated blocks, one flat list in model order (empty: none found). A block's position in it
    is its key in importance dicts; ``droppable`` says whether depth reduction may drop it."""
    refs: list[BlockRef] = []
    seen: set[int] = set()
    for cpath, container, default in find_block_containers(model, paths):
        for r in _units(container, cpath, default):
            if id(r.module) not in seen:
                seen.add(id(r.module))
                refs.append(r)
    return refs


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
