"""Distillation losses, schedules, QAT and adversarial inputs, each checked on its own; then the trainer."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adaptc.distill import (
    AdversarialConfig,
    AttentionLoss,
    DistillConfig,
    HiddenStateLoss,
    HybridLoss,
    LogitKD,
    LossWeights,
    RelationLoss,
    TemperatureSchedule,
    distill,
    evaluate,
    fold_batchnorm,
    layer_map,
    prepare_qat,
    progressive,
    strip_qat,
)
from adaptc.distill.adversarial import perturb
from adaptc.distill.qat import fake_quant_weight
from adaptc.distill.taps import Captured
from adaptc.slim import prune_width
from adaptc.tasks.zoo import TinyResNet, TransformerClassifier


def test_logit_kd_is_scaled_kl() -> None:
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    T = 3.0
    expected = (F.softmax(t / T, -1) * (F.log_softmax(t / T, -1) - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert torch.allclose(LogitKD()(s, t, T), expected, atol=1e-6)
    assert LogitKD()(t, t, T).abs() < 1e-6


def test_temperature_is_dynamic() -> None:
    sched = TemperatureSchedule(4.0, 1.5)
    ts = [float(sched(p)) for p in np.linspace(0, 1, 11)]
    assert ts[0] == pytest.approx(4.0) and ts[-1] == pytest.approx(1.5)
    assert all(a >= b for a, b in zip(ts, ts[1:])) and len(set(round(t, 4) for t in ts)) > 5
    learn = TemperatureSchedule(4.0, 1.5, learnable=True)
    assert [n for n, _ in learn.named_parameters()] == ["log_t"] and float(learn(0.7).detach()) == pytest.approx(4.0)


def test_layer_map_by_relative_depth() -> None:
    assert layer_map(2, 4) == [1, 3]
    assert layer_map(3, 6) == [1, 3, 5]
    assert layer_map(4, 4) == [0, 1, 2, 3]


def test_hidden_state_loss_projection() -> None:
    t = [torch.randn(4, 16, 32) for _ in range(4)]
    same = HiddenStateLoss([32, 32], [32, 32, 32, 32])
    assert same.mapping == [1, 3]
    assert same([t[1], t[3]], t) < 1e-10  # identity projections at equal width
    narrow = HiddenStateLoss([8, 8], [32, 32, 32, 32])
    loss = narrow([torch.randn(4, 16, 8), torch.randn(4, 16, 8)], t)
    loss.backward()
    assert loss > 0 and narrow.proj[0].weight.grad is not None
    # feature maps (B, C, H, W) go through the same projection over channels
    fm = HiddenStateLoss([8], [16])([torch.randn(2, 8, 4, 4)], [torch.randn(2, 16, 4, 4)])
    assert torch.isfinite(fm)


def test_attention_loss() -> None:
    a = torch.softmax(torch.randn(2, 4, 6, 6), -1)
    b = torch.softmax(torch.randn(2, 4, 6, 6), -1)
    loss = AttentionLoss(1, 1)
    assert loss([a], [a]) < 1e-6 and loss([b], [a]) > 0
    # different head counts: head-averaged maps
    assert loss([a[:, :2]], [a]) >= 0


def test_relation_loss_is_scale_invariant() -> None:
    t = torch.randn(16, 32)
    r = RelationLoss()
    assert r(2.5 * t, t) < 1e-6
    assert r(torch.randn(16, 32), t) > 0.01


def test_hybrid_loss_ablation() -> None:
    s_out, t_out = torch.randn(8, 5, requires_grad=True), torch.randn(8, 5)
    cap_s = Captured(hidden=[torch.randn(8, 4, 16)], attention=[torch.softmax(torch.randn(8, 2, 4, 4), -1)],
                     features=torch.randn(8, 16))
    cap_t = Captured(hidden=[torch.randn(8, 4, 32)], attention=[torch.softmax(torch.randn(8, 2, 4, 4), -1)],
                     features=torch.randn(8, 32))
    full = HybridLoss(LossWeights(), [16], [32], 1, 1)
    parts = full(s_out, t_out, cap_s, cap_t, torch.randint(0, 5, (8,)), progress=0.5,
                 stage_terms={"ce", "kd", "hidden", "attention", "relation"})
    assert set(parts.parts) == {"ce", "kd", "hidden", "attention", "relation"}
    parts.total.backward()
    only_kd = HybridLoss(LossWeights(ce=0, hidden=0, attention=0, relation=0), [16], [32], 1, 1)
    p2 = only_kd(s_out, t_out, cap_s, cap_t, None, progress=0.5, stage_terms={"ce", "kd", "hidden", "attention", "relation"})
    assert set(p2.parts) == {"kd"}


def test_progressive_schedule() -> None:
    sch = progressive(0.3)
    stages = [sch.stage_at(e, 10).name for e in range(10)]
    assert stages == ["align"] * 3 + ["transfer"] * 7
    assert "kd" not in sch.stage_at(0, 10).terms and "hidden" in sch.stage_at(0, 10).terms
    assert {"kd", "ce", "hidden"} <= sch.stage_at(9, 10).terms


def test_qat_weights_land_on_the_export_grid(tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    import onnx
    from onnx import numpy_helper

    from adaptc.exporters.onnx import export_onnx_fp32

    torch.manual_seed(0)
    m = TinyResNet(widths=(8, 16), blocks_per_stage=1).eval()
    q = prepare_qat(fold_batchnorm(m))
    q.train()
    q(torch.randn(8, 1, 28, 28)).sum().backward()  # straight-through gradients reach the weights
    assert all(p.grad is not None for p in q.parameters() if p.requires_grad)
    plain = strip_qat(q).eval()
    assert not any(isinstance(x, nn.BatchNorm2d) for x in plain.modules())
    w = plain.stem[0].weight.detach()
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    assert torch.allclose(w / scale, torch.round(w / scale), atol=1e-4)  # on the int8 grid
    # ONNX Runtime's per-channel symmetric quantization reproduces those weights exactly
    p = export_onnx_fp32(plain, (torch.randn(1, 1, 28, 28),), tmp_path / "q.onnx", ("x",), ("y",))

    class R:
        d = [{"x": np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)}]

        def get_next(self):  # noqa: ANN202
            return self.d.pop() if self.d else None

    quantize_static(str(p), str(tmp_path / "q8.onnx"), R(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    g = onnx.load(str(tmp_path / "q8.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    deq = []
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4:
            s = inits[n.input[1]]
            deq.append(inits[n.input[0]].astype(np.float32) * (s.reshape(-1, 1, 1, 1) if s.ndim else s))
    convs = [m.weight.detach().numpy() for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert len(deq) == len(convs)
    for w_ in convs:  # every conv weight is reproduced exactly by ORT's int8 weights
        assert min(np.abs(d - w_).max() if d.shape == w_.shape else np.inf for d in deq) < 1e-6


def test_fake_quant_weight_straight_through() -> None:
    w = torch.randn(4, 3, requires_grad=True)
    fake_quant_weight(w).sum().backward()
    assert torch.allclose(w.grad, torch.ones_like(w))


def test_fgsm_on_inputs_and_embeddings() -> None:
    torch.manual_seed(0)
    cnn = TinyResNet(widths=(8,), blocks_per_stage=1).eval()
    x = torch.rand(4, 1, 28, 28)
    target = torch.randint(0, 10, (4,))
    cfg = AdversarialConfig(method="fgsm", eps=0.1)
    (xa,), undo = perturb(cnn, (x,), lambda out: F.cross_entropy(out, target), cfg)
    assert undo is None and (xa - x).abs().max() <= 0.1 * x.std() + 1e-6
    assert F.cross_entropy(cnn(xa), target) > F.cross_entropy(cnn(x), target)
    tr = TransformerClassifier(vocab=50, num_classes=3, dim=16, depth=1, num_heads=2, ffn=32, max_len=8).eval()
    ids = torch.randint(1, 50, (4, 8))
    y = torch.randint(0, 3, (4,))
    clean = F.cross_entropy(tr(ids), y)
    (ids2,), undo = perturb(tr, (ids,), lambda out: F.cross_entropy(out, y), AdversarialConfig("pgd", 0.5, 3))
    assert torch.equal(ids2, ids) and undo is not None
    adv = F.cross_entropy(tr(ids), y)  # the embedding perturbation is active until undo()
    undo()
    assert adv > clean and torch.allclose(F.cross_entropy(tr(ids), y), clean)


def test_distill_improves_a_pruned_student(digits_task) -> None:
    student = prune_width(digits_task.model, digits_task.example_inputs, 0.25)
    before = evaluate(student, digits_task, "val")
    res = distill(student, digits_task.model, digits_task, DistillConfig(epochs=6, seed=0, align_fraction=0.3))
    assert res.best_val > max(before + 0.3, 0.9)
    assert [h["stage"] for h in res.history][:2] == ["align", "align"] and res.history[-1]["stage"] == "transfer"
    assert res.history[0]["temperature"] > res.history[-1]["temperature"]
    assert {"hidden", "relation"} <= set(res.history[0]) and {"kd", "ce"} <= set(res.history[-1])


def test_distill_with_qat_domain_data_and_adversarial(digits_task) -> None:
    from adaptc.tasks import Split

    student = prune_width(digits_task.model, digits_task.example_inputs, 0.5)
    domain = Split((digits_task.val.inputs[0][:100].flip(-1),))  # unlabelled, shifted domain
    cfg = DistillConfig(epochs=4, qat=True, qat_fraction=0.5, domain_data=domain, domain_ratio=0.2,
                        adversarial=AdversarialConfig("fgsm", 0.05), seed=1)
    res = distill(student, digits_task.model, digits_task, cfg)
    assert res.qat and res.best_val > 0.8 and res.history[-1]["stage"] == "qat"
    w = res.model.features[0].weight.detach()
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    assert torch.allclose(w / scale, torch.round(w / scale), atol=1e-4)


def test_paired_contrastive_loss_and_pair_batches() -> None:
    from adaptc.distill.batches import _n_batches, _train_batches
    from adaptc.tasks.base import Split, Task, paired_contrastive_loss

    y = torch.tensor([0, 1, 0, 1, -1, -1])
    aligned = torch.tensor([[1.0, 0], [0, 1], [1, 0.01], [0.01, 1], [-1, 0], [0, -1]])
    shuffled = aligned[[0, 1, 3, 2, 4, 5]]
    good, bad = paired_contrastive_loss(aligned, y), paired_contrastive_loss(shuffled, y)
    assert float(good) < 0.01 < float(bad)
    assert float(paired_contrastive_loss(aligned, torch.tensor([0, 1, 2, 3, -1, -1]))) == 0.0  # no partners
    # pair members always share a batch; unlabelled samples fill their own batches
    n = 40
    ids = torch.randint(1, 50, (2 * n + 10, 8))
    targets = torch.cat([torch.arange(n), torch.arange(n), torch.full((10,), -1)])
    task = Task(name="t", model=nn.Identity(), example_inputs=(ids[:1],), train=Split((ids,), targets),
                val=Split((ids,)), test=Split((ids,)), kind="embedding")
    seen = []
    for idx, _, yb in _train_batches(task, 8, torch.Generator().manual_seed(0)):
        lab = yb[yb >= 0]
        assert len(lab) == 0 or len(lab) == len(yb)
        assert all(int((lab == t).sum()) == 2 for t in lab)
        seen += idx.tolist()
    assert sorted(seen) == list(range(2 * n + 10))
    assert _n_batches(task, 8) == len(list(_train_batches(task, 8, torch.Generator().manual_seed(1))))
    assert _n_batches(task, 7) == len(list(_train_batches(task, 7, torch.Generator().manual_seed(1))))


def _distill_under_cache_budgets(student: nn.Module, task, monkeypatch) -> list:  # noqa: ANN001
    """Two short distillations of ``student`` from ``task``'s teacher, with a teacher-cache budget that holds
    everything and with none: [(result, cache)] for each."""
    from adaptc.distill import cache as tc

    runs = []
    for budget_mb in ("1000000", "0"):
        monkeypatch.setenv("ADAPTC_TEACHER_CACHE_MB", budget_mb)
        tc._CACHES.clear()
        res = distill(copy.deepcopy(student), task.model, task, DistillConfig(epochs=2, seed=0, align_fraction=0.5))
        (cache,) = tc._CACHES[task.model].values()
        runs.append((res, cache))
    return runs


def test_teacher_cache_holds_only_the_layers_a_student_reads_when_over_budget(token_task, monkeypatch) -> None:
    """Over its memory budget the teacher cache keeps only the teacher layers the student's losses read
    (a 1-block student of the 2-block teacher: layer 1); training is identical to a cache holding every layer,
    and a deeper student's request rebuilds it with the union."""
    from adaptc.distill import cache as tc
    from adaptc.slim import drop_blocks

    teacher = token_task.model
    student, dropped = drop_blocks(teacher, 1, {0: 0.0, 1: 1.0})
    assert dropped == [0]
    (full_res, full), (part_res, part) = _distill_under_cache_budgets(student, token_task, monkeypatch)
    assert full.holding.hidden_layers is None and full.holding.attention_layers is None
    assert part.holding.hidden_layers == {1} and part.holding.attention_layers == {1}
    assert part.attention[0][0] is None and part.attention[0][1] is not None and part.hidden[0][0] is None

    def held(c: tc.TeacherCache) -> int:
        ts = [t for per in (c.hidden, c.attention, c.qkv) for row in per for t in row if t is not None]
        ts += [f for f in c.features if f is not None] + c.out
        return sum(t.numel() * t.element_size() for t in ts)

    assert held(part) < 0.8 * held(full)
    for c in (full, part):  # the budget rule works from an estimate of what the cache will hold
        assert abs(c.estimated_bytes - held(c)) <= 0.1 * held(c)
    assert [h.get("hidden") for h in part_res.history] == [h.get("hidden") for h in full_res.history]
    assert part_res.history[-1]["val"] == full_res.history[-1]["val"]
    assert all(h.get("attention", 1.0) > 0 for h in part_res.history[:1])
    again = tc.teacher_cache(teacher, token_task.train, token_task.example_inputs, None,
                             tc.Holding.of(hidden_layers=[1], attention_layers=[1]), budget_bytes=0)
    assert again is part  # held already
    wider = tc.teacher_cache(teacher, token_task.train, token_task.example_inputs, None,
                             tc.Holding.of(hidden_layers=[0], attention_layers=[0, 1]), budget_bytes=0)
    assert wider is not part and wider.holding.hidden_layers == {0, 1} and wider.holding.attention_layers == {0, 1}
    from adaptc.errors import AdaptcError

    monkeypatch.setenv("ADAPTC_TEACHER_CACHE_MB", "lots")
    with pytest.raises(AdaptcError, match="ADAPTC_TEACHER_CACHE_MB must be a number of megabytes"):
        tc.cache_budget_bytes()


