"""Exporters (one per format, registered) and the runtime parity gate.

The package is also callable: ``adaptc.export(model_or_task, device, out, ...)`` is
:func:`adaptc.export.api.export_model` (export a model as it is, no student search).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .base import ExportedFile, Exporter, ExportRequest, available_formats, get_exporter, register_exporter

__all__ = ["ExportRequest", "ExportedFile", "Exporter", "available_formats", "export_model", "get_exporter",
           "register_exporter"]


def export_model(*args: Any, **kwargs: Any) -> Any:
    """See :func:`adaptc.export.api.export_model`."""
    from .api import export_model as _export_model

    return _export_model(*args, **kwargs)


class _CallableModule(types.ModuleType):
    """Makes ``adaptc.export(...)`` work although ``adaptc.export`` is also this package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return export_model(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
