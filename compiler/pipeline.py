"""The build pipeline: task + device -> student -> artifacts per format -> parity, measurement, estimates -> report.

Stages (each in its own package): profiles -> tasks -> search (student selection, when enabled) ->
export (per format, fallback chain of schemes) -> parity gate (runtime) -> measure (host, subprocess) ->
predict (device estimate) -> budgets -> report. Finished artifacts are recorded in the build store so an
interrupted build resumes without redoing them.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import __version__, progress
from ._io import atomic_write_json, atomic_write_text, clean_stale_temporaries, ensure_writable_dir, path_size, sha256_path
from .analysis import analyze
from .errors import AdaptcError, BudgetError, ExportError
from .export import ExportRequest, available_formats, get_exporter
from .export._capture import captured_output
from .export.base import runtime_unavailable_reason
from .export.parity import GATES, Gate, check_parity, gate_verdict
from .measure import host_threads, measure, open_runner, runtime_available
from .measure.sampling import drop_interval, mean_interval
from .measure.sampling import method as sampling_method
from .predict import predict_from_cost
from .profiles import DeviceProfile, load_profile
from .profiles.budgets import check_budgets
from .quant import get_scheme
from .report.schema import PREFERS, Prefer
from .report import (
    ArtifactReport,
    BuildReport,
    DeviceEstimate,
    HostReport,
    ParityReport,
    Quantity,
    TaskReport,
    TeacherReport,
    render,
)
from .store import BuildStore, data_fingerprint, model_fingerprint, scores_key, stable_hash
from .tasks import Task, get_task, predict_torch
from .versions import host_info, toolchain_versions

#: a new artifact record is needed when these change
_ARTIFACT_RECORD_VERSION = 5


@dataclass
class ExportSettings:
    formats: tuple[str, ...] | None = None
    #: largest accepted metric drop of an artifact against the torch model it came from (fraction: 0.01 = 1 point)
    max_drop: float = 0.01
    #: how the gate reads the drop: the drop itself, or its 95% interval (adaptc.report.schema.GATE_RULES)
    gate: Gate = "point"
    threads: int | None = None
    runs: int = 100
    warmup: int = 10
    measure_host: bool = True
    resume: bool = True
    #: prefer the fp32 artifact when the int8 one is measured slower on the host runtime (``prefer="first"``)
    int8_guardrail: bool = True
    #: which passing artifact a format ships (adaptc.report.schema.PREFER_RULES)
    prefer: Prefer = "first"

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class _FormatOutcome:
    reports: list[ArtifactReport] = field(default_factory=list)
    chosen: ArtifactReport | None = None


def default_out_dir(profile: DeviceProfile) -> Path:
    return Path("adaptc-out") / profile.name


def _q_metric(value: float, ci95: tuple[float, float] | None, scored: int, method: str) -> Quantity:
    """A measured task metric on the test split, with its sampling error over ``scored`` per-sample scores."""
    q = Quantity.measured(value, "fraction", method + (f"; interval: {sampling_method(scored)}" if ci95 else ""))
    q.ci95 = ci95
    return q


def _q_torch_metric(task: Task, value: float, ci95: tuple[float, float] | None, scored: int) -> Quantity:
    return _q_metric(value, ci95, scored, f"torch {torch.__version__.split('+')[0]} on this host, "
                                          f"{task.metric_name} over the {len(task.test)}-sample test split")


def resolve_formats(profile: DeviceProfile, formats: Sequence[str] | None) -> list[str]:
    """The formats to emit: ``formats`` if given (validated), else the profile's list in its order."""
    known = set(available_formats()) | {"onnx", "tflite", "coreml"}
    chosen = list(formats) if formats else list(profile.formats)
    bad = [f for f in chosen if f not in known]
    if bad:
        raise AdaptcError(f"unknown format(s) {', '.join(map(repr, bad))} (known: onnx, tflite, coreml)")
    return list(dict.fromkeys(chosen))


def scheme_chain(profile: DeviceProfile, supported: Sequence[str]) -> list[str]:
    """The profile's schemes that this exporter supports, in the profile's order; fp32 always comes last."""
    chain = [s for s in profile.quantization if s in supported and s != "fp32"]
    return chain + ["fp32"]


