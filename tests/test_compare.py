"""adaptc compare: two real builds of the digits task side by side -- the same model twice (no regression, the
host difference of one file is noise) and a damaged model (a paired metric regression, exit 4 on request)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import adaptc

from .conftest import run_cli


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, digits_task) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    adaptc.export("digits", "pixel8", root / "base", formats=["onnx"], runs=10, measure_host=True)
    adaptc.export("digits", "pixel8", root / "again", formats=["onnx"], runs=10, resume=False)
    damaged = copy.deepcopy(digits_task.model)
    last = [m for m in damaged.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight[:3] = 0.0  # three classes lose their evidence
        last.bias[:3] = -10.0
    adaptc.export(damaged, "pixel8", root / "damaged", task="digits", formats=["onnx"], runs=10)
    return {"base": root / "base", "again": root / "again", "damaged": root / "damaged"}


def test_same_model_twice_is_no_regression(builds: dict[str, Path]) -> None:
    c = adaptc.compare(builds["base"], builds["again"] / "report.json")
    assert c.task == "digits" and c.status == ("ok", "ok") and not c.regressions
    assert [r.scope for r in c.rows] == ["overall", "onnx"]
    overall = {ch.quantity: ch for ch in c.rows[0].changes}
    metric = overall["accuracy"]
    # the same test split (fingerprint in both reports) and stored per-sample scores: a paired interval
    assert metric.delta == 0 and metric.delta_ci95 == (0.0, 0.0) and metric.note.startswith("paired over the 360")
    assert overall["size"].verdict == "same" and overall["device latency (estimated)"].verdict == "same"
    host = overall["host latency p50 (measured)"]
    assert host.verdict == "same" and "the same file (sha256): run-to-run noise" in host.note


def test_damaged_model_is_a_paired_metric_regression(builds: dict[str, Path]) -> None:
    c = adaptc.compare(builds["base"], builds["damaged"])
    metric = next(ch for ch in c.rows[0].changes if ch.quantity == "accuracy")
    assert metric.verdict == "regression" and metric.delta < -0.05
    lo, hi = metric.delta_ci95
    assert lo <= metric.delta <= hi < 0 and "paired" in metric.note  # outside the sampling error
    assert any(r.startswith("overall accuracy: ") for r in c.regressions)
    # a looser limit than the drop: not a regression (host medians are not judged by default). Where the two builds
    # shipped different schemes (the "did int8 help?" guardrail measured int8 slower on a loaded host for one of
    # them) their sizes and estimates differ too: then only the metric is checked against the limit
    loose = adaptc.compare(builds["base"], builds["damaged"], max_drop=0.9).regressions
    schemes = {json.loads((builds[b] / "report.json").read_text())["chosen"] for b in ("base", "damaged")}
    assert not (loose if len(schemes) == 1 else [r for r in loose if "accuracy" in r]), loose
    # a host tolerance judges them: a tiny one flags any slow-down of the (other) file
    strict = adaptc.compare(builds["base"], builds["damaged"], max_drop=0.9, host_tolerance=0.0)
    host = next(ch for ch in strict.rows[0].changes if ch.quantity.startswith("host"))
    assert (host.verdict == "regression") == (host.candidate > host.baseline)


def test_compare_cli(builds: dict[str, Path], tmp_path: Path) -> None:
    r = run_cli("compare", str(builds["base"]), str(builds["damaged"]), "--fail-on-regression")
    assert r.returncode == 4, r.stderr[-2000:]
    assert "regressions:" in r.stdout and "overall accuracy" in r.stdout
    r = run_cli("compare", str(builds["base"]), str(builds["damaged"]), "--json", "--plot", str(tmp_path / "p" / "c.png"))
    assert r.returncode == 0 and json.loads(r.stdout)["regressions"]
    assert json.loads(r.stdout)["plot"] == str(tmp_path / "p" / "c.png")
    assert (tmp_path / "p" / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_cli("compare", str(builds["base"]), str(builds["damaged"]), "--plot", "/proc/no/c.png")
    assert r.returncode == 2 and "cannot be written" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("compare", str(builds["base"]), str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no report.json there" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.json").write_text('{"schema_version": "1.6"}')
    r = run_cli("compare", str(builds["base"]), str(tmp_path / "bad.json"))
    assert r.returncode == 2 and "not an adaptc build report" in r.stderr and "Traceback" not in r.stderr
