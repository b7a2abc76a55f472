"""The ``Task`` interface: what adaptc needs to know about a user's model.

A task bundles the trained teacher, an example input, the train/val/test data and the quality metric.
A user's own model comes in through ``--task package.module:factory``, where ``factory()`` returns a
:class:`Task`. See docs/tasks.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ..core.search_options import SearchOptions


@dataclass
class Split:
    """One data split: model inputs (one tensor per model input, batch first) and optional targets.

    The tensors may be in memory or memory-mapped files on disk (a *streamed* split, made by
    ``adaptc.tasks.data``: ``image_folder``, ``split_from_dataset``, ``split_from_arrays``). Code that indexes
    rows (``t[idx]``, :meth:`batches`) reads only those rows of a streamed split; ``spool_dir`` is then the
    folder on disk where :meth:`subset` gathers index subsets too large to hold in memory.
    """

    inputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor | None = None
    #: streamed splits: a folder on disk for rows gathered by ``subset`` (None: in memory, the usual case)
    spool_dir: Path | None = field(default=None, repr=False, compare=False)
    #: an index subset of a streamed split larger than this (bytes of its inputs) is gathered into a file
    subset_in_memory_bytes: ClassVar[int] = 64 << 20

    def __post_init__(self) -> None:
        if isinstance(self.inputs, torch.Tensor):
            self.inputs = (self.inputs,)
        self.inputs = tuple(self.inputs)
        if not self.inputs:
            raise ValueError("a Split needs at least one input tensor")
        n = len(self.inputs[0])
        if any(len(t) != n for t in self.inputs) or (self.targets is not None and len(self.targets) != n):
            raise ValueError("all tensors of a Split must have the same first (batch) dimension")

    def __len__(self) -> int:
        return len(self.inputs[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the inputs if all were in memory (of a streamed split: the size of its files' data)."""
        return sum(t.element_size() * t.numel() for t in self.inputs)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            yield tuple(t[idx] for t in self.inputs), (self.targets[idx] if self.targets is not None else None)

    def subset(self, idx: Sequence[int] | torch.Tensor | slice) -> Split:
        """The rows ``idx``. A slice is a view (of a streamed split: still on disk); indices copy the rows, into
        memory, or for a streamed split whose subset exceeds ``subset_in_memory_bytes`` into a temporary file
        under ``spool_dir`` (read chunk by chunk: memory stays bounded)."""
        y = self.targets
        if isinstance(idx, slice):
            return Split(
                tuple(t[idx] for t in self.inputs), y[idx] if y is not None else None, spool_dir=self.spool_dir
            )
        idx = torch.as_tensor(idx, dtype=torch.long)
        if self.spool_dir is not None and idx.dim() == 1 and len(idx):
            first = int(idx[0])
            if first >= 0 and first + len(idx) <= len(self) and bool((idx[1:] - idx[:-1] == 1).all()):  # a run: a view
                return self.subset(slice(first, first + len(idx)))
            if len(idx) * self.nbytes > self.subset_in_memory_bytes * len(self):
                from .spool import gather_rows

                inputs = tuple(gather_rows(t, idx, self.spool_dir) for t in self.inputs)
                return Split(inputs, y[idx] if y is not None else None, spool_dir=self.spool_dir)
        return Split(tuple(t[idx] for t in self.inputs), y[idx] if y is not None else None, spool_dir=self.spool_dir)

    def numpy_inputs(self) -> tuple[np.ndarray, ...]:
        """The inputs as NumPy arrays sharing the tensors' memory (of a streamed split: views of the files;
        whatever reads all their rows reads the whole split from disk)."""
        return tuple(t.detach().cpu().numpy() for t in self.inputs)


#: metric(outputs, split) -> score in [0, 1], higher is better. ``outputs`` is the model's first output
#: over the whole split, stacked along the batch dimension, as a NumPy array.
Metric = Callable[[np.ndarray, Split], float]
#: sample_scores(outputs, split) -> one score per sample (per query for retrieval) whose mean is the metric;
#: reports resample them for the metric's sampling error (``adaptc.core.stats``)
SampleScores = Callable[[np.ndarray, Split], np.ndarray]


def correct(outputs: np.ndarray, split: Split) -> np.ndarray:
    """Per sample, 1.0 where the top class of the scores (N, C) is the target: the samples of ``accuracy``."""
    if split.targets is None:
        raise ValueError("accuracy needs targets")
    pred = np.asarray(outputs).reshape(len(split), -1).argmax(axis=1)
    return (pred == split.targets.cpu().numpy()).astype(np.float64)


def accuracy(outputs: np.ndarray, split: Split) -> float:
    """Top-1 accuracy of class scores (N, C) against integer targets."""
    return float(correct(outputs, split).mean())


