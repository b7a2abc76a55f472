"""Built-in task ``animal-mobilenet``: animal-mnist (10 classes of 28x28 silhouettes) with a MobileNetV2-style teacher.

The classic hard case for int8: inverted residual blocks (1x1 expand conv + BN + ReLU6, 3x3 depthwise conv + BN +
ReLU6, 1x1 linear projection + BN, residual add where the shapes match), trained as ImageNet MobileNetV2s are
(:data:`RECIPE`: SGD with Nesterov momentum, weight decay 4e-5, a high peak learning rate). That recipe leaves
dead ReLU6 channels before a depthwise layer: the depthwise channel then sees only zeros, its BatchNorm variance
falls to ~0, and folding the BatchNorm multiplies its filter by ~1/sqrt(eps). Measured on this teacher: one
depthwise layer's largest folded channel range is ~1,500x its median, so one int8 scale per tensor rounds every
other channel of that layer to (nearly) zero (simulated per-tensor int8 weights: 96.8% -> 80.4% test accuracy),
as in ImageNet MobileNetV2 (Nagel et al., 2019). (With AdamW, the recipe before 2026-12-07, no channel died and the
ranges differed by under 3x.) torchvision's layout: ``features`` (stem + blocks + last 1x1 conv) and ``classifier``
(dropout + Linear).
Same data, splits and augmentation as ``animal-mnist`` (``pip install --no-deps animal-mnist==0.4``); trained on
first use (about 4 minutes on one thread) and cached.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import progress
from .animal_mnist import flip_augment, load_splits
from .base import Task, accuracy, evaluate_torch
from .registry import register_task
from .training import builtin_teacher

#: inverted residual settings (expansion t, output channels c, repeats n, first stride s), as in MobileNetV2 but
#: for 28x28 inputs: a stride-2 stem (14x14), then 7x7 -> 4x4 -> 2x2; 0.86 M parameters, 9.0 M MACs
BLOCKS = ((1, 16, 1, 1), (4, 24, 2, 2), (6, 32, 2, 1), (6, 64, 2, 2), (6, 96, 2, 1), (6, 160, 2, 2))
STEM = 16
LAST = 512
EPOCHS = 15
#: trained as ImageNet MobileNetV2s are (SGD with Nesterov momentum, weight decay 4e-5 on every weight, a high peak
#: learning rate with BatchNorm): what leaves the dead channels that make the network hard for int8 (module doc)
RECIPE = {"optimizer": "sgd", "lr": 0.4, "weight_decay": 4e-5}
_ARCH_VERSION = 2


def conv_bn(
    c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv (no bias) + BN (+ ReLU6): torchvision's ``Conv2dNormActivation`` layout (``0`` conv, ``1`` BN)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand (1x1, skipped when t = 1), depthwise 3x3, linear projection (1x1, BN, no
    activation); the input added back when stride is 1 and the channels match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = [conv_bn(c_in, hidden)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, c_out, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and c_in == c_out

    @property
    def removable(self) -> bool:
        """A block with the residual add can be dropped without changing shapes."""
        return self.use_res_connect

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res_connect else y


class MobileNetV2(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        blocks: tuple[tuple[int, int, int, int], ...] = BLOCKS,
        stem: int = STEM,
        last: int = LAST,
        dropout: float = 0.1,
    ):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, stem, 3, stride=2)]
        c = stem
        for t, c_out, n, s in blocks:
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        layers.append(conv_bn(c, last))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


@register_task("animal-mobilenet")
def make_task(epochs: int = EPOCHS, teacher_seed: int = 0) -> Task:
    """animal-mnist with a MobileNetV2-style teacher (``epochs``: its training epochs; ``teacher_seed``: the seed of
    its initial weights and training; each value cached)."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    train, val, test = load_splits()
    model, trained_now, path = builtin_teacher(
        "animal-mobilenet",
        MobileNetV2,
        # (seed 0's key has no seed: the cache entry made before the option existed)
        {"arch": _ARCH_VERSION, "blocks": BLOCKS, "stem": STEM, "last": LAST, "recipe": RECIPE}
        | ({"init_seed": teacher_seed} if teacher_seed else {}),
        (train, val),
        epochs,
        init_seed=teacher_seed,
        **RECIPE,
        batch_size=128,
        seed=teacher_seed,
        augment=flip_augment,
        threads=1,
    )
    task = Task(
        name="animal-mobilenet",
        model=model.eval(),
        example_inputs=(test.inputs[0][:1].clone(),),
        train=train,
        val=val,
        test=test,
        metric=accuracy,
        input_names=("image",),
        output_names=("logits",),
        augment=flip_augment,
        description="animal-mnist 28x28 silhouettes (10 classes), MobileNetV2-style teacher (inverted residuals)",
        info={"cache_file": str(path), "epochs": epochs, "architecture": "MobileNetV2-style, ReLU6, depthwise 3x3"},
    )
    if trained_now:
        progress.current().message(f"animal-mobilenet teacher test accuracy {evaluate_torch(task):.4f}")
    return task
