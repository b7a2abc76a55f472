"""Depth reduction: drop the residual blocks (or transformer layers) whose removal changes the output least.

Blocks come from one or several containers (:func:`~adaptc.slim.adapters.find_blocks`: ``blocks`` / ``layers`` /
``encoder.layer``, torchvision ``features``, ResNet ``layer1``..``layer4``, timm ``blocks.i`` / ``stages.i.blocks``,
or the containers named by ``paths`` or the model's ``adaptc_blocks``), as one flat list: a block's key in an
importance dict is its position in that list.

Importance of a block = KL divergence between the model's output distribution with and without that block
(skipped: its input passes through unchanged), averaged over real inputs. Only droppable blocks (residual units)
are scored; a block whose output shape differs from its input's on those inputs is not, whatever it says. At
least ``min_blocks`` blocks stay in each container.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .adapters import BlockRef, find_blocks


class Skip(nn.Module):
    """Stands in for a dropped block: returns its first input unchanged."""

    removable = True

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return x


def _logp(model: nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    out = model(*inputs)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return torch.log_softmax(out.float().reshape(out.shape[0], -1), dim=-1)


def _first_tensor(x: object) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    return None


@contextmanager
def _shape_changes(refs: list[BlockRef], keys: Sequence[int]) -> Iterator[set[int]]:
    """Watches the forward passes run inside: the set yielded fills with the keys of the blocks whose (first)
    output's shape differs from their first input's (a block whose input or output is not a tensor is kept)."""
    changed: set[int] = set()
    seen: set[int] = set()

    def hook(k: int) -> object:
        def on_forward(mod: nn.Module, args: tuple[object, ...], kwargs: dict[str, object], out: object) -> None:
            if k in seen:
                return
            seen.add(k)
            x = _first_tensor(args) if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            y = _first_tensor(out)
            if x is not None and y is not None and x.shape != y.shape:
                changed.add(k)

        return on_forward

    handles = [refs[k].module.register_forward_hook(hook(k), with_kwargs=True) for k in keys]  # type: ignore[arg-type]
    try:
        yield changed
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def block_importance(
    model: nn.Module, inputs: Sequence[torch.Tensor], *, paths: Sequence[str] | None = None
) -> dict[int, float]:
    """KL(full || block skipped) per droppable block, keyed by its position in ``find_blocks(model, paths)``
    (higher = more important)."""
    refs = find_blocks(model, paths)
    keys = [k for k, r in enumerate(refs) if r.droppable]
    if not keys:
        return {}
    model.eval()
    with _shape_changes(refs, keys) as changed:
        ref = _logp(model, inputs)
    scores: dict[int, float] = {}
    for k in keys:
        if k in changed:
            continue
        r = refs[k]
        orig = r.module
        r.container[r.index] = Skip()
        try:
            lp = _logp(model, inputs)
        finally:
            r.container[r.index] = orig
        scores[k] = float(torch.sum(ref.exp() * (ref - lp), dim=-1).mean())
    return scores


def _remove(container: nn.ModuleList | nn.Sequential, indices: set[int]) -> None:
    """Removes ``container``'s children at ``indices`` in place (numbered children are renumbered)."""
    items = list(container._modules.items())
    renumber = all(k.isdigit() for k, _ in items)
    kept = [(k, m) for i, (k, m) in enumerate(items) if i not in indices]
    container._modules.clear()
    for i, (k, m) in enumerate(kept):
        container._modules[str(i) if renumber else k] = m


def drop_blocks(
    model: nn.Module,
    drop: int,
    importance: dict[int, float],
    *,
    min_blocks: int = 1,
    paths: Sequence[str] | None = None,
) -> tuple[nn.Module, list[int]]:
    """A copy of ``model`` without the ``drop`` least important droppable blocks of ``importance`` (keys:
    positions in ``find_blocks(model, paths)``), keeping at least ``min_blocks`` in each container.
    Returns (model, the dropped blocks' keys, sorted)."""
    refs = find_blocks(model, paths)
    if drop <= 0 or not refs:
        return copy.deepcopy(model), []
    left = {id(r.container): len(r.container) for r in refs}
    victims: list[int] = []
    for k in sorted(
        (k for k in importance if 0 <= k < len(refs) and refs[k].droppable), key=lambda k: (importance[k], k)
    ):
        if len(victims) == drop:
            break
        c = id(refs[k].container)
        if left[c] - 1 >= min_blocks:
            left[c] -= 1
            victims.append(k)
    victims.sort()
    student = copy.deepcopy(model)
    srefs = find_blocks(student, paths)
    by_container: dict[int, tuple[nn.ModuleList | nn.Sequential, set[int]]] = {}
    for k in victims:
        r = srefs[k]
        by_container.setdefault(id(r.container), (r.container, set()))[1].add(r.index)
    for container, indices in by_container.values():
        _remove(container, indices)
    containers = {id(r.container): r.container for r in srefs}
    config = getattr(student, "config", None)
    if len(containers) == 1 and hasattr(config, "num_hidden_layers"):  # Hugging Face
        config.num_hidden_layers = len(next(iter(containers.values())))  # type: ignore[union-attr]
    return student.eval(), victims


def max_droppable(
    model: nn.Module,
    min_blocks: int = 1,
    *,
    paths: Sequence[str] | None = None,
    example_inputs: Sequence[torch.Tensor] | None = None,
) -> int:
    """The most blocks :func:`drop_blocks` can drop: the droppable ones, less ``min_blocks`` kept per container.
    With ``example_inputs``, blocks that change their input's shape on them are not counted either."""
    refs = find_blocks(model, paths)
    keys = [k for k, r in enumerate(refs) if r.droppable]
    if keys and example_inputs is not None:
        was_training = model.training
        try:
            with torch.no_grad(), _shape_changes(refs, keys) as changed:
                model.eval()(*example_inputs)
        finally:
            model.train(was_training)
        keys = [k for k in keys if k not in changed]
    containers = {id(r.container): r.container for r in refs}
    per: dict[int, int] = dict.fromkeys(containers, 0)
    for k in keys:
        per[id(refs[k].container)] += 1
    return sum(max(0, min(n, len(containers[c]) - min_blocks)) for c, n in per.items())
