"""TFLite exporter through litert-torch (no TensorFlow); run and measured with ``ai_edge_litert``.

Schemes (one registered handler each, best first, see :mod:`adaptc.quant.registry`; docs/toolchain.md has the
verified recipes):
- fp32: ``litert_torch.convert(model, example_inputs)``. Token ids (int64 in torch) become int32 inputs.
- int8_static_per_channel / int8_static_per_tensor: PT2E (torchao ``prepare_pt2e`` / ``convert_pt2e`` with
  litert-torch's ``PT2EQuantizer``) calibrated on the task's train split, converted with
  ``QuantConfig(pt2e_quantizer=...)``; int8 in and out for image models. ``request.ptq`` picks the range
  estimator (the PT2E observers of :mod:`adaptc.quant.observers`), the number of calibration samples and the
  modules kept in float (float32 CONV_2D / FULLY_CONNECTED with QUANTIZE / DEQUANTIZE at their borders). PT2E leaves embedding tables in
  float32 (its dynamic mode, which would not, writes files that fail to load), so the converted file's
  EMBEDDING_LOOKUP tables are then made int8 by ai-edge-quantizer (weight-only, symmetric, one scale per row,
  dequantized by the lookup kernel): a text model's word table is most of its weights (recipe revision 1).
- int8_dynamic: dynamic-range int8 with ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe on the fp32 file
  (int8 weights, embedding tables included; activations quantized at run time). Used instead of PT2E's
  dynamic mode, whose files fail to load when the model has an ``nn.Embedding`` (EMBEDDING_LOOKUP with a
  non-zero zero point).
- int8_weight_only: ai-edge-quantizer ``weight_only_wi8_afp32`` (int8 weights, float arithmetic).
- fp16: ai-edge-quantizer float casting of FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D / EMBEDDING_LOOKUP
  weights to float16 (the classic "float16 quantization": half the size; CPU kernels compute in fp32,
  GPU delegates in fp16).

Files are converted at the example's batch size (1); the LiteRT runner feeds larger splits row by row. The
activations between ops get short names (:mod:`adaptc.exporters.tflite_names`; litert-torch names them after
their module path); inputs, outputs and weights keep theirs (every scheme's recipe revision bumped for it).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..core.io import atomic_path, atomic_write_bytes
from ..core.schemes import get_scheme
from ..errors import ExportError
from ..quant.pt2e import PT2E_CALIBRATIONS
from ..quant.registry import check_calibration, handler_for, quantizer, register_calibrations
from ._capture import captured_output, first_line, unsupported_op
from .base import ExportedFile, Exporter, ExportRequest, float_layers_of, ptq_samples
from .tflite_names import compact_tensor_names

#: ops whose constant inputs are embedding tables (reported apart: they dominate small text models)
_EMBEDDING_OPS = {"EMBEDDING_LOOKUP", "GATHER"}
#: ops that only pass a constant on (a dequantized weight is still that weight)
_PASS_THROUGH = {"DEQUANTIZE"}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for d in ("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torchao"):
        with contextlib.suppress(Exception):
            out[d] = version(d)
    return out


def _convert_error(scheme: str, err: BaseException, log: str = "") -> ExportError:
    op = unsupported_op(err) or (unsupported_op(log) if log else None)
    what = f" (op {op})" if op else ""
    return ExportError(f"tflite: the model cannot be converted for {scheme}{what}: {first_line(err)}")


def convert_fp32(request: ExportRequest, dest: Path) -> Path:
    model = request.model.eval()
    with atomic_path(dest) as tmp:
        cap = None
        try:
            with captured_output() as cap, torch.no_grad():
                import litert_torch

                litert_torch.convert(model, tuple(request.example_inputs)).export(str(tmp))
            compact_tensor_names(tmp)
        except Exception as e:
            raise _convert_error("fp32", e, cap.text if cap else "") from e
    return dest


class TFLiteExporter(Exporter):
    format = "tflite"

    #: calibration samples for static int8 (one forward pass each) unless ``request.ptq.samples`` says
    calibration_samples = 256

    def export(self, request: ExportRequest, scheme: str, dest: Path) -> ExportedFile:
        handler = handler_for(self.format, scheme)
        v = _versions()
        recipe: dict[str, Any] = {"converter": f"litert-torch {v.get('litert-torch', '?')} (torch {torch.__version__})"}
        return handler(self, request, scheme, dest, recipe)

    def describe(self, path: Path) -> dict[str, Any]:
        return describe_tflite(path)


# -- one handler per scheme, best first: handler(exporter, request, scheme, dest, recipe) -------------------
register_calibrations("tflite", *PT2E_CALIBRATIONS, default="mse")


# revision 1: static int8 files quantize their embedding tables; 2: and the weights of recurrent layers; 3: short
# names for the activations (every tflite scheme's revision 1); 4: a conv + ReLU6's output observed after the clamp
@quantizer("tflite", "int8_static_per_channel", "int8_static_per_tensor", revision=4)
def _int8_static(
    exporter: TFLiteExporter, request: ExportRequest, scheme: str, dest: Path, recipe: dict[str, Any]
) -> ExportedFile:
    """PT2E static int8, converted with ``QuantConfig(pt2e_quantizer=...)``."""
    if request.calibration is None:
        raise ExportError(f"tflite: {scheme} needs calibration data (the task's train split)")
    check_calibration("tflite", request.ptq.calibration)
    float_layers = float_layers_of(request, "tflite")
    cap = None
    with atomic_path(dest) as tmp:
        try:
            with captured_output() as cap:
                import litert_torch
                from litert_torch.quantize.quant_config import QuantConfig

                from ..quant.pt2e import pt2e_quantize

                gm, q, qrecipe = pt2e_quantize(
                    request.model,
                    tuple(request.example_inputs),
                    request.calibration,
                    per_channel=get_scheme(scheme).per_channel,
                    keep_float=float_layers,
                    samples=ptq_samples(request, exporter.calibration_samples),
                    fold_quantize=False,
                    method=request.ptq.calibration,
                )
                with _strict_qdq() if float_layers else contextlib.nullcontext():
                    litert_torch.convert(
                        gm, tuple(request.example_inputs), quant_config=QuantConfig(pt2e_quantizer=q)
                    ).export(str(tmp))
                compact_tensor_names(tmp)  # before the passes below: their files keep buffers outside
                if _has_embedding(request.model):
                    qrecipe["embedding_tables"] = _int8_embedding_tables(tmp)
                if _has_recurrent(request.model) and not request.ptq.float_layers:
                    qrecipe["recurrent_layers"] = _int8_recurrent_weights(tmp)
        except ExportError:
            raise
        except Exception as e:
            raise _convert_error(scheme, e, cap.text if cap else "") from e
    qrecipe["method"] = "litert_torch.convert(quant_config=QuantConfig(pt2e_quantizer=...))"
    if float_layers:
        qrecipe["converter_qdq_mode"] = "strict (float layers kept: float32 in and out)"
    recipe.update(qrecipe)
    return ExportedFile(dest, exporter.format, scheme, recipe, [])


@contextlib.contextmanager
def _strict_qdq() -> Iterator[None]:
    """Convert in the LiteRT converter's strict QDQ mode. litert-torch converts a PT2E graph in the STATIC QDQ
    mode, where the converter also quantizes a float op lying between a DEQUANTIZE and a QUANTIZE, weights
    included: in a CNN, where the next layer quantizes its input, a conv PT2E kept in float comes out int8.
    In strict mode only what the graph's quantize / dequantize pairs say is quantized (the kept layer stays a
    float32 op with DEQUANTIZE / QUANTIZE at its borders; the file's input and output become float32, with a
    QUANTIZE / DEQUANTIZE of their own). litert-torch 0.10 has no option for it: its converter config is set
    on the way in, for this conversion only."""
    from litert_torch._convert import litert_converter

    api = litert_converter.converter_api_ext
    run = api.run_convert_to_tfl_passes
    if not hasattr(api.ConvertToTFLConfig(), "strict_qdq_mode"):
        raise ExportError("tflite: this LiteRT converter has no strict QDQ mode: layers cannot be kept in float")

    def strict(module: Any, pass_manager: Any, config: Any) -> Any:
        config.strict_qdq_mode = True
        return run(module, pass_manager, config)

    api.run_convert_to_tfl_passes = strict
    try:
        yield
    finally:
        api.run_convert_to_tfl_passes = run


#: configures an ai_edge_quantizer.Quantizer for a scheme and returns what the report says about it
AeqRecipe = Callable[[Any], dict[str, Any]]


def _on_fp32_file(configure: AeqRecipe) -> Callable[..., ExportedFile]:
    """The handler of a scheme made by ai-edge-quantizer from the fp32 file (converted first unless the request
    has one): ``configure(quantizer)`` loads the scheme's recipe into an ``ai_edge_quantizer.Quantizer`` of that
    file and returns what the report says about it."""

    def handler(
        exporter: TFLiteExporter, request: ExportRequest, scheme: str, dest: Path, recipe: dict[str, Any]
    ) -> ExportedFile:
        fp32 = request.fp32_artifact
        have_fp32 = fp32 is not None and Path(fp32).is_file()
        with tempfile.TemporaryDirectory(prefix="adaptc-tflite-") as d:
            if not have_fp32:
                fp32 = convert_fp32(request, Path(d) / "fp32.tflite")
            recipe.update(_aeq(Path(fp32), scheme, dest, configure))  # type: ignore[arg-type]
        return ExportedFile(dest, exporter.format, scheme, recipe, [])

    handler.__doc__ = configure.__doc__
    return handler


def _aeq(fp32: Path, scheme: str, dest: Path, configure: AeqRecipe) -> dict[str, Any]:
    v = _versions()
    cap = None
    try:
        with captured_output() as cap:
            from ai_edge_quantizer import quantizer as aeq

            qz = aeq.Quantizer(str(fp32))
            what = configure(qz)
            data = bytes(qz.quantize().quantized_model)
    except Exception as e:
        raise _convert_error(scheme, e, cap.text if cap else "") from e
    atomic_write_bytes(dest, data)
    what["quantizer"] = f"ai-edge-quantizer {v.get('ai-edge-quantizer', '?')} on the fp32 .tflite"
    return what


def _named_recipe(name: str, weights: str, activations: str) -> AeqRecipe:
    """One of ai-edge-quantizer's named recipes (``recipe.<name>()``), and what it does for the report."""

    def configure(qz: Any) -> dict[str, Any]:
        from ai_edge_quantizer import recipe

        qz.load_quantization_recipe(getattr(recipe, name)())
        return {"method": f"ai_edge_quantizer recipe {name}", "weights": weights, "activations": activations}

    configure.__doc__ = f"ai-edge-quantizer's ``{name}`` recipe."
    return configure


