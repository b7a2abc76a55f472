"""Sampling error of task metrics (adaptc.core.stats) and the per-sample scores tasks provide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptc.core.stats import bootstrap_interval, drop_interval, mean_interval, ratio_interval
from adaptc.tasks import Split, Task, accuracy, correct


def _hits(p: float, n: int = 400, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_mean_interval_matches_binomial_error() -> None:
    s = _hits(0.3)
    lo, hi = mean_interval(s)
    assert lo < s.mean() < hi
    se = np.sqrt(s.mean() * (1 - s.mean()) / len(s))  # normal approximation of a proportion
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert mean_interval(s) == (lo, hi)
    # 0/1 scores get Wilson's interval: it does not collapse onto the bound (a bootstrap of 50 hits gives [1, 1])
    lo1, hi1 = mean_interval(np.ones(50))
    assert 0.9 < lo1 < 1.0 and hi1 == pytest.approx(1.0)
    assert mean_interval(np.r_[np.ones(357), np.zeros(3)]) == pytest.approx((0.9758, 0.9972), abs=1e-4)
    # other scores: a percentile bootstrap of the mean, the same interval every run (fixed seed)
    g = np.random.default_rng(3).random(300)
    b = mean_interval(g)
    assert b[0] < g.mean() < b[1] and mean_interval(g) == b


def test_paired_drop_is_narrower_than_either_metric() -> None:
    ref = _hits(0.3)
    art = ref.copy()
    art[:8] = 1 - art[:8]  # the artifact differs from its reference on 2% of the samples
    d_lo, d_hi = drop_interval(ref, art)
    m_lo, m_hi = mean_interval(art)
    assert d_lo <= ref.mean() - art.mean() <= d_hi
    assert d_hi - d_lo < (m_hi - m_lo) / 3
    assert drop_interval(ref, ref) == (0.0, 0.0)


def test_ratio_interval_and_chunking() -> None:
    teacher, student = _hits(0.33, 576, 1), _hits(0.29, 576, 2)
    lo, hi = ratio_interval(student, teacher)
    assert lo < student.sum() / teacher.sum() < hi
    one = bootstrap_interval(lambda a: a.mean(1), student, chunk=10_000)
    assert bootstrap_interval(lambda a: a.mean(1), student, chunk=7) == one  # draws independent of the chunking


def test_bootstrap_rejects_bad_samples() -> None:
    with pytest.raises(ValueError):
        bootstrap_interval(lambda a, b: a.mean(1), np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        mean_interval(np.array([]))


def _task(**kw) -> Task:
    x = torch.randn(40, 3)
    y = torch.arange(40) % 3
    split = Split((x,), y)
    return Task(name="t", model=torch.nn.Linear(3, 3), example_inputs=(x[:1],), train=split, val=split, test=split, **kw)


def test_task_per_sample_scores() -> None:
    t = _task()
    assert t.sample_scores is correct  # accuracy's samples come with it
    out = t.model(t.test.inputs[0]).detach().numpy()
    s = t.per_sample(out, t.test)
    assert s is not None and len(s) == 40 and s.mean() == pytest.approx(accuracy(out, t.test))
    # a user's metric without per-sample scores: no interval; scores that do not average to the metric: ignored
    assert _task(metric=lambda o, sp: 0.5).per_sample(out, t.test) is None
    assert _task(metric=lambda o, sp: 0.5, sample_scores=lambda o, sp: np.ones(len(sp))).per_sample(out, t.test) is None
