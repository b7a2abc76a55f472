"""One model exported to the requested formats: per format the fp32 reference first, then the schemes the choice
policy asks for (:mod:`.choice`), each artifact through its stages (:mod:`.steps`) and recorded in the build
store, so an interrupted build resumes without redoing finished artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..core import progress
from ..core.io import path_size, sha256_path
from ..core.ptq import Effort, PTQConfig
from ..core.quantity import Gate, Prefer, Quantity
from ..core.schemes import get_scheme
from ..core.versions import toolchain_versions
from ..errors import AdaptcError, ExportError
from ..exporters import ExportRequest, get_exporter
from ..measure import HostMeasurement, host_threads, measure
from ..profiles import DeviceProfile
from ..quant.equalize import EQUALIZE_REVISION
from ..report import ArtifactReport
from ..store import BuildStore, data_fingerprint, model_fingerprint, scores_key, stable_hash
from ..tasks import Task, predict_torch
from . import steps
from .choice import FormatOutcome, choose_in_format, scheme_chain
from .ptq import Walk, float_layer_table, walk

#: a new artifact record is needed when these change
_ARTIFACT_RECORD_VERSION = 5


@dataclass
class ExportSettings:
    formats: tuple[str, ...] | None = None
    #: largest accepted metric drop of an artifact against the torch model it came from (fraction: 0.01 = 1 point)
    max_drop: float = 0.01
    #: how the gate reads the drop: the drop itself, or its 95% interval (adaptc.core.quantity.GATE_RULES)
    gate: Gate = "point"
    threads: int | None = None
    runs: int = 100
    warmup: int = 10
    measure_host: bool = True
    resume: bool = True
    #: prefer the fp32 artifact when the int8 one is measured slower on the host runtime (``prefer="first"``)
    int8_guardrail: bool = True
    #: which passing artifact a format ships (adaptc.core.quantity.PREFER_RULES)
    prefer: Prefer = "first"
    #: how hard the static int8 schemes try to pass the gate (adaptc.core.ptq.EFFORTS, build/ptq.py)
    quant_effort: Effort = "default"
    #: the first post-training quantization attempt of each static int8 scheme (None: the format's defaults)
    ptq: PTQConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (list(v) if isinstance(v, tuple) else v.to_dict() if isinstance(v, PTQConfig) else v)
            for k, v in self.__dict__.items()
        }


class ArtifactBuilder:
    """Exports one model to the requested formats and checks, measures and estimates every artifact."""

    def __init__(
        self,
        *,
        model: nn.Module,
        task: Task,
        profile: DeviceProfile,
        out_dir: Path,
        store: BuildStore,
        settings: ExportSettings,
        stem: str = "model",
        teacher_outputs: np.ndarray | None = None,
    ):
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
        #: ``time.monotonic()`` by which the build's time budget ends (None: no budget): the PTQ walks stop there
        self.deadline: float | None = None
        self.fingerprint = model_fingerprint(model, task.example_inputs)
        #: artifacts are calibrated on the training split and scored on the test split
        self.data_fp = data_fingerprint(task.train, task.test)
        # the torch outputs artifacts are checked against: the teacher's when the model is the teacher (--no-search)
        self._reference: np.ndarray | None = teacher_outputs if model is task.model else None
        self._proxy: Any = None  # cost of the model's fp32 ONNX graph, for formats without an analyzer
        #: per-sample test scores of each checked artifact (by file name): drops against the fp32 artifact are paired
        self._scores: dict[str, np.ndarray] = {}
        self.warnings: list[str] = []
        #: the equalized model per weight granularity (per channel or not), and what equalization did
        self._equalized: dict[bool, tuple[nn.Module, dict[str, Any]]] = {}
        #: layer sensitivity tables per (per channel, equalized)
        self._sensitivity: dict[tuple[bool, bool], list[dict[str, Any]]] = {}

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def reference_outputs(self) -> np.ndarray:
        if self._reference is None:
            self._reference = predict_torch(self.model, self.task.test)
        return self._reference

    def run(self, formats: Sequence[str]) -> dict[str, FormatOutcome]:
        return {fmt: self._format(fmt) for fmt in formats}

    def _format(self, fmt: str) -> FormatOutcome:
        try:
            exporter = get_exporter(fmt)
        except AdaptcError as e:
            return FormatOutcome(
                reports=[
                    ArtifactReport(
                        file=f"{self.stem}.{fmt}", format=fmt, scheme="-", precision="-", status="failed", error=str(e)
                    )
                ]
            )
        fp32 = self._artifact(exporter, "fp32", None)
        return choose_in_format(
            scheme_chain(self.profile, exporter.schemes()),
            fp32,
            lambda scheme: self._scheme(exporter, scheme, fp32),
            prefer=self.settings.prefer,
            device=self.profile.name,
            guardrail=self.settings.int8_guardrail,
            measure_pair=lambda a, b: (
                self._measure(self.out_dir / a.file, exporter.runtime).latency_ms_median,
                self._measure(self.out_dir / b.file, exporter.runtime).latency_ms_median,
            ),
        )

    def _key(self, fmt: str, scheme: str, revision: int = 0, ptq: PTQConfig | None = None) -> str:
        s = self.settings
        return stable_hash(
            {
                "v": _ARTIFACT_RECORD_VERSION,
                "model": self.fingerprint,
                "data": self.data_fp,
                "task": self.task.name,
                "format": fmt,
                "scheme": scheme,
                "max_drop": s.max_drop,
                "threads": self.threads,
                "runs": s.runs,
                "warmup": s.warmup,
                "measure": s.measure_host,
                "device": self.profile.model_dump(mode="json"),
                "toolchain": toolchain_versions(),
                "stem": self.stem,
                # only when not the default: records made before the option existed keep their keys
                **({"gate": s.gate} if s.gate != "point" else {}),
                **({"recipe_revision": revision} if revision else {}),
                **({"ptq": ptq.to_dict()} if ptq is not None and ptq != PTQConfig() else {}),
                **({"equalize_revision": EQUALIZE_REVISION} if ptq is not None and ptq.equalize else {}),
            }
        )

    def _resumed(
        self, key: str, fname: str, dest: Path, scheme: str, rejected_ok: bool = False
    ) -> ArtifactReport | None:
        """The stored record of a finished artifact whose file is still as recorded (or that failed; or, for an
        attempt of the PTQ walk, that was rejected: a later attempt wrote over its file), else None."""
        rec = self.store.get(key)
        ok_without_file = rec is not None and (
            rec.get("status") == "failed" or (rejected_ok and rec.get("status") == "rejected")
        )
        if rec is None or not (ok_without_file or (dest.exists() and rec.get("sha256") == sha256_path(dest))):
            return None
        progress.current().message(f"[dim]resume: {fname} ({scheme}) already done[/dim]")
        scores = self.store.get(scores_key(key))
        if scores is not None:
            self._scores[fname] = np.asarray(scores["scores"], dtype=np.float64)
        return ArtifactReport.model_validate(rec)

    def _artifact(
        self, exporter: Any, scheme: str, fp32: ArtifactReport | None, ptq: PTQConfig | None = None, resume: bool = True
    ) -> ArtifactReport:
        fmt = exporter.format
        fname = exporter.filename(scheme, self.stem)
        dest = self.out_dir / fname
        key = self._key(fmt, scheme, exporter.revision(scheme), ptq)
        walking = ptq is not None
        if resume and self.settings.resume and (done := self._resumed(key, fname, dest, scheme, walking)) is not None:
            return done
        moves = f" ({ptq.describe()})" if ptq is not None and ptq != PTQConfig() else ""
        step = progress.current().step(f"{fmt} {scheme}{moves}: export, parity, measure", total=4)
        sch = get_scheme(scheme)
        rep = ArtifactReport(
            file=fname, format=fmt, scheme=scheme, precision=sch.precision, status="ok", toolchain=toolchain_versions()
        )
        model, fp32_file = self.model, (self.out_dir / fp32.file) if fp32 is not None and fp32.status == "ok" else None
        if ptq is not None and ptq.equalize:
            # a different torch model: the format's fp32 file of the original is no starting point
            model, fp32_file = self._equalized_model(sch.per_channel), None
        request = ExportRequest(
            model=model,
            example_inputs=self.task.example_inputs,
            input_names=self.task.input_names,
            output_names=self.task.output_names,
            calibration=self.task.train,
            fp32_artifact=fp32_file,
            **({"ptq": ptq} if ptq is not None else {}),
        )
        try:
            exported = exporter.export(request, scheme, dest)
        except Exception as e:  # contained: this artifact fails, the build goes on with the others
            msg = (
                str(e)
                if isinstance(e, ExportError)
                else (f"{fmt}: the converter failed for {scheme}: {type(e).__name__}: {str(e).strip()[:300]}")
            )
            rep.status, rep.error = "failed", msg
            step.done(f"failed: {msg}")
            self.store.put(key, "artifact", rep.model_dump(mode="json"))
            return rep
        step.advance(1, note="exported")
        rep.recipe = exported.recipe
        if ptq is not None and ptq.equalize:
            rep.recipe["equalization"] = self._equalized[sch.per_channel][1]
        rep.converter = exported.recipe.get("converter")
        if exported.precision:
            rep.precision = exported.precision
        rep.flags.extend(exported.notes)
        rep.sha256 = sha256_path(dest)
        rep.reproducible = exporter.reproducible
        rep.size = Quantity.counted(path_size(dest), "bytes", "size of the file on disk")
        try:
            rep.structure = exporter.describe(dest)
        except Exception as e:  # describing is informative only
            rep.flags.append(f"could not describe the file: {e}")
        steps.verify(rep, exporter, request, dest, scheme)
        cost, proxy = steps.analyse(rep, dest, self._proxy_cost)
        steps.parity(
            rep,
            exporter.runtime,
            dest,
            fp32,
            task=self.task,
            reference=self.reference_outputs,
            teacher_outputs=self.teacher_outputs,
            threads=self.threads,
            max_drop=self.settings.max_drop,
            gate=self.settings.gate,
            scores=self._scores,
            warn=self._warn,
        )
        step.advance(1, note="parity")
        if self.settings.measure_host and rep.status != "failed" and not (walking and rep.status == "rejected"):
            steps.measure_host(rep, exporter.runtime, dest, self._measure)
        step.advance(1, note="measured")
        steps.estimate(rep, exporter.runtime, cost, self.profile, proxy_precision=rep.precision if proxy else None)
        step.advance(1)
        step.done(steps.summary(rep, self.task.metric_name))
        if fname in self._scores:  # before the record: a resumed artifact finds its scores with it
            self.store.put(scores_key(key), "scores", {"scores": self._scores[fname].tolist()})
        self.store.put(key, "artifact", rep.model_dump(mode="json"))
        return rep

    def _scheme(self, exporter: Any, scheme: str, fp32: ArtifactReport | None) -> ArtifactReport:
        """One scheme's artifact; a static int8 scheme walks the PTQ moves (build/ptq.py) until one passes."""
        sch = get_scheme(scheme)
        if not sch.needs_calibration:
            return self._artifact(exporter, scheme, fp32)
        from ..quant.registry import calibrations_for, default_calibration_for

        w = walk(
            lambda cfg: self._artifact(exporter, scheme, fp32, cfg),
            effort=self.settings.quant_effort,
            calibrations=[
                c for c in calibrations_for(exporter.format) if c != default_calibration_for(exporter.format)
            ],
            ranked_layers=lambda eq: [r["name"] for r in self._layer_table(sch.per_channel, eq)],
            first=self.settings.ptq,
            default_calibration=default_calibration_for(exporter.format),
            note=lambda m: progress.current().message(f"[yellow]{exporter.format} {scheme}: {m}[/yellow]"),
            deadline=self.deadline,
        )
        cfg, last = w.attempts[-1]
        dest = self.out_dir / last.file
        if last.sha256 is not None and not (dest.exists() and sha256_path(dest) == last.sha256):
            # a rejected attempt resumed from the store whose file a later attempt of an earlier, longer walk
            # wrote over (the effort changed): made again, so the file on disk is the one reported
            w.attempts[-1] = (cfg, self._artifact(exporter, scheme, fp32, cfg, resume=False))
        return self._walked(w, sch.per_channel)

    def _walked(self, w: Walk, per_channel: bool) -> ArtifactReport:
        """The walk's last attempt (the one that passed, or the last tried: its file is the one on disk), with the
        attempts and, for a mixed-precision file, its float layers in the recipe."""
        cfg, rep = w.attempts[-1]
        if len(w.attempts) > 1 or w.stopped:
            rep.recipe["ptq_attempts"] = w.summary()
            if w.stopped:
                rep.recipe["ptq_stopped"] = w.stopped
            verb = "passed the parity gate" if rep.status == "ok" else "was still rejected"
            rep.flags.append(
                f"post-training quantization: {len(w.attempts)} attempts, the last ({w.moves(cfg)}) {verb}"
            )
        rep.recipe["ptq"] = cfg.to_dict()
        if cfg.float_layers:
            table = {r["name"]: r for r in self._layer_table(per_channel, cfg.equalize)}
            layers = float_layer_table(
                cfg.float_layers,
                {n: r["macs"] for n, r in table.items()},
                {n: r["params"] for n, r in table.items()},
                {n: r["kind"] for n, r in table.items()},
                bytes_saved=1.0 if rep.format == "coreml" else 3.0,  # CoreML keeps float layers in fp16
            )
            first = w.attempts[0][1]
            if rep.size is not None and first.size is not None and first.size.value is not None:
                layers["size_cost_bytes"] = (rep.size.value or 0) - first.size.value
            if rep.device is not None and first.device is not None:
                layers["device_latency_cost_ms"] = (rep.device.latency.value or 0) - (first.device.latency.value or 0)
            rep.recipe["float_layers"] = layers
        return rep

    def _equalized_model(self, per_channel: bool) -> nn.Module:
        if per_channel not in self._equalized:
            from ..quant.equalize import equalize

            step = progress.current().step("equalization + bias correction (torch model)", total=1)
            model, info = equalize(self.model, self.task.train, per_channel=per_channel)
            step.done(f"{len(info.equalized_pairs)} layer pairs, {info.corrected_biases} biases corrected")
            self._equalized[per_channel] = (model, info.to_dict())
        return self._equalized[per_channel][0]

    def _layer_table(self, per_channel: bool, equalized: bool) -> list[dict[str, Any]]:
        """Quantizable layers, most int8-sensitive first (stored: a resumed build does not measure them again)."""
        k = (per_channel, equalized)
        if k not in self._sensitivity:
            key = stable_hash(
                {"v": 1, "sensitivity": self.fingerprint, "data": self.data_fp, "pc": per_channel, "eq": equalized}
                | ({"equalize_revision": EQUALIZE_REVISION} if equalized else {})
            )
            rec = self.store.get(key)
            if rec is None:
                from ..quant.sensitivity import layer_sensitivity, quantizable_layers

                model = self._equalized_model(per_channel) if equalized else self.model
                n = len(quantizable_layers(model))
                step = progress.current().step("int8 sensitivity of each layer", total=n)
                rows = layer_sensitivity(
                    model,
                    self.task.train,
                    per_channel=per_channel,
                    classification=self.task.kind == "classification",
                    progress=lambda i, n: step.advance(1),
                )
                step.done(f"{len(rows)} layers")
                rec = {"layers": [r.to_dict() for r in rows]}
                self.store.put(key, "sensitivity", rec)
            self._sensitivity[k] = list(rec["layers"])
        return self._sensitivity[k]

    def _proxy_cost(self) -> Any:
        if self._proxy is None:
            import tempfile

            from ..analysis import analyze
            from ..exporters.onnx import export_onnx_fp32

            with tempfile.TemporaryDirectory(prefix="adaptc-cost-") as d:
                p = export_onnx_fp32(
                    self.model,
                    self.task.example_inputs,
                    Path(d) / "proxy.onnx",
                    self.task.input_names,
                    self.task.output_names,
                )
                self._proxy = analyze(p)
        return self._proxy

    def _measure(self, path: Path, runtime: str) -> HostMeasurement:
        """One host measurement of ``path`` (a fresh subprocess) with the build's inputs, threads and runs."""
        return measure(
            path,
            runtime,
            [x.numpy() for x in self.task.example_inputs],
            threads=self.threads,
            runs=self.settings.runs,
            warmup=self.settings.warmup,
        )