#: the schemes made by one of ai-edge-quantizer's named recipes: scheme -> (recipe, weights, activations)
_NAMED_RECIPES = {
    "int8_dynamic": (
        "dynamic_wi8_afp32",
        "int8 symmetric per channel (embedding tables included)",
        "float32, quantized to int8 at run time per input",
    ),
    "int8_weight_only": ("weight_only_wi8_afp32", "int8 symmetric per channel", "float32"),
}
for _scheme, _recipe in _NAMED_RECIPES.items():
    quantizer("tflite", _scheme, revision=1)(_on_fp32_file(_named_recipe(*_recipe)))


@quantizer("tflite", "fp16", revision=1)
@_on_fp32_file
def _fp16(qz: Any) -> dict[str, Any]:
    """ai-edge-quantizer FLOAT_CASTING of the weights of the ops below to float16."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer import quantizer as aeq

    ops = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP")
    for op in ops:
        qz.update_quantization_recipe(
            regex=".*",
            operation_name=getattr(qtyping.TFLOperationName, op),
            algorithm_key=aeq.AlgorithmName.FLOAT_CASTING,
            op_config=qtyping.OpQuantizationConfig(
                weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                compute_precision=qtyping.ComputePrecision.FLOAT,
                explicit_dequantize=True,
            ),
        )
    return {
        "method": "ai_edge_quantizer FLOAT_CASTING (float16 weights) on " + ", ".join(ops),
        "weights": "float16",
        "activations": "float32 on CPU kernels (float16 on GPU delegates)",
    }


@quantizer("tflite", "fp32", revision=1)
def _fp32(
    exporter: TFLiteExporter, request: ExportRequest, scheme: str, dest: Path, recipe: dict[str, Any]
) -> ExportedFile:
    """litert-torch's conversion (or the request's fp32 file, copied)."""
    fp32 = request.fp32_artifact
    have_fp32 = fp32 is not None and Path(fp32).is_file()
    if have_fp32 and fp32 is not None and Path(fp32).resolve() != dest.resolve():
        atomic_write_bytes(dest, Path(fp32).read_bytes())
    elif not have_fp32:
        convert_fp32(request, dest)
    return ExportedFile(dest, exporter.format, scheme, recipe)


def _int8_weights_after_pt2e(path: Path, op: str, compute: str) -> None:
    """Rewrite ``path`` with the float weights of every ``op`` (a ``qtyping.TFLOperationName``) in int8, symmetric,
    per channel (row), computed at ``compute`` (``INTEGER``: dequantized by the kernel or dynamic range); every
    other tensor stays as it is (ai-edge-quantizer leaves the PT2E file's quantized tensors unchanged)."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer import quantizer as aeq

    qz = aeq.Quantizer(str(path))
    qz.update_quantization_recipe(
        regex=".*",
        operation_name=getattr(qtyping.TFLOperationName, op),
        algorithm_key=aeq.AlgorithmName.MIN_MAX_UNIFORM_QUANT,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE
            ),
            compute_precision=getattr(qtyping.ComputePrecision, compute),
            explicit_dequantize=False,
        ),
    )
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")  # "already partially quantized": the PT2E tensors are meant to stay
        data = bytes(qz.quantize().quantized_model)
    Path(path).write_bytes(data)


