"""The student-search options of ``adaptc build``'s command line, as :class:`adaptc.SearchOptions`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.search_options import SearchOptions
from ..errors import AdaptcError


def _search_options(
    task: str,
    widths: str | None,
    max_blocks: int | None,
    time_budget: float | None,
    tolerance: float,
    final_epochs: int | None,
    rung_epochs: str | None,
    ablate: str | None,
    loss_weights: str | None,
    progressive: float | None,
    assistant: str,
    no_qat: bool,
    domain_data: Path | None,
    domain_ratio: float,
    adversarial: str | None,
    adv_eps: float,
    threads: int | None = None,
    memory_budget_mb: float | None = None,
) -> SearchOptions:
    """The search options the command line sets (the task's defaults stay under the fields it leaves unset)."""
    from ..distill import AdversarialConfig
    from ..search import validate_widths

    grid: tuple[float, ...] | None = None
    if widths:
        try:
            grid = tuple(float(w) for w in widths.split(",") if w.strip())
        except ValueError:
            raise AdaptcError(f"--widths must be comma-separated numbers, got {widths!r}") from None
        validate_widths(grid)
    rungs: tuple[int, ...] | None = None
    if rung_epochs:
        try:
            rungs = tuple(int(e) for e in rung_epochs.split(",") if e.strip())
        except ValueError:
            raise AdaptcError(f"--rung-epochs must be comma-separated integers, got {rung_epochs!r}") from None
        if not rungs or min(rungs) < 1:
            raise AdaptcError(f"--rung-epochs must be positive integers, got {rung_epochs!r}")
    if time_budget is not None and time_budget <= 0:
        raise AdaptcError(f"--time-budget must be positive, got {time_budget:g}")
    if assistant not in ("auto", "on", "off"):
        raise AdaptcError(f"--assistant must be auto, on or off (got {assistant!r})")
    # changes to single terms, applied (and checked) over the task's own weights by adaptc.search.resolve_config
    terms: dict[str, float] = {}
    for item in (t.strip() for t in (loss_weights or "").split(",") if t.strip()):
        name, _, value = item.partition("=")
        try:
            terms[name.strip()] = float(value)
        except ValueError:
            raise AdaptcError(
                f"--loss-weights wants term=weight pairs, e.g. hidden=1,attention=0.5; got {item!r}"
            ) from None
    for term in (t.strip() for t in (ablate or "").split(",") if t.strip()):
        terms[term] = 0.0
    # only the fields the command line sets: the task's distillation defaults stay under them
    cfg: dict[str, Any] = {"domain_ratio": domain_ratio}
    if progressive is not None:
        cfg["align_fraction"] = progressive
    if adversarial is not None:
        if adversarial not in ("fgsm", "pgd"):
            raise AdaptcError(f"--adversarial must be fgsm or pgd (got {adversarial!r})")
        cfg["adversarial"] = AdversarialConfig(method=adversarial, eps=adv_eps)  # type: ignore[arg-type]
    if domain_data is not None:
        from ..tasks import get_task
        from ..tasks.base import load_domain_data

        if not domain_data.exists():
            raise AdaptcError(f"domain data file {domain_data} does not exist")
        cfg["domain_data"] = load_domain_data(domain_data, get_task(task))
    return SearchOptions(
        widths=grid,
        max_blocks_dropped=max_blocks,
        rung_epochs=rungs,
        final_epochs=final_epochs,
        quality_tolerance=tolerance / 100.0,
        time_budget_s=time_budget,
        assistant=assistant,  # type: ignore[arg-type]
        qat=not no_qat,
        distill=cfg,
        loss_weights=terms or None,
        threads=threads,
        memory_budget_mb=memory_budget_mb,
    )
