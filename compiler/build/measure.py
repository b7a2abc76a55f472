"""Measure any exported file on this host (``adaptc measure``), with the build's protocol.

A build measures the files it makes; users also hold files it did not make (an earlier release, a file from
another tool, an artifact copied out of a build folder) and ask what LiteRT's ``benchmark_model``,
``onnxruntime_perf_test`` or Qualcomm AI Hub's profile job answer: how fast, how much memory. This gives the
same numbers a build report gives (fresh subprocess, warm-up, median / p90 of timed runs at batch 1, peak
resident-set growth) with the same labels, and -- with a device -- the predictor's estimate beside them, so a
user can check the predictor on the host (``--device host``) or see measured-here next to estimated-there.

Inputs come from the file's own signature: integer inputs are filled with 1 (a valid token id and attention
mask value), float inputs with standard-normal noise (seed 0); the runtimes' run time of these graphs does not
depend on the values. A dynamic first dimension is the batch (1); any other dynamic dimension must be given
(``shapes={"input_ids": (1, 128)}``, ``--shape input_ids=1x128``), or the user's own arrays passed
(``inputs=``, ``--inputs x.npz``). TFLite files run at the shape they were exported with.

Hand-written: reading an input signature is a few lines of each format's own API (onnx's graph inputs,
LiteRT's input details); no library maps them onto one description.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.formats import RUNTIME_BY_SUFFIX
from ..core.io import path_size, sha256_path
from ..errors import AdaptcError, ModelFileError
from ..measure.host import HostMeasurement, host_threads, measure


@dataclass(frozen=True)
class InputSpec:
    name: str
    #: numpy dtype name of what the caller passes (a quantized TFLite input takes floats: the runner quantizes)
    dtype: str
    #: ints; a str names a dynamic dimension (ONNX ``dim_param``, or ``?`` when unnamed)
    shape: tuple[int | str, ...]


@dataclass
class FileMeasurement:
    file: str
    sha256: str
    size_bytes: int
    runtime: str
    #: the inputs the runs used: name, dtype, shape and where the values came from
    inputs: list[dict[str, Any]]
    host: HostMeasurement
    #: with a device: the predictor's estimate (``Prediction.summary()``) for the same file
    estimate: dict[str, Any] | None = None
    #: estimate vs measurement, relative ((estimated - measured) / measured; None where nothing was measured); only
    #: for a profile of kind ``host`` (this machine, calibrated), where the two describe the same machine
    estimate_error: dict[str, float | None] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_for(path: str | Path) -> str:
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file {p} does not exist")
    runtime = RUNTIME_BY_SUFFIX.get(p.suffix.lower())
    if runtime is None:
        head = b""
        if p.is_file():
            with open(p, "rb") as f:
                head = f.read(8)
        if head[4:8] == b"TFL3":
            return "tflite"
        raise ModelFileError(f"cannot measure {p}: not an .onnx, .tflite or .mlpackage file")
    if runtime == "coreml" and platform.system() != "Darwin":
        raise AdaptcError(
            f"cannot measure {p.name} here: CoreML models run only on macOS (Core ML framework); "
            f"this host is {platform.system()}"
        )
    return runtime


def input_specs(path: str | Path, runtime: str) -> list[InputSpec]:
    """The file's inputs in the order its runtime takes them."""
    p = Path(path)
    if runtime == "onnxruntime":
        import onnx

        try:
            model = onnx.load(str(p), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and friends for a file that is not ONNX
            raise ModelFileError(f"{p} is not a readable ONNX file ({type(e).__name__}: {str(e)[:120]})") from None
        if not model.graph.output:  # (an empty file parses as an empty ModelProto)
            raise ModelFileError(f"{p} is not an ONNX model: it has no graph outputs ({p.stat().st_size:,} bytes)")
        weights = {t.name for t in model.graph.initializer}
        specs = []
        for i in model.graph.input:
            if i.name in weights:
                continue
            tt = i.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)
            specs.append(InputSpec(i.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name, dims))
        return specs
    if runtime == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        try:
            details = Interpreter(model_path=str(p)).get_input_details()
        except Exception as e:
            raise ModelFileError(
                f"{p} is not a readable TFLite file ({str(e).strip().splitlines()[0][:120]})"
            ) from None
        specs = []
        for d in details:
            quantized = d["dtype"] in (np.int8, np.uint8) and d.get("quantization", (0.0, 0))[0]
            dtype = "float32" if quantized else np.dtype(d["dtype"]).name
            specs.append(InputSpec(d["name"], dtype, tuple(int(s) for s in d["shape"])))
        return specs
    raise AdaptcError(f"no input signature reader for runtime {runtime!r}")


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=1x128`` -> ("NAME", (1, 128))."""
    name, eq, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().replace(",", "x").split("x") if d.strip())
    except ValueError:
        shape = ()
    if not eq or not name.strip() or not shape or min(shape) < 1:
        raise AdaptcError(f"--shape wants NAME=DIMS with positive integers, e.g. input_ids=1x128; got {text!r}")
    return name.strip(), shape


def _resolve_shape(spec: InputSpec, given: tuple[int, ...] | None, runtime: str) -> tuple[int, ...]:
    if given is not None:
        fixed = all(isinstance(d, int) for d in spec.shape)
        if runtime == "tflite" and fixed and tuple(given) != spec.shape:
            raise AdaptcError(
                f"input {spec.name!r}: TFLite files run at their exported shape "
                f"{'x'.join(map(str, spec.shape))}, not {'x'.join(map(str, given))}"
            )
        if len(given) != len(spec.shape):
            raise AdaptcError(
                f"input {spec.name!r} has {len(spec.shape)} dimensions ({_fmt(spec.shape)}); --shape gave {len(given)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, given)):
            if isinstance(want, int) and want != got:
                raise AdaptcError(
                    f"input {spec.name!r} has {want} at axis {axis} ({_fmt(spec.shape)}); --shape gave {got}"
                )
        return tuple(given)
    shape = []
    for axis, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif axis == 0:
            shape.append(1)  # the batch
        else:
            raise AdaptcError(
                f"input {spec.name!r} has a dynamic dimension {d!r} at axis {axis} "
                f"({_fmt(spec.shape)}): give its size, e.g. --shape {spec.name}="
                f"{'x'.join('1' if i == 0 else (str(v) if isinstance(v, int) else 'N') for i, v in enumerate(spec.shape))}"
            )
    return tuple(shape)


def _fmt(shape: Sequence[int | str]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def synthetic_inputs(
    specs: Sequence[InputSpec], runtime: str, shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0
) -> list[np.ndarray]:
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise AdaptcError(
            f"--shape names no input of the file: {', '.join(unknown)} (inputs: {', '.join(s.name for s in specs)})"
        )
    rng = np.random.default_rng(seed)
    arrays = []
    for s in specs:
        shape = _resolve_shape(s, tuple(shapes[s.name]) if s.name in shapes else None, runtime)
        dt = np.dtype(s.dtype)
        if dt.kind in "iub":
            arrays.append(np.ones(shape, dtype=dt))
        else:
            arrays.append(rng.standard_normal(shape).astype(dt))
    return arrays


def load_inputs(npz: str | Path, specs: Sequence[InputSpec]) -> list[np.ndarray]:
    """Arrays from an .npz file, matched to the file's inputs by name (or, for unnamed arrays, by order)."""
    p = Path(npz)
    if not p.is_file():
        raise AdaptcError(f"--inputs {p} does not exist")
    try:
        with np.load(p) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise AdaptcError(f"--inputs {p} is not a readable .npz file ({type(e).__name__})") from None
    names = [s.name for s in specs]
    if set(names) <= set(arrays):
        return [arrays[n] for n in names]
    if len(arrays) == len(specs):  # np.savez(f, a, b) names them arr_0, arr_1: take them in order
        return [arrays[k] for k in sorted(arrays, key=lambda k: (len(k), k))]
    raise AdaptcError(
        f"--inputs {p.name} holds {', '.join(sorted(arrays)) or 'no arrays'}; the file's inputs are "
        f"{', '.join(names)} (name the arrays after them)"
    )


