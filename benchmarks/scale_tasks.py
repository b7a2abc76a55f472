"""Task factories of the scale benchmark (benchmarks/scale_bench.py), as a user would write them.

- ``recognizer_on_disk``: EasyOCR's pretrained recogniser with its data read from ``.npy`` files on disk
  (memory-mapped: no split is loaded into memory), written by ``scale_bench.py prepare``.
- ``detector``: EasyOCR's CRAFT detector on rendered scenes, at a chosen size (384: ~50 GMACs per image).

Use: ``adaptc build --task benchmarks.scale_tasks:recognizer_on_disk -O data=DIR ...`` from the repository root.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from adaptc.tasks import Task, get_task, split_from_arrays


def recognizer_on_disk(data: str) -> Task:
    """The ``text-recognizer`` task with its train / val / test splits memory-mapped from ``data``/<split>_x.npy
    (images, N x 1 x 64 x W float32) and <split>_y.npy (encoded labels)."""
    root = Path(data)
    base = get_task("text-recognizer", samples=10)  # the pretrained model, metric, loss, names
    splits = {
        s: split_from_arrays(np.load(root / f"{s}_x.npy", mmap_mode="r"), targets=np.load(root / f"{s}_y.npy"))
        for s in ("train", "val", "test")
    }
    info = dict(base.info, data=f"{len(splits['train']):,} training words memory-mapped from {root.name}/")
    return replace(
        base,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        example_inputs=(splits["test"].inputs[0][:1].clone(),),
        info=info,
    )


def detector(samples: str = "300", size: str = "384") -> Task:
    """The ``text-detector`` task at ``size`` x ``size`` pixels with ``samples`` scenes (60/20/20)."""
    return get_task("text-detector", samples=int(samples), size=int(size))
