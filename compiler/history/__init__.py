"""The build history: every ``adaptc build`` / ``adaptc export`` appended to one SQLite database, and what is
drawn from it (``adaptc history``, ``adaptc dashboard``, ``adaptc compare --against-history``).

Where: ``--history PATH``, else ``$ADAPTC_HISTORY``, else ``history.sqlite`` in adaptc's cache folder
(:func:`default_path`); ``--no-history`` (API: ``history=False``) records nothing. The database is embedded (no
server), in WAL mode with a busy timeout, so builds running at once all get recorded; a file that is not an adaptc
history, or one written by a newer adaptc (a higher schema version), is refused with a one-line
:class:`~adaptc.errors.HistoryError` (exit 2) and never overwritten.

Records are plain dicts (JSON-able):

run
    ``run_id`` (str), ``created_utc`` (the build's own time, ISO 8601), ``recorded_utc``, ``command``
    (``build`` | ``export`` | ``import``), ``adaptc_version``, ``toolchain`` (dict), ``git_commit`` and
    ``git_dirty`` (of the working directory the build ran in, None outside a git repository), ``task``,
    ``task_fingerprint`` (the test split's), ``metric_name``, ``teacher_metric``, ``device``,
    ``device_display``, ``profile_hash`` (sha256 of the profile as the report holds it), ``budgets`` (dict:
    ``max_latency_ms``, ``max_peak_memory_mb``, ``max_model_mb``, ``max_mflops``, each None when unset),
    ``status`` (``ok`` | ``partial`` | ``failed`` | ``interrupted``), ``status_reason``, ``shipped`` (the file
    name of what shipped, or None), ``build_dir`` (absolute), ``duration_s``, ``candidates`` (how many the search
    costed, 0 without a search), ``pareto`` (list of ``{"key", "val", "latency_ms", "size_mb", "chosen",
    "feasible"}``: the search's Pareto set, validation metric against the estimated device latency).
artifact
    ``run_id``, ``file``, ``path`` (absolute), ``report_md`` (absolute path of the build's report.md),
    ``format``, ``scheme``, ``precision``, ``status``, ``shipped`` (bool: the build's overall choice),
    ``chosen_for_format`` (bool), ``size_bytes``, ``sha256``, ``metric``, ``metric_ci95`` ([lo, hi] or None),
    ``host_latency_ms``, ``host_peak_mb``, ``host_method``, ``device_latency_ms``, ``device_peak_mb``,
    ``device_method`` (how it was estimated, with the predictor's validation), ``fits_budgets`` (bool or None),
    ``error``.

:func:`dashboard_data` gathers what the dashboard draws: ``{"generated_utc", "history", "adaptc_version",
"runs": [run + "regressions" (list of str, the rules of ``adaptc compare`` against the previous run of the same
task and device), "regressed" (bool), "baseline_run" (run_id or None)], "artifacts": [artifact], "devices":
{name: {"display_name", "budgets"}}, "tasks": {name: {"metric_name"}}}``, runs oldest first.
"""

from __future__ import annotations

from .db import (
    SCHEMA_VERSION,
    History,
    artifacts,
    baseline_for,
    dashboard_data,
    default_path,
    export_records,
    import_builds,
    open_history,
    read_report,
    record_build,
    resolve_path,
    runs,
    runs_frame,
)

__all__ = [
    "SCHEMA_VERSION",
    "History",
    "artifacts",
    "baseline_for",
    "dashboard_data",
    "default_path",
    "export_records",
    "import_builds",
    "open_history",
    "read_report",
    "record_build",
    "resolve_path",
    "runs",
    "runs_frame",
]
