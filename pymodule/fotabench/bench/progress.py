"""The terminal's view of a bench run: the first subscriber of the EventBus.

On a terminal, a live table with one row per slot (rich's ``Live``, redrawn on its own
thread a few times a second); elsewhere (CI logs, a pipe, a file), plain lines, one per
change worth reading: no escape codes, no carriage returns, a download's percent only
every 10 %. Either way the publisher's thread only updates a row under a lock (and, for
plain lines, queues the text for a writer thread): a slow terminal or a full pipe never
slows an upgrade.

    >>> bus = EventBus()
    >>> with Progress(bus, slots=station.slots):      # doctest: +SKIP
    ...     bench.run()
    >>> print_summary(progress.summary_rows())        # doctest: +SKIP

What the display reads from events (see fotabench.bench.events): ``phase``, ``state`` +
``percent``, ``served`` (``bytes_served``: the slot's total so far), ``watchdog``
(``gap_ms``: the longest WDI gap so far), ``attempt``, ``outcome`` (+ ``detail``: the
failed check or the cause), ``power`` and ``log`` (``detail``). From ``extra`` on any
event: ``model``, ``imei`` and ``version`` (the first version a slot reports is where
it started, a later different one where it ended).
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, replace
from typing import IO, Any, Iterable, Optional, Sequence, Union

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .events import BenchEvent, EventBus

__all__ = ["Progress", "SlotProgress", "SummaryRow", "summary_table", "summary_lines",
           "print_summary", "WDT_TIMEOUT_MS"]

#: The external watchdog chip's timeout (spec opencpu-fota.md section 7: >= 1.6 s,
#: fed at <= 2/3 of it): gaps are shown against it, warned at 2/3.
WDT_TIMEOUT_MS = 1600.0

_OUTCOME_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold yellow"}


@dataclass
class SlotProgress:
    """What is known of one slot so far (a copy is handed out, never the live row)."""
    slot: str
    model: str = ""
    imei: str = ""
    phase: str = ""
    state: str = ""
    percent: Optional[int] = None
    bytes_served: int = 0
    gap_ms: Optional[float] = None       # longest WDI gap of the run so far
    attempt: int = 0
    outcome: Optional[str] = None        # "pass" | "fail" | "error"
    reason: str = ""
    version_from: str = ""
    version_to: str = ""
    t_first_ns: Optional[int] = None
    t_end_ns: Optional[int] = None

    @property
    def duration_s(self) -> Optional[float]:
        if self.t_first_ns is None or self.t_end_ns is None:
            return None
        return (self.t_end_ns - self.t_first_ns) / 1e9


@dataclass(frozen=True)
class SummaryRow:
    """One line of the end-of-run summary."""
    slot: str
    outcome: Optional[str]               # None: the slot never finished
    cause: str = ""
    version_from: str = ""
    version_to: str = ""
    duration_s: Optional[float] = None
    gap_ms: Optional[float] = None


def _gap_style(gap_ms: float, timeout_ms: float) -> str:
    if gap_ms >= timeout_ms:
        return "bold red"
    return "yellow" if gap_ms >= timeout_ms * 2 / 3 else "green"


def _bytes(n: int) -> str:
    if n < 10_000:
        return f"{n} B"
    if n < 10_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1e6:.1f} MB"


def _versions(frm: str, to: str) -> str:
    if frm and to:
        return f"{frm} -> {to}"
    return frm or to


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


class Progress:
    """Live per-slot progress of a run, subscribed to an EventBus (or called with events).

    ``live``: None decides by the console (a terminal gets the table, anything else
    plain lines); True/False forces it. ``file``: where plain lines go (default: the
    console's file). ``slots``: names or SlotSpecs shown from the start, in order (a
    slot first seen in an event is added at the end). ``t0_ns``: the zero of the
    plain lines' clock (default: the first event's time).
    """

    def __init__(self, bus: Optional[EventBus] = None, *, console: Optional[Console] = None,
                 file: Optional[IO[str]] = None, live: Optional[bool] = None,
                 slots: Iterable[Any] = (), title: str = "",
                 watchdog_timeout_ms: float = WDT_TIMEOUT_MS, percent_step: int = 10,
                 refresh_per_second: float = 4, t0_ns: Optional[int] = None) -> None:
        self.console = console if console is not None else Console()
        self.live = self.console.is_terminal if live is None else live
        self.file = file if file is not None else self.console.file
        self.title = title
        self.watchdog_timeout_ms = watchdog_timeout_ms
        self.percent_step = max(1, percent_step)
        self._refresh = refresh_per_second
        self._t0 = t0_ns
        self._bus = bus
        self._unsubscribe: Any = None
        self._lock = threading.Lock()
        self._rows: dict[str, SlotProgress] = {}
        # Plain mode: what was last printed per slot, so a line means a change.
        self._printed: dict[str, dict[str, Any]] = {}
        self._lines: "queue.SimpleQueue[Optional[str]]" = queue.SimpleQueue()
        self._writer: Optional[threading.Thread] = None
        self._live: Optional[Live] = None
        self._stopped = False
        self._width = 0
        for s in slots:
            name = s if isinstance(s, str) else s.name
            model = "" if isinstance(s, str) else getattr(s, "model", "")
            self._rows[name] = SlotProgress(name, model=model)
            self._width = max(self._width, len(name))

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> "Progress":
        with self._lock:
            self._stopped = False
        if self._bus is not None and self._unsubscribe is None:
            self._unsubscribe = self._bus.subscribe(self)
        if self.live:
            if self._live is None:
                # stdout/stderr redirected while live: a print during the run shows
                # above the table instead of tearing it.
                self._live = Live(console=self.console, get_renderable=self.render,
                                  refresh_per_second=self._refresh, transient=False,
                                  redirect_stdout=True, redirect_stderr=True)
                self._live.start()
        else:
            self._start_writer()
        return self

    def stop(self) -> None:
        """Unsubscribe, draw the table a last time (or flush the plain lines)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._live is not None:
            self._live.stop()
            self._live = None
        with self._lock:
            self._stopped = True
            writer, self._writer = self._writer, None
        if writer is not None:
            self._lines.put(None)
            writer.join()

    def __enter__(self) -> "Progress":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None and not self._stopped:
                self._writer = threading.Thread(target=self._write_lines,
                                                name="fotabench-progress", daemon=True)
                self._writer.start()

    def _write_lines(self) -> None:
        while True:
            line = self._lines.get()
            if line is None:
                return
            try:
                self.file.write(line + "\n")
                self.file.flush()
            except (OSError, ValueError):   # a closed pipe (`| head`) ends the output,
                pass                        # never the run

    # --- events ---------------------------------------------------------------------

    def __call__(self, event: BenchEvent) -> None:
        self.handle(event)

    def handle(self, ev: BenchEvent) -> None:
        """Take one event (thread-safe; cheap: no I/O on the caller's thread)."""
        lines: list[str] = []
        with self._lock:
            row = self._rows.get(ev.slot)
            if row is None:
                row = self._rows[ev.slot] = SlotProgress(ev.slot)
                self._width = max(self._width, len(ev.slot))
            if row.t_first_ns is None:
                row.t_first_ns = ev.t_ns
            if self._t0 is None:
                self._t0 = ev.t_ns
            lines.extend(self._identity(row, ev))
            lines.extend(self._apply(row, ev))
            if not self.live and lines:
                stamp = f"{(ev.t_ns - self._t0) / 1e9:8.1f} {ev.slot:<{self._width}}"
                for text in lines:
                    self._lines.put(f"{stamp}  {text}")
        if not self.live and lines and self._writer is None:
            self._start_writer()   # used without start(): lines still come out

    def _identity(self, row: SlotProgress, ev: BenchEvent) -> list[str]:
        said = []
        model, imei, version = (ev.extra.get(k) for k in ("model", "imei", "version"))
        if model and model != row.model:
            row.model = str(model)
            said.append(f"model {row.model}")
        if imei and imei != row.imei:
            row.imei = str(imei)
            said.append(f"IMEI {row.imei}")
        if version:
            if not row.version_from:
                row.version_from = str(version)
                said.append(f"version {version}")
            elif str(version) != (row.version_to or row.version_from):
                row.version_to = str(version)
                said.append(f"version {version}")
        return [", ".join(said)] if said else []

    def _apply(self, row: SlotProgress, ev: BenchEvent) -> list[str]:
        printed = self._printed.setdefault(ev.slot, {})
        k = ev.kind
        if k == "attempt":
            row.attempt = ev.attempt or row.attempt + 1
            row.outcome, row.reason, row.state, row.percent = None, "", "", None
            row.t_end_ns = None
            wdt = printed.get("wdt", 0)     # the longest gap spans attempts: warned once
            printed.clear()
            printed["wdt"] = wdt
            return [f"attempt {row.attempt}"]
        if k == "phase" and ev.phase:
            if ev.phase == row.phase:
                return []
            row.phase = ev.phase
            return [f"phase {ev.phase}"]
        if k == "state":
            out = []
            if ev.state and ev.state != row.state:
                row.state = ev.state
                printed["bucket"] = None
                out.append(ev.state if ev.percent is None else f"{ev.state} {ev.percent}%")
            if ev.percent is not None:
                # A download's percent never goes back (spec section 2); UP_UPGRADFAILED
                # reports 0, and the bar should still show how far it got.
                row.percent = max(row.percent or 0, ev.percent)
                bucket = ev.percent // self.percent_step
                if not out and (bucket != printed.get("bucket") or ev.percent == 100):
                    if printed.get("pct") != ev.percent:
                        out.append(f"{row.state} {ev.percent}%")
                printed["bucket"], printed["pct"] = bucket, ev.percent
            return out
        if k == "served" and ev.bytes_served is not None:
            row.bytes_served = ev.bytes_served
            return []
        if k == "watchdog" and ev.gap_ms is not None:
            row.gap_ms = ev.gap_ms if row.gap_ms is None else max(row.gap_ms, ev.gap_ms)
            level = (2 if row.gap_ms >= self.watchdog_timeout_ms
                     else 1 if row.gap_ms >= self.watchdog_timeout_ms * 2 / 3 else 0)
            if level > printed.get("wdt", 0):
                printed["wdt"] = level
                limit = (f"over the chip's {self.watchdog_timeout_ms:.0f} ms" if level == 2
                         else f"over 2/3 of the chip's {self.watchdog_timeout_ms:.0f} ms")
                return [f"watchdog gap {row.gap_ms:.0f} ms ({limit})"]
            return []
        if k == "outcome":
            row.outcome = (ev.outcome or "error").lower()
            row.reason = ev.detail or ""
            row.t_end_ns = ev.t_ns
            parts = [_duration(row.duration_s)]
            if row.version_from:
                parts.append(_versions(row.version_from, row.version_to))
            if row.bytes_served:
                parts.append(f"served {row.bytes_served} B")
            if row.gap_ms is not None:
                parts.append(f"longest WDI gap {row.gap_ms:.0f} ms")
            reason = f": {row.reason}" if row.reason else ""
            return [f"{row.outcome.upper()}{reason} ({', '.join(parts)})"]
        if k in ("power", "log") and ev.detail:
            return [f"{k} {ev.detail}" if k == "power" else ev.detail]
        return []

    # --- views ----------------------------------------------------------------------

    def rows(self) -> list[SlotProgress]:
        """A copy of every slot's row, in display order."""
        with self._lock:
            return [replace(r) for r in self._rows.values()]

    def summary_rows(self) -> list[SummaryRow]:
        return [SummaryRow(r.slot, r.outcome, r.reason, r.version_from, r.version_to,
                           r.duration_s, r.gap_ms) for r in self.rows()]

    def render(self) -> Table:
        """The live table as it is now (rich calls this from its refresh thread)."""
        rows = self.rows()
        t = Table(title=self._title(rows), title_justify="left", expand=False,
                  header_style="bold")
        for name, kw in (("slot", {}), ("model", {}), ("IMEI", {}), ("phase", {}),
                         ("state", {}), ("download", {"min_width": 26}),
                         ("served", {"justify": "right"}), ("WDI gap", {"justify": "right"}),
                         ("try", {"justify": "right"}), ("outcome", {})):
            t.add_column(name, no_wrap=name != "outcome", **kw)
        for r in rows:
            if r.percent is None:
                bar: Any = Text("")
            else:
                bar = Table.grid(padding=(0, 1))
                bar.add_row(ProgressBar(total=100, completed=r.percent, width=20),
                            Text(f"{r.percent:3d}%"))
            gap = (Text(f"{r.gap_ms:.0f} ms", style=_gap_style(r.gap_ms,
                                                                 self.watchdog_timeout_ms))
                   if r.gap_ms is not None else Text(""))
            outcome = Text("")
            if r.outcome:
                outcome = Text(r.outcome.upper(), style=_OUTCOME_STYLE.get(r.outcome, "bold"))
                if r.reason:
                    outcome.append(f" {r.reason}")
            t.add_row(r.slot, r.model, r.imei, r.phase, r.state, bar,
                      _bytes(r.bytes_served) if r.bytes_served else "", gap,
                      str(r.attempt) if r.attempt else "", outcome)
        return t

    def _title(self, rows: Sequence[SlotProgress]) -> str:
        counts = {o: sum(1 for r in rows if r.outcome == o) for o in ("pass", "fail", "error")}
        running = sum(1 for r in rows if r.outcome is None and r.t_first_ns is not None)
        head = f"{self.title}: " if self.title else ""
        return (f"{head}{len(rows)} slots: {running} running, {counts['pass']} pass, "
                f"{counts['fail']} fail, {counts['error']} error")