def measure_file(
    path: str | Path,
    *,
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    inputs: str | Path | Sequence[np.ndarray] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    device: Any = None,
) -> FileMeasurement:
    """Latency and peak memory of one model file on this host, as a build measures its artifacts.

    ``inputs``: arrays (one per input, in the file's order) or an ``.npz`` file (arrays named after the inputs);
    default: synthetic inputs from the file's signature (``shapes`` sizes its dynamic dimensions).
    ``device``: a profile name, path or object: also estimate the file there (``adaptc.predict``); for the
    ``host`` profile the estimate's error against this measurement is given too.
    """
    if runs < 1 or warmup < 0:
        raise AdaptcError(f"runs must be >= 1 and warmup >= 0 (got {runs}, {warmup})")
    if not isinstance(threads, int) or threads < 1:
        raise AdaptcError(f"threads must be a positive integer (got {threads!r})")
    p = Path(path)
    runtime = runtime_for(p)
    specs = input_specs(p, runtime)
    if inputs is None:
        arrays = synthetic_inputs(specs, runtime, shapes)
        source = "synthetic: integers 1, floats standard normal (seed 0)"
    elif isinstance(inputs, (str, Path)):
        arrays, source = load_inputs(inputs, specs), f"from {Path(inputs).name}"
    else:
        arrays, source = [np.asarray(a) for a in inputs], "given"
    if len(arrays) != len(specs):
        raise AdaptcError(
            f"{p.name} takes {len(specs)} input(s) ({', '.join(s.name for s in specs)}); {len(arrays)} given"
        )
    notes = []
    if inputs is None and any(np.dtype(s.dtype).kind in "iu" for s in specs):
        notes.append(
            "integer inputs are all 1: a model that looks them up in a table (token embeddings) touches "
            "one row, so memory from a mapped file is a lower bound; pass real inputs (--inputs) for the "
            "figure real data gives"
        )
    used = host_threads(threads)
    if used < threads:
        notes.append(f"{threads} threads asked, {used} used (this process may use {used} core(s))")
    try:
        host = measure(p, runtime, arrays, threads=used, runs=runs, warmup=warmup)
    except RuntimeError as e:  # the worker's last line: the runtime's own error
        why = str(e).split(" failed: ", 1)[-1].split("] : ")[-1]
        raise ModelFileError(f"{p.name} does not run in {runtime}: {why}") from None
    except Exception as e:  # subprocess.TimeoutExpired
        raise AdaptcError(f"measuring {p.name} failed: {type(e).__name__}: {str(e)[:200]}") from None
    result = FileMeasurement(
        file=str(p),
        sha256=sha256_path(p),
        size_bytes=path_size(p),
        runtime=runtime,
        inputs=[
            {"name": s.name, "dtype": str(a.dtype), "shape": list(a.shape), "source": source}
            for s, a in zip(specs, arrays)
        ],
        host=host,
        notes=notes,
    )
    if device is not None:
        _add_estimate(result, p, runtime, device)
    return result