def test_teacher_cache_keeps_head_means_for_a_student_with_fewer_heads(token_task, monkeypatch) -> None:
    """Over budget, a student with fewer heads than the teacher reads only the head mean of the teacher's maps:
    the cache holds that (one map per layer instead of one per head) and training matches a full cache."""
    from adaptc.distill import cache as tc
    from adaptc.slim import drop_blocks

    teacher = token_task.model
    student = prune_width(drop_blocks(teacher, 1, {0: 0.0, 1: 1.0})[0], token_task.example_inputs, 0.5)
    (full_res, full), (part_res, part) = _distill_under_cache_budgets(student, token_task, monkeypatch)
    assert not full.holding.attention_head_mean and part.holding.attention_head_mean
    assert part.holding.attention_layers == {1}
    heads = full.attention[0][1].shape[0]
    assert heads == 4 and part.attention[0][1].shape[0] == 1 and part.attention[0][0] is None
    a_full, a_part = full.attention[0][1].float().mean(0), part.attention[0][1].float()[0]
    assert torch.allclose(a_full, a_part, atol=2e-3)
    att = [h["attention"] for h in full_res.history if "attention" in h]
    assert att and all(math.isclose(a, b, rel_tol=2e-2) for a, b in
                       zip(att, [h["attention"] for h in part_res.history if "attention" in h]))
    # a student with the teacher's head count asks for every head: the head-mean cache is rebuilt
    again = tc.teacher_cache(teacher, token_task.train, token_task.example_inputs, None,
                             tc.Holding.of(hidden_layers=[1], attention_layers=[1]), budget_bytes=0)
    assert again is not part and not again.holding.attention_head_mean and again.attention[0][1].shape[0] == heads


