"""Fuzzing campaigns (issue 28), shared by the tests (tests/test_fuzz.py) and the reliability run that writes
docs/RELIABILITY.md's figures (benchmarks/reliability.py).

Three campaigns of generated cases, each run in-process through the real command line (:func:`adaptc.cli.main`):

- device profiles: the shipped pixel8 profile with 1-3 random edits (a value replaced by any YAML value, a key
  deleted, an unknown key added), sometimes cut short or with random characters spliced in, shown by
  ``adaptc devices show FILE``;
- command lines: ``build`` / ``export`` / ``predict`` / ``analyze`` / ``devices`` / ``tasks`` / ``compare`` with
  options drawn from each command's own names and from garbage, values drawn from numbers (negative, huge, NaN),
  words and paths. A build or an export always gets an output folder that cannot be written, so that a valid
  combination ends there (exit 2) before any long work;
- model files: a real ONNX and TFLite file truncated, bit-flipped, spliced with random bytes, or random bytes,
  read by ``analyze`` and ``predict``.

Every case must end in exit 0 or exit 2 with at most one line on stderr (one when it failed), never a traceback
(exit 1: an internal error), never a hang (Hypothesis' deadline). :class:`Tally` counts the outcomes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptc.cli import main
from adaptc.profiles import shipped_profile_dir

PIXEL8 = (shipped_profile_dir() / "pixel8.yaml").read_text()
PROFILE: dict[str, Any] = yaml.safe_load(PIXEL8)
#: an output folder nothing can be written to (a build that got this far stops there, before any long work)
UNWRITABLE = "/proc/adaptc-fuzz/out"


@dataclass
class Tally:
    """Outcomes of one campaign: cases by exit code, and the cases that broke the rule (with their argv)."""

    name: str
    cases: int = 0
    exits: Counter[int] = field(default_factory=Counter)
    tracebacks: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, argv: list[str], code: int, err: str) -> None:
        self.cases += 1
        self.exits[code] += 1
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if "Traceback" in err:
            self.tracebacks += 1
        ok = code in (0, 2) and "Traceback" not in err and len(lines) <= 1 and (code == 0 or len(lines) == 1)
        if not ok:
            self.failures.append(f"exit {code}: {' '.join(argv)[:300]} -> {err.strip()[:300]!r}")

    def record_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "exit_0": self.exits.get(0, 0),
            "exit_2": self.exits.get(2, 0),
            "other_exits": sum(v for k, v in self.exits.items() if k not in (0, 2)),
            "tracebacks": self.tracebacks,
            "rule_broken": len(self.failures),
        }


def run(argv: list[str]) -> tuple[int, str]:
    """``adaptc ARGV`` in this process: (exit code, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:  # (main returns its code; a SystemExit escaping it is a failure to count)
            code = int(e.code) if isinstance(e.code, int) else 1
    return code, err.getvalue()


# -- values ---------------------------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e-300, 1e300, 7, 0.5]),
)
words = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["pixel8", "host", "onnx", "tflite", "coreml", "int8", "fp16", "", " ", "..", "/", "-", "digits"]),
)
yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, words),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(words, inner, max_size=4)),
    max_leaves=12,
)


