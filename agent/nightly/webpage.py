"""The fleet's web report: one self-contained HTML page (inline CSS, inline SVG charts, no script, no
external asset), so it can be mailed, archived or opened from a file share and always renders the same.

It is rendered from `FleetStatus.to_dict()`, the very dict `agent status --json` prints: every number
shown carries its raw value in a `data-value` attribute, so a test (or a scraper) can read the page
and get exactly the JSON's numbers.
"""

from __future__ import annotations

from html import escape

from agent.config.stamps import human

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}
.muted{color:#666}table{border-collapse:collapse;margin:.4em 0}
th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flagged td{background:#fdecea}.flag{color:#b3261e;font-weight:600}.ok{color:#1e7b34;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:1.2em}.chart{border:1px solid #ddd;padding:.5em}
.chart h3{font-size:.95em;margin:0 0 .3em}svg text{font-size:10px;fill:#555}
"""


def render_page(status: dict, *, refresh_s: int | None = None) -> str:
    """The page for a `status --json` dict; `refresh_s` adds a reload (for `agent serve`)."""
    sources = status["sources"]
    flagged = status["flagged"]
    head = (f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else "")
    verdict = ('<span class="ok">all sources OK</span>' if not flagged else
               f'<span class="flag" id="flagged" data-value="{flagged}">{flagged} source(s) need attention</span>')
    if status.get("check"):
        verdict += ' <span class="flag">agent check found damage (below)</span>'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        head,
        f"<title>agent status: {escape(status['repository'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Backups of {escape(status['repository'])}</h1>",
        f'<p class="muted">generated <time id="generated" datetime="{escape(status["generated"])}">'
        f'{escape(_when(status["generated"]))}</time>: {_num("hosts", status["hosts"])} host(s), '
        f'{_num("snapshots", status["snapshots"])} snapshot(s), '
        f'{_num("repository_bytes", status["repository_bytes"], _size)} stored. {verdict}</p>',
        "<h2>Fleet</h2>", _fleet_table(sources),
        "<h2>Last errors</h2>", _errors(sources),
        "<h2>Storage use</h2>", _storage(status["storage"]),
        "<h2>New data and duration per night</h2>", _charts(sources),
        "<h2>Locks</h2>", _locks(status["locks"]),
    ]
    check = status.get("check")
    if check:
        lost = ", ".join(sid[:8] for sid in check["snapshots"]) or "none"
        parts += ["<h2>Damage found by agent check</h2>",
                  f'<p class="flag">{_num("check_packs", check["packs"])} damaged pack(s) recorded at '
                  f'{escape(_when(check["time"]) if check["time"] else "an unknown time")}; snapshots with lost '
                  f"ranges: {escape(lost)}. See <code>agent check</code> and <code>agent repair</code>.</p>"]
    if status.get("damaged"):
        parts += ["<h2>Unreadable metadata</h2><ul>",
                  *(f"<li>{escape(d)}</li>" for d in status["damaged"]), "</ul>"]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


# ---- sections ---------------------------------------------------------------------------------------

def _fleet_table(sources: list[dict]) -> str:
    rows = []
    for i, s in enumerate(sources):
        last = s["last_success"] or {}
        problem = s["last_problem"]
        flags = ", ".join(s["flags"])
        rows.append(
            f'<tr id="src-{i}" class="source{" flagged" if s["flags"] else ""}" data-host="{escape(s["host"])}" '
            f'data-source="{escape(s["source"])}">'
            f'<td>{escape(s["host"])}</td><td>{escape(s["source"])}</td>'
            f'<td class="num">{_num("snapshots", s["snapshots"])}</td>'
            f'<td>{escape(_when(last.get("time")))}</td>'
            f'<td class="num">{_num("age_s", s["age_s"], _age)}</td>'
            f'<td class="num">{_num("last_size", last.get("size"), _size)}</td>'
            f'<td class="num">{_num("last_new_bytes", last.get("new_bytes"), _size)}</td>'
            f'<td class="num">{_num("new_bytes_trend", s["new_bytes_trend"], _trend)}</td>'
            f'<td>{escape(problem["status"] + ": " + problem["reason"]) if problem else ""}</td>'
            f'<td>{escape(_when(s["verified"])) if s["verified"] else ""}</td>'
            f'<td class="flag" data-field="flags" data-value="{escape(",".join(s["flags"]))}">{escape(flags)}</td>'
            "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("host", "source", "snapshots", "last success", "age", "size",
                                               "new data", "trend", "last failed run", "verified", "flags"))
    return f'<table id="fleet"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _errors(sources: list[dict]) -> str:
    items = [(s["last_problem"]["started"], s) for s in sources if s["last_problem"]]
    if not items:
        return '<p class="muted">no failed or incomplete runs on record</p>'
    rows = "".join(
        f'<li><b>{escape(s["host"])}</b> {escape(s["source"])}: {escape(s["last_problem"]["status"])} at '
        f'{escape(_when(when))}: {escape(s["last_problem"]["reason"])}'
        f'{" (latest run)" if s["problem_is_latest"] else " (a later run succeeded)"}</li>'
        for when, s in sorted(items, key=lambda x: x[0], reverse=True))
    return f'<ul id="errors">{rows}</ul>'


def _storage(points: list[dict]) -> str:
    if not points:
        return '<p class="muted">no snapshots yet</p>'
    values = [(p["time"], p["stored_bytes"]) for p in points]
    return f'<div class="chart" id="storage">{_line_svg(values, _size)}</div>'


def _charts(sources: list[dict]) -> str:
    out = []
    for i, s in enumerate(sources):
        if not s["nights"]:
            continue
        title = f'{escape(s["host"])} {escape(s["source"])}'
        news = [(n["time"], n["new_bytes"]) for n in s["nights"]]
        durations = [(n["time"], n["duration_s"]) for n in s["nights"]]
        out.append(f'<div class="chart" id="chart-{i}"><h3>{title}: new data</h3>{_bar_svg(news, _size)}'
                   f'<h3>{title}: duration</h3>{_bar_svg(durations, _age)}</div>')
    return f'<div class="charts">{"".join(out)}</div>' if out else '<p class="muted">no snapshots yet</p>'


def _locks(locks: list[dict]) -> str:
    if not locks:
        return '<p class="muted" id="locks">no locks held</p>'
    rows = "".join(f'<tr><td>{escape(lk["host"])}</td><td class="num">{lk["pid"]}</td><td>{escape(lk["command"])}'
                   f'</td><td>{"exclusive" if lk["exclusive"] else "shared"}</td><td>{escape(_when(lk["time"]))}'
                   f'</td><td>{"stale" if lk["stale"] else ""}</td></tr>' for lk in locks)
    return (f'<table id="locks"><thead><tr><th>host</th><th>pid</th><th>command</th><th>kind</th><th>since</th>'
            f'<th></th></tr></thead><tbody>{rows}</tbody></table>')


# ---- charts (inline SVG) ----------------------------------------------------------------------------

_W, _H, _PAD = 360, 110, 18


def _bar_svg(values: list[tuple[str, float]], fmt) -> str:
    top = max((v for _, v in values), default=0) or 1
    step = (_W - 2 * _PAD) / max(len(values), 1)
    bars = []
    for i, (when, v) in enumerate(values):
        h = (_H - 2 * _PAD) * v / top
        bars.append(f'<rect x="{_PAD + i * step + 1:.1f}" y="{_H - _PAD - h:.1f}" width="{max(step - 2, 1):.1f}" '
                    f'height="{h:.1f}" fill="#4a78c2" data-value="{v}"><title>{escape(_when(when))}: {fmt(v)}'
                    "</title></rect>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">'
            f'<text x="{_PAD}" y="11">max {escape(fmt(top))}</text>{"".join(bars)}'
            f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#999"/></svg>')


def _line_svg(values: list[tuple[str, float]], fmt) -> str:
    top = max((v for _, v in values), default=0) or 1
    n = len(values)
    xs = [_PAD + (i * (_W - 2 * _PAD) / (n - 1) if n > 1 else (_W - 2 * _PAD) / 2) for i in range(n)]
    pts = " ".join(f"{x:.1f},{_H - _PAD - (_H - 2 * _PAD) * v / top:.1f}" for x, (_, v) in zip(xs, values))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">'
            f'<text x="{_PAD}" y="11">{escape(fmt(top))} after {escape(_when(values[-1][0]))}</text>'
            f'<polyline fill="none" stroke="#4a78c2" stroke-width="2" points="{pts}"/>'
            f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#999"/></svg>')


# ---- formatting -------------------------------------------------------------------------------------

def _num(name: str, value, fmt=str) -> str:
    """A number shown formatted, with its exact value for machines."""
    if value is None:
        return f'<span data-field="{name}" data-value="">-</span>'
    return f'<span data-field="{name}" data-value="{value}">{escape(fmt(value))}</span>'


def _size(n) -> str:
    from agent.config.units import size

    return size(int(n))


def _age(seconds) -> str:
    s = float(seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _trend(ratio) -> str:
    return f"{float(ratio):.2f}x"


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    return human(iso)
