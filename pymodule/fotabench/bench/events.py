"""One stream of bench events: every upgrade (and later every flash) publishes here, and
anything subscribes: the terminal progress, the records, the pytest plugin, the
operator's web page. Publishing never blocks on, or fails because of, a subscriber.
"""
from __future__ import annotations

import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = ["BenchEvent", "EventBus", "KINDS"]

#: What an event says. "phase": the upgrade entered a phase (power, boot, identify,
#: attach, serve, trigger, download, reboot, verify, done); "state": a callback state from
#: the module (state, percent); "served": the package server's bytes for this slot;
#: "watchdog": the longest WDI gap so far (gap_ms); "power": a power event (detail);
#: "log": a line worth showing (detail); "attempt": an attempt starts (attempt);
#: "outcome": the attempt ended (outcome pass/fail/error, detail = the check or cause).
KINDS = ("phase", "state", "served", "watchdog", "power", "log", "attempt", "outcome")


@dataclass(frozen=True)
class BenchEvent:
    t_ns: int                      # fotabench.now_ns(): the one monotonic clock
    slot: str
    kind: str                      # one of KINDS
    phase: Optional[str] = None
    state: Optional[str] = None    # e.g. "UP_GETTING_FILE"
    percent: Optional[int] = None
    bytes_served: Optional[int] = None
    gap_ms: Optional[float] = None
    attempt: Optional[int] = None
    outcome: Optional[str] = None  # "pass" | "fail" | "error"
    detail: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[BenchEvent], Any]


class EventBus:
    """Thread-safe fan-out. Subscribers run on the publisher's thread, in order of
    subscription; one that raises is reported once on stderr (and counted in
    ``errors``), never allowed to break the upgrade that published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscriber] = []
        self.errors: list[str] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subs.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subs:
                    self._subs.remove(fn)
        return unsubscribe

    def publish(self, event: BenchEvent) -> None:
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            try:
                fn(event)
            except Exception:  # a subscriber's bug must not fail an upgrade
                msg = traceback.format_exc(limit=3)
                with self._lock:
                    first = not any(m == msg for m in self.errors)
                    self.errors.append(msg)
                if first:
                    print(f"fotabench: an event subscriber raised (reported once):\n{msg}",
                          file=sys.stderr)
