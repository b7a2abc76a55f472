"""Tasks: the teacher, its data and its metric (built-in ones and the interface for users' models)."""

from .base import Metric, SampleScores, Split, Task, accuracy, correct, evaluate_torch, predict_torch
from .registry import builtin_tasks, get_task, register_task

__all__ = ["Metric", "SampleScores", "Split", "Task", "accuracy", "builtin_tasks", "correct", "evaluate_torch",
           "get_task", "predict_torch", "register_task"]
