"""The MIL program of a saved ``.mlpackage``, read without CoreML (works on Linux: no model load), and its
structure checked against the torch model: what :class:`adaptc.exporters.coreml.CoreMLExporter` reports
(``describe``) and verifies (``verify``) where CoreML prediction is not available.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.schemes import SCHEMES
from ._capture import captured_output

WEIGHT_FILE = Path("Data/com.apple.CoreML/weights/weight.bin")
#: coremltools' default: smaller weights are not quantized by linear_quantize_weights
WEIGHT_THRESHOLD = 2048
_DTYPE_SIZE = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int8": 1,
    "uint8": 1,
    "int32": 4,
    "int16": 2,
    "uint16": 2,
    "int4": 0.5,
    "uint4": 0.5,
    "bool": 1,
    "int64": 8,
    "float64": 8,
}
#: MIL ops that pass a weight through unchanged in kind (a weight behind them is still that weight)
_PASS_THROUGH = {"cast", "dequantize", "transpose", "reshape", "expand_dims", "squeeze"}
_WEIGHT_INPUT = {"conv": "weight", "conv_transpose": "weight", "linear": "weight", "gather": "x"}
#: an lstm op's weight matrices (the bidirectional op holds both directions'; biases are not counted)
_LSTM_WEIGHTS = ("weight_ih", "weight_hh", "weight_ih_back", "weight_hh_back")


# -- reading the MIL program of a saved .mlpackage (works on Linux: no model load) -----------------------
def _load_spec(path: Path) -> Any:
    import coremltools as ct

    with captured_output():
        return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def _tensor_info(value_type: Any) -> tuple[str, int] | None:
    from coremltools.proto import MIL_pb2

    if not value_type.HasField("tensorType"):
        return None
    tt = value_type.tensorType
    dt = MIL_pb2.DataType.Name(tt.dataType).lower()
    n = 1
    for d in tt.dimensions:
        if d.HasField("constant"):
            n *= int(d.constant.size)
    return dt, n


def describe_mlpackage(path: str | Path) -> dict[str, Any]:
    """Op counts, weights per dtype (elements and bytes) and per layer type, inputs/outputs of an .mlpackage."""
    path = Path(path)
    spec = _load_spec(path)  # imports coremltools quietly
    from coremltools.proto import FeatureTypes_pb2

    ops: Counter[str] = Counter()
    producers: dict[str, Any] = {}
    all_ops: list[Any] = []

    def walk(block: Any) -> None:
        for op in block.operations:
            ops[op.type] += 1
            all_ops.append(op)
            for o in op.outputs:
                producers[o.name] = op
            for b in op.blocks:
                walk(b)

    for fn in spec.mlProgram.functions.values():
        for blk in fn.block_specializations.values():
            walk(blk)

    # stored weights: blob-file constants (const ``val`` and the constexpr_* payloads)
    weight_elems: Counter[str] = Counter()
    for op in all_ops:
        for name, attr in op.attributes.items():
            if name == "name" or not attr.HasField("blobFileValue"):
                continue
            info = _tensor_info(attr.type)
            if info:
                weight_elems[info[0]] += info[1]

    def weight_of(var: str, depth: int = 0) -> tuple[str, int] | None:
        """(stored dtype, elements) of the weight behind ``var``: through casts and dequantize ops."""
        op = producers.get(var)
        if op is None or depth > 4:
            return None
        if op.type == "const":
            attr = op.attributes.get("val")
            return _tensor_info(attr.type) if attr is not None else None
        if op.type.startswith("constexpr_"):
            for key in ("quantized_data", "data", "indices", "source_val"):
                if key in op.attributes:
                    return _tensor_info(op.attributes[key].type)
            for key in ("data", "quantized_data"):
                if key in op.inputs and op.inputs[key].arguments:
                    return weight_of(op.inputs[key].arguments[0].name, depth + 1)
            return None
        if op.type in _PASS_THROUGH:
            src = op.inputs.get("x") or op.inputs.get("input")
            if src is not None and src.arguments and src.arguments[0].HasField("name"):
                return weight_of(src.arguments[0].name, depth + 1)
        return None

    layer_weights: dict[str, dict[str, Any]] = {}
    matmul_with_weight = 0

    def input_weight(op: Any, key: str | None) -> tuple[str, int] | None:
        if key is None or key not in op.inputs or not op.inputs[key].arguments:
            return None
        arg = op.inputs[key].arguments[0]
        return weight_of(arg.name) if arg.HasField("name") else None

    for op in all_ops:
        if op.type == "lstm":
            found = [w for w in (input_weight(op, k) for k in _LSTM_WEIGHTS) if w is not None]
        else:
            keys = ("y", "x") if op.type == "matmul" else (_WEIGHT_INPUT.get(op.type),)
            found = next(([w] for w in (input_weight(op, k) for k in keys) if w is not None), [])
        if not found:
            continue
        # a matmul with a constant operand is a linear layer (what aten.linear becomes under the default
        # decompositions, which models with Hugging Face mask code need)
        matmul_with_weight += op.type == "matmul"
        kind = "embedding" if op.type == "gather" else "linear" if op.type == "matmul" else op.type
        d = layer_weights.setdefault(kind, {"layers": 0, "elements": 0, "elements_by_dtype": Counter()})
        d["layers"] += 1
        for dtype, n in found:
            d["elements"] += n
            d["elements_by_dtype"][dtype] += n
    for d in layer_weights.values():
        d["elements_by_dtype"] = dict(d["elements_by_dtype"])

    def io(features: Any) -> list[dict[str, Any]]:
        res = []
        for f in features:
            t = f.type
            if t.HasField("multiArrayType"):
                dt = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(t.multiArrayType.dataType).lower()
                res.append({"name": f.name, "dtype": dt, "shape": [int(s) for s in t.multiArrayType.shape]})
            else:
                res.append({"name": f.name, "dtype": t.WhichOneof("Type")})
        return res

    wfile = path / WEIGHT_FILE
    emb = layer_weights.get("embedding", {}).get("elements_by_dtype", {})
    emb_bytes = sum(n * _DTYPE_SIZE.get(dt, 4) for dt, n in emb.items())
    wbytes = {dt: int(n * _DTYPE_SIZE.get(dt, 4)) for dt, n in weight_elems.items()}
    return {
        "specification_version": int(spec.specificationVersion),
        "opset": sorted({fn.opset for fn in spec.mlProgram.functions.values()}),
        "op_counts": dict(ops),
        "compute_op_counts": {k: v for k, v in ops.items() if k != "const" and not k.startswith("constexpr_")},
        "weight_elements_by_dtype": dict(weight_elems),
        "weight_bytes_by_dtype": wbytes,
        "weight_file_bytes": wfile.stat().st_size if wfile.is_file() else 0,
        "layer_weights": layer_weights,
        #: matmul ops with a constant operand, counted as linear layers (in layer_weights["linear"] too)
        "matmul_with_weight": matmul_with_weight,
        "embedding_bytes": int(emb_bytes),
        "weight_bytes_excluding_embeddings": int(sum(wbytes.values()) - emb_bytes),
        "inputs": io(spec.description.input),
        "outputs": io(spec.description.output),
    }


# -- the torch side of the structure check ---------------------------------------------------------------
_TORCH_KINDS = {
    "conv": ("aten.conv1d", "aten.conv2d", "aten.conv3d", "aten.convolution", "aten._convolution"),
    "linear": ("aten.linear", "aten.addmm"),
    "matmul": ("aten.matmul", "aten.bmm", "aten.mm"),
}


def _weight_kind(m: nn.Module) -> str | None:
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "conv"
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, nn.LSTM):
        return "lstm"
    return "embedding" if isinstance(m, nn.Embedding) else None


def _weight_tensors(m: nn.Module) -> list[int]:
    """Elements of each of a layer's weight matrices (an LSTM's input and hidden weights of every layer and
    direction; its biases are not counted)."""
    if isinstance(m, nn.LSTM):
        return [p.numel() for n, p in m.named_parameters(recurse=False) if n.startswith("weight_")]
    return [int(m.weight.numel())]  # type: ignore[operator]


def float_layer_weights(model: nn.Module, layers: tuple[str, ...]) -> dict[str, int]:
    """Weight elements per layer type (conv / linear) of the modules under ``layers`` (qualified names): what a
    W8A8 program keeps in float16 for the float layers of its PTQ config."""
    mods = dict(model.named_modules())
    seen: set[int] = set()
    out: Counter[str] = Counter()
    for name in layers:
        for m in mods[name].modules() if name in mods else ():
            kind = _weight_kind(m)
            if id(m) not in seen and kind in ("conv", "linear"):
                seen.add(id(m))
                out[kind] += sum(_weight_tensors(m))
    return dict(out)


def torch_structure(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """Layer counts (from the exported graph) and weight elements per layer type (from the modules)."""
    with torch.no_grad():
        ep = torch.export.export(model.eval(), tuple(example_inputs))
    counts: Counter[str] = Counter()
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        name = str(n.target)
        for kind, prefixes in _TORCH_KINDS.items():
            if any(name == p or name.startswith(p + ".") for p in prefixes):
                counts[kind] += 1
    weights: Counter[str] = Counter()
    sizes: dict[str, list[int]] = {}
    for m in model.modules():
        wkind = _weight_kind(m)
        if wkind is not None:
            tensors = _weight_tensors(m)
            weights[wkind] += sum(tensors)
            sizes.setdefault(wkind, []).extend(tensors)
        if isinstance(m, nn.LSTM):
            counts["lstm"] += m.num_layers  # one MIL lstm op per layer, both directions in one
    return {
        "op_counts": dict(counts),
        "weight_elements": dict(weights),
        "weight_sizes": sizes,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _expected_weight_dtype(scheme: str) -> str:
    return {"fp32": "float32", "fp16": "float16"}.get(scheme, "int8")


def structure_check(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    described: dict[str, Any],
    scheme: str,
    float_layers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Compare the MIL program with the torch model: what can be checked on a host without CoreML.

    - conv / linear / matmul op counts equal the torch graph's (BatchNorm is folded into conv, so it is not
      counted; a MIL matmul with a constant operand counts as a linear layer), lstm ops one per LSTM layer;
    - weight elements of conv, linear and LSTM layers equal the torch modules' (exactly: nothing dropped or
      duplicated, e.g. an LSTM unrolled per time step);
    - those weights are stored in the scheme's dtype (fp32: float32, fp16: float16, W8A8: int8; int8 weights:
      int8 for every layer over coremltools' 2,048-element threshold, float16 below it; W8A8 with
      ``float_layers``: those layers' weights float16, the others int8);
    - W8A8 programs quantize activations (``quantize`` and ``dequantize`` ops present).
    """
    ts = torch_structure(model, example_inputs)
    mil_ops = described.get("compute_op_counts", {})
    lw = described.get("layer_weights", {})
    checks: list[dict[str, Any]] = []

    def add(what: str, expected: Any, found: Any, ok: bool) -> None:
        checks.append({"check": what, "expected": expected, "found": found, "ok": bool(ok)})

    as_matmul = described.get("matmul_with_weight", 0)
    for kind in ("conv", "linear", "matmul", "lstm"):
        exp = ts["op_counts"].get(kind, 0)
        found = mil_ops.get(kind, 0) + (mil_ops.get("conv_transpose", 0) if kind == "conv" else 0)
        found += as_matmul if kind == "linear" else -as_matmul if kind == "matmul" else 0
        if exp or found:
            add(f"{kind} ops", exp, found, exp == found)
    for kind in ("conv", "linear", "lstm"):
        exp = ts["weight_elements"].get(kind, 0)
        found = lw.get(kind, {}).get("elements", 0)
        if exp or found:
            add(f"{kind} weight elements", exp, found, exp == found)
    want = _expected_weight_dtype(scheme)
    s = SCHEMES.get(scheme)
    weight_only = s is not None and s.weights == "int8" and s.activations != "int8"  # int8 weights, float arithmetic
    w8a8 = s is not None and s.weights == s.activations == "int8"
    kept = float_layer_weights(model, float_layers) if w8a8 else {}
    for kind in ("conv", "linear", "lstm"):
        by = lw.get(kind, {}).get("elements_by_dtype", {})
        total = sum(by.values())
        if not total:
            continue
        if weight_only:
            # linear_quantize_weights leaves tensors of at most WEIGHT_THRESHOLD elements in float16
            exp = sum(n for n in ts["weight_sizes"].get(kind, []) if n > WEIGHT_THRESHOLD)
            add(
                f"{kind} weight elements stored as int8 (layers over {WEIGHT_THRESHOLD} elements)",
                exp,
                by.get("int8", 0),
                by.get("int8", 0) == exp,
            )
            add(
                f"{kind} weight elements stored as float16 (smaller layers)",
                total - exp,
                by.get("float16", 0),
                by.get("float16", 0) == total - exp,
            )
        elif w8a8 and kept.get(kind):
            n = kept[kind]
            add(f"{kind} weight elements stored as int8", total - n, by.get("int8", 0), by.get("int8", 0) == total - n)
            add(f"{kind} weight elements of float layers stored as float16", n, by.get("float16", 0),
                by.get("float16", 0) == n)  # fmt: skip
        else:
            add(f"{kind} weight elements stored as {want}", total, by.get(want, 0), by.get(want, 0) == total)
    if w8a8:
        q, dq = mil_ops.get("quantize", 0), mil_ops.get("dequantize", 0)
        add("activation quantize/dequantize ops (W8A8)", "> 0", {"quantize": q, "dequantize": dq}, q > 0 and dq > 0)
    if "embedding" in ts["weight_elements"]:
        add(
            "embedding table elements (informative: constant lookups are folded)",
            ts["weight_elements"]["embedding"],
            lw.get("embedding", {}).get("elements", 0),
            True,
        )
    failed = [c["check"] for c in checks if not c["ok"]]
    return {
        "method": "MIL program read with coremltools (skip_model_load=True) against torch.export of the model",
        "passed": not failed,
        "failed": failed,
        "checks": checks,
        "torch": ts,
    }