def test_teacher_cache_leaves_out_features_the_caller_does_not_read(token_task) -> None:
    """An embedding task's relation term compares output embeddings, so its cache holds no penultimate
    features (on MiniLM the input of the last FFN projection, 4x a hidden state per token); a later request for
    them rebuilds the cache with them."""
    from adaptc.distill import cache as tc

    teacher, ex = token_task.model, token_task.example_inputs
    tc._CACHES.clear()
    lean = tc.teacher_cache(teacher, token_task.train, ex, None, tc.Holding(features=False), budget_bytes=1 << 40)
    assert not lean.holding.features and all(f is None for f in lean.features)
    assert tc.teacher_cache(teacher, token_task.train, ex, None, tc.Holding(features=False), budget_bytes=1 << 40) is lean
    full = tc.teacher_cache(teacher, token_task.train, ex, None, tc.Holding(features=True), budget_bytes=1 << 40)
    assert full is not lean and full.holding.features and all(f is not None for f in full.features)
    feature_bytes = sum(f.numel() * f.element_size() for f in full.features)
    assert feature_bytes > 0
    assert abs(full.estimated_bytes - lean.estimated_bytes - feature_bytes) <= 0.1 * feature_bytes
    out, cap = full.batch(torch.arange(4), token_task.train.inputs[0].shape[1])
    assert cap.features is not None and len(out) == 4
    assert tc.teacher_cache(teacher, token_task.train, ex, None, tc.Holding(features=False), budget_bytes=1 << 40) is full


