"""The op table: the ops of one graph as arrays of per-op features, as a runtime sees them.

:func:`build_table` reads a :class:`~adaptc.analysis.CostReport` (ONNX or TFLite) and applies what the runtime
does to it: fusions, metadata-only ops, onnxruntime's int8 kernels of a QDQ graph (:func:`_ort_decision`, read
from onnxruntime's own optimized graph by :mod:`adaptc.predict.ort_view`), its NCHWc layouts and reorders on x86,
dynamic-range int8 input quantizations, and the weight and activation bytes the runtime holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis.onnx_graph import CostReport
from .kinds import (
    BYTES,
    K_BCAST,
    K_BIN,
    K_CONV,
    K_CONV_DQ,
    K_CONV_FB,
    K_CONV_SP,
    K_DATA,
    K_DW,
    K_DW_FB,
    K_DYNQ,
    K_MM,
    K_MM_DYN,
    K_QGEMM,
    K_QUANT,
    K_REORDER,
    K_SKIPLN,
    K_TRANS,
    K_WDQ,
    ONNX_META,
    ORT_FUSABLE,
    PRECISIONS,
    SELECT_OPS,
    TFL_META,
    kernel_kind,
    known_onnx,
    known_tflite,
)


@dataclass
class OpTable:
    """The ops of one graph as arrays (what the predictor and the fit evaluate)."""

    names: list[str]
    op_types: list[str]
    kind: np.ndarray  # kind code (see KIND_NAMES)
    prec: np.ndarray  # 0 fp32, 1 fp16, 2 int8
    flops: np.ndarray
    bytes: np.ndarray
    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    run: np.ndarray  # executed (not fused, not metadata-only)
    reason: list[str]  # why an op does not run ("" when it runs)
    unknown: list[str]
    io_elems: dict[str, float]
    weight_bytes: float
    activation_bytes: float
    weight_precision: str
    #: the part of weight_bytes that belongs to convolutions (runtimes may re-layout those: another copy)
    conv_weight_bytes: float = 0.0
    #: kernel area of each op (k x k of a convolution, else 1); None: all 1
    area: np.ndarray | None = None
    #: independent matrix products of a batched product of two activations (attention heads): runtimes run one
    #: GEMM per item, each with its own packing (None: one each)
    items: np.ndarray | None = None
    #: kernels the runtime dispatches per inference (onnxruntime on this host: the nodes of its optimized graph)
    kernels: float = 0.0
    #: bytes of each multiply-accumulate op's own weights (None: none)
    op_weights: np.ndarray | None = None
    #: bytes of the graph's multiply-accumulate weights per op, where op_weights does not give it: the fit stacks
    #: many graphs into one table (None: the sum of op_weights)
    graph_weights: np.ndarray | None = None


def _graph_format(cost: CostReport) -> str:
    return getattr(cost, "format", "onnx")


def build_table(cost: CostReport, runtime: str, precision: str | None = None, layouts: bool = False) -> OpTable:
    """Per-op features of a cost report as seen by ``runtime`` (fusions applied). ``layouts``: the prediction is
    for this machine's onnxruntime, so its layout decisions (NCHWc on x86) are read from onnxruntime itself."""
    fmt = _graph_format(cost)
    known = known_tflite() if fmt == "tflite" else known_onnx()
    meta = TFL_META if fmt == "tflite" else ONNX_META
    producers: dict[str, int] = {}
    consumers: dict[str, int] = {}
    q_of: dict[str, str] = {}  # tensor -> output of the QuantizeLinear that consumes it
    for i, o in enumerate(cost.ops):
        for t in o.outputs:
            producers[t] = i
        for t in o.inputs:
            consumers[t] = consumers.get(t, 0) + 1
        if o.op_type == "QuantizeLinear" and o.inputs and o.outputs:
            q_of[o.inputs[0]] = o.outputs[0]
    view = None
    if (
        runtime == "onnxruntime"
        and layouts  # (an x86 host's onnxruntime: on ARM64 its QDQ kernels are another story, below)
        and fmt == "onnx"
        and precision is None
        and any(o.op_class == "quant" for o in cost.ops)
    ):
        from .ort_view import runtime_view

        view = runtime_view(cost.source)
    layout = None
    if layouts and runtime == "onnxruntime" and fmt == "onnx" and precision is None:
        from .ort_view import layout_view

        layout = layout_view(cost.source)
    tfl = None
    if fmt == "onnx" and runtime != "onnxruntime":  # the graph as TFLite's converter makes it (CoreML: its proxy)
        from .tflite_view import tflite_view

        tfl = tflite_view(cost)
    split_seen: set[str] = set()
    names = [o.name for o in cost.ops]
    types = [o.op_type for o in cost.ops]
    kind_l: list[int] = []
    prec_l: list[int] = []
    flops_l: list[float] = []
    bytes_l: list[float] = []
    mkn: list[tuple[float, ...]] = []  # (m, k, n) per op
    area_l: list[float] = []
    items_l: list[float] = []
    run_l: list[bool] = []
    reason = [""] * len(cost.ops)
    unknown: list[str] = []
    fused_into: set[int] = set()
    dyn_inputs: list[tuple[str, float, float]] = []  # (name, flops, bytes) of run-time input quantizations
    tr_gone = (
        max(0, sum(o.op_type == "Transpose" for o in cost.ops) - layout.op_counts["Transpose"])
        if layout is not None
        else 0
    )
    for i, o in enumerate(cost.ops):
        kd = kernel_kind(o.op_type, o.op_class)
        p = o.precision if o.precision in PRECISIONS else "fp32"
        b = float(o.bytes_moved)
        if precision is not None and kd != K_QUANT and p != precision:
            b *= BYTES[precision] / BYTES[p]
            p = precision
        if runtime == "onnxruntime" and p == "fp16":
            # onnxruntime's CPU provider has no fp16 convolutions or products by default: it inserts casts and runs
            # the graph in float32 (the casts between two float32 kernels cancel; a graph's input and output keep
            # theirs), so an fp16 graph costs what the float32 one does
            b *= BYTES["fp32"] / BYTES["fp16"]
            p = "fp32"
        run, whole_input = True, False
        if o.op_type not in known:
            unknown.append(o.op_type)
        if view is not None:
            run, p, b, why = _ort_decision(o, kd, p, b, view, q_of)
            reason[i] = why
        elif o.fused:
            run, reason[i] = False, "quantize/dequantize pair fused into the int8 kernels"
        if tfl is not None and i in tfl.gone:
            run, reason[i] = False, tfl.gone[i]
        if layout is not None and run:
            made_by = layout.producer.get(o.outputs[0]) if o.outputs else None
            if p != "int8" and kd == K_CONV and view is not None and o.name in layout.fallback_nodes:
                kd = K_CONV_DQ  # float inside a QDQ graph: run-time dequantized weights, plain layout
            elif p != "int8" and kd in (K_CONV, K_DW) and o.name in layout.fallback_nodes:
                kd = K_CONV_FB if kd == K_CONV else K_DW_FB
            elif o.op_type == "LayerNormalization" and made_by and made_by[0] == "SkipLayerNormalization":
                kd = K_SKIPLN
            elif (
                view is None
                and o.op_type == "Transpose"
                and o.outputs
                and tr_gone > 0
                and (made_by is None or made_by[0] != "Transpose")
            ):
                # onnxruntime's transpose optimizer cancels transposes that undo each other (an Identity may be left
                # to write the graph output) and folds a swap of the last two axes into a MatMul (FusedMatMul): no
                # transpose runs (the exported graph's count minus the optimized graph's bounds how many)
                tr_gone -= 1
                run, reason[i] = False, "removed by onnxruntime's transpose optimizer"
            elif view is None and o.op_type in ORT_FUSABLE and o.outputs and made_by is None:
                # its output is gone from the optimized graph: fused into a neighbour (NCHWc convolution, Gemm,
                # SkipLayerNormalization)
                run, reason[i] = False, "fused into the kernel before or after it by onnxruntime"
            elif o.op_type == "Gather" and o.outputs and o.outputs[0] in layout.split_of:
                # onnxruntime turns gathers of one tensor into one Split: the first carries its cost
                split = layout.split_of[o.outputs[0]]
                if split in split_seen:
                    run, reason[i] = False, "fused into a Split by onnxruntime"
                else:
                    split_seen.add(split)
                    b, whole_input = 2.0 * float(o.input_bytes), True
        if kd == K_CONV and o.kernel_area > 1:
            kd = K_CONV_SP
        if kd == K_BIN and len(o.inputs) == 2 and o.input_bytes < 1.5 * o.output_bytes:
            kd = K_BCAST  # two activations, one much smaller than the output: broadcast
        if layout is not None and view is not None and run and p == "int8" and o.gemm:
            # onnxruntime's int8 kernels on x86 work on channel blocks: a depthwise convolution whose channels are
            # not a multiple of 16, or a dense one with an odd number of input channels, takes a slower path
            # (micro-benchmarks: depthwise at 24-120 channels and 1x1 / 3x3 at 11 and 33 channels ran 17-48%
            # slower than the blocked figures predict)
            cin = int(round(o.gemm[1] / max(o.kernel_area, 1)))
            if kd == K_DW and int(o.gemm[2]) % 16:
                kd = K_DW_FB
            elif kd in (K_CONV, K_CONV_SP) and cin % 2:
                kd = K_CONV_FB
        if (
            view is not None
            and run
            and p == "int8"
            and kd == K_MM
            and "QGemm" in (view.nodes.get(o.name), view.produced.get(q_of.get(o.outputs[0], "") if o.outputs else ""))
        ):
            kd = K_QGEMM
        if o.dynamic and kd in (K_MM, K_CONV, K_CONV_SP) and p == "int8":
            kd = K_MM_DYN
        elif o.op_type == "DynamicQuantizeLinear":
            # onnxruntime folds it into the product it feeds (DynamicQuantizeMatMul) or keeps it when it feeds
            # several (q / k / v): the work is done either way
            kd, run, reason[i], p = K_DYNQ, True, "", "fp32"  # reads float: rated as a float pass
        if kd == K_DATA and o.op_type in SELECT_OPS and not whole_input:
            b = 2.0 * float(o.output_bytes)  # a gather / slice moves what it selects, not its whole input
        if not run:
            pass
        elif o.op_type in meta and runtime == "onnxruntime":
            # onnxruntime dispatches a kernel for every node, even a zero-copy reshape: overhead only
            b = 0.0
        elif o.op_type in meta:
            run, reason[i] = False, "metadata only (no kernel runs)"
        elif precision is not None and kd == K_QUANT:
            run, reason[i] = False, f"what-if {precision}: quantization ops not counted"
        elif runtime == "onnxruntime" and o.op_type in ORT_FUSABLE and len(o.inputs) == 1:
            src = producers.get(o.inputs[0])
            if (
                src is not None
                and cost.ops[src].op_class in ("conv", "depthwise_conv", "matmul")
                and consumers.get(o.inputs[0], 0) == 1
                and src not in fused_into
            ):
                run, reason[i] = False, f"fused into {cost.ops[src].op_type} by onnxruntime"
                if o.op_type not in ("Add", "Mul", "BatchNormalization"):
                    fused_into.add(src)  # one activation per kernel
        if run and kd == K_MM_DYN and fmt == "tflite" and o.gemm:
            # XNNPACK quantizes the float input of a dynamic-range product in a node of its own (convert to qd8)
            n_in = float(o.input_bytes) / 4.0  # its float32 input: read 4 bytes, write 1 per element
            dyn_inputs.append((f"dynamic quantization of the input of {o.name}", n_in, 5.0 * n_in))
        kind_l.append(kd)
        prec_l.append(PRECISIONS.index(p))
        # the FLOPs its kernel computes (a quantize / dequantize, a separate bias add run too), not the model's
        flops_l.append(0.0 if (o.op_type in meta) else float(o.work_flops))
        bytes_l.append(b)
        mkn.append(tuple(float(v) for v in o.gemm) if o.gemm else (1.0, 1.0, 1.0))
        area_l.append(float(o.kernel_area))
        items_l.append(_batch_items(o))
        run_l.append(run)

    def add(name: str, op_type: str, kd: int, prec: int, flops: float, nbytes: float) -> None:
        """An op the runtime runs that the exported graph does not have (layout copies, added dispatches)."""
        names.append(name)
        types.append(op_type)
        reason.append("")
        kind_l.append(kd)
        prec_l.append(prec)
        flops_l.append(flops)
        bytes_l.append(nbytes)
        mkn.append((1.0, 1.0, 1.0))
        area_l.append(1.0)
        items_l.append(1.0)
        run_l.append(True)

    for name, fl, nb in dyn_inputs:
        add(name, "QUANTIZE", K_DYNQ, 0, fl, nb)
    for e in tfl.extra if tfl is not None else ():
        add(e.name, e.op_type, e.kind, prec_l[e.at], e.flops, e.nbytes)
    if view is not None:
        # layout nodes of the full optimization level, sized like an average int8 convolution output
        q_out = [o.output_bytes for o in cost.ops if o.op_class in ("conv", "depthwise_conv") and o.precision == "int8"]
        avg = float(np.mean(q_out)) if q_out else 0.0
        for _ in range(view.layout_transposes):
            add("layout Transpose (onnxruntime NHWC)", "Transpose", K_TRANS, 2, 0.0, 2 * avg)
        for _ in range(view.layout_quant_ops):
            add("layout Quantize/Dequantize (onnxruntime)", "QuantizeLinear", K_QUANT, 2, 2 * avg, 5 * avg)
        for n_el in view.weight_dequant_elems:  # int8 weights of float kernels, dequantized at every run
            add("weight DequantizeLinear (onnxruntime)", "DequantizeLinear", K_QUANT, 2, 2.0 * n_el, 5.0 * n_el)
        for n_el in view.matmul_weight_dequant_elems:
            add("MatMul weight DequantizeLinear (onnxruntime)", "DequantizeLinear", K_WDQ, 2, 2.0 * n_el, 5.0 * n_el)
    if layout is not None:
        for _ in range(layout.extra_meta_nodes):  # Reshapes added around fused Gemms: a dispatch each
            add("Reshape added by onnxruntime's optimizer", "Reshape", K_DATA, 0, 0.0, 0.0)
        out_bytes = {o.outputs[0]: float(o.output_bytes) for o in cost.ops if len(o.outputs) == 1}
        for tname in layout.reorder_tensors:
            add(
                f"NCHWc reorder of {tname} (onnxruntime)",
                "Transpose",
                K_REORDER,
                0,
                0.0,
                2.0 * out_bytes.get(tname, float(cost.input_bytes)),
            )
    in_el, out_el = _io_elements(cost)
    if (
        precision is not None
        and precision != "fp32"
        and cost.stored_weight_bytes >= cost.weight_bytes_at.get("fp32", 0)
    ):
        wbytes = float(cost.weight_bytes_at.get(precision, cost.stored_weight_bytes))
        wprec = precision
    else:
        wbytes = float(cost.stored_weight_bytes + cost.quant_param_bytes)
        wprec = _dominant_precision(cost)
        if fmt == "tflite":
            wbytes += _unpacked_weight_bytes(cost)
    act = float(cost.peak_activation_bytes)
    if precision is not None and wprec != _dominant_precision(cost):
        act *= BYTES.get(precision, 4) / BYTES.get(_dominant_precision(cost), 4)
    arr = np.array(mkn, dtype=float).reshape(-1, 3)
    return OpTable(
        names=names,
        op_types=types,
        kind=np.array(kind_l, np.int64),
        prec=np.array(prec_l, np.int64),
        flops=np.array(flops_l, float),
        bytes=np.array(bytes_l, float),
        m=arr[:, 0],
        k=arr[:, 1],
        n=arr[:, 2],
        run=np.array(run_l, bool),
        reason=reason,
        unknown=sorted(set(unknown)),
        io_elems={"in": in_el[0], "in_int8": in_el[1], "out": out_el[0], "out_int8": out_el[1]},
        weight_bytes=wbytes,
        activation_bytes=act,
        weight_precision=wprec,
        conv_weight_bytes=float(sum(o.weight_bytes for o in cost.ops if o.op_class in ("conv", "depthwise_conv")))
        * (wbytes / max(1.0, float(cost.stored_weight_bytes + cost.quant_param_bytes))),
        area=np.array(area_l, float),
        items=np.array(items_l, float),
        kernels=float(sum(layout.op_counts.values())) if layout is not None else float(sum(run_l)),
        op_weights=np.array(
            [float(o.weight_bytes) if o.macs else 0.0 for o in cost.ops] + [0.0] * (len(names) - len(cost.ops))
        ),
    )