def _int8_embedding_tables(path: Path) -> str:
    """``path`` with its EMBEDDING_LOOKUP tables in int8 (weight-only, one scale per row)."""
    _int8_weights_after_pt2e(path, "EMBEDDING_LOOKUP", "INTEGER")
    return (
        f"int8 weight-only, symmetric, one scale per row, dequantized by EMBEDDING_LOOKUP "
        f"(ai-edge-quantizer {_versions().get('ai-edge-quantizer', '?')}, after PT2E)"
    )


def _int8_recurrent_weights(path: Path) -> str:
    """``path`` with the float FULLY_CONNECTED weights left by PT2E in int8, dynamic range: the gates of an LSTM /
    GRU, which litert-torch unrolls into FULLY_CONNECTED ops PT2E does not annotate (the text recogniser's static
    int8 file kept 10.9 of its 15.6 MB in float32)."""
    _int8_weights_after_pt2e(path, "FULLY_CONNECTED", "INTEGER")
    return (
        "float FULLY_CONNECTED weights (unrolled LSTM / GRU gates) int8 dynamic range, symmetric per channel "
        f"(ai-edge-quantizer {_versions().get('ai-edge-quantizer', '?')}, after PT2E)"
    )


def _has_recurrent(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.LSTM | torch.nn.GRU | torch.nn.RNN) for m in model.modules())


