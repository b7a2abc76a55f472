"""Knowledge infusion: distillation losses, schedules, the trainer, QAT and adversarial training."""

from .adversarial import AdversarialConfig
from .losses import AttentionLoss, HiddenStateLoss, HybridLoss, LogitKD, LossWeights, RelationLoss, TemperatureSchedule
from .qat import prepare_qat, strip_qat
from .schedule import Schedule, Stage, assistant_width, needs_assistant, progressive, single
from .taps import Taps, layer_map
from .trainer import DistillConfig, DistillResult, distill, evaluate, fold_batchnorm, train_from_scratch

__all__ = [
    "AdversarialConfig",
    "AttentionLoss",
    "DistillConfig",
    "DistillResult",
    "HiddenStateLoss",
    "HybridLoss",
    "LogitKD",
    "LossWeights",
    "RelationLoss",
    "Schedule",
    "Stage",
    "Taps",
    "TemperatureSchedule",
    "assistant_width",
    "distill",
    "evaluate",
    "fold_batchnorm",
    "layer_map",
    "needs_assistant",
    "prepare_qat",
    "progressive",
    "single",
    "strip_qat",
    "train_from_scratch",
]