# --- the end of a run ---------------------------------------------------------------------

def _as_summary(rows: Iterable[Union[SummaryRow, SlotProgress]]) -> list[SummaryRow]:
    out = []
    for r in rows:
        if isinstance(r, SlotProgress):
            r = SummaryRow(r.slot, r.outcome, r.reason, r.version_from, r.version_to,
                           r.duration_s, r.gap_ms)
        out.append(r)
    return out


def summary_table(rows: Iterable[Union[SummaryRow, SlotProgress]], *,
                  watchdog_timeout_ms: float = WDT_TIMEOUT_MS, title: str = "") -> Table:
    """The end-of-run table: slot, outcome, cause, versions, duration, longest WDI gap."""
    rows = _as_summary(rows)
    counts = ", ".join(f"{sum(1 for r in rows if r.outcome == o)} {o}"
                       for o in ("pass", "fail", "error"))
    t = Table(title=f"{title + ': ' if title else ''}{counts}", title_justify="left",
              header_style="bold")
    for name in ("slot", "outcome", "cause", "versions", "duration", "longest WDI gap"):
        t.add_column(name, justify="right" if name in ("duration", "longest WDI gap") else "left")
    for r in rows:
        outcome = (Text(r.outcome.upper(), style=_OUTCOME_STYLE.get(r.outcome, "bold"))
                   if r.outcome else Text("unfinished", style="dim"))
        gap = (Text(f"{r.gap_ms:.0f} ms", style=_gap_style(r.gap_ms, watchdog_timeout_ms))
               if r.gap_ms is not None else Text(""))
        t.add_row(r.slot, outcome, r.cause, _versions(r.version_from, r.version_to),
                  _duration(r.duration_s), gap)
    return t


