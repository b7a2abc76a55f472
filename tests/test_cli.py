"""CLI basics: help, version, exit codes, no tracebacks for bad input."""

from __future__ import annotations

from pathlib import Path

import adaptc

from .conftest import run_cli


def test_help_and_version() -> None:
    r = run_cli("--help")
    assert r.returncode == 0 and "build" in r.stdout and "devices" in r.stdout
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"adaptc {adaptc.__version__}"
    r = run_cli("build", "--help")
    assert r.returncode == 0 and "--device" in r.stdout and "--out" in r.stdout


def test_usage_errors_exit_2_in_one_line() -> None:
    for args, words in (
        (["build", "--runs", "notanumber"], ["--runs", "adaptc build --help"]),
        (["no-such-command"], ["no-such-command", "adaptc --help"]),
        (["build", "--no-such-option"], ["--no-such-option"]),
    ):
        r = run_cli(*args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("adaptc: error:"), r.stderr
        assert all(w in lines[0] for w in words), lines[0]


def test_bad_inputs_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_text("nope")
    for args in (("analyze", str(bad)), ("predict", str(bad), "--device", "pixel8"),
                 ("build", "--formats", "tensorrt", "--device", "pixel8", "--out", str(tmp_path / "o")),
                 ("predict", str(bad), "--device", "pixel8", "--precision", "int4")):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("adaptc: error:"), (args, r.stderr)


def test_debug_shows_traceback() -> None:
    r = run_cli("--debug", "devices", "show", "pixle8")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_empty_or_truncated_model_and_input_files_end_in_one_line(tmp_path: Path) -> None:
    """Empty and truncated .onnx / .tflite files, and a truncated .npz of inputs: exit 2 with one line naming the
    file, never a traceback (an empty file parses as an empty ONNX ModelProto: refused for having no graph)."""
    import numpy as np
    import onnx
    import torch

    onnx_file = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2).eval(), (torch.zeros(1, 4),), str(onnx_file), dynamo=False)
    data = onnx_file.read_bytes()
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "trunc.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40)
    # a flipped bit that leaves the file parsing: a name, or an op type, that is not UTF-8 text
    names = onnx.load(str(onnx_file))
    node = names.graph.node[0]
    (tmp_path / "badname.onnx").write_bytes(data.replace(node.name.encode(), b"\xec" + node.name.encode()[1:], 1))
    (tmp_path / "badop.onnx").write_bytes(data.replace(node.op_type.encode(), b"\xf4" + node.op_type.encode()[1:], 1))
    np.savez(tmp_path / "ok.npz", input=np.zeros((2, 4), np.float32))
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:100])
    cases = [
        ["analyze", "empty.onnx"], ["analyze", "trunc.onnx"], ["analyze", "empty.tflite"], ["analyze", "trunc.tflite"],
        ["measure", "empty.onnx", "--runs", "5"], ["measure", "trunc.onnx", "--runs", "5"],
        ["measure", "trunc.tflite", "--runs", "5"], ["predict", "empty.onnx", "--device", "pixel8"],
        ["predict", "trunc.tflite", "--device", "pixel8"],
        ["measure", "m.onnx", "--inputs", "trunc.npz", "--runs", "5"],
        ["analyze", "badname.onnx"], ["predict", "badname.onnx", "--device", "pixel8"], ["analyze", "badop.onnx"],
        ["predict", "badop.onnx", "--device", "pixel8"],
    ]  # fmt: skip
    for args in cases:
        r = run_cli(*args, cwd=tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (args, r.stderr[-1500:])
        assert args[1] in lines[0] or args[-3] in lines[0], (args, lines[0])
