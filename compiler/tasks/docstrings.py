"""Built-in task ``docstrings``: which standard-library package a docstring comes from (8 classes).

A small transformer classifier over word tokens (lower-cased words; a 4,000-word vocabulary built from
the train split; 0 = padding, 1 = unknown; 64 tokens). Data: docstrings
of the 8 largest standard-library packages (tkinter, asyncio, distutils, email, importlib, logging, xml,
_pydecimal), read with ``ast`` (no download); split 60/20/20 by a hash of the object's qualified name. The
teacher is trained on first use (about a minute on one core) and cached.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import torch

from ..core import progress
from .base import Split, Task, accuracy, evaluate_torch
from .registry import register_task
from .stdlib_corpus import load_docstrings, stable_bucket
from .training import builtin_teacher
from .zoo import TransformerClassifier

MAX_LEN = 64
VOCAB = 4000
TEACHER_EPOCHS = 12
TEACHER_CONFIG = dict(vocab=VOCAB + 2, dim=128, depth=4, num_heads=4, ffn=256, max_len=MAX_LEN)
_ARCH_VERSION = 2
_WORD = re.compile(r"[a-z_][a-z0-9_]*|[0-9]+|[^\sa-z0-9_]")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def build_vocab(texts: list[str], size: int = VOCAB) -> dict[str, int]:
    """The ``size`` most frequent words (ties broken alphabetically) -> ids 2.. (0 = padding, 1 = unknown)."""
    counts: Counter[str] = Counter(w for t in texts for w in words(t))
    top = sorted(counts, key=lambda w: (-counts[w], w))[:size]
    return {w: i + 2 for i, w in enumerate(top)}


def encode(texts: list[str], vocab: dict[str, int], max_len: int = MAX_LEN) -> torch.Tensor:
    out = np.zeros((len(texts), max_len), dtype=np.int64)
    for i, t in enumerate(texts):
        ids = [vocab.get(w, 1) for w in words(t)[:max_len]]
        out[i, : len(ids)] = ids
    return torch.from_numpy(out)


def load_splits(num_classes: int = 8) -> tuple[Split, Split, Split, list[str]]:
    docs = load_docstrings()
    counts: dict[str, int] = {}
    for d in docs:
        counts[d.package] = counts.get(d.package, 0) + 1
    classes = sorted(sorted(counts, key=lambda p: (-counts[p], p))[:num_classes])
    idx = {c: i for i, c in enumerate(classes)}
    rows = [(d, idx[d.package]) for d in docs if d.package in idx]
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for d, y in rows:
        b = stable_bucket(d.key)
        parts["train" if b < 60 else "val" if b < 80 else "test"].append((d.text, y))

    vocab = build_vocab([t for t, _ in parts["train"]])

    def mk(items: list[tuple[str, int]]) -> Split:
        return Split((encode([t for t, _ in items], vocab),), torch.tensor([y for _, y in items], dtype=torch.long))

    return mk(parts["train"]), mk(parts["val"]), mk(parts["test"]), classes


@register_task("docstrings")
def make_task(teacher_seed: int = 0) -> Task:
    """``teacher_seed``: the seed of the teacher's initial weights and training (a teacher per seed, each cached)."""
    train, val, test, classes = load_splits()
    model, trained_now, path = builtin_teacher(
        "docstrings",
        lambda: TransformerClassifier(num_classes=len(classes), **TEACHER_CONFIG),
        {"arch": _ARCH_VERSION, "cfg": TEACHER_CONFIG, "init_seed": teacher_seed},
        (train, val),
        TEACHER_EPOCHS,
        lr=1e-3,
        weight_decay=0.05,
        batch_size=32,
        init_seed=teacher_seed,
        seed=teacher_seed,
        threads=1,
    )
    task = Task(
        name="docstrings",
        model=model.eval(),
        example_inputs=(test.inputs[0][:1].clone(),),
        train=train,
        val=val,
        test=test,
        metric=accuracy,
        metric_name="accuracy",
        input_names=("ids",),
        output_names=("logits",),
        kind="classification",
        description=f"which stdlib package a docstring is from ({len(classes)} classes), byte-level transformer",
        info={"cache_file": str(path), "classes": classes, "max_len": MAX_LEN},
    )
    if trained_now:
        progress.current().message(f"docstrings teacher test accuracy {evaluate_torch(task):.4f}")
    return task
