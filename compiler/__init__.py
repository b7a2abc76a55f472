"""adaptc: a hardware-adaptive model compiler and exporter.

Public API (kept small; the CLI is a thin layer over it)::

    import adaptc
    report = adaptc.build(task="digits", device="pixel8")      # -> adaptc.BuildReport (== report.json)
    report = adaptc.export("digits", "iphone15pro", "out")      # a model as is (no search): artifacts + report
    adaptc.list_devices("pixel*"); adaptc.load_profile("pixel8")
    adaptc.analyze("model.onnx")                               # per-op MACs, params, peak activations
    adaptc.predict("model.onnx", "pixel8", runtime="tflite")   # estimated device latency / memory
    adaptc.calibrate(out="host.yaml", quick=True)              # measure this machine, fit the predictor
    adaptc.compare("release/pixel8", "adaptc-out/pixel8")      # what each ships, what changed, regressions
    adaptc.measure_file("model.tflite", device="pixel8")       # host latency / memory of a file (+ estimate)
    adaptc.quant_report("digits")                              # per-layer int8 sensitivity of a task's model

Attributes are imported lazily so that light uses (a measurement subprocess, ``adaptc --version``) do not
pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core import __version__

_LAZY: dict[str, tuple[str, str]] = {
    # the build package, callable: adaptc.build(task, device, out, ...)
    "build": ("adaptc.build", ""),
    # one search serving many devices: adaptc.build_fleet(task, ["pixel8", "echo-dot"], out) (or adaptc.build with
    # a list of devices)
    "build_fleet": ("adaptc.build.fleet", "build_fleet"),
    "FleetReport": ("adaptc.report.fleet", "FleetReport"),
    # adaptc.export(model_or_task, device, out, formats=..., task=...): a model as it is, no search
    "export": ("adaptc.build.export", "export_model"),
    "export_model": ("adaptc.build.export", "export_model"),
    "analyze": ("adaptc.analysis", "analyze"),
    "predict": ("adaptc.predict", "predict"),
    "calibrate": ("adaptc.predict.calibration", "calibrate_host"),
    "load_profile": ("adaptc.profiles", "load_profile"),
    "list_devices": ("adaptc.profiles", "list_devices"),
    "DeviceProfile": ("adaptc.profiles", "DeviceProfile"),
    "SearchOptions": ("adaptc.core.search_options", "SearchOptions"),
    "Task": ("adaptc.tasks", "Task"),
    "Split": ("adaptc.tasks", "Split"),
    "get_task": ("adaptc.tasks", "get_task"),
    "list_tasks": ("adaptc.tasks", "list_tasks"),
    # a task's data from files and datasets, memory-mapped on disk (docs/data.md)
    "image_folder": ("adaptc.tasks", "image_folder"),
    "split_from_arrays": ("adaptc.tasks", "split_from_arrays"),
    "split_from_dataset": ("adaptc.tasks", "split_from_dataset"),
    "compare": ("adaptc.report.compare", "compare"),
    # the build history every build appends to: adaptc.history.runs(task=..., device=...), dashboard_data()
    "history": ("adaptc.history", ""),
    "measure_file": ("adaptc.build.measure", "measure_file"),
    "quant_report": ("adaptc.build.quant_report", "quant_report"),
    "PTQConfig": ("adaptc.core.ptq", "PTQConfig"),
    "BuildReport": ("adaptc.report", "BuildReport"),
    "BuildResult": ("adaptc.report", "BuildReport"),
    "AdaptcError": ("adaptc.errors", "AdaptcError"),
}

# spelled out (same names and order as ``["__version__", *_LAZY]``) so that linters see the re-exports below
__all__ = [
    "__version__",
    "build",
    "build_fleet",
    "FleetReport",
    "export",
    "export_model",
    "analyze",
    "predict",
    "calibrate",
    "load_profile",
    "list_devices",
    "DeviceProfile",
    "SearchOptions",
    "Task",
    "Split",
    "get_task",
    "list_tasks",
    "image_folder",
    "split_from_arrays",
    "split_from_dataset",
    "compare",
    "history",
    "measure_file",
    "quant_report",
    "PTQConfig",
    "BuildReport",
    "BuildResult",
    "AdaptcError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        module = importlib.import_module(mod)
        value = getattr(module, attr) if attr else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adaptc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from . import build, history
    from .analysis import analyze
    from .build.export import export_model
    from .build.export import export_model as export
    from .build.fleet import build_fleet
    from .build.measure import measure_file
    from .core.search_options import SearchOptions
    from .errors import AdaptcError
    from .predict import predict
    from .predict.calibration import calibrate_host as calibrate
    from .profiles import DeviceProfile, list_devices, load_profile
    from .report import BuildReport
    from .report import BuildReport as BuildResult
    from .report.compare import compare
    from .report.fleet import FleetReport
    from .tasks import Split, Task, get_task, image_folder, list_tasks, split_from_arrays, split_from_dataset
