"""Exporters (one per format, registered) and the runtime parity gate. (The API that exports a model without a
search, ``adaptc.export(...)``, is :func:`adaptc.build.export_model`.)"""

from __future__ import annotations

from .base import ExportedFile, Exporter, ExportRequest, available_formats, get_exporter, register_exporter

__all__ = ["ExportRequest", "ExportedFile", "Exporter", "available_formats", "get_exporter", "register_exporter"]
