"""What each module fetched and when: one RequestRecord per request.

Times are CLOCK_MONOTONIC nanoseconds (``time.monotonic_ns()``, the same clock as
``fotabench.now_ns()`` and the Timeline), so a record lines up with the module's
UART lines and GPIO edges.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from .. import _core

# Outcomes (stable names):
COMPLETE = "complete"              # every byte the response announced was sent
CLIENT_CLOSED = "client_closed"    # the client went away (or stopped reading) first
FAULT_INJECTED = "fault_injected"  # a fault changed the answer (drop, 404, refuse, ...)
REJECTED = "rejected"              # the server refused a bad or impossible request
                                   # (malformed, not found, not logged in, too slow)
OUTCOMES = (COMPLETE, CLIENT_CLOSED, FAULT_INJECTED, REJECTED)


@dataclass
class RequestRecord:
    """One request as the server saw it.

    ``file`` is the served file name (``None`` when the request never named a
    servable file), ``path`` what the client asked for, ``module`` the module name
    from a per-module URL (``/m/<module>/...``), ``status`` the HTTP status or FTP
    reply code sent (0 when none was), ``size`` the file's size, ``bytes_sent`` body
    bytes written to the client's socket (headers and FTP control traffic are not
    counted), ``faults`` the names of the faults applied.
    """

    protocol: str
    client: str
    client_port: int
    start_ns: int
    end_ns: int = 0
    method: str = ""
    path: str = ""
    file: Optional[str] = None
    module: Optional[str] = None
    status: int = 0
    size: int = 0
    bytes_sent: int = 0
    outcome: str = ""
    faults: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def throughput(self) -> float:
        """Body bytes per second over the whole request (0 when nothing was sent)."""
        d = self.end_ns - self.start_ns
        return self.bytes_sent * 1e9 / d if d > 0 and self.bytes_sent else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["throughput"] = round(self.throughput, 1)
        return d


class RecordLog:
    """Thread-safe list of finished records, mirrored to a Timeline if given."""

    def __init__(self, timeline: Optional[Any] = None,
                 on_record: Optional[Callable[[RequestRecord], None]] = None) -> None:
        self.timeline = timeline
        self.on_record = on_record
        self._records: list[RequestRecord] = []
        self._cond = threading.Condition()

    def add(self, rec: RequestRecord) -> None:
        if not rec.end_ns:
            rec.end_ns = time.monotonic_ns()
        if self.timeline is not None:
            self.timeline.add(rec.protocol, "request", **rec.to_dict())
        with self._cond:
            self._records.append(rec)
            self._cond.notify_all()
        if self.on_record is not None:
            try:
                self.on_record(rec)
            except Exception:  # noqa: BLE001 - a broken callback never stops a server
                logging.getLogger("fotabench.server").exception("on_record callback")

    def snapshot(self) -> list[RequestRecord]:
        with self._cond:
            return list(self._records)

    def discard(self, predicate: Callable[[RequestRecord], bool]) -> int:
        """Drop the records ``predicate`` selects; returns how many went."""
        with self._cond:
            keep = [r for r in self._records if not predicate(r)]
            gone = len(self._records) - len(keep)
            self._records[:] = keep
        return gone

    def clear(self) -> None:
        with self._cond:
            self._records.clear()

    def wait(self, predicate: Callable[[list[RequestRecord]], bool],
             timeout: Optional[float]) -> list[RequestRecord]:
        """Block until predicate(records) is true; BenchTimeoutError (a TimeoutError)
        after timeout s (the one rule: None for ever, 0 at once, negative refused)."""
        ns = _core.timeout_ns(timeout, "timeout")
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._records),
                                       None if ns is None else ns / 1e9):
                raise _core.BenchTimeoutError(f"records: condition not met within {timeout} s "
                                   f"({len(self._records)} records)")
            return list(self._records)