def _unpacked_weight_bytes(cost: CostReport) -> float:
    """Bytes a TFLite runtime adds when it unpacks stored int8 / float16 weights that feed float kernels (weight-only
    int8, float16 weights behind a DEQUANTIZE), in the units of the stored weights: LiteRT materializes an int8
    weight's dequantized tensor and XNNPACK packs it again, so the file weighs as its float32 version; XNNPACK
    packs float16 weights directly, half that. Measured (2-layer d = 384 encoder, 3.5 M weights; fp32 file 32.6 MB):
    weight-only int8 36.1 MB (16.5 MB predicted from the stored bytes), float16 27.8 MB."""
    extra = 0.0
    for o in cost.ops:
        if not (o.macs and o.precision == "fp32" and o.params):
            continue
        per = o.weight_bytes / o.params
        if per < 1.5:  # int8
            extra += 4.0 * o.params - o.weight_bytes
        elif per < 3.5:  # float16
            extra += (4.0 * o.params - o.weight_bytes) / 2.0
    return extra


def _batch_items(o: Any) -> float:
    """Matrix products in a batched matmul of two activations (heads x batch); 1 for everything else."""
    shp = o.output_shape
    if o.op_class != "matmul" or len(o.inputs) < 2 or not shp or len(shp) < 3:
        return 1.0
    return float(max(1, int(np.prod(shp[:-2]))))


