"""Structured width pruning with Torch-Pruning (DepGraph): channels, heads and FFN width.

``prune_width(model, example_inputs, width)`` returns a physically smaller copy: every coupled group of
channels (a conv's outputs and the next layer's inputs, residual additions, BatchNorm, LayerNorm and
embedding dimensions) is pruned together to keep ``width`` of it, rounded to the device's channel multiple.
Attention modules lose whole heads (their head dimension is kept, which suits CPU kernels); the output
layer is never pruned.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..errors import AdaptcError
from .adapters import find_attention, find_output_layer, update_attention_after_pruning

Importance = Literal["magnitude", "taylor"]


class PruningError(AdaptcError):
    """The teacher cannot be traced or pruned by Torch-Pruning (names the module)."""


def _culprit(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> str | None:
    """The innermost module that was running when the model's forward failed, by name."""
    stack: list[str] = []
    failed: list[str] = []
    hooks = []

    def enter(mod: nn.Module, inp: object, n: str) -> None:
        stack.append(n)

    def leave(mod: nn.Module, inp: object, out: object) -> None:
        if stack:
            stack.pop()

    for name, m in model.named_modules():
        if not name:
            continue
        hooks.append(m.register_forward_pre_hook(lambda mod, inp, n=name: enter(mod, inp, n)))
        hooks.append(m.register_forward_hook(leave))
    try:
        model(*example_inputs)
    except Exception:
        failed = list(stack)
    finally:
        for h in hooks:
            h.remove()
    if failed:
        name = failed[-1]
        return f"{name} ({type(model.get_submodule(name)).__name__})"
    return None


def _unwrapped(model: nn.Module, pruner: object) -> str | None:
    """Modules holding parameters used outside standard layers (Torch-Pruning cannot group them reliably)."""
    try:
        dg = pruner.DG  # type: ignore[attr-defined]
        names = [dg._param_to_name[u.parameters] for u in dg.unwrapped_parameters]
    except Exception:
        return None
    if not names:
        return None
    owners = []
    for n in names:
        mod_name = n.rpartition(".")[0]
        mod = model.get_submodule(mod_name) if mod_name else model
        owners.append(
            f"{mod_name or '<root>'} ({type(mod).__name__}), whose parameter {n!r} is used outside a standard layer"
        )
    return "; ".join(owners)


#: recurrent layers: channel groups that reach one are not pruned (see prune_width)
_RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)


