"""One timeline for every bench event, on one clock.

Every event has a ``seq`` (its position: 0, 1, 2, ...), a ``t_ns`` stamp from
CLOCK_MONOTONIC in nanoseconds (:func:`now_ns`, equal to ``time.monotonic_ns()``), a
``source`` (``"uart1"``, ``"gpio:WDI"``, ``"watchdog"``, ``"http"``...), a ``kind``
(``"line"``, ``"at.command"``, ``"urc"``, ``"edge"``, ``"request"``...) and ``data``, a
JSON object. Serial ports, modems, GPIO lines and watchdog monitors given a timeline
add their events to it from the C core's threads; Python code adds its own::

    >>> import fotabench
    >>> tl = fotabench.Timeline()
    >>> ev = tl.add("http", "request", path="/fota/APP.bin", status=200)
    >>> ev.seq, ev.source, ev.kind, ev.data["status"]
    (0, 'http', 'request', 200)
    >>> [e.kind for e in tl.events(source="http")]
    ['request']
    >>> tl.write_jsonl("/tmp/timeline.jsonl")   # one JSON object per line, seq order
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _core
from ._core import now_ns

__all__ = ["Event", "Timeline", "now_ns"]


@dataclass(frozen=True)
class Event:
    """One timeline event. ``data`` is the decoded JSON object."""

    seq: int
    t_ns: int
    source: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The event as one JSON line (without the newline), as in the export."""
        return _dumps({"seq": self.seq, "t_ns": self.t_ns, "source": self.source,
                       "kind": self.kind, "data": self.data})


def _event(raw: tuple[int, int, str, str, str]) -> Event:
    seq, t_ns, source, kind, data = raw
    return Event(seq, t_ns, source, kind, json.loads(data))


def _finite(value: Any) -> Any:
    """NaN and infinities as the strings JSON has no numbers for ("NaN", "Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(data: dict[str, Any]) -> str:
    # default=str: paths, enums and exceptions land as text rather than failing a test
    # at the moment it records what went wrong. allow_nan=False: a bare NaN is not JSON
    # (jq and every strict reader refuse the line), so non-finite floats become strings.
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str,
                          allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"),
                          default=str, allow_nan=False)


class Timeline:
    """Thread-safe, append-only list of events (the C core's ``fb_timeline``).

    >>> tl = Timeline()
    >>> tl.add("test", "note", text="power on").data
    {'text': 'power on'}
    >>> len(tl)
    1
    """

    def __init__(self) -> None:
        self._core = _core.Timeline()

    def add(self, source: str, kind: str, /, **data: Any) -> Event:
        """Append an event stamped now; keyword arguments are its JSON data."""
        seq, t_ns = self._core.add(source, kind, _dumps(data))
        return Event(seq, t_ns, source, kind, data)

    def add_at(self, t_ns: int, source: str, kind: str, /, **data: Any) -> Event:
        """Append an event stamped ``t_ns`` (CLOCK_MONOTONIC ns, e.g. from another
        process of the bench); seq order stays the order of adding."""
        if t_ns <= 0:
            raise _core.ArgumentError(f"t_ns must be a CLOCK_MONOTONIC time > 0, got {t_ns}")
        seq, t = self._core.add(source, kind, _dumps(data), t_ns)
        return Event(seq, t, source, kind, data)

    def events(self, source: str | None = None, kind: str | None = None,
               since: int = 0) -> list[Event]:
        """Events with seq >= ``since``, optionally only one source and/or kind; a
        trailing ``*`` matches a prefix (``kind="at.*"``)."""
        return [_event(r) for r in self._core.events(since, source, kind)]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

    def __len__(self) -> int:
        return len(self._core)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float | None = None,
                 since: int = 0) -> Event:
        """Block until an event with seq >= ``since`` satisfies ``predicate`` and
        return it; :class:`fotabench.BenchTimeoutError` after ``timeout`` seconds.
        The wait releases the GIL and Ctrl-C interrupts it.

        >>> tl = Timeline()
        >>> _ = tl.add("uart1", "urc", text="RDY")
        >>> tl.wait_for(lambda e: e.kind == "urc", timeout=1).data["text"]
        'RDY'
        """
        timeout_ns = _core.timeout_ns(timeout, "timeout")
        deadline = None if timeout_ns is None else now_ns() + timeout_ns
        seen = since
        while True:
            for raw in self._core.events(seen):
                ev = _event(raw)
                if predicate(ev):
                    return ev
                seen = ev.seq + 1
            left = None if deadline is None else max(0.0, (deadline - now_ns()) / 1e9)
            if left == 0.0:
                raise _core.BenchTimeoutError(
                    f"no matching timeline event within {timeout} s ({seen} events seen)")
            self._core.wait(seen, left)  # returns when event `seen` exists or at timeout

    def write_jsonl(self, path: str | os.PathLike[str], since: int = 0) -> None:
        """Export as JSON lines, one event per line in seq order:
        ``{"seq":..,"t_ns":..,"source":..,"kind":..,"data":{..}}``."""
        self._core.write_jsonl(path, since)

    def jsonl(self, since: int = 0) -> str:
        """The export as a string."""
        return "".join(e.to_json() + "\n" for e in self.events(since=since))

    def __repr__(self) -> str:
        return f"<Timeline {len(self)} events>"
