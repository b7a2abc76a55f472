"""TFLite exporter through litert-torch (no TensorFlow); run and measured with ``ai_edge_litert``.

Schemes (docs/toolchain.md has the verified recipes):
- fp32: ``litert_torch.convert(model, example_inputs)``. Token ids (int64 in torch) become int32 inputs.
- int8_static_per_channel / int8_static_per_tensor: PT2E (torchao ``prepare_pt2e`` / ``convert_pt2e`` with
  litert-torch's ``PT2EQuantizer``) calibrated on the task's train split, converted with
  ``QuantConfig(pt2e_quantizer=...)``; int8 in and out for image models. PT2E leaves embedding tables in
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

Files are converted at the example's batch size (1); the LiteRT runner feeds larger splits row by row.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path, atomic_write_bytes
from ..errors import ExportError
from ._capture import captured_output, first_line, unsupported_op
from .base import ExportedFile, Exporter, ExportRequest, register_exporter

_STATIC = ("int8_static_per_channel", "int8_static_per_tensor")
#: ops whose constant inputs are embedding tables (reported apart: they dominate small text models)
_EMBEDDING_OPS = {"EMBEDDING_LOOKUP", "GATHER"}
#: ops that only pass a constant on (a dequantized weight is still that weight)
_PASS_THROUGH = {"DEQUANTIZE"}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for d in ("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torchao"):
        try:
            out[d] = version(d)
        except Exception:
            pass
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
        except Exception as e:
            raise _convert_error("fp32", e, cap.text if cap else "") from e
    return dest


@register_exporter
class TFLiteExporter(Exporter):
    format = "tflite"
    suffix = ".tflite"
    runtime = "tflite"

    #: calibration samples for static int8 (one forward pass each)
    calibration_samples = 256

    def revision(self, scheme: str) -> int:
        return 1 if scheme in _STATIC else 0  # 1: static int8 files quantize their embedding tables

    def schemes(self) -> tuple[str, ...]:
        return ("int8_static_per_channel", "int8_static_per_tensor", "int8_dynamic", "int8_weight_only", "fp16",
                "fp32")

    def export(self, request: ExportRequest, scheme: str, dest: Path) -> ExportedFile:
        if scheme not in self.schemes():
            raise ExportError(f"tflite: scheme {scheme!r} is not supported (supported: {', '.join(self.schemes())})")
        v = _versions()
        recipe: dict[str, Any] = {"converter": f"litert-torch {v.get('litert-torch', '?')} (torch {torch.__version__})"}
        notes: list[str] = []
        if scheme in _STATIC:
            recipe.update(self._static(request, scheme, dest))
            return ExportedFile(dest, self.format, scheme, recipe, notes)
        fp32 = request.fp32_artifact
        have_fp32 = fp32 is not None and Path(fp32).is_file()
        if scheme == "fp32":
            if have_fp32 and Path(fp32).resolve() != dest.resolve():
                atomic_write_bytes(dest, Path(fp32).read_bytes())
            elif not have_fp32:
                convert_fp32(request, dest)
            return ExportedFile(dest, self.format, scheme, recipe)
        with tempfile.TemporaryDirectory(prefix="adaptc-tflite-") as d:
            if not have_fp32:
                fp32 = convert_fp32(request, Path(d) / "fp32.tflite")
            recipe.update(self._aeq(Path(fp32), scheme, dest))
        return ExportedFile(dest, self.format, scheme, recipe, notes)

    # -- PT2E static int8 -------------------------------------------------------------------------------
    def _static(self, request: ExportRequest, scheme: str, dest: Path) -> dict[str, Any]:
        if request.calibration is None:
            raise ExportError(f"tflite: {scheme} needs calibration data (the task's train split)")
        cap = None
        with atomic_path(dest) as tmp:
            try:
                with captured_output() as cap:
                    import litert_torch
                    from litert_torch.quantize.quant_config import QuantConfig

                    from ._pt2e import pt2e_quantize

                    gm, q, recipe = pt2e_quantize(
                        request.model, tuple(request.example_inputs), request.calibration,
                        per_channel=scheme == "int8_static_per_channel", keep_float=request.keep_float,
                        samples=self.calibration_samples, fold_quantize=False,
                    )
                    litert_torch.convert(gm, tuple(request.example_inputs),
                                         quant_config=QuantConfig(pt2e_quantizer=q)).export(str(tmp))
                    if _has_embedding(request.model):
                        recipe["embedding_tables"] = _int8_embedding_tables(tmp)
            except ExportError:
                raise
            except Exception as e:
                raise _convert_error(scheme, e, cap.text if cap else "") from e
        recipe["method"] = "litert_torch.convert(quant_config=QuantConfig(pt2e_quantizer=...))"
        return recipe

    # -- ai-edge-quantizer recipes on the fp32 file ------------------------------------------------------
    def _aeq(self, fp32: Path, scheme: str, dest: Path) -> dict[str, Any]:
        v = _versions()
        cap = None
        try:
            with captured_output() as cap:
                from ai_edge_quantizer import qtyping, quantizer, recipe

                qz = quantizer.Quantizer(str(fp32))
                if scheme == "int8_dynamic":
                    qz.load_quantization_recipe(recipe.dynamic_wi8_afp32())
                    what = {"method": "ai_edge_quantizer recipe dynamic_wi8_afp32",
                            "weights": "int8 symmetric per channel (embedding tables included)",
                            "activations": "float32, quantized to int8 at run time per input"}
                elif scheme == "int8_weight_only":
                    qz.load_quantization_recipe(recipe.weight_only_wi8_afp32())
                    what = {"method": "ai_edge_quantizer recipe weight_only_wi8_afp32",
                            "weights": "int8 symmetric per channel", "activations": "float32"}
                else:  # fp16
                    ops = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP")
                    for op in ops:
                        qz.update_quantization_recipe(
                            regex=".*", operation_name=getattr(qtyping.TFLOperationName, op),
                            algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING,
                            op_config=qtyping.OpQuantizationConfig(
                                weight_tensor_config=qtyping.TensorQuantizationConfig(
                                    num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                                compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True),
                        )
                    what = {"method": "ai_edge_quantizer FLOAT_CASTING (float16 weights) on " + ", ".join(ops),
                            "weights": "float16", "activations": "float32 on CPU kernels (float16 on GPU delegates)"}
                data = bytes(qz.quantize().quantized_model)
        except Exception as e:
            raise _convert_error(scheme, e, cap.text if cap else "") from e
        atomic_write_bytes(dest, data)
        what["quantizer"] = f"ai-edge-quantizer {v.get('ai-edge-quantizer', '?')} on the fp32 .tflite"
        return what

    def describe(self, path: Path) -> dict[str, Any]:
        return describe_tflite(path)


def _int8_embedding_tables(path: Path) -> str:
    """Rewrite ``path`` with its EMBEDDING_LOOKUP tables in int8 (weight-only, symmetric, per row); every other
    tensor stays as it is (ai-edge-quantizer leaves the PT2E file's quantized tensors unchanged)."""
    from ai_edge_quantizer import qtyping, quantizer

    qz = quantizer.Quantizer(str(path))
    qz.update_quantization_recipe(
        regex=".*", operation_name=qtyping.TFLOperationName.EMBEDDING_LOOKUP,
        algorithm_key=quantizer.AlgorithmName.MIN_MAX_UNIFORM_QUANT,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE),
            compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "already partially quantized": the PT2E tensors are meant to stay
        data = bytes(qz.quantize().quantized_model)
    Path(path).write_bytes(data)
    return (f"int8 weight-only, symmetric, one scale per row, dequantized by EMBEDDING_LOOKUP "
            f"(ai-edge-quantizer {_versions().get('ai-edge-quantizer', '?')}, after PT2E)")


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
        for i in (op.inputs if op.inputs is not None else []):
            if i >= 0:
                consumers[int(i)].append((name, k))
        for o in (op.outputs if op.outputs is not None else []):
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