def teacher_agreement(outputs: np.ndarray, reference: np.ndarray, kind: str) -> float:
    """How closely a student's outputs follow the teacher's (``reference``) on the same samples, in [0, 1] (cosine
    may go below 0): for ``classification`` the share of samples with the same top class; for ``sequence`` the share
    of steps with the same top class among the steps where the teacher or the student gives another class than
    the teacher's most common one (a CTC recogniser's blank fills most steps: counted, every student would agree
    on 85-90% of them); for ``embedding`` the mean cosine. A graded signal where the task's metric is not (yet):
    a student a short search trained reads no word right but already follows many of the teacher's characters."""
    a, b = np.asarray(outputs, dtype=np.float32), np.asarray(reference, dtype=np.float32)
    if kind == "sequence":
        s, t = a.argmax(-1), b.argmax(-1)
        common = np.bincount(t.ravel()).argmax()
        said = (t != common) | (s != common)
        return float((s == t)[said].mean()) if said.any() else 1.0
    if kind == "classification":
        return float((a.argmax(-1) == b.argmax(-1)).mean())
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.where(den > 0, (a * b).sum(axis=1) / np.maximum(den, 1e-30), 1.0)))


@dataclass
class Task:
    """What a build needs: a trained teacher, its data and how to score it.

    Attributes:
        name: short identifier used in reports and cache keys.
        model: the trained teacher (an ``nn.Module``; put in eval mode by adaptc).
        example_inputs: one example per model input, batch size 1 (shapes and dtypes of the exported graph).
        train, val, test: data splits. ``train`` is used for distillation and calibration, ``val`` for
            selection, ``test`` only for the numbers in the report.
        metric: ``metric(outputs, split) -> float`` in [0, 1], higher is better (default: top-1 accuracy).
        sample_scores: ``sample_scores(outputs, split) -> array`` of per-sample scores whose mean is the metric
            (set for ``accuracy``; optional for other metrics): reports give the metric's 95% interval over the
            test samples and the parity gate the interval of each drop. Without it they give the metric alone.
        metric_name: how reports name the metric.
        input_names, output_names: names of the graph inputs/outputs in exported artifacts.
        kind: ``classification`` (outputs are class scores), ``embedding`` (outputs are vectors or maps) or
            ``sequence`` (outputs are class scores per step, (N, T, C), e.g. a CTC recogniser's: distilled with the
            per-step KL like a classifier's logits, compared by cosine in the parity gate, no top-1 agreement).
        loss: loss for training a student without a teacher (default: cross-entropy on targets).
        augment: optional training-time augmentation ``augment(inputs, generator) -> inputs``.
        description: one line for reports.
    """

    name: str
    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    train: Split
    val: Split
    test: Split
    metric: Metric = accuracy
    metric_name: str = "accuracy"
    sample_scores: SampleScores | None = None
    input_names: tuple[str, ...] = ("input",)
    output_names: tuple[str, ...] = ("logits",)
    kind: Literal["classification", "embedding", "sequence"] = "classification"
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: optional training-time augmentation ``augment(inputs, generator) -> inputs`` (students and baselines)
    augment: Callable[[tuple[torch.Tensor, ...], torch.Generator], tuple[torch.Tensor, ...]] | None = None
    #: optional per-batch transform for torch training and evaluation that does not change results, e.g.
    #: trimming all-padding token columns (exported artifacts always see the full example shape)
    batch_transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None = None
    description: str = ""
    #: defaults of the student search for this task (``distill`` holds DistillConfig fields such as lr or
    #: batch_size); what the user sets explicitly wins
    search_defaults: SearchOptions = field(default_factory=SearchOptions)
    #: free-form facts about the teacher for the report (e.g. training epochs, cache file)
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.example_inputs, torch.Tensor):
            self.example_inputs = (self.example_inputs,)
        self.example_inputs = tuple(self.example_inputs)
        if len(self.input_names) != len(self.example_inputs):
            if self.input_names == ("input",):
                self.input_names = tuple(f"input_{i}" for i in range(len(self.example_inputs)))
            else:
                raise ValueError(
                    f"task {self.name!r}: {len(self.input_names)} input_names for {len(self.example_inputs)} inputs"
                )
        if self.sample_scores is None and self.metric is accuracy:
            self.sample_scores = correct
        self.model.eval()

    def per_sample(self, outputs: np.ndarray, split: Split, metric: float | None = None) -> np.ndarray | None:
        """The metric's per-sample scores on ``split`` (None when the task has none). Scores that do not average
        to the metric (a user's ``sample_scores`` that disagrees with ``metric``) are not used: None."""
        if self.sample_scores is None:
            return None
        s = np.asarray(self.sample_scores(outputs, split), dtype=np.float64).reshape(-1)
        m = self.metric(outputs, split) if metric is None else metric
        if not len(s) or not np.isclose(s.mean(), m, rtol=0, atol=1e-6):
            return None
        return s

    def train_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.loss is not None:
            return self.loss(outputs, targets)
        return nn.functional.cross_entropy(outputs, targets)


