"""Cross-layer equalization, bias absorption and bias correction on the torch model, before any format is made.

The classic remedy for per-tensor (and depthwise per-channel) int8 of real CNNs (Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", ICCV 2019; Qualcomm AIMET's ``equalize_model`` and
``bias_correction``; NNCF's fast bias correction). Done on the torch module so that ONNX, TFLite and CoreML all
gain from it: the result is an ordinary ``nn.Module`` that every exporter takes as it takes the original.

Steps, each reported in the returned :class:`EqualizeInfo`:

1. **BatchNorm folding** into the preceding convolution or linear layer (``torch.nn.utils.fusion``); the
   BatchNorm becomes ``nn.Identity``.
2. **Cross-layer equalization** of every pair ``layer1 -> [ReLU | ReLU6 | nothing] -> layer2`` whose
   intermediate tensor feeds nothing else: output channel ``c`` of layer1 is divided by ``s_c`` and input
   channel ``c`` of layer2 multiplied by it, ``s_c = sqrt(r1_c / r2_c)`` (the scales of torch's
   ``torch.ao.quantization._equalize.cross_layer_equalization``, with the depthwise channel axis where the second
   layer is depthwise, and a dead channel left alone), repeated over all pairs until the scales settle (chains such as
   1x1 -> depthwise -> 1x1 share a layer). As AIMET does, a ReLU6 between an equalized pair becomes a ReLU:
   scaling a channel moves its clipping point (the function then differs where the float model clipped at 6;
   the parity gate judges the file against the original model).
   Before it, with calibration data, **dead channels**: a depthwise filter behind a channel that its ReLU / ReLU6
   keeps at zero on every calibration sample, and whose range is over 8x its layer's median, is zeroed (its
   input is always zero, so this is exact on that data). Such a filter is what an ImageNet-style recipe leaves:
   the depthwise channel only ever saw zeros, its BatchNorm variance fell to ~0, and folding multiplied it by
   ~1/sqrt(eps); one int8 scale per tensor then rounds the rest of the layer to zero, and CLE alone only
   takes the outlier's square root (it shares it with the layer before). The channel's output is then its
   bias alone, a constant moved into the next layer's bias where that is exact (1x1 unpadded convolution or
   linear after a ReLU); elsewhere only a filter whose bias the ReLU after it zeroes anyway is zeroed.
3. **Bias absorption** where it is exact: a channel whose pre-activation never falls below ``c > 0`` on the
   calibration data gives ``c`` to the next layer's bias (``ReLU(x - c) + c = ReLU(x)`` there), when the next
   layer is a 1x1 unpadded convolution or a linear layer (a padded kernel would see the zero padding).
4. **Bias correction** (empirical, for weight quantization): layer by layer in execution order, the
   per-channel mean shift of the output that int8 weights (symmetric, per channel or per tensor as the scheme
   quantizes them) cause on the calibration data is removed from the layer's bias, each layer seeing the
   already corrected ones before it (one forward pass).

Hand-written (torch's equalization primitive writes NaN for a dead channel) because no maintained implementation
fits this stack:
AIMET does not install beside torch 2.13 CPU, NNCF's CLE / bias correction work on its own graph for its own
backends (OpenVINO, ONNX), not on a module that litert-torch and coremltools then convert.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..tasks.base import Split

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
#: activations that commute with a positive per-channel scale (ReLU6 does after becoming a ReLU)
_ACTS = (nn.ReLU, nn.ReLU6, nn.Identity)


@dataclass
class EqualizeInfo:
    folded_batchnorms: int = 0
    equalized_pairs: list[tuple[str, str]] = field(default_factory=list)
    relu6_replaced: int = 0
    dead_channels: int = 0
    absorbed_biases: int = 0
    corrected_biases: int = 0
    samples: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folded_batchnorms": self.folded_batchnorms,
            "equalized_pairs": len(self.equalized_pairs),
            "relu6_replaced_by_relu": self.relu6_replaced,
            "dead_channels_zeroed": self.dead_channels,
            "absorbed_biases": self.absorbed_biases,
            "corrected_biases": self.corrected_biases,
            "calibration_samples": self.samples,
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def _sub(model: nn.Module, name: str) -> Any:
    """A submodule by qualified name, typed loosely: conv / linear / batch-norm attributes are read and set."""
    return model.get_submodule(name)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv1d | nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _chains(model: nn.Module) -> tuple[list[tuple[str, str]], list[tuple[str, str | None, str, str]]]:
    """(layer, batchnorm) pairs to fold and (layer1, activation or None, layer2, via) chains to equalize, from the
    module's FX graph (modules are leaves). Empty when the model does not trace symbolically."""
    import torch.fx

    gm = torch.fx.symbolic_trace(model)
    mods = dict(model.named_modules())

    def mod(n: torch.fx.Node) -> nn.Module | None:
        return mods.get(str(n.target)) if n.op == "call_module" else None

    def sole_user(n: torch.fx.Node) -> torch.fx.Node | None:
        users = list(n.users)
        return users[0] if len(users) == 1 else None

    folds: list[tuple[str, str]] = []
    chains: list[tuple[str, str | None, str, str]] = []
    for n in gm.graph.nodes:
        m1 = mod(n)
        if not isinstance(m1, _LAYERS) or (m1.groups if isinstance(m1, nn.Conv1d | nn.Conv2d) else 1) not in (
            1,
            getattr(m1, "out_channels", 1),
        ):
            continue
        cur = n
        nxt = sole_user(cur)
        if nxt is not None and isinstance(mod(nxt), _BN) and isinstance(m1, nn.Conv1d | nn.Conv2d):
            folds.append((str(n.target), str(nxt.target)))
            cur, nxt = nxt, sole_user(nxt)
        act: str | None = None
        if nxt is not None and isinstance(mod(nxt), _ACTS):
            act = str(nxt.target)
            cur, nxt = nxt, sole_user(nxt)
        m2 = mod(nxt) if nxt is not None else None
        if nxt is None or not isinstance(m2, _LAYERS):
            continue
        if isinstance(m1, nn.Linear) != isinstance(m2, nn.Linear):
            continue
        grouped = isinstance(m2, nn.Conv1d | nn.Conv2d) and m2.groups != 1
        if grouped and not _is_depthwise(m2):
            continue
        chains.append((str(n.target), act, str(nxt.target), "depthwise" if grouped else "dense"))
    return folds, chains


