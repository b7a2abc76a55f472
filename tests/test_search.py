"""The student search: cost filter, successive halving, Pareto set, trial store, resume, determinism, bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import adaptc
from adaptc.errors import AdaptcError, BudgetError
from adaptc.profiles import shipped_profile_dir
from adaptc.report.search_md import why_text

from .conftest import ROOT, run_cli
from .test_slim import _Embedder

FAST = ["--widths", "1,0.5,0.25", "--rung-epochs", "1,2", "--final-epochs", "3", "--formats", "onnx", "--runs", "10"]
FAST_OPTS = {"widths": (1.0, 0.5, 0.25), "rung_epochs": (1, 2), "final_epochs": 3}


@pytest.fixture(scope="module")
def search_build(tmp_path_factory: pytest.TempPathFactory, digits_task) -> tuple[Path, adaptc.BuildReport]:
    out = tmp_path_factory.mktemp("search") / "pixel8"
    rep = adaptc.build("digits", "pixel8", out, formats=["onnx"], runs=10, search=FAST_OPTS, seed=3)
    return out, rep


def test_search_report_has_pareto_and_choice(search_build) -> None:
    out, rep = search_build
    s = rep.search
    assert s is not None
    assert len(s.candidates) == 3 * 4  # 3 widths x the profile's 4 schemes (fp32 included)
    assert all(c.reason and c.verdicts for c in s.candidates)
    assert s.pareto and any(p.chosen for p in s.points)
    ch = s.chosen
    assert ch is not None and ch.candidate in {p.key for p in s.points}
    assert "fastest" in why_text(s, "pixel8", "accuracy")
    assert ch.width in (1.0, 0.5, 0.25) and ch.test > 0.8
    # the test figure with its sampling error, and the retention of the teacher's (paired over the test samples)
    assert ch.test_ci95[0] <= ch.test <= ch.test_ci95[1]
    assert ch.test_retention == pytest.approx(ch.test / rep.task.teacher.metric.value)
    assert ch.test_retention_ci95[0] <= ch.test_retention <= ch.test_retention_ci95[1]
    # each figure says what it was measured on (with QAT, validation is the fake-quantized best epoch's)
    assert ch.val_measured.startswith("torch") and ch.test_measured.startswith("torch, final student")
    assert ("fake-quantized" in ch.val_measured) == ch.qat
    # validation figures with their sampling error; finalists' paired gaps to the best finalist
    assert ch.val_ci95[0] <= ch.val <= ch.val_ci95[1]
    pts = s.points
    assert all(p.val_ci95[0] <= p.val <= p.val_ci95[1] for p in pts)
    top = max(p.val for p in pts if p.rung == max(q.rung for q in pts))
    for p in pts:
        if p.val_gap_ci95 is not None:
            assert p.val_gap == pytest.approx(top - p.val) and p.val_gap_ci95[0] <= p.val_gap <= p.val_gap_ci95[1]
    assert isinstance(ch.finalists_within_noise, list)
    assert all(any(p.skeleton == k and p.val_gap_ci95[0] <= 0 for p in pts) for k in ch.finalists_within_noise)
    assert (out / "pareto.png").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "## Student search" in md and "pareto.png" in md and "of the teacher's" in md
    assert rep.status == "ok" and rep.chosen  # the chosen student was exported and gated
    a = rep.chosen_artifact
    assert a is not None and a.parity is not None and a.parity.passed
    # the student's artifact, against the teacher's outputs on the test split
    assert 0.7 < a.parity.teacher_top1_agreement <= 1 and -1 <= a.parity.teacher_cosine <= 1
    assert "top-1 " in md


def test_trials_recorded_and_rerun_resumes(search_build, digits_task) -> None:
    out, rep = search_build
    db = out / ".adaptc" / "state.sqlite"
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    assert n >= 3 + 1  # rung 0 for every skeleton (one survivor needs no rung 1), the final training
    t0 = time.perf_counter()
    rep2 = adaptc.build("digits", "pixel8", out, formats=["onnx"], runs=10, search=FAST_OPTS, seed=3)
    assert time.perf_counter() - t0 < 60
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == n  # nothing retrained
    assert rep2.search.chosen.candidate == rep.search.chosen.candidate
    assert rep2.search.chosen.val == rep.search.chosen.val
    # the chosen student, loaded back from the build folder (what benchmarks evaluate)
    from adaptc.errors import AdaptcError
    from adaptc.search.trials import TrialStore

    student = TrialStore.open_final(out)
    n = sum(p.numel() for p in student.parameters())
    assert 0 < n < sum(p.numel() for p in digits_task.model.parameters())
    assert student(*digits_task.example_inputs).shape == digits_task.model(*digits_task.example_inputs).shape
    with pytest.raises(AdaptcError, match="not an adaptc build folder"):
        TrialStore.open_final(out / "nowhere")
    assert not (out / "nowhere").exists()


def test_rerun_on_other_training_data_retrains(search_build, digits_task, tmp_path: Path) -> None:
    """Stored trials are keyed by the data they learned from: the same task name with another training split
    in the same build folder trains again instead of resuming."""
    import dataclasses
    import shutil

    out, _ = search_build
    shutil.copytree(out, tmp_path / "b")
    db = tmp_path / "b" / ".adaptc" / "state.sqlite"
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    other = dataclasses.replace(digits_task, train=digits_task.train.subset(slice(0, len(digits_task.train) - 50)))
    adaptc.build(other, "pixel8", tmp_path / "b", formats=["onnx"], runs=10, search=FAST_OPTS, seed=3,
                 measure_host=False)
    with sqlite3.connect(db) as c:
        # trained again: rung 0 of each of the 3 skeletons and the final training (later rungs depend on the scores)
        assert c.execute("SELECT COUNT(*) FROM trials").fetchone()[0] >= n + 3 + 1


def test_same_seed_same_choice(search_build, tmp_path: Path) -> None:
    _, rep = search_build
    again = adaptc.build("digits", "pixel8", tmp_path / "again", formats=["onnx"], runs=10, search=FAST_OPTS, seed=3,
                         measure_host=False)
    assert again.search.chosen.candidate == rep.search.chosen.candidate
    assert again.search.scores == rep.search.scores


def test_no_candidate_fits(tmp_path: Path) -> None:
    prof = yaml.safe_load((shipped_profile_dir() / "pixel8.yaml").read_text())
    prof["name"] = "tiny"
    prof["budgets"] = {"max_latency_ms": 0.001, "max_model_mb": 0.001}
    f = tmp_path / "tiny.yaml"
    f.write_text(yaml.safe_dump(prof))
    r = run_cli("build", "--device", str(f), "--out", str(tmp_path / "o"), *FAST)
    assert r.returncode == 2, r.stderr[-2000:]
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("adaptc: error:")]
    assert len(line) == 1 and "no student candidate meets every budget of tiny; nearest:" in line[0]
    assert "max_latency_ms" in line[0] and "w0.125-d0" in line[0]  # the grid (down to x0.25), then x0.125, tried
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["status"] == "no_fit" and rep["search"]["pareto"] and rep["artifacts"] == []
    # the narrowest skeletons already break the size budget: the wider ones are not exported (they break it too)
    assert {c["candidate"]["width"] for c in rep["search"]["candidates"]} == {0.25, 0.125}
    skipped = rep["search"]["not_costed"]
    assert {d["skeleton"] for d in skipped} == {"w1-d0", "w0.5-d0"}
    assert all("w0.25-d0" in d["reason"] and "max_model_mb" in d["reason"] for d in skipped)


@pytest.mark.parametrize("args,words", [
    (["--widths", "1,1.5"], "width multipliers must be in (0, 1]"),
    (["--widths", "0,0.5"], "width multipliers must be in (0, 1]"),
    (["--time-budget", "0.01"], "allows no trial"),
    (["--domain-data", "/nonexistent/domain.npz"], "domain data file /nonexistent/domain.npz does not exist"),
    (["--ablate", "kd,magic"], "unknown loss term 'magic'"),
    (["--loss-weights", "hidden=lots"], "--loss-weights wants term=weight pairs"),
    (["--loss-weights", "kd=-1"], "loss weight kd must be a number >= 0"),
])
def test_bad_search_input(tmp_path: Path, args: list[str], words: str) -> None:
    r = run_cli("build", "--device", "pixel8", "--out", str(tmp_path / "o"), "--formats", "onnx", *args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert words in r.stderr and "Traceback" not in r.stderr


def test_loss_weights_change_single_terms_over_the_task_defaults() -> None:
    """--ablate / --loss-weights change single terms of the task's own loss weights (minilm distils with the
    embedding term alone), not of the global default."""
    from types import SimpleNamespace

    from adaptc.distill import LossWeights
    from adaptc.errors import AdaptcError
    from adaptc.search import resolve_config as resolve_options
    from adaptc.tasks.minilm import SEARCH_DEFAULTS

    minilm = SimpleNamespace(search_defaults=SEARCH_DEFAULTS)
    assert resolve_options(minilm, True).distill.weights == LossWeights(0, 1, 0, 0, 0)
    w = resolve_options(minilm, {"loss_weights": {"hidden": 1, "attention": 0.5}}).distill.weights
    assert w == LossWeights(ce=0, kd=1, hidden=1, attention=0.5, relation=0)
    plain = SimpleNamespace(search_defaults=None)
    assert resolve_options(plain, {"loss_weights": {"ce": 0}}).distill.weights == LossWeights(ce=0)
    with pytest.raises(AdaptcError, match="unknown loss term"):
        resolve_options(plain, {"loss_weights": {"magic": 1}})


def test_distill_options_dict_over_task_defaults_config_as_given() -> None:
    """A dict of distillation options changes single fields over the task's defaults; a DistillConfig is used as
    given, even where it sets a field to the global default (lr 3e-3 explicitly, on a task whose default is 3e-4)."""
    from types import SimpleNamespace

    from adaptc.distill import DistillConfig, LossWeights
    from adaptc.errors import AdaptcError
    from adaptc.search import resolve_config as resolve_options
    from adaptc.tasks.minilm import SEARCH_DEFAULTS

    minilm = SimpleNamespace(search_defaults=SEARCH_DEFAULTS)
    d = resolve_options(minilm, {"distill": {"lr": 1e-3}}).distill
    assert (d.lr, d.batch_size, d.embeddings, d.weights) == (1e-3, 32, "lazy", LossWeights(0, 1, 0, 0, 0))
    given = DistillConfig(lr=3e-3, weights=LossWeights())
    d = resolve_options(minilm, {"distill": given, "loss_weights": {"relation": 0}}).distill
    assert (d.lr, d.batch_size, d.embeddings, d.weights) == (3e-3, 64, "dense", LossWeights(relation=0))
    with pytest.raises(AdaptcError, match="bad distillation option"):
        resolve_options(minilm, {"distill": {"embeddings": "sideways"}})
    with pytest.raises(AdaptcError, match="bad distillation option"):
        resolve_options(minilm, {"distill": {"learning_rate": 1}})


def test_untraceable_teacher_exit_2(tmp_path: Path) -> None:
    r = run_cli("build", "--device", "pixel8", "--task", "untraceable_task:make_task", "--out", str(tmp_path / "o"),
                *FAST, env={"PYTHONPATH": str(ROOT / "tests" / "data")})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Torch-Pruning" in r.stderr and "mixer" in r.stderr and "Traceback" not in r.stderr


def test_killed_build_resumes(tmp_path: Path, digits_task) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "adaptc", "-q", "build", "--device", "pixel8", "--out", str(out), *FAST]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    db = out / ".adaptc" / "state.sqlite"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if db.exists():
            try:
                with sqlite3.connect(db) as c:
                    done = c.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
            except sqlite3.Error:
                continue
            if done >= 1:
                break
    assert proc.poll() is None, "the build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done >= 1 and not (out / "report.json").exists()
    r = run_cli("build", "--device", "pixel8", "--out", str(out), *FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "already done" in r.stderr
    assert not list(out.rglob(".adaptc-tmp-*"))


def _tiny_embed_task(vocab: int):  # noqa: ANN202
    """An embedding task over random token ids (96 training texts, 16 retrieval pairs) with an :class:`_Embedder`
    teacher of ``vocab`` words."""
    from adaptc.tasks.base import Split, Task
    from adaptc.tasks.minilm import recall_at_1

    torch.manual_seed(0)
    teacher = _Embedder(vocab=vocab).eval()
    ids = torch.randint(1, vocab, (96, 16))
    pair = Split((ids[:32],), torch.arange(16).repeat(2))
    return Task(name="tiny-embed", model=teacher, example_inputs=(ids[:1],), train=Split((ids,)), val=pair,
                test=pair, metric=recall_at_1, metric_name="R@1", kind="embedding", input_names=("ids",),
                output_names=("embedding",))


def test_cost_filter_skips_only_skeletons_that_break_a_size_budget(tmp_path: Path) -> None:
    """Skeletons at least as wide and deep as one whose every candidate breaks a FLOPs or model-size budget are
    not exported; costed anyway, each of them does break that budget, and every other skeleton is costed."""
    from adaptc.profiles import load_profile
    from adaptc.search import Search, SearchConfig
    from adaptc.store import BuildStore

    task = _tiny_embed_task(vocab=500)
    base = load_profile("pixel8")
    opts = SearchConfig(widths=(1.0, 0.75, 0.5, 0.25), max_blocks_dropped=1, plot=False)

    def search(**budgets: float | None) -> Search:
        prof = base.model_copy(update={"budgets": base.budgets.model_copy(update=budgets)})
        return Search(task, prof, BuildStore(tmp_path / "s.sqlite"), tmp_path, 0, opts)

    free = search(max_latency_ms=None, max_peak_memory_mb=None, max_model_mb=None, max_mflops=None)
    specs = free.specs()
    every = free.costs(specs)
    assert len(every) == len(specs) == 8 and not free.not_costed
    mflops = {k: cs[0].mflops for k, cs in every.items()}
    limit = sorted(mflops.values())[2] + 1e-3  # the three cheapest skeletons fit
    capped = search(max_latency_ms=None, max_peak_memory_mb=None, max_model_mb=None, max_mflops=limit)
    costed = capped.costs(specs)
    assert capped.not_costed and set(costed) | set(capped.not_costed) == set(every)
    assert not set(costed) & set(capped.not_costed)
    assert all(mflops[k] > limit for k in capped.not_costed)  # the rule never hides a skeleton that fits
    assert sum(any(c.feasible for c in cs) for cs in costed.values()) == 3
    assert all("max_mflops" in why for why in capped.not_costed.values())


def test_embedding_search_narrows_hidden_size_only_when_nothing_else_fits(tmp_path: Path) -> None:
    """A size budget that cannot hold the teacher-width word-embedding table even in int8: the search falls
    back to students with a narrower hidden size (and a projection back to the embedding size)."""
    from adaptc.distill import DistillConfig
    from adaptc.profiles import load_profile
    from adaptc.search import SearchOptions, run_search
    from adaptc.slim import OutputProjection
    from adaptc.store import BuildStore

    task = _tiny_embed_task(vocab=4000)  # word embeddings dominate its size, as in MiniLM
    ids = task.train.inputs[0]
    profile = load_profile("pixel8").model_copy(update={"budgets": load_profile("pixel8").budgets.model_copy(
        update={"max_model_mb": 0.16})})
    opts = SearchOptions(widths=(0.5,), max_blocks_dropped=0, rung_epochs=(1,), final_epochs=1, plot=False, qat=False,
                         distill=DistillConfig(epochs=1, batch_size=32, lr=1e-3))
    student, section = run_search(task, profile, store=BuildStore(tmp_path / "s.sqlite"), out_dir=tmp_path,
                                  options=opts)
    assert section.options["keep_output_dim"] is False
    assert section.candidates_keeping_hidden_size and not any(
        c.feasible for c in section.candidates_keeping_hidden_size)
    assert "narrow the hidden size" in " ".join(section.log)
    assert isinstance(student, OutputProjection)
    assert student(ids[:4]).shape == (4, 48)


def test_epoch_estimate_scales_training_not_evaluation() -> None:
    from adaptc.report.schema import RungRecord
    from adaptc.search.halving import estimated_epoch_seconds

    rung = RungRecord(rung=0, epochs=1, skeletons=["a", "b"], samples=1000, full_samples=4000, seconds=50.0,
                      train_s_per_sample=0.02, eval_s=5.0)
    assert estimated_epoch_seconds([rung]) == pytest.approx(0.02 * 4000 + 5.0)
    assert estimated_epoch_seconds([rung], full=False) == pytest.approx(0.02 * 1000 + 5.0)
    old = rung.model_copy(update={"train_s_per_sample": None, "eval_s": None})  # resumed older records
    assert estimated_epoch_seconds([old]) == pytest.approx(25.0 * 4)
    assert estimated_epoch_seconds([]) is None
    by_skeleton = [rung.model_copy(update={"train_s_per_sample_by_skeleton": {"a": 0.01, "b": 0.03}})]
    b = estimated_epoch_seconds(by_skeleton, skeleton="b")
    c = estimated_epoch_seconds(by_skeleton, skeleton="c")  # not in the rung
    assert b == pytest.approx(0.03 * 4000 + 5.0) and c == pytest.approx(0.02 * 4000 + 5.0)


def test_final_epochs_fit_the_time_left_first_estimated_then_measured() -> None:
    from types import SimpleNamespace

    from adaptc.search.final import _epochs_that_fit

    s = SimpleNamespace(remaining=lambda: 1000.0)
    fit = _epochs_that_fit(s, 200.0, 8, 0.2)  # type: ignore[arg-type]
    assert fit(None, 0) == 3  # (3 + 1.25 x 1 QAT epoch) x 200 s x 1.1 fits 1000 s, 4 does not
    assert fit(100.0, 1) == 7  # the first epoch took 100 s: (6 more + 1.25) x 110 s fit, 8 (2 of QAT) do not
    assert fit(900.0, 1) == 1  # no more than the epoch done, never fewer
    no_qat = _epochs_that_fit(s, 200.0, 8, None)  # type: ignore[arg-type]
    assert no_qat(None, 0) == 4 and no_qat(None, 0) == no_qat(220.0, 0)


def test_time_budgeted_final_fits_epochs_after_the_teachers_pass_and_resumes(tmp_path: Path) -> None:
    """Under a time budget the final training's epoch count is decided once the teacher's cached pass is done
    (its cost measured, not guessed from the rungs), and the stored final is found again on a rerun with another
    time left (it is keyed without its epoch count), so nothing is retrained."""
    from adaptc.distill import DistillConfig
    from adaptc.distill import cache as tc
    from adaptc.profiles import load_profile
    from adaptc.search import SearchOptions, run_search
    from adaptc.store import BuildStore

    task = _tiny_embed_task(vocab=500)

    def search(budget_s: float) -> Any:
        opts = SearchOptions(widths=(0.5,), max_blocks_dropped=0, rung_epochs=(1,), final_epochs=3, plot=False, qat=False,
                             time_budget_s=budget_s, distill=DistillConfig(epochs=1, batch_size=32, lr=1e-3))
        return run_search(task, load_profile("pixel8"), store=BuildStore(tmp_path / "s.sqlite"), out_dir=tmp_path,
                          options=opts)[1]

    tc._CACHES.clear()
    first = search(3600)
    assert first.chosen.final_epochs == 3  # time to spare: all of them
    with sqlite3.connect(tmp_path / "s.sqlite") as c:
        n = c.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    again = search(1800)
    with sqlite3.connect(tmp_path / "s.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == n
    assert again.chosen.val == first.chosen.val and again.chosen.final_epochs == 3
