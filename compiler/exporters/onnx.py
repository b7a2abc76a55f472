"""ONNX exporter: ``torch.onnx.export(dynamo=True)``; int8 through ``onnxruntime.quantization``.

Schemes (one registered handler each, best first; see :mod:`adaptc.quant.registry`):
- fp32: the dynamo exporter (opset 18+), dynamic batch dimension.
- int8_static_per_channel / int8_static_per_tensor: ``quant_pre_process`` then ``quantize_static``
  (QDQ format, int8 weights symmetric, int8 activations asymmetric, ranges calibrated on task data by one of
  onnxruntime's calibrators: MinMax unless ``request.ptq.calibration`` says otherwise; the nodes of
  ``request.ptq.float_layers`` excluded; see :mod:`.onnx_ptq`). Transformer graphs quantize only MatMul /
  Gemm / Gather, with uint8 activations (see ``_int8_static``).
- int8_dynamic: ``quantize_dynamic`` (int8 weights per channel, activations quantized at run time). On
  CNNs ORT runs this as ConvInteger, which is much slower than fp32 on CPU: the build's guardrail catches it.
- fp16: float16 weights and arithmetic with float32 inputs/outputs kept (``keep_io_types``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
import torch
from torch import nn

from ..core.io import atomic_path, working_directory
from ..core.schemes import get_scheme
from ..errors import ExportError
from ..quant.registry import check_calibration, handler_for, quantizer, register_calibrations
from .base import ExportedFile, Exporter, ExportRequest, float_layers_of, ptq_samples
from .onnx_ptq import DEFAULT_CALIBRATION, ONNX_CALIBRATIONS, RANGE_ESTIMATORS, calibrate, float_nodes


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print a lot (progress, warnings about unsupported hints); keep adaptc's output readable."""
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "root", "torch._dynamo")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)


def _unsupported_op(err: BaseException) -> str | None:
    """Best effort: the op a converter choked on, from its error message."""
    import re

    text = str(err)
    for pat in (
        r"aten[.:]{1,2}([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)",
        r"operator[: ]+'?([A-Za-z0-9_.:]+)'?",
        r"op(?:erator)? type[: ]+'?([A-Za-z0-9_.:]+)'?",
    ):
        m = re.search(pat, text)
        if m:
            return m.group(0) if pat.startswith("aten") else m.group(1)
    return None


def export_onnx_fp32(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...] | torch.Tensor,
    dest: Path,
    input_names: tuple[str, ...] | None = None,
    output_names: tuple[str, ...] | None = None,
    dynamic_batch: bool = True,
) -> Path:
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    input_names = tuple(input_names or [f"input_{i}" for i in range(len(example_inputs))])
    output_names = tuple(output_names or ("output",))
    dynamic_axes = {n: {0: "batch"} for n in (*input_names, *output_names)} if dynamic_batch else None
    model = model.eval()
    with atomic_path(dest) as tmp:
        try:
            with _quiet(), torch.no_grad():
                torch.onnx.export(
                    model,
                    tuple(example_inputs),
                    str(tmp),
                    dynamo=True,
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=dynamic_axes,
                    external_data=False,
                )
        except Exception as e:
            op = _unsupported_op(e)
            what = f" (op {op})" if op else ""
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ExportError(f"onnx: the model cannot be exported{what}: {first}") from e
    return dest


def _onnx_input_dtypes(m: onnx.ModelProto) -> dict[str, np.dtype]:
    inits = {i.name for i in m.graph.initializer}
    return {
        i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
        for i in m.graph.input
        if i.name not in inits
    }


