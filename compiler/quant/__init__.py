"""Quantization schemes (names, meaning) and the per-format handlers that apply them.

:mod:`.registry`: ``(format, scheme) -> handler`` (exporters register theirs with :func:`quantizer`) and the
range estimators each format offers (:func:`calibrations_for`); :mod:`.ranges`: the hand-written range searches
over a histogram (percentile, KL divergence, squared error);
:mod:`.pt2e`: the static int8 PT2E recipe the TFLite and CoreML handlers share (imports torch: not loaded here).
"""

from ..core.schemes import SCHEMES, Precision, Scheme, SchemeName, get_scheme, is_int8
from .registry import Handler, calibrations_for, handler_for, quantizer, schemes_for

__all__ = [
    "SCHEMES",
    "Handler",
    "Precision",
    "Scheme",
    "SchemeName",
    "calibrations_for",
    "get_scheme",
    "handler_for",
    "is_int8",
    "quantizer",
    "schemes_for",
]
