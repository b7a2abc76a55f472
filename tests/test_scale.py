"""Real scale (issue 27): per-epoch checkpoints and resume, the teacher cache for fixed-shape inputs (memory or
disk, one pass for rungs and the final training), the time budget's plan, the threads rule, interrupted builds."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import run_cli


def _digits_fixed(digits_task):  # noqa: ANN001, ANN202
    """The digits task without its augmentation (fixed training inputs: the teacher's outputs can be cached)."""
    return replace(digits_task, augment=None)


def _student(task):  # noqa: ANN001, ANN202
    from adaptc.slim import extract_skeleton

    return extract_skeleton(task.model, task.example_inputs, width=0.5).model


def test_interrupted_distillation_resumes_after_its_last_finished_epoch(digits_task, tmp_path: Path) -> None:
    """An epoch checkpoint holds everything the next epoch depends on: a run stopped after epoch 2 and resumed
    trains the remaining epochs exactly as an uninterrupted run does (same history, same weights)."""
    from adaptc.distill import DistillConfig, distill

    task = digits_task  # (with its augmentation: the batch order's and the augmentation's random state resume)
    cfg = DistillConfig(epochs=4, seed=3, batch_size=64)
    whole = distill(copy.deepcopy(_student(task)), task.model, task, cfg)

    ckpt = tmp_path / "trial.epochs.pt"

    def stop_after_two(epoch: int, val: float) -> None:
        if epoch == 2:  # (called once epoch 2 is evaluated, before its checkpoint: epochs 0 and 1 are saved)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(copy.deepcopy(_student(task)), task.model, task, cfg, checkpoint=ckpt, on_epoch=stop_after_two)
    assert ckpt.exists()
    resumed = distill(copy.deepcopy(_student(task)), task.model, task, cfg, checkpoint=ckpt)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert [h.get("val") for h in resumed.history] == [h.get("val") for h in whole.history]
    assert resumed.best_val == whole.best_val
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(a, b)


def test_deadline_stops_training_and_keeps_the_best_finished_epoch(digits_task) -> None:
    from adaptc.distill import DistillConfig, distill

    task = digits_task
    res = distill(_student(task), task.model, task, DistillConfig(epochs=50, batch_size=64),
                  deadline=time.perf_counter() + 1.5)
    assert res.stopped == "time budget"
    assert 1 <= len(res.history) < 50 and res.best_val > 0


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_fixed_shape_teacher_cache_serves_what_the_teacher_computes(digits_task, where: str, monkeypatch) -> None:
    """Image inputs: one pass of the teacher, held in memory or (over the memory budget) in files on disk; a batch
    read from either equals the teacher's own outputs and tapped hidden states (float16 for the latter)."""
    from adaptc.distill import cache as tc
    from adaptc.distill.cache import Holding, teacher_cache
    from adaptc.distill.taps import Taps

    task = _digits_fixed(digits_task)
    tc._CACHES.clear()
    monkeypatch.setenv("ADAPTC_TEACHER_CACHE_MB", "1000" if where == "memory" else "0")
    cache = teacher_cache(task.model, task.train, task.example_inputs, None, Holding.of())
    assert cache is not None and cache.where == where and cache.n == len(task.train)
    idx = torch.tensor([5, 0, 17, 3])
    out, cap = cache.batch(idx, None)
    with Taps(task.model, task.example_inputs) as taps, torch.no_grad():
        ref = task.model(task.train.inputs[0][idx])
        ref_hidden = list(taps.captured.hidden)
    torch.testing.assert_close(out, ref)
    assert len(cap.hidden) == len(ref_hidden)
    for h, r in zip(cap.hidden, ref_hidden):
        torch.testing.assert_close(h, r.half().float())
    tc._CACHES.clear()


def test_rung_subset_reads_the_final_trainings_teacher_cache(digits_task, monkeypatch) -> None:
    """A registered subset is served from the whole split's cache: the teacher passes over the data once."""
    from adaptc.distill import cache as tc
    from adaptc.distill.cache import Holding, register_subset, teacher_cache

    monkeypatch.setenv("ADAPTC_TEACHER_CACHE_MB", "1000")
    task = _digits_fixed(digits_task)
    tc._CACHES.clear()
    pos = torch.tensor([2, 9, 40, 41])
    sub = task.train.subset(pos)
    register_subset(sub, task.train, pos)
    passes = []
    hook = task.model.register_forward_hook(lambda m, i, o: passes.append(len(i[0])))
    try:
        whole = teacher_cache(task.model, task.train, task.example_inputs, None, Holding.of())
        n = sum(passes)
        view = teacher_cache(task.model, sub, task.example_inputs, None, Holding.of())
        assert sum(passes) == n  # no second pass
    finally:
        hook.remove()
    a, _ = view.batch(torch.tensor([0, 3]), None)
    b, _ = whole.batch(torch.tensor([2, 41]), None)
    torch.testing.assert_close(a, b)
    tc._CACHES.clear()


def test_threads_rule_by_teacher_flops(digits_task) -> None:
    from adaptc.tasks.training import MULTI_THREAD_MFLOPS, training_threads, usable_cores

    threads, mflops = training_threads(digits_task.model, digits_task.example_inputs)
    assert threads == 1 and 0 < mflops < MULTI_THREAD_MFLOPS
    big = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    threads, mflops = training_threads(big, (torch.randn(1, 3, 64, 64),))
    assert mflops >= MULTI_THREAD_MFLOPS and threads == usable_cores()


def test_width_pruning_keeps_recurrent_layers_and_narrows_the_rest() -> None:
    """Torch-Pruning breaks bidirectional LSTMs: the channel groups that reach one keep their width, the others
    are pruned, and the student runs (a CRNN-like recogniser: convs, then a BiLSTM over the columns)."""
    from adaptc.slim import count_params, prune_width

    class CRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                                       nn.ReLU(), nn.Conv2d(64, 32, 3, padding=1), nn.ReLU())
            self.rnn = nn.LSTM(32, 16, batch_first=True, bidirectional=True)
            self.head = nn.Linear(32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = self.convs(x).mean(2).permute(0, 2, 1)  # (B, W, C)
            return self.head(self.rnn(f)[0])

    torch.manual_seed(0)
    m = CRNN().eval()
    x = torch.randn(1, 1, 8, 16)
    s = prune_width(m, (x,), 0.5)
    assert s.convs[0].out_channels < 32 and s.convs[2].out_channels < 64
    assert s.rnn.input_size == 32 and s.rnn.hidden_size == 16  # the recurrent layer and its input keep their width
    assert count_params(s) < count_params(m) and s(x).shape == m(x).shape


def test_time_budget_plan_samples_fewer_when_the_teachers_pass_is_too_dear(digits_task, tmp_path: Path) -> None:
    """With measured costs that make the teacher's pass over all training samples more than a quarter of the
    budget, the plan takes a seeded subset; a tight rung 0 gets fewer samples, then epochs, then candidates;
    without a budget the plan is the configured search with its expected duration."""
    from adaptc.profiles import load_profile
    from adaptc.search import Search, SearchOptions, resolve_config
    from adaptc.search.plan import Costs, make_plan
    from adaptc.search.space import SkeletonSpec
    from adaptc.store import BuildStore

    task = _digits_fixed(digits_task)
    opts = resolve_config(task, SearchOptions(rung_epochs=(6, 18), final_epochs=10, plot=False))
    s = Search(task, load_profile("pixel8"), BuildStore(tmp_path / "s.sqlite"), tmp_path, 0, opts)
    specs = [SkeletonSpec(w, 0) for w in (1.0, 0.75, 0.5, 0.35, 0.25)]
    params = {sp.key: int(1000 * sp.width) for sp in specs}
    n = len(task.train)
    costs = Costs(teacher_s=0.01, step_s={sp.key: 0.02 * sp.width for sp in specs}, cached=True, threads=1)
    free = make_plan(s, specs, costs, params)
    assert free.budget_s is None and free.samples == n and free.rung0_epochs == 6 and len(free.skeletons) == 5
    assert free.expected_s > n * 0.01  # at least the teacher's pass
    s.deadline = time.perf_counter() + 0.01 * n  # the teacher's pass alone would take the whole budget
    tight = make_plan(s, specs, costs, params)
    assert tight.samples < n and tight.notes
    assert (tight.rung_samples, tight.rung0_epochs, len(tight.skeletons)) < (n, 6, 5)
    assert specs[0].key in tight.skeletons and specs[-1].key in tight.skeletons  # the spread keeps both ends


def test_ctrl_c_mid_build_writes_an_interrupted_report_and_a_rerun_resumes_the_trial(tmp_path: Path,
                                                                                    digits_task) -> None:
    """Ctrl-C during a trial: exit 130, report.json says "interrupted" with what finished; the rerun resumes the
    interrupted trial from its last finished epoch."""
    out = tmp_path / "b"
    args = ["build", "--device", "pixel8", "--out", str(out), "--widths", "0.5", "--rung-epochs", "30",
            "--final-epochs", "2", "--formats", "onnx", "--runs", "10", "--no-qat", "--max-drop-blocks", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "adaptc", *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    seen = ""
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if "trial" in line and "rung 0" in line and " 1/30" in line:  # an epoch of the trial finished
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, seen + rest
    assert "interrupted; finished work is kept" in rest
    rep = json.loads((out / "report.json").read_text())
    assert rep["status"] == "interrupted" and "trials_finished" in rep["progress"]
    assert list((out / ".adaptc" / "trials").glob("*.epochs.pt")), "the running trial's epoch checkpoint"
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed after epoch" in r.stderr
    assert json.loads((out / "report.json").read_text())["status"] == "ok"


def test_rung0_epochs_fit_the_rungs_share_once_the_first_epoch_is_timed() -> None:
    """The first rung-0 trial keeps its planned epochs until its first epoch is timed; then it and the trials after
    it get the most epochs that end within the rung's share (counted from the end of the teacher's pass)."""
    from adaptc.search.halving import _rung_fit

    fit = _rung_fit(100.0, trials=3, planned=6)
    assert fit(None, 0) == 6  # (the teacher's pass is done: the share starts now)
    assert fit(10.0, 1) == 3  # 10 s an epoch: (3 - 1) + 2 x 3 = 8 epochs left fit the ~100 s left, 4 would not
    assert _rung_fit(100.0, trials=3, planned=6)(None, 0) == 6
    slow = _rung_fit(5.0, trials=3, planned=6)
    slow(None, 0)
    assert slow(10.0, 1) == 1  # never fewer than one


def test_teacher_agreement_by_kind() -> None:
    """The graded tie-break of a metric: same top class per sample / per step, or the cosine of embeddings."""
    import numpy as np

    from adaptc.tasks.base import teacher_agreement

    ref = np.zeros((2, 4, 3), dtype=np.float32)
    ref[:, :, 0] = 1.0  # the teacher says class 0 (its most common, like a CTC blank) at most steps
    ref[:, 1] = [0.0, 0.0, 1.0]  # and class 2 at step 1 of both samples
    out = ref.copy()
    assert teacher_agreement(out, ref, "sequence") == 1.0
    out[0, 1] = [1.0, 0.0, 0.0]  # the student misses one of the teacher's two class-2 steps
    out[1, 3] = [0.0, 1.0, 0.0]  # and says class 1 where the teacher says 0
    # the steps where either says something else than class 0: 3; they agree on 1 (the 5 common steps do not count)
    assert teacher_agreement(out, ref, "sequence") == pytest.approx(1 / 3)
    assert teacher_agreement(out[:, 1], ref[:, 1], "classification") == pytest.approx(1 / 2)
    emb = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert teacher_agreement(emb, emb, "embedding") == pytest.approx(1.0)
    assert teacher_agreement(emb, emb[::-1].copy(), "embedding") == pytest.approx(0.0)


def test_metric_that_sees_nothing_selects_by_agreement_and_final_starts_warm(digits_task, tmp_path: Path) -> None:
    """A metric that reads 0 for every candidate (a word accuracy after a short search) cannot rank them: the
    candidate that follows the teacher closest on validation is chosen, the report says so, and the final training
    starts from that candidate's rung trial."""
    import adaptc

    task = replace(_digits_fixed(digits_task), metric=lambda out, split: 0.0, sample_scores=None)
    rep = adaptc.build(
        task, "pixel8", tmp_path / "b", formats=["onnx"], runs=5, seed=1,
        search={"widths": (0.5, 0.25, 0.125), "rung_epochs": (1,), "final_epochs": 1, "qat": False},
    )  # fmt: skip
    s = rep.search
    assert s is not None and s.chosen is not None
    fid = {p.skeleton: p.fidelity for p in s.points}
    assert all(f is not None and 0.0 < f <= 1.0 for f in fid.values())
    assert s.chosen.skeleton == max(fid, key=lambda k: fid[k])
    assert any("follows the teacher closest" in line for line in s.log), s.log
    assert s.chosen.warm_start == {"rung": "rung 0", "epochs": 1, "val": 0.0}
    assert s.chosen.fidelity is not None and s.chosen.fidelity >= fid[s.chosen.skeleton] - 0.2
    md = (tmp_path / "b" / "report.md").read_text()
    assert "starting from its rung 0 trial" in md and "agreement with the teacher" in md
