"""CoreML exporter: coremltools through ``torch.export`` (ML program, ``.mlpackage``).

Schemes (one registered handler each, best first; see :mod:`adaptc.quant.registry`):
- fp16 (the default for Apple targets): ``ct.convert(..., compute_precision=FLOAT16)``; weights stored fp16.
- fp32: ``compute_precision=FLOAT32``.
- int8_weight_only: the fp16 program with ``ct.optimize.coreml.linear_quantize_weights`` (int8 symmetric per
  channel; weights below coremltools' 2,048-element threshold stay fp16); arithmetic in fp16.
- int8_static_per_channel / int8_static_per_tensor (W8A8): the PT2E-quantized graph (the same recipe as
  the TFLite int8 static file, weights folded to int8; captured with int32 token ids) through
  ``torch.export`` and ``ct.convert``: int8 weights (``constexpr_affine_dequantize``) and ``quantize`` /
  ``dequantize`` ops on activations. PT2E leaves embedding tables float (float16 in the program), so their
  ``gather`` tables are then made int8 by ``linear_quantize_weights`` (per row), as the int8-weights scheme
  does (recipe revision 1).

Token ids become int32 inputs. Prediction needs macOS: on Linux the package is converted, saved, reloaded
with ``skip_model_load=True`` and its MIL program is read (:func:`describe_mlpackage`) and checked against
the torch model's structure (:meth:`CoreMLExporter.verify`): op counts, weight elements per layer type and
their dtype. The build marks CoreML latency and memory as estimates only and never as measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..core.io import atomic_path
from ..core.schemes import get_scheme
from ..errors import ExportError
from ..quant.pt2e import PT2E_CALIBRATIONS
from ..quant.registry import check_calibration, handler_for, quantizer, register_calibrations
from ._capture import captured_output, first_line, unsupported_op
from .base import ExportedFile, Exporter, ExportRequest, float_layers_of, ptq_samples
from .coreml_mil import WEIGHT_FILE, WEIGHT_THRESHOLD, describe_mlpackage, structure_check, torch_structure

DEBUG_MAPPING = "executorch_debug_handle_mapping.json"


def _ct_version() -> str:
    from importlib.metadata import version

    try:
        return version("coremltools")
    except Exception:  # pragma: no cover
        return "?"


def _convert_error(scheme: str, err: BaseException, log: str = "") -> ExportError:
    op = unsupported_op(err) or (unsupported_op(log) if log else None)
    what = f" (op {op})" if op else ""
    return ExportError(f"coreml: the model cannot be converted for {scheme}{what}: {first_line(err)}")


def _int32_inputs(example_inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """CoreML has no int64 tensors: integer inputs (token ids) are exported as int32. Inputs are made
    contiguous in the default dim order (coremltools rejects others, e.g. a (1, 1, H, W) slice)."""
    return tuple(
        (x.to(torch.int32) if x.dtype == torch.int64 else x).clone(memory_format=torch.contiguous_format)
        for x in example_inputs
    )


def _register_lstm_overload() -> None:
    """Let coremltools convert ``aten.lstm.input`` from a ``torch.export`` graph as one MIL ``lstm`` op.

    coremltools' torch frontend converts ``lstm`` (TorchScript's name) but looks the torch.export node up as
    ``lstm.input`` (the overload is kept) and fails: ``Unsupported fx node lstm``. The default decompositions then
    unroll the LSTM into a ``linear`` per time step, each holding its own copy of the weights (EasyOCR's
    recogniser: 255 linear ops and 139 MB for 15 MB of weights). The node's arguments are TorchScript's
    (input, (h0, c0), weights, has_biases, num_layers, dropout, train, bidirectional, batch_first), so the
    registered converter serves it unchanged: registered under the overload's name, through coremltools'
    registry (written here because coremltools has no alias for it; ``register_torch_op`` refuses a second
    name for an op it already knows).
    """
    from coremltools.converters.mil.frontend.torch import ops
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    if "lstm.input" not in _TORCH_OPS_REGISTRY:
        _TORCH_OPS_REGISTRY.set_func_by_name(ops.lstm, "lstm.input")


def _int8_weights(mlmodel: Any, only_op: str | None = None) -> Any:
    """int8 symmetric per-channel weights (``linear_quantize_weights``) for every op, or for ``only_op``'s."""
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    op_cfg = OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
    )
    cfg = (
        OptimizationConfig(global_config=op_cfg)
        if only_op is None
        else OptimizationConfig(op_type_configs={only_op: op_cfg})
    )
    return linear_quantize_weights(mlmodel, config=cfg)


