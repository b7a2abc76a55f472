"""``adaptc.export``: export a model as it is (no student search), with the same checks and report as a build.

For a user whose model is already small and who only wants device artifacts and a report::

    import adaptc
    report = adaptc.export("digits", "pixel8", "out/pixel8")                  # a task's model as is
    report = adaptc.export(my_model, "iphone15pro", "out/ios", task=my_task)  # any nn.Module, a task's data
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..core.ptq import Effort, PTQConfig
from ..core.quantity import Gate, Prefer
from ..errors import AdaptcError
from ..profiles import DeviceProfile
from ..report import BuildReport
from ..tasks import Task, get_task
from .run import build


def export_model(
    model_or_task: nn.Module | str | Task = "digits",
    device: str | os.PathLike[str] | DeviceProfile = "host",
    out: str | os.PathLike[str] | None = None,
    *,
    task: str | Task | None = None,
    formats: Sequence[str] | None = None,
    max_drop: float = 0.01,
    gate: Gate = "point",
    prefer: Prefer = "first",
    threads: int | None = None,
    runs: int = 100,
    resume: bool = True,
    measure_host: bool = True,
    task_options: dict[str, Any] | None = None,
    quant_effort: Effort = "default",
    ptq: PTQConfig | None = None,
    history: str | os.PathLike[str] | bool | None = None,
) -> BuildReport:
    """Export ``model_or_task`` for ``device`` without a student search and return the report.

    ``model_or_task``: a task (name, ``package.module:factory`` or :class:`adaptc.Task`), whose model is
    exported as is; or an ``nn.Module``, then ``task`` gives the data (calibration, parity) and the metric,
    and the module takes the place of the task's model. Formats come from the profile unless ``formats``
    overrides them. The report's ``status`` is ``partial`` when some format emitted nothing (its artifacts
    carry the converter's error, naming the op); :class:`adaptc.errors.BudgetError` is raised, with the
    report attached, when no artifact meets the device budgets (as :func:`adaptc.build` does). ``max_drop`` and
    ``gate``: the parity gate, and ``prefer``, which passing artifact ships, as in :func:`adaptc.build`; ``task_options``: keyword arguments of the task's factory; ``quant_effort``: how hard static int8 tries to pass
    the gate and ``ptq`` its first attempt (as in :func:`adaptc.build`); ``history``: the build history the run is
    appended to (as in :func:`adaptc.build`).
    """
    if isinstance(model_or_task, nn.Module):
        if task is None:
            raise AdaptcError(
                "export(nn.Module) needs task=: the task whose data calibrates and checks the model "
                "(a task name, package.module:factory, or an adaptc.Task)"
            )
        base = get_task(task, **(task_options or {}))
        options = None
        the_task: Any = dataclasses.replace(
            base,
            model=model_or_task.eval(),
            info={**base.info, "model": f"user-supplied {type(model_or_task).__name__}"},
        )
    else:
        if task is not None:
            raise AdaptcError("give task= only with an nn.Module (the first argument is already a task)")
        the_task, options = model_or_task, task_options  # resolved by build(), after the profile is checked
    return build(
        the_task,
        device,
        out,
        formats=formats,
        max_drop=max_drop,
        gate=gate,
        prefer=prefer,
        threads=threads,
        runs=runs,
        resume=resume,
        measure_host=measure_host,
        search=False,
        task_options=options,
        quant_effort=quant_effort,
        ptq=ptq,
        history=history,
    )