class ArtifactBuilder:
    """Exports one model to the requested formats and checks, measures and estimates every artifact."""

    def __init__(self, *, model: nn.Module, task: Task, profile: DeviceProfile, out_dir: Path, store: BuildStore,
                 settings: ExportSettings, stem: str = "model", teacher_outputs: np.ndarray | None = None):
        self.model = model.eval()
        #: the teacher's outputs on the test split: artifacts report their agreement with it
        self.teacher_outputs = teacher_outputs
        self.task = task
        self.profile = profile
        self.out_dir = out_dir
        self.store = store
        self.settings = settings
        self.stem = stem
        self.threads = host_threads(settings.threads or profile.cpu.threads)
        self.fingerprint = model_fingerprint(model, task.example_inputs)
        #: artifacts are calibrated on the training split and scored on the test split
        self.data_fp = data_fingerprint(task.train, task.test)
        # the torch outputs artifacts are checked against: the teacher's when the model is the teacher (--no-search)
        self._reference: np.ndarray | None = teacher_outputs if model is task.model else None
        self._proxy: Any = None  # cost of the model's fp32 ONNX graph, for formats without an analyzer
        #: per-sample test scores of each checked artifact (by file name): drops against the fp32 artifact are paired
        self._scores: dict[str, np.ndarray] = {}
        self.warnings: list[str] = []

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def reference_outputs(self) -> np.ndarray:
        if self._reference is None:
            self._reference = predict_torch(self.model, self.task.test)
        return self._reference

    def run(self, formats: Sequence[str]) -> dict[str, _FormatOutcome]:
        results: dict[str, _FormatOutcome] = {}
        for fmt in formats:
            results[fmt] = self._format(fmt)
        return results

    # -- one format: fp32 reference first, then the fallback chain until one scheme passes ---------------
    def _format(self, fmt: str) -> _FormatOutcome:
        outcome = _FormatOutcome()
        try:
            exporter = get_exporter(fmt)
        except AdaptcError as e:
            outcome.reports.append(ArtifactReport(file=f"{self.stem}.{fmt}", format=fmt, scheme="-", precision="-",
                                                  status="failed", error=str(e)))
            return outcome
        chain = scheme_chain(self.profile, exporter.schemes())
        fp32 = self._artifact(exporter, "fp32", None)
        outcome.reports.append(fp32)
        if fp32.status == "failed" and fp32.sha256 is None:
            # the converter rejected the model itself: the quantized schemes go through the same converter
            return outcome
        if self.settings.prefer != "first":
            return self._ranked(exporter, chain, fp32, outcome)
        over_budget: ArtifactReport | None = None
        for i, scheme in enumerate(chain):
            if scheme == "fp32":
                rep = fp32
                if over_budget is not None and fp32.fits_budgets is not True:
                    # no later scheme fits either: the first quantized artifact that passed stays the choice
                    outcome.chosen = over_budget
                    break
            else:
                rep = self._artifact(exporter, scheme, fp32)
                outcome.reports.append(rep)
            if rep.status != "ok":
                continue  # rejected by the parity gate or failed: try the next scheme
            later_quantized = [c for c in chain[i + 1:] if c != "fp32"]
            if scheme != "fp32" and rep.fits_budgets is False and (later_quantized or over_budget is not None):
                # e.g. TFLite's static int8 keeps an embedding table in float32; dynamic-range int8 quantizes it.
                # If no later scheme fits either, the first over-budget one (profile order) is kept.
                broken = ", ".join(b.budget for b in rep.budgets if not b.fits)
                nxt = later_quantized[0] if later_quantized else "fp32"
                rep.flags.append(f"breaks {broken}: the next scheme ({nxt}) was tried")
                over_budget = over_budget or rep
                continue
            if scheme != "fp32" and self.settings.int8_guardrail and get_scheme(scheme).weights == "int8":
                slower = self._confirmed_slower(rep, fp32, exporter.runtime)
                if slower:
                    # "Did int8 help?" no: the faster fp32 artifact is preferred (not the next int8 scheme).
                    rep.flags.append(slower)
                    outcome.chosen = fp32 if fp32.status == "ok" else rep
                    break
            outcome.chosen = rep
            break
        return outcome

    def _confirmed_slower(self, rep: ArtifactReport, fp32: ArtifactReport, runtime: str) -> str | None:
        """The guardrail's verdict, confirmed: an int8 file measured slower than fp32 (on a shared host often a
        neighbour's burst during one of the two sub-millisecond measurements) is measured again with the fp32
        file, and each is judged by the lower of its two medians. An unconfirmed first reading is flagged."""
        first = _slower_than(rep, fp32)
        if first is None or rep.host is None or fp32.host is None:
            return first
        try:
            again = [self._measure(self.out_dir / r.file, runtime).latency_ms_median for r in (rep, fp32)]
        except Exception:  # the first reading stands
            return first
        a0, b0 = rep.host.latency_median.value or 0.0, fp32.host.latency_median.value or 0.0
        if min(a0, again[0]) > min(b0, again[1]) * GUARDRAIL_MARGIN:
            return f"{first}; confirmed by a second measurement ({again[0]:.3f} ms against {again[1]:.3f} ms)"
        rep.flags.append(f"a first measurement had this int8 file slower than fp32 ({a0:.3f} ms against {b0:.3f} ms); "
                         f"a second did not ({again[0]:.3f} ms against {again[1]:.3f} ms): int8 kept")
        return None

    def _ranked(self, exporter: Any, chain: list[str], fp32: ArtifactReport, outcome: _FormatOutcome
                ) -> _FormatOutcome:
        """``prefer`` fastest / smallest: every scheme of the chain is made and checked, and the format ships the
        best-ranked artifact that passes the gate and fits the budgets (ties: the profile's order). When none
        fits, the choice is that of ``prefer="first"`` over the same artifacts: the first quantized one that
        passed, else fp32."""
        outcome.reports += [self._artifact(exporter, s, fp32) for s in chain if s != "fp32"]
        order = {r.scheme: chain.index(r.scheme) for r in outcome.reports}
        passed = sorted((r for r in outcome.reports if r.status == "ok"), key=lambda r: order[r.scheme])
        fitting = [r for r in passed if r.fits_budgets is not False]
        if not fitting:
            quantized = [r for r in passed if r.scheme != "fp32"]
            outcome.chosen = (quantized or passed or [None])[0]
            return outcome
        ranked = rank_artifacts(fitting, self.settings.prefer)
        outcome.chosen = ranked[0]
        ranked[0].flags.append(ranking_note(ranked, self.settings.prefer, self.profile.name))
        return outcome

    def _key(self, fmt: str, scheme: str, revision: int = 0) -> str:
        s = self.settings
        return stable_hash({
            "v": _ARTIFACT_RECORD_VERSION, "model": self.fingerprint, "data": self.data_fp, "task": self.task.name,
            "format": fmt,
            "scheme": scheme, "max_drop": s.max_drop, "threads": self.threads, "runs": s.runs, "warmup": s.warmup,
            "measure": s.measure_host, "device": self.profile.model_dump(mode="json"),
            "toolchain": toolchain_versions(), "stem": self.stem,
            # only when not the default: records made before the option existed keep their keys
            **({"gate": s.gate} if s.gate != "point" else {}),
            **({"recipe_revision": revision} if revision else {}),
        })

    def _artifact(self, exporter: Any, scheme: str, fp32: ArtifactReport | None) -> ArtifactReport:
        fmt = exporter.format
        fname = exporter.filename(scheme, self.stem)
        dest = self.out_dir / fname
        key = self._key(fmt, scheme, exporter.revision(scheme))
        if self.settings.resume:
            rec = self.store.get(key)
            if rec is not None and (rec.get("status") == "failed" or (dest.exists() and rec.get("sha256") == sha256_path(dest))):
                progress.current().message(f"[dim]resume: {fname} ({scheme}) already done[/dim]")
                scores = self.store.get(scores_key(key))
                if scores is not None:
                    self._scores[fname] = np.asarray(scores["scores"], dtype=np.float64)
                return ArtifactReport.model_validate(rec)
        step = progress.current().step(f"{fmt} {scheme}: export, parity, measure", total=4)
        sch = get_scheme(scheme)
        rep = ArtifactReport(file=fname, format=fmt, scheme=scheme, precision=sch.precision, status="ok",
                             toolchain=toolchain_versions())
        request = ExportRequest(
            model=self.model, example_inputs=self.task.example_inputs, input_names=self.task.input_names,
            output_names=self.task.output_names, calibration=self.task.train,
            fp32_artifact=(self.out_dir / fp32.file) if fp32 is not None and fp32.status == "ok" else None,
        )
        try:
            exported = exporter.export(request, scheme, dest)
        except Exception as e:  # contained: this artifact fails, the build goes on with the others
            msg = str(e) if isinstance(e, ExportError) else (
                f"{fmt}: the converter failed for {scheme}: {type(e).__name__}: {str(e).strip()[:300]}")
            rep.status, rep.error = "failed", msg
            step.done(f"failed: {msg}")
            self.store.put(key, "artifact", rep.model_dump(mode="json"))
            return rep
        step.advance(1, note="exported")
        rep.recipe = exported.recipe
        rep.converter = exported.recipe.get("converter")
        if exported.precision:
            rep.precision = exported.precision
        rep.flags.extend(exported.notes)
        rep.sha256 = sha256_path(dest)
        rep.size = Quantity.counted(path_size(dest), "bytes", "size of the file on disk")
        try:
            rep.structure = exporter.describe(dest)
        except Exception as e:  # describing is informative only
            rep.flags.append(f"could not describe the file: {e}")
        self._verify(rep, exporter, request, dest, scheme)
        cost, proxy = self._cost(rep, dest)
        self._parity(rep, exporter.runtime, dest, fp32)
        step.advance(1, note="parity")
        self._host(rep, exporter.runtime, dest)
        step.advance(1, note="measured")
        self._device(rep, exporter.runtime, cost, proxy_precision=rep.precision if proxy else None)
        step.advance(1)
        step.done(self._summary(rep))
        if fname in self._scores:  # before the record: a resumed artifact finds its scores with it
            self.store.put(scores_key(key), "scores", {"scores": self._scores[fname].tolist()})
        self.store.put(key, "artifact", rep.model_dump(mode="json"))
        return rep

    def _verify(self, rep: ArtifactReport, exporter: Any, request: ExportRequest, path: Path, scheme: str) -> None:
        """Structural check against the torch model, for formats whose runtime may be missing here (CoreML)."""
        try:
            check = exporter.verify(request, path, scheme)
        except Exception as e:
            rep.flags.append(f"structure check could not run: {type(e).__name__}: {e}")
            return
        if check is None:
            return
        rep.structure["check"] = check
        if not check.get("passed", True):
            rep.status = "rejected"
            rep.flags.append("rejected by the structure check against the torch model: " + "; ".join(check.get("failed", [])))

    def _cost(self, rep: ArtifactReport, path: Path) -> tuple[Any, bool]:
        """Cost analysis of the file; where the format has no analyzer, of the model's fp32 ONNX graph."""
        try:
            cost = analyze(path)
            rep.cost = cost.summary()
            return cost, False
        except Exception as e:
            first_err = f"{type(e).__name__}: {e}"
        try:
            cost = self._proxy_cost()
        except Exception as e:
            rep.flags.append(f"cost analysis failed: {first_err}; proxy: {type(e).__name__}: {e}")
            return None, False
        rep.cost = {**cost.summary(), "source": (f"no cost analyzer for {Path(path).suffix} files: ops counted on the "
                                                  f"fp32 ONNX graph of the same model, device estimate at "
                                                  f"{rep.precision} arithmetic")}
        return cost, True

    def _proxy_cost(self) -> Any:
        if self._proxy is None:
            import tempfile

            from .export.onnx import export_onnx_fp32

            with tempfile.TemporaryDirectory(prefix="adaptc-cost-") as d:
                p = export_onnx_fp32(self.model, self.task.example_inputs, Path(d) / "proxy.onnx",
                                     self.task.input_names, self.task.output_names)
                self._proxy = analyze(p)
        return self._proxy

    def _parity(self, rep: ArtifactReport, runtime: str, path: Path, fp32: ArtifactReport | None) -> None:
        max_drop = self.settings.max_drop
        if not runtime_available(runtime):
            rep.runtime = f"none: no {runtime} runtime on this host ({runtime_unavailable_reason(runtime)})"
            rep.flags.append(f"no {runtime} runtime on this host ({runtime_unavailable_reason(runtime)}): "
                             "numerical parity not checked here")
            return
        try:
            with captured_output():  # runtimes print banners (LiteRT: "Created TensorFlow Lite XNNPACK delegate")
                runner = open_runner(runtime, path, self.threads)
                # dynamic int8: activation scales come from the whole batch, so the gate runs one sample per call,
                # as a device does (a batch of 256 gave another R@1 than batch 1 for the same MiniLM file)
                one = rep.scheme == "int8_dynamic"
                res = check_parity(runner, self.task, self.reference_outputs, batch=1 if one else None,
                                   teacher_outputs=self.teacher_outputs)
        except Exception as e:
            rep.status, rep.error = "failed", f"{runtime} could not run the artifact: {type(e).__name__}: {e}"
            return
        rt_version = runner.version() or runtime
        rep.runtime = rt_version
        if one and (runner.max_batch or 0) != 1:
            rep.flags.append("parity evaluated one sample per call: dynamic quantization scales depend on the batch")
        if res.scores is not None:
            self._scores[rep.file] = res.scores
        elif self.task.sample_scores is not None:
            self._warn(f"task {self.task.name}: its sample_scores do not average to its metric "
                       f"({self.task.metric_name}): reports give the metric without its sampling error")
        drop_fp32 = drop_fp32_ci = None
        if fp32 is not None and fp32.parity is not None:
            drop_fp32 = float(fp32.parity.metric.value or 0.0) - res.metric
            fp32_scores = self._scores.get(fp32.file)
            if fp32_scores is not None and res.scores is not None and len(fp32_scores) == len(res.scores):
                drop_fp32_ci = drop_interval(fp32_scores, res.scores)
        drops = [("the torch model", res.drop, res.drop_ci95)]
        if drop_fp32 is not None:
            drops.append(("the fp32 artifact", drop_fp32, drop_fp32_ci))
        verdict = gate_verdict(self.task.metric_name, drops, max_drop, self.settings.gate, res.scored_samples)
        passed, reason = verdict.passed, verdict.reason
        if verdict.note:
            rep.flags.append(verdict.note)
        rep.parity = ParityReport(
            runtime=runtime, split="test", samples=res.samples, metric_name=self.task.metric_name,
            metric=_q_metric(res.metric, res.metric_ci95, res.scored_samples,
                             f"{rt_version} on this host, {self.task.metric_name} over the {res.samples}-sample test split"),
            torch_metric=_q_torch_metric(self.task, res.reference_metric, res.reference_ci95, res.scored_samples),
            drop_vs_torch=res.drop, drop_vs_fp32_artifact=drop_fp32, drop_vs_torch_ci95=res.drop_ci95,
            drop_vs_fp32_artifact_ci95=drop_fp32_ci, scored_samples=res.scored_samples, max_abs_diff=res.max_abs_diff,
            mean_abs_diff=res.mean_abs_diff, cosine=res.cosine, top1_agreement=res.top1_agreement,
            teacher_cosine=res.teacher_cosine, teacher_top1_agreement=res.teacher_top1_agreement, max_drop=max_drop,
            gate=self.settings.gate, passed=passed, reason=reason,
        )
        if not passed:
            rep.status = "rejected"
            rep.flags.append(f"rejected by the parity gate: {reason}")

    def _measure(self, path: Path, runtime: str) -> Any:
        """One host measurement of ``path`` (a fresh subprocess) with the build's inputs, threads and runs."""
        return measure(path, runtime, [x.numpy() for x in self.task.example_inputs], threads=self.threads,
                       runs=self.settings.runs, warmup=self.settings.warmup)

    def _host(self, rep: ArtifactReport, runtime: str, path: Path) -> None:
        if not self.settings.measure_host or rep.status == "failed":
            return
        if not runtime_available(runtime):
            rep.flags.append(f"no {runtime} runtime on this host: latency and memory are estimates only")
            return
        try:
            m = self._measure(path, runtime)
        except Exception as e:
            rep.flags.append(f"host measurement failed: {e}")
            return
        meth, mem_meth = m.method(), m.memory_method()
        rep.host = HostReport(
            latency_median=Quantity.measured(m.latency_ms_median, "ms", meth),
            latency_p90=Quantity.measured(m.latency_ms_p90, "ms", meth.replace("median", "90th percentile")),
            peak_memory=Quantity.measured(m.peak_memory_mb, "MB", mem_meth),
            rss_anon=Quantity.measured(m.rss_anon_mb, "MB", mem_meth.replace("VmHWM", "RssAnon")),
            rss_file=Quantity.measured(m.rss_file_mb, "MB", mem_meth.replace("VmHWM", "RssFile")),
        )

    def _device(self, rep: ArtifactReport, runtime: str, cost: Any, proxy_precision: str | None = None) -> None:
        values: dict[str, Quantity] = {}
        if rep.size is not None:
            values["max_model_mb"] = Quantity.counted((rep.size.value or 0) / 2**20, "MB", rep.size.method)
        if cost is not None:
            pred = predict_from_cost(cost, self.profile, runtime=runtime, precision=proxy_precision)
            method = pred.method
            if proxy_precision is not None:
                method += (f"; op costs from the model's fp32 ONNX graph with {proxy_precision} arithmetic "
                           f"(no analyzer for this format's files)")
            rep.device = DeviceEstimate(
                latency=Quantity.estimated(pred.latency_ms, "ms", method),
                peak_memory=Quantity.estimated(pred.peak_memory_mb, "MB", method),
                predictor=pred.version,
            )
            values["max_latency_ms"] = rep.device.latency
            values["max_peak_memory_mb"] = rep.device.peak_memory
            values["max_mflops"] = Quantity.counted(cost.flops / 1e6, "MFLOPs", "counted from the exported graph "
                                                    "(adaptc.analysis: 2 FLOPs per MAC, elementwise per element)")
        rep.budgets = check_budgets(self.profile, values)
        rep.fits_budgets = all(b.fits for b in rep.budgets) if rep.budgets else None

    def _summary(self, rep: ArtifactReport) -> str:
        bits = [rep.status]
        if rep.parity:
            bits.append(f"{self.task.metric_name} {rep.parity.metric.value:.4f}")
        elif (rep.runtime or "").startswith("none"):
            bits.append(f"not run here ({rep.runtime[len('none: '):]})")
        if rep.host:
            bits.append(f"host p50 {rep.host.latency_median.value:.3f} ms")
        if rep.device:
            bits.append(f"device ~{rep.device.latency.value:.3f} ms (est.)")
        return ", ".join(bits)