def _preprocess(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import quant_pre_process

    src, dst = Path(src).resolve(), Path(dst).resolve()
    # in the destination's (temporary) folder: when its symbolic shape inference is incomplete, onnxruntime
    # dumps sym_shape_infer_temp.onnx and a <uuid>.data file into the working directory (the user's)
    with _quiet(), working_directory(dst.parent):
        try:
            quant_pre_process(str(src), str(dst))
        except Exception:
            # Symbolic shape inference fails on some transformer graphs (_infer_Expand) and on LSTMs: skip it there.
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


_TRANSFORMER_OPS = ("MatMul", "Gemm", "Gather")


def _looks_like_transformer(m: onnx.ModelProto) -> bool:
    """An attention softmax, or a Gather from a weight (an embedding table), in the graph."""
    inits = {i.name for i in m.graph.initializer}
    return any(
        n.op_type == "Softmax" or (n.op_type == "Gather" and n.input and n.input[0] in inits) for n in m.graph.node
    )


class OnnxJob(NamedTuple):
    """What a scheme's handler gets (one handler per scheme, best first; each returns the file it wrote)."""

    exporter: OnnxExporter
    request: ExportRequest
    scheme: str
    #: the model's fp32 file (the build's, or one exported for this call)
    fp32: Path
    #: a temporary folder for intermediate files
    work: Path
    dest: Path
    #: the recipe so far (the converter), completed by the handler
    recipe: dict[str, Any]


def _ort_quantizer() -> str:
    import onnxruntime

    return f"onnxruntime.quantization {onnxruntime.__version__}"


register_calibrations("onnx", *ONNX_CALIBRATIONS, default="minmax")


# revision 1: a graph's LSTM weights are int8 too (dynamic quantization after the static pass)
@quantizer("onnx", "int8_static_per_channel", "int8_static_per_tensor", revision=1)
def _int8_static(job: OnnxJob) -> ExportedFile:
    exporter, request, scheme, fp32, work, dest, recipe = job
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if request.calibration is None:
        raise ExportError(f"onnx: {scheme} needs calibration data (the task's train split)")
    check_calibration("onnx", request.ptq.calibration)
    layers = float_layers_of(request, "onnx")
    recipe["quantizer"] = _ort_quantizer()
    pre = work / "pre.onnx"
    _preprocess(fp32, pre)
    cal = request.calibration.subset(slice(0, ptq_samples(request, exporter.calibration_samples)))
    pre_model = onnx.load(str(pre), load_external_data=False)  # read once: inputs, graph kind, node names
    dtypes = _onnx_input_dtypes(pre_model)
    names = list(dtypes)
    arrays = tuple(a.astype(dtypes[n]) for n, a in zip(names, cal.numpy_inputs()))
    per_channel = get_scheme(scheme).per_channel
    # Transformers (attention softmax or an embedding lookup in the graph): quantizing every op also
    # quantizes the additive attention mask and the softmax and ruins accuracy (docstrings teacher: 0.61
    # against 0.76 in torch). Only the matrix products and the embedding lookup are quantized there
    # (0.762), with uint8 activations, which ORT runs 2x faster than int8 ones on these graphs.
    transformer = _looks_like_transformer(pre_model)
    kw: dict[str, Any] = {}
    act = QuantType.QInt8
    if transformer:
        kw["op_types_to_quantize"] = list(_TRANSFORMER_OPS)
        act = QuantType.QUInt8
    # mapped on the exported file: onnxruntime's pre-processing may drop the nodes' metadata but keeps their names
    pre_names = {n.name for n in pre_model.graph.node}
    excluded = [n for n in float_nodes(fp32, request.model, tuple(request.example_inputs), layers) if n in pre_names]
    if excluded:
        kw["nodes_to_exclude"] = excluded
    method = request.ptq.calibration or DEFAULT_CALIBRATION
    with _quiet():
        ort_method, cache = calibrate(pre, work, names, arrays, method, kw.get("op_types_to_quantize"))
    lstm = any(n.op_type == "LSTM" for n in pre_model.graph.node)
    # an LSTM graph gets a dynamic pass after the static one, from this intermediate file
    static_out = work / "static.onnx" if lstm else None
    with atomic_path(dest) as tmp, _quiet():
        target = static_out or tmp
        quantize_static(
            str(pre),
            str(target),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=act,
            weight_type=QuantType.QInt8,
            calibrate_method=ort_method,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            calibration_cache_path=str(cache),
            **kw,
        )
        if excluded:
            _float_barriers(target, set(excluded))
        if static_out is not None:
            # QDQ has no LSTM: its weights would stay float32 (the text recogniser's int8 file: 10.1 MB of 15.3).
            # onnxruntime's dynamic quantization makes them int8 (DynamicQuantizeLSTM: activations quantized at
            # run time), on the static file (3.9 MB; 98% per-step agreement with it on random inputs)
            from onnxruntime.quantization import quantize_dynamic

            quantize_dynamic(str(static_out), str(tmp), op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
    recipe.update(
        method="quantize_static",
        format="QDQ",
        per_channel=per_channel,
        activations=f"{'QUInt8' if transformer else 'QInt8'} asymmetric",
        weights="QInt8 symmetric",
        calibration=f"{method} over {len(cal)} train samples",
        range_estimator=RANGE_ESTIMATORS[method],
    )
    if transformer:
        recipe["op_types_to_quantize"] = list(_TRANSFORMER_OPS)
    if lstm:
        recipe["lstm"] = "int8 weights through quantize_dynamic(op_types_to_quantize=['LSTM']): DynamicQuantizeLSTM"
    if layers:
        recipe.update(float_layers=list(layers), float_nodes=len(excluded))
    return ExportedFile(dest, exporter.format, scheme, recipe)


def _float_barriers(path: Path, float_nodes: set[str]) -> int:
    """Keep float layers float when onnxruntime loads the file: its ``WeightBiasQuantization`` optimizer
    (onnxruntime >= 1.21) quantizes the float32 weight of a Conv / ConvTranspose / Gemm whose input comes from a
    per-tensor DequantizeLinear and whose output leads to a QuantizeLinear, which is exactly what
    ``nodes_to_exclude`` leaves in a QDQ graph (measured: the kept layer ran int8 and the file kept the 19-point
    drop it was meant to remove). A ``Max(x, x)`` between the DequantizeLinear and the layer (an identity no
    optimizer removes or propagates through) makes the layer's input a float tensor. Returns how many were put."""
    from onnx import helper

    m = onnx.load(str(path))
    producer = {o: n for n in m.graph.node for o in n.output}
    nodes = list(m.graph.node)
    added = 0
    for n in nodes:
        if n.name not in float_nodes or n.op_type not in ("Conv", "ConvTranspose", "Gemm") or not n.input:
            continue
        src = producer.get(n.input[0])
        if src is None or src.op_type != "DequantizeLinear":
            continue
        barrier = f"{n.input[0]}_float_barrier_{added}"
        idx = list(m.graph.node).index(n)
        m.graph.node.insert(
            idx, helper.make_node("Max", [n.input[0], n.input[0]], [barrier], name=f"{n.name}_float_barrier")
        )
        n.input[0] = barrier
        added += 1
    if added:
        onnx.save(m, str(path))
    return added


@quantizer("onnx", "int8_dynamic")
def _int8_dynamic(job: OnnxJob) -> ExportedFile:
    exporter, request, scheme, fp32, work, dest, recipe = job
    from onnxruntime.quantization import QuantType, quantize_dynamic

    recipe["quantizer"] = _ort_quantizer()
    pre = work / "pre.onnx"
    _preprocess(fp32, pre)
    with atomic_path(dest) as tmp, _quiet():
        quantize_dynamic(str(pre), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
    recipe.update(method="quantize_dynamic", per_channel=True, weight_type="QInt8")
    return ExportedFile(dest, exporter.format, scheme, recipe)


@quantizer("onnx", "fp16")
def _fp16(job: OnnxJob) -> ExportedFile:
    exporter, request, scheme, fp32, work, dest, recipe = job
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet():
        m16 = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    with atomic_path(dest) as tmp:
        onnx.save(m16, str(tmp))
    recipe["quantizer"] = "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)"
    return ExportedFile(dest, exporter.format, scheme, recipe)


@quantizer("onnx", "fp32")
def _fp32(job: OnnxJob) -> ExportedFile:
    exporter, request, scheme, fp32, work, dest, recipe = job
    with atomic_path(dest) as tmp:
        tmp.write_bytes(fp32.read_bytes())
    return ExportedFile(dest, exporter.format, scheme, recipe)


class OnnxExporter(Exporter):
    format = "onnx"

    #: calibration samples used for static int8 unless ``request.ptq.samples`` says (more adds time, not
    #: accuracy, beyond a few hundred)
    calibration_samples = 512

    def export(self, request: ExportRequest, scheme: str, dest: Path) -> ExportedFile:
        handler = handler_for(self.format, scheme)
        import onnxruntime  # noqa: F401  (needed by every scheme: fail early, before exporting, without it)

        recipe: dict[str, Any] = {"converter": f"torch.onnx.export(dynamo=True) torch {torch.__version__}"}
        with tempfile.TemporaryDirectory(prefix="adaptc-onnx-") as d:
            fp32 = request.fp32_artifact
            # an equalized model is not the one the build's fp32 file was exported from: static int8 starts
            # from the request's model then
            stale = request.ptq.equalize and get_scheme(scheme).needs_calibration
            if fp32 is None or not Path(fp32).is_file() or stale:
                fp32 = Path(d) / "fp32.onnx"
                export_onnx_fp32(request.model, request.example_inputs, fp32, request.input_names, request.output_names)
            return handler(OnnxJob(self, request, scheme, Path(fp32), Path(d), dest, recipe))

    def describe(self, path: Path) -> dict[str, Any]:
        m = onnx.load(str(path))
        inits = {i.name for i in m.graph.initializer}
        dtype_bytes: Counter[str] = Counter()
        for t in m.graph.initializer:
            arr_bytes = len(t.raw_data) if t.HasField("raw_data") else onnx.numpy_helper.to_array(t).nbytes
            dtype_bytes[onnx.TensorProto.DataType.Name(t.data_type).lower()] += arr_bytes

        def io_desc(vs: Any) -> list[dict[str, Any]]:
            out = []
            for v in vs:
                if v.name in inits:
                    continue
                tt = v.type.tensor_type
                dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
                out.append(
                    {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(tt.elem_type).lower(), "shape": dims}
                )
            return out

        # embedding tables: initializers that are the data input of a Gather (directly or through a
        # DequantizeLinear), reported apart because they dominate small text models
        init_bytes = {
            t.name: (len(t.raw_data) if t.HasField("raw_data") else onnx.numpy_helper.to_array(t).nbytes)
            for t in m.graph.initializer
        }
        producer = {o: n for n in m.graph.node for o in n.output}
        emb: set[str] = set()
        for n in m.graph.node:
            if n.op_type == "Gather" and n.input:
                src = n.input[0]
                if src in producer and producer[src].op_type == "DequantizeLinear":
                    emb.add(producer[src].input[0])
                elif src in init_bytes:
                    emb.add(src)
        emb_bytes = sum(init_bytes.get(e, 0) for e in emb)
        return {
            "opset": max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=None),
            "op_counts": dict(Counter(n.op_type for n in m.graph.node)),
            "initializer_bytes_by_dtype": dict(dtype_bytes),
            "embedding_bytes": emb_bytes,
            "weight_bytes_excluding_embeddings": sum(init_bytes.values()) - emb_bytes,
            "inputs": io_desc(m.graph.input),
            "outputs": io_desc(m.graph.output),
        }
