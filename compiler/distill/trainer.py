"""The distillation trainer: the student learns the teacher's outputs and intermediate behaviour.

One call, :func:`distill`, runs the configured recipe on a student derived from the teacher:
progressive stages (align features/attention/relations, then add logits), the hybrid loss with a dynamic
temperature, optional domain-data mixing, adversarial examples, and quantization-aware training in the last
epochs for int8 targets (BatchNorm folded first, so the fake-quantized weights are the exported ones).
The weights with the best validation metric are kept (ties: the epoch that follows the teacher closest, when
the teacher's validation outputs are given).
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import progress
from ..tasks.base import Split, Task, predict_torch, teacher_agreement
from ..tasks.training import seed_everything, torch_threads
from .adversarial import AdversarialConfig, perturb
from .batches import _n_batches, _token_mask, _train_batches  # (distill/cache.py imports _token_mask from here)
from .checkpoint import EpochCheckpoint
from .losses import HybridLoss, LossWeights, TemperatureSchedule
from .optim import _Optimizer, _set_embedding_update
from .qat import fold_batchnorm, prepare_qat, strip_qat
from .schedule import ALL_TERMS, Schedule, progressive, single
from .taps import Taps


def qat_epoch_count(qat_fraction: float, epochs: int) -> int:
    """QAT epochs after ``epochs`` distillation epochs: ``qat_fraction`` of them, at least one."""
    return max(1, round(qat_fraction * epochs))


#: how a student's embedding tables can train (:attr:`DistillConfig.embeddings`)
EMBEDDING_UPDATES = ("dense", "lazy", "frozen")


@dataclass
class DistillConfig:
    epochs: int = 20
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    weights: LossWeights = field(default_factory=LossWeights)
    t_start: float = 4.0
    t_end: float = 1.5
    learnable_temperature: bool = False
    #: fraction of epochs in the feature-alignment stage of the progressive schedule (0 = one joint stage).
    #: None (default): 0.3 when the teacher has attention maps, else 0 -- on the distillation benchmark
    #: (benchmarks/results/distill.json) the progressive schedule was 2.2 points better on the transformer
    #: and 0.6 points worse on the residual CNN (animal-mnist) than one joint stage
    align_fraction: float | None = None
    #: quantization-aware fine-tuning after the distillation epochs (int8 targets): ``qat_fraction`` x epochs
    #: extra epochs (at least one) at a tenth of the learning rate, BatchNorm folded, export-matching fake quant
    qat: bool = False
    qat_fraction: float = 0.2
    adversarial: AdversarialConfig | None = None
    domain_data: Split | None = None
    domain_ratio: float = 0.2
    seed: int = 0
    threads: int | None = 1
    #: evaluate on the validation split every N epochs (and at the end)
    eval_every: int = 1
    #: reuse the teacher's outputs across epochs and trials when the training inputs are fixed (no augmentation,
    #: adversarial or domain batches): one teacher pass, held in memory or on disk as the memory budget allows
    #: (adaptc.distill.cache); False: run the teacher on every batch. ("auto" is kept as a synonym of True.)
    cache_teacher: bool | str = "auto"
    #: how the student's embedding tables (every ``nn.Embedding`` not tied to another module) train: "dense"
    #: (AdamW, like every other weight), "lazy" (sparse gradients and SparseAdam: only the rows of the batch's
    #: tokens move, no weight decay; minilm's 2-layer student steps 1.3-1.5x faster, its 11.7 M-row word table
    #: being most of the dense update) or "frozen" (kept as they came; on minilm 2.6 points of test R@1 worse
    #: than "dense": the table is most of a small student's capacity)
    embeddings: str = "dense"

    def __post_init__(self) -> None:
        if self.embeddings not in EMBEDDING_UPDATES:
            raise ValueError(
                f"DistillConfig.embeddings must be one of {', '.join(EMBEDDING_UPDATES)}, got {self.embeddings!r}"
            )

    def resolved_align_fraction(self, attention: bool) -> float:
        return self.align_fraction if self.align_fraction is not None else (0.3 if attention else 0.0)

    def schedule(self, attention: bool = False) -> Schedule:
        frac = self.resolved_align_fraction(attention)
        return progressive(frac) if frac > 0 else single()


@dataclass
class DistillResult:
    model: nn.Module
    best_val: float
    history: list[dict[str, Any]]
    seconds: float
    qat: bool
    #: seconds per training sample of the teacher's pass when its outputs were cached (None: run live)
    teacher_s_per_sample: float | None = None
    #: distillation epochs trained (before the QAT epochs): ``cfg.epochs``, or what ``fit_epochs`` gave
    epochs: int = 0
    #: the best epoch's per-sample validation scores (``Task.per_sample``; None when the task has none): the
    #: sampling error of ``best_val``, and paired comparisons between candidates
    best_val_scores: np.ndarray | None = None
    #: why training ended before its epochs ("time budget"), else None
    stopped: str | None = None
    #: the best epoch's agreement with the teacher on the validation split (``teacher_agreement``; None without
    #: the teacher's validation outputs)
    best_fidelity: float | None = None


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _dims(caps: list[torch.Tensor]) -> list[int]:
    dims = []
    for h in caps:
        dims.append(int(h.shape[1]) if h.dim() == 4 else int(h.shape[-1]))
    return dims


def distill(
    student: nn.Module,
    teacher: nn.Module,
    task: Task,
    cfg: DistillConfig,
    *,
    description: str = "distill",
    on_epoch: Callable[[int, float], None] | None = None,
    fit_epochs: Callable[[float | None, int], int] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    deadline: float | None = None,
    val_reference: np.ndarray | None = None,
) -> DistillResult:
    """Distil ``teacher`` into ``student`` on ``task`` with ``cfg``. ``fit_epochs(epoch_seconds, done)`` gives
    the number of distillation epochs in place of ``cfg.epochs`` -- how a time budget is filled without guessing
    the one-off costs: it is asked once the teacher's cached pass over the training split is done
    (``epoch_seconds`` None, ``done`` 0), and again after the first epoch with that epoch's measured seconds
    (training and evaluation; ``done`` 1), when the learning-rate schedule is stretched or shortened to the
    new count. ``checkpoint``: a file saved after every distillation epoch and resumed from when it exists
    (:mod:`.checkpoint`). ``deadline`` (a ``time.perf_counter()`` value): training stops at the first batch
    past it, keeping the best finished epoch (``DistillResult.stopped``). ``val_reference``: the teacher's outputs
    on the validation split; each evaluation then also scores the student's agreement with them, which breaks
    ties of the metric (e.g. a word accuracy still 0 after a short training)."""
    t0 = time.perf_counter()
    g = seed_everything(cfg.seed)
    teacher = teacher.eval()
    grad_flags = [(p, p.requires_grad) for p in teacher.parameters()]
    for p in teacher.parameters():
        p.requires_grad_(False)
    ex = task.example_inputs
    history: list[dict[str, Any]] = []
    best_val, best_state, best_scores = -1.0, None, None
    best_fid = -2.0  # (cosine agreement lies in [-1, 1])
    domain = cfg.domain_data
    with torch_threads(cfg.threads), contextlib.ExitStack() as cleanup:
        # the teacher leaves as it came, also when training is interrupted (Ctrl-C): no hooks, its grad flags
        cleanup.callback(lambda: [p.requires_grad_(flag) for p, flag in grad_flags])
        t_taps = Taps(teacher, ex)
        cleanup.callback(t_taps.remove)
        s_taps = Taps(student, ex)
        with torch.no_grad():
            teacher(*ex)
            student.eval()(*ex)
        t_h, t_a = _dims(t_taps.captured.hidden), len(t_taps.captured.attention)
        s_h, s_a = _dims(s_taps.captured.hidden), len(s_taps.captured.attention)
        t_heads = [int(a.shape[1]) for a in t_taps.captured.attention]
        s_heads = [int(a.shape[1]) for a in s_taps.captured.attention]
        t_taps.clear()
        s_taps.clear()
        schedule = cfg.schedule(attention=t_a > 0)
        temp = TemperatureSchedule(cfg.t_start, cfg.t_end, cfg.learnable_temperature)
        loss = HybridLoss(cfg.weights, s_h, t_h, s_a, t_a, temp, embedding=task.kind == "embedding")

        in_qat = False
        fixed_inputs = task.augment is None and cfg.adversarial is None and domain is None
        use_cache = fixed_inputs and cfg.cache_teacher in (True, "auto")
        cache = None
        if use_cache:
            from .cache import Holding, teacher_cache

            # the trainer's teacher hooks would keep every batch of the cache's pass (float32 attention maps of the
            # whole split: +6 GB on minilm; the recogniser's feature maps: +2.6 MB a sample): off during the pass
            t_taps.remove()
            # only the teacher layers this student's losses read need to be held (see the cache's budget rule)
            amap = loss.attention.mapping if loss.attention is not None else []
            cache = teacher_cache(
                teacher,
                task.train,
                ex,
                task.batch_transform,
                Holding.of(
                    hidden_layers=loss.hidden.mapping if loss.hidden is not None else (),
                    attention_layers=amap,
                    # the attention loss compares head means where the head counts differ
                    attention_head_mean=all(s_heads[i] != t_heads[t] for i, t in enumerate(amap)),
                    # an embedding task's relation term compares the output embeddings
                    features=task.kind != "embedding" and loss.relation is not None,
                    relations=loss.relation is not None,
                ),
            )
            if cache is None:  # held nowhere: the teacher runs on every batch, with its hooks
                t_taps = Taps(teacher, ex)
                cleanup.callback(t_taps.remove)
        if fit_epochs is not None:
            cfg = replace(cfg, epochs=max(1, fit_epochs(None, 0)))

        def plan(c: DistillConfig) -> tuple[int, int]:
            """(first QAT epoch, all epochs) for ``c.epochs`` distillation epochs."""
            qat_epochs = qat_epoch_count(c.qat_fraction, c.epochs) if c.qat else 0
            return (c.epochs if c.qat else c.epochs + 1), c.epochs + qat_epochs

        qat_start, total_epochs = plan(cfg)
        refit = ""
        step = progress.current().step(
            f"{description}: {cfg.epochs} epochs" if fit_epochs else description, total=total_epochs
        )
        tables = _set_embedding_update(student, cfg.embeddings) if cfg.embeddings != "dense" else []
        per_epoch = _n_batches(task, cfg.batch_size)

        def one_cycle(o: torch.optim.Optimizer) -> Any:
            return torch.optim.lr_scheduler.OneCycleLR(
                o, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * per_epoch), pct_start=0.1
            )

        opt = _Optimizer(student, loss, cfg.lr, cfg.weight_decay, one_cycle)
        epoch = -1
        ckpt = EpochCheckpoint(checkpoint) if checkpoint is not None else None
        state = ckpt.restore(student, loss, opt, g) if ckpt is not None else None
        if state is not None:  # resume after the last finished epoch
            epoch, history = state["epoch"], state["history"]
            best_val, best_state, best_scores = state["best_val"], state["best_state"], state["best_scores"]
            best_fid = max((h.get("fidelity", -2.0) for h in history if h.get("val") == best_val), default=-2.0)
            if state["epochs"] != cfg.epochs:
                cfg = replace(cfg, epochs=state["epochs"])
                qat_start, total_epochs = plan(cfg)
            step.advance(epoch + 1, note=f"resumed after epoch {epoch + 1}")
        stopped = None
        while epoch + 1 < total_epochs and stopped is None:
            epoch += 1
            t_epoch = time.perf_counter()
            if epoch == qat_start:
                # Fine-tuning stage for int8: fold BN, fake-quantize as the exporter will, logits terms only.
                if best_state is not None:
                    student.load_state_dict(best_state)
                s_taps.remove()
                student = prepare_qat(fold_batchnorm(student))
                s_taps = Taps(student, ex, hidden=False, attention=False)
                in_qat = True
                best_val, best_state, best_scores, best_fid = -1.0, None, None, -2.0
                opt = _Optimizer(student, loss, cfg.lr * 0.1, cfg.weight_decay)
            stage = schedule.stage_at(epoch, cfg.epochs) if not in_qat else None
            terms = set(stage.terms) if stage is not None else {"ce", "kd", "relation"}
            student.train()
            sums: dict[str, float] = {}
            nb = 0
            for idx, xs, y in _train_batches(task, cfg.batch_size, g):
                if deadline is not None and time.perf_counter() > deadline and (nb or best_state is not None):
                    stopped = "time budget"
                    break
                t_taps.clear()  # (validation passes also fill the taps)
                s_taps.clear()
                if domain is not None and cfg.domain_ratio > 0:
                    k = max(1, round(len(y) * cfg.domain_ratio))
                    idx = torch.randint(0, len(domain), (k,), generator=g)
                    xs = tuple(torch.cat([a[: len(a) - k], d[idx].to(a.dtype)]) for a, d in zip(xs, domain.inputs))
                    y = y[: len(y) - k] if y is not None else None
                if task.batch_transform is not None:
                    xs = task.batch_transform(xs)
                if task.augment is not None:
                    xs = task.augment(xs, g)
                remove_adv = None
                if cfg.adversarial is not None:
                    with torch.no_grad():
                        t_ref = _first(teacher(*xs))
                    t_taps.clear()

                    def adv_loss(out: torch.Tensor, t_ref: torch.Tensor = t_ref) -> torch.Tensor:
                        return loss.kd(_first(out), t_ref, 2.0)

                    xs, remove_adv = perturb(student, xs, adv_loss, cfg.adversarial)
                    s_taps.clear()
                if cache is not None:
                    t_out, t_cap = cache.batch(idx, xs[0].shape[1] if _token_mask(xs) is not None else None)
                else:
                    with torch.no_grad():
                        t_out = _first(teacher(*xs))
                    t_cap = t_taps.captured
                s_out = _first(student(*xs))
                s_taps.captured.mask = _token_mask(xs)
                if remove_adv is not None:
                    remove_adv()
                labelled = s_out[: len(y)] if y is not None else None
                parts = loss(
                    s_out,
                    t_out,
                    s_taps.captured,
                    t_cap,
                    None,
                    progress=epoch / max(cfg.epochs, 1),
                    stage_terms=terms - {"ce"},
                )
                total = parts.total
                if "ce" in terms and y is not None and cfg.weights.ce > 0:
                    assert labelled is not None  # (y is not None)
                    ce = cfg.weights.ce * task.train_loss(labelled, y)
                    total = total + ce
                    parts.parts["ce"] = float(ce.detach())
                opt.zero_grad()
                total.backward()
                opt.step()
                t_taps.clear()
                s_taps.clear()
                for k, v in parts.parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                nb += 1
            rec: dict[str, Any] = {
                "epoch": epoch,
                "stage": "qat" if in_qat else stage.name,  # type: ignore[union-attr]
                "temperature": float(temp(epoch / max(cfg.epochs, 1))),
                **{k: v / max(nb, 1) for k, v in sums.items()},
                "train_seconds": time.perf_counter() - t_epoch,
            }
            if stopped is not None and best_state is not None:
                break  # an unfinished epoch: the best finished one is kept
            last = epoch == total_epochs - 1 or stopped is not None
            t_eval = time.perf_counter()
            if (epoch + 1) % cfg.eval_every == 0 or last or epoch + 1 == qat_start:
                val_out = predict_torch(student, task.val, transform=task.batch_transform)
                val = task.metric(val_out, task.val)
                rec["val"] = val
                fid = -2.0
                if val_reference is not None:
                    fid = rec["fidelity"] = teacher_agreement(val_out, val_reference, task.kind)
                # During the alignment stage the logits are not trained yet: do not select on them.
                if (stage is None or "kd" in stage.terms or "ce" in stage.terms) and (val, fid) > (best_val, best_fid):
                    best_val, best_fid, best_state = val, fid, copy.deepcopy(student.state_dict())
                    best_scores = task.per_sample(val_out, task.val, val)
                if on_epoch is not None:
                    on_epoch(epoch, val)
                rec["eval_seconds"] = time.perf_counter() - t_eval
            history.append(rec)
            note = f"{rec['stage']} val {rec.get('val', float('nan')):.4f}"
            if fit_epochs is not None and epoch == 0 and not in_qat:
                n = max(1, fit_epochs(rec["train_seconds"] + rec.get("eval_seconds", 0.0), 1))
                if n != cfg.epochs:
                    refit = f"{cfg.epochs} -> {n} epochs (first epoch timed)"
                    note = f"{note}, {refit}"
                    cfg = replace(cfg, epochs=n)
                    qat_start, total_epochs = plan(cfg)
                    opt.reschedule(one_cycle, nb)
            if ckpt is not None and not in_qat:  # (saved before the epoch is shown as done)
                ckpt.save(
                    epoch=epoch, epochs=cfg.epochs, student=student, loss=loss, opt=opt, generator=g,
                    history=history, best=(best_val, best_state, best_scores),
                )  # fmt: skip
            step.advance(1, note=note)
        t_taps.remove()
        s_taps.remove()
    if best_state is not None:
        student.load_state_dict(best_state)
    if in_qat:
        student = strip_qat(student, snap_weights=True)
    student.eval()
    # the step's title gave the epoch count fitted before the first epoch: say when it changed
    step.done(
        f"best val {best_val:.4f}" + (f"; {refit}" if refit else "") + (f"; stopped: {stopped}" if stopped else "")
    )
    _set_embedding_update(student, "dense", tables)  # (the QAT stage's copy has the same module names)
    return DistillResult(
        student,
        best_val,
        history,
        time.perf_counter() - t0,
        in_qat,
        cache.build_seconds / max(1, cache.n) if cache is not None else None,
        cfg.epochs,
        best_scores,
        stopped,
        best_fid if best_fid > -2.0 else None,
    )


def train_from_scratch(
    model: nn.Module,
    task: Task,
    epochs: int,
    *,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    threads: int | None = 1,
) -> tuple[nn.Module, float]:
    """The baseline: the same student architecture, re-initialised, trained on labels only."""
    from ..tasks.training import train_supervised

    def reinit(m: nn.Module) -> None:
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()  # type: ignore[operator]

    seed_everything(seed)
    model.apply(reinit)
    return train_supervised(
        model,
        task.train,
        task.val,
        metric=task.metric,
        loss_fn=task.train_loss,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        augment=task.augment,
        description="from scratch",
        threads=threads,
    )


def evaluate(model: nn.Module, task: Task, split: str = "test") -> float:
    s = getattr(task, split)
    return float(task.metric(predict_torch(model, s, transform=task.batch_transform), s))


def numpy_outputs(model: nn.Module, split: Split) -> np.ndarray:
    return predict_torch(model, split)


__all__ = ["ALL_TERMS", "DistillConfig", "DistillResult", "distill", "evaluate", "fold_batchnorm", "train_from_scratch"]
