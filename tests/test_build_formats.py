"""Builds that emit the formats a device runs (TFLite for Android, CoreML for iOS, ONNX everywhere), the
fallback chain of schemes, the "did int8 help?" guardrail, `adaptc export`, and contained converter failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import adaptc
from adaptc.build import ArtifactBuilder, ExportSettings
from adaptc.build.choice import confirmed_slower
from adaptc.profiles import load_profile
from adaptc.report import ArtifactReport, BuildReport
from adaptc.store import BuildStore

from .conftest import data_env, data_task, run_cli
from .test_build import _quantities


@pytest.fixture(scope="module")
def pixel8(tmp_path_factory: pytest.TempPathFactory, digits_task) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("formats") / "pixel8"
    r = run_cli("build", "--device", "pixel8", "--no-search", "--out", str(out), "--runs", "30")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads((out / "report.json").read_text()), r.stdout + r.stderr


@pytest.fixture(scope="module")
def iphone(tmp_path_factory: pytest.TempPathFactory, digits_task) -> tuple[Path, BuildReport]:
    out = tmp_path_factory.mktemp("formats") / "iphone15pro"
    r = run_cli("build", "--device", "iphone15pro", "--no-search", "--out", str(out), "--runs", "20")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "not run here" in r.stdout  # the summary table says CoreML was not run, never shows a number
    return out, BuildReport.model_validate_json((out / "report.json").read_text())


def test_pixel8_emits_tflite_and_onnx(pixel8) -> None:
    out, rep, log = pixel8
    assert rep["status"] == "ok" and set(rep["chosen_per_format"]) == {"tflite", "onnx"}
    # the profile's first format, int8 static (its first scheme), unless the "did int8 help?" guardrail measured
    # that file slower than fp32 on this host (a host without int8 dot-product instructions may): then fp32,
    # with the confirmed verdict on the int8 artifact
    arts = {a["file"]: a for a in rep["artifacts"]}
    if rep["chosen"] != "model.int8.tflite":
        assert rep["chosen"] == "model.tflite"
        assert any("did int8 help? no" in f and "confirmed" in f for f in arts["model.int8.tflite"]["flags"])
    for f in ("model.tflite", "model.int8.tflite", "model.onnx", "model.int8.onnx"):
        assert (out / f).is_file(), f
    for f in ("model.tflite", "model.int8.tflite"):
        a = arts[f]
        assert a["format"] == "tflite" and a["status"] == "ok" and len(a["sha256"]) == 64
        assert a["parity"]["runtime"] == "tflite" and a["parity"]["passed"]
        assert "ai-edge-litert" in a["runtime"] and "litert-torch" in a["converter"]
        assert a["host"]["latency_median"]["kind"] == "measured" and "1 thread" in a["host"]["latency_median"]["method"]
        assert a["host"]["peak_memory"]["value"] > 0
        assert a["device"]["latency"]["kind"] == "estimated"
        assert {"litert-torch", "ai-edge-litert", "ai-edge-quantizer"} <= set(a["toolchain"])
    int8, fp32 = arts["model.int8.tflite"], arts["model.tflite"]
    assert int8["precision"] == "int8" and int8["parity"]["drop_vs_torch"] <= 0.01
    assert int8["size"]["value"] < fp32["size"]["value"] / 3.5
    assert int8["structure"]["inputs"][0]["dtype"] == "int8"
    md = (out / "report.md").read_text()
    assert "model.int8.tflite" in md and "Converters and runtimes" in md and "ai-edge-litert" in md


def test_iphone_emits_mlpackage_and_onnx_never_measured(iphone) -> None:
    out, rep = iphone
    assert rep.status == "ok" and set(rep.chosen_per_format) == {"coreml", "onnx"}
    assert rep.chosen == "model.fp16.mlpackage"  # CoreML first, fp16 first on Apple targets
    assert (out / "model.fp16.mlpackage" / "Data/com.apple.CoreML/weights/weight.bin").is_file()
    assert (out / "model.onnx").is_file()
    for a in rep.artifacts:
        if a.format != "coreml":
            continue
        d = a.model_dump(mode="json")
        assert a.parity is None and a.host is None  # no CoreML runtime on Linux: nothing measured
        assert not [q for q in _quantities(d) if q["kind"] == "measured"]
        assert a.device is not None and a.device.latency.kind == "estimated"
        assert a.runtime.startswith("none") and "macOS" in a.runtime
        assert any("macOS" in f for f in a.flags) and any("estimates only" in f for f in a.flags)
        assert a.structure["check"]["passed"] and a.size.kind == "counted"
        assert "coremltools" in (a.converter or "")
    md = (out / "report.md").read_text()
    assert "not run (no runtime here)" in md


def test_iphone_rerun_resumes_mlpackage(iphone) -> None:
    out, rep = iphone
    pkg = out / "model.fp16.mlpackage" / "Data/com.apple.CoreML/weights/weight.bin"
    before = pkg.stat().st_mtime_ns
    again = adaptc.export("digits", "iphone15pro", out, runs=20)  # the API resumes what the CLI build finished
    assert pkg.stat().st_mtime_ns == before
    assert [a.sha256 for a in again.artifacts] == [a.sha256 for a in rep.artifacts]


def test_fallback_chain_static_rejected_then_dynamic(tmp_path: Path) -> None:
    # calibration data (train) unlike the test data: static int8 clips its inputs and fails the parity gate;
    # the chain moves on to dynamic-range int8 (ranges per input), which passes
    task = data_task("export_tasks:drifted")
    with BuildStore(tmp_path / "s.sqlite") as store:
        b = ArtifactBuilder(model=task.model, task=task, profile=load_profile("pixel8"), out_dir=tmp_path, store=store,
                            settings=ExportSettings(measure_host=False, int8_guardrail=False))
        res = b.run(["tflite", "onnx"])
    for fmt, ext in (("tflite", ".tflite"), ("onnx", ".onnx")):
        st = {r.scheme: r for r in res[fmt].reports}
        assert list(st) == ["fp32", "int8_static_per_channel", "int8_dynamic"], fmt
        assert st["int8_static_per_channel"].status == "rejected"
        assert "drops" in (st["int8_static_per_channel"].parity.reason or "")
        assert st["int8_dynamic"].status == "ok" and res[fmt].chosen.file == f"model.int8dyn{ext}"


def test_no_fit_message_names_artifacts_the_gate_rejected(tmp_path: Path) -> None:
    # static int8 fits the size budget but fails the gate; fp32 passes the gate but breaks the budget: the one-line
    # reason must say that the gate, not only the budget, left nothing
    from adaptc.build.choice import choose_overall as _choose

    task = data_task("export_tasks:drifted")
    base = load_profile("pixel8")
    with BuildStore(tmp_path / "s.sqlite") as store:
        probe = ArtifactBuilder(model=task.model, task=task, profile=base, out_dir=tmp_path / "probe", store=store,
                                settings=ExportSettings(measure_host=False, int8_guardrail=False))
        sizes = {r.scheme: r.size.value for r in probe.run(["onnx"])["onnx"].reports}
        limit_mb = (sizes["fp32"] + sizes["int8_static_per_channel"]) / 2 / 2**20
        prof = base.model_copy(update={"quantization": ("int8_static_per_channel", "fp32"),
                                       "budgets": base.budgets.model_copy(update={"max_model_mb": limit_mb})})
        b = ArtifactBuilder(model=task.model, task=task, profile=prof, out_dir=tmp_path / "o", store=store,
                            settings=ExportSettings(measure_host=False, int8_guardrail=False))
        res = b.run(["onnx"])
    chosen, status, reason = _choose(prof, ["onnx"], res)
    assert chosen is None and status == "no_fit"
    assert reason.startswith("no artifact meets every budget of pixel8: model.onnx: max_model_mb")
    assert reason.endswith("(1 that fit was rejected by the point parity gate: model.int8.onnx; see --max-drop and --gate)")


def _nothing_fits(task, tmp_path: Path, **settings: object):  # noqa: ANN202
    """The task's model exported to ONNX for pixel8 with the schemes static int8, dynamic int8, fp32 and a size
    budget that no artifact meets."""
    base = load_profile("pixel8")
    prof = base.model_copy(update={"quantization": ("int8_static_per_channel", "int8_dynamic", "fp32"),
                                   "budgets": base.budgets.model_copy(update={"max_model_mb": 0.001})})
    with BuildStore(tmp_path / "s.sqlite") as store:
        b = ArtifactBuilder(model=task.model, task=task, profile=prof, out_dir=tmp_path, store=store,
                            settings=ExportSettings(measure_host=False, **settings))  # type: ignore[arg-type]
        return b.run(["onnx"])["onnx"]


def test_quantized_artifact_over_budget_tries_next_scheme(digits_task, tmp_path: Path) -> None:
    # an int8 artifact that passes parity but breaks a budget does not stop the chain: the next quantized
    # scheme is tried (e.g. a static int8 file whose float parts still break the size budget);
    # when nothing fits, the first quantized artifact that passed stays the choice, not fp32
    res = _nothing_fits(digits_task, tmp_path, int8_guardrail=False)
    st = {r.scheme: r for r in res.reports}
    assert list(st) == ["fp32", "int8_static_per_channel", "int8_dynamic"]
    assert st["int8_static_per_channel"].fits_budgets is False
    assert any(f.startswith("breaks max_model_mb: the next scheme (int8_dynamic)") for f in st["int8_static_per_channel"].flags)
    assert res.chosen is not None and res.chosen.scheme == "int8_static_per_channel"


def test_int8_guardrail_prefers_faster_fp32(digits_task, tmp_path: Path) -> None:
    # ONNX Runtime runs dynamic int8 convolutions as ConvInteger, several times slower than fp32 on CPU
    prof = load_profile("pixel8").model_copy(update={"quantization": ("int8_dynamic", "fp32")})
    with BuildStore(tmp_path / "s.sqlite") as store:
        b = ArtifactBuilder(model=digits_task.model, task=digits_task, profile=prof, out_dir=tmp_path, store=store,
                            settings=ExportSettings(runs=30))
        res = b.run(["onnx"])["onnx"]
    dyn = next(r for r in res.reports if r.scheme == "int8_dynamic")
    assert dyn.status == "ok" and any(f.startswith("did int8 help? no") for f in dyn.flags)
    assert res.chosen is not None and res.chosen.scheme == "fp32"
    # a dynamic int8 file is gated one sample per call, as a device runs it (its scales depend on the batch)
    from adaptc.exporters.parity import check_parity
    from adaptc.measure import open_runner
    from adaptc.tasks import predict_torch

    one = check_parity(open_runner("onnxruntime", tmp_path / dyn.file, 1), digits_task,
                       predict_torch(digits_task.model, digits_task.test), batch=1)
    assert dyn.parity is not None and dyn.parity.max_abs_diff == pytest.approx(one.max_abs_diff, rel=1e-6)


def test_guardrail_measures_again_before_it_drops_int8(pixel8, digits_task) -> None:
    # a first reading that has the int8 file far slower than fp32 (as a neighbour's burst on a shared host can
    # make it) is measured again, both files, and each is judged by the lower of its two medians
    out, rep, _ = pixel8
    reports = {a["file"]: ArtifactReport.model_validate(a) for a in rep["artifacts"]}
    fp32, int8 = reports["model.tflite"], reports["model.int8.tflite"]
    int8.host.latency_median.value = 10 * fp32.host.latency_median.value
    first = int8.model_copy(deep=True)
    # a second reading at the speed of fp32 does not confirm the first: int8 is kept, and the flag says why
    assert confirmed_slower(first, fp32, lambda a, c: (fp32.host.latency_median.value,) * 2) is None
    assert first.flags[-1].startswith("a first measurement had this int8 file slower than fp32")
    assert first.flags[-1].endswith("int8 kept")
    # the real second measurement: both files run again in fresh processes (whether int8 is faster than fp32
    # depends on the CPU: XNNPACK's int8 kernels are several times faster where it has VNNI / dot products)
    measured: list[tuple[float, float]] = []
    with BuildStore(out / ".adaptc" / "state.sqlite") as store:
        b = ArtifactBuilder(model=digits_task.model, task=digits_task, profile=load_profile("pixel8"), out_dir=out,
                            store=store, settings=ExportSettings(runs=30))

        def again(a: ArtifactReport, c: ArtifactReport) -> tuple[float, float]:
            measured.append(tuple(b._measure(out / r.file, "tflite").latency_ms_median for r in (a, c)))  # type: ignore[arg-type]
            return measured[-1]

        verdict = confirmed_slower(int8, fp32, again)
    assert len(measured) == 1 and all(m > 0 for m in measured[0])
    confirmed = min(int8.host.latency_median.value, measured[0][0]) > 1.10 * min(fp32.host.latency_median.value,
                                                                                  measured[0][1])
    assert (verdict is not None) == confirmed
    assert (verdict or int8.flags[-1]).endswith("ms)" if confirmed else "int8 kept")


def test_contained_failure_partial_build_exit_3(tmp_path: Path) -> None:
    out = tmp_path / "partial"
    r = run_cli("build", "--task", "export_tasks:unconvertible", "--device", "pixel8", "--no-search", "--formats", "onnx,tflite",
                "--out", str(out), "--runs", "10", env=data_env())
    assert r.returncode == 3, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("adaptc:")]
    assert len(lines) == 1 and "partial" in lines[0] and "tflite" in lines[0] and "aten.logcumsumexp" in lines[0]
    assert "Traceback" not in r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["status"] == "partial" and "tflite" in rep["status_reason"]
    failed = [a for a in rep["artifacts"] if a["status"] == "failed"]
    assert [a["format"] for a in failed] == ["tflite"]  # the quantized schemes are not retried after the converter rejected the model
    assert failed[0]["error"].startswith("tflite: ") and "aten.logcumsumexp" in failed[0]["error"]
    assert rep["chosen_per_format"].get("onnx") and (out / rep["chosen_per_format"]["onnx"]).is_file()
    assert not (out / "model.tflite").exists()
    assert "tflite" in (out / "report.md").read_text()


def test_cli_export_transformer_in_three_formats(tmp_path: Path) -> None:
    out = tmp_path / "export"
    r = run_cli("export", "--task", "token_task:make_task", "--device", "pixel8", "--formats", "onnx,tflite,coreml",
                "--out", str(out), "--runs", "10", env=data_env())
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["search"] is None and rep["status"] == "ok"
    assert set(rep["chosen_per_format"]) == {"onnx", "tflite", "coreml"}
    arts = {a["file"]: a for a in rep["artifacts"]}
    tfl = arts["model.int8.tflite"]  # PT2E static int8 of a transformer: token ids as int32, within the gate
    assert tfl["status"] == "ok" and tfl["parity"]["passed"] and tfl["structure"]["inputs"][0]["dtype"] == "int32"
    chosen = arts[rep["chosen_per_format"]["tflite"]]
    # on a model this small int8 may not beat fp32 on a busy host: then the guardrail says so and moves on
    assert chosen["file"] == "model.int8.tflite" or any(f.startswith("did int8 help? no") for f in tfl["flags"])
    cml = arts[rep["chosen_per_format"]["coreml"]]
    assert cml["scheme"] == "int8_static_per_channel" and cml["structure"]["check"]["passed"]
    assert cml["structure"]["op_counts"].get("quantize", 0) > 0  # W8A8
    for a in rep["artifacts"]:
        assert a["status"] in ("ok", "rejected"), (a["file"], a["error"])


def test_api_export_needs_a_task_for_a_module(digits_task, tmp_path: Path) -> None:
    with pytest.raises(adaptc.AdaptcError, match="needs task="):
        adaptc.export(digits_task.model, "pixel8", tmp_path)
    rep = adaptc.export(digits_task.model, "pixel8", tmp_path / "m", task="digits", formats=["onnx"], measure_host=False)
    assert rep.status == "ok" and rep.task.teacher.info.get("model", "").startswith("user-supplied")


def test_help_documents_exit_codes() -> None:
    r = run_cli("--help")
    assert r.returncode == 0 and "export" in r.stdout and "3 partial" in r.stdout
    r = run_cli("export", "--help")
    assert r.returncode == 0 and "--formats" in r.stdout and "no student search" in r.stdout


@pytest.mark.parametrize("prefer", ["fastest", "smallest"])
def test_prefer_makes_every_scheme_and_ships_the_best_ranked(digits_task, tmp_path: Path, prefer: str) -> None:
    from adaptc.build.choice import _rank_value
    from adaptc.build.choice import choose_overall as _choose

    prof = load_profile("pixel8").model_copy(update={"quantization": ("int8_static_per_channel", "int8_dynamic",
                                                                      "fp16", "fp32")})
    with BuildStore(tmp_path / "s.sqlite") as store:
        b = ArtifactBuilder(model=digits_task.model, task=digits_task, profile=prof, out_dir=tmp_path, store=store,
                            settings=ExportSettings(measure_host=False, prefer=prefer))  # type: ignore[arg-type]
        res = b.run(["onnx", "tflite"])
    for fmt, o in res.items():
        # every scheme of the chain is made, not only up to the first that passes
        assert [r.scheme for r in o.reports] == ["fp32", "int8_static_per_channel", "int8_dynamic", "fp16"], fmt
        ok = [r for r in o.reports if r.status == "ok" and r.fits_budgets is not False]
        assert len(ok) >= 2 and o.chosen is not None
        assert _rank_value(o.chosen, prefer) == min(_rank_value(r, prefer) for r in ok)  # type: ignore[arg-type]
        assert o.chosen.flags[-1].startswith(f"chosen by --prefer {prefer}: ")
        assert f"of {len(ok)} that pass and fit; next " in o.chosen.flags[-1]
    chosen, status, _ = _choose(prof, ["onnx", "tflite"], res, prefer)  # type: ignore[arg-type]
    assert status == "ok" and chosen is not None
    assert _rank_value(chosen, prefer) == min(_rank_value(o.chosen, prefer) for o in res.values())  # type: ignore[arg-type]
    # the default stops at the first scheme that passes
    with BuildStore(tmp_path / "s.sqlite") as store:
        first = ArtifactBuilder(model=digits_task.model, task=digits_task, profile=prof, out_dir=tmp_path / "f",
                                store=store, settings=ExportSettings(measure_host=False, int8_guardrail=False))
        assert [r.scheme for r in first.run(["onnx"])["onnx"].reports] == ["fp32", "int8_static_per_channel"]


def test_prefer_on_the_command_line(tmp_path: Path) -> None:
    r = run_cli("export", "--device", "pixel8", "--formats", "onnx", "--prefer", "quickest", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "prefer must be one of first, fastest, smallest" in r.stderr
    assert "Traceback" not in r.stderr
    out = tmp_path / "fast"
    r = run_cli("export", "--device", "pixel8", "--formats", "onnx", "--prefer", "fastest", "--runs", "10",
                "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["settings"]["prefer"] == "fastest"
    assert "- choice: --prefer fastest (of every scheme" in (out / "report.md").read_text()
    chosen = next(a for a in rep["artifacts"] if a["chosen"])
    assert any(f.startswith("chosen by --prefer fastest") for f in chosen["flags"])


def test_prefer_fastest_when_nothing_fits_chooses_as_first(digits_task, tmp_path: Path) -> None:
    res = _nothing_fits(digits_task, tmp_path, prefer="fastest")
    assert [r.scheme for r in res.reports] == ["fp32", "int8_static_per_channel", "int8_dynamic"]
    assert all(r.fits_budgets is False for r in res.reports)
    assert res.chosen is not None and res.chosen.scheme == "int8_static_per_channel"  # the profile's first
    assert not any(f.startswith("chosen by") for f in res.chosen.flags)