def _drop_aliases(ep: Any) -> None:
    """Remove ``aten.alias`` nodes (an identity coremltools has no converter for) from an exported program.
    torch.export writes one where a model takes a whole buffer as a view, e.g. Hugging Face BERT's
    ``position_ids[:, :seq_len]`` when the input is as long as the position table (minilm at 512 tokens)."""
    g = ep.graph_module.graph
    aliases = [n for n in g.nodes if n.op == "call_function" and n.target in (torch.ops.aten.alias.default,)]
    for n in aliases:
        n.replace_all_uses_with(n.args[0])
        g.erase_node(n)
    if aliases:
        ep.graph_module.recompile()


def _ct_inputs(request: ExportRequest, example: tuple[torch.Tensor, ...]) -> list[Any]:
    import coremltools as ct

    out = []
    for name, x in zip(request.input_names, example):
        dt = np.int32 if not torch.is_floating_point(x) else np.float32
        out.append(ct.TensorType(name=name, shape=tuple(x.shape), dtype=dt))
    return out


class CoreMLExporter(Exporter):
    reproducible = (
        "not byte-identical when made again: coremltools names the package's items with random identifiers "
        "(Manifest.json); the model (model.mlmodel) and its weights are byte-identical"
    )
    format = "coreml"

    calibration_samples = 256
    deployment_target = "iOS17"

    def export(self, request: ExportRequest, scheme: str, dest: Path) -> ExportedFile:
        handler = handler_for(self.format, scheme)
        example = _int32_inputs(tuple(request.example_inputs))
        recipe: dict[str, Any] = {
            "converter": f"coremltools {_ct_version()} via torch.export (torch {torch.__version__}), mlprogram, "
            f"minimum_deployment_target={self.deployment_target}"
        }
        cap = None
        try:
            with captured_output() as cap:
                mlmodel, precision = handler(CoreMLJob(self, request, scheme, example, recipe))
                mlmodel.short_description = f"adaptc {scheme} export"
                with atomic_path(dest) as tmp:
                    mlmodel.save(str(tmp))
                    # ExecuTorch debug metadata (debug handle -> MIL ops) that coremltools writes beside the
                    # model for torch.export sources; not in the manifest, not used by CoreML. It is as large
                    # as the weights of a small int8 model, so it is not shipped.
                    debug = Path(tmp) / DEBUG_MAPPING
                    if debug.is_file():
                        debug.unlink()
                        recipe["removed"] = f"{DEBUG_MAPPING} (debug metadata, not in the package manifest)"
        except ExportError:
            raise
        except Exception as e:
            raise _convert_error(scheme, e, cap.text if cap else "") from e
        notes = []
        if any(not torch.is_floating_point(x) and x.dtype == torch.int64 for x in request.example_inputs):
            notes.append("coreml: int64 token inputs are exported as int32")
        return ExportedFile(dest, self.format, scheme, recipe, notes, precision=precision)

    def _convert(self, model: nn.Module, request: ExportRequest, example: tuple[torch.Tensor, ...], fp32: bool) -> Any:
        import coremltools as ct

        _register_lstm_overload()

        def convert(default_decompositions: bool) -> Any:
            with torch.no_grad():
                ep = torch.export.export(model, example)
            ep = ep.run_decompositions() if default_decompositions else ep.run_decompositions({})
            _drop_aliases(ep)
            return ct.convert(
                ep,
                convert_to="mlprogram",
                inputs=_ct_inputs(request, example),
                outputs=[ct.TensorType(name=n) for n in request.output_names],
                compute_precision=ct.precision.FLOAT32 if fp32 else ct.precision.FLOAT16,
                minimum_deployment_target=getattr(ct.target, self.deployment_target),
            )

        # Core ATen ops first (keeps fused ops like layer_norm whole); ops coremltools cannot lower at that level
        # (e.g. ``new_ones`` from Hugging Face mask creation) convert after the default decompositions.
        try:
            return convert(False)
        except Exception as first:
            try:
                return convert(True)
            except Exception:
                raise first from None

    def describe(self, path: Path) -> dict[str, Any]:
        return describe_mlpackage(path)

    def verify(self, request: ExportRequest, path: Path, scheme: str) -> dict[str, Any]:
        return structure_check(
            request.model, tuple(request.example_inputs), describe_mlpackage(path), scheme, request.ptq.float_layers
        )


