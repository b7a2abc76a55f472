"""`adaptc calibrate --quick`: real micro-benchmarks in onnxruntime and LiteRT, a fitted, valid host profile."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

import adaptc
from adaptc.predict import calibration as mb
from adaptc.predict import predict
from adaptc.profiles import load_profile_file, user_profile_dir

from .conftest import run_cli


def test_calibrate_quick_writes_a_fitted_host_profile(tmp_path: Path) -> None:
    raw = tmp_path / "raw.json"
    r = run_cli("-q", "calibrate", "--quick", "--raw", str(raw), timeout=300)
    assert r.returncode == 0, r.stderr
    # written to the (test-isolated) user profile dir, never to the real one
    dest = user_profile_dir() / "host.yaml"
    assert str(dest).startswith(os.environ["XDG_CONFIG_HOME"]) and dest.is_file()
    assert f"wrote {dest}" in r.stdout
    prof = load_profile_file(dest, expect_name="host")
    assert prof.kind.value == "host" and prof.compute.fp32_gflops > 1 and prof.compute.int8_gops
    assert prof.memory.bandwidth_gbps > 0.1
    assert prof.predictor is not None and prof.predictor.family == "x86_64"
    assert set(prof.predictor.runtimes) == {"onnxruntime", "tflite"}
    for rt, c in prof.predictor.runtimes.items():
        assert c.efficiency and c.efficiency["conv"]["fp32"] > 0 and c.op_overhead_us is not None
        assert c.fitted and "micro-benchmarks" in c.fitted
    # the raw measurements: every runtime x precision (dynamic-range int8 for the linear layers), and a fit that
    # explains them reasonably
    data = json.loads(raw.read_text())
    combos = {(m["runtime"], m["precision"]) for m in data["micro"]}
    assert combos == {(rt, p) for rt in ("onnxruntime", "tflite") for p in ("fp32", "int8", "int8dyn")}
    assert {m["name"] for m in data["micro"] if m["precision"] == "int8dyn"} <= {
        m.name for m in mb.suite(quick=True) if "dynamic" in m.tags}
    for rt in ("onnxruntime", "tflite"):
        after = data["fit"][rt]["latency"]["after"]
        assert after["rms_log_error"] < data["fit"][rt]["latency"]["before"]["rms_log_error"] + 1e-9
        assert after["median_abs_error_pct"] < 60
    # the new profile is found by name and predicts
    assert adaptc.load_profile("host").predictor is not None
    m = mb.Micro("c", (28, 28, 32), (mb.Layer("conv", out=32, k=3, act="relu"),) * 2)
    f = mb.write_tflite(m, tmp_path / "c.tflite")
    p = predict(f, "host", runtime="tflite")
    assert p.latency_ms > 0 and "profile host predictor.runtimes.tflite" in p.constants_source
    # --refit: the same measurements fitted again (no measuring): the same constants
    refit = tmp_path / "refit.yaml"
    r2 = run_cli("-q", "calibrate", "--refit", str(raw), "--out", str(refit), timeout=300)
    assert r2.returncode == 0, r2.stderr
    again = load_profile_file(refit, expect_name="host")
    assert again.compute.fp32_gflops == prof.compute.fp32_gflops
    for rt, c in again.predictor.runtimes.items():
        assert c.efficiency["conv"]["fp32"] == pytest.approx(prof.predictor.runtimes[rt].efficiency["conv"]["fp32"],
                                                             rel=1e-3)
        assert "refit of the measurements" in c.fitted or "micro-benchmarks" in c.fitted
    bad = tmp_path / "notraw.json"
    bad.write_text("{}")
    r3 = run_cli("calibrate", "--refit", str(bad), "--out", str(tmp_path / "x.yaml"))
    assert r3.returncode == 2 and "not a raw calibration file" in r3.stderr
    # --keep-faster: a raw file of another machine or suite, or one that is not a raw file, is refused before
    # measuring; --refit does not measure, so the two do not go together
    other = json.loads(raw.read_text())
    other["host"]["cpu"] = "another CPU"
    (tmp_path / "other.json").write_text(json.dumps(other))
    for args, msg in ((["--keep-faster", str(bad)], "not a raw calibration file"),
                      (["--keep-faster", str(tmp_path / "other.json")], "another machine or suite"),
                      (["--refit", str(raw), "--keep-faster", str(raw)], "do not go together")):
        r4 = run_cli("calibrate", "--quick", *args, "--out", str(tmp_path / "y.yaml"))
        assert r4.returncode == 2 and msg in r4.stderr and "Traceback" not in r4.stderr, r4.stderr
    dest.unlink()  # leave the isolated config dir as it was


def test_keep_faster_takes_the_faster_figure_per_graph() -> None:
    from adaptc.predict.calibration import MicroResult, keep_faster

    now = [MicroResult("a", "fc", "tflite", "fp32", 1, 2.0, 50, "a.tflite"),
           MicroResult("b", "fc", "tflite", "fp32", 1, 1.0, 80, "b.tflite"),
           MicroResult("c", "fc", "onnxruntime", "int8dyn", 1, 3.0, 40, "c.onnx")]
    ref = {"fp32_gflops": 150.0, "int8_gops": 600.0, "fp32_gflops_2t": 250.0, "bandwidth_gbps": 14.0}
    other = {"micro": [{"name": "a", "runtime": "tflite", "precision": "fp32", "threads": 1, "median_ms": 1.5,
                        "runs": 70},
                       {"name": "b", "runtime": "tflite", "precision": "fp32", "threads": 1, "median_ms": 1.2,
                        "runs": 60},
                       {"name": "a", "runtime": "tflite", "precision": "fp32", "threads": 2, "median_ms": 0.1,
                        "runs": 9}],
             "reference": {"fp32_gflops": 160.0, "int8_gops": 590.0, "fp32_gflops_2t": 240.0, "bandwidth_gbps": 15.0}}
    merged, mref, taken = keep_faster(now, ref, other)
    assert [(r.name, r.median_ms, r.runs) for r in merged] == [("a", 1.5, 70), ("b", 1.0, 80), ("c", 3.0, 40)]
    assert taken == 1 and merged[0].path == "a.tflite"
    assert mref == {"fp32_gflops": 160.0, "int8_gops": 600.0, "fp32_gflops_2t": 250.0, "bandwidth_gbps": 15.0}


def test_calibrate_rejects_a_bad_out_path(tmp_path: Path) -> None:
    bad = tmp_path / "host.txt"
    bad.write_text("x")
    r = run_cli("calibrate", "--quick", "--out", str(bad))
    assert r.returncode == 2 and "give a folder or a .yaml file" in r.stderr



@pytest.mark.parametrize("flag", ["--out", "--raw"])
def test_calibrate_checks_where_it_writes_before_measuring(tmp_path: Path, flag: str) -> None:
    """An unwritable destination fails at once (one line, exit 2), not after the minutes of micro-benchmarks."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # (root writes anywhere)
        ro = Path("/proc/adaptc-not-writable")
    target = ro / ("host.yaml" if flag == "--out" else "raw.json")
    r = run_cli("calibrate", flag, str(target), timeout=120)
    assert r.returncode == 2 and "cannot be written" in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1 and "Traceback" not in r.stderr
    assert "micro-benchmarks" not in r.stdout + r.stderr  # (refused before measuring)


def test_shipped_host_profile_has_predictor_constants() -> None:
    from adaptc.profiles import shipped_profile_dir

    data = yaml.safe_load((shipped_profile_dir() / "host.yaml").read_text())
    assert set(data["predictor"]["runtimes"]) == {"onnxruntime", "tflite"}