def _paths(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(PROFILE)


@st.composite
def profile_texts(draw: st.DrawFn) -> str:
    d = copy.deepcopy(PROFILE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = d
        try:
            for k in path[:-1]:
                parent = parent[k]
            op = draw(st.sampled_from(["set", "set", "delete", "add"]))
            if op == "set":
                parent[path[-1]] = draw(yaml_values)
            elif op == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(words)] = draw(yaml_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced what the path walks through
    try:
        text = yaml.safe_dump(d, allow_unicode=True)
    except Exception:  # (a value YAML cannot represent)
        text = PIXEL8
    cut = draw(st.sampled_from(["none", "none", "truncate", "splice"]))
    if cut == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif cut == "splice":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(min_size=1, max_size=12)) + text[at:]
    return text


# -- command lines --------------------------------------------------------------------------------------------

BUILD_OPTIONS = [
    "--device", "--task", "--formats", "--max-drop", "--gate", "--prefer", "--quant-effort", "--calibration",
    "--threads", "--measure-threads", "--memory-budget", "--runs", "--seed", "--widths", "--max-drop-blocks",
    "--time-budget", "--quality-tolerance", "--rung-epochs", "--final-epochs", "--ablate", "--loss-weights",
    "--progressive", "--assistant", "--domain-data", "--domain-ratio", "--adversarial", "--adv-eps", "-O",
]  # fmt: skip
FLAGS = ["--no-search", "--no-qat", "--equalize", "--no-resume", "--json", "--ops", "--nope"]
option_values = st.one_of(
    numbers.map(str),
    words,
    st.sampled_from(["1,0.5", "0,2", "6,18", "nan", "inf", "-inf", "ce,kd", "hidden=1", "x=y", "fgsm", "lenient"]),
)


@st.composite
def command_lines(draw: st.DrawFn, model_file: str) -> list[str]:
    cmd = draw(st.sampled_from(["build", "build", "export", "predict", "analyze", "devices", "tasks", "compare"]))
    argv = [cmd]
    if cmd in ("build", "export"):
        argv += ["--out", UNWRITABLE, "--device", draw(st.sampled_from(["pixel8", "host", "rv1126-cam"]))]
        names = BUILD_OPTIONS
    elif cmd == "predict":
        argv += [draw(st.sampled_from([model_file, "missing.onnx", ""])), "--device", "pixel8"]
        names = ["--runtime", "--precision", "--threads", "--top", "--device"]
    elif cmd == "analyze":
        argv += [draw(st.sampled_from([model_file, "missing.onnx", "."]))]
        names = ["--top"]
    elif cmd == "compare":
        argv += [draw(words), draw(words)]
        names = ["--max-drop", "--latency-tolerance", "--host-tolerance", "--plot"]
    else:
        argv += [draw(words)] if draw(st.booleans()) else []
        names = []
    for _ in range(draw(st.integers(0, 4))):
        if names and draw(st.booleans()):
            argv += [draw(st.sampled_from(names)), draw(option_values)]
        else:
            argv.append(draw(st.sampled_from(FLAGS)))
    return argv


# -- model files ----------------------------------------------------------------------------------------------


@st.composite
def damaged_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    how = draw(st.sampled_from(["truncate", "flip", "splice", "random", "empty"]))
    if how == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    if how == "random":
        return draw(st.binary(max_size=4096))
    return b""


# -- the campaigns --------------------------------------------------------------------------------------------


def _settings(n: int) -> Any:
    # derandomized: the same cases every run (a CI failure reproduces); deadline: a case that hangs fails
    return settings(
        max_examples=n,
        deadline=30_000,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def fuzz_profiles(n: int) -> Tally:
    tally = Tally("device profiles")
    work = Path(tempfile.mkdtemp(prefix="adaptc-fuzz-"))

    @_settings(n)
    @given(profile_texts())
    def case(text: str) -> None:
        f = work / "fuzzed.yaml"
        f.write_text(text, encoding="utf-8", errors="surrogatepass")
        argv = ["devices", "show", str(f)]
        tally.record(argv, *run(argv))

    case()
    return tally


def fuzz_command_lines(n: int, model_file: str) -> Tally:
    tally = Tally("command lines")

    @_settings(n)
    @given(command_lines(model_file))
    def case(argv: list[str]) -> None:
        tally.record(argv, *run(argv))

    case()
    return tally


def fuzz_model_files(n: int, files: dict[str, bytes]) -> Tally:
    """``files``: suffix -> the bytes of a valid file of that format."""
    tally = Tally("model files")
    work = Path(tempfile.mkdtemp(prefix="adaptc-fuzz-"))

    @_settings(n)
    @given(st.sampled_from(sorted(files)).flatmap(lambda s: st.tuples(st.just(s), damaged_bytes(files[s]))),
           st.sampled_from(["analyze", "predict"]))  # fmt: skip
    def case(damaged: tuple[str, bytes], cmd: str) -> None:
        suffix, data = damaged
        f = work / f"damaged{suffix}"
        f.write_bytes(data)
        argv = [cmd, str(f)] + (["--device", "pixel8"] if cmd == "predict" else [])
        tally.record(argv, *run(argv))

    case()
    return tally


def small_model_files(folder: Path) -> dict[str, bytes]:
    """A real ONNX file and TFLite file of a small network (exported here), by suffix."""
    import torch

    from adaptc.core.io import working_directory

    folder.mkdir(parents=True, exist_ok=True)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    x = torch.zeros(1, 1, 8, 8)
    model(x)
    model.eval()
    onnx_path = folder / "m.onnx"
    torch.onnx.export(model, (x,), str(onnx_path), dynamo=False)
    out = {".onnx": onnx_path.read_bytes()}
    with contextlib.suppress(Exception), working_directory(folder):  # (TFLite where litert-torch is installed)
        import litert_torch

        litert_torch.convert(model, (x,)).export(str(folder / "m.tflite"))
        out[".tflite"] = (folder / "m.tflite").read_bytes()
    return out


__all__ = [
    "Tally",
    "fuzz_command_lines",
    "fuzz_model_files",
    "fuzz_profiles",
    "run",
    "small_model_files",
]