def test_teacher_cache_holds_only_outputs_when_the_losses_read_nothing_else(token_task) -> None:
    """A recipe of output imitation alone (no hidden, attention or relation terms) needs only the teacher's
    outputs: the cache holds nothing else even when every layer would fit its budget, its estimate says so, and a
    later request for the relations' projections rebuilds it."""
    from adaptc.distill import cache as tc

    teacher, ex = token_task.model, token_task.example_inputs
    tc._CACHES.clear()
    nothing = tc.Holding.of(hidden_layers=(), attention_layers=(), features=False, relations=False)
    lean = tc.teacher_cache(teacher, token_task.train, ex, None, nothing, budget_bytes=1 << 40)
    assert all(h is None for row in lean.hidden for h in row) and all(a is None for row in lean.attention for a in row)
    assert all(q == [] for q in lean.qkv) and all(f is None for f in lean.features)
    out_bytes = sum(o.numel() * o.element_size() for o in lean.out)
    assert abs(lean.estimated_bytes - out_bytes) <= 0.1 * out_bytes
    out, cap = lean.batch(torch.arange(4), token_task.train.inputs[0].shape[1])
    assert len(out) == 4 and cap.qkv == [] and all(h is None for h in cap.hidden)
    rel = tc.teacher_cache(teacher, token_task.train, ex, None, tc.Holding.of((), (), False, False, True),
                           budget_bytes=1 << 40)
    assert rel is not lean and all(len(q) == 3 for q in rel.qkv)
    assert tc.teacher_cache(teacher, token_task.train, ex, None, nothing, budget_bytes=1 << 40) is rel


