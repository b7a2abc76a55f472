"""The history dashboard: one self-contained HTML file (nothing fetched when viewed, under 5 MB), drawn from a
synthetic history that follows the ``dashboard_data`` contract, and checked in a real headless Chromium: every plot
renders, the points are the data's, the filters hide what they should, the regression is listed."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from adaptc.history.dashboard import MAX_BYTES, filter_data, render_dashboard

from .browser import TRACES, Session, browser_missing
from .conftest import run_cli

DEVICES = {"host": ("This machine", None), "pixel7": ("Google Pixel 7", 20.0), "rpi4": ("Raspberry Pi 4", 50.0)}
TASKS = {"digits": "accuracy", "sst2": "accuracy"}
FLAVOURS = [
    ("onnx", "fp32"),
    ("onnx", "int8_static_per_channel"),
    ("tflite", "fp32"),
    ("tflite", "int8_static_per_channel"),
]
REGRESSION = "overall: accuracy 0.9889 -> 0.9500 (-3.89 points, beyond the 1.00-point limit)"


def _run(i: int, task: str, device: str, status: str = "ok") -> dict[str, Any]:
    display, budget = DEVICES[device]
    return {
        "run_id": f"2024050{1 + i // 10}T1{i % 10}0000Z-{task[:3]}{device[:3]}{i}",
        "created_utc": f"2024-05-0{1 + i // 10}T1{i % 10}:00:00Z",
        "recorded_utc": f"2024-05-0{1 + i // 10}T1{i % 10}:00:05Z",
        "command": "build",
        "adaptc_version": "0.1.0",
        "toolchain": {"torch": "2.13.0"},
        "git_commit": f"{i:02d}c0ffee{i:02d}deadbeef" if i % 4 else None,
        "git_dirty": bool(i % 3 == 0) if i % 4 else None,
        "task": task,
        "task_fingerprint": "f" * 16,
        "metric_name": TASKS[task],
        "teacher_metric": 0.99,
        "device": device,
        "device_display": display,
        "profile_hash": "0" * 64,
        "budgets": {"max_latency_ms": budget, "max_peak_memory_mb": None, "max_model_mb": 8.0, "max_mflops": None},
        "status": status,
        "status_reason": None if status == "ok" else "every format failed to export",
        "shipped": None,
        "build_dir": f"/builds/{task}-{device}-{i}",
        "duration_s": 120.0 + i,
        "candidates": 12,
        "pareto": [
            {
                "key": f"w{k}",
                "val": 0.9 + 0.02 * k,
                "latency_ms": 2.0 + 3 * k,
                "size_mb": 0.1 * (k + 1),
                "chosen": k == 2,
                "feasible": True,
            }
            for k in range(4)
        ]
        if status == "ok" and i % 2 == 0
        else [],
        "regressions": [],
        "regressed": False,
        "baseline_run": None,
    }


def _artifact(run: dict[str, Any], k: int, fmt: str, scheme: str, shipped: bool) -> dict[str, Any]:
    failed = run["status"] == "failed"
    int8 = scheme.startswith("int8")
    i, speed = int(run["duration_s"]) - 120, {"host": 1.0, "pixel7": 2.5, "rpi4": 6.0}[run["device"]]
    metric = (
        None if failed else 0.97 - 0.01 * k - (0.005 if int8 else 0) + 0.002 * (i % 3) - 0.01 * (run["task"] == "sst2")
    )
    file = f"{run['task']}_{fmt}_{scheme}.{'onnx' if fmt == 'onnx' else 'tflite'}"
    return {
        "run_id": run["run_id"],
        "file": file,
        "path": f"{run['build_dir']}/{file}",
        "report_md": f"{run['build_dir']}/report.md",
        "format": fmt,
        "scheme": scheme,
        "precision": "int8" if int8 else "fp32",
        "status": "failed" if failed else "ok",
        "shipped": shipped,
        "chosen_for_format": shipped,
        "size_bytes": None if failed else (90_000 if int8 else 350_000) + 1000 * k,
        "sha256": "a" * 64,
        "metric": metric,
        "metric_ci95": None if metric is None or k == 3 else [metric - 0.01, min(1.0, metric + 0.008)],
        "host_latency_ms": None
        if failed or k == 2
        else (1.1 + 0.4 * k + (0.0 if int8 else 0.6)) * (1 + 0.05 * (i % 4)),
        "host_peak_mb": None if failed else 12.0,
        "host_method": "median of 50 runs",
        "device_latency_ms": None if failed else speed * (1.3 + 0.5 * k + (0.0 if int8 else 0.7)),
        "device_peak_mb": None if failed else 10.0,
        "device_method": "roofline",
        "fits_budgets": None if failed else k < 3,
        "error": "converter failed" if failed else None,
    }


def synthetic_history() -> dict[str, Any]:
    """Runs oldest first over 3 devices and 2 tasks, 2-4 artifacts each; one regressed run, one failed latest run."""
    runs, arts = [], []
    i = 0
    for rnd in range(3):
        for device in DEVICES:
            for task in TASKS:
                if rnd == 2 and (task, device) == ("sst2", "host"):
                    continue  # series of different lengths
                status = "failed" if rnd == 2 and (task, device) == ("sst2", "rpi4") else "ok"
                run = _run(i, task, device, status)
                n = 2 + (i % 3)
                flavours = FLAVOURS[:n] if status == "ok" else FLAVOURS[:1]
                ship = 1 if status == "ok" else None
                for k, (fmt, scheme) in enumerate(flavours):
                    arts.append(_artifact(run, k, fmt, scheme, k == ship))
                    if k == ship:
                        run["shipped"] = arts[-1]["file"]
                runs.append(run)
                i += 1
    prev: dict[tuple[str, str], str] = {}
    for r in runs:
        r["baseline_run"] = prev.get((r["task"], r["device"]))
        prev[(r["task"], r["device"])] = r["run_id"]
    bad = next(r for r in reversed(runs) if (r["task"], r["device"]) == ("digits", "pixel7"))
    bad.update(regressions=[REGRESSION, "overall: device estimate 3.30 -> 4.10 ms (+24%, beyond 10%)"], regressed=True)
    for a in _arts({"artifacts": arts}, bad):
        a["metric"] -= 0.04
        a["metric_ci95"] = None if a["metric_ci95"] is None else [a["metric"] - 0.01, a["metric"] + 0.01]
    return {
        "generated_utc": "2024-05-04T09:00:00Z",
        "history": "/somewhere/history.sqlite",
        "adaptc_version": "0.1.0",
        "runs": runs,
        "artifacts": arts,
        "devices": {
            d: {
                "display_name": n,
                "budgets": {"max_latency_ms": b, "max_peak_memory_mb": None, "max_model_mb": 8.0, "max_mflops": None},
            }
            for d, (n, b) in DEVICES.items()
        },
        "tasks": {t: {"metric_name": m} for t, m in TASKS.items()},
    }


def _latest(data: dict[str, Any], task: str, device: str) -> dict[str, Any] | None:
    mine = [r for r in data["runs"] if (r["task"], r["device"]) == (task, device)]
    return mine[-1] if mine else None


def _arts(data: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in data["artifacts"] if a["run_id"] == run["run_id"]]


def expected_pareto(data: dict[str, Any], device: str) -> dict[str, int]:
    """Trace name -> number of points the data implies for one device's Pareto plot."""
    out = {}
    for task, metric in TASKS.items():
        run = _latest(data, task, device)
        if run is None:
            continue
        placed = [a for a in _arts(data, run) if a["metric"] is not None and (a["device_latency_ms"] or 0) > 0]
        out[f"{task} ({metric})"] = len(placed)
        if any(a["shipped"] for a in placed):
            out[f"{task} shipped"] = sum(1 for a in placed if a["shipped"])
        if run["pareto"]:
            out[f"{task} search Pareto"] = len(run["pareto"])
    return out