class CoreMLJob(NamedTuple):
    """What a scheme's handler gets (one handler per scheme, best first). It returns the ML program and its
    arithmetic precision where that differs from the scheme's; the exporter saves the program."""

    exporter: CoreMLExporter
    request: ExportRequest
    scheme: str
    #: the example inputs, token ids as int32 (what CoreML takes)
    example: tuple[torch.Tensor, ...]
    #: the recipe so far (the converter), completed by the handler
    recipe: dict[str, Any]


# revision 1 (fp16, fp32, int8 weights): an LSTM converts as one MIL lstm op (it was unrolled per time step)
@quantizer("coreml", "fp16", revision=1)
def _fp16(job: CoreMLJob) -> tuple[Any, str | None]:
    exporter, request, scheme, example, recipe = job
    recipe["compute_precision"] = "float16"
    return exporter._convert(request.model.eval(), request, example, fp32=False), None


@quantizer("coreml", "int8_weight_only", revision=1)
def _int8_weight_only(job: CoreMLJob) -> tuple[Any, str | None]:
    exporter, request, scheme, example, recipe = job
    recipe["compute_precision"] = "float16"
    mlmodel = _int8_weights(exporter._convert(request.model.eval(), request, example, fp32=False))
    recipe.update(
        quantizer=f"coremltools.optimize.coreml.linear_quantize_weights ({_ct_version()})",
        weights=f"int8 symmetric per channel (weights under {WEIGHT_THRESHOLD} elements stay float16)",
        activations="float16",
    )
    return mlmodel, "fp16"


register_calibrations("coreml", *PT2E_CALIBRATIONS, default="mse")


# revision 1: W8A8 programs store their embedding tables in int8; 2: an LSTM is one lstm op, its weights int8;
# 3: a conv + ReLU6's output observed after the clamp (PT2E, as TFLite)
@quantizer("coreml", "int8_static_per_channel", "int8_static_per_tensor", revision=3)
def _w8a8(job: CoreMLJob) -> tuple[Any, str | None]:
    exporter, request, scheme, example, recipe = job
    recipe["compute_precision"] = "float16"
    from ..quant.pt2e import pt2e_quantize

    if request.calibration is None:
        raise ExportError(f"coreml: {scheme} needs calibration data (the task's train split)")
    check_calibration("coreml", request.ptq.calibration)
    # captured with the int32 token ids CoreML takes: a graph captured with int64 ones asserts that dtype when
    # it is exported again for ct.convert
    model, _, qrecipe = pt2e_quantize(
        request.model,
        example,
        request.calibration,
        per_channel=get_scheme(scheme).per_channel,
        keep_float=float_layers_of(request, "coreml"),
        samples=ptq_samples(request, exporter.calibration_samples),
        fold_quantize=True,
        method=request.ptq.calibration,
    )
    recipe.update(qrecipe)
    recipe["method"] = "W8A8: the PT2E-quantized graph (int8 weights folded) through ct.convert"
    mlmodel = exporter._convert(model, request, example, fp32=False)
    if any(isinstance(m, nn.Embedding) for m in request.model.modules()):
        mlmodel = _int8_weights(mlmodel, only_op="gather")
        recipe["embedding_tables"] = (
            f"int8 symmetric per row: coremltools linear_quantize_weights on gather after conversion ({_ct_version()})"
        )
    if any(isinstance(m, nn.LSTM) for m in request.model.modules()):
        # PT2E does not annotate aten.lstm: its weights would stay float16. int8 as ONNX (DynamicQuantizeLSTM)
        # and TFLite (dynamic-range gates) store them
        mlmodel = _int8_weights(mlmodel, only_op="lstm")
        recipe["lstm"] = (
            f"int8 symmetric per channel weights: coremltools linear_quantize_weights on lstm after conversion "
            f"({_ct_version()}); its arithmetic in float16"
        )
    return mlmodel, "int8"


@quantizer("coreml", "fp32", revision=1)
def _fp32(job: CoreMLJob) -> tuple[Any, str | None]:
    exporter, request, scheme, example, recipe = job
    recipe["compute_precision"] = "float32"
    return exporter._convert(request.model.eval(), request, example, fp32=True), None


__all__ = [
    "WEIGHT_FILE",
    "WEIGHT_THRESHOLD",
    "CoreMLExporter",
    "describe_mlpackage",
    "structure_check",
    "torch_structure",
]