def partial_reason(formats: Sequence[str], outcomes: dict[str, _FormatOutcome]) -> str:
    """One line naming each format that emitted nothing and why (the converter's error names the op)."""
    bits = []
    for f in formats:
        if outcomes[f].chosen is not None:
            continue
        errs = [r.error for r in outcomes[f].reports if r.error]
        rejected = [r for r in outcomes[f].reports if r.status == "rejected"]
        if errs:
            bits.append(errs[0] if errs[0].startswith(f"{f}:") else f"{f}: {errs[0]}")
        elif rejected:
            bits.append(f"{f}: every artifact was rejected ({rejected[0].flags[-1] if rejected[0].flags else 'parity'})")
        else:
            bits.append(f"{f}: no artifact")
    emitted = [f for f in formats if outcomes[f].chosen is not None]
    return ("partial build: " + "; ".join(bits) + (f" (emitted: {', '.join(emitted)})" if emitted else ""))


#: an int8 artifact counts as slower than fp32 only beyond this ratio: sub-0.1 ms timings vary by about
#: +-10-20 % between runs on shared hosts (docs/toolchain.md), and at equal speed int8 is still 4x smaller
GUARDRAIL_MARGIN = 1.10


def _slower_than(rep: ArtifactReport, fp32: ArtifactReport) -> str | None:
    if rep.host is None or fp32.host is None or fp32.status != "ok":
        return None
    a, b = rep.host.latency_median.value or 0.0, fp32.host.latency_median.value or 0.0
    if a > b * GUARDRAIL_MARGIN:
        return (f"did int8 help? no: measured {a:.3f} ms against {b:.3f} ms for fp32 on the host runtime "
                f"({a / b:.2f}x slower); the faster fp32 artifact is preferred")
    return None


