"""Distillation losses, one module each, and the hybrid objective that combines them.

- :class:`LogitKD`: KL(teacher || student) on temperature-softened logits, scaled by T^2 (Hinton et al.).
- :class:`TemperatureSchedule`: a dynamic temperature — cosine curriculum from ``t_start`` (soft targets,
  dark knowledge first) to ``t_end`` (sharper targets late); or learnable (``learnable=True``, a positive
  scalar trained with the student, initialised at ``t_start``).
- :class:`HiddenStateLoss`: normalised MSE between teacher hidden states and student hidden states passed
  through learned linear (1x1 conv for feature maps) projections; teacher layers mapped by relative depth.
- :class:`AttentionLoss`: KL between teacher and student attention distributions (head-averaged when the
  head counts differ), for models with attention.
- :class:`RelationLoss`: relational KD (Park et al., RKD): pairwise distances and triplet angles between the
  samples of a batch, on the penultimate features, matched to the teacher's.
- :class:`MiniLMRelationLoss`: MiniLM(v2)-style self-attention relations: softmax(X X^T / sqrt(d)) of the last
  layer's queries, keys and values split into relation heads, KL(teacher || student) — token-level relations
  that do not need equal head counts or widths.
- :class:`EmbeddingLoss`: cosine distance between student and teacher output embeddings (the logit term of
  embedding tasks, which have no logits).
- :class:`HybridLoss`: weighted sum with ablation flags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .taps import Captured, layer_map


def _masked_row_mean(kl: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of a (B, H, T) per-row loss over the rows of real tokens (``mask`` (B, T)), or over all rows."""
    if mask is not None and mask.shape == (kl.shape[0], kl.shape[2]):
        w = mask.float()[:, None, :].expand_as(kl)
        return (kl * w).sum() / w.sum().clamp_min(1)
    return kl.mean()


