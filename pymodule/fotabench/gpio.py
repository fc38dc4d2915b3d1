"""GPIO lines of a bench: a real chip through libgpiod v2, or a virtual module's board
through its gpio.sock, with one interface.

Outputs (PWRKEY, RESET, VBAT) stay requested for the whole session; inputs (WDI,
STATUS) deliver every edge with the kernel's or board's CLOCK_MONOTONIC timestamp and
a sequence number, checked so a lost edge is reported. Values are logical: with
``active_low=True`` a 1 is the low level.

With a virtual module (``fotabench sim`` prints its gpio.sock path)::

    >>> import fotabench
    >>> with fotabench.GpioChip.virtual("/tmp/sim/gpio.sock") as board:   # doctest: +SKIP
    ...     pwrkey = board.request_output("PWRKEY", initial=1)
    ...     pwrkey.pulse(0, 1.2)            # hold PWRKEY low 1.2 s: power on
    ...     wdi = board.request_input("WDI")
    ...     wdi.next_edge(timeout=5)
    Edge(value=1, t_ns=..., seq=1)

On real hardware: ``fotabench.GpioChip("/dev/gpiochip0")`` and lines by name or
offset (``board.request_output(17, active_low=True)``).
"""
from __future__ import annotations

import atexit
import os
import stat
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from . import _core
from ._callbacks import CallbackErrors
from .timeline import Timeline

__all__ = ["Edge", "GpioChip", "GpioLine"]

Bias = Literal["as-is", "disabled", "pull-up", "pull-down"]
_BIAS = {"as-is": 0, "disabled": 1, "pull-up": 2, "pull-down": 3}


@dataclass(frozen=True)
class Edge:
    """One edge: the logical ``value`` after it, its ``t_ns`` (CLOCK_MONOTONIC, from the
    kernel or the board) and the line's ``seq``."""

    value: int
    t_ns: int
    seq: int


_open_chips: "weakref.WeakSet[GpioChip]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for c in list(_open_chips):
        c.close()


class GpioLine:
    """A requested line; made by :meth:`GpioChip.request_output` /
    :meth:`GpioChip.request_input`."""

    def __init__(self, core: _core.GpioLine, direction: str, timeline: Timeline | None = None):
        self._core = core
        self.direction = direction
        self.timeline = timeline
        self._callback_errors = CallbackErrors(f"GPIO line {core.name}")

    @property
    def callback_errors(self) -> list[BaseException]:
        """Exceptions raised by the on_edge callback (on the callback thread): the
        first was printed to stderr with its traceback, each is on the timeline."""
        return self._callback_errors.errors

    @property
    def name(self) -> str | None:
        return self._core.name

    @property
    def released(self) -> bool:
        return self._core.released

    def set(self, value: int | bool) -> int:
        """Drive a logical value; returns when it was applied (t_ns)."""
        return self._core.set(bool(value))

    def get(self) -> int:
        """The logical value now."""
        return self._core.get()

    @property
    def value(self) -> int:
        return self.get()

    @value.setter
    def value(self, v: int | bool) -> None:
        self.set(v)

    def pulse(self, value: int | bool, seconds: float) -> tuple[int, int]:
        """Hold value for ``seconds`` from the moment it was applied, then the
        opposite; returns (t_start_ns, t_end_ns). ``pulse(0, 1.2)`` on an
        active-high PWRKEY is the M66's power-on. Ctrl-C ends the pulse early (the
        opposite level is still set) and raises KeyboardInterrupt."""
        return self._core.pulse(bool(value), float(seconds))

    def next_edge(self, timeout: float | None = 0.0) -> Edge | None:
        """The next edge (in order), waiting up to timeout seconds (None: forever);
        None at the timeout. Raises :class:`fotabench.DataLostError` once where edges
        were missed."""
        got = self._core.next_edge(timeout)
        return None if got is None else Edge(*got)

    def edges(self, timeout: float | None = 0.0) -> Iterator[Edge]:
        """Edges until none arrives within timeout."""
        while (e := self.next_edge(timeout)) is not None:
            yield e

    def on_edge(self, fn: Callable[[Edge], object] | None) -> None:
        """Call fn(Edge) for every edge, in order, on the line's callback thread with the
        GIL (a slow fn never holds up the line's reader). None removes it. Edges still go
        to next_edge() as well."""
        if fn is None:
            self._core.set_edge_callback(None)
            return

        # The callback must not hold this line (the line's core holds the callback: a
        # cycle would keep the line and its threads until the cyclic GC runs).
        errors, timeline, source = self._callback_errors, self.timeline, f"gpio:{self.name}"

        def call(v: int, t: int, s: int) -> None:
            edge = Edge(v, t, s)
            try:
                fn(edge)
            except Exception as e:  # noqa: BLE001 - reported, see _callbacks.py
                errors.report(e, f"edge {edge}", timeline, source)

        self._core.set_edge_callback(call)

    def stats(self) -> dict[str, int]:
        """edges delivered, lost (sequence gaps), dropped (full queue), callback_dropped
        (edges not called back: the callback queue of 65536 was full)."""
        s = self._core.stats()
        return {"edges": s["edges"], "lost": s["lost"], "dropped": s["dropped"],
                "callback_dropped": s["callback_dropped"]}

    def release(self) -> None:
        self._core.release()

    def __enter__(self) -> GpioLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<GpioLine {self.name} {self.direction} {state}>"