def _rank_value(r: ArtifactReport, prefer: Prefer) -> float:
    if prefer == "smallest":
        return r.size.value if r.size is not None and r.size.value is not None else math.inf
    # fastest: the device estimate (every artifact has one: an analyzer of its graph, else the fp32 ONNX proxy)
    return r.device.latency.value if r.device is not None and r.device.latency.value is not None else math.inf


def rank_artifacts(candidates: Sequence[ArtifactReport], prefer: Prefer) -> list[ArtifactReport]:
    """``candidates`` best first by ``prefer`` (stable: equal values keep the given order)."""
    return sorted(candidates, key=lambda r: _rank_value(r, prefer))


def ranking_note(ranked: Sequence[ArtifactReport], prefer: Prefer, device: str,
                 among: str = "that pass and fit") -> str:
    """The flag of an artifact chosen by ranking: its figure and the runner-up's."""
    what = "estimated latency on " + device if prefer == "fastest" else "file size"
    unit, scale = ("ms", 1.0) if prefer == "fastest" else ("MB", 1 / 2**20)

    def fig(r: ArtifactReport) -> str:
        return f"{_rank_value(r, prefer) * scale:.3g} {unit}"

    nxt = f"; next {ranked[1].file} {fig(ranked[1])}" if len(ranked) > 1 else ""
    return f"chosen by --prefer {prefer}: {what} {fig(ranked[0])} of {len(ranked)} {among}{nxt}"