@pytest.mark.parametrize("how", ["frozen", "lazy"])
def test_embedding_tables_frozen_or_lazy_through_qat(token_task, how: str) -> None:
    """``embeddings="frozen"``: every embedding table leaves distillation (and its QAT stage, which trains a
    copy) as it came in. ``"lazy"`` (sparse gradients, SparseAdam): the rows of tokens the training split never
    holds stay as they were (no weight decay drags them), rows it holds move. Either way the rest of the student
    trains and the tables are back to dense training afterwards."""
    student = prune_width(token_task.model, token_task.example_inputs, 0.5)
    tables = {n: m.weight.detach().clone() for n, m in student.named_modules() if isinstance(m, nn.Embedding)}
    others = {n: p.detach().clone() for n, p in student.named_parameters() if p.ndim == 2 and "emb" not in n}
    assert tables and others
    res = distill(student, token_task.model, token_task, DistillConfig(epochs=2, qat=True, qat_fraction=0.5,
                                                                       embeddings=how, seed=0))
    assert res.qat and res.history[-1]["stage"] == "qat"
    after = {n: m for n, m in res.model.named_modules() if isinstance(m, nn.Embedding)}
    assert after.keys() == tables.keys()
    assert all(m.weight.requires_grad and not m.sparse for m in after.values())
    if how == "frozen":
        assert all(torch.equal(after[n].weight.detach(), w) for n, w in tables.items())
    else:
        name, m = max(after.items(), key=lambda kv: kv[1].num_embeddings)  # the token table
        seen = torch.zeros(m.num_embeddings, dtype=torch.bool)
        seen[token_task.train.inputs[0].unique()] = True
        moved = (m.weight.detach() != tables[name]).any(dim=1)
        assert (~seen).any() and not moved[~seen].any() and moved[seen].any()
    assert any(not torch.equal(p.detach(), others[n]) for n, p in res.model.named_parameters() if n in others)