def expected_honesty(data: dict[str, Any]) -> dict[str, int]:
    host = {r["run_id"] for r in data["runs"] if r["device"] == "host"}
    out: dict[str, int] = {}
    for a in data["artifacts"]:
        if a["run_id"] in host and a["device_latency_ms"] and a["host_latency_ms"]:
            out[a["format"]] = out.get(a["format"], 0) + 1
    return out


class _Loads(HTMLParser):
    """Every URL the page would load by itself (not the links a reader may follow)."""

    ATTRS = {
        "script": "src",
        "link": "href",
        "img": "src",
        "iframe": "src",
        "source": "src",
        "embed": "src",
        "video": "src",
        "audio": "src",
        "object": "data",
    }

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in self.ATTRS and a.get(self.ATTRS[tag]):
            self.loads.append(str(a[self.ATTRS[tag]]))
        if tag == "script" and not a.get("src"):
            self.inline_scripts += 1
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        if "style" in a and "url(" in str(a["style"]):
            self.loads.append(str(a["style"]))


# ------------------------------------------------------------------------------------------------ the file
def test_render_is_one_self_contained_file(tmp_path: Path) -> None:
    data = synthetic_history()
    dest = render_dashboard(data, tmp_path / "out" / "dashboard.html")
    assert dest.is_file()
    assert 0 < dest.stat().st_size < MAX_BYTES <= 5_000_000
    text = dest.read_text(encoding="utf-8")
    p = _Loads()
    p.feed(text)
    assert p.loads == [], f"the page loads: {p.loads}"
    assert p.inline_scripts == 2  # plotly.js once, then the figures and the filters
    assert text.count("plotly.js v") == 1
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # file and report links are relative to the page's folder (page and builds can move together) and lead to the
    # latest run's files of each task and device
    assert p.links and all(not h.startswith(("/", "file:", "http")) for h in p.links), p.links
    here = dest.resolve().parent
    latest = [_latest(data, t, d) for t in TASKS for d in DEVICES]
    want = {a[k] for r in latest if r for a in _arts(data, r) for k in ("path", "report_md")}
    assert {os.path.normpath(os.path.join(here, unquote(h))) for h in p.links} == want
    for attr in ('id="filter-task"', 'id="filter-device"', 'id="filter-format"', 'id="regressions"'):
        assert attr in text
    assert REGRESSION.replace(">", "&gt;") in text
    assert not list(tmp_path.glob("out/.adaptc-tmp-*"))  # written atomically, nothing left beside it