def _ort_decision(o: Any, kd: int, p: str, b: float, view: Any, q_of: dict[str, str]) -> tuple[bool, str, float, str]:
    """(runs, precision, bytes, reason) of an op of a QDQ graph in onnxruntime's optimized graph."""
    from .ort_view import QLINEAR_MAC

    outs = o.outputs
    if kd == K_QUANT:
        if any(view.produced.get(t) in ("QuantizeLinear", "DequantizeLinear") for t in outs) or view.nodes.get(
            o.name
        ) in ("QuantizeLinear", "DequantizeLinear"):
            # (by node name too: onnxruntime's int8 -> uint8 conversion on x86 renames the outputs of the
            # quantize nodes it keeps, qdq_s8_to_u8_quant_*)
            return True, p, b, ""
        return False, p, b, "fused into an int8 kernel by onnxruntime"
    if view.nodes.get(o.name, "").startswith("QLinear") and kd not in (K_CONV, K_DW, K_MM):
        return True, "int8", b, ""  # an int8 kernel of its own (QLinearSoftmax, QLinearAdd, ...)
    own = view.produced.get(outs[0]) if outs else None
    if own is not None:
        if p == "int8":  # the kernel stays float: int8 activations are dequantized around it
            return True, "fp32", b * 4.0, "runs as a float kernel in onnxruntime (explicit quantize/dequantize)"
        return True, p, b, ""
    q_out = q_of.get(outs[0]) if outs else None
    prod = view.produced.get(q_out) if q_out else None
    if kd in (K_CONV, K_DW, K_MM):
        return True, "int8", b, ""
    if prod is None or prod in QLINEAR_MAC:
        if view.nodes.get(o.name) == o.op_type:
            # still there under its own name, its quantize / dequantize pair dropped: it moves int8 tensors
            # (Reshape, Transpose, ... between int8 kernels)
            return True, "int8", b, ""
        return False, p, b, "fused into an int8 kernel by onnxruntime"
    return True, "int8", b, ""


def _dominant_precision(cost: CostReport) -> str:
    if not cost.precision_macs:
        return "fp32"
    return max(cost.precision_macs.items(), key=lambda kv: kv[1])[0]


def _io_elements(cost: CostReport) -> tuple[tuple[float, float], tuple[float, float]]:
    """(float elements, int8 elements) of the graph inputs and outputs."""
    in_prec = getattr(cost, "input_precision", "fp32")
    out_prec = getattr(cost, "output_precision", "fp32")

    def split(nbytes: int, p: str) -> tuple[float, float]:
        if p == "int8":
            return 0.0, float(nbytes)
        return float(nbytes) / BYTES.get(p, 4), 0.0

    return split(cost.input_bytes, in_prec), split(cost.output_bytes, out_prec)


__all__ = ["OpTable", "build_table"]