class GpioChip:
    """A GPIO chip (``/dev/gpiochipN``, libgpiod v2) or a virtual module's board (the
    path of its gpio.sock: a Unix socket is recognised, or use :meth:`virtual`).
    Closing releases every line.

    >>> with fotabench.GpioChip("/dev/gpiochip0") as chip:     # doctest: +SKIP
    ...     reset = chip.request_output(17, initial=0, active_low=True)
    ...     reset.pulse(1, 0.1)
    ...     chip.request_input("WDI").next_edge(timeout=2)
    """

    def __init__(self, path: str | os.PathLike[str], *, timeline: Timeline | None = None,
                 virtual: bool | None = None):
        path = os.fspath(path)
        if virtual is None:
            try:
                virtual = stat.S_ISSOCK(os.stat(path).st_mode)
            except OSError:
                virtual = False
        self.timeline = timeline
        self.path = path
        self._core = _core.GpioChip(path, virtual, None if timeline is None else timeline._core)
        _open_chips.add(self)

    @classmethod
    def virtual(cls, socket_path: str | os.PathLike[str], *,
                timeline: Timeline | None = None) -> GpioChip:
        return cls(socket_path, timeline=timeline, virtual=True)

    @property
    def backend(self) -> str | None:
        """``"gpiod"`` or ``"virtual"``."""
        return self._core.backend

    @property
    def closed(self) -> bool:
        return self._core.closed

    def request_output(self, line: str | int, *, initial: int | bool = 0,
                       active_low: bool = False, bias: Bias = "as-is") -> GpioLine:
        """Request a line to drive, held until released, the chip closes, or the
        returned line is dropped (keep it for as long as the level must hold)."""
        return GpioLine(self._core.request(line, True, active_low, _BIAS[bias], bool(initial),
                                           False, 0), "output", self.timeline)

    def request_input(self, line: str | int, *, edges: bool = True, active_low: bool = False,
                      bias: Bias = "as-is", queue_max: int = 0) -> GpioLine:
        """Request a line to read; with edges (default) every edge is kept (up to
        queue_max, default 4096, for next_edge) and timestamped."""
        return GpioLine(self._core.request(line, False, active_low, _BIAS[bias], False, edges,
                                           queue_max), "input", self.timeline)

    def close(self) -> None:
        self._core.close()
        _open_chips.discard(self)

    def __enter__(self) -> GpioChip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"open {self.backend}"
        return f"<GpioChip {self.path} {state}>"