def _choose(profile: DeviceProfile, formats: Sequence[str], outcomes: dict[str, _FormatOutcome],
            prefer: Prefer = "first") -> tuple[ArtifactReport | None, str, str | None]:
    """The overall choice: the profile's first format whose chosen artifact fits every budget (``prefer``
    fastest / smallest: the best-ranked of the formats' choices that fit)."""
    candidates = [outcomes[f].chosen for f in formats if outcomes.get(f) and outcomes[f].chosen is not None]
    if not candidates:
        return None, "failed", "no artifact passed the parity gate in any format"
    fitting = [c for c in candidates if c.fits_budgets is not False]
    if fitting:
        if prefer == "first" or len(fitting) == 1:
            return fitting[0], "ok", None
        ranked = rank_artifacts(fitting, prefer)
        ranked[0].flags.append(ranking_note(ranked, prefer, profile.name, among="formats' choices"))
        return ranked[0], "ok", None
    best = candidates[0]
    broken = "; ".join(b.message for b in best.budgets if not b.fits)
    # artifacts that would have fitted but failed the gate: the limit (--max-drop, --gate), not the budget, decided
    gated = [r.file for f in formats if outcomes.get(f) for r in outcomes[f].reports
             if r.status == "rejected" and r.parity is not None and not r.parity.passed and r.fits_budgets]
    gate = best.parity.gate if best.parity else "point"
    also = (f" ({len(gated)} that fit {'was' if len(gated) == 1 else 'were'} rejected by the {gate} parity gate: "
            f"{', '.join(gated)}; see --max-drop and --gate)") if gated else ""
    return None, "no_fit", f"no artifact meets every budget of {profile.name}: {best.file}: {broken}{also}"


