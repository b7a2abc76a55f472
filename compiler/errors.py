"""Error types.

Every error a user can fix by changing their input derives from :class:`AdaptcError`. The CLI
prints such an error as one line and exits with code 2 (no traceback unless ``--debug``); any
other exception is an internal failure (exit code 1).
"""

from __future__ import annotations


class AdaptcError(Exception):
    """Bad input: a malformed profile, an unknown device, a task that cannot be imported, ..."""

    exit_code = 2


class ProfileError(AdaptcError):
    """A device profile file is missing, not YAML, or does not match the schema."""


class UnknownDeviceError(AdaptcError):
    """No profile with that name."""


class TaskError(AdaptcError):
    """A ``--task`` that cannot be imported or does not return a :class:`adaptc.Task`."""


class ExportError(AdaptcError):
    """A model that a converter cannot export (names the format and, where known, the op)."""


class BudgetError(AdaptcError):
    """No artifact or candidate meets the device budgets."""


class OutputError(AdaptcError):
    """The output directory cannot be created or written."""


class ModelFileError(AdaptcError):
    """A model file that is not a readable ONNX / TFLite file."""


class StateError(AdaptcError):
    """A build folder's state store (``.adaptc/state.sqlite``) is corrupt or not adaptc's."""


class HistoryError(AdaptcError):
    """The build history cannot be used: not an adaptc history, written by a newer adaptc, or not writable."""
