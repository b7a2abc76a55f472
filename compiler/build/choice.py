"""Which artifact ships: per format, the fallback chain of schemes (or a ranking, ``prefer`` fastest / smallest)
with the int8 guardrail; overall, the profile's first format whose choice fits every budget (or the best-ranked).

Policy only: artifacts are made by the callable the builder passes in (so ``prefer="first"`` makes no scheme
after the one that ships), and measured again through another (the guardrail's confirmation)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..core.quantity import Prefer
from ..core.schemes import get_scheme
from ..profiles import DeviceProfile
from ..report import ArtifactReport

#: an int8 artifact counts as slower than fp32 only beyond this ratio: sub-0.1 ms timings vary by about
#: +-10-20 % between runs on shared hosts (docs/toolchain.md), and at equal speed int8 is still 4x smaller
GUARDRAIL_MARGIN = 1.10


@dataclass
class FormatOutcome:
    reports: list[ArtifactReport] = field(default_factory=list)
    chosen: ArtifactReport | None = None


def scheme_chain(profile: DeviceProfile, supported: Sequence[str]) -> list[str]:
    """The profile's schemes that this exporter supports, in the profile's order; fp32 always comes last."""
    chain = [s for s in profile.quantization if s in supported and s != "fp32"]
    return chain + ["fp32"]


def choose_in_format(
    chain: Sequence[str],
    fp32: ArtifactReport,
    make: Callable[[str], ArtifactReport],
    *,
    prefer: Prefer,
    device: str,
    guardrail: bool,
    measure_pair: Callable[[ArtifactReport, ArtifactReport], tuple[float, float]],
) -> FormatOutcome:
    """The format's artifacts and its choice, given its fp32 artifact (made first: the reference). ``make``
    exports and checks one scheme; ``measure_pair(int8, fp32)`` measures both files again (the guardrail)."""
    outcome = FormatOutcome(reports=[fp32])
    if fp32.status == "failed" and fp32.sha256 is None:
        # the converter rejected the model itself: the quantized schemes go through the same converter
        return outcome
    if prefer != "first":
        return _ranked(chain, fp32, make, outcome, prefer, device)
    over_budget: ArtifactReport | None = None
    for i, scheme in enumerate(chain):
        if scheme == "fp32":
            rep = fp32
            if over_budget is not None and fp32.fits_budgets is not True:
                # no later scheme fits either: the first quantized artifact that passed stays the choice
                outcome.chosen = over_budget
                break
        else:
            rep = make(scheme)
            outcome.reports.append(rep)
        if rep.status != "ok":
            continue  # rejected by the parity gate or failed: try the next scheme
        later_quantized = [c for c in chain[i + 1 :] if c != "fp32"]
        if scheme != "fp32" and rep.fits_budgets is False and (later_quantized or over_budget is not None):
            # e.g. TFLite's static int8 keeps an embedding table in float32; dynamic-range int8 quantizes it.
            # If no later scheme fits either, the first over-budget one (profile order) is kept.
            broken = ", ".join(b.budget for b in rep.budgets if not b.fits)
            nxt = later_quantized[0] if later_quantized else "fp32"
            rep.flags.append(f"breaks {broken}: the next scheme ({nxt}) was tried")
            over_budget = over_budget or rep
            continue
        if scheme != "fp32" and guardrail and get_scheme(scheme).weights == "int8":
            slower = confirmed_slower(rep, fp32, measure_pair)
            if slower:
                # "Did int8 help?" no: the faster fp32 artifact is preferred (not the next int8 scheme).
                rep.flags.append(slower)
                outcome.chosen = fp32 if fp32.status == "ok" else rep
                break
        outcome.chosen = rep
        break
    return outcome


def confirmed_slower(
    rep: ArtifactReport,
    fp32: ArtifactReport,
    measure_pair: Callable[[ArtifactReport, ArtifactReport], tuple[float, float]],
) -> str | None:
    """The guardrail's verdict, confirmed: an int8 file measured slower than fp32 (on a shared host often a
    neighbour's burst during one of the two sub-millisecond measurements) is measured again with the fp32
    file, and each is judged by the lower of its two medians. An unconfirmed first reading is flagged."""
    first = _slower_than(rep, fp32)
    if first is None or rep.host is None or fp32.host is None:
        return first
    try:
        again = measure_pair(rep, fp32)
    except Exception:  # the first reading stands
        return first
    a0, b0 = rep.host.latency_median.value or 0.0, fp32.host.latency_median.value or 0.0
    if min(a0, again[0]) > min(b0, again[1]) * GUARDRAIL_MARGIN:
        return f"{first}; confirmed by a second measurement ({again[0]:.3f} ms against {again[1]:.3f} ms)"
    rep.flags.append(
        f"a first measurement had this int8 file slower than fp32 ({a0:.3f} ms against {b0:.3f} ms); "
        f"a second did not ({again[0]:.3f} ms against {again[1]:.3f} ms): int8 kept"
    )
    return None


def _slower_than(rep: ArtifactReport, fp32: ArtifactReport) -> str | None:
    if rep.host is None or fp32.host is None or fp32.status != "ok":
        return None
    a, b = rep.host.latency_median.value or 0.0, fp32.host.latency_median.value or 0.0
    if a > b * GUARDRAIL_MARGIN:
        return (
            f"did int8 help? no: measured {a:.3f} ms against {b:.3f} ms for fp32 on the host runtime "
            f"({a / b:.2f}x slower); the faster fp32 artifact is preferred"
        )
    return None


def _ranked(
    chain: Sequence[str],
    fp32: ArtifactReport,
    make: Callable[[str], ArtifactReport],
    outcome: FormatOutcome,
    prefer: Prefer,
    device: str,
) -> FormatOutcome:
    """``prefer`` fastest / smallest: every scheme of the chain is made and checked, and the format ships the
    best-ranked artifact that passes the gate and fits the budgets (ties: the profile's order). When none
    fits, the choice is that of ``prefer="first"`` over the same artifacts: the first quantized one that
    passed, else fp32."""
    outcome.reports += [make(s) for s in chain if s != "fp32"]
    order = {r.scheme: chain.index(r.scheme) for r in outcome.reports}
    passed = sorted((r for r in outcome.reports if r.status == "ok"), key=lambda r: order[r.scheme])
    fitting = [r for r in passed if r.fits_budgets is not False]
    if not fitting:
        quantized = [r for r in passed if r.scheme != "fp32"]
        outcome.chosen = next(iter(quantized or passed), None)
        return outcome
    ranked = rank_artifacts(fitting, prefer)
    outcome.chosen = ranked[0]
    ranked[0].flags.append(ranking_note(ranked, prefer, device))
    return outcome


def _rank_value(r: ArtifactReport, prefer: Prefer) -> float:
    if prefer == "smallest":
        return r.size.value if r.size is not None and r.size.value is not None else math.inf
    # fastest: the device estimate (every artifact has one: an analyzer of its graph, else the fp32 ONNX proxy)
    return r.device.latency.value if r.device is not None and r.device.latency.value is not None else math.inf


def rank_artifacts(candidates: Sequence[ArtifactReport], prefer: Prefer) -> list[ArtifactReport]:
    """``candidates`` best first by ``prefer`` (stable: equal values keep the given order)."""
    return sorted(candidates, key=lambda r: _rank_value(r, prefer))


def ranking_note(
    ranked: Sequence[ArtifactReport], prefer: Prefer, device: str, among: str = "that pass and fit"
) -> str:
    """The flag of an artifact chosen by ranking: its figure and the runner-up's."""
    what = "estimated latency on " + device if prefer == "fastest" else "file size"
    unit, scale = ("ms", 1.0) if prefer == "fastest" else ("MB", 1 / 2**20)

    def fig(r: ArtifactReport) -> str:
        return f"{_rank_value(r, prefer) * scale:.3g} {unit}"

    nxt = f"; next {ranked[1].file} {fig(ranked[1])}" if len(ranked) > 1 else ""
    return f"chosen by --prefer {prefer}: {what} {fig(ranked[0])} of {len(ranked)} {among}{nxt}"


def choose_overall(
    profile: DeviceProfile, formats: Sequence[str], outcomes: dict[str, FormatOutcome], prefer: Prefer = "first"
) -> tuple[ArtifactReport | None, str, str | None]:
    """The overall choice: the profile's first format whose chosen artifact fits every budget (``prefer``
    fastest / smallest: the best-ranked of the formats' choices that fit)."""
    candidates = [outcomes[f].chosen for f in formats if outcomes.get(f) and outcomes[f].chosen is not None]
    if not candidates:
        made = any(r.status == "rejected" for o in outcomes.values() for r in o.reports)
        return (
            None,
            "failed",
            ("no artifact passed the parity gate in any format" if made else "no artifact could be made in any format"),
        )
    fitting = [c for c in candidates if c is not None and c.fits_budgets is not False]
    if fitting:
        if prefer == "first" or len(fitting) == 1:
            return fitting[0], "ok", None
        ranked = rank_artifacts(fitting, prefer)
        ranked[0].flags.append(ranking_note(ranked, prefer, profile.name, among="formats' choices"))
        return ranked[0], "ok", None
    best = candidates[0]
    assert best is not None
    broken = "; ".join(b.message for b in best.budgets if not b.fits)
    # artifacts that would have fitted but failed the gate: the limit (--max-drop, --gate), not the budget, decided
    gated = [
        r.file
        for f in formats
        if outcomes.get(f)
        for r in outcomes[f].reports
        if r.status == "rejected" and r.parity is not None and not r.parity.passed and r.fits_budgets
    ]
    gate = best.parity.gate if best.parity else "point"
    also = (
        (
            f" ({len(gated)} that fit {'was' if len(gated) == 1 else 'were'} rejected by the {gate} parity gate: "
            f"{', '.join(gated)}; see --max-drop and --gate)"
        )
        if gated
        else ""
    )
    return None, "no_fit", f"no artifact meets every budget of {profile.name}: {best.file}: {broken}{also}"


def partial_reason(formats: Sequence[str], outcomes: dict[str, FormatOutcome]) -> str:
    """One line naming each format that emitted nothing and why (the converter's error names the op)."""
    bits = []
    for f in formats:
        if outcomes[f].chosen is not None:
            continue
        errs = [r.error for r in outcomes[f].reports if r.error]
        rejected = [r for r in outcomes[f].reports if r.status == "rejected"]
        if errs:
            bits.append(errs[0] if errs[0].startswith(f"{f}:") else f"{f}: {errs[0]}")
        elif rejected:
            bits.append(
                f"{f}: every artifact was rejected ({rejected[0].flags[-1] if rejected[0].flags else 'parity'})"
            )
        else:
            bits.append(f"{f}: no artifact")
    emitted = [f for f in formats if outcomes[f].chosen is not None]
    return "partial build: " + "; ".join(bits) + (f" (emitted: {', '.join(emitted)})" if emitted else "")
