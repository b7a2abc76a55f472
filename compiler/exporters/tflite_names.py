"""Short names for the intermediate tensors of a ``.tflite`` file that litert-torch wrote.

litert-torch names every tensor after the MLIR location of the op that makes it: the module path and op, often
100-200 bytes. On a graph of a few hundred ops that is noise; on a graph with thousands (an LSTM, which
litert-torch unrolls per time step) it is a share of the file users pay for on the device: EasyOCR's
recogniser holds 0.76 MB of names on its intermediate tensors, 5% of its fp32 file and 15% of its int8 one.
TensorFlow ships a tool for exactly this (``tensorflow/lite/tools/flatbuffer_utils.strip_strings``), which
blanks every string; it is not installable without TensorFlow, and blank names would also lose what a user reads
in a graph viewer. So this keeps the names that carry meaning (the graph's inputs and outputs, which its
signatures name too, and the constant tensors: a layer's weights, named after its module) and renames only the
activations between ops to ``t<index>``, through the flatbuffer schema's object API that LiteRT ships.

Only files whose buffers are inside the flatbuffer are rewritten (litert-torch's own output below 2 GB); a file
with buffers appended after it (ai-edge-quantizer's output, files over 2 GB) is left as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _has_data(model: Any, tensor: Any) -> bool:
    buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def compact_tensor_names(path: str | Path) -> dict[str, Any] | None:
    """Rename ``path``'s intermediate tensors to ``t<index>`` in place; what it saved, or None when it left the
    file alone (nothing to shorten, or buffers outside the flatbuffer)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    data = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    if any(getattr(b, "offset", 0) > 1 for b in (model.buffers if model.buffers is not None else ())):
        return None
    renamed = 0
    for sg in model.subgraphs if model.subgraphs is not None else ():
        # the object API gives numpy arrays here: ``or ()`` would read [0] as empty
        keep = {int(i) for i in (sg.inputs if sg.inputs is not None else ())}
        keep |= {int(i) for i in (sg.outputs if sg.outputs is not None else ())}
        for i, t in enumerate(sg.tensors if sg.tensors is not None else ()):
            short = f"t{i}".encode()
            if i in keep or _has_data(model, t) or t.name is None or len(t.name) <= len(short):
                continue
            t.name = short
            renamed += 1
    if not renamed:
        return None
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = bytes(builder.Output())
    path.write_bytes(out)
    return {"renamed": renamed, "bytes_before": len(data), "bytes_after": len(out)}
