"""Tasks: the teacher, its data and its metric (built-in ones and the interface for users' models)."""

from .base import Metric, Split, Task, accuracy, evaluate_torch, predict_torch
from .registry import builtin_tasks, get_task, register_task

__all__ = ["Metric", "Split", "Task", "accuracy", "builtin_tasks", "evaluate_torch", "get_task", "predict_torch",
           "register_task"]