def _fold(model: nn.Module, folds: list[tuple[str, str]]) -> int:
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    done = 0
    for conv_name, bn_name in folds:
        conv, bn = _sub(model, conv_name), _sub(model, bn_name)
        if not isinstance(bn, _BN) or not bn.track_running_stats or bn.running_mean is None:
            continue
        assert bn.running_var is not None
        w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
        conv.weight, conv.bias = w, b
        _set(model, bn_name, nn.Identity())
        done += 1
    return done


def _channel_ranges(w: torch.Tensor, axis: int) -> torch.Tensor:
    """max - min of ``w`` over every axis but ``axis`` (torch's ``_equalize.channel_range``)."""
    x = w.detach().transpose(0, axis).reshape(w.shape[axis], -1)
    return x.amax(1) - x.amin(1)


def _equalize_pair(m1: Any, m2: Any, depthwise: bool) -> None:
    """Scale output channel c of ``m1`` by 1/s_c and input channel c of ``m2`` by s_c, s_c = sqrt(r1_c / r2_c).

    torch's ``torch.ao.quantization._equalize.cross_layer_equalization`` computes the same scales, but divides by
    a zero scale for a dead channel (all weights 0: r1_c = 0) and writes NaN into the layer; here a channel whose
    range is 0 on either side keeps s_c = 1."""
    axis2 = 0 if depthwise else 1
    r1, r2 = _channel_ranges(m1.weight, 0), _channel_ranges(m2.weight, axis2)
    ok = (r1 > 0) & (r2 > 0)
    s = torch.where(ok, torch.sqrt(r1 / torch.where(ok, r2, torch.ones_like(r2))), torch.ones_like(r1))
    with torch.no_grad():
        m1.weight.div_(s.reshape(-1, *([1] * (m1.weight.ndim - 1))))
        if m1.bias is not None:
            m1.bias.div_(s)
        shape = [1] * m2.weight.ndim
        shape[axis2] = -1
        m2.weight.mul_(s.reshape(shape))


def _equalize_pairs(model: nn.Module, chains: list[tuple[str, str | None, str, str]], rounds: int = 20) -> None:
    for _ in range(rounds):
        before = {n: _sub(model, n).weight.detach().clone() for c in chains for n in (c[0], c[2])}
        for a, _act, b, via in chains:
            _equalize_pair(_sub(model, a), _sub(model, b), via == "depthwise")
        change = max(
            float((_sub(model, n).weight.detach() - w).abs().max() / (w.abs().max() + 1e-12)) for n, w in before.items()
        )
        if change < 1e-4:
            break