def build(
    task: "str | Task" = "digits",
    device: "str | os.PathLike[str] | DeviceProfile" = "host",
    out: "str | os.PathLike[str] | None" = None,
    *,
    formats: Sequence[str] | None = None,
    max_drop: float = 0.01,
    gate: Gate = "point",
    prefer: Prefer = "first",
    threads: int | None = None,
    runs: int = 100,
    resume: bool = True,
    measure_host: bool = True,
    search: "bool | dict[str, Any]" = True,
    seed: int = 0,
    task_options: "dict[str, Any] | None" = None,
) -> BuildReport:
    """Build device artifacts for a task and return the report (the same content as ``report.json``).

    ``max_drop``: the largest accepted metric drop of an artifact (fraction); ``gate``: how the parity gate reads
    it -- "point" the drop itself, "lenient" rejects only a drop whose 95% interval over the test samples lies
    wholly above ``max_drop``, "strict" accepts only one whose interval lies wholly at or below it.
    ``prefer``: which passing artifact ships -- "first" the first scheme in the profile's order that passes and
    fits (the others are not made), "fastest" / "smallest" every scheme is made and the one fastest on the device
    (estimated) / smallest that passes and fits ships, in each format and overall.
    ``task_options``: keyword arguments of the task's factory (``{"max_length": 64}`` for minilm), as
    :func:`adaptc.get_task` takes them.
    ``search``: True runs the student search with default options, a dict passes options to
    :class:`adaptc.search.SearchOptions` (widths, rung_epochs, final_epochs, time_budget_s, distill=a dict of
    fields over the task's distillation defaults or a DistillConfig used as given, ...), False exports the
    teacher as it is.
    Raises :class:`adaptc.errors.BudgetError` (with ``.report`` attached) when no candidate or artifact meets the
    budgets; the report files are written before it is raised.
    """
    t0 = time.perf_counter()
    profile = load_profile(device)
    if not 0 <= max_drop <= 1:
        raise AdaptcError(f"max_drop must be a fraction between 0 and 1 (got {max_drop})")
    if gate not in GATES:
        raise AdaptcError(f"gate must be one of {', '.join(GATES)} (got {gate!r})")
    if prefer not in PREFERS:
        raise AdaptcError(f"prefer must be one of {', '.join(PREFERS)} (got {prefer!r})")
    out_dir = Path(out) if out is not None else default_out_dir(profile)
    ensure_writable_dir(out_dir)
    clean_stale_temporaries(out_dir)
    fmts = resolve_formats(profile, formats)
    settings = ExportSettings(formats=tuple(fmts), max_drop=max_drop, gate=gate, threads=threads, runs=runs,
                              measure_host=measure_host, resume=resume, prefer=prefer)
    the_task = get_task(task, **(task_options or {}))
    search_opts = _search_options(search, the_task)
    teacher_outputs = predict_torch(the_task.model, the_task.test)
    teacher_metric, teacher_scores = _score_teacher(the_task, teacher_outputs)
    teacher_ci = mean_interval(teacher_scores) if teacher_scores is not None else None
    warnings: list[str] = []
    outcomes: dict[str, _FormatOutcome] = {}
    search_report = None
    host_threads_used = host_threads(threads or profile.cpu.threads)
    no_fit: BudgetError | None = None
    with BuildStore(out_dir / ".adaptc" / "state.sqlite") as store:
        model: nn.Module = the_task.model
        if search_opts is not None:
            from .search import run_search

            try:
                model, search_report = run_search(the_task, profile, store=store, out_dir=out_dir, seed=seed,
                                                  teacher_outputs=teacher_outputs,
                                                  options=search_opts)
            except BudgetError as e:
                no_fit, search_report = e, getattr(e, "search", None)
        if no_fit is None:
            builder = ArtifactBuilder(model=model, task=the_task, profile=profile, out_dir=out_dir, store=store,
                                      settings=settings, teacher_outputs=teacher_outputs)
            outcomes = builder.run(fmts)
            warnings += builder.warnings
    if no_fit is not None:
        chosen, status, reason = None, "no_fit", str(no_fit)
    else:
        chosen, status, reason = _choose(profile, fmts, outcomes, prefer)
    artifacts = [r for f in fmts if f in outcomes for r in outcomes[f].reports]
    for f in outcomes:
        c = outcomes[f].chosen
        if c is None:
            errs = [r.error for r in outcomes[f].reports if r.error]
            warnings.append(f"format {f}: no artifact emitted" + (f" ({errs[0]})" if errs else ""))
    if status == "ok" and any(outcomes[f].chosen is None for f in outcomes):
        status, reason = "partial", partial_reason(list(outcomes), outcomes)
    for r in artifacts:
        r.chosen = chosen is not None and r.file == chosen.file
    report = BuildReport(
        adaptc_version=__version__,
        created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration_s=time.perf_counter() - t0,
        status=status,
        status_reason=reason,
        out_dir=str(out_dir.resolve()),
        device=profile.model_dump(mode="json"),
        task=TaskReport(
            name=the_task.name, description=the_task.description, metric_name=the_task.metric_name,
            kind=the_task.kind, test_fingerprint=data_fingerprint(the_task.test),
            teacher=TeacherReport(params=sum(p.numel() for p in the_task.model.parameters()),
                                  metric=_q_torch_metric(the_task, teacher_metric, teacher_ci,
                                                         len(teacher_scores) if teacher_scores is not None else 0),
                                  info={k: v for k, v in the_task.info.items()}),
        ),
        host=host_info(),
        toolchain=toolchain_versions(),
        settings={**settings.to_dict(), "host_threads": host_threads_used, "seed": seed,
                  "search": search_opts is not None, "task_options": dict(task_options or {})},
        artifacts=artifacts,
        chosen=chosen.file if chosen else None,
        chosen_per_format={f: o.chosen.file for f, o in outcomes.items() if o.chosen is not None},
        search=search_report,
        warnings=warnings,
    )
    write_report(report, out_dir)
    if status == "no_fit":
        err = BudgetError(reason or "no artifact meets the budgets")
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report


def _score_teacher(task: Task, outputs: np.ndarray) -> tuple[float, np.ndarray | None]:
    """The teacher's test metric and per-sample scores. A task's own metric or sample_scores that raises is bad
    input (a one-line error naming the function), not an internal failure."""
    which = "metric"
    try:
        metric = float(task.metric(outputs, task.test))
        which = "sample_scores"
        return metric, task.per_sample(outputs, task.test, metric)
    except Exception as e:
        raise AdaptcError(f"task {task.name}: its {which} raised {type(e).__name__}: {e} (on the teacher's outputs "
                          f"for the {len(task.test)}-sample test split)") from e


def _search_options(search: "bool | dict[str, Any] | Any", task: Task) -> Any:
    if search is False or search is None:
        return None
    from .search import SearchOptions, resolve_options

    if search is True or isinstance(search, (dict, SearchOptions)):
        return resolve_options(task, search)
    raise AdaptcError(f"search must be True, False or a dict of options (got {type(search).__name__})")


def write_report(report: BuildReport, out_dir: Path) -> None:
    atomic_write_json(out_dir / "report.json", report.model_dump(mode="json"))
    atomic_write_text(out_dir / "report.md", render(report))
