"""`adaptc build --no-search` end to end on the default task (the teacher exported as it is): files, report
schema, parity gate, budgets, resume. The student search is tested in test_search.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

import adaptc
from adaptc.errors import BudgetError, OutputError
from adaptc.profiles import shipped_profile_dir
from adaptc.report import BuildReport

from .conftest import run_cli


@pytest.fixture(scope="module")
def pixel8_build(tmp_path_factory: pytest.TempPathFactory, digits_task) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("build") / "pixel8"
    r = run_cli("build", "--device", "pixel8", "--no-search", "--formats", "onnx", "--out", str(out), "--runs", "50")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads((out / "report.json").read_text()), r.stdout + r.stderr


def _quantities(obj: object):
    if isinstance(obj, dict):
        if {"value", "unit", "kind", "method"} <= set(obj):
            yield obj
        for v in obj.values():
            yield from _quantities(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _quantities(v)


def test_build_writes_artifacts_and_reports(pixel8_build) -> None:
    out, rep, _ = pixel8_build
    for f in ("model.onnx", "model.int8.onnx", "report.json", "report.md"):
        assert (out / f).is_file(), f
    report = BuildReport.model_validate(rep)  # the versioned schema
    assert report.schema_version == adaptc.report.REPORT_SCHEMA_VERSION
    assert report.status == "ok" and report.chosen in ("model.int8.onnx", "model.onnx")
    if report.chosen == "model.onnx":  # only when int8 was measured slower on this host (the guardrail)
        assert any("did int8 help? no" in f for f in report.artifact("model.int8.onnx").flags)
    assert report.device["name"] == "pixel8"
    assert {"torch", "onnx", "onnxruntime", "adaptc"} <= set(report.toolchain)
    md = (out / "report.md").read_text()
    assert "model.int8.onnx" in md and "(E)" in md and "(M)" in md and "vs teacher" in md and "top-1 " in md


def test_every_number_is_tagged(pixel8_build) -> None:
    _, rep, _ = pixel8_build
    qs = list(_quantities(rep))
    assert len(qs) > 20
    for q in qs:
        assert q["kind"] in ("measured", "counted", "estimated") and len(q["method"]) > 10
    for a in rep["artifacts"]:
        assert a["device"]["latency"]["kind"] == "estimated" and "predictor" in a["device"]["latency"]["method"]
        assert a["host"]["latency_median"]["kind"] == "measured"
        assert "thread" in a["host"]["latency_median"]["method"]


def test_int8_parity_within_one_point(pixel8_build) -> None:
    out, rep, _ = pixel8_build
    arts = {a["file"]: a for a in rep["artifacts"]}
    fp32, int8 = arts["model.onnx"], arts["model.int8.onnx"]
    assert fp32["parity"]["runtime"] == int8["parity"]["runtime"] == "onnxruntime"
    assert abs(fp32["parity"]["metric"]["value"] - int8["parity"]["metric"]["value"]) <= 0.01
    assert int8["parity"]["drop_vs_fp32_artifact"] <= 0.01 and int8["parity"]["passed"]
    assert fp32["parity"]["max_abs_diff"] < 1e-4
    for a in (fp32, int8):  # --no-search exports the teacher itself: agreement with it is agreement with torch
        assert a["parity"]["teacher_cosine"] == pytest.approx(a["parity"]["cosine"], abs=1e-9)
        assert a["parity"]["teacher_top1_agreement"] == pytest.approx(a["parity"]["top1_agreement"], abs=1e-9)
        assert len(a["sha256"]) == 64
        assert a["size"]["value"] == (out / a["file"]).stat().st_size
        assert a["host"]["latency_median"]["value"] > 0 and a["host"]["peak_memory"]["value"] > 0
        assert {b["budget"] for b in a["budgets"]} == {"max_latency_ms", "max_peak_memory_mb", "max_model_mb", "max_mflops"}
        assert all(b["fits"] for b in a["budgets"])
    assert int8["size"]["value"] < fp32["size"]["value"] / 3


def test_metrics_carry_their_sampling_error(pixel8_build) -> None:
    """Accuracy on a finite test split comes with its 95% bootstrap interval, drops with their paired one."""
    out, rep, stdout = pixel8_build
    teacher = rep["task"]["teacher"]["metric"]
    lo, hi = teacher["ci95"]
    assert lo < teacher["value"] <= hi <= 1.0 and hi - lo > 0.005 and "bootstrap" in teacher["method"]
    for a in rep["artifacts"]:
        p = a["parity"]
        assert p["metric"]["ci95"][0] <= p["metric"]["value"] <= p["metric"]["ci95"][1]
        assert p["torch_metric"]["ci95"] == pytest.approx(teacher["ci95"])  # --no-search: the torch model is the teacher
        assert p["scored_samples"] == p["samples"] == 360  # one score per test image
        d_lo, d_hi = p["drop_vs_torch_ci95"]
        assert d_lo <= p["drop_vs_torch"] <= d_hi
        # paired: far narrower than the metric's own interval when artifact and reference agree on most samples
        assert d_hi - d_lo < (hi - lo) / 2
    int8 = next(a for a in rep["artifacts"] if a["file"] == "model.int8.onnx")["parity"]
    assert int8["drop_vs_fp32_artifact_ci95"][0] <= int8["drop_vs_fp32_artifact"] <= int8["drop_vs_fp32_artifact_ci95"][1]
    md = (out / "report.md").read_text()
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in md and "95% interval over the test samples" in md
    assert "- parity gate: at most 1.00 points below the torch model and the fp32 artifact, point" in md
    assert rep["settings"]["gate"] == "point" and int8["gate"] == "point"


def test_rerun_resumes_without_redoing(pixel8_build) -> None:
    out, rep, _ = pixel8_build
    before = {f: (out / f).stat().st_mtime_ns for f in ("model.onnx", "model.int8.onnx")}
    r = run_cli("build", "--device", "pixel8", "--no-search", "--formats", "onnx", "--out", str(out), "--runs", "50")
    assert r.returncode == 0, r.stderr
    assert "already done" in r.stderr
    after = {f: (out / f).stat().st_mtime_ns for f in before}
    assert before == after
    rep2 = json.loads((out / "report.json").read_text())
    assert [a["sha256"] for a in rep2["artifacts"]] == [a["sha256"] for a in rep["artifacts"]]
    # a resumed artifact keeps its per-sample scores: later drops against it stay paired
    assert [a["parity"]["drop_vs_fp32_artifact_ci95"] for a in rep2["artifacts"]] == \
        [a["parity"]["drop_vs_fp32_artifact_ci95"] for a in rep["artifacts"]]


def test_parity_gate_rejects_int8_beyond_max_drop(digits_task, tmp_path: Path) -> None:
    # A negative tolerance makes every int8 artifact fail the gate: it must be rejected and fp32 chosen.
    from adaptc.build import ArtifactBuilder, ExportSettings
    from adaptc.profiles import load_profile
    from adaptc.store import BuildStore

    with BuildStore(tmp_path / "s.sqlite") as store:
        b = ArtifactBuilder(model=digits_task.model, task=digits_task, profile=load_profile("pixel8"), out_dir=tmp_path,
                            store=store, settings=ExportSettings(max_drop=-0.5, measure_host=False))
        res = b.run(["onnx"])["onnx"]
    statuses = {r.scheme: r.status for r in res.reports}
    assert statuses["int8_static_per_channel"] == "rejected"
    rejected = [r for r in res.reports if r.status == "rejected"]
    assert all(r.parity is not None and not r.parity.passed and "drops" in (r.parity.reason or "") for r in rejected)
    # the reason says whether the drop is outside the test split's sampling error (here: no drop at all)
    assert all("sampling error" in (r.parity.reason or "") for r in rejected)


def test_gate_verdict_point_lenient_strict() -> None:
    from adaptc.exporters.parity import gate_verdict

    # a 1.5-point drop whose interval (-0.5..3.5) straddles the 1-point limit: the three gates differ
    drops = [("the torch model", 0.015, (-0.005, 0.035))]
    point = gate_verdict("accuracy", drops, 0.01, "point", 300)
    assert not point.passed and "more than the 1.00-point limit" in point.reason and "within their sampling" in point.reason
    lenient = gate_verdict("accuracy", drops, 0.01, "lenient", 300)
    assert lenient.passed and lenient.reason is None and "reaches below it" in lenient.note
    strict = gate_verdict("accuracy", drops, 0.01, "strict", 300)
    assert not strict.passed and "not shown to be within it (strict gate)" in strict.reason
    # a 0.2-point drop whose interval reaches 1.6 points passes the point gate, not the strict one
    small = [("the torch model", 0.002, (-0.012, 0.016))]
    assert gate_verdict("R@1", small, 0.01, "point").passed and gate_verdict("R@1", small, 0.01, "lenient").passed
    assert not gate_verdict("R@1", small, 0.01, "strict").passed
    # every comparison must pass; the one that fails is named
    two = [("the torch model", 0.0, (0.0, 0.0)), ("the fp32 artifact", 0.03, (0.02, 0.04))]
    v = gate_verdict("accuracy", two, 0.01, "lenient", 300)
    assert not v.passed and "against the fp32 artifact" in v.reason and "wholly above" in v.reason
    # no interval: an interval gate decides on the drop itself and says so
    bare = [("the torch model", 0.005, None)]
    v = gate_verdict("accuracy", bare, 0.01, "strict")
    assert v.passed and "decided on the drop itself" in v.note
    with pytest.raises(ValueError, match="gate must be one of"):
        gate_verdict("accuracy", bare, 0.01, "loose")  # type: ignore[arg-type]


def test_strict_gate_in_report_and_resume_key(digits_task, tmp_path: Path) -> None:
    from adaptc.build import ArtifactBuilder, ExportSettings
    from adaptc.profiles import load_profile
    from adaptc.store import BuildStore

    with BuildStore(tmp_path / "s.sqlite") as store:
        b = ArtifactBuilder(model=digits_task.model, task=digits_task, profile=load_profile("pixel8"), out_dir=tmp_path,
                            store=store, settings=ExportSettings(gate="strict", measure_host=False))
        res = b.run(["onnx"])["onnx"]
        point = ArtifactBuilder(model=digits_task.model, task=digits_task, profile=load_profile("pixel8"),
                                out_dir=tmp_path, store=store, settings=ExportSettings(measure_host=False))
        # a record gated one way is not reused for another gate
        assert b._key("onnx", "fp32") != point._key("onnx", "fp32")
        # nor one written by an earlier recipe of the scheme (an exporter's revision); revision 0 adds nothing,
        # so records made before revisions existed keep their keys
        from adaptc.exporters import get_exporter

        assert point._key("tflite", "int8_static_per_channel", 1) != point._key("tflite", "int8_static_per_channel")
        assert get_exporter("tflite").revision("int8_static_per_channel") == 4
        assert get_exporter("coreml").revision("int8_static_per_channel") == 3
        assert get_exporter("onnx").revision("int8_static_per_channel") == 1
    int8 = next(r for r in res.reports if r.scheme == "int8_static_per_channel")
    assert int8.parity is not None and int8.parity.gate == "strict"
    hi = int8.parity.drop_vs_torch_ci95[1]
    assert int8.parity.passed == (hi <= 0.01 + 1e-9 and int8.parity.drop_vs_fp32_artifact_ci95[1] <= 0.01 + 1e-9)


def test_bad_gate_is_a_one_line_error(tmp_path: Path) -> None:
    r = run_cli("export", "--device", "pixel8", "--formats", "onnx", "--gate", "loose", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "gate must be one of point, lenient, strict" in r.stderr
    assert "Traceback" not in r.stderr


def test_sample_scores_that_disagree_with_the_metric_are_not_used(digits_task, tmp_path: Path) -> None:
    import dataclasses

    import numpy as np

    from adaptc.build import ArtifactBuilder, ExportSettings
    from adaptc.profiles import load_profile
    from adaptc.store import BuildStore

    task = dataclasses.replace(digits_task, sample_scores=lambda out, split: np.zeros(len(split)))
    with BuildStore(tmp_path / "s.sqlite") as store:
        b = ArtifactBuilder(model=task.model, task=task, profile=load_profile("pixel8"), out_dir=tmp_path, store=store,
                            settings=ExportSettings(measure_host=False))
        res = b.run(["onnx"])["onnx"]
    p = res.reports[0].parity
    assert p is not None and p.metric.ci95 is None and p.drop_vs_torch_ci95 is None
    assert len(b.warnings) == 1 and "sample_scores do not average to its metric" in b.warnings[0]


@pytest.mark.parametrize("field", ["metric", "sample_scores"])
def test_task_function_that_raises_is_a_one_line_bad_input(digits_task, tmp_path: Path, field: str) -> None:
    import dataclasses

    def broken(outputs, split):
        raise ZeroDivisionError("no positives in this split")

    task = dataclasses.replace(digits_task, **{field: broken})
    with pytest.raises(adaptc.AdaptcError) as e:
        adaptc.build(task, "pixel8", tmp_path / "o", formats=["onnx"], search=False, measure_host=False)
    assert e.value.exit_code == 2
    assert str(e.value).startswith(f"task {digits_task.name}: its {field} raised ZeroDivisionError: no positives")


def test_impossible_budget_exits_2_and_keeps_report(tmp_path: Path) -> None:
    prof = yaml.safe_load((shipped_profile_dir() / "pixel8.yaml").read_text())
    prof.update(name="tiny-watch")
    prof["budgets"] = {"max_latency_ms": 0.0001, "max_model_mb": 0.01}
    f = tmp_path / "watch.yaml"
    f.write_text(yaml.safe_dump(prof))
    r = run_cli("build", "--device", str(f), "--no-search", "--formats", "onnx", "--out", str(tmp_path / "o"),
                "--runs", "10")
    assert r.returncode == 2, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("adaptc: error:")]
    assert len(err) == 1 and "no artifact meets every budget of tiny-watch" in err[0]
    assert "max_latency_ms" in err[0] and "Traceback" not in r.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["status"] == "no_fit" and rep["chosen"] is None


def test_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("build", "--device", "pixel8", "--out", str(blocker / "sub"))
    assert r.returncode == 2 and "cannot be written" in r.stderr and "Traceback" not in r.stderr
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(OutputError):
            adaptc.build("digits", "pixel8", ro / "x", search=False)


def test_api_mirrors_report(tmp_path: Path) -> None:
    rep = adaptc.build("digits", "echo-dot", tmp_path / "api", formats=["onnx"], runs=20, search=False)
    assert isinstance(rep, adaptc.BuildReport)
    on_disk = json.loads((tmp_path / "api" / "report.json").read_text())
    assert rep.model_dump(mode="json") == on_disk
    assert rep.chosen_artifact is not None and rep.chosen_artifact.status == "ok"


def test_api_budget_error_carries_report(tmp_path: Path) -> None:
    prof = adaptc.load_profile("echo-dot").model_copy(update={"budgets": adaptc.load_profile("echo-dot").budgets.model_copy(
        update={"max_model_mb": 0.001})})
    with pytest.raises(BudgetError) as ei:
        adaptc.build("digits", prof, tmp_path / "b", formats=["onnx"], measure_host=False, search=False)
    assert ei.value.report.status == "no_fit"  # type: ignore[attr-defined]


def _strict_json(text: str) -> object:
    """JSON as strict readers take it: NaN, Infinity and -Infinity (Python's extensions) are refused."""

    def refuse(name: str) -> object:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_every_json_output_is_strict_json(pixel8_build, tmp_path: Path) -> None:
    """No NaN or Infinity in any JSON a build writes (every file in the folder) or a command prints (--json)."""
    out, _, _ = pixel8_build
    files = sorted(out.rglob("*.json"))
    assert any(f.name == "report.json" for f in files)
    for f in files:
        _strict_json(f.read_text())
    for args in (
        ["measure", str(out), "--runs", "5", "--json"],
        ["analyze", str(out / "model.onnx"), "--json"],
        ["predict", str(out / "model.onnx"), "--device", "pixel8", "--json"],
        ["devices", "--json"],
        ["tasks", "--json"],
        ["compare", str(out), str(out), "--json"],
    ):
        r = run_cli(*args)
        assert r.returncode == 0, (args, r.stderr[-2000:])
        _strict_json(r.stdout)
    # a non-finite figure becomes null, never NaN: what the writer does with one
    from adaptc.core.io import json_text

    assert _strict_json(json_text({"a": float("nan"), "b": [float("inf"), 1.5]})) == {"a": None, "b": [None, 1.5]}


def test_each_artifact_says_whether_it_is_byte_identical_when_made_again(pixel8_build) -> None:
    from adaptc.exporters import get_exporter

    _, rep, _ = pixel8_build
    made = [a for a in rep["artifacts"] if a["status"] in ("ok", "rejected")]
    assert made and all(a["reproducible"].startswith("byte-identical") for a in made)
    # (measured: a CoreML package's Manifest.json names its items with random identifiers)
    assert get_exporter("coreml").reproducible.startswith("not byte-identical")
