"""The scheme walk of a real export: a static int8 scheme that min-max cannot pass tries the other moves until a
file passes the gate, records every attempt (a rerun redoes none), and reports the float layers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import data_env, run_cli

PROFILE = """schema_version: 1
name: ptq-test
display_name: PTQ test device
kind: phone
soc: test
os: android
cpu: {cores: [{name: Cortex-A76, count: 1, ghz: 2.0}], threads: 1, arch: armv8.2-a, features: [neon, dotprod]}
compute: {fp32_gflops: 20, fp16_gflops: 40, int8_gops: 60}
memory: {ram_mb: 4096, bandwidth_gbps: 10}
formats: [onnx]
quantization: [int8_static_per_tensor, fp32]
channel_multiple: 8
budgets: {}
sources: ["test profile"]
"""


def _export(tmp: Path, out: Path, *extra: str) -> tuple[object, dict]:
    prof = tmp / "ptq-test.yaml"
    prof.write_text(PROFILE)
    r = run_cli(
        "export", "--task", "ptq_tasks:outlier", "--device", str(prof), "--out", str(out), "--runs", "5", "--max-drop", "3", *extra,
        env=data_env(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    tmp = tmp_path_factory.mktemp("ptq")
    r, rep = _export(tmp, tmp / "out")
    return tmp, rep, r.stdout + r.stderr


def test_the_walk_keeps_the_sensitive_layer_in_float(walked) -> None:
    tmp, rep, log = walked
    art = {a["file"]: a for a in rep["artifacts"]}["model.int8pt.onnx"]
    assert art["status"] == "ok" and rep["chosen"] in ("model.int8pt.onnx", "model.onnx")
    moves = [a["moves"] for a in art["recipe"]["ptq_attempts"]]
    assert moves[0].startswith("minmax (the format's default)")
    assert moves[1:4] == ["percentile", "entropy", "mse"]  # the other range estimators, cheapest first
    assert "equalization" in moves[4]
    assert moves[-1].endswith("1 float layer") and all(a["status"] == "rejected" for a in art["recipe"]["ptq_attempts"][:-1])
    assert art["recipe"]["ptq"]["float_layers"] == ["2"]  # the layer with the outlier weight
    fl = art["recipe"]["float_layers"]
    assert fl["layers"][0]["layer"] == "2" and 0 < fl["macs_share"] < 1 and fl["extra_bytes"] > 0
    assert art["parity"]["drop_vs_torch"] <= 0.03
    assert art["recipe"]["float_nodes"] >= 1
    md = (tmp / "out" / "report.md").read_text()
    assert "## Post-training quantization" in md and "Layers kept in float: 1" in md
    assert "post-training quantization:" in " ".join(art["flags"])


def test_a_rerun_redoes_no_attempt(walked) -> None:
    tmp, rep, _ = walked
    r, again = _export(tmp, tmp / "out")
    log = r.stdout + r.stderr
    assert "export, parity, measure" not in log  # nothing exported again
    assert log.count("already done") >= len(
        {a["file"]: a for a in rep["artifacts"]}["model.int8pt.onnx"]["recipe"]["ptq_attempts"]
    )
    first = {a["file"]: a["sha256"] for a in rep["artifacts"]}
    assert {a["file"]: a["sha256"] for a in again["artifacts"]} == first


def test_fast_effort_stops_after_the_first_attempt(walked) -> None:
    tmp, _, _ = walked
    _, rep = _export(tmp, tmp / "fast", "--quant-effort", "fast")
    art = {a["file"]: a for a in rep["artifacts"]}["model.int8pt.onnx"]
    assert art["status"] == "rejected" and "ptq_attempts" not in art["recipe"]
    assert rep["chosen"] == "model.onnx"  # the format falls back to fp32


def test_bad_calibration_option_is_a_clean_error(tmp_path: Path) -> None:
    r = run_cli("export", "--task", "digits", "--calibration", "bogus", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "calibration" in r.stderr and "Traceback" not in r.stderr


def test_a_shorter_walk_over_a_longer_one_reports_the_file_on_disk(walked) -> None:
    import hashlib

    tmp, _, _ = walked
    _, rep = _export(tmp, tmp / "out", "--quant-effort", "fast")  # its one attempt was recorded, then written over
    art = {a["file"]: a for a in rep["artifacts"]}["model.int8pt.onnx"]
    assert art["status"] == "rejected" and art["recipe"]["ptq"]["float_layers"] == []
    assert art["sha256"] == hashlib.sha256((tmp / "out" / "model.int8pt.onnx").read_bytes()).hexdigest()
