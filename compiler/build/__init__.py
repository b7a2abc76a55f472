"""The build: orchestration (:mod:`.run`), one artifact's stages (:mod:`.steps`, driven by :mod:`.artifact`),
the choice policy (:mod:`.choice`: scheme chain, int8 guardrail, ``prefer``), the no-search export
(:mod:`.export`) and any file measured as a build measures its artifacts (:mod:`.measure`)."""

import sys
import types
from typing import Any

from .artifact import ArtifactBuilder, ExportSettings
from .choice import FormatOutcome, choose_in_format, choose_overall, rank_artifacts, scheme_chain
from .export import export_model
from .run import build, default_out_dir, resolve_formats, write_report

__all__ = [
    "ArtifactBuilder",
    "ExportSettings",
    "FormatOutcome",
    "build",
    "choose_in_format",
    "choose_overall",
    "default_out_dir",
    "export_model",
    "rank_artifacts",
    "resolve_formats",
    "scheme_chain",
    "write_report",
]


class _CallableModule(types.ModuleType):
    """``adaptc.build(task, device, out, ...)`` is :func:`.run.build`, although ``adaptc.build`` is also this
    package (importing a sub-package sets the parent's attribute to the package); with a list of devices it is
    :func:`.fleet.build_fleet` (one search serving them all)."""

    def __call__(self, task: Any = "digits", device: Any = "host", out: Any = None, **kwargs: Any) -> Any:
        if isinstance(device, (list, tuple)):
            from .fleet import build_fleet

            return build_fleet(task, device, out, **kwargs)
        return build(task, device, out, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