def prune_width(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    width: float,
    *,
    channel_multiple: int = 8,
    importance: Importance = "magnitude",
    calibration: Callable[[nn.Module], torch.Tensor] | None = None,
    ignored_layers: list[nn.Module] | None = None,
    keep_output_dim: bool = True,
) -> nn.Module:
    """A pruned copy of ``model`` keeping ``width`` (0, 1] of each prunable channel group.

    ``importance``: "magnitude" (L2 norm of weights) or "taylor" (|weight x gradient|; ``calibration(model)``
    must return a loss on real data whose gradient is used).
    """
    import torch_pruning as tp

    if not 0 < width <= 1:
        raise AdaptcError(f"width multiplier {width} is outside (0, 1]")
    student = copy.deepcopy(model).eval()
    if width >= 1.0:
        return student
    out_layer = find_output_layer(student, example_inputs)
    ignored = list(ignored_layers or [])
    if out_layer is not None and keep_output_dim:
        ignored.append(out_layer)
    attn = find_attention(student)
    num_heads = {lin: a.num_heads for a in attn for lin in (a.q, a.k, a.v)}
    head_ratio = 0.0
    if attn:
        h = attn[0].num_heads
        head_ratio = 1.0 - max(1, round(h * width)) / h
    imp = tp.importance.TaylorImportance() if importance == "taylor" else tp.importance.MagnitudeImportance(p=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.MetaPruner(
                student,
                example_inputs,
                importance=imp,
                pruning_ratio=1.0 - width,
                ignored_layers=ignored,
                round_to=channel_multiple,
                num_heads=num_heads,
                prune_num_heads=bool(attn),
                prune_head_dims=False,
                head_pruning_ratio=head_ratio,
            )
    except Exception as e:
        where = _culprit(student, example_inputs)
        raise PruningError(
            f"Torch-Pruning cannot trace the teacher{f' (failed in module {where})' if where else ''}: "
            f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        ) from None
    if importance == "taylor":
        if calibration is None:
            raise AdaptcError("taylor importance needs calibration data")
        student.zero_grad()
        calibration(student).backward()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if any(isinstance(m, _RECURRENT) for m in student.modules()):
                # Torch-Pruning breaks (bidirectional) LSTMs: the channel groups that reach a recurrent layer
                # (its hidden size, and the layer feeding its input) keep their width; the others are pruned.
                # On EasyOCR's recogniser every conv but the last one narrows (3.8 M -> 2.7 M parameters at 0.5)
                for group in pruner.step(interactive=True):
                    if not any(isinstance(dep.target.module, _RECURRENT) for dep, _ in group):
                        group.prune()
            else:
                pruner.step()
    except Exception as e:
        where = _culprit(student, example_inputs) or _unwrapped(student, pruner)
        raise PruningError(
            f"Torch-Pruning could not prune the teacher{f' (the model breaks in module {where})' if where else ''}: "
            f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        ) from None
    for a in attn:
        update_attention_after_pruning(a, pruner.num_heads.get(a.q, a.num_heads))
    student.zero_grad(set_to_none=True)
    student.eval()
    # Torch-Pruning only sees what autograd records: parameters used outside standard layers (an
    # "unwrapped" nn.Parameter in a matmul, say) are not pruned with their group. Check the result runs.
    try:
        with torch.no_grad():
            student(*example_inputs)
    except Exception as e:
        where = _culprit(student, example_inputs) or _unwrapped(student, pruner)
        raise PruningError(
            f"Torch-Pruning could not prune the teacher consistently: the pruned model fails"
            f"{f' in module {where}' if where else ''}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ) from None
    return student


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class OutputProjection(nn.Module):
    """A pruned embedding model followed by a linear map back to the teacher's embedding size.

    With it an embedding student stays a drop-in replacement for its teacher (same output size, aligned
    space), even after its hidden size was narrowed. The map is initialised by least squares from the
    student's to the teacher's outputs on real inputs, then trained with the student.
    """

    def __init__(self, model: nn.Module, in_dim: int, out_dim: int, normalize: bool):
        super().__init__()
        self.model = model
        self.proj = nn.Linear(in_dim, out_dim, bias=False)
        self.normalize = normalize

    # explicit (not *args) parameters: torch.export maps dynamic shapes to named parameters
    def forward(
        self,
        input_0: torch.Tensor,
        input_1: torch.Tensor | None = None,
        input_2: torch.Tensor | None = None,
        input_3: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = [x for x in (input_0, input_1, input_2, input_3) if x is not None]
        y = self.model(*inputs)
        y = self.proj(y[0] if isinstance(y, (tuple, list)) else y)
        return nn.functional.normalize(y, p=2, dim=-1) if self.normalize else y


@torch.no_grad()
def project_to_teacher(student: nn.Module, teacher: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """Wrap ``student`` in an :class:`OutputProjection` when its output size differs from the teacher's."""
    s = student.eval()(*inputs)
    t = teacher.eval()(*inputs)
    s, t = (x[0] if isinstance(x, (tuple, list)) else x for x in (s, t))
    if s.shape[-1] == t.shape[-1]:
        return student
    normalize = bool(torch.allclose(t.norm(dim=-1), torch.ones(t.shape[0]), atol=1e-3))
    wrapped = OutputProjection(student, s.shape[-1], t.shape[-1], normalize)
    sol = torch.linalg.lstsq(s.float(), t.float()).solution  # (in, out)
    wrapped.proj.weight.copy_(sol.T)
    return wrapped.eval()
