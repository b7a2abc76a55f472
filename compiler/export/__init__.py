"""Exporters (one per format, registered) and the runtime parity gate."""

from .base import ExportedFile, Exporter, ExportRequest, available_formats, get_exporter, register_exporter

__all__ = ["ExportRequest", "ExportedFile", "Exporter", "available_formats", "get_exporter", "register_exporter"]