def _detached(ts: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Teacher captures, detached; None stays None (a layer the teacher cache does not hold: no loss reads it)."""
    return [t.detach() if t is not None else None for t in ts]


class LogitKD(nn.Module):
    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: torch.Tensor | float
    ) -> torch.Tensor:
        t = temperature
        if student_logits.dim() > 2:  # class scores per step (B, T, C): the mean over steps, as over samples
            student_logits = student_logits.reshape(-1, student_logits.shape[-1])
            teacher_logits = teacher_logits.reshape(-1, teacher_logits.shape[-1])
        log_p_s = F.log_softmax(student_logits / t, dim=-1)
        log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


class TemperatureSchedule(nn.Module):
    """T(progress): cosine from ``t_start`` at progress 0 to ``t_end`` at progress 1 (or learnable)."""

    def __init__(self, t_start: float = 4.0, t_end: float = 1.5, learnable: bool = False):
        super().__init__()
        self.t_start, self.t_end, self.learnable = t_start, t_end, learnable
        if learnable:
            self.log_t = nn.Parameter(torch.tensor(math.log(t_start)))

    def forward(self, progress: float) -> torch.Tensor:
        if self.learnable:
            return self.log_t.exp().clamp(1.0, 20.0)
        p = min(max(progress, 0.0), 1.0)
        return torch.tensor(self.t_end + 0.5 * (self.t_start - self.t_end) * (1 + math.cos(math.pi * p)))


def _flatten_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C); (B, T, C) unchanged; (B, C) -> (B, 1, C)."""
    if x.dim() == 4:
        return x.flatten(2).transpose(1, 2)
    if x.dim() == 2:
        return x[:, None, :]
    return x


class HiddenStateLoss(nn.Module):
    """Student hidden states, projected to the teacher's width, against the teacher's (normalised MSE)."""

    def __init__(self, student_dims: list[int], teacher_dims: list[int]):
        super().__init__()
        self.mapping = layer_map(len(student_dims), len(teacher_dims))
        self.proj = nn.ModuleList(nn.Linear(s, teacher_dims[t], bias=False) for s, t in zip(student_dims, self.mapping))
        for p, (s, t) in zip(self.proj, zip(student_dims, self.mapping)):
            if s == teacher_dims[t]:
                nn.init.eye_(p.weight)  # type: ignore[arg-type]

    def forward(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``mask`` (B, T): token positions that count (padding does not)."""
        losses = []
        for i, (hs, p) in enumerate(zip(student, self.proj)):
            ht = _flatten_tokens(teacher[self.mapping[i]]).float()
            hs = _flatten_tokens(hs).float()
            if hs.shape[1] != ht.shape[1]:  # different spatial size: compare pooled features
                hs, ht = hs.mean(1, keepdim=True), ht.mean(1, keepdim=True)
            if mask is not None and mask.shape == hs.shape[:2]:
                w = mask.float()[..., None]
                se = ((p(hs) - ht) ** 2 * w).sum() / (w.sum() * ht.shape[-1]).clamp_min(1)
                norm = (ht.pow(2) * w).sum() / (w.sum() * ht.shape[-1]).clamp_min(1)
                losses.append(se / (norm.detach() + 1e-6))
            else:
                losses.append(F.mse_loss(p(hs), ht) / (ht.pow(2).mean().detach() + 1e-6))
        return torch.stack(losses).mean() if losses else torch.zeros(())


class AttentionLoss(nn.Module):
    def __init__(self, n_student: int, n_teacher: int):
        super().__init__()
        self.mapping = layer_map(n_student, n_teacher)

    def forward(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``mask`` (B, T): query rows that count (rows of padding tokens do not)."""
        losses = []
        for i, a_s in enumerate(student):
            a_t = teacher[self.mapping[i]]
            if a_s.shape[1] != a_t.shape[1]:
                a_s, a_t = a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True)
            log_s = torch.log(a_s.float().clamp_min(1e-9))
            log_t = torch.log(a_t.float().clamp_min(1e-9))
            # KL(teacher row distribution || student row distribution), averaged over batch, heads and rows
            kl = (a_t.float() * (log_t - log_s)).sum(-1)  # (B, H, T)
            losses.append(_masked_row_mean(kl, mask))
        return torch.stack(losses).mean() if losses else torch.zeros(())


class RelationLoss(nn.Module):
    """RKD: distance-wise (Huber on mean-normalised pairwise distances) + 2 x angle-wise (triplet cosines)."""

    def __init__(self, w_distance: float = 1.0, w_angle: float = 2.0):
        super().__init__()
        self.w_distance, self.w_angle = w_distance, w_angle

    @staticmethod
    def _pool(f: torch.Tensor) -> torch.Tensor:
        f = f.float()
        return f.mean(dim=tuple(range(2, f.dim()))) if f.dim() > 2 else f.reshape(f.shape[0], -1)

    @staticmethod
    def _dist(e: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(e, e)
        mean = d[d > 0].mean() if (d > 0).any() else d.new_tensor(1.0)
        return d / (mean + 1e-8)

    @staticmethod
    def _angle(e: torch.Tensor) -> torch.Tensor:
        diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s, t = self._pool(student), self._pool(teacher)
        if s.shape[0] < 3:
            return s.new_zeros(())
        loss = self.w_distance * F.smooth_l1_loss(self._dist(s), self._dist(t).detach())
        # angles are O(B^3) in memory: use at most 32 samples
        k = min(32, s.shape[0])
        loss = loss + self.w_angle * F.smooth_l1_loss(self._angle(s[:k]), self._angle(t[:k]).detach())
        return loss


class MiniLMRelationLoss(nn.Module):
    def __init__(self, relation_heads: int = 4):
        super().__init__()
        self.heads = relation_heads

    def _rel(self, x: torch.Tensor, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        x = x.float().view(b, t, heads, d // heads).transpose(1, 2)  # (B, R, T, d/R)
        att = x @ x.transpose(-1, -2) / math.sqrt(d // heads)
        if mask is not None:
            att = att.masked_fill(~mask[:, None, None, :t].bool(), -1e4)
        return F.log_softmax(att, dim=-1)

    def forward(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        losses = []
        for s, t in zip(student, teacher):
            r = self.heads
            while r > 1 and (s.shape[-1] % r or t.shape[-1] % r):
                r -= 1
            ls, lt = self._rel(s, r, mask), self._rel(t, r, mask)
            kl = (lt.exp() * (lt - ls)).sum(-1)  # (B, R, T)
            losses.append(_masked_row_mean(kl, mask))
        return torch.stack(losses).mean() if losses else torch.zeros(())


class EmbeddingLoss(nn.Module):
    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()


@dataclass
class LossWeights:
    """Weights of the hybrid objective; a weight of 0 switches the term off (ablation).

    Default: all terms on. Hard-label cross-entropy keeps the student anchored to the ground truth where the
    teacher errs; logit KD carries the teacher's dark knowledge; hidden-state and attention alignment give
    the pruned student dense per-layer targets (it starts from the teacher's own weights, so aligned layers
    stay close); relations transfer the geometry of the representation. The benchmark
    (benchmarks/distill_bench.py) records what each contributes.
    """

    ce: float = 1.0
    kd: float = 1.0
    hidden: float = 1.0
    attention: float = 1.0
    relation: float = 1.0

    def active(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if v > 0}


@dataclass
class LossParts:
    total: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


class HybridLoss(nn.Module):
    """Weighted sum of the distillation terms for one stage of the schedule."""

    def __init__(
        self,
        weights: LossWeights,
        student_hidden_dims: list[int],
        teacher_hidden_dims: list[int],
        n_student_attn: int,
        n_teacher_attn: int,
        temperature: TemperatureSchedule | None = None,
        embedding: bool = False,
    ):
        super().__init__()
        self.weights = weights
        self.embedding = embedding
        self.kd = LogitKD()
        self.emb = EmbeddingLoss()
        self.minilm = MiniLMRelationLoss()
        self.temperature = temperature or TemperatureSchedule()
        self.hidden = (
            HiddenStateLoss(student_hidden_dims, teacher_hidden_dims)
            if (weights.hidden > 0 and student_hidden_dims and teacher_hidden_dims)
            else None
        )
        self.attention = (
            AttentionLoss(n_student_attn, n_teacher_attn)
            if (weights.attention > 0 and n_student_attn and n_teacher_attn)
            else None
        )
        self.relation = RelationLoss() if weights.relation > 0 else None

    def forward(
        self,
        s_out: torch.Tensor,
        t_out: torch.Tensor,
        s: Captured,
        t: Captured,
        targets: torch.Tensor | None,
        *,
        progress: float,
        stage_terms: set[str],
        label_loss=None,
    ) -> LossParts:  # noqa: ANN001
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        if "ce" in stage_terms and w.ce > 0 and targets is not None:
            terms["ce"] = w.ce * (label_loss(s_out, targets) if label_loss else F.cross_entropy(s_out, targets))
        if "kd" in stage_terms and w.kd > 0:
            if self.embedding:
                terms["kd"] = w.kd * self.emb(s_out, t_out.detach())
            else:
                terms["kd"] = w.kd * self.kd(s_out, t_out.detach(), self.temperature(progress))
        if "hidden" in stage_terms and self.hidden is not None and s.hidden and t.hidden:
            terms["hidden"] = w.hidden * self.hidden(s.hidden, _detached(t.hidden), s.mask)
        if "attention" in stage_terms and self.attention is not None and s.attention and t.attention:
            terms["attention"] = w.attention * self.attention(s.attention, _detached(t.attention), s.mask)
        if "relation" in stage_terms and self.relation is not None:
            rel = []
            s_f = s_out if self.embedding else s.features
            t_f = t_out if self.embedding else t.features
            if s_f is not None and t_f is not None:
                rel.append(self.relation(s_f, t_f.detach()))
            if s.qkv and t.qkv:
                rel.append(self.minilm(s.qkv, [x.detach() for x in t.qkv], s.mask))
            if rel:
                terms["relation"] = w.relation * torch.stack(rel).sum()
        total = torch.stack(list(terms.values())).sum() if terms else s_out.sum() * 0
        return LossParts(total, {k: float(v.detach()) for k, v in terms.items()})
