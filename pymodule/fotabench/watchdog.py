"""The watchdog monitor: is WDI fed in time?

The external watchdog chip (TPS3823 or similar, timeout >= 1.6 s) resets the module
when WDI has no transition for its timeout; it should be fed within 2/3 of it
(opencpu-fota.md section 7). The monitor counts edges, measures every interval and the
longest gap (from the start to the first edge and from the last edge to the stop
count too), and says whether a gap exceeded 2/3 of the timeout or the timeout. Live:
:meth:`WatchdogMonitor.wait_stall` returns the moment the line stalls, and the timeline
gets ``watchdog.warning`` / ``watchdog.stall`` as it happens and ``watchdog.verdict``
at the stop.

A recorded waveform (edge times in ns), checked without any hardware::

    >>> from fotabench import WatchdogMonitor
    >>> r = WatchdogMonitor.check([400_000_000 * i for i in range(1, 11)],
    ...                           start_ns=1, stop_ns=4_200_000_000)
    >>> r.edges, r.longest_gap_ns, r.over_two_thirds, r.over_timeout
    (10, 400000000, False, False)

Live on a line::

    >>> with WatchdogMonitor(wdi, timeout=1.6, timeline=tl) as wd:     # doctest: +SKIP
    ...     run_the_upgrade()
    >>> wd.result.ok                                                   # doctest: +SKIP
    True
"""
from __future__ import annotations

from collections.abc import Iterable

from . import _core
from .gpio import GpioLine
from .timeline import Timeline

__all__ = ["WatchdogMonitor", "WatchdogResult"]


class WatchdogResult(_core.WatchdogResultBase):
    """The monitor's figures (ns on the bench clock): a frozen dataclass whose fields are
    declared once, in the extension (``_core.WatchdogResultBase``, from ext/watchdog.c's
    table), so they cannot drift from what the C core returns."""

    @property
    def ok(self) -> bool:
        """Fed within 2/3 of the timeout all along, and no edge lost."""
        return not self.over_two_thirds and not self.over_timeout and self.lost == 0


class WatchdogMonitor:
    """Watch ``line`` (a :class:`fotabench.GpioLine` requested as an input with edges)
    from now until :meth:`stop` (or the end of a ``with`` block). Without a line, feed
    edge times yourself (:meth:`feed`, :meth:`check`).

    >>> with fotabench.WatchdogMonitor(chip.request_input("WDI"), timeout=1.6) as wd:  # doctest: +SKIP
    ...     modem.command("AT+FBUPG=...")
    ...     assert wd.wait_stall(timeout=60) is None      # no stall while upgrading
    >>> wd.result.ok                                      # doctest: +SKIP
    True
    """

    def __init__(self, line: GpioLine | None = None, *, timeout: float = 1.6,
                 timeline: Timeline | None = None, source: str | None = None,
                 start_ns: int = 0):
        self.timeline = timeline
        self.line = line
        self._core = _core.WatchdogMonitor(None if line is None else line._core, timeout,
                                           None if timeline is None else timeline._core,
                                           source, start_ns)
        self._final: WatchdogResult | None = None

    @classmethod
    def check(cls, edges_ns: Iterable[int], *, start_ns: int, stop_ns: int,
              timeout: float = 1.6, timeline: Timeline | None = None) -> WatchdogResult:
        """The verdict on a recorded waveform: edge times between start and stop."""
        m = cls(timeout=timeout, timeline=timeline, start_ns=start_ns)
        try:
            for t in edges_ns:
                m.feed(t)
            return m.stop(stop_ns)
        finally:
            m.close()

    def feed(self, t_ns: int) -> None:
        """One edge at t_ns (for monitors without a line)."""
        self._core.feed(t_ns)

    @property
    def result(self) -> WatchdogResult:
        """The figures so far (the open gap counts while running), or the verdict after
        stop()."""
        if self._final is not None:
            return self._final
        return WatchdogResult(*self._core.result())

    def intervals(self) -> list[int]:
        """Every interval between consecutive edges, in ns."""
        return self._core.intervals()

    def wait_stall(self, fraction: float = 2 / 3, timeout: float | None = None) -> int | None:
        """Block until the current gap exceeds ``fraction`` of the chip timeout and
        return it (ns), or None at the timeout / after stop. A test can fail the
        moment WDI stalls."""
        return self._core.wait_stall(self.result.timeout_ns * fraction / 1e9, timeout)

    def stop(self, stop_ns: int = 0) -> WatchdogResult:
        """End the watch (at stop_ns, default now) and return the verdict."""
        if self._final is None:
            self._final = WatchdogResult(*self._core.stop(stop_ns))
        return self._final

    def close(self) -> None:
        self._core.close()
        self._closed = True

    def __repr__(self) -> str:
        try:
            r = self.result
        except _core.FotabenchError:  # closed before stop(): no figures left
            return "<WatchdogMonitor closed>"
        on = self.line.name if self.line is not None else "fed by hand"
        state = "stopped" if self._final is not None else "running"
        if getattr(self, "_closed", False):
            state += ",closed"
        gap = r.longest_gap_ns / 1e9
        verdict = "ok" if r.ok else "NOT ok"
        return (f"<WatchdogMonitor {on} {state} timeout={r.timeout_ns / 1e9:g}s "
                f"edges={r.edges} longest_gap={gap:.3f}s {verdict}>")

    def __enter__(self) -> WatchdogMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()
