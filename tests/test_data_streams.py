"""Data as streams (adaptc.tasks.data): image folders, memory maps, datasets, loaders and iterables become splits
of memory-mapped .npy files, spooled once in bounded memory and reused. Real torch / NumPy / PIL, nothing mocked."""

from __future__ import annotations

import gc
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from adaptc.core import progress
from adaptc.errors import AdaptcError
from adaptc.tasks import Split, accuracy, image_folder, split_from_arrays, split_from_dataset
from adaptc.tasks.spool import MARKER
from adaptc.tasks.training import train_supervised

Image = pytest.importorskip("PIL.Image", reason="image folders need Pillow (the [vision] extra)")


def mapped_file(t: torch.Tensor) -> str | None:
    """The file a tensor's memory is mapped from ('' for anonymous memory), from /proc/self/maps."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc/self/maps on this system")
    ptr = t.data_ptr()
    for line in maps.read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        if lo <= ptr < hi:
            return parts[5].strip() if len(parts) > 5 else ""
    return None


def spools(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


# -- image folders -----------------------------------------------------------------------------------------------------
def write_images(root: Path, per_class: int = 10, size: tuple[int, int] = (10, 12)) -> dict[str, list[np.ndarray]]:
    """``per_class`` random RGB PNGs (H, W = size) in root/cat and root/dog."""
    rng = np.random.default_rng(0)
    out: dict[str, list[np.ndarray]] = {}
    for cls in ("dog", "cat"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / cls / f"{i:02d}.png")
            out.setdefault(cls, []).append(a)
    return out


def test_image_folder_with_class_folders(tmp_path: Path) -> None:
    imgs = write_images(tmp_path / "imgs")
    split, classes = image_folder(tmp_path / "imgs", spool_dir=tmp_path / "spool")
    assert classes == ["cat", "dog"] and len(split) == 20
    x = split.inputs[0]
    assert x.shape == (20, 3, 10, 12) and x.dtype == torch.float32
    assert split.targets is not None and split.targets.tolist() == [0] * 10 + [1] * 10
    assert split.targets.dtype == torch.int64
    np.testing.assert_allclose(x[3].numpy(), imgs["cat"][3].transpose(2, 0, 1) / 255.0, atol=1e-6)
    np.testing.assert_allclose(x[12].numpy(), imgs["dog"][2].transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert split.nbytes == 20 * 3 * 10 * 12 * 4
    assert mapped_file(x).endswith("input_0.npy")  # on disk, not in memory

    small, _ = image_folder(tmp_path / "imgs", size=8, grayscale=True, dtype="uint8", spool_dir=tmp_path / "spool")
    assert small.inputs[0].shape == (20, 1, 8, 8) and small.inputs[0].dtype == torch.uint8
    norm, _ = image_folder(tmp_path / "imgs", mean=[0.5, 0.5, 0.5], std=0.25, spool_dir=tmp_path / "spool")
    np.testing.assert_allclose(norm.inputs[0][0].numpy(), (x[0].numpy() - 0.5) / 0.25, atol=1e-5)
    assert len(spools(tmp_path / "spool")) == 3  # one spool per set of options


def test_image_folder_flat_has_no_targets(tmp_path: Path) -> None:
    for i in range(5):
        Image.fromarray(np.full((6, 6), i * 40, np.uint8)).save(tmp_path / f"{i}.jpg", quality=100)
    (tmp_path / "notes.txt").write_text("not an image")
    split, classes = image_folder(tmp_path, spool_dir=tmp_path / ".spool")
    assert classes == [] and split.targets is None and split.inputs[0].shape == (5, 3, 6, 6)


def test_image_folder_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdaptcError, match="has no images"):
        image_folder(tmp_path / "empty", spool_dir=tmp_path / "s")
    write_images(tmp_path / "bad", per_class=2)
    (tmp_path / "bad" / "cat" / "zz.png").write_bytes(b"not a png")
    with pytest.raises(AdaptcError, match=r"image .*zz\.png cannot be read"):
        image_folder(tmp_path / "bad", spool_dir=tmp_path / "s")
    write_images(tmp_path / "sizes", per_class=2)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "sizes" / "dog" / "big.png")
    with pytest.raises(AdaptcError, match=r"big\.png is 5x5 .*pass size="):
        image_folder(tmp_path / "sizes", spool_dir=tmp_path / "s")
    assert len(image_folder(tmp_path / "sizes", size=(5, 5), spool_dir=tmp_path / "s")[0]) == 5
    with pytest.raises(AdaptcError, match=r"one per channel \(1\)"):
        image_folder(tmp_path / "sizes", size=5, grayscale=True, mean=[0.5, 0.5, 0.5], spool_dir=tmp_path / "s")
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".adaptc-tmp")]  # failed spools removed


# -- arrays --------------------------------------------------------------------------------------------------------------
def test_memmap_arrays_stay_on_disk_and_are_never_written(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((300, 4, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    y = np.arange(300) % 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "array is not writable" warning
        a = split_from_arrays(np.load(tmp_path / "x.npy", mmap_mode="r"), targets=y)
        b = split_from_arrays(tmp_path / "x.npy", targets=torch.as_tensor(y))
    for s in (a, b):
        assert mapped_file(s.inputs[0]) == str(tmp_path / "x.npy")
        assert torch.equal(s.inputs[0][torch.tensor([7, 250])], torch.from_numpy(x[[7, 250]]))
        s.inputs[0][0] += 1.0  # copy-on-write: the process's page, never the file
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), x)
    xs, ys = next(b.batches(32, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert xs[0].shape == (32, 4, 5) and ys is not None and ys.shape == (32,)

    np.savez(tmp_path / "x.npz", x=x)
    with pytest.raises(AdaptcError, match="not a .npy file"):
        split_from_arrays(tmp_path / "x.npz")
    with pytest.raises(AdaptcError, match="different lengths"):
        split_from_arrays(x, targets=y[:10])
    with pytest.raises(AdaptcError, match="np.ascontiguousarray"):
        split_from_arrays(x[::-1])


def test_subsets_of_streamed_splits_stay_cheap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.arange(1000 * 64, dtype=np.float32).reshape(1000, 64)
    np.save(tmp_path / "x.npy", x)
    s = split_from_arrays(tmp_path / "x.npy", targets=np.arange(1000), spool_dir=tmp_path / "spool")
    run = s.subset(torch.arange(100, 300))  # a run of rows: a view of the same file
    assert mapped_file(run.inputs[0]) == str(tmp_path / "x.npy") and run.targets is not None
    assert run.targets[0] == 100
    monkeypatch.setattr(Split, "subset_in_memory_bytes", 1024)
    idx = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:400].sort().values
    big = s.subset(idx)  # gathered chunk by chunk into a temporary file under the spool folder
    assert torch.equal(big.inputs[0], torch.from_numpy(x[idx.numpy()])) and torch.equal(big.targets, idx)
    assert str(tmp_path / "spool") in mapped_file(big.inputs[0])
    assert big.spool_dir == tmp_path / "spool"
    small = Split((torch.arange(10.0)[:, None],)).subset([3, 1])  # in-memory splits: as before
    assert small.inputs[0].flatten().tolist() == [3.0, 1.0] and small.spool_dir is None


# -- datasets, loaders, iterables -----------------------------------------------------------------------------------
class Counting(Dataset):
    """A map-style dataset of (3x4 image, label) samples that counts its reads."""

    def __init__(self, n: int = 150, fail_at: int | None = None):
        self.n, self.reads, self.fail_at = n, 0, fail_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if i == self.fail_at:
            raise RuntimeError(f"disk error at {i}")
        self.reads += 1
        return torch.full((3, 4), float(i)), i % 5


def test_map_style_dataset_is_spooled_once_and_reused(tmp_path: Path) -> None:
    ds = Counting()
    s = split_from_dataset(ds, batch_size=32, spool_dir=tmp_path)
    assert len(s) == 150 and s.inputs[0].shape == (150, 3, 4) and s.inputs[0].dtype == torch.float32
    assert s.targets is not None and s.targets.dtype == torch.int64 and s.targets[:6].tolist() == [0, 1, 2, 3, 4, 0]
    assert torch.equal(s.inputs[0][:, 0, 0], torch.arange(150.0))
    assert mapped_file(s.inputs[0]).endswith("input_0.npy")
    first = ds.reads
    assert first >= 150
    again = split_from_dataset(ds, batch_size=32, spool_dir=tmp_path)
    assert ds.reads - first <= 8  # the fingerprint's few samples, not the data
    assert torch.equal(again.inputs[0], s.inputs[0])
    keyed = Counting()
    split_from_dataset(keyed, key="counting-v1", spool_dir=tmp_path)
    n = keyed.reads
    split_from_dataset(keyed, key="counting-v1", spool_dir=tmp_path)
    assert keyed.reads == n  # a key: not one sample read
    workers = split_from_dataset(Counting(), num_workers=2, key="workers", spool_dir=tmp_path)
    assert torch.equal(workers.inputs[0], s.inputs[0]) and torch.equal(workers.targets, s.targets)


def test_spool_without_its_marker_is_rebuilt_and_a_failed_one_leaves_nothing(tmp_path: Path) -> None:
    ds = Counting(40)
    split_from_dataset(ds, key="k", spool_dir=tmp_path)
    (folder,) = spools(tmp_path)
    meta = json.loads((folder / MARKER).read_text())
    assert meta["n"] == 40 and meta["files"] == ["input_0.npy", "targets.npy"]
    np.testing.assert_array_equal(np.load(folder / "targets.npy"), np.arange(40) % 5)  # plain .npy files
    (folder / MARKER).unlink()  # as a crash before completion would leave it
    reads = ds.reads
    s = split_from_dataset(ds, key="k", spool_dir=tmp_path)
    assert ds.reads == reads + 40 and len(s) == 40 and (folder / MARKER).exists()

    with pytest.raises(RuntimeError, match="disk error at 70"):
        split_from_dataset(Counting(100, fail_at=70), key="broken", spool_dir=tmp_path, batch_size=16)
    assert spools(tmp_path) == [folder]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".adaptc-tmp")]


class Stream(IterableDataset):
    def __iter__(self):
        for i in range(45):
            yield torch.full((2,), float(i)), torch.tensor([i, i + 1]), i % 3


def test_iterable_dataset_loader_and_iterables(tmp_path: Path) -> None:
    s = split_from_dataset(Stream(), batch_size=10, spool_dir=tmp_path)
    assert len(s) == 45 and len(s.inputs) == 2 and s.inputs[1].dtype == torch.int64
    assert s.inputs[1][44].tolist() == [44, 45] and s.targets is not None and s.targets[44] == 2
    split_from_dataset(Stream(), batch_size=10, spool_dir=tmp_path)  # read again, stored once
    assert len(spools(tmp_path)) == 1

    x, y = torch.randn(50, 6), torch.arange(50) % 4
    for loader in (DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x, y), batch_size=None)):
        got = split_from_dataset(loader, spool_dir=tmp_path)
        assert torch.equal(got.inputs[0], x) and torch.equal(got.targets, y)
    shuffled = split_from_dataset(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), spool_dir=tmp_path)
    assert sorted(shuffled.targets.tolist()) == sorted(y.tolist())

    batches = [(x[i : i + 16].numpy(), y[i : i + 16].numpy()) for i in range(0, 50, 16)]
    got = split_from_dataset(batches, batched=True, key="batches", spool_dir=tmp_path)
    assert torch.equal(got.inputs[0], x) and torch.equal(got.targets, y)

    rows = ({"pixels": [i, i * 2], "mask": np.ones(3, np.int8), "label": i % 2} for i in range(20))
    got = split_from_dataset(rows, input_columns=("pixels", "mask"), spool_dir=tmp_path)
    assert [t.dtype for t in got.inputs] == [torch.int64, torch.int8] and got.targets.tolist() == [0, 1] * 10
    bare = split_from_dataset([np.full(3, i, np.float16) for i in range(7)], spool_dir=tmp_path)
    assert bare.targets is None and bare.inputs[0].dtype == torch.float16 and len(bare) == 7
    pairs = split_from_dataset([(1.5 * i, float(i)) for i in range(5)], has_targets=False, spool_dir=tmp_path)
    assert len(pairs.inputs) == 2 and pairs.targets is None and pairs.inputs[0].dtype == torch.float32


def test_bad_samples_are_named(tmp_path: Path) -> None:
    ragged = [(torch.zeros(3), 0)] * 40 + [(torch.zeros(4), 1)]
    with pytest.raises(AdaptcError, match=r"sample 40 of list: .*shape \(4,\)"):
        split_from_dataset(ragged, batch_size=16, spool_dir=tmp_path)
    with pytest.raises(AdaptcError, match=r"sample 2 of list: a value of type str"):
        split_from_dataset([(np.zeros(2), 0), (np.zeros(2), 1), ("hello", 2)], spool_dir=tmp_path)
    with pytest.raises(AdaptcError, match="of type object"):
        split_from_dataset([object()], spool_dir=tmp_path)
    with pytest.raises(AdaptcError, match=r"sample 1 of list: 1 input, no target, sample 0 1 input and a target"):
        split_from_dataset([(np.zeros(2), 0), (np.zeros(2),)], spool_dir=tmp_path)
    with pytest.raises(AdaptcError, match="list: no samples"):
        split_from_dataset([], spool_dir=tmp_path)
    with pytest.raises(AdaptcError, match=r"no column \['text'\]"):
        split_from_dataset([{"label": 1}], input_columns=["text"], spool_dir=tmp_path)


# -- bounded memory, progress, training -------------------------------------------------------------------------------
class Big(Dataset):
    """2,000 samples of 3x64x64 float32: 98 MB in all."""

    def __len__(self) -> int:
        return 2000

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((3, 64, 64), float(i)), i % 10


def anonymous_memory() -> int:
    """The process's resident anonymous memory (Linux: RssAnon; pages of mapped files are the page cache's, which
    the kernel evicts as it needs), else its whole resident set (psutil)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    psutil = pytest.importorskip("psutil")
    return int(psutil.Process().memory_info().rss)


