"""Built-in task ``digits``: a small CNN teacher on scikit-learn's bundled 8x8 handwritten digits.

Data: ``sklearn.datasets.load_digits`` (1,797 images, 10 classes, ships inside scikit-learn: no download),
split 60/20/20 train/val/test, stratified, with a fixed seed. Pixels scaled to [0, 1].
The teacher is trained on first use (a few seconds on one core) and cached under the adaptc cache dir.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core import progress
from .base import Split, Task, accuracy, evaluate_torch
from .registry import register_task
from .training import builtin_teacher

SPLIT_SEED = 0
TEACHER_SEED = 0
TEACHER_EPOCHS = 40
_ARCH_VERSION = 1


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU stack with two poolings and a two-layer classifier head (~160k parameters at width 1)."""

    def __init__(self, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        c1, c2, c3, h = (max(1, round(c * width)) for c in (32, 64, 128, 128))
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.BatchNorm2d(c3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c3 * 4, h), nn.ReLU(), nn.Dropout(0.2), nn.Linear(h, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_splits(seed: int = SPLIT_SEED) -> tuple[Split, Split, Split]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, test_size=0.4, random_state=seed, stratify=y)
    va, te = train_test_split(rest, test_size=0.5, random_state=seed, stratify=y[rest])

    def mk(i: np.ndarray) -> Split:
        return Split((torch.from_numpy(x[i]),), torch.from_numpy(y[i]))

    return mk(tr), mk(va), mk(te)


def shift_augment(xs: tuple[torch.Tensor, ...], g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random translation by up to one pixel (zero fill): the only augmentation that helps on 8x8 digits."""
    x = xs[0]
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if dy == 1:
        x[:, :, 0, :] = 0
    elif dy == -1:
        x[:, :, -1, :] = 0
    if dx == 1:
        x[:, :, :, 0] = 0
    elif dx == -1:
        x[:, :, :, -1] = 0
    return (x,) + tuple(xs[1:])


@register_task("digits")
def make_task(teacher_seed: int = TEACHER_SEED) -> Task:
    """``teacher_seed``: the seed of the teacher's initial weights and training (a teacher per seed, each cached;
    benchmarks vary it to show a gain does not hang on one teacher)."""
    train, val, test = load_splits()
    model, trained_now, path = builtin_teacher(
        "digits",
        DigitsCNN,
        {"arch": _ARCH_VERSION, "split": SPLIT_SEED, "seed": teacher_seed, "init_seed": teacher_seed},
        (train, val),
        TEACHER_EPOCHS,
        init_seed=teacher_seed,
        lr=3e-3,
        batch_size=64,
        seed=teacher_seed,
        augment=shift_augment,
    )
    info: dict[str, object] = {"cache_file": str(path), "epochs": TEACHER_EPOCHS}
    if trained_now:
        info["trained_now"] = True
    task = Task(
        name="digits",
        model=model,
        example_inputs=(test.inputs[0][:1].clone(),),
        train=train,
        val=val,
        test=test,
        metric=accuracy,
        metric_name="accuracy",
        input_names=("image",),
        output_names=("logits",),
        kind="classification",
        augment=shift_augment,
        description="8x8 handwritten digits (scikit-learn load_digits), CNN teacher",
        info=info,
    )
    if trained_now:
        progress.current().message(f"digits teacher test accuracy {evaluate_torch(task):.4f}")
    return task
