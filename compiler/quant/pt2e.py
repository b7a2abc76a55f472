"""Static int8 quantization of a torch model with PT2E (torchao + litert-torch's quantizer), shared by the
TFLite exporter (int8 static) and the CoreML exporter (W8A8 from the same quantized graph).

Recipe (docs/toolchain.md): ``torch.export`` -> ``prepare_pt2e`` with litert-torch's ``PT2EQuantizer`` and
``get_symmetric_quantization_config(is_per_channel=..., is_dynamic=False)`` -> calibration on real task data
-> ``convert_pt2e``. Two fixes over the stock quantizer, both measured on the docstrings transformer:

- Keeping modules in float by name (``keep_float``) works here: the stock ``set_module_name`` filter cuts
  torch 2.13's ``nn_module_stack`` keys (``L__self__blocks.0``) at the wrong offset and silently matches
  nothing, and ``set_module_name(..., None)`` is refused.
- ``mul`` is not annotated by default: an int8 ``mul`` (the attention scale) makes the TFLite converter
  fuse the attention score ``BATCH_MATMUL`` to int8, which XNNPACK does not delegate; the graph splits into
  9 partitions and ran 0.59x the fp32 speed. Without it: 1.7x fp32, same accuracy.

Activation ranges come from the observer of the ``calibration`` method (:mod:`.observers`: ``minmax``,
``percentile``, ``entropy``, ``mse``; ``None``: litert-torch's own HistogramObserver, i.e. ``mse``). A module
kept in float (``keep_float``, qualified name) leaves its whole annotated pattern in float: a Conv2d with the
BatchNorm ``prepare_pt2e`` folds into it (and a ReLU the ``conv_relu`` pattern takes with it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..tasks.base import Split

#: op annotators of litert-torch's PT2EQuantizer that adaptc skips by default (see the module docstring)
DEFAULT_SKIPPED_OPS = ("mul", "mul_relu")
#: the range estimators the PT2E observers offer (:mod:`.observers`)
PT2E_CALIBRATIONS = ("minmax", "percentile", "entropy", "mse")


def _make_quantizer(
    per_channel: bool, keep_float: Sequence[str], skip_ops: Sequence[str], calibration: str | None = None
) -> Any:
    from litert_torch.quantize import pt2e_quantizer_utils as qutils
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    from .observers import with_activation_observer

    class AdaptcPT2EQuantizer(PT2EQuantizer):
        """litert-torch's quantizer with a working keep-in-float filter and a configurable op list."""

        def __init__(self) -> None:
            super().__init__()
            self.keep_float = tuple(keep_float)
            self.static_ops = [op for op in self.STATIC_OPS if op not in set(skip_ops)]

        def _annotate_for_static_quantization_config(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            filt = _keep_float_filter(self.keep_float)
            cfg = self.global_config
            if cfg is None:
                return model
            if "conv_relu" in self.static_ops:
                _annotate_conv_relu6(model, cfg, filt)
            for op in self.static_ops:
                qutils.OP_TO_ANNOTATOR[op](model, cfg, filt)
            return model

    q = AdaptcPT2EQuantizer()
    cfg = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=False)
    q.set_global(with_activation_observer(cfg, calibration))
    return q


_CONVS = ("aten.conv1d.default", "aten.conv2d.default", "aten.convolution.default")
_HARDTANH = ("aten.hardtanh.default", "aten.hardtanh_.default")


def _annotate_conv_relu6(gm: torch.fx.GraphModule, cfg: Any, filt: Callable[[torch.fx.Node], bool]) -> None:
    """litert-torch's ``conv_relu`` annotation for a conv followed by ReLU6 (``hardtanh(0, 6)``): the output is
    observed after the clamp. Hand-written because litert-torch's annotator matches ``relu`` only: a ReLU6 conv
    then falls to the plain ``conv`` pattern, whose observer sees the pre-activation, negatives included (on
    animal-mobilenet a range of ~19 for values the clamp keeps in [0, 6]: a 3x coarser int8 step for every
    activation of a MobileNet), and the TFLite converter fuses the clamp either way."""
    from litert_torch.quantize import pt2e_quantizer_utils as qu
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for n in gm.graph.nodes:
        if n.op != "call_function" or str(n.target) not in _HARDTANH or tuple(n.args[1:3]) != (0.0, 6.0):
            continue
        conv = n.args[0]
        if not isinstance(conv, torch.fx.Node) or str(conv.target) not in _CONVS or len(conv.users) != 1:
            continue
        partition = [n, conv, conv.args[1]]
        qmap = {conv.args[0]: qu.get_input_act_qspec(cfg), conv.args[1]: qu.get_weight_qspec(cfg)}
        bias = conv.args[2] if len(conv.args) > 2 else None
        if isinstance(bias, torch.fx.Node):
            qmap[bias] = qu.get_bias_qspec(cfg)
            partition.append(bias)
        if qu._is_annotated(partition) or not all(filt(x) for x in partition):
            continue
        conv.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=qmap, _annotated=True)
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=qu.get_output_act_qspec(cfg), _annotated=True
        )
        qu._mark_nodes_as_annotated(partition)


