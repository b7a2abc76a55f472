"""Built-in task ``animal-mnist``: 10,000 real 28x28 grayscale animal silhouettes, 10 balanced classes.

Data from the PyPI package ``animal-mnist`` (MIT, 2.6 MB). Its own loader imports TensorFlow, so install it
without dependencies (``pip install --no-deps animal-mnist==0.4``) and adaptc reads its two pickles with NumPy
only, through an unpickler that accepts nothing but NumPy array reconstruction. Split 70/15/15, stratified,
fixed seed. Teacher: a residual CNN with depthwise-separable blocks (:class:`~adaptc.tasks.zoo.TinyResNet`,
widths 64/128/256, stride-2 stem: 5 M MACs), trained on first use (several minutes on 2 cores) and cached.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch

from ..core import progress
from ..errors import TaskError
from .base import Split, Task, accuracy, evaluate_torch
from .registry import register_task
from .training import builtin_teacher
from .zoo import TinyResNet

TEACHER_WIDTHS = (64, 128, 256)
TEACHER_EPOCHS = 15
_ARCH_VERSION = 2
INSTALL_HINT = "pip install --no-deps animal-mnist==0.4"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the animal-mnist pickle")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core")
        return super().find_class(module, name)


def data_dir() -> Path:
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise TaskError(f"task 'animal-mnist' needs the animal-mnist data package: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
    d = data_dir()
    with gzip.open(d / "animal_data_version_3.gz", "rb") as f:
        x = _NumpyOnlyUnpickler(f).load()
    with gzip.open(d / "animal_label_version_3.gz", "rb") as f:
        y = _NumpyOnlyUnpickler(f).load()
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != (10000, 28, 28) or y.shape != (10000,):
        raise TaskError(f"unexpected animal-mnist arrays {x.shape} / {y.shape}")
    return x, y


def load_splits(seed: int = 0) -> tuple[Split, Split, Split]:
    from sklearn.model_selection import train_test_split

    x, y = load_arrays()
    x = (x.astype(np.float32) / 255.0)[:, None]
    y = y.astype(np.int64)
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, test_size=0.3, random_state=seed, stratify=y)
    va, te = train_test_split(rest, test_size=0.5, random_state=seed, stratify=y[rest])
    return tuple(Split((torch.from_numpy(x[i]),), torch.from_numpy(y[i])) for i in (tr, va, te))  # type: ignore[return-value]


def flip_augment(xs: tuple[torch.Tensor, ...], g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random horizontal flips (silhouettes face either way) and shifts of up to 2 pixels."""
    x = xs[0]
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return (x,) + tuple(xs[1:])


@register_task("animal-mnist")
def make_task(teacher_seed: int = 0) -> Task:
    """``teacher_seed``: the seed of the teacher's initial weights and training (a teacher per seed, each cached)."""
    train, val, test = load_splits()
    model, trained_now, path = builtin_teacher(
        "animal-mnist",
        lambda: TinyResNet(in_channels=1, num_classes=10, widths=TEACHER_WIDTHS, blocks_per_stage=2, stem_stride=2),
        {"arch": _ARCH_VERSION, "w": TEACHER_WIDTHS, "init_seed": teacher_seed},
        (train, val),
        TEACHER_EPOCHS,
        lr=3e-3,
        batch_size=128,
        init_seed=teacher_seed,
        seed=teacher_seed,
        augment=flip_augment,
        threads=None,
    )
    task = Task(
        name="animal-mnist",
        model=model.eval(),
        example_inputs=(test.inputs[0][:1].clone(),),
        train=train,
        val=val,
        test=test,
        metric=accuracy,
        input_names=("image",),
        output_names=("logits",),
        augment=flip_augment,
        description="animal-mnist 28x28 silhouettes (10 classes), residual CNN teacher",
        info={"cache_file": str(path)},
    )
    if trained_now:
        progress.current().message(f"animal-mnist teacher test accuracy {evaluate_torch(task):.4f}")
    return task
