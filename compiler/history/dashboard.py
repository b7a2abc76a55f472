"""The build history as one self-contained HTML page (``adaptc dashboard``): per device the latest Pareto front,
per task and device the trends across runs, the predictor's honesty on this host, the latest artifacts as a table
and every regression up front.

Self-contained: plotly.js is inlined once and a Content-Security-Policy forbids any fetch, so the page opens
offline from a file, a CI artifact store or a mail attachment and draws the same. plotly.js alone is ~4.8 MB of
the 5 MB the page may weigh, so the figures carry only what is drawn (no template, rounded numbers, the most
recent runs when a history is long).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..core.io import atomic_write_text

#: the most the page may weigh (bytes): it travels as a CI artifact and opens in a mail client
MAX_BYTES = 5_000_000
#: the most recent runs drawn per trend and artifacts on the honesty plot; halved until the page fits
TREND_RUNS, HONESTY_POINTS = 200, 600
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_SYMBOLS = {"onnx": "circle", "tflite": "diamond", "coreml": "square"}
_RED, _BAND = "#c0392b", "rgba(44,160,44,.15)"
_LISTED = 50  # regressed runs listed at the top of the page
_FITS: dict[Any, str] = {True: "fits", False: "over"}
_COLUMNS = ("task", "file", "format", "scheme", "quality [95%]", "size", "device est.", "host meas.", "budgets")
_PARETO_NOTE = "quality against the device latency estimate; marker size: the file's size; ★ what shipped; dotted: the search's own Pareto set; dashed: the latency budget."
_HONESTY_NOTE = "every artifact of a build for the device <code>host</code>: the predictor's estimate for this machine against the measurement on it; the band is ±20%."
_TREND_NOTE = "one colour per device; what each run shipped; ✕ marks a run that regressed against the one before it."
_NO_HONESTY = "No artifact of a build for <code>host</code> has both an estimate and a measurement."
_STAR = {"symbol": "star", "size": 20, "line": {"width": 1.5, "color": "#222"}}
_CONFIG = {"displaylogo": False, "responsive": True, "showLink": False, "showSendToCloud": False}
# Only inline code may run and nothing may be fetched: a page that reaches for the network fails loudly instead.
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin:0 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}.meta{color:#555}
#regressions.bad{border:2px solid #c0392b;background:#fdecea;padding:.2em 1em 1em}#regressions.bad h2{color:#c0392b}
.filters{position:sticky;top:0;background:#fff;padding:.5em 0;z-index:10;border-bottom:1px solid #eee}
.filters label{margin-right:1.2em}.card{margin:1em 0}.card h3{margin:.2em 0;font-size:15px}
table{border-collapse:collapse;width:100%;font-size:13px}td,th{border-bottom:1px solid #eee;padding:3px 6px;
text-align:left}tr.run th{background:#f4f6f8}tr.reg td{color:#c0392b}.star{color:#d4a017}
.empty{font-size:1.2em;color:#555}"""
# Filters: containers and rows carry data-task / data-device / data-format and are hidden when one differs; traces
# of the shared plots are hidden (a whole task, device or format) or dimmed point by point (selectedpoints).
_JS = """const K=[['task','tasks'],['device','devices'],['format','formats']];
function fv(id){const e=document.getElementById(id);return e?e.value:'all'}
function ok(w,v){return w==='all'||!v||v===w}
function traceState(f,w){if(!f)return[true,null];if(K.some(([k])=>!ok(w[k],f[k])))return[false,null];
const per=K.filter(([,a])=>f[a]);if(!per.length)return[true,null];const n=f[per[0][1]].length,s=[];
for(let i=0;i<n;i++)if(per.every(([k,a])=>ok(w[k],f[a][i])))s.push(i);return[true,s.length===n?null:s]}
function applyFilters(){const w={task:fv('filter-task'),device:fv('filter-device'),format:fv('filter-format')};
document.querySelectorAll('[data-filter]').forEach(el=>{const s=el.dataset;
el.style.display=ok(w.task,s.task)&&ok(w.device,s.device)&&ok(w.format,s.format)?'':'none'});
FIGS.forEach(f=>{const gd=document.getElementById(f.id);if(!gd||!gd.data||!f.filters.length)return;
const st=f.filters.map(x=>traceState(x,w));
Plotly.restyle(gd,{visible:st.map(x=>x[0]),selectedpoints:st.map(x=>x[1])});
if(gd.offsetParent)Plotly.Plots.resize(gd)})}
Promise.all(FIGS.map(f=>Plotly.newPlot(f.id,f.fig.data,f.fig.layout,CONFIG))).then(()=>{
window.dashboardRendered=performance.now()});
['filter-task','filter-device','filter-format'].forEach(id=>{const e=document.getElementById(id);
if(e)e.addEventListener('change',applyFilters)});"""


