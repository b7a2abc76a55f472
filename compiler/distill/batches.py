"""Training batches for distillation: shuffled, length-bucketed for token tasks that trim padding per batch,
and kept in whole labelled groups for embedding tasks (the in-batch contrastive term needs its positives)."""

from __future__ import annotations

import torch

from ..tasks.base import Split, Task


def _train_batches(task: Task, batch_size: int, g: torch.Generator):  # noqa: ANN202
    """Shuffled training batches as (indices, inputs, targets). For token tasks that trim padding per batch
    (``task.batch_transform``), batches are formed from samples of similar length (sorted with a little noise,
    then the batch order is shuffled), so trimming removes most padding: much less compute on short texts."""
    split = task.train
    mask = _token_mask(split.inputs) if task.batch_transform is not None else None
    if _paired(task, split.targets):
        yield from _pair_batches(split, mask, batch_size, g)
        return
    if mask is None:
        order = torch.randperm(len(split), generator=g)
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        lengths = mask.sum(1).float() + 4 * torch.rand(len(split), generator=g)
        order = torch.argsort(lengths)
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        chunks = [chunks[j] for j in torch.randperm(len(chunks), generator=g).tolist()]
    for idx in chunks:
        yield idx, tuple(t[idx] for t in split.inputs), (split.targets[idx] if split.targets is not None else None)


def _n_batches(task: Task, batch_size: int) -> int:
    """How many batches ``_train_batches`` yields per epoch (to size the learning-rate schedule)."""
    y = task.train.targets
    if _paired(task, y):
        assert y is not None  # (as _paired checks)
        # the same chunking as training, in one order; with groups of unequal size another order may give one
        # batch more, so the schedule then has a batch to spare per epoch
        sizes = torch.unique(y[y >= 0], return_counts=True)[1]
        spare = int(bool((sizes != sizes[0]).any()))
        return len(_pair_chunks(task.train, None, batch_size, torch.Generator().manual_seed(0))) + spare
    return (len(task.train) + batch_size - 1) // batch_size


def _paired(task: Task, y: torch.Tensor | None) -> bool:
    """Whether an embedding task's targets label pairs: one integer per sample, some >= 0 (targets of another
    shape, such as a detector's boxes, are not pair labels: plain shuffled batches)."""
    return task.kind == "embedding" and y is not None and y.dim() == 1 and bool((y >= 0).any())


def _pair_chunks(split: Split, mask: torch.Tensor | None, batch_size: int, g: torch.Generator) -> list[torch.Tensor]:
    """The index batches of an embedding split with labelled pairs (targets >= 0 group a pair, -1 is
    unlabelled): the members of a group always share a batch, so the in-batch contrastive term sees its
    positives (groups fill a batch to at least ``batch_size``, never split); unlabelled samples fill their own
    batches. Length-bucketed when ``mask`` is given."""
    y = split.targets
    assert y is not None
    labelled = torch.nonzero(y >= 0).flatten()
    groups: dict[int, list[int]] = {}
    for i in labelled.tolist():
        groups.setdefault(int(y[i]), []).append(i)
    keys = list(groups)
    if mask is not None:
        # pairs of similar length share a batch (the longest member, with a little noise), so trimming the
        # padding per batch still pays; the batch order is shuffled by the caller
        lens = mask.sum(1).float()
        longest = torch.tensor([float(lens[groups[k]].max()) for k in keys]) + 4 * torch.rand(len(keys), generator=g)
        order = [keys[j] for j in torch.argsort(longest).tolist()]
    else:
        order = [keys[j] for j in torch.randperm(len(keys), generator=g).tolist()]
    chunks: list[torch.Tensor] = []
    cur: list[int] = []
    for k in order:
        cur.extend(groups[k])
        if len(cur) >= batch_size:
            chunks.append(torch.tensor(cur))
            cur = []
    if cur:
        chunks.append(torch.tensor(cur))
    rest = torch.nonzero(y < 0).flatten()
    if len(rest):
        if mask is not None:
            lengths = mask[rest].sum(1).float() + 4 * torch.rand(len(rest), generator=g)
            rest = rest[torch.argsort(lengths)]
        else:
            rest = rest[torch.randperm(len(rest), generator=g)]
        chunks += [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]
    return chunks


def _pair_batches(split: Split, mask: torch.Tensor | None, batch_size: int, g: torch.Generator):  # noqa: ANN202
    """The batches of :func:`_pair_chunks` in a shuffled order: (indices, inputs, targets)."""
    chunks = _pair_chunks(split, mask, batch_size, g)
    y = split.targets
    assert y is not None  # (as _pair_chunks asserts)
    for j in torch.randperm(len(chunks), generator=g).tolist():
        idx = chunks[j]
        yield idx, tuple(t[idx] for t in split.inputs), y[idx]


def _token_mask(xs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
    """The batch's token mask, for token-level relations: an integer second input of the same shape as the
    token ids (an attention mask), or else the non-zero (non-padding) ids."""
    if xs[0].dim() != 2 or xs[0].is_floating_point():
        return None
    if len(xs) > 1 and xs[1].shape == xs[0].shape and not xs[1].is_floating_point():
        return xs[1]
    return (xs[0] != 0).long()
