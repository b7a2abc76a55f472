"""The scheme walk's post-training quantization moves: for one static int8 scheme, cheapest first, the ways of
making the file (:class:`~adaptc.core.ptq.PTQConfig`) until one passes the parity gate.

1. the format's own default calibration (what ``--quant-effort fast`` stops at);
2. the other range estimators the format offers (percentile, entropy, MSE, min-max);
3. cross-layer equalization + bias absorption + bias correction on the torch model, with the best estimator;
4. the most sensitive layers in float (mixed precision), 1, 2, 4, 8 ... of them, fewest first, on the best of the
   above (:func:`adaptc.quant.sensitivity.layer_sensitivity` ranks them).

Each attempt is an ordinary artifact of the build (exported, checked, measured, recorded in the store under a key
that includes its moves), so a resumed build redoes none; the shipped artifact's recipe lists every attempt and
its drop. Policy only: the builder passes in how an attempt is made and how layers are ranked.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.ptq import Effort, PTQConfig
from ..report import ArtifactReport


@dataclass(frozen=True)
class EffortBudget:
    #: try other range estimators than the format's default
    calibrations: bool
    #: try equalization + bias correction
    equalize: bool
    #: the most layers kept in float: a count, and a share of the quantizable layers
    max_float_layers: int
    max_float_share: float
    #: wall-clock seconds for the moves of one scheme (the attempt running when it is spent finishes)
    seconds: float


EFFORT_BUDGETS: dict[str, EffortBudget] = {
    "fast": EffortBudget(False, False, 0, 0.0, 0.0),
    "default": EffortBudget(True, True, 8, 0.25, 900.0),
    "max": EffortBudget(True, True, 64, 0.25, 3600.0),
}


def drop_of(rep: ArtifactReport) -> float:
    """The decisive metric drop of an attempt (larger is worse; a failed attempt is infinitely bad)."""
    if rep.parity is None:
        return 0.0 if rep.status == "ok" else math.inf
    drops = [rep.parity.drop_vs_torch]
    if rep.parity.drop_vs_fp32_artifact is not None:
        drops.append(rep.parity.drop_vs_fp32_artifact)
    return max(drops)


@dataclass
class Walk:
    """The attempts of one scheme's walk, in order, and the one that ships."""

    attempts: list[tuple[PTQConfig, ArtifactReport]] = field(default_factory=list)
    stopped: str | None = None
    #: the range estimator the format uses when none is asked for (names the "default" attempts)
    default_calibration: str | None = None

    def moves(self, cfg: PTQConfig) -> str:
        text = cfg.describe()
        if cfg.calibration is None and self.default_calibration:
            text = text.replace("default", f"{self.default_calibration} (the format's default)", 1)
        return text

    def best(self) -> tuple[PTQConfig, ArtifactReport]:
        return min(self.attempts, key=lambda a: drop_of(a[1]))

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for cfg, rep in self.attempts:
            d = drop_of(rep)
            out.append(
                {
                    "moves": self.moves(cfg),
                    "status": rep.status,
                    "drop": None if math.isinf(d) else round(d, 6),
                    "size_bytes": rep.size.value if rep.size is not None else None,
                    "device_latency_ms": rep.device.latency.value if rep.device is not None else None,
                }
            )
        return out


def walk(
    make: Callable[[PTQConfig], ArtifactReport],
    *,
    effort: Effort,
    calibrations: Sequence[str],
    ranked_layers: Callable[[bool], Sequence[str]],
    first: PTQConfig | None = None,
    default_calibration: str | None = None,
    note: Callable[[str], None] = lambda s: None,
    clock: Callable[[], float] = time.monotonic,
    deadline: float | None = None,
) -> Walk:
    """Make ``PTQConfig`` attempts with ``make`` until one comes back ``ok``. ``calibrations``: what the format
    offers besides its default; ``ranked_layers(equalized)``: quantizable layer names, most sensitive first (on
    the equalized model when ``equalized``); ``first``: the first attempt (default: the format's defaults), whose
    calibration and equalization the later moves keep when the user chose them. ``deadline`` (a ``clock()``
    value): the build's time budget; no move starts after it."""
    budget = EFFORT_BUDGETS[effort]
    start = clock()
    w = Walk(default_calibration=default_calibration)

    def attempt(cfg: PTQConfig) -> bool:
        rep = make(cfg)
        w.attempts.append((cfg, rep))
        return rep.status == "ok"

    def out_of_time() -> bool:
        if deadline is not None and clock() > deadline:
            w.stopped = "the build's time budget was spent"
            note(w.stopped)
            return True
        if budget.seconds and clock() - start > budget.seconds:
            w.stopped = f"the --quant-effort {effort} time budget ({budget.seconds:.0f} s) was spent"
            note(w.stopped)
            return True
        return False

    first = first or PTQConfig()
    if attempt(first) or effort == "fast":
        return w
    rep = w.attempts[0][1]
    if rep.parity is None or rep.parity.passed:
        # not the parity gate (a failed conversion, a structure check, no runtime here): the moves change the
        # file's numbers only, so none of them would help
        return w
    if budget.calibrations and first.calibration is None:
        for cal in calibrations:
            if out_of_time():
                return w
            if attempt(PTQConfig(calibration=cal)):  # type: ignore[arg-type]
                return w
    best_cfg = w.best()[0]
    if budget.equalize and not best_cfg.equalize and not out_of_time():
        if attempt(dataclasses.replace(best_cfg, equalize=True)):
            return w
        best_cfg = w.best()[0]
    if budget.max_float_layers <= 0:
        return w
    layers = list(ranked_layers(best_cfg.equalize))
    cap = min(budget.max_float_layers, max(1, int(len(layers) * budget.max_float_share)))
    k = 1
    while k <= cap and not out_of_time():
        if attempt(dataclasses.replace(best_cfg, float_layers=tuple(layers[:k]))):
            return w
        if k == cap:
            break
        k = min(2 * k, cap)
    return w


def float_layer_table(
    layers: Sequence[str], macs: dict[str, int], params: dict[str, int], kinds: dict[str, str], bytes_saved: float
) -> dict[str, Any]:
    """What the report says about the layers a mixed-precision file keeps in float: each layer's share of the
    model's MACs and parameters, and the total."""
    total_macs = sum(macs.values()) or 1
    rows = [
        {
            "layer": n,
            "kind": kinds.get(n, "?"),
            "macs": macs.get(n, 0),
            "macs_share": macs.get(n, 0) / total_macs,
            "params": params.get(n, 0),
            "extra_bytes": params.get(n, 0) * bytes_saved,
        }
        for n in layers
    ]
    return {
        "layers": rows,
        "macs_share": sum(r["macs_share"] for r in rows),
        "extra_bytes": sum(r["extra_bytes"] for r in rows),
    }


__all__ = ["EFFORT_BUDGETS", "EffortBudget", "Walk", "drop_of", "float_layer_table", "walk"]