class MemoryReporter:
    """A progress reporter that records the anonymous memory at every advance."""

    def __init__(self) -> None:
        self.memory: list[int] = []
        self.steps: list[tuple[str, float | None]] = []

    def step(self, description: str, total: float | None = None) -> Any:
        self.steps.append((description, total))
        memory = self.memory

        class Step:
            def advance(self, n: float = 1, *, note: str | None = None) -> None:
                memory.append(anonymous_memory())

            def done(self, note: str | None = None) -> None:
                pass

        return Step()

    def message(self, text: str) -> None:
        pass


def test_spooling_and_reading_keep_memory_bounded(tmp_path: Path) -> None:
    rep = MemoryReporter()
    gc.collect()
    before = anonymous_memory()
    with progress.using(rep):
        s = split_from_dataset(Big(), batch_size=64, spool_dir=tmp_path)
    assert s.nbytes == 2000 * 3 * 64 * 64 * 4  # 98 MB
    assert len(rep.memory) == 32 and rep.steps[0][1] == 32  # one advance per batch
    grew = max([*rep.memory, anonymous_memory()]) - before
    assert grew < 40 * 2**20, f"spooling 98 MB grew the anonymous memory by {grew / 2**20:.0f} MB"
    assert mapped_file(s.inputs[0]).endswith("input_0.npy")
    total = 0.0
    for xs, _ in s.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0)):  # an epoch
        total += float(xs[0][:, 0, 0, 0].sum())
    assert total == sum(range(2000))
    grew = anonymous_memory() - before
    assert grew < 40 * 2**20, f"an epoch over 98 MB grew the anonymous memory by {grew / 2**20:.0f} MB"


def test_training_on_a_streamed_split(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", per_class=12, size=(8, 8))
    split, classes = image_folder(tmp_path / "imgs", spool_dir=tmp_path / "spool")
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, len(classes)))
    model, best = train_supervised(
        model,
        split,
        split.subset(torch.tensor([0, 5, 13, 20])),
        metric=accuracy,
        loss_fn=nn.functional.cross_entropy,
        epochs=1,
        batch_size=8,
    )
    assert 0.0 <= best <= 1.0


def test_hugging_face_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="the Hugging Face datasets package is not installed")
    ds = datasets.Dataset.from_dict({"x": [[float(i)] * 4 for i in range(30)], "label": [i % 3 for i in range(30)]})
    s = split_from_dataset(ds.with_format("numpy"), spool_dir=tmp_path)
    assert s.inputs[0].shape == (30, 4) and s.targets is not None and s.targets.tolist() == [i % 3 for i in range(30)]
    reads = len(spools(tmp_path))
    split_from_dataset(ds.with_format("numpy"), spool_dir=tmp_path)
    assert len(spools(tmp_path)) == reads
