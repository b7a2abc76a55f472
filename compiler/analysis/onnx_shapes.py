"""Concrete shapes for an ONNX graph before it is costed: dynamic dims fixed (:func:`_fix_batch`), files loaded
with a clear error (:func:`load_onnx`), and the shapes ONNX's own inference leaves unknown filled in
(:func:`_complete_shapes`: onnxruntime's symbolic inference, then one run on zero inputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _fix_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """Replace symbolic (dynamic) input dims by concrete values: dim 0 by ``batch``, others by 1."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        for k, d in enumerate(inp.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = batch if k == 0 else 1
    # Drop stale value_info so shape inference recomputes it for the concrete shapes.
    del m.graph.value_info[:]
    return m


def _shape_of(vi: onnx.ValueInfoProto) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            return None
    return dims


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load_onnx(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    from ..errors import ModelFileError

    if isinstance(model, onnx.ModelProto):
        return model
    p = Path(model)
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist")
    try:
        m = onnx.load(str(p))
    except Exception as e:
        raise ModelFileError(
            f"{p} is not a readable ONNX model: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ) from None
    if not m.graph.output:  # (an empty file parses as an empty ModelProto)
        raise ModelFileError(f"{p} is not an ONNX model: it has no graph outputs ({p.stat().st_size:,} bytes)")
    return m


def check_onnx_file(path: str | Path) -> None:
    """A user's .onnx file (adaptc analyze / predict / measure) read and checked by the ONNX checker: a damaged file
    that still parses (a flipped bit turns an attribute into bytes, a name into garbage) is refused in one line
    instead of failing deep in the analysis."""
    from ..errors import ModelFileError

    m = load_onnx(path)
    try:
        onnx.checker.check_model(m)
    except (onnx.checker.ValidationError, UnicodeDecodeError) as e:  # (a name that is not UTF-8 text)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path} is not a valid ONNX model: {type(e).__name__}: {first}") from None
    except ValueError:  # (a model over 2 GB is checked by path only: left to the runtime)
        pass
    g = m.graph
    names = [x for n in g.node for x in (n.name, n.op_type, *n.input, *n.output)]
    names += [v.name for v in (*g.input, *g.output, *g.initializer)]
    bad = next((x for x in names if isinstance(x, bytes)), None)
    if bad is not None:  # (protobuf hands a string field that is not UTF-8 over as bytes; the checker lets names be)
        raise ModelFileError(f"{path} is not a valid ONNX model: the name {bad!r} is not UTF-8 text")


def _missing_shapes(m: onnx.ModelProto) -> list[str]:
    known = {
        vi.name
        for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output)
        if _shape_of(vi) is not None
    }
    known |= {t.name for t in m.graph.initializer}
    return [o for n in m.graph.node if n.op_type != "Constant" for o in n.output if o and o not in known]


def _complete_shapes(m: onnx.ModelProto) -> onnx.ModelProto:
    """Fill shapes ONNX's inference leaves unknown (it does not evaluate e.g. Range over computed bounds, as in
    attention-mask construction). First onnxruntime's symbolic shape inference; then, for what is still
    unknown, one run of the graph in onnxruntime on zero-valued inputs with those tensors exposed as outputs
    (shapes only: the values are not used)."""
    if not _missing_shapes(m):
        return m
    try:
        import tempfile

        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        from ..core.io import working_directory

        # in a temporary folder: when its inference is incomplete (an LSTM), onnxruntime dumps
        # sym_shape_infer_temp.onnx and a <uuid>.data file into the working directory (the user's)
        with tempfile.TemporaryDirectory(prefix="adaptc-shapes-") as d, working_directory(d):
            m2 = SymbolicShapeInference.infer_shapes(m, auto_merge=True, guess_output_rank=True)
        if m2 is not None:
            m = m2
    except Exception:
        pass
    missing = _missing_shapes(m)
    if not missing:
        return m
    try:
        import numpy as np
        import onnxruntime as ort

        probe = onnx.ModelProto()
        probe.CopyFrom(m)
        del probe.graph.value_info[:]
        have = {o.name for o in probe.graph.output}
        for name in missing:
            if name not in have:
                probe.graph.output.append(helper.make_empty_tensor_value_info(name))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 4
        sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
        inits = {t.name for t in m.graph.initializer}
        feed = {}
        for i in m.graph.input:
            if i.name in inits:
                continue
            shape = _shape_of(i)
            if shape is None:
                return m
            feed[i.name] = np.zeros(shape, dtype=helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, feed)
        by_name = {vi.name: vi for vi in m.graph.value_info}
        for name, val in zip(names, values):
            if name in missing and isinstance(val, np.ndarray):
                vi = helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(val.dtype), list(val.shape))
                if name in by_name:
                    by_name[name].CopyFrom(vi)
                else:
                    m.graph.value_info.append(vi)
    except Exception:
        pass
    return m


def _converter_attrs(
    n: onnx.NodeProto,
    attrs: dict[str, Any],
    shapes: dict[str, list[int] | None],
    inits: dict[str, onnx.TensorProto],
    consts: dict[str, np.ndarray],
) -> dict[str, Any] | None:
    """See ``OpCost.attrs``: a convolution's or pooling's geometry, a Clip's bounds."""
    if n.op_type in ("Conv", "MaxPool", "AveragePool", "QLinearConv", "ConvInteger"):
        xs = shapes.get(n.input[0]) if n.input else None
        if not xs or len(xs) < 3:
            return None
        dims = len(xs) - 2
        ws = shapes.get(n.input[3] if n.op_type == "QLinearConv" else n.input[1]) if "Pool" not in n.op_type else None
        kernel = list(attrs.get("kernel_shape") or (ws[2:] if ws else []))
        auto_pad = attrs.get("auto_pad", "NOTSET")
        return {
            "in_hw": list(xs[2:]),
            "kernel": kernel,
            "strides": list(attrs.get("strides") or [1] * dims),
            "dilations": list(attrs.get("dilations") or [1] * dims),
            "pads": list(attrs.get("pads") or [0] * (2 * dims)),
            "auto_pad": auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad),
        }
    if n.op_type == "Transpose" and n.input and shapes.get(n.input[0]):
        return {"perm": list(attrs.get("perm") or []), "in_shape": list(shapes[n.input[0]] or [])}
    if n.op_type == "Clip":
        bound = {}
        for key, pos in (("min", 1), ("max", 2)):
            v = attrs.get(key)  # (before opset 11: attributes)
            x = n.input[pos] if len(n.input) > pos else ""
            arr = consts.get(x) if x in consts else (numpy_helper.to_array(inits[x]) if x in inits else None)
            if arr is not None and arr.size == 1:
                v = float(arr.reshape(-1)[0])
            bound[key] = v
        return bound
    return None