def render_dashboard(data: dict[str, Any], dest: Path, *, title: str = "adaptc builds") -> Path:
    """Write the dashboard of ``data`` (:func:`adaptc.history.dashboard_data`) to ``dest`` as one HTML file that
    fetches nothing when viewed; returns ``dest``."""
    dest = Path(dest)
    trend_runs, honesty_points = TREND_RUNS, HONESTY_POINTS
    while True:
        text = _Page(data, dest, title, trend_runs, honesty_points).html()
        if len(text.encode("utf-8")) <= MAX_BYTES or trend_runs <= 4:
            return atomic_write_text(dest, text)
        trend_runs, honesty_points = trend_runs // 2, honesty_points // 2


def filter_data(data: dict[str, Any], *, task: str | None = None, device: str | None = None) -> dict[str, Any]:
    """``data`` restricted to the runs of ``task`` and/or ``device`` (None: all) and their artifacts."""
    same = lambda r: (task is None or r.get("task") == task) and (device is None or r.get("device") == device)  # noqa: E731
    runs = [r for r in data.get("runs") or [] if same(r)]
    ids = {r.get("run_id") for r in runs}
    return {
        **data,
        "runs": runs,
        "artifacts": [a for a in data.get("artifacts") or [] if a.get("run_id") in ids],
        "devices": {k: v for k, v in (data.get("devices") or {}).items() if device is None or k == device},
        "tasks": {k: v for k, v in (data.get("tasks") or {}).items() if task is None or k == task},
    }