#: input elements per batch of :func:`predict_torch` (256 samples of up to 16 K elements: digits, a 64 x 256
#: word crop; 9 of a 384 x 384 RGB scene, whose activations at 256 a batch would need tens of GB)
PREDICT_ELEMENTS = 1 << 22


@torch.no_grad()
def predict_torch(
    model: nn.Module,
    split: Split,
    batch_size: int | None = None,
    transform: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None = None,
) -> np.ndarray:
    """The model's first output over a split, as one NumPy array. ``batch_size`` (default: 256, fewer for large
    inputs, see :data:`PREDICT_ELEMENTS`)."""
    if batch_size is None:
        per_sample = sum(t[:1].numel() for t in split.inputs) or 1
        batch_size = max(1, min(256, PREDICT_ELEMENTS // per_sample))
    was_training = model.training
    model.eval()
    outs = []
    for xs, _ in split.batches(batch_size):
        if transform is not None:
            xs = transform(xs)
        y = model(*xs)
        if isinstance(y, (tuple, list)):
            y = y[0]
        outs.append(y.detach().float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(outs, axis=0)


def evaluate_torch(task: Task, model: nn.Module | None = None, split: str = "test") -> float:
    s: Split = getattr(task, split)
    return task.metric(predict_torch(model if model is not None else task.model, s, transform=task.batch_transform), s)


def paired_contrastive_loss(emb: torch.Tensor, targets: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """In-batch InfoNCE for embedding tasks with labelled pairs: rows with the same target >= 0 are positives
    (e.g. a docstring's summary and its body), every other row of the batch a negative; rows labelled -1
    (unlabelled text) only serve as negatives. Rows without a partner in the batch do not contribute.
    The embedding counterpart of a classifier's cross-entropy on hard labels (the ``ce`` term)."""
    e = nn.functional.normalize(emb, dim=-1)
    sims = e @ e.T / temperature
    n = len(e)
    eye = torch.eye(n, dtype=torch.bool, device=e.device)
    sims = sims.masked_fill(eye, float("-inf"))
    pos = (targets[:, None] == targets[None, :]) & (targets[:, None] >= 0) & ~eye
    rows = pos.any(1)
    if not bool(rows.any()):
        return emb.sum() * 0.0
    log_p = sims[rows].log_softmax(dim=1)
    p = pos[rows].float()
    return -((log_p.masked_fill(~pos[rows], 0.0) * p).sum(1) / p.sum(1)).mean()


def trim_padding(xs: tuple[torch.Tensor, ...], mask_index: int = 1) -> tuple[torch.Tensor, ...]:
    """Drop trailing token columns that are padding in every row (the attention mask is input ``mask_index``)."""
    mask = xs[mask_index]
    keep = int(mask.sum(dim=1).max().item()) if mask.numel() else mask.shape[1]
    keep = max(1, keep)
    return tuple(x[:, :keep] if x.dim() >= 2 and x.shape[1] == mask.shape[1] else x for x in xs)


def load_domain_data(path: str | os.PathLike[str], task: Task) -> Split:
    """Unlabelled in-domain inputs for data mixing: a ``.npz`` with one array per model input, named like the
    task's inputs (``image``, ``ids``, ...) or ``input_0``, ``input_1``, ...; batch first, same per-sample shape
    as the task's example inputs."""
    from ..errors import AdaptcError

    p = Path(path)
    if not p.exists():
        raise AdaptcError(f"domain data file {p} does not exist")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as e:
        raise AdaptcError(f"domain data {p} is not a readable .npz file: {type(e).__name__}: {e}") from None
    with z:
        arrays = []
        for i, (name, ex) in enumerate(zip(task.input_names, task.example_inputs)):
            key = name if name in z.files else f"input_{i}" if f"input_{i}" in z.files else None
            if key is None:
                raise AdaptcError(f"domain data {p} has no array {name!r} (or input_{i}); it has: {', '.join(z.files)}")
            try:
                a = z[key]
            except Exception as e:  # a damaged member (its index intact): BadZipFile, ValueError, EOFError, ...
                raise AdaptcError(f"domain data {p}: array {key!r} cannot be read: {type(e).__name__}: {e}") from None
            if tuple(a.shape[1:]) != tuple(ex.shape[1:]):
                raise AdaptcError(
                    f"domain data {p}: array {key!r} has per-sample shape {tuple(a.shape[1:])}, the task "
                    f"expects {tuple(ex.shape[1:])}"
                )
            arrays.append(torch.from_numpy(a.astype(ex.numpy().dtype)))
    if len(arrays[0]) == 0:
        raise AdaptcError(f"domain data {p} is empty")
    return Split(tuple(arrays))
