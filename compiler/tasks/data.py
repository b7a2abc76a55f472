"""Data as streams: a task's splits from datasets, iterables, NumPy memory maps and image folders, in bounded memory.

Public functions (exported from ``adaptc.tasks``):

- ``split_from_arrays(*inputs, targets=None)``: NumPy arrays, memory maps or ``.npy`` paths as a ``Split``,
  without copying (a memory map stays on disk).
- ``split_from_dataset(source, *, key=None, batch_size=64, ...)``: a ``torch.utils.data.Dataset`` (map-style or
  iterable), a ``DataLoader``, a Hugging Face ``datasets.Dataset`` or any iterable of samples or batches.
- ``image_folder(root, *, size=None, ...) -> (split, class_names)``: a folder of images, one sub-folder per class
  (like torchvision's ``ImageFolder``) or flat (no targets), decoded with PIL.
- ``spool_root()``: where spools go by default (``<adaptc cache>/data``).

Each returns an ordinary :class:`Split` whose tensors are ``.npy`` files memory-mapped copy-on-write and wrapped
zero-copy by ``torch.from_numpy``: code that indexes rows (``t[idx]``, ``split.batches``) reads only those rows
and nothing is written back. A source that is not already an array is written ("spooled") once, one batch at a
time, into ``<spool root>/<fingerprint>/`` (``input_0.npy``, ..., ``targets.npy``, then ``meta.json``, the mark
of a complete spool) inside a temporary folder renamed into place when complete, and reused by the next run with
the same fingerprint. See docs/data.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler

from ..core import progress as _progress
from ..errors import AdaptcError
from .base import Split
from .spool import FORMAT, Spool, spool_root, spooled, structure

__all__ = ["IMAGE_EXTENSIONS", "image_folder", "spool_root", "split_from_arrays", "split_from_dataset"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# -- arrays --------------------------------------------------------------------------------------------------------
def split_from_arrays(
    *inputs: np.ndarray | torch.Tensor | str | os.PathLike[str],
    targets: np.ndarray | torch.Tensor | str | os.PathLike[str] | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
) -> Split:
    """A split of arrays as they are: NumPy arrays, ``np.memmap`` s, tensors or paths of ``.npy`` files (opened
    memory-mapped). Nothing is copied: a memory map stays on disk and is read row by row as the split is indexed.
    Read-only memory maps are reopened copy-on-write, so nothing can write into the file. ``spool_dir``: where
    ``Split.subset`` may gather large index subsets (default :func:`spool_root`)."""
    if not inputs:
        raise AdaptcError("split_from_arrays needs at least one input array")
    ts = [_tensor_of(a, f"input {i}") for i, a in enumerate(inputs)]
    y = _tensor_of(targets, "targets") if targets is not None else None
    lengths = [len(t) for t in ts] + ([len(y)] if y is not None else [])
    if len(set(lengths)) != 1:
        raise AdaptcError(f"split_from_arrays: arrays of different lengths {lengths} (inputs..., targets)")
    return Split(tuple(ts), y, spool_dir=Path(spool_dir) if spool_dir is not None else spool_root())


def _tensor_of(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, (str, os.PathLike)):
        p = Path(a)
        if p.suffix != ".npy":
            raise AdaptcError(f"{what}: {p} is not a .npy file (save each array with np.save to memory-map it)")
        try:
            a = np.load(p, mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise AdaptcError(f"{what}: {p} cannot be read as a .npy file: {e}") from None
    if not isinstance(a, np.ndarray):
        raise AdaptcError(f"{what}: a {type(a).__name__}, not a NumPy array, tensor or .npy path")
    if a.ndim == 0 or a.dtype.kind not in "biuf" or not a.dtype.isnative:
        raise AdaptcError(f"{what}: an array of {a.dtype} with shape {a.shape} (numbers, native byte order, 1+ dims)")
    if isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and not a.flags.writeable:
        order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
        a = np.memmap(a.filename, dtype=a.dtype, mode="c", offset=a.offset, shape=a.shape, order=order)
    with warnings.catch_warnings():  # other read-only arrays: shared as they are (adaptc never writes into data)
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        try:
            return torch.from_numpy(a)
        except (TypeError, ValueError) as e:
            raise AdaptcError(f"{what}: torch cannot share this array ({e}); pass np.ascontiguousarray(it)") from None


# -- datasets and iterables ----------------------------------------------------------------------------------------------
def split_from_dataset(
    source: Any,
    *,
    key: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    batched: bool | None = None,
    has_targets: bool = True,
    input_columns: Sequence[str] | None = None,
    target_column: str | None = "label",
    spool_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Split:
    """A split of any dataset, spooled once to ``.npy`` files (one batch in memory at a time) and memory-mapped.

    ``source``: a map-style ``torch.utils.data.Dataset`` (or anything with ``__len__`` and ``__getitem__``, e.g. a
    Hugging Face ``datasets.Dataset`` or a list), read in order through a ``DataLoader`` with ``num_workers``
    workers; an ``IterableDataset`` or any other iterable, read in order; a ``DataLoader``, whose items are batches
    (unless made with ``batch_size=None``). ``batched=True`` says that the items of a dataset or iterable are
    batches (first dimension the batch), ``False`` that a DataLoader's are samples.

    An item (a sample or a batch) is interpreted by its type:
    a tuple or list: with ``has_targets`` (default) and two or more elements the last element is the target and the
    others are the model's inputs, in order (``(x, y)``, ``(ids, mask, y)``); else all are inputs.
    A dict (Hugging Face rows): ``input_columns`` are the inputs (default: every key but ``target_column``, in the
    row's order) and ``target_column`` (default ``"label"``) the target, when the row has it.
    Anything else (a tensor, array or PIL image alone): one input, no target.
    Values are tensors, NumPy arrays, numbers or PIL images (an image becomes its uint8 array, (H, W[, C])); their
    dtype is kept (Python floats become float32, ints int64). Samples must share one shape per input: a
    transform of the dataset makes them so.

    ``key``: a name for this data (e.g. ``"flowers-v2-train"``): the spool is reused whenever a call has the same
    key, without reading the source. Without it a map-style dataset is fingerprinted by its type, length and 8
    samples spread over it (a Hugging Face dataset by its own fingerprint), and an iterable by its whole content
    (read again each run: the spool is reused, not duplicated). Change the key when the data change.
    ``spool_dir``: the parent folder of the spool (default :func:`spool_root`).
    """
    if batch_size < 1:
        raise AdaptcError(f"split_from_dataset: batch_size must be at least 1, not {batch_size}")
    name = _describe(source)
    cols = list(input_columns) if input_columns is not None else None
    layout = [FORMAT, batched, has_targets, cols, target_column]
    if key is not None:
        fp: str | None = "key-" + hashlib.sha256(json.dumps([str(key), *layout]).encode()).hexdigest()[:20]
    else:
        fp = _sampled_key(source, layout)
    items, is_batch, total = _items(source, batch_size, num_workers, batched)

    def fields(item: Any, where: str) -> tuple[list[Any], Any]:
        if isinstance(item, Mapping):
            names = cols if cols is not None else [k for k in item if k != target_column]
            missing = [c for c in names if c not in item]
            if missing or not names:
                raise AdaptcError(f"{where}: no column {missing or names} (it has: {', '.join(map(str, item))})")
            return [item[c] for c in names], (item.get(target_column) if target_column is not None else None)
        if isinstance(item, (tuple, list)):
            if not item:
                raise AdaptcError(f"{where}: an empty {type(item).__name__}")
            return (list(item[:-1]), item[-1]) if has_targets and len(item) > 1 else (list(item), None)
        return [item], None

    def fill(sp: Spool, step: _progress.Step) -> None:
        start = 0
        for k, item in enumerate(items):
            if is_batch:
                where = f"batch {k} of {name}"
                ins, tgt = fields(item, where)
                n_in = len(ins)
                xs = [_array(v, where) for v in ins] + ([_array(tgt, where)] if tgt is not None else [])
                if any(a.ndim == 0 or len(a) != len(xs[0]) for a in xs):
                    raise AdaptcError(
                        f"{where}: values without one common batch dimension (items not batches? pass batched=False)"
                    )
            else:
                rows = [fields(s, f"sample {start + j} of {name}") for j, s in enumerate(item)]
                shape = (len(rows[0][0]), rows[0][1] is not None)
                for j, r in enumerate(rows):
                    if (len(r[0]), r[1] is not None) != shape:
                        raise AdaptcError(
                            f"sample {start + j} of {name}: {structure(len(r[0]), r[1] is not None)}, "
                            f"sample {start} {structure(*shape)}"
                        )
                values = [[r[0][i] for r in rows] for i in range(shape[0])] + ([[r[1] for r in rows]] * shape[1])
                xs = [_stack(v, start, name) for v in values]
                n_in = shape[0]
            sp.add(xs[:n_in], xs[n_in] if len(xs) > n_in else None, f"sample {start} of {name}")
            start += len(xs[0])
            step.advance(1, note=f"{start} samples")

    return spooled(fp, spool_dir, name, fill, total, progress)[0]


def _describe(source: Any) -> str:
    if isinstance(source, DataLoader):
        return f"DataLoader({type(source.dataset).__name__})"
    return type(source).__name__


def _is_map_style(source: Any) -> bool:
    return (
        not isinstance(source, (IterableDataset, str, bytes, Mapping))
        and hasattr(source, "__len__")
        and hasattr(source, "__getitem__")
    )


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def _items(source: Any, batch_size: int, workers: int, batched: bool | None) -> tuple[Iterable[Any], bool, int | None]:
    """(items, whether each is a batch, how many if known): samples come in lists of ``batch_size``."""
    if isinstance(source, DataLoader) and (source.batch_sampler is not None if batched is None else batched):
        return source, True, _len(source)
    if batched:
        return source, True, _len(source)
    if not isinstance(source, DataLoader) and (isinstance(source, (Dataset, IterableDataset)) or _is_map_style(source)):
        loader = DataLoader(source, batch_size=batch_size, num_workers=workers, collate_fn=_as_list)
        return loader, False, _len(loader)
    if not isinstance(source, Iterable):
        raise AdaptcError(f"split_from_dataset: a {type(source).__name__} is not a dataset or an iterable")
    it: Iterator[Any] = iter(source)
    n = _len(source)
    return iter(lambda: list(islice(it, batch_size)), []), False, math.ceil(n / batch_size) if n else None


def _len(x: Any) -> int | None:
    try:
        return len(x)
    except TypeError:
        return None


def _sampled_key(source: Any, layout: list[Any]) -> str | None:
    """A fingerprint of a map-style dataset read from a few samples (None for an iterable)."""
    ds: Any = source.dataset if isinstance(source, DataLoader) else source
    if not _is_map_style(ds):
        return None
    if isinstance(source, DataLoader):  # a loader of all rows, in order or shuffled: else its content decides
        smp = source.sampler
        every = isinstance(smp, SequentialSampler) or (isinstance(smp, RandomSampler) and not smp.replacement)
        if not every or _len(smp) != len(ds) or source.drop_last:
            return None
    extra = getattr(source.collate_fn, "__qualname__", "") if isinstance(source, DataLoader) else ""
    h = hashlib.sha256(json.dumps([type(ds).__module__, type(ds).__qualname__, len(ds), extra, *layout]).encode())
    own = getattr(ds, "_fingerprint", None)  # Hugging Face datasets: a fingerprint of the content and transforms
    if isinstance(own, str):
        h.update(own.encode())
    else:
        for i in sorted({round(float(v)) for v in np.linspace(0, len(ds) - 1, min(len(ds), 8))}):
            _hash_item(h, ds[i])
    return "dataset-" + h.hexdigest()[:20]


def _hash_item(h: Any, x: Any) -> None:
    if isinstance(x, Mapping):
        for k in x:
            h.update(str(k).encode())
            _hash_item(h, x[k])
    elif isinstance(x, (tuple, list)) and not all(isinstance(v, (int, float)) for v in x):
        for v in x:
            _hash_item(h, v)
    elif isinstance(x, (str, bytes)):
        h.update(x.encode() if isinstance(x, str) else x)
    else:
        a = _array(x, "a sample")
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _array(x: Any, where: str) -> np.ndarray:
    """A value of a sample or batch as a NumPy array (its dtype kept; Python floats as float32)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        a = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    elif isinstance(x, (np.ndarray, np.generic)) or hasattr(x, "getbands"):  # getbands: a PIL image
        a = np.asarray(x)
    elif isinstance(x, (int, float, list, tuple)):
        try:
            a = np.asarray(x)
        except ValueError as e:
            raise AdaptcError(f"{where}: a {type(x).__name__} that is not an array of numbers: {e}") from None
        a = a.astype(np.float32) if a.dtype == np.float64 else a
    else:
        raise AdaptcError(
            f"{where}: a value of type {type(x).__name__} (tensors, NumPy arrays, numbers or PIL images; tokenize text first)"
        )
    if a.dtype.kind not in "biuf":
        raise AdaptcError(f"{where}: values of dtype {a.dtype} (numbers only: tokenize text, decode images first)")
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _stack(values: list[Any], start: int, name: str) -> np.ndarray:
    arrays = [_array(v, f"sample {start + j} of {name}") for j, v in enumerate(values)]
    for j, a in enumerate(arrays):
        if a.shape != arrays[0].shape:
            raise AdaptcError(
                f"sample {start + j} of {name}: shape {a.shape}, sample {start} {arrays[0].shape} "
                "(samples must share one shape; or are the items batches? pass batched=True)"
            )
    return np.stack(arrays)


# -- image folders ---------------------------------------------------------------------------------------------------
def image_folder(
    root: str | os.PathLike[str],
    *,
    size: int | tuple[int, int] | None = None,
    grayscale: bool = False,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    dtype: str = "float32",
    batch_size: int = 64,
    workers: int | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> tuple[Split, list[str]]:
    """The images of a folder as a split, decoded with PIL (``pip install pillow``; torchvision is not needed) and
    spooled once. Returns ``(split, class_names)``.

    Layout: one sub-folder per class (``root/cat/1.png``, ``root/dog/x/2.jpg``: torchvision's ``ImageFolder``;
    targets are the classes' indices in sorted order, int64; sub-folders without images are not classes) or
    images directly in ``root`` (no targets, ``class_names`` empty). Files are sorted by path; ``extensions``
    (case-insensitive) pick them. Inputs are (N, C, H, W), C = 1 with ``grayscale`` else 3 (RGB):
    ``dtype="float32"`` (or ``"float16"``) scales to [0, 1] then applies ``(x - mean) / std`` per channel if
    given; ``dtype="uint8"`` keeps the 0..255 bytes (4x smaller on disk; the task's model then takes uint8).
    ``size``: (H, W) or one int for squares: every image is resized to it (bilinear, aspect ratio not kept;
    default: the first image's size, which every image must then have). ``workers``: decoding threads (default
    up to 8). The spool is keyed by the files' paths, sizes and modification times and these options.
    """
    try:
        import PIL.Image  # noqa: F401 - checked here for a clear error; images are decoded in _load_image
    except ImportError:
        raise AdaptcError("image_folder needs Pillow: pip install pillow (or adaptc's [vision] extra)") from None
    folder = Path(root)
    if not folder.is_dir():
        raise AdaptcError(f"image folder {folder} does not exist or is not a folder")
    if dtype not in ("float32", "float16", "uint8"):
        raise AdaptcError(f"image_folder: dtype {dtype!r} (float32, float16 or uint8)")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    files, labels, classes = _list_images(folder, exts)
    channels = 1 if grayscale else 3
    norm = None
    if mean is not None or std is not None:
        if dtype == "uint8":
            raise AdaptcError("image_folder: mean and std need a float dtype, not uint8")
        try:
            m = np.broadcast_to(np.asarray(0.0 if mean is None else mean, np.float32), (channels,))
            s = np.broadcast_to(np.asarray(1.0 if std is None else std, np.float32), (channels,))
        except ValueError:
            raise AdaptcError(
                f"image_folder: mean {mean} and std {std} need one value or one per channel ({channels})"
            ) from None
        norm = (m.reshape(-1, 1, 1), s.reshape(-1, 1, 1))
    if size is None:
        hw = _load_image(files[0], None, grayscale)[1]
    else:
        hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    opts = [
        FORMAT,
        hw,
        grayscale,
        dtype,
        None if norm is None else [norm[0].ravel().tolist(), norm[1].ravel().tolist()],
    ]
    h = hashlib.sha256(json.dumps(opts).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    fp = f"images-{h.hexdigest()[:20]}"
    n_workers = workers or min(8, os.cpu_count() or 1)
    fixed = size is not None

    def fill(sp: Spool, step: _progress.Step) -> None:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for i in range(0, len(files), batch_size):
                chunk = files[i : i + batch_size]
                loaded = list(pool.map(lambda p: _load_image(p, hw if fixed else None, grayscale), chunk))
                for p, (_, got) in zip(chunk, loaded):
                    if got != hw:
                        raise AdaptcError(
                            f"image {p} is {got[0]}x{got[1]} (HxW), {files[0].name} {hw[0]}x{hw[1]}: "
                            "pass size=(H, W) to resize them all"
                        )
                x = np.stack([a for a, _ in loaded])
                if dtype != "uint8":
                    x = x.astype(np.float32) / 255.0
                    if norm is not None:
                        x = (x - norm[0]) / norm[1]
                    x = x.astype(dtype)
                y = np.asarray(labels[i : i + batch_size], np.int64) if classes else None
                sp.add((x,), y, f"image {chunk[0]}")
                step.advance(1, note=f"{i + len(chunk)} images")

    total = math.ceil(len(files) / batch_size)
    split, meta = spooled(fp, spool_dir, f"image folder {folder.name}", fill, total, progress, {"class_names": classes})
    return split, list(meta.get("class_names", []))


def _list_images(root: Path, exts: set[str]) -> tuple[list[Path], list[int], list[str]]:
    """(files, class index per file, class names): class sub-folders (searched recursively) or a flat folder."""

    def images(d: Path, recursive: bool) -> list[Path]:
        found = d.rglob("*") if recursive else d.iterdir()
        return sorted(p for p in found if p.suffix.lower() in exts and p.is_file() and not p.name.startswith("."))

    per_class = [(d.name, images(d, True)) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    per_class = [(c, fs) for c, fs in per_class if fs]
    flat = images(root, False)
    if per_class and flat:
        raise AdaptcError(
            f"image folder {root} has both images ({flat[0].name}, ...) and class folders "
            f"({per_class[0][0]}, ...): move the images into class folders"
        )
    if not per_class and not flat:
        raise AdaptcError(f"image folder {root} has no images ({', '.join(sorted(exts))}), nor class folders with some")
    if flat:
        return flat, [], []
    files = [f for _, fs in per_class for f in fs]
    labels = [k for k, (_, fs) in enumerate(per_class) for _ in fs]
    return files, labels, [c for c, _ in per_class]


def _load_image(path: Path, size: tuple[int, int] | None, grayscale: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """One image as (C, H, W) uint8, resized to ``size`` (H, W) if given, and its (H, W)."""
    from PIL import Image

    try:
        with Image.open(path) as f:
            im = f.convert("L" if grayscale else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise AdaptcError(f"image {path} cannot be read: {e}") from None
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return np.ascontiguousarray(a), (a.shape[1], a.shape[2])
