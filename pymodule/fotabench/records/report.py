"""The report: one self-contained HTML file (inline CSS and SVG, no script, nothing
fetched) from a run directory or from the database.

Geometry is computed here (Python), markup lives in ``templates/report.html.j2``.
"""
from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .. import __version__
from .record import Record

__all__ = ["render_report", "write_report", "log_excerpt"]

WIDTH = 960          # SVG user units; the page scales it to the column
LEFT = 92            # lane labels
RIGHT = 16
PLOT = WIDTH - LEFT - RIGHT
LANES = (("states", 26), ("download", 64), ("wdi", 56), ("server", 22))
GAP = 8
TOP = 18             # power-event labels

STATE_CLASS = {
    "UP_START": "s-conn", "UP_CONNECTING": "s-conn", "UP_CONNECTED": "s-conn",
    "UP_GETTING_FILE": "s-get", "UP_GET_FILE_OK": "s-ok", "UP_SYSTEM_REBOOT": "s-ok",
    "UP_UPGRADFAILED": "s-bad", "UP_URLDECODEFAIL": "s-bad", "UP_FOTAINITFAIL": "s-bad",
    "FOTA_STATE_END": "s-conn",
}
STATE_SHORT = {
    "UP_START": "start", "UP_CONNECTING": "connecting", "UP_CONNECTED": "connected",
    "UP_GETTING_FILE": "getting file", "UP_GET_FILE_OK": "file ok",
    "UP_SYSTEM_REBOOT": "reboot", "UP_UPGRADFAILED": "FAILED", "UP_URLDECODEFAIL": "URL bad",
    "UP_FOTAINITFAIL": "init fail", "FOTA_STATE_END": "end",
}
_LOG_MARK = re.compile(r"error|fail|timeout|eio|refused|closed|lost|abort|panic|no carrier",
                       re.IGNORECASE)