def _keep_float_filter(keep: Sequence[str]) -> Callable[[torch.fx.Node], bool]:
    """True for nodes that may be quantized: not inside a kept module.

    A pattern is a qualified module name (``blocks.0.ffn``: that module and everything under it), a
    ``*suffix`` (``*ffn.2``: every module whose name ends so) or a type name (``LayerNorm`` or
    ``torch.nn.modules.normalization.LayerNorm``).
    """
    keep = tuple(keep)

    def ok(n: torch.fx.Node) -> bool:
        if not keep:
            return True
        for path, tp in n.meta.get("nn_module_stack", {}).values():
            tname = tp if isinstance(tp, str) else f"{getattr(tp, '__module__', '')}.{getattr(tp, '__qualname__', tp)}"
            for k in keep:
                if k.startswith("*"):
                    if path.endswith(k[1:]):
                        return False
                elif path == k or path.startswith(k + ".") or tname == k or tname.rsplit(".", 1)[-1] == k:
                    return False
        return True

    return ok


def _export_for_calibration(
    model: nn.Module, example_inputs: tuple[torch.Tensor, ...], calibration: Split, batch: int
) -> tuple[torch.fx.GraphModule, int, bool]:
    """``torch.export`` with a dynamic batch dimension when the model allows it (calibration then runs in
    batches: the HistogramObserver costs per call, 25x less time than one sample at a time); otherwise at
    the example's batch size. Returns the graph module, the calibration batch size and whether it is dynamic."""
    n = min(batch, len(calibration))
    if n >= 2:
        try:
            from torch.export import Dim

            b = Dim("batch", min=1, max=max(1024, n))
            sample = tuple(t[:n].to(x.dtype) for t, x in zip(calibration.inputs, example_inputs))
            gm = torch.export.export(model, sample, dynamic_shapes=tuple({0: b} for _ in sample)).module()
            return gm, n, True
        except Exception:
            pass
    return torch.export.export(model, tuple(example_inputs)).module(), int(example_inputs[0].shape[0]), False


def pt2e_quantize(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    calibration: Split,
    *,
    per_channel: bool = True,
    keep_float: Sequence[str] = (),
    skip_ops: Sequence[str] = DEFAULT_SKIPPED_OPS,
    samples: int = 256,
    batch: int = 32,
    fold_quantize: bool = False,
    method: str | None = None,
) -> tuple[torch.fx.GraphModule, Any, dict[str, Any]]:
    """Quantize ``model`` statically: returns (quantized graph module, quantizer, recipe for the report).

    Calibration runs in batches of ``batch`` when the model exports with a dynamic batch dimension, else
    at the example's batch size, over the first ``samples`` of ``calibration`` with the range estimator
    ``method`` (``None``: litert-torch's default, ``mse``). ``fold_quantize=True`` stores weights as int8
    constants (what coremltools needs); litert-torch takes the unfolded graph.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .observers import DEFAULT_CALIBRATION, OBSERVERS

    if method is not None and method not in PT2E_CALIBRATIONS:
        raise ValueError(f"PT2E: unknown calibration method {method!r} (known: {', '.join(PT2E_CALIBRATIONS)})")
    model = model.eval()
    q = _make_quantizer(per_channel, keep_float, skip_ops, method)
    gm, bs, dynamic = _export_for_calibration(model, tuple(example_inputs), calibration, batch)
    gm = prepare_pt2e(gm, q)
    n = min(samples, len(calibration))
    with torch.no_grad():
        for i in range(0, n, bs):
            chunk = tuple(t[i : min(i + bs, n)].to(x.dtype) for t, x in zip(calibration.inputs, example_inputs))
            if len(chunk[0]) != bs and not dynamic:
                continue  # a static graph takes only its own batch size
            gm(*chunk)
    gm = convert_pt2e(gm, fold_quantize=fold_quantize)
    method = method or DEFAULT_CALIBRATION
    recipe = {
        "quantizer": "PT2E: torchao prepare_pt2e/convert_pt2e with litert_torch PT2EQuantizer "
        "(get_symmetric_quantization_config)",
        "weights": "int8 symmetric " + ("per output channel" if per_channel else "per tensor"),
        "activations": f"int8 per tensor ({OBSERVERS[method].__name__} ranges)",
        "calibration": f"{method} over {n} train samples",
        "calibration_batches": bs,
        "annotated_ops": list(q.static_ops),
        "float_layers": list(keep_float),
    }
    return gm, q, recipe
