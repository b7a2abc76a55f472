"""The versioned build report (JSON schema) and its markdown rendering."""

from .markdown import render
from .schema import (
    REPORT_SCHEMA_VERSION,
    ArtifactReport,
    BuildReport,
    DeviceEstimate,
    HostReport,
    ParityReport,
    SearchReport,
    TaskReport,
    TeacherReport,
)

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "ArtifactReport",
    "BuildReport",
    "DeviceEstimate",
    "HostReport",
    "ParityReport",
    "SearchReport",
    "TaskReport",
    "TeacherReport",
    "render",
]