def log_excerpt(text: Optional[str], *, before: int = 3, after: int = 4,
                limit: int = 14) -> tuple[list[str], Optional[int]]:
    """The lines that show what went wrong: around the first line that says error/fail/...
    (its index in the returned list is the second value), else the log's last lines."""
    if not text:
        return [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _LOG_MARK.search(line):
            lo = max(0, i - before)
            return lines[lo:min(len(lines), i + after + 1)][:limit], i - lo
    return lines[-8:], None


def _ticks(span_s: float) -> list[float]:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span_s / step <= 12:
            break
    n = int(span_s // step) + 1
    return [i * step for i in range(n)]


def _f(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


@dataclass
class Timeline:
    """A record's SVG geometry (user units)."""

    height: int
    lanes: list[dict[str, Any]]
    ticks: list[dict[str, Any]]
    state_rects: list[dict[str, Any]]
    progress: str
    progress_end: Optional[dict[str, Any]]
    served: list[dict[str, Any]]
    wdi_path: str
    wdi_max_y: float
    wdi_timeout_y: float
    wdi_two_thirds_y: float
    wdi_longest: Optional[dict[str, Any]]
    wdi_label: str
    wdi_timeout_label: str
    transfers: list[dict[str, Any]]
    power: list[dict[str, Any]]
    span_s: float
    empty: list[dict[str, Any]]


def timeline(r: Record) -> Timeline:
    t0 = r.start_ns
    t1 = max(r.end_ns, t0 + 1)
    span = t1 - t0

    def x(t: int) -> float:
        return LEFT + PLOT * min(max(t - t0, 0), span) / span

    lanes, y = [], TOP
    lane_y: dict[str, tuple[int, int]] = {}
    labels = {"states": "state", "download": "download %", "wdi": "WDI gap",
              "server": "server"}
    for name, h in LANES:
        lane_y[name] = (y, h)
        lanes.append({"name": name, "label": labels[name], "y": y, "h": h,
                      "mid": y + h / 2 + 4})
        y += h + GAP
    height = y + 14

    ticks = [{"x": _f(x(t0 + int(s * 1e9))), "label": f"{s:g} s"} for s in _ticks(span / 1e9)]

    # States: one band segment per state, until the next state (or the record's end).
    rects = []
    sy, sh = lane_y["states"]
    merged: list[tuple[str, int]] = []
    for s in r.states:
        if not merged or merged[-1][0] != s.state:
            merged.append((s.state, s.t_ns))
    for i, (name, t) in enumerate(merged):
        t_end = merged[i + 1][1] if i + 1 < len(merged) else t1
        x0, x1 = x(t), x(t_end)
        w = max(x1 - x0, 1.5)
        label = STATE_SHORT.get(name, name)
        rects.append({"x": _f(x0), "y": sy, "w": _f(w), "h": sh,
                      "cls": STATE_CLASS.get(name, "s-conn"), "title": name,
                      "label": label if w > 7 * len(label) + 6 else "",
                      "tx": _f(x0 + 4), "ty": sy + sh / 2 + 4})

    # Download: percent over time from UP_GETTING_FILE / GET_FILE_OK, a step curve.
    dy, dh = lane_y["download"]

    def py(p: float) -> float:
        return dy + dh - dh * p / 100

    pts: list[tuple[float, float]] = []
    for s in r.states:
        if s.state in ("UP_GETTING_FILE", "UP_GET_FILE_OK", "UP_SYSTEM_REBOOT"):
            if pts:
                pts.append((x(s.t_ns), pts[-1][1]))
            pts.append((x(s.t_ns), py(s.percent)))
    progress = " ".join(f"{_f(a)},{_f(b)}" for a, b in pts)
    last_pct = next((s.percent for s in reversed(r.states)
                     if s.state in ("UP_GETTING_FILE", "UP_GET_FILE_OK", "UP_SYSTEM_REBOOT")),
                    None)
    progress_end = ({"x": _f(pts[-1][0] + 4), "y": _f(max(py(last_pct) + 4, dy + 10)),
                     "label": f"{last_pct} %"} if pts and last_pct is not None else None)
    # The server's view of the same transfer: bytes over its start..end (straight line).
    served = []
    for tr in r.transfers:
        if tr.size and tr.end_ns > tr.start_ns:
            pct = 100 * tr.bytes_sent / tr.size
            served.append({"x0": _f(x(tr.start_ns)), "y0": _f(py(0)), "x1": _f(x(tr.end_ns)),
                           "y1": _f(py(min(100, pct)))})

    # WDI: gap before each edge, scaled so the chip's timeout sits at 80 % of the lane.
    wy, wh = lane_y["wdi"]
    wdi_path, longest, wdi_label, timeout_label = "", None, "no watchdog figures", ""
    timeout_y = two_thirds_y = float(wy)
    if r.watchdog is not None:
        wd = r.watchdog
        top = max(wd.timeout_ns * 1.25, wd.longest_gap_ns * 1.05, 1)

        def gy(g: float) -> float:
            return wy + wh - wh * min(g, top) / top

        timeout_y, two_thirds_y = gy(wd.timeout_ns), gy(wd.timeout_ns * 2 / 3)
        e = wd.edge_t_ns
        segs = [f"M{_f(x(b))},{_f(gy(0))}V{_f(gy(b - a))}" for a, b in zip(e, e[1:])]
        wdi_path = "".join(segs)
        if wd.longest_gap_at_ns is not None and wd.longest_gap_ns:
            cls = "bad" if wd.over_timeout else "warn" if wd.over_two_thirds else "okc"
            lx = x(wd.longest_gap_at_ns)
            longest = {"x": _f(lx), "y": _f(gy(wd.longest_gap_ns)), "cls": cls,
                       "tx": _f(min(lx + 4, WIDTH - RIGHT - 150)),
                       "ty": _f(max(gy(wd.longest_gap_ns) - 3, wy + 9)),
                       "label": f"longest {wd.longest_gap_ns / 1e6:.0f} ms"}
        timeout_label = f"chip timeout {wd.timeout_ns / 1e9:g} s"
        wdi_label = (f"{wd.edges} edges, longest gap {wd.longest_gap_ns / 1e6:.0f} ms of "
                     f"{wd.timeout_ns / 1e6:.0f} ms timeout")
    transfers = []
    ty_, th = lane_y["server"]
    for tr in r.transfers:
        x0, x1 = x(tr.start_ns), x(tr.end_ns or tr.start_ns)
        label = f"{tr.method} {tr.bytes_sent:,} / {tr.size:,} B {tr.outcome}"
        if tr.faults:
            label += " (" + ", ".join(tr.faults) + ")"
        transfers.append({"x": _f(x0), "y": ty_, "w": _f(max(x1 - x0, 2)), "h": th,
                          "cls": "t-ok" if tr.outcome == "complete" else "t-bad",
                          "label": label, "tx": _f(min(x0 + 4, WIDTH - RIGHT - 260)),
                          "ty": ty_ + th / 2 + 4, "title": f"{tr.protocol} {tr.path}: "
                                                          f"{label} {tr.detail}".strip()})
    power = []
    last_label_end = -1e9
    for p in sorted(r.power, key=lambda p: p.t_ns):
        px = x(p.t_ns)
        label = p.event.replace("_", " ")
        w = 6 * len(label)
        # Anchor labels inside the plot; drop one that would overlap the previous one.
        anchor, lx0 = ("start", px) if px - w / 2 < LEFT else \
            ("end", px - w) if px + w / 2 > WIDTH - RIGHT else ("middle", px - w / 2)
        if lx0 < last_label_end + 4:
            label = ""
        else:
            last_label_end = lx0 + w
        power.append({"x": _f(px), "label": label, "anchor": anchor,
                      "title": f"{p.event} {p.detail}".strip()})
    empty = []
    if not r.states:
        empty.append({"x": LEFT + 8, "y": lane_y["states"][0] + 17,
                      "text": "no +FBSTATE: the upgrade never started"})
    if not r.transfers:
        empty.append({"x": LEFT + 8, "y": lane_y["server"][0] + 15,
                      "text": "no request reached the package server"})
    return Timeline(height, lanes, ticks, rects, progress, progress_end, served, wdi_path,
                    float(wy + wh), timeout_y, two_thirds_y, longest, wdi_label, timeout_label,
                    transfers,
                    power, span / 1e9, empty)


def _excerpt_html(lines: Sequence[str], mark: Optional[int]) -> Any:
    from markupsafe import Markup, escape
    out = [f"<b>{escape(line)}</b>" if i == mark else str(escape(line))
           for i, line in enumerate(lines)]
    return Markup("\n".join(out))


def _module_key(r: Record) -> str:
    return r.module.imei or f"slot {r.slot}"


def summarize(records: Sequence[Record]) -> dict[str, Any]:
    counts = Counter(r.outcome for r in records)
    by_module: dict[str, list[Record]] = {}
    for r in sorted(records, key=lambda r: (r.start_ns, r.attempt)):
        by_module.setdefault(_module_key(r), []).append(r)
    modules = len(by_module)
    final_pass = sum(rs[-1].outcome == "pass" for rs in by_module.values())
    first_pass = sum(rs[0].outcome == "pass" and rs[0].attempt == 1
                     for rs in by_module.values())
    durations = sorted(r.duration_s for r in records if r.outcome == "pass")
    reasons = Counter(f"{r.outcome}: {r.check if r.outcome == 'fail' else r.cause}"
                      for r in records if r.outcome != "pass")
    return {
        "records": len(records), "modules": modules,
        "pass": counts.get("pass", 0), "fail": counts.get("fail", 0),
        "error": counts.get("error", 0),
        "yield_pct": 100.0 * final_pass / modules if modules else 0.0,
        "final_pass": final_pass, "first_pass": first_pass,
        "first_pass_pct": 100.0 * first_pass / modules if modules else 0.0,
        "median_s": durations[len(durations) // 2] if durations else None,
        "reasons": reasons.most_common(),
    }


def _env() -> Any:
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fotabench.records", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return env


def render_report(records: Sequence[Record], meta: Mapping[str, Any], *,
                  run_dir: Optional[Path] = None, source: str = "") -> str:
    """The report as one HTML string. ``run_dir`` lets it read the per-slot logs."""
    def key(r: Record) -> tuple[int, str, int]:
        return ({"fail": 0, "error": 1, "pass": 2}[r.outcome], r.slot, r.attempt)

    ordered = sorted(records, key=key)
    failures = []
    for r in ordered:
        if r.outcome == "pass":
            continue
        excerpt: list[str] = []
        mark = None
        log_name = None
        why = "the record names no log"
        if r.logs and run_dir is None:
            why = "logs are in the run directory (give --logs RUN_DIR)"
        # The module's own words first: a UART log shows the fault as a person reads
        # it; the timeline (JSON lines) and the board's stderr only after it.
        for name, rel in sorted(r.logs.items(),
                                key=lambda kv: (not kv[0].startswith("uart"),
                                                kv[1].endswith(".jsonl"), kv[0])):
            if run_dir is None:
                break
            try:
                text = (run_dir / rel).read_text(encoding="utf-8", errors="replace")
            except OSError:
                why = f"log {rel} not found in {run_dir}"
                continue
            excerpt, mark = log_excerpt(text)
            log_name = rel
            if mark is not None:
                break
        failures.append({"r": r, "excerpt": excerpt, "log": log_name, "why": why,
                         "excerpt_html": _excerpt_html(excerpt, mark)})
    modules = [{"r": r, "tl": timeline(r)} for r in ordered]
    summary = summarize(records)
    meta = {**{k: None for k in ("run_id", "station", "started_utc", "ended_utc", "operator",
                                 "host", "status", "problems")}, **meta}
    return str(_env().get_template("report.html.j2").render(
        meta=meta, summary=summary, failures=failures, modules=modules, source=source,
        width=WIDTH, left=LEFT, right=RIGHT, version=__version__, esc=html.escape))


def write_report(records: Sequence[Record], meta: Mapping[str, Any], out: Path, *,
                 run_dir: Optional[Path] = None, source: str = "") -> Path:
    from .run import write_atomic
    text = render_report(records, meta, run_dir=run_dir, source=source)
    write_atomic(Path(out), text.encode("utf-8"))
    return Path(out)
