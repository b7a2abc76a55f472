"""Where the time of an int8 TFLite transformer goes: ablations of the docstrings transformer (issue #4's 2x target).

    python benchmarks/tflite_int8_anatomy.py [--out benchmarks/results/tflite_int8_anatomy.json] [--rounds 15]

LiteRT has no per-op profiler in its Python interpreter, so this takes the model apart instead: variants of the
docstrings TransformerClassifier (same weights; accuracy irrelevant, only time) are exported as fp32, int8 static
(PT2E, adaptc's default recipe) and int8 dynamic (ai-edge-quantizer) TFLite and timed with the interleaved
in-process method of ``export_bench.py`` (1 thread, batch 1). The differences between variants are the cost of
what each removes, in every precision:

- ``full``: the model as exported by ``adaptc export``;
- ``no_attention_core``: q/k/v/o projections kept, the score and context matmuls, softmax, mask, scale and head
  transposes removed (``o(q(x) + k(x) + v(x))``);
- ``no_layernorm``: every LayerNorm replaced by identity;
- ``relu_ffn``: GELU replaced by ReLU (fused into the int8 FULLY_CONNECTED);
- ``linear_only``: only the 25 linear layers (and the residual-free chain between them);
- ``int8_attention``: the full model, static int8 with the attention-scale ``mul`` annotated as well, which
  makes the converter emit int8 BATCH_MATMULs (XNNPACK does not delegate them).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(__import__("tables").main(["tflite_int8_anatomy"]))

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from export_bench import interleaved_latency  # noqa: E402


def _no_attention_core(self: Any, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
    return self.o(self.q(x) + self.k(x) + self.v(x))


def _linear_only(self: Any, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
    a = self.attn
    return self.ffn[2](self.ffn[0](a.o(a.q(x) + a.k(x) + a.v(x))))


def variant(model: nn.Module, name: str) -> nn.Module:
    m = copy.deepcopy(model).eval()
    for b in m.blocks:
        if name == "no_attention_core":
            b.attn.forward = types.MethodType(_no_attention_core, b.attn)
        elif name == "no_layernorm":
            b.ln1, b.ln2 = nn.Identity(), nn.Identity()
        elif name == "relu_ffn":
            b.ffn[1] = nn.ReLU()
        elif name == "linear_only":
            b.forward = types.MethodType(_linear_only, b)
    if name == "no_layernorm":
        m.norm = nn.Identity()
    return m


VARIANTS = ("full", "no_attention_core", "no_layernorm", "relu_ffn", "linear_only")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tflite_int8_anatomy.json")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    import adaptc.quant.pt2e as pt2e
    from adaptc.exporters import ExportRequest, get_exporter
    from adaptc.tasks import get_task
    from adaptc.core.versions import host_info, toolchain_versions

    t0 = time.time()
    task = get_task("docstrings")
    ex = get_exporter("tflite")
    example = [x.numpy() for x in task.example_inputs]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="adaptc-anatomy-") as d:
        files: list[tuple[str, str, Path]] = []
        for v in VARIANTS:
            req = ExportRequest(model=variant(task.model, v), example_inputs=task.example_inputs,
                                input_names=task.input_names, output_names=task.output_names, calibration=task.train)
            for scheme in ("fp32", "int8_static_per_channel", "int8_dynamic"):
                f = ex.export(req, scheme, Path(d) / f"{v}.{scheme}.tflite")
                if scheme == "fp32":
                    req.fp32_artifact = f.path
                files.append((v, scheme, f.path))
            print(f"exported {v}", flush=True)
        # int8 attention matmuls: the PT2E quantizer with no op skipped (the attention scale `mul` annotated)
        req = ExportRequest(model=task.model, example_inputs=task.example_inputs, input_names=task.input_names,
                            output_names=task.output_names, calibration=task.train)
        skipped = pt2e.DEFAULT_SKIPPED_OPS
        quantize = pt2e.pt2e_quantize
        pt2e.pt2e_quantize = lambda *a, **k: quantize(*a, **{**k, "skip_ops": ()})  # type: ignore[assignment]
        try:
            f = ex.export(req, "int8_static_per_channel", Path(d) / "int8_attention.tflite")
        finally:
            pt2e.pt2e_quantize = quantize  # type: ignore[assignment]
        files.append(("int8_attention", "int8_static_per_channel", f.path))
        lat = interleaved_latency("tflite", [p for _, _, p in files], example, args.rounds)
        for (v, scheme, p), (med, best) in zip(files, lat):
            rows.append({"variant": v, "scheme": scheme, "latency_ms": med, "latency_ms_best_round": best,
                         "size_bytes": p.stat().st_size})
    by = {(r["variant"], r["scheme"]): r["latency_ms"] for r in rows}
    summary: dict[str, Any] = {}
    for scheme in ("fp32", "int8_static_per_channel", "int8_dynamic"):
        full = by[("full", scheme)]
        summary[scheme] = {
            "total_us": 1e3 * full,
            "attention_core_us": 1e3 * (full - by[("no_attention_core", scheme)]),
            "layernorm_us": 1e3 * (full - by[("no_layernorm", scheme)]),
            "gelu_vs_relu_us": 1e3 * (full - by[("relu_ffn", scheme)]),
            "linear_layers_only_us": 1e3 * by[("linear_only", scheme)],
        }
        if scheme != "fp32":
            summary[scheme]["speedup_vs_fp32"] = by[("full", "fp32")] / full
            summary[scheme]["linear_only_speedup_vs_fp32"] = by[("linear_only", "fp32")] / by[("linear_only", scheme)]
    summary["int8_attention_matmuls_speedup_vs_fp32"] = by[("full", "fp32")] / by[("int8_attention",
                                                                                 "int8_static_per_channel")]
    doc = {
        "benchmark": "tflite_int8_anatomy",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(time.time() - t0, 1),
        "model": "docstrings TransformerClassifier (4 blocks, width 128, 4 heads, FFN 256, 64 tokens), batch 1",
        "method": (f"LiteRT (ai_edge_litert Interpreter, XNNPACK), 1 thread, interleaved in one process: "
                   f"{args.rounds} rounds, per round and file a block of 200 calls timed as one; median over rounds "
                   "of the per-call mean. Component costs are differences between variants (measured, not "
                   "estimated); the variants' outputs are meaningless, only their time counts"),
        "skipped_ops_by_default": list(skipped),
        "host": host_info(),
        "toolchain": toolchain_versions(),
        "rows": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out} in {time.time() - t0:.0f} s")
    return 0 if all(math.isfinite(r["latency_ms"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
