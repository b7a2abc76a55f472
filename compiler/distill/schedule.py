"""Progressive (staged) distillation schedules and the teacher-assistant chain.

Default schedule: stage 1 ("align", the first 30% of epochs) trains the student's intermediate behaviour
only — hidden states, attention maps and relations — so its layers first imitate the teacher's; stage 2
("transfer") adds the logit terms (KD with the dynamic temperature, and hard-label cross-entropy) for the
remaining epochs. A teacher assistant (an intermediate-width skeleton) is distilled first when the
compression ratio is large, then it teaches the student (Mirzadeh et al., 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_TERMS = frozenset({"ce", "kd", "hidden", "attention", "relation"})
FEATURE_TERMS = frozenset({"hidden", "attention", "relation"})


@dataclass(frozen=True)
class Stage:
    name: str
    terms: frozenset[str]
    fraction: float  # of the epochs


@dataclass(frozen=True)
class Schedule:
    stages: tuple[Stage, ...]

    def stage_at(self, epoch: int, epochs: int) -> Stage:
        acc = 0.0
        for s in self.stages:
            acc += s.fraction
            if epoch < round(acc * epochs):
                return s
        return self.stages[-1]


def progressive(align_fraction: float = 0.3) -> Schedule:
    if align_fraction <= 0:
        return single()
    return Schedule((Stage("align", FEATURE_TERMS, align_fraction), Stage("transfer", ALL_TERMS, 1 - align_fraction)))


def single() -> Schedule:
    return Schedule((Stage("joint", ALL_TERMS, 1.0),))


def assistant_width(student_width: float, teacher_width: float = 1.0) -> float:
    """The teacher assistant's width multiplier: the geometric mean of teacher and student widths."""
    return (student_width * teacher_width) ** 0.5


def needs_assistant(teacher_params: int, student_params: int, threshold: float) -> bool:
    return threshold > 0 and teacher_params / max(student_params, 1) >= threshold
