"""Rendered text for the OCR tasks, no downloads: word crops for the recogniser and text scenes for the detector.

Text is drawn with PIL in the DejaVu fonts that matplotlib ships (``mpl-data/fonts/ttf``). Words are real words
(with their punctuation and numbers) from the docstrings of a fixed set of standard-library modules, read with
``ast``. Everything is deterministic from a seed (for a given Python version: the docstrings are its own).

- :func:`render_words`: grey crops of height 64 and a fixed width, the word as label, normalised as easyocr does
  ((x/255 - 0.5) / 0.5); a share of them under mild camera conditions (blur, noise, low contrast).
- :func:`render_scenes`: square RGB scenes with 1-4 words on a random crop of scikit-learn's two sample photos
  or a plain colour, the words' boxes (``ImageDraw.textbbox``) as ground truth; normalised for CRAFT
  (ImageNet mean / std x 255 on 0..255 RGB).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TaskError
from .easyocr_nets import CRAFT_MEAN, CRAFT_STD

CROP_HEIGHT = 64
#: the most words in a scene
MAX_WORDS = 4
#: camera conditions of a word crop: Gaussian blur radius and noise standard deviation (grey levels), uniform in
#: these ranges; half of such crops also at low contrast
CAMERA_BLUR = (0.5, 2.0)
CAMERA_NOISE = (2.0, 12.0)
#: the fonts words are drawn in (matplotlib's copies of DejaVu)
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
)
#: pure-Python standard-library modules whose docstrings give the vocabulary
VOCAB_MODULES = (
    "argparse",
    "calendar",
    "configparser",
    "csv",
    "difflib",
    "fractions",
    "ftplib",
    "gettext",
    "heapq",
    "imaplib",
    "mailbox",
    "optparse",
    "pprint",
    "random",
    "shutil",
    "smtplib",
    "statistics",
    "string",
    "tarfile",
    "textwrap",
    "zipfile",
)
#: a word: letters and digits, at most one inner hyphen or apostrophe ("built-in", "don't")
_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)?")


def _pil() -> Any:
    try:
        from PIL import Image, ImageDraw, ImageFilter, ImageFont
    except ImportError:
        raise TaskError('the OCR tasks draw text with pillow: pip install -c constraints.txt ".[vision]"') from None
    return Image, ImageDraw, ImageFilter, ImageFont


@functools.cache
def font_dir() -> Path:
    import matplotlib

    d = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    if not (d / FONTS[0]).is_file():
        raise TaskError(f"matplotlib's DejaVu fonts are missing from {d}")
    return d


@functools.cache
def _font(name: str, size: int) -> Any:
    return _pil()[3].truetype(str(font_dir() / name), size)


@functools.cache
def vocabulary(min_len: int = 2, max_len: int = 12) -> tuple[str, ...]:
    """Distinct words of the docstrings of :data:`VOCAB_MODULES`: whitespace-separated tokens without the
    punctuation and markup around them, letters and digits with at most one inner hyphen or apostrophe; sorted."""
    words: set[str] = set()
    for name in VOCAB_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        try:
            tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                for tok in (doc or "").split():
                    tok = tok.strip("`*.,;:!?()[]{}<>\"'")
                    if min_len <= len(tok) <= max_len and _WORD.fullmatch(tok):
                        words.add(tok)
    if len(words) < 100:
        raise TaskError("too few words in the standard library's docstrings to render OCR data")
    return tuple(sorted(words))


# -- word crops -----------------------------------------------------------------------------------------------


@dataclass
class Words:
    #: (N, 1, 64, width) float32, (x/255 - 0.5) / 0.5
    images: np.ndarray
    labels: list[str]


def _word_crop(word: str, width: int, rng: np.random.Generator, camera: bool) -> np.ndarray:
    """One grey crop (64, width) uint8 of ``word``: text filling most of the height (as a detector's box does),
    shrunk to fit the width, a few pixels from the left edge."""
    Image, ImageDraw, ImageFilter, _ = _pil()
    font_name = FONTS[int(rng.integers(len(FONTS)))]
    size = int(rng.integers(34, 50))
    margin = int(rng.integers(2, 9))
    while True:
        font = _font(font_name, size)
        left, top, right, bottom = font.getbbox(word)
        if (right - left <= width - 2 * margin and bottom - top <= CROP_HEIGHT - 4) or size <= 14:
            break
        size -= 2
    dark_on_light = rng.random() < 0.8
    lo, hi = int(rng.integers(0, 70)), int(rng.integers(185, 256))
    if camera and rng.random() < 0.5:  # low contrast
        lo, hi = lo + 50, hi - 50
    bg, fg = (hi, lo) if dark_on_light else (lo, hi)
    img = Image.new("L", (width, CROP_HEIGHT), bg)
    x = margin - left  # the text at the left, the rest of the width background (easyocr pads crops on the right)
    y = (CROP_HEIGHT - (bottom - top)) // 2 - top + int(rng.integers(-2, 3))
    ImageDraw.Draw(img).text((x, y), word, font=font, fill=fg)
    if camera:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(*CAMERA_BLUR))))
    a = np.asarray(img, dtype=np.float64)
    if camera:
        a = a + rng.normal(0.0, float(rng.uniform(*CAMERA_NOISE)), a.shape)
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def render_words(n: int, *, width: int = 256, seed: int = 0, camera_share: float = 0.3) -> Words:
    """``n`` word crops (64 x ``width``), words drawn from :func:`vocabulary` with a seeded generator;
    ``camera_share`` of them under camera conditions."""
    if width < 64:
        raise TaskError(f"word crops need a width of at least 64 pixels, got {width}")
    vocab = vocabulary()
    rng = np.random.default_rng(seed)
    images = np.empty((n, 1, CROP_HEIGHT, width), dtype=np.float32)
    labels = []
    for i in range(n):
        word = vocab[int(rng.integers(len(vocab)))]
        crop = _word_crop(word, width, rng, camera=bool(rng.random() < camera_share))
        images[i, 0] = (crop.astype(np.float32) / 255.0 - 0.5) / 0.5
        labels.append(word)
    return Words(images, labels)


# -- scenes ---------------------------------------------------------------------------------------------------


@dataclass
class Scenes:
    #: (N, 3, size, size) float32, CRAFT-normalised
    images: np.ndarray
    #: per scene, the words' boxes (x0, y0, x1, y1) in pixels of the scene
    boxes: list[list[tuple[int, int, int, int]]]
    words: list[list[str]]

    def box_masks(self, scale: int = 2) -> np.ndarray:
        """(N, size/scale, size/scale) float32: 1 inside a word's box (at CRAFT's output resolution for 2)."""
        n, _, h, w = self.images.shape
        m = np.zeros((n, h // scale, w // scale), dtype=np.float32)
        for i, bs in enumerate(self.boxes):
            for x0, y0, x1, y1 in bs:
                m[i, y0 // scale : -(-y1 // scale), x0 // scale : -(-x1 // scale)] = 1.0
        return m


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(np.asarray(im, dtype=np.uint8) for im in load_sample_images().images)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.4:
        return np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (size, size, 3)).copy()
    photo = _photos()[int(rng.integers(len(_photos())))]
    h, w, _ = photo.shape
    crop = int(rng.integers(min(size, h, w) // 2, min(h, w) + 1))  # a random crop, rescaled to the scene
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    Image = _pil()[0]
    return np.asarray(Image.fromarray(photo[y : y + crop, x : x + crop]).resize((size, size), Image.BILINEAR))


def _scene(size: int, rng: np.random.Generator, vocab: tuple[str, ...]) -> tuple[np.ndarray, list, list]:
    Image, ImageDraw, _, _ = _pil()
    bg = _background(size, rng)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    boxes: list[tuple[int, int, int, int]] = []
    words: list[str] = []
    for _ in range(int(rng.integers(1, MAX_WORDS + 1))):
        for _try in range(20):  # a place that overlaps no other word (with a gap of 4 pixels)
            word = vocab[int(rng.integers(len(vocab)))]
            font = _font(FONTS[int(rng.integers(len(FONTS)))], int(rng.integers(max(12, size // 12), size // 6 + 1)))
            left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
            if right - left > size - 8 or bottom - top > size - 8:
                continue
            x = int(rng.integers(4 - left, size - 4 - right + 1))
            y = int(rng.integers(4 - top, size - 4 - bottom + 1))
            box = (x + left, y + top, x + right, y + bottom)
            if any(box[0] < o[2] + 4 and o[0] < box[2] + 4 and box[1] < o[3] + 4 and o[1] < box[3] + 4 for o in boxes):
                continue
            # a colour that stands out from the background under the word (luminance at least 110 apart)
            lum = float(bg[box[1] : box[3], box[0] : box[2]].mean())
            base = 0 if lum > 128 else 255
            colour = tuple(int(np.clip(base + (1 if base == 0 else -1) * rng.integers(0, 60), 0, 255)) for _ in "rgb")
            draw.text((x, y), word, font=font, fill=colour)
            boxes.append(box)
            words.append(word)
            break
    return np.asarray(img, dtype=np.uint8), boxes, words


def render_scenes(n: int, *, size: int = 128, seed: int = 0) -> Scenes:
    """``n`` square RGB scenes of ``size`` pixels (a multiple of 32, as CRAFT needs) with 1-4 words each."""
    if size < 64 or size % 32:
        raise TaskError(f"scene size must be a multiple of 32 and at least 64, got {size}")
    vocab = tuple(w for w in vocabulary() if len(w) <= 10)
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    mean, std = np.asarray(CRAFT_MEAN, np.float32), np.asarray(CRAFT_STD, np.float32)
    all_boxes, all_words = [], []
    for i in range(n):
        rgb, boxes, words = _scene(size, rng, vocab)
        images[i] = ((rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1)
        all_boxes.append(boxes)
        all_words.append(words)
    return Scenes(images, all_boxes, all_words)