def test_embedding_update_is_checked() -> None:
    with pytest.raises(ValueError, match="embeddings must be one of dense, lazy, frozen"):
        DistillConfig(embeddings="sparse")


def test_fit_epochs_is_asked_once_cached_and_again_after_the_first_epoch(token_task) -> None:
    from adaptc.distill import cache as tc

    asked: list[tuple[bool, bool, int]] = []

    def fitter(first: int, second: int):  # noqa: ANN202
        def fit(measured: float | None, done: int) -> int:
            # the teacher's outputs are cached by the first call; the second has the first epoch's time
            asked.append((bool(tc._CACHES.get(token_task.model)), measured is not None and measured > 0, done))
            return first if measured is None else second
        return fit

    from adaptc.core import progress

    class Notes(progress.NullReporter):
        """Keeps what each finished step says (the line a user reads)."""

        def __init__(self) -> None:
            self.done: list[str] = []

        def step(self, description: str, total: float | None = None) -> progress.Step:
            notes = self

            class _Step:
                def advance(self, n: float = 1, *, note: str | None = None) -> None:
                    pass

                def done(self, note: str | None = None) -> None:
                    notes.done.append(f"{description} -- {note}")
            return _Step()

    for first, second, qat in ((4, 2, False), (1, 3, True)):
        tc._CACHES.clear()
        asked.clear()
        student = prune_width(token_task.model, token_task.example_inputs, 0.5)
        with progress.using(Notes()) as notes:
            res = distill(student, token_task.model, token_task,
                          DistillConfig(epochs=5, cache_teacher=True, qat=qat, qat_fraction=0.5),
                          fit_epochs=fitter(first, second))
        assert asked == [(True, False, 0), (True, True, 1)]
        # the finished line names the count trained, not only the one fitted before the first epoch
        assert notes.done[-1].endswith(f"; {first} -> {second} epochs (first epoch timed)"), notes.done
        # shortened to 2 epochs; stretched from 1 to 3 (the learning-rate schedule with it), then 2 of QAT
        assert res.epochs == second
        assert [h["stage"] == "qat" for h in res.history] == [False] * second + [True] * (2 if qat else 0)