def summary_lines(rows: Iterable[Union[SummaryRow, SlotProgress]]) -> list[str]:
    """The same summary as plain aligned text (logs, pipes)."""
    rows = _as_summary(rows)
    table = [("slot", "outcome", "cause", "versions", "duration", "longest WDI gap")]
    for r in rows:
        table.append((r.slot, r.outcome.upper() if r.outcome else "unfinished", r.cause,
                      _versions(r.version_from, r.version_to), _duration(r.duration_s),
                      f"{r.gap_ms:.0f} ms" if r.gap_ms is not None else ""))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out = []
    for row in table:
        cells = [c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in
                 enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    counts = ", ".join(f"{sum(1 for r in rows if r.outcome == o)} {o}"
                       for o in ("pass", "fail", "error"))
    return out + [counts]


def print_summary(rows: Iterable[Union[SummaryRow, SlotProgress]], *,
                  console: Optional[Console] = None, title: str = "",
                  watchdog_timeout_ms: float = WDT_TIMEOUT_MS) -> None:
    """The summary as a table on a terminal, as plain lines anywhere else."""
    console = console if console is not None else Console()
    if console.is_terminal:
        console.print(summary_table(rows, title=title, watchdog_timeout_ms=watchdog_timeout_ms))
    else:
        text = "\n".join(([title] if title else []) + summary_lines(rows)) + "\n"
        console.file.write(text)
        console.file.flush()
