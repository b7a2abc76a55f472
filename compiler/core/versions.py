"""Toolchain and host description recorded in every report and artifact sidecar."""

from __future__ import annotations

import functools
import os
import platform
from importlib import metadata
from typing import Any

# Distribution names whose versions matter for reproducing an artifact.
_TOOLCHAIN = (
    "adaptc",
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "torch-pruning",
    "torchao",
    "litert-torch",
    "ai-edge-litert",
    "ai-edge-quantizer",
    "coremltools",
    "transformers",
    "scikit-learn",
)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def toolchain_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for d in _TOOLCHAIN:
        v = _version(d)
        if v is not None:
            out[d] = v
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def host_info() -> dict[str, Any]:
    import psutil

    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_mb": round(psutil.virtual_memory().total / 2**20),
        "os": f"{platform.system()} {platform.release()}",
    }
