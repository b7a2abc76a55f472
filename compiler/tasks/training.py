"""Plain supervised training, shared by built-in tasks (teachers) and baselines (students from scratch)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import nn

from ..core import progress
from ..core.cache import cache_dir
from ..core.io import atomic_path, atomic_write_json
from ..errors import TaskError
from .base import Split, accuracy

_M = TypeVar("_M", bound=nn.Module)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads. Tiny models train several times faster on one thread."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else the CPU count)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


#: teacher FLOPs per sample from which training uses every usable core (below, one thread)
MULTI_THREAD_MFLOPS = 100.0


def training_threads(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> tuple[int, float]:
    """Host threads for training students of ``model`` and running it: every usable core when its forward pass
    costs at least :data:`MULTI_THREAD_MFLOPS` per sample, else one. Returns (threads, MFLOPs per sample).

    Counted, not timed, so that the same model on the same machine always trains on the same number of threads
    (thread counts change float summation order, and a timing would change with the machine's load). From the
    throughput table of benchmarks/scale_bench.py (2 cores, idle): the text recogniser (1.7 GFLOPs) distils 1.66x
    faster on two threads; digits (5 MFLOPs) 1.28x -- but a tiny model's threads mostly wait on each other, and
    with other busy processes on the cores digits stepped 5-10x slower on two threads than on one (observed
    while tests ran beside it), while it trains in seconds either way: one thread is the robust choice there."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model.eval()(*example_inputs)
        mflops = fc.get_total_flops() / 1e6 / max(1, len(example_inputs[0]))
    except Exception:  # a model the counter cannot follow: one thread, as before
        return 1, 0.0
    return (usable_cores() if mflops >= MULTI_THREAD_MFLOPS else 1), mflops


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def train_supervised(
    model: _M,
    train: Split,
    val: Split,
    *,
    metric: Callable[[np.ndarray, Split], float],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    seed: int = 0,
    augment: Callable[[tuple[torch.Tensor, ...], torch.Generator], tuple[torch.Tensor, ...]] | None = None,
    description: str = "train",
    threads: int | None = 1,
    optimizer: str = "adamw",
) -> tuple[_M, float]:
    """AdamW (``optimizer="sgd"``: SGD with Nesterov momentum 0.9, the ImageNet CNN recipe) + one-cycle schedule;
    keeps the weights with the best validation metric. Returns (model, best val)."""
    from .base import predict_torch

    g = seed_everything(seed)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd' (got {optimizer!r})")
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    best, best_state = -1.0, None
    step = progress.current().step(description, total=epochs)
    with torch_threads(threads):
        for _ in range(epochs):
            model.train()
            for xs, y in train.batches(batch_size, shuffle=True, generator=g):
                if augment is not None:
                    xs = augment(xs, g)
                opt.zero_grad(set_to_none=True)
                out = model(*xs)
                loss = loss_fn(out, cast(torch.Tensor, y))  # supervised: the split has targets
                loss.backward()
                opt.step()
                sched.step()
            score = metric(predict_torch(model, val), val)
            if score > best:
                best, best_state = score, copy.deepcopy(model.state_dict())
            step.advance(1, note=f"val {metric.__name__ if hasattr(metric, '__name__') else 'metric'} {score:.4f}")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    step.done(f"best val {best:.4f}")
    return model, best


def seeded_init(build: Callable[[], _M], seed: int = 0) -> _M:
    """A built-in teacher's network, built with a fixed seed: its initial weights, and so the teacher trained from
    them, are the same in every process (torch seeds its generator randomly per process; two fresh caches trained
    two different digits teachers). The caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def cached_teacher(model: _M, path: Path, epochs: int, train: Callable[[_M], tuple[_M, float]]) -> tuple[_M, bool]:
    """A built-in task's teacher: its weights from the cache file ``path`` when they load, else ``train(model)``
    (returning the trained model and its best validation accuracy), saved there atomically with a JSON beside it.
    A corrupt cache entry is retrained, never trusted. Returns (model, whether it was trained now)."""
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model, False
        except Exception:
            path.unlink(missing_ok=True)
    model, best_val = train(model)
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    atomic_write_json(path.with_suffix(".json"), {"val_accuracy": best_val, "epochs": epochs})
    return model, True


def builtin_teacher(
    name: str,
    build: Callable[[], _M],
    key: dict[str, Any],
    splits: tuple[Split, Split],
    epochs: int,
    *,
    init_seed: int = 0,
    **train: Any,
) -> tuple[_M, bool, Path]:
    """A built-in classification task's teacher: ``build()`` under :func:`seeded_init`, its weights from the cache
    file named by ``key`` (what makes the teacher: architecture, widths, ...; the epochs and torch's version are
    added), else trained on the (train, val) ``splits`` by :func:`train_supervised` with cross-entropy and the
    ``train`` settings (lr, batch_size, seed, augment, threads, ...) and cached. Returns (model in eval mode,
    whether it was trained now, the cache file)."""
    for v in (init_seed, train.get("seed", 0)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32:
            raise TaskError(f"task {name!r}: teacher_seed must be an integer from 0 to 2**32-1 (got {v!r})")
    spec = json.dumps({**key, "epochs": epochs, "torch": torch.__version__.split("+")[0]}, sort_keys=True)
    path = cache_dir() / f"{name}-teacher-{hashlib.sha256(spec.encode()).hexdigest()[:12]}.pt"
    model, trained_now = cached_teacher(
        seeded_init(build, init_seed),
        path,
        epochs,
        lambda m: train_supervised(
            m,
            *splits,
            metric=accuracy,
            loss_fn=nn.functional.cross_entropy,
            epochs=epochs,
            description=f"train {name} teacher (first use; cached)",
            **train,
        ),
    )
    return model.eval(), trained_now, path