def _add_estimate(result: FileMeasurement, path: Path, runtime: str, device: Any) -> None:
    from ..predict import predict
    from ..profiles import load_profile

    profile = load_profile(device)
    on_host = profile.kind == "host"  # the shipped `host` profile, or one `adaptc calibrate` wrote
    # the device's own thread count; on the host profile the measurement's, so the two describe one setting
    pred = predict(path, profile, runtime=runtime, threads=result.host.threads if on_host else None)
    result.estimate = pred.summary()
    if on_host:
        h = result.host
        result.estimate_error = {
            "latency": (pred.latency_ms - h.latency_ms_median) / h.latency_ms_median
            if h.latency_ms_median > 0
            else None,
            "peak_memory": (pred.peak_memory_mb - h.peak_memory_mb) / h.peak_memory_mb
            if h.peak_memory_mb > 0
            else None,
        }
    else:
        result.notes.append(
            f"the estimate is for {profile.name} ({pred.threads} thread(s)); the measurement is "
            f"this host's: they are not expected to agree (use --device host to check the predictor "
            f"here)"
        )


@dataclass
class BuildArtifactMeasurement:
    file: str
    format: str
    scheme: str
    measurement: FileMeasurement
    #: what the build's report says of the file: the device estimate, and the host measurement where it was made
    estimated_ms: float | None
    estimated_mb: float | None
    recorded_host_ms: float | None
    recorded_host: str | None


def measure_build(
    folder: str | Path, *, threads: int | None = None, runs: int = 100, warmup: int = 10
) -> tuple[str, list[BuildArtifactMeasurement], list[str]]:
    """Every artifact a build emitted, measured on this machine beside what its report estimated for the device.

    Copy a build folder to the device itself (a Linux board with onnxruntime / LiteRT: the camera profiles) and
    this is the device's own measurement next to the estimate. ``threads``: default the profile's. Returns the
    device name, one row per measured file, and notes (files that cannot run here)."""
    from ..report.compare import load_build

    report, root = load_build(folder)
    device = str(report.device.get("name"))
    if threads is None:
        threads = int((report.device.get("cpu") or {}).get("threads") or 1)
    rows, notes = [], []
    for a in report.artifacts:
        if a.status not in ("ok", "rejected"):
            continue
        path = root / a.file
        if not path.exists():
            notes.append(f"{a.file}: not in the folder")
            continue
        try:
            m = measure_file(path, threads=threads, runs=runs, warmup=warmup)
        except AdaptcError as e:
            notes.append(f"{a.file}: {e}")
            continue
        rows.append(
            BuildArtifactMeasurement(
                file=a.file,
                format=a.format,
                scheme=a.scheme,
                measurement=m,
                estimated_ms=a.device.latency.value if a.device else None,
                estimated_mb=a.device.peak_memory.value if a.device else None,
                recorded_host_ms=a.host.latency_median.value if a.host else None,
                recorded_host=str(report.host.get("cpu")) if a.host else None,
            )
        )
    return device, rows, notes
