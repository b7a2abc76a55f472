"""Which handler applies a quantization scheme in which format: ``(format, scheme) -> handler``.

In the spirit of torchao's ``quantize_(model, config)``, where the config's type picks a registered handler:
a scheme (:mod:`adaptc.core.schemes`) says *what* a quantized file is; the handler registered for it under a
format says *how* that format's files are made. Each exporter module registers its handlers with
:func:`quantizer`, best scheme first; the exporter's ``schemes()`` are then the schemes it has handlers for,
in that order, and its ``export(request, scheme, dest)`` calls :func:`handler_for`. Adding a scheme to a
format is adding one handler, not another branch in a chain of comparisons on the scheme's name.

A handler's signature belongs to its format (the exporter that calls it); this registry only stores it, with
the recipe's revision (how many times what the handler writes changed, part of a build's artifact record key).
Kept free of torch and of the exporters: it sits below them.

Each exporter module also registers the range estimators (:data:`adaptc.core.ptq.CALIBRATIONS`) its static
int8 handlers offer (:func:`register_calibrations`); :func:`calibrations_for` lists them and
:func:`check_calibration` refuses the others, naming those it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.formats import FORMATS, require_in_table
from ..core.ptq import CALIBRATIONS
from ..core.schemes import get_scheme
from ..errors import ExportError

H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True)
class Handler:
    format: str
    scheme: str
    #: the function that writes the format's file at the scheme (its signature is the format's business)
    apply: Callable[..., Any]
    #: how many times the recipe changed what it writes (0: never)
    revision: int = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply(*args, **kwargs)


#: format -> scheme -> handler, in registration order (best scheme first)
_HANDLERS: dict[str, dict[str, Handler]] = {}


def quantizer(fmt: str, *schemes: str, revision: int = 0) -> Callable[[H], H]:
    """Register the decorated function as ``fmt``'s handler for each of ``schemes`` (in that order; a format's
    schemes rank in the order their handlers are registered, best first)::

        @quantizer("onnx", "int8_dynamic")
        def _int8_dynamic(exporter, request, scheme, dest, ...): ...
    """
    require_in_table("format", fmt, FORMATS)
    if not schemes:
        raise ValueError(f"quantizer({fmt!r}): name at least one scheme")
    for s in schemes:
        get_scheme(s)  # raises ValueError (did you mean ...?) for an unknown scheme

    def deco(fn: H) -> H:
        table = _HANDLERS.setdefault(fmt, {})
        for s in schemes:
            table[s] = Handler(fmt, s, fn, revision)
        return fn

    return deco


def schemes_for(fmt: str) -> tuple[str, ...]:
    """The schemes ``fmt`` has handlers for, best first (empty until its exporter module is imported)."""
    return tuple(_HANDLERS.get(fmt, {}))


def handler_for(fmt: str, scheme: str) -> Handler:
    """The handler that makes ``fmt``'s file at ``scheme``. Raises ExportError (naming the supported schemes)
    when there is none."""
    table = _HANDLERS.get(fmt, {})
    if scheme not in table:
        raise ExportError(f"{fmt}: scheme {scheme!r} is not supported (supported: {', '.join(table)})")
    return table[scheme]


#: format -> the range estimators its static int8 handlers offer (cheapest first, as in CALIBRATIONS)
_CALIBRATIONS: dict[str, tuple[str, ...]] = {}
#: format -> the range estimator its handlers use when none is asked for (``PTQConfig.calibration=None``)
_DEFAULT_CALIBRATION: dict[str, str] = {}


def register_calibrations(fmt: str, *methods: str, default: str | None = None) -> None:
    """Record that ``fmt``'s static int8 handlers offer ``methods`` (names of :data:`CALIBRATIONS`), and which
    of them they use by default."""
    require_in_table("format", fmt, FORMATS)
    if default is not None:
        if default not in methods:
            raise ValueError(f"register_calibrations({fmt!r}): the default {default!r} is not among {methods}")
        _DEFAULT_CALIBRATION[fmt] = default
    unknown = [m for m in methods if m not in CALIBRATIONS]
    if unknown:
        raise ValueError(f"register_calibrations({fmt!r}): unknown method(s) {unknown} (known: {CALIBRATIONS})")
    _CALIBRATIONS[fmt] = tuple(m for m in CALIBRATIONS if m in methods)


def calibrations_for(fmt: str) -> tuple[str, ...]:
    """The range estimators ``fmt`` offers for static int8, cheapest first (empty until its exporter module is
    imported, or when it has no static int8 scheme)."""
    return _CALIBRATIONS.get(fmt, ())


def default_calibration_for(fmt: str) -> str | None:
    """The range estimator ``fmt`` uses when none is asked for (None: not registered)."""
    return _DEFAULT_CALIBRATION.get(fmt)


def check_calibration(fmt: str, method: str | None) -> None:
    """Raise ExportError (naming the supported methods) when ``fmt`` does not offer ``method``; ``None`` (the
    format's own default) is always offered."""
    if method is None:
        return
    offered = calibrations_for(fmt)
    if method not in offered:
        raise ExportError(
            f"{fmt}: calibration method {method!r} is not supported (supported: {', '.join(offered) or 'none'})"
        )


__all__ = [
    "Handler",
    "calibrations_for",
    "check_calibration",
    "default_calibration_for",
    "handler_for",
    "quantizer",
    "register_calibrations",
    "schemes_for",
]