# ------------------------------------------------------------------------------------------------ values
def _num(v: Any) -> float | None:
    """A finite number rounded to 6 significant digits (the page's weight), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


def _when(s: Any) -> str | None:
    """An ISO 8601 time as plotly reads dates (UTC, no zone suffix: plotly.js ignores zones)."""
    try:
        t = datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    except ValueError:
        return None if s is None else str(s)
    return (t.astimezone(timezone.utc) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S")


def _fmt(v: Any, spec: str = ".4g", unit: str = "") -> str:
    n = _num(v)
    return "—" if n is None else f"{n:{spec}}{unit}"


def _size(b: Any) -> str:
    n = _num(b)
    return "—" if n is None else f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _quality(a: dict[str, Any]) -> str:
    ci = a.get("metric_ci95")
    band = f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""
    return _fmt(a.get("metric")) + band


def _esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _hover(*lines: Any) -> str:
    # plotly draws hover text as its own small HTML: <br> breaks lines, the rest is escaped
    return "<br>".join(html.escape(str(x), quote=False) for x in lines if x not in (None, ""))


def _commit(r: dict[str, Any]) -> str:
    c = r.get("git_commit")
    return "no git commit" if not c else f"commit {str(c)[:10]}{' (dirty)' if r.get('git_dirty') else ''}"


def _shipped(run: dict[str, Any], arts: list[dict[str, Any]]) -> dict[str, Any] | None:
    ship = [a for a in arts if a.get("shipped") is True or (run.get("shipped") and a.get("file") == run["shipped"])]
    return ship[0] if ship else None


def _fig(height: int, **layout: Any) -> dict[str, Any]:
    # no template: plotly's default one weighs ~10 kB per figure, and the page's budget is plotly.js's leftover
    margin, legend = {"l": 60, "r": 20, "t": 30, "b": 45}, {"orientation": "h", "y": -0.18}
    return {"template": "none", "height": height, "margin": margin, "hovermode": "closest", "legend": legend, **layout}


def _trace(x: list[Any], y: list[Any], name: str, text: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    hover = {"text": text, "hovertemplate": "%{text}<extra></extra>"} if text is not None else {}
    return {"type": "scatter", "x": x, "y": y, "name": name, **hover, **kw}


def _col(items: list[dict[str, Any]], key: str) -> list[float | None]:
    return [_num(i.get(key)) for i in items]


def _placed(a: dict[str, Any], y: str, x: str, *, log_y: bool = False) -> bool:
    """Whether ``a`` has a point on a plot with a log x axis: numbers at ``y`` and ``x``, positive where log."""
    vy, vx = _num(a.get(y)), _num(a.get(x))
    return vy is not None and vx is not None and vx > 0 and (vy > 0 or not log_y)


# ------------------------------------------------------------------------------------------------- page
class _Page:
    """One rendering of the page: the figures it embeds and the HTML around them."""

    def __init__(self, data: dict[str, Any], dest: Path, title: str, trend_runs: int, honesty_points: int) -> None:
        self.data, self.dest, self.title = data, dest, title
        self.trend_runs, self.honesty_points = trend_runs, honesty_points
        self.runs: list[dict[str, Any]] = [r for r in data.get("runs") or [] if isinstance(r, dict)]
        self.arts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in data.get("artifacts") or []:
            if isinstance(a, dict):
                self.arts[str(a.get("run_id"))].append(a)
        self.series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in self.runs:
            self.series[(str(r.get("task")), str(r.get("device")))].append(r)
        self.devices = sorted({d for _, d in self.series})
        self.tasks = sorted({t for t, _ in self.series})
        self.colour = {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(self.tasks)}
        self.figs: list[str] = []

    # --------------------------------------------------------------------------------- helpers
    def _device_name(self, d: str) -> str:
        info = (self.data.get("devices") or {}).get(d) or {}
        return str(info.get("display_name") or d)

    def _budget(self, d: str) -> float | None:
        info = (self.data.get("devices") or {}).get(d) or {}
        return _num((info.get("budgets") or {}).get("max_latency_ms"))

    def _metric_name(self, t: str) -> str:
        info = (self.data.get("tasks") or {}).get(t) or {}
        return str(info.get("metric_name") or "quality")

    def _plot(self, fig: Any, filters: list[dict[str, Any] | None], **attrs: str) -> str:
        """The container of one figure; the figure itself goes into the page's one figure list."""
        import plotly.io as pio

        fid = f"plot-{len(self.figs)}"
        spec = {"id": fid, "filters": filters}
        self.figs.append(json.dumps(spec)[:-1] + ',"fig":' + pio.to_json(fig, validate=False, pretty=False) + "}")
        data_attrs = "".join(f' data-{k}="{_esc(v)}"' for k, v in attrs.items())
        return f'<div class="plot" id="{fid}"{data_attrs}></div>'

    def _artifact_hover(self, r: dict[str, Any], a: dict[str, Any]) -> str:
        return _hover(
            a.get("file"),
            f"{a.get('format')} · {a.get('scheme')}",
            f"{self._metric_name(str(r.get('task')))} {_quality(a)}",
            f"device {_fmt(a.get('device_latency_ms'), '.3g', ' ms')} · host {_fmt(a.get('host_latency_ms'), '.3g', ' ms')}",
            f"{_size(a.get('size_bytes'))} · run {r.get('run_id')}",
        )

    def _run_hover(self, who: str, r: dict[str, Any], a: dict[str, Any]) -> str:
        shipped = f"{a.get('file') or 'nothing shipped'} ({r.get('status')})"
        return _hover(
            who, f"run {r.get('run_id')}", _commit(r), shipped, *(f"⚠ {g}" for g in r.get("regressions") or [])
        )

    # --------------------------------------------------------------------------------- figures
    def pareto(self, d: str) -> str:
        import plotly.graph_objects as go

        # log latency: a budget of tens of ms and files that run in tens of µs share one plot
        xaxis = {"type": "log", "title": {"text": "device latency estimate (ms)"}}
        fig = go.Figure(layout=_fig(440, xaxis=xaxis, yaxis={"title": {"text": "quality"}}))
        filters: list[dict[str, Any] | None] = []
        for t in (t for t in self.tasks if (t, d) in self.series):
            run, c = self.series[(t, d)][-1], self.colour[t]
            arts = [a for a in self.arts[str(run.get("run_id"))] if _placed(a, "metric", "device_latency_ms")]
            front = [p for p in run.get("pareto") or [] if isinstance(p, dict) and _placed(p, "val", "latency_ms")]
            front.sort(key=lambda p: float(p["latency_ms"]))
            if front:
                line, keys = {"color": c, "dash": "dot", "width": 1}, [_hover(p.get("key"), p["val"]) for p in front]
                x, y, name = _col(front, "latency_ms"), _col(front, "val"), f"{t} search Pareto"
                fig.add_trace(
                    _trace(x, y, name, keys, mode="lines+markers", line=line, marker={"size": 4}, opacity=0.35)
                )
                filters.append({"task": t})
            big = max((_num(a.get("size_bytes")) or 0.0 for a in arts), default=0.0) or 1.0
            sizes = [8 + 22 * math.sqrt((_num(a.get("size_bytes")) or 0.0) / big) for a in arts]
            symbols = [_SYMBOLS.get(str(a.get("format")), "circle") for a in arts]
            marker = {"color": c, "size": sizes, "symbol": symbols, "line": {"width": 1, "color": "#fff"}}
            for name, mine, mark in (
                (f"{t} ({self._metric_name(t)})", arts, marker),
                (f"{t} shipped", [a for a in arts if a.get("shipped") is True], _STAR | {"color": c}),
            ):
                if mine or mark is marker:
                    hover = [self._artifact_hover(run, a) for a in mine]
                    x, y = _col(mine, "device_latency_ms"), _col(mine, "metric")
                    fig.add_trace(_trace(x, y, name, hover, mode="markers", marker=mark))
                    filters.append({"task": t, "formats": [a.get("format") for a in mine]})
        budget = self._budget(d)
        if budget is not None and budget > 0:  # shapes on a log axis are placed in log10 units
            line = {"dash": "dash", "color": _RED, "width": 1.5}
            fig.add_vline(
                x=math.log10(budget), line=line, annotation_text=f"budget {budget:g} ms", annotation_position="top left"
            )
        return self._plot(fig, filters, kind="pareto", device=d, task="")

    def trend(self, t: str) -> str:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        metric = self._metric_name(t)
        # the estimate and the measurement share an axis: the gap between them is the predictor's error
        latency = "latency (ms): device estimate ─, host measured ┄"
        titles = (f"{metric} of what shipped (95% interval)", latency, "size (MB)")
        fig = go.Figure(layout=_fig(560, legend={"orientation": "h", "y": 1.08, "x": 0}))
        fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07, subplot_titles=titles, figure=fig)
        filters: list[dict[str, Any] | None] = []
        bad: list[tuple[Any, ...]] = []
        for k, d in enumerate(d for d in self.devices if (t, d) in self.series):
            runs, c, who = self.series[(t, d)][-self.trend_runs :], _PALETTE[k % len(_PALETTE)], self._device_name(d)
            ship = [_shipped(r, self.arts[str(r.get("run_id"))]) or {} for r in runs]
            xs = [_when(r.get("created_utc")) for r in runs]
            texts = [self._run_hover(who, r, a) for r, a in zip(runs, ship)]
            q = _col(ship, "metric")
            ci = [a["metric_ci95"] if isinstance(a.get("metric_ci95"), (list, tuple)) else (None, None) for a in ship]
            up = [None if v is None or (h := _num(b[1])) is None else max(0.0, h - v) for v, b in zip(q, ci)]
            down = [None if v is None or (lo := _num(b[0])) is None else max(0.0, v - lo) for v, b in zip(q, ci)]
            mb = [None if v is None else _num(v / 1e6) for v in _col(ship, "size_bytes")]
            dev, host = _col(ship, "device_latency_ms"), _col(ship, "host_latency_ms")
            ys = ((q, who, 1), (dev, f"{who} estimate", 2), (host, f"{who} measured", 2), (mb, f"{who} size", 3))
            for i, (y, name, row) in enumerate(ys):
                line = {"color": c, "dash": "dot" if i == 2 else "solid"}
                tr = _trace(xs, y, name, mode="lines+markers", line=line, legendgroup=d, showlegend=i == 0)
                if i == 0:
                    err = {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "color": c}
                    tr |= {"text": texts, "hovertemplate": "%{y:.4g}<br>%{text}<extra></extra>", "error_y": err}
                fig.add_trace(tr, row=row, col=1)
                filters.append({"device": d})
            bad += [(xs[i], q[i], texts[i], d) for i, r in enumerate(runs) if r.get("regressed")]
        if bad:
            x, y, text, devices = (list(v) for v in zip(*bad))
            red = {"color": _RED, "size": 16, "symbol": "x-thin-open", "line": {"width": 3, "color": _RED}}
            fig.add_trace(_trace(x, y, "regressed", text, mode="markers", marker=red, showlegend=False), row=1, col=1)
            filters.append({"devices": devices})
        return self._plot(fig, filters, kind="trend", task=t, device="")

    def honesty(self) -> str | None:
        import plotly.graph_objects as go

        host = [(r, a) for r in self.runs if r.get("device") == "host" for a in self.arts[str(r.get("run_id"))]]
        pts = [p for p in host if _placed(p[1], "device_latency_ms", "host_latency_ms", log_y=True)]
        pts = pts[-self.honesty_points :]
        if not pts:
            return None
        vals = [float(a[k]) for _, a in pts for k in ("device_latency_ms", "host_latency_ms")]
        lo, hi = min(vals) / 1.5, max(vals) * 1.5
        log = {"type": "log", "title": {"text": "measured on this host (ms)"}}
        fig = go.Figure(layout=_fig(480, xaxis=log, yaxis=log | {"title": {"text": "estimate for this host (ms)"}}))
        band: dict[str, Any] = {"mode": "lines", "line": {"width": 0}, "hoverinfo": "skip"}
        fig.add_trace(_trace([lo, hi], [0.8 * lo, 0.8 * hi], "-20%", showlegend=False, **band))
        fig.add_trace(_trace([lo, hi], [1.2 * lo, 1.2 * hi], "±20%", fill="tonexty", fillcolor=_BAND, **band))
        fig.add_trace(_trace([lo, hi], [lo, hi], "y = x", mode="lines", line={"color": "#555", "dash": "dash"}))
        filters: list[dict[str, Any] | None] = [None, None, None]
        for i, f in enumerate(sorted({str(a.get("format")) for _, a in pts})):
            runs, arts = zip(*[p for p in pts if str(p[1].get("format")) == f])
            marker = {"color": _PALETTE[i % len(_PALETTE)], "size": 9, "symbol": _SYMBOLS.get(f, "circle")}
            x, y, hover = (
                _col(list(arts), "host_latency_ms"),
                _col(list(arts), "device_latency_ms"),
                list(map(self._artifact_hover, runs, arts)),
            )
            fig.add_trace(_trace(x, y, f, hover, mode="markers", marker=marker))
            filters.append({"format": f, "tasks": [r.get("task") for r in runs]})
        return self._plot(fig, filters, kind="honesty", device="host", task="")

    # ---------------------------------------------------------------------------------- HTML
    def _link(self, p: Any, text: str) -> str:
        if not p:
            return _esc(text)
        try:  # relative to the page, so the page and its builds can move together
            href = quote(os.path.relpath(str(p), self.dest.resolve().parent).replace(os.sep, "/"))
        except ValueError:  # another drive (Windows)
            href = Path(str(p)).as_uri()
        return f'<a href="{_esc(href)}">{_esc(text)}</a>'

    def table(self) -> str:
        out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in (*_COLUMNS, "shipped", "")) + "</tr>"]
        for (t, d), rs in sorted(self.series.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            r, at = rs[-1], f'data-filter data-task="{_esc(t)}" data-device="{_esc(d)}"'
            head = (
                self._device_name(d),
                t,
                f"run {r.get('run_id')}",
                r.get("created_utc"),
                _commit(r),
                r.get("status"),
            )
            out.append(f'<tr class="run" {at}><th colspan="11">{_esc(" · ".join(map(str, head)))}</th></tr>')
            for a in self.arts[str(r.get("run_id"))]:
                ms = [_fmt(a.get(k), ".3g", " ms") for k in ("device_latency_ms", "host_latency_ms")]
                cells = [_esc(v) for v in (t, a.get("file"), a.get("format"), a.get("scheme"), _quality(a))]
                cells[1] = self._link(a.get("path"), str(a.get("file") or "—"))
                cells += [_esc(v) for v in (_size(a.get("size_bytes")), *ms, _FITS.get(a.get("fits_budgets"), "—"))]
                cells += ["<span class='star'>★</span>" if a.get("shipped") is True else ""]
                cells += [self._link(a.get("report_md"), "report.md")]
                row = "".join(f"<td>{c}</td>" for c in cells)
                out.append(f'<tr {at} data-format="{_esc(a.get("format"))}">{row}</tr>')
            if not self.arts[str(r.get("run_id"))]:
                out.append(f'<tr {at}><td colspan="11">no artifact ({_esc(r.get("status_reason"))})</td></tr>')
            out += [
                f'<tr class="reg" {at}><td colspan="11">⚠ regression: {_esc(g)}</td></tr>'
                for g in r.get("regressions") or []
            ]
        return "".join(out) + "</table>"

    def regressions(self) -> str:
        bad = [r for r in self.runs if r.get("regressed")]
        if not bad:
            return (
                '<section id="regressions"><h2>Regressions</h2><p>No regression between consecutive runs.</p></section>'
            )
        items = [
            f'<li data-run="{_esc(r.get("run_id"))}"><b>{_esc(r.get("run_id"))}</b> · {_esc(r.get("task"))} on '
            f"{_esc(self._device_name(str(r.get('device'))))} · {_esc(r.get('created_utc'))} · {_esc(_commit(r))} "
            f"(against {_esc(r.get('baseline_run') or '—')})<ul>"
            + "".join(f"<li>{_esc(g)}</li>" for g in r.get("regressions") or [])
            + "</ul></li>"
            for r in reversed(bad[-_LISTED:])
        ]
        if len(bad) > _LISTED:  # the newest first; the trends mark the older ones
            items.append(f"<li>and {len(bad) - _LISTED} earlier regressed runs</li>")
        return (
            f'<section id="regressions" class="bad"><h2>⚠ Regressions ({len(bad)} run{"s" if len(bad) > 1 else ""})'
            f"</h2><ul>{''.join(items)}</ul></section>"
        )

    def _select(self, what: str, names: list[str], label: Any = str) -> str:
        opts = "".join(f'<option value="{_esc(n)}">{_esc(label(n))}</option>' for n in names)
        return f'<label>{what} <select id="filter-{what}"><option value="all">all</option>{opts}</select></label>'

    def html(self) -> str:
        d, n_bad = self.data, sum(1 for r in self.runs if r.get("regressed"))
        head = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
            f'content="{_CSP}"><title>{_esc(self.title)}</title><style>{_CSS}</style></head><body>'
            f"<header><h1>{_esc(self.title)}</h1><p class='meta'>history <code>{_esc(d.get('history'))}</code> · "
            f"generated {_esc(d.get('generated_utc'))} · adaptc {_esc(d.get('adaptc_version'))} · "
            f"<b id='run-count'>{len(self.runs)}</b> runs of {len(self.tasks)} tasks on {len(self.devices)} devices"
            f" · {n_bad} regressed</p></header>"
        )
        if not self.runs:
            empty = "No runs recorded in this history yet: every <code>adaptc build</code> adds one."
            return f"{head}<p class='empty' id='no-runs'>{empty}</p></body></html>"
        formats = sorted({str(a.get("format")) for arts in self.arts.values() for a in arts if a.get("format")})
        body = [head, self.regressions(), '<nav class="filters">', self._select("task", self.tasks)]
        body += [self._select("device", self.devices, self._device_name), self._select("format", formats), "</nav>"]
        body.append(f"<h2>Pareto front of the latest run, per device</h2><p class='meta'>{_PARETO_NOTE}</p>")
        for dev in self.devices:
            name = _esc(self._device_name(dev))
            body.append(
                f'<div class="card" data-filter data-device="{_esc(dev)}"><h3>{name}</h3>{self.pareto(dev)}</div>'
            )
        body.append(f"<h2>Trends across runs, per task and device</h2><p class='meta'>{_TREND_NOTE}</p>")
        for t in self.tasks:
            n = max(len(rs) for (tt, _), rs in self.series.items() if tt == t)
            shown = f" (the last {self.trend_runs} runs of each device)" if n > self.trend_runs else ""
            h3 = f"<h3>{_esc(t)}{shown}</h3>"
            body.append(f'<div class="card" data-filter data-task="{_esc(t)}">{h3}{self.trend(t)}</div>')
        hon = f"<p class='meta'>{_HONESTY_NOTE}</p>{self.honesty() or f'<p>{_NO_HONESTY}</p>'}"
        body.append(f'<div data-filter data-device="host"><h2>Predictor honesty on this host</h2>{hon}</div>')
        body.append(f"<h2>Latest run's artifacts, per device</h2>{self.table()}")
        from plotly.offline import get_plotlyjs

        # a "</" inside the figures' JSON would end the script element early
        figs = f"const CONFIG={json.dumps(_CONFIG)};const FIGS=[{','.join(self.figs)}];".replace("</", "<\\/").replace(
            "<!--", "<\\!--"
        )
        return "".join(body) + f"<script>{get_plotlyjs()}</script><script>{figs}\n{_JS}</script></body></html>"