@contextmanager
def _hooks(model: nn.Module, names: list[str], fn: Any) -> Iterator[None]:
    """``fn(name, module, args, output)`` as a forward hook of each named module for the block."""
    hs = [_sub(model, n).register_forward_hook(lambda mod, args, out, n=n: fn(n, mod, args, out)) for n in names]
    try:
        yield
    finally:
        for h in hs:
            h.remove()


def _per_channel(x: torch.Tensor, linear: bool) -> torch.Tensor:
    """``x`` as (channels, everything else): channels on the last axis of a linear layer's output, else axis 1."""
    c = x.shape[-1] if linear else x.shape[1]
    return x.reshape(-1, c).t() if linear else x.transpose(0, 1).reshape(c, -1)


def _channel_min(x: torch.Tensor, linear: bool = False) -> torch.Tensor:
    return _per_channel(x, linear).min(1).values


def _bias_of(m: Any) -> torch.Tensor:
    if m.bias is None:
        m.bias = nn.Parameter(torch.zeros(m.weight.shape[0], dtype=m.weight.dtype))
    return m.bias


def _absorb(model: nn.Module, chains: list[tuple[str, str | None, str, str]], inputs: tuple[torch.Tensor, ...]) -> int:
    cand = []
    for a, act, b, _via in chains:
        if act is not None and isinstance(_sub(model, act), nn.ReLU) and _exact_next(_sub(model, b)):
            cand.append((a, b))
    if not cand:
        return 0
    mins: dict[str, torch.Tensor] = {}
    with (
        _hooks(
            model,
            [a for a, _ in cand],
            lambda n, m, args, out: mins.__setitem__(n, _channel_min(out, isinstance(m, nn.Linear))),
        ),
        torch.no_grad(),
    ):
        model(*inputs)
    done = 0
    for a, b in cand:
        if a not in mins:
            continue
        c = mins[a].clamp(min=0)
        if not bool((c > 0).any()):
            continue
        m1, m2 = _sub(model, a), _sub(model, b)
        with torch.no_grad():
            _bias_of(m1).sub_(c)
            _take_constant_input(m2, c)
        done += 1
    return done


def _take_constant_input(m: Any, c: torch.Tensor) -> None:
    """Add to ``m``'s bias what a constant input ``c`` (one value per input channel) contributes to its output
    (exact for an :func:`_exact_next` layer)."""
    w = m.weight.reshape(m.weight.shape[0], m.weight.shape[1], -1).sum(-1)
    _bias_of(m).add_(w @ c)


def _exact_next(m2: Any) -> bool:
    """A layer that sees each input position alone (linear, or 1x1 unpadded ungrouped conv): a constant input
    channel can move into its bias exactly."""
    return isinstance(m2, nn.Linear) or (
        all(k == 1 for k in m2.kernel_size) and all(p == 0 for p in m2.padding) and m2.groups == 1
    )


def _outliers(w: torch.Tensor, factor: float = 8.0) -> torch.Tensor:
    """Output channels whose weight range exceeds ``factor`` times the layer's median channel range."""
    r = w.detach().abs().reshape(w.shape[0], -1).amax(1)
    return r > factor * r.median()


def _zero_dead_inputs(
    model: nn.Module, chains: list[tuple[str, str | None, str, str]], inputs: tuple[torch.Tensor, ...]
) -> int:
    """Zero a depthwise layer2's filters that are outliers of their layer (:func:`_outliers`) and whose input
    channel its activation keeps at 0 on all of ``inputs``; such a channel is then its bias alone, moved into the
    next layer where exact. Returns the channels zeroed."""
    acts = [(a, act, b, via) for a, act, b, via in chains if act is not None and isinstance(_sub(model, act), nn.ReLU)]
    nxt = {a: (act, b) for a, act, b, _ in acts}
    # only where it matters and is safe: depthwise filters far out of their layer's range (a channel merely silent
    # on the calibration samples, say a class-specific one, keeps its weights when they are ordinary)
    outliers = {b: _outliers(_sub(model, b).weight) for _, _, b, via in acts if via == "depthwise"}
    acts = [c for c in acts if c[2] in outliers and bool(outliers[c[2]].any())]
    if not acts:
        return 0
    peaks: dict[str, list[torch.Tensor]] = {}
    with (
        _hooks(
            model,
            [str(act) for _, act, _, _ in acts],
            lambda n, m, args, out: peaks.setdefault(n, []).append(_per_channel(out, out.ndim == 2).amax(1)),
        ),
        torch.no_grad(),
    ):
        model(*inputs)
    done = 0
    for _a, act, b, _via in acts:
        seen = peaks.get(str(act), [])
        if len(seen) != 1 or not bool((seen[0] <= 0).any()):
            continue  # (an activation module called at several places, as ResNet's, says nothing of this one)
        m2 = _sub(model, b)
        dead = (seen[0] <= 0) & outliers[b]
        # zeroed, the channel outputs its bias, a constant: it moves into the next layer where that is exact,
        # else only a bias the ReLU after it zeroes anyway can go (a bias left beside zero weights would get an
        # int32 step of s_in * eps and overflow)
        after = nxt.get(b)
        m3 = _sub(model, after[1]) if after is not None and _exact_next(_sub(model, after[1])) else None
        bias = _bias_of(m2).detach()
        if m3 is None:
            dead &= (bias <= 0) if after is not None else torch.zeros_like(dead)
        if not bool(dead.any()):
            continue
        with torch.no_grad():
            if m3 is not None:
                _take_constant_input(m3, torch.where(dead, torch.relu(bias), torch.zeros_like(bias)))
            m2.weight[dead] = 0
            m2.bias[dead] = 0
        done += int(dead.sum())
    return done


