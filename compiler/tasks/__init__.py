"""Tasks: the teacher, its data and its metric (built-in ones and the interface for users' models)."""

from .base import Metric, SampleScores, Split, Task, accuracy, correct, evaluate_torch, predict_torch
from .registry import TaskInfo, builtin_tasks, get_task, list_tasks, register_task

__all__ = [
    "Metric",
    "SampleScores",
    "Split",
    "Task",
    "TaskInfo",
    "accuracy",
    "builtin_tasks",
    "correct",
    "evaluate_torch",
    "get_task",
    "list_tasks",
    "predict_torch",
    "register_task",
]
