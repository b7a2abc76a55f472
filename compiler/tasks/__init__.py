"""Tasks: the teacher, its data and its metric (built-in ones and the interface for users' models).

A user's data come in as in-memory tensors (``Split``) or as streams on disk: ``image_folder``,
``split_from_dataset`` and ``split_from_arrays`` (``adaptc.tasks.data``, docs/data.md).
"""

from .base import Metric, SampleScores, Split, Task, accuracy, correct, evaluate_torch, predict_torch
from .data import image_folder, split_from_arrays, split_from_dataset
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
    "image_folder",
    "list_tasks",
    "predict_torch",
    "register_task",
    "split_from_arrays",
    "split_from_dataset",
]