def fake_quantize_weight(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 weights (per output channel or per tensor), dequantized: what the exporters store."""
    amax = w.detach().abs().reshape(w.shape[0], -1).max(1).values if per_channel else w.detach().abs().max()
    scale = (amax / 127.0).clamp(min=1e-12)
    if per_channel:
        scale = scale.reshape(-1, *([1] * (w.ndim - 1)))
    return (w / scale).round().clamp(-127, 127) * scale


def _correct_biases(model: nn.Module, inputs: tuple[torch.Tensor, ...], per_channel: bool) -> int:
    """One pass over the calibration batch: each layer's output mean shift under int8 weights is removed from
    its bias, and the corrected output goes on, so later layers see the corrections before them."""
    names = [n for n, m in model.named_modules() if isinstance(m, _LAYERS)]
    done = 0

    def hook(n: str, m: Any, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        nonlocal done
        linear = isinstance(m, nn.Linear)
        wq = fake_quantize_weight(m.weight, per_channel)
        q = nn.functional.linear(args[0], wq, m.bias) if linear else m._conv_forward(args[0], wq, m.bias)
        shift = _per_channel(out - q, linear).mean(1)
        _bias_of(m).data.add_(shift)
        done += 1
        return q + (shift if linear else shift.reshape(1, -1, *([1] * (out.ndim - 2))))

    with _hooks(model, names, hook), torch.no_grad():
        model(*inputs)
    return done


def equalize(
    model: nn.Module,
    calibration: Split | None,
    *,
    per_channel: bool = True,
    samples: int = 64,
    bias_correction: bool = True,
) -> tuple[nn.Module, EqualizeInfo]:
    """A copy of ``model`` (eval mode) with BatchNorm folded, cross-layer equalization, bias absorption and bias
    correction for int8 weights (per channel or per tensor). The original is not touched. Without calibration
    data only the data-free steps (folding, equalization) run."""
    model = copy.deepcopy(model).eval()
    info = EqualizeInfo()
    try:
        folds, chains = _chains(model)
    except Exception as e:  # a model FX cannot trace: nothing to equalize by structure
        info.notes.append(f"no equalization: the model does not trace symbolically ({type(e).__name__})")
        return model, info
    info.folded_batchnorms = _fold(model, folds)
    for _a, act, _b, _via in chains:
        if act is not None and isinstance(_sub(model, act), nn.ReLU6):
            _set(model, act, nn.ReLU())
            info.relu6_replaced += 1
    have_data = calibration is not None and len(calibration) > 0
    inputs: tuple[torch.Tensor, ...] = ()
    if calibration is not None and have_data:
        n = min(samples, len(calibration))
        inputs = tuple(t[:n] for t in calibration.inputs)
        info.samples = n
        info.dead_channels = _zero_dead_inputs(model, chains, inputs)
    _equalize_pairs(model, chains)
    info.equalized_pairs = [(a, b) for a, _, b, _ in chains]
    if not have_data:
        return model, info
    info.absorbed_biases = _absorb(model, chains, inputs)
    if bias_correction:
        info.corrected_biases = _correct_biases(model, inputs, per_channel)
    return model, info


#: what equalize() does, part of the key of every artifact and sensitivity table made after it (1: dead channels)
EQUALIZE_REVISION = 1

__all__ = ["EQUALIZE_REVISION", "EqualizeInfo", "equalize", "fake_quantize_weight"]
