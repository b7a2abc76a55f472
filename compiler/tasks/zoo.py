"""Model architectures used by built-in tasks, tests and benchmarks (plain torch; torchvision does not import here).

- :class:`TinyResNet`: residual CNN with depthwise-separable blocks (identity and projection shortcuts).
- :class:`TransformerClassifier`: a small pre-norm transformer encoder over token ids with mean pooling.

The attention module keeps q/k/v/o as separate ``nn.Linear`` layers and routes the attention
probabilities through an ``nn.Identity`` (``.probs``) so hooks can read attention maps (for attention
distillation) and structured pruning can remove heads or head dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class DWBlock(nn.Module):
    """Depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 -> BN, plus a shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.dw = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    @property
    def removable(self) -> bool:
        """A block with an identity shortcut can be dropped without changing shapes."""
        return isinstance(self.shortcut, nn.Identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.pw(torch.relu(self.bn1(self.dw(x)))))
        return torch.relu(y + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, ...] = (32, 64, 128),
        blocks_per_stage: int = 2,
        stem_stride: int = 1,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                blocks.append(DWBlock(c, w, stride=2 if (j == 0 and i > 0) else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.probs = nn.Identity()  # hook point: attention probabilities (B, heads, T, T)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.num_heads
        q = self.q(x).view(b, t, h, -1).transpose(1, 2)
        k = self.k(x).view(b, t, h, -1).transpose(1, 2)
        v = self.v(x).view(b, t, h, -1).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1])) + key_bias
        att = self.probs(torch.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, -1)
        return self.o(y)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))

    removable = True

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), key_bias)
        return x + self.ffn(self.ln2(x))


class TransformerClassifier(nn.Module):
    """Token ids (B, T), 0 = padding -> class logits. Padding is masked in attention and pooling."""

    def __init__(
        self,
        vocab: int = 257,
        num_classes: int = 8,
        dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        ffn: int = 256,
        max_len: int = 64,
    ):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(EncoderBlock(dim, num_heads, ffn) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != 0).to(torch.float32)  # (B, T)
        key_bias = ((1.0 - keep) * -1e4)[:, None, None, :]  # additive mask, finite (quantization-safe)
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.tok(ids) + self.pos(pos)[None]
        for blk in self.blocks:
            x = blk(x, key_bias)
        x = self.norm(x)
        pooled = (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(pooled)
