"""Fleet builds: one search serving many devices.

``build_fleet(task, ["pixel8", "echo-dot", "rv1126-cam"], out)`` (CLI: ``adaptc build --device a,b,c``, a
wildcard such as ``'pixel*'``, or ``--fleet fleet.yaml``) builds every device into ``out/<device>/`` -- its
artifacts, report.json / report.md, exactly as a single-device build -- with one trial store in ``out/.adaptc``
shared by the devices' searches:

- the candidate space is the union of the devices' admissible skeletons; a skeleton is identified by its
  fingerprint (module tree and weights), so devices whose channel multiples derive the same skeleton share it;
- a trial (skeleton, rung, epochs, seed) is distilled once, by the first device whose search needs it, and resumed
  by the others (quality does not depend on the device);
- every device then selects, trains finally (shared too when two devices choose the same student and scheme
  kind), exports and checks under its own budgets: each gets the choice its single-device build would make with
  the same seed.

``out/fleet.json`` and ``out/fleet.md`` summarise what shipped where, which candidates served several devices and
how many trials the fleet shared. The devices are built one after another in the order given (the rung trials of
each can run in parallel on a Ray cluster: ``executor="ray"``); a rerun resumes every device.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import __version__, progress
from ..core.io import atomic_write_json, atomic_write_text, ensure_writable_dir, folder_lock
from ..core.safe_yaml import load_yaml
from ..errors import AdaptcError, BudgetError, UnknownDeviceError
from ..history import History
from ..history import resolve_path as resolve_history
from ..profiles import DeviceProfile, list_devices, load_profile
from ..report.fleet import FleetReport, device_row, render_fleet, shared_candidates
from ..search.trials import TrialStore
from ..store import BuildStore, check_store
from ..tasks import Task, get_task
from .run import build

#: what a fleet file may set per device (build() keywords; ``budgets`` updates the profile's budgets)
OVERRIDES = ("formats", "max_drop", "gate", "prefer", "quant_effort", "threads", "runs", "measure_host", "budgets")
_WILDCARD = set("*?[")


def is_wildcard(spec: str) -> bool:
    """Whether a device spec is a wildcard over the profile names (``'pixel*'``), not a name or a profile file."""
    return bool(_WILDCARD & set(spec)) and not spec.endswith((".yaml", ".yml"))


def _entry(spec: str | os.PathLike[str] | DeviceProfile) -> list[DeviceProfile]:
    if isinstance(spec, str) and is_wildcard(spec):
        found = list_devices(spec)
        if not found:
            raise UnknownDeviceError(f"no device profile matches {spec!r} (see `adaptc devices`)")
        return found
    return [load_profile(spec)]


def resolve_devices(
    devices: str | os.PathLike[str] | DeviceProfile | Sequence[str | os.PathLike[str] | DeviceProfile],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[DeviceProfile, dict[str, Any]]]:
    """The fleet's profiles, in order, each with its build overrides: ``devices`` is a name, a path, a wildcard
    (``'pixel*'``), a comma-separated list of them, or a list. ``overrides``: per device name, keywords of
    :func:`adaptc.build` (:data:`OVERRIDES`; ``budgets`` a mapping over the profile's budgets)."""
    items: list[Any]
    if isinstance(devices, str):
        items = [d.strip() for d in devices.split(",") if d.strip()]
    elif isinstance(devices, (os.PathLike, DeviceProfile)):
        items = [devices]
    else:
        items = list(devices)
    if not items:
        raise AdaptcError("no device given: name at least one (pixel8,echo-dot), a wildcard or --fleet FILE")
    profiles: list[DeviceProfile] = []
    for item in items:
        profiles += _entry(item)
    names = [p.name for p in profiles]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AdaptcError(f"device(s) named more than once in the fleet: {', '.join(dup)}")
    over = {k: dict(v) for k, v in (overrides or {}).items()}
    unknown = sorted(set(over) - set(names))
    if unknown:
        raise AdaptcError(f"overrides for device(s) not in the fleet: {', '.join(unknown)} (fleet: {', '.join(names)})")
    out = []
    for p in profiles:
        o = over.get(p.name, {})
        bad = sorted(set(o) - set(OVERRIDES))
        if bad:
            raise AdaptcError(f"device {p.name}: unknown override(s) {', '.join(bad)} (known: {', '.join(OVERRIDES)})")
        if "budgets" in o:
            b = o.pop("budgets")
            if not isinstance(b, Mapping):
                raise AdaptcError(f"device {p.name}: budgets must be a mapping (max_latency_ms: 30, ...)")
            try:
                p = DeviceProfile.model_validate({**p.model_dump(), "budgets": {**p.budgets.model_dump(), **b}})
            except ValueError as e:
                first = str(e).splitlines()
                raise AdaptcError(f"device {p.name}: bad budgets override: {' '.join(first[:3])}") from None
        out.append((p, o))
    return out


def load_fleet_file(path: str | os.PathLike[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """A fleet file (YAML): ``devices:`` a list whose items are a device (name, profile path or wildcard) or a
    one-key mapping ``{device: {overrides}}``; ``max_drop`` is in points there, as ``--max-drop``. Returns the
    devices and the overrides (build() keywords) by device."""
    p = Path(path)
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise AdaptcError(f"cannot read the fleet file {p}: {e.strerror or e}") from None
    except ValueError as e:
        raise AdaptcError(f"fleet file {p}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list) or not data["devices"]:
        raise AdaptcError(f"fleet file {p}: expected a mapping with a non-empty list `devices:`")
    extra = sorted(set(data) - {"devices"})
    if extra:
        raise AdaptcError(f"fleet file {p}: unknown key(s) {', '.join(extra)} (known: devices)")
    names: list[str] = []
    overrides: dict[str, dict[str, Any]] = {}
    for item in data["devices"]:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), (dict, type(None))):
            name, over = next(iter(item.items()))
            names.append(str(name))
            over = dict(over or {})
            if "max_drop" in over:
                try:
                    over["max_drop"] = float(over["max_drop"]) / 100.0
                except (TypeError, ValueError):
                    raise AdaptcError(f"fleet file {p}: {name}: max_drop must be a number of points") from None
            overrides[str(name) if is_wildcard(str(name)) else load_profile(str(name)).name] = over
        else:
            raise AdaptcError(f"fleet file {p}: each device is a name or `name: {{overrides}}` (got {item!r})")
    return names, overrides


def _trial_counts(state: Path, since: float) -> dict[str, Any]:
    db = state / ".adaptc" / "state.sqlite"
    if not db.is_file():
        return {}
    with BuildStore(db) as store:
        return TrialStore.counts(store, since)


def build_fleet(
    task: str | Task,
    devices: str | os.PathLike[str] | DeviceProfile | Sequence[str | os.PathLike[str] | DeviceProfile],
    out: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    executor: Any = None,
    executor_options: Mapping[str, Any] | None = None,
    task_options: dict[str, Any] | None = None,
    history: str | os.PathLike[str] | bool | None = None,
    seed: int = 0,
    **common: Any,
) -> FleetReport:
    """Build ``task`` for every device of ``devices`` with one search (see the module docstring) into
    ``out/<device>/`` (default ``adaptc-out/fleet``) and return the fleet's summary (``out/fleet.json``).
    ``common``: keywords of :func:`adaptc.build` for every device (search options, formats, ...); ``overrides``:
    per device name, the keywords that differ (:data:`OVERRIDES`). A device whose build raises (no candidate
    fits, a format that fails) is recorded and the others are built; the summary's status says so."""
    from ..search import get_executor

    t0, since = time.perf_counter(), time.time()
    fleet = resolve_devices(devices, overrides)
    out_dir = Path(out) if out is not None else Path("adaptc-out") / "fleet"
    ensure_writable_dir(out_dir)
    history_path = resolve_history(history)
    if history_path is not None:
        History(history_path).close()
    ex = get_executor(executor, **dict(executor_options or {}))
    rows = []
    interrupted = False
    with folder_lock(out_dir):
        # the shared trial store must read (a corrupt or foreign one: a one-line error, or moved aside with
        # --no-resume), as each device's own store is checked by its build; before any long work
        moved = check_store(out_dir, bool(common.get("resume", True)))
        if moved:
            progress.current().message(f"[yellow]{moved}[/yellow]")
        the_task = get_task(task, **(task_options or {}))
        for i, (profile, over) in enumerate(fleet):
            progress.current().message(f"[bold]fleet: device {i + 1}/{len(fleet)}: {profile.name}[/bold]")
            d0 = time.perf_counter()
            report, error = None, None
            try:
                report = build(
                    the_task,
                    profile,
                    out_dir / profile.name,
                    seed=seed,
                    task_options=task_options,
                    history=history_path if history_path is not None else False,
                    executor=ex,
                    search_state=out_dir,
                    **{**common, **over},
                )
            except BudgetError as e:
                report, error = getattr(e, "report", None), str(e)
            except KeyboardInterrupt:
                interrupted = True
                error = "interrupted (Ctrl-C) before this device's build finished"
            except AdaptcError as e:
                error = str(e)
            rows.append(device_row(profile.name, profile.name, report, time.perf_counter() - d0, error))
            if interrupted:
                break
        failed = [r for r in rows if r.status not in ("ok",)]
        status = (
            "interrupted"
            if interrupted
            else "ok"
            if not failed
            else "failed"
            if len(failed) == len(rows)
            else "partial"
        )
        rep = FleetReport(
            adaptc_version=__version__,
            created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            duration_s=round(time.perf_counter() - t0, 1),
            status=status,  # type: ignore[arg-type]
            status_reason=(
                "; ".join(f"{r.device}: {r.status}" for r in failed) + " (see fleet.md)" if failed else None
            ),
            task=the_task.name,
            metric_name=the_task.metric_name,
            seed=seed,
            out_dir=str(out_dir.resolve()),
            executor=ex.describe(),
            devices=rows,
            candidates=shared_candidates(rows),
            trials=_trial_counts(out_dir, since),
        )
        atomic_write_json(out_dir / "fleet.json", rep.model_dump(mode="json"))
        atomic_write_text(out_dir / "fleet.md", render_fleet(rep))
    if interrupted:
        raise KeyboardInterrupt
    return rep