def test_empty_history_and_missing_values_render(tmp_path: Path) -> None:
    empty = {
        "generated_utc": "2024-05-04T09:00:00Z",
        "history": "h.sqlite",
        "adaptc_version": "0.1.0",
        "runs": [],
        "artifacts": [],
        "devices": {},
        "tasks": {},
    }
    text = render_dashboard(empty, tmp_path / "empty.html").read_text()
    assert "No runs recorded" in text and "<script" not in text
    # a run with hardly anything known: no budgets, metric name, times or status; a NaN metric, no latencies
    bare = {
        **empty,
        "runs": [{"run_id": "r1", "task": "t", "device": "host"}],
        "devices": {"host": {}},
        "tasks": {"t": {}},
    }
    bare["artifacts"] = [{"run_id": "r1", "file": "m.onnx", "format": "onnx", "metric": float("nan")}]
    assert "m.onnx" in render_dashboard(bare, tmp_path / "bare.html").read_text()
    assert render_dashboard({}, tmp_path / "nothing.html").is_file()


def test_a_long_history_is_cut_to_fit(tmp_path: Path) -> None:
    """720 runs of 4 artifacts: the trends keep the most recent runs, and the page stays under its ceiling."""
    data = synthetic_history()
    runs, arts = [], []
    for i in range(720):
        run = _run(i % 90, list(TASKS)[i % 2], list(DEVICES)[i // 2 % 3])
        run.update(
            run_id=f"{run['run_id']}-{i}",
            created_utc=f"2024-{1 + i // 280:02d}-{1 + i // 10 % 28:02d}T10:{i % 60:02d}:00Z",
        )
        arts += [_artifact(run, k, fmt, scheme, k == 1) for k, (fmt, scheme) in enumerate(FLAVOURS)]
        runs.append(run)
    text = render_dashboard({**data, "runs": runs, "artifacts": arts}, tmp_path / "d.html").read_text()
    assert len(text.encode()) < MAX_BYTES
    assert "(the last " in text and "runs of each device)" in text


def test_filter_data_keeps_one_task_and_device() -> None:
    data = synthetic_history()
    one = filter_data(data, task="digits", device="pixel7")
    assert {(r["task"], r["device"]) for r in one["runs"]} == {("digits", "pixel7")}
    ids = {r["run_id"] for r in one["runs"]}
    assert one["artifacts"] and {a["run_id"] for a in one["artifacts"]} <= ids
    assert set(one["devices"]) == {"pixel7"} and set(one["tasks"]) == {"digits"}
    assert filter_data(data) == data


def test_cli_refuses_an_unknown_task(tmp_path: Path) -> None:
    from adaptc.history import open_history

    hist = tmp_path / "history.sqlite"
    open_history(hist, create=True).close()
    r = run_cli("dashboard", "--history", str(hist), "--out", str(tmp_path / "d.html"))
    assert r.returncode == 0, r.stderr
    assert "0 runs" in r.stdout and (tmp_path / "d.html").is_file()
    r = run_cli("dashboard", "--history", str(hist), "--task", "nope", "--out", str(tmp_path / "e.html"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope" in r.stderr
    assert not (tmp_path / "e.html").exists()


# --------------------------------------------------------------------------------------------- the browser
def _need_browser() -> None:
    why = browser_missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install the browser test's dependencies: {why}")
        pytest.skip(why)


def test_dashboard_in_a_real_browser(tmp_path: Path) -> None:
    _need_browser()
    from playwright.sync_api import sync_playwright

    data = synthetic_history()
    dest = render_dashboard(data, tmp_path / "dashboard.html")
    empty = render_dashboard({**data, "runs": [], "artifacts": [], "devices": {}, "tasks": {}}, tmp_path / "empty.html")
    n_plots = len(DEVICES) + len(TASKS) + 1  # a Pareto plot per device, a trend plot per task, the honesty plot
    with sync_playwright() as pw:
        session = Session(pw)
        errors, remote = session.errors, session.remote
        try:
            # every plot drawn (first_open waits for that); how fast is the benchmark's question, not a test's
            # (benchmarks/dashboard_bench.py records the render time against RENDER_BUDGET_MS): on a shared
            # machine a first open can lose the CPU to its neighbours
            page, rendered_ms, took = session.first_open(dest, n_plots)
            assert rendered_ms < float("inf"), took
            assert page.evaluate(
                "[...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelectorAll('.main-svg .scatterlayer .trace, .main-svg .scatterlayer path').length > 0)"
            )

            pareto = {p["device"]: p for p in page.evaluate(TRACES, ".plot[data-kind=pareto]")}
            assert set(pareto) == set(DEVICES)
            for device, plot in pareto.items():
                got = {t["name"]: t["n"] for t in plot["traces"]}
                assert got == expected_pareto(data, device), device
            (honesty,) = page.evaluate(TRACES, ".plot[data-kind=honesty]")
            got = {t["name"]: t["n"] for t in honesty["traces"] if t["name"] in ("onnx", "tflite")}
            assert got == expected_honesty(data) and sum(got.values()) > 0
            assert {t["name"] for t in honesty["traces"]} >= {"y = x", "±20%"}
            trends = page.evaluate(TRACES, ".plot[data-kind=trend]")
            assert sorted(p["task"] for p in trends) == sorted(TASKS)
            for plot in trends:
                for device in DEVICES:
                    runs = [r for r in data["runs"] if (r["task"], r["device"]) == (plot["task"], device)]
                    # quality, device estimate, host measurement, size: one point per run
                    assert [t["n"] for t in plot["traces"] if t["group"] == device] == [len(runs)] * 4
                bad = sum(1 for r in data["runs"] if r["task"] == plot["task"] and r["regressed"])
                assert [t["n"] for t in plot["traces"] if t["name"] == "regressed"] == ([bad] if bad else [])
            budgets = page.evaluate(
                "document.querySelector('.plot[data-kind=pareto][data-device=pixel7]').layout.shapes.map(s => s.x0)"
            )
            assert [round(10**x, 6) for x in budgets] == [20.0]  # the x axis is logarithmic

            regressed = next(r for r in data["runs"] if r["regressed"])
            section = page.locator("#regressions")
            assert section.is_visible()
            assert regressed["run_id"] in section.inner_text() and "-3.89 points" in section.inner_text()

            # the regressed run's marker: its hover names the run, the commit, the file and each regression
            hover = page.evaluate("""() => {
              const gd = document.querySelector('.plot[data-kind=trend][data-task=digits]');
              gd.scrollIntoView();
              Plotly.Fx.hover(gd, [{curveNumber: gd.data.findIndex(t => t.name === 'regressed'), pointNumber: 0}], 'xy');
              return gd.querySelector('.hoverlayer .hovertext').textContent; }""")
            shipped = next(a["file"] for a in _arts(data, regressed) if a["shipped"])
            for part in (regressed["run_id"], regressed["git_commit"][:10], shipped, *regressed["regressions"]):
                assert part in hover, (part, hover)

            page.select_option("#filter-device", "pixel7")
            shown = page.evaluate(
                "[...document.querySelectorAll('[data-device]:not([data-device=\"\"])')].filter(e => e.offsetParent !== null).map(e => e.dataset.device)"
            )
            assert shown and set(shown) == {"pixel7"}
            for el in page.locator(".plot").all():  # the trend plots (per task) show pixel7's lines only
                assert el.is_visible() == (el.get_attribute("data-device") in ("pixel7", ""))
            for plot in page.evaluate(TRACES, ".plot[data-kind=trend]"):
                assert all((t["visible"] is not False) == (t["group"] in ("pixel7", None)) for t in plot["traces"])
                assert [t["selected"] for t in plot["traces"] if t["name"] == "regressed"] in ([], [None], [[0]])
            rows = page.locator("tr[data-format]")
            assert all((r.get_attribute("data-device") == "pixel7") == r.is_visible() for r in rows.all())

            page.select_option("#filter-task", "sst2")
            pix = page.evaluate(TRACES, ".plot[data-kind=pareto][data-device=pixel7]")[0]
            assert all((t["visible"] is not False) == t["name"].startswith("sst2") for t in pix["traces"])
            assert page.locator(".plot[data-kind=trend][data-task=sst2]").is_visible()
            assert not page.locator(".plot[data-kind=trend][data-task=digits]").is_visible()

            page.select_option("#filter-format", "tflite")
            visible_rows = [r for r in page.locator("tr[data-format]").all() if r.is_visible()]
            assert all(r.get_attribute("data-format") == "tflite" for r in visible_rows)
            for sel in ("#filter-task", "#filter-device", "#filter-format"):
                page.select_option(sel, "all")
            assert all(el.is_visible() for el in page.locator(".plot").all())

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=shot, full_page=True)
            assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            page.goto(empty.as_uri())
            assert "No runs recorded" in page.locator("#no-runs").inner_text()
            assert errors == [], errors
            assert remote == [], f"the page reached for the network: {remote}"
        finally:
            session.close()