def _has_embedding(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Embedding) for m in model.modules())


# -- structure of a .tflite file (flatbuffer), also for files the interpreter rejects ---------------------
def describe_tflite(path: str | Path) -> dict[str, Any]:
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def code_name(idx: int) -> str:
        oc = model.operatorCodes[idx]
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        if code == schema.BuiltinOperator.CUSTOM:
            return f"CUSTOM:{(oc.customCode or b'').decode(errors='replace')}"
        return op_names.get(code, str(code))

    sg = model.subgraphs[0]
    ops: Counter[str] = Counter()
    consumers: dict[int, list[tuple[str, int]]] = defaultdict(list)
    producers: dict[int, tuple[str, int]] = {}
    for k, op in enumerate(sg.operators):
        name = code_name(op.opcodeIndex)
        ops[name] += 1
        for i in op.inputs if op.inputs is not None else []:
            if i >= 0:
                consumers[int(i)].append((name, k))
        for o in op.outputs if op.outputs is not None else []:
            producers[int(o)] = (name, k)

    def final_consumers(ti: int, depth: int = 0) -> set[str]:
        out: set[str] = set()
        for name, k in consumers.get(ti, []):
            if name in _PASS_THROUGH and depth < 3:
                for o in sg.operators[k].outputs:
                    out |= final_consumers(int(o), depth + 1)
            else:
                out.add(name)
        return out

    by_dtype: Counter[str] = Counter()
    embedding_by_dtype: Counter[str] = Counter()
    for ti, t in enumerate(sg.tensors):
        b = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        nbytes = 0
        if b is not None:
            nbytes = len(b.data) if b.data is not None else int(b.size or 0)
        if not nbytes:
            continue
        dt = type_names.get(t.type, str(t.type))
        by_dtype[dt] += nbytes
        if final_consumers(ti) & _EMBEDDING_OPS:
            embedding_by_dtype[dt] += nbytes

    def io(indices: Any) -> list[dict[str, Any]]:
        res = []
        for i in indices if indices is not None else []:
            t = sg.tensors[int(i)]
            q = t.quantization
            entry: dict[str, Any] = {
                "name": (t.name or b"").decode(errors="replace") if isinstance(t.name, bytes) else t.name,
                "dtype": type_names.get(t.type, str(t.type)),
                "shape": [int(s) for s in (t.shape if t.shape is not None else [])],
            }
            if q is not None and q.scale is not None and len(q.scale):
                entry["quantization"] = {"scale": float(q.scale[0]), "zero_point": int(q.zeroPoint[0])}
            res.append(entry)
        return res

    total = sum(by_dtype.values())
    emb = sum(embedding_by_dtype.values())
    return {
        "file_bytes": len(buf),
        "op_counts": dict(ops),
        "buffer_bytes_by_dtype": dict(by_dtype),
        "embedding_bytes_by_dtype": dict(embedding_by_dtype),
        "embedding_bytes": emb,
        "weight_bytes_excluding_embeddings": total - emb,
        "inputs": io(sg.inputs),
        "outputs": io(sg.outputs),
    }
