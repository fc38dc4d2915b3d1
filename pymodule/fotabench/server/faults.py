"""Faults the package servers inject on purpose, and how a response body is shaped
by them.

A :class:`Fault` has a kind, its parameters, a scope (protocol, file, client) and a
budget (``times``: ``None`` = every matching attempt, ``1`` = one-shot, ``N`` = the
first N attempts, so a module's retry can succeed). Each matching attempt uses one
unit of the budget when the fault is applied.

Kinds (and where they act):

=============== ======== =============================================================
kind            protocol what the client sees
=============== ======== =============================================================
throttle        both     the body paced at ``rate`` bytes/s
stall           both     no data for ``seconds`` s once byte ``at`` is sent
drop            both     the connection closed after byte ``at`` (HTTP: the announced
                         length is the full size; FTP: data and control closed, no
                         226). ``reset=True`` sends a TCP RST instead of a FIN
corrupt         both     ``count`` bytes from ``at`` inverted (XOR 0xFF)
truncate        both     the file is ``at`` bytes long (Content-Length / SIZE agree)
wrong_length    http     Content-Length is ``length`` while the whole file is sent,
                         then the connection closes
chunked         http     ``Transfer-Encoding: chunked``, no Content-Length
redirect        http     ``code`` (302) with ``Location: location`` (default: the
                         same path, so a one-shot redirect followed ends in the file)
status          http     ``code`` (404, 500, ...) with a short text body
refuse          both     the connection is reset at once (RST), nothing is read
slow_accept     both     nothing is read or sent for ``seconds`` s after connect
login_fail      ftp      530 to PASS with the right password
size_lie        ftp      SIZE answers ``length``
=============== ======== =============================================================

``at`` is a byte offset; ``at_percent`` a percentage of the file's size instead. A
fault that cannot act on the file at hand (a drop or stall past its end, a corrupt or
truncate at or past it) is not applied: not recorded, and its budget is not used.
A ``client`` scope matches the client's IP address or the module name of a
per-module URL (``/m/<module>/...``); connection-level faults (refuse, slow_accept,
login_fail) happen before any path is known, so only an IP address scopes them and
a ``file`` scope is refused for them.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Optional, Sequence

KINDS = ("throttle", "stall", "drop", "corrupt", "truncate", "wrong_length", "chunked",
         "redirect", "status", "refuse", "slow_accept", "login_fail", "size_lie")
HTTP_ONLY = frozenset({"wrong_length", "chunked", "redirect", "status"})
FTP_ONLY = frozenset({"login_fail", "size_lie"})
CONNECTION_KINDS = frozenset({"refuse", "slow_accept", "login_fail"})
BODY_KINDS = frozenset({"throttle", "stall", "drop", "corrupt", "truncate",
                        "wrong_length", "chunked"})

_RATE_UNITS = {
    "": 1.0, "b": 1.0, "kb": 1e3, "kib": 1024.0, "mb": 1e6, "mib": 1048576.0,
    "bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8,
}


def parse_rate(value: "float | int | str") -> float:
    """Bytes per second from a number (bytes/s) or a string with a unit:
    ``6250``, ``6250B``, ``50kbit``, ``50kbit/s``, ``10kB`` (1000), ``10KiB``,
    ``1Mbit``."""
    if isinstance(value, (int, float)):
        rate = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)(?:/s)?\s*", value)
        if not m or m.group(2).lower() not in _RATE_UNITS:
            raise ValueError(f"bad rate {value!r}: use e.g. 6250, 50kbit, 10kB, 1MiB")
        rate = float(m.group(1)) * _RATE_UNITS[m.group(2).lower()]
    if not 0 < rate < float("inf"):  # also NaN: it would reach the records as NaN
        raise ValueError(f"rate must be positive and finite, got {value!r}")
    return rate


class DropInjected(Exception):
    """Raised by a body iterator where a drop fault cuts the connection."""


class ServerStopping(Exception):
    """Raised by a body iterator when the server is being stopped."""


@dataclass(eq=False)
class Fault:
    """One fault; build it with the class methods (``Fault.drop(at_percent=50)``)."""

    kind: str
    at: Optional[int] = None
    at_percent: Optional[float] = None
    seconds: float = 0.0
    rate: float = 0.0
    count: int = 1
    length: Optional[int] = None
    code: int = 0
    location: Optional[str] = None
    reset: bool = False
    file: Optional[str] = None
    client: Optional[str] = None
    protocol: Optional[str] = None
    times: Optional[int] = None
    used: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(KINDS)})")
        if self.protocol is None:
            if self.kind in HTTP_ONLY:
                self.protocol = "http"
            elif self.kind in FTP_ONLY:
                self.protocol = "ftp"
        if self.protocol not in (None, "http", "ftp"):
            raise ValueError(f"protocol must be http or ftp, got {self.protocol!r}")
        if (self.kind in HTTP_ONLY and self.protocol != "http") or (
                self.kind in FTP_ONLY and self.protocol != "ftp"):
            raise ValueError(f"fault {self.kind} does not apply to {self.protocol}")
        if self.kind in CONNECTION_KINDS and self.file is not None:
            raise ValueError(f"fault {self.kind} happens before a file is named: "
                             "scope it by client address, not by file")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 (or None for every attempt)")
        if self.at is not None and self.at < 0:
            raise ValueError("at must be >= 0")
        if self.at_percent is not None and not 0 <= self.at_percent <= 100:
            raise ValueError("at_percent must be within 0..100")
        if self.kind in ("stall", "drop", "corrupt", "truncate") and (
                self.at is None and self.at_percent is None):
            if self.kind == "stall":
                self.at = 0
            else:
                raise ValueError(f"fault {self.kind} needs at= or at_percent=")
        if self.kind in ("stall", "slow_accept") and not 0 < self.seconds < float("inf"):
            raise ValueError(f"fault {self.kind} needs finite seconds > 0")
        if self.kind == "throttle":
            self.rate = parse_rate(self.rate)
        if self.kind == "corrupt" and self.count < 1:
            raise ValueError("corrupt count must be >= 1")
        if self.kind in ("wrong_length", "size_lie") and (self.length is None
                                                          or self.length < 0):
            raise ValueError(f"fault {self.kind} needs length >= 0")
        if self.kind == "status" and not 100 <= self.code <= 599:
            raise ValueError("status fault needs a code within 100..599")
        if self.kind == "redirect":
            self.code = self.code or 302
            if self.code not in (301, 302, 303, 307, 308):
                raise ValueError("redirect code must be 301, 302, 303, 307 or 308")
            if self.location is not None and any(c in self.location for c in "\r\n\0"):
                raise ValueError("redirect location must not hold CR, LF or NUL")

    # --- constructors -----------------------------------------------------------

    @classmethod
    def throttle(cls, rate: "float | str", **scope) -> "Fault":
        """Pace the body at ``rate`` bytes/s (or a string with a unit):
        ``Fault.throttle("50kbit", file="v2.bin")``."""
        return cls("throttle", rate=parse_rate(rate), **scope)

    @classmethod
    def stall(cls, seconds: float, at: Optional[int] = None,
              at_percent: Optional[float] = None, **scope) -> "Fault":
        """No data for ``seconds`` once ``at`` bytes (or ``at_percent``) are out:
        ``Fault.stall(5, at_percent=50, times=1)``."""
        return cls("stall", seconds=seconds, at=at, at_percent=at_percent, **scope)

    @classmethod
    def drop(cls, at: Optional[int] = None, at_percent: Optional[float] = None,
             reset: bool = False, **scope) -> "Fault":
        """Close the connection after exactly ``at`` body bytes (``reset=True``: RST):
        ``Fault.drop(at_percent=50, client="dut3", times=1)`` (the retry succeeds)."""
        return cls("drop", at=at, at_percent=at_percent, reset=reset, **scope)

    @classmethod
    def corrupt(cls, at: Optional[int] = None, at_percent: Optional[float] = None,
                count: int = 1, **scope) -> "Fault":
        """Invert ``count`` bytes from ``at`` (the MD5 check must catch it):
        ``Fault.corrupt(at=100, count=4)``."""
        return cls("corrupt", at=at, at_percent=at_percent, count=count, **scope)

    @classmethod
    def truncate(cls, at: Optional[int] = None, at_percent: Optional[float] = None,
                 **scope) -> "Fault":
        """The file appears ``at`` bytes long (Content-Length and SIZE agree):
        ``Fault.truncate(at=1000)``."""
        return cls("truncate", at=at, at_percent=at_percent, **scope)

    @classmethod
    def wrong_length(cls, length: int, **scope) -> "Fault":
        """HTTP: announce Content-Length ``length``, send the whole file, close:
        ``Fault.wrong_length(10)``."""
        return cls("wrong_length", length=length, **scope)

    @classmethod
    def chunked(cls, **scope) -> "Fault":
        """HTTP: ``Transfer-Encoding: chunked``, no Content-Length: ``Fault.chunked()``."""
        return cls("chunked", **scope)

    @classmethod
    def redirect(cls, location: Optional[str] = None, code: int = 302,
                 **scope) -> "Fault":
        """HTTP redirect (default: to the same path):
        ``Fault.redirect("/fota/v2.bin", code=301, times=1)``."""
        return cls("redirect", location=location, code=code, **scope)

    @classmethod
    def status(cls, code: int, **scope) -> "Fault":
        """HTTP status with a short body: ``Fault.status(503, times=2)``."""
        return cls("status", code=code, **scope)

    @classmethod
    def refuse(cls, **scope) -> "Fault":
        """Reset the connection at once, before reading: ``Fault.refuse(times=1)``."""
        return cls("refuse", **scope)

    @classmethod
    def slow_accept(cls, seconds: float, **scope) -> "Fault":
        """Nothing read or sent for ``seconds`` after connect (FTP: the greeting waits):
        ``Fault.slow_accept(3)``."""
        return cls("slow_accept", seconds=seconds, **scope)

    @classmethod
    def login_fail(cls, **scope) -> "Fault":
        """FTP: 530 to the right password: ``Fault.login_fail(times=1)``."""
        return cls("login_fail", **scope)

    @classmethod
    def size_lie(cls, length: int, **scope) -> "Fault":
        """FTP: SIZE answers ``length``: ``Fault.size_lie(100)``."""
        return cls("size_lie", length=length, **scope)

    @classmethod
    def parse(cls, spec: str) -> "Fault":
        """``KIND[:key=value,...]``, the CLI form, e.g. ``drop:at=50%,times=1``,
        ``throttle:rate=50kbit``, ``stall:at=1000,seconds=5``, ``status:code=404``,
        ``refuse:client=10.0.0.7``, ``size_lie:length=100,file=APP.bin``.
        ``at=N%`` means at_percent. Keys: at, seconds, rate, count, length, code,
        location, reset, file, client, protocol, times."""
        kind, _, rest = spec.partition(":")
        kind = kind.strip().replace("-", "_")
        kw: dict = {}
        for item in filter(None, (s.strip() for s in rest.split(","))) if rest else ():
            key, eq, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not eq:
                raise ValueError(f"fault {spec!r}: {item!r} is not key=value")
            value = value.strip()
            try:
                if key == "at":
                    if value.endswith("%"):
                        kw["at_percent"] = float(value[:-1])
                    else:
                        kw["at"] = int(value)
                elif key in ("seconds",):
                    kw[key] = float(value)
                elif key in ("count", "length", "code", "times"):
                    kw[key] = int(value)
                elif key == "rate":
                    kw[key] = parse_rate(value)
                elif key == "reset":
                    kw[key] = value.lower() in ("1", "true", "yes", "rst")
                elif key in ("file", "client", "protocol", "location"):
                    kw[key] = value
                else:
                    raise ValueError(f"unknown key {key!r}")
            except ValueError as e:
                raise ValueError(f"fault {spec!r}: {e}") from None
        try:
            return cls(kind, **kw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"fault {spec!r}: {e}") from None

    # --- use ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.kind if self.kind != "status" else f"status{self.code}"

    def offset(self, size: int) -> int:
        """The byte offset this fault acts at, for a file of ``size`` bytes."""
        if self.at is not None:
            return min(self.at, size)
        if self.at_percent is not None:
            return min(size, int(size * self.at_percent / 100))
        return 0

    def acts_on(self, size: int) -> bool:
        """Whether this fault changes anything for a file of ``size`` bytes."""
        raw = self.at if self.at is not None else (
            int(size * self.at_percent / 100) if self.at_percent is not None else 0)
        if self.kind in ("drop", "stall"):
            return raw <= size      # at the end: the cut or pause after the last byte
        if self.kind in ("corrupt", "truncate"):
            return raw < size       # at the end: no byte to invert, nothing cut
        return True

    def matches(self, protocol: str, client: str, module: Optional[str],
                file: Optional[str]) -> bool:
        if self.protocol is not None and self.protocol != protocol:
            return False
        if self.file is not None and self.file != file:
            return False
        if self.client is not None and self.client not in (client, module):
            return False
        return True

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.used >= self.times

    def describe(self) -> str:
        parts = [self.kind]
        for key in ("at", "at_percent", "seconds", "rate", "length", "code", "location",
                    "file", "client", "protocol", "times"):
            v = getattr(self, key)
            if v not in (None, 0, 0.0):
                parts.append(f"{key}={v}")
        return " ".join(parts)


class FaultSet:
    """The faults a server applies; thread-safe."""

    def __init__(self, faults: Sequence[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def take(self, kinds: "frozenset[str] | set[str]", protocol: str, client: str,
             module: Optional[str] = None, file: Optional[str] = None) -> list[Fault]:
        """The matching faults of these kinds, each using one unit of its budget."""
        out = []
        with self._lock:
            for f in self._faults:
                if f.kind in kinds and not f.exhausted and f.matches(
                        protocol, client, module, file):
                    f.used += 1
                    out.append(f)
        return out

    def give_back(self, faults: Sequence[Fault]) -> None:
        """Return the budget take() used for faults that were not applied after all."""
        with self._lock:
            for f in faults:
                if f.used > 0:
                    f.used -= 1

    def peek(self, kinds: "frozenset[str] | set[str]", protocol: str, client: str,
             module: Optional[str] = None, file: Optional[str] = None) -> list[Fault]:
        """Like take() without using any budget."""
        with self._lock:
            return [f for f in self._faults if f.kind in kinds and not f.exhausted
                    and f.matches(protocol, client, module, file)]


@dataclass
class BodyPlan:
    """How one response body is sent: what is announced, what is sent, and how."""

    size: int                       # the file's real size
    send: int                       # bytes of the file to send (truncate)
    length: Optional[int]           # announced length (Content-Length / SIZE); None: chunked
    rate: Optional[float] = None
    stalls: list[tuple[int, float]] = field(default_factory=list)
    drop_at: Optional[int] = None
    reset: bool = False
    corrupt: list[tuple[int, int]] = field(default_factory=list)
    chunked: bool = False
    names: list[str] = field(default_factory=list)
    unused: list[Fault] = field(default_factory=list)  # could not act on this file

    @classmethod
    def build(cls, size: int, faults: Sequence[Fault]) -> "BodyPlan":
        plan = cls(size=size, send=size, length=size)
        plan.unused = [f for f in faults if not f.acts_on(size)]
        faults = [f for f in faults if f.acts_on(size)]
        for f in faults:
            if f.kind == "truncate":
                plan.send = min(plan.send, f.offset(size))
                plan.length = plan.send
        for f in faults:
            plan.names.append(f.name)
            if f.kind == "throttle":
                plan.rate = f.rate if plan.rate is None else min(plan.rate, f.rate)
            elif f.kind == "stall":
                plan.stalls.append((f.offset(plan.send), f.seconds))
            elif f.kind == "drop":
                at = f.offset(size)
                plan.drop_at = at if plan.drop_at is None else min(plan.drop_at, at)
                plan.reset = plan.reset or f.reset
            elif f.kind == "corrupt":
                plan.corrupt.append((f.offset(size), f.count))
            elif f.kind == "wrong_length":
                plan.length = f.length
            elif f.kind == "chunked":
                plan.chunked = True
                plan.length = None
        plan.stalls.sort()
        return plan

    @property
    def limit(self) -> int:
        """Bytes of the file actually written before the body ends or drops."""
        return self.send if self.drop_at is None else min(self.send, self.drop_at)

    def chunks(self, f: BinaryIO, stop: threading.Event, chunk: int = 65536
               ) -> Iterator[bytes]:
        """The body, in pieces, with the faults applied; sleeps for stalls and
        throttling (waking at once when ``stop`` is set: ServerStopping), raises
        DropInjected after the last byte before a drop."""
        pos = 0
        limit = self.limit
        if self.rate:
            # ~20 sends per second keeps pacing smooth; a module reads 512 at a time.
            chunk = int(max(256, min(chunk, self.rate / 20)))
        stalls = list(self.stalls)
        t0 = time.monotonic()
        paused = 0.0
        while True:
            while stalls and stalls[0][0] <= pos:
                _, seconds = stalls.pop(0)
                ts = time.monotonic()
                if stop.wait(seconds):
                    raise ServerStopping
                paused += time.monotonic() - ts
            if pos >= limit:
                break
            n = min(chunk, limit - pos)
            if stalls:
                n = min(n, stalls[0][0] - pos)
            data = f.read(n)
            if not data:
                break           # the file shrank under us: send what there is
            if self.corrupt:
                buf = bytearray(data)
                for at, count in self.corrupt:
                    lo, hi = max(at, pos), min(at + count, pos + len(buf))
                    for i in range(lo, hi):
                        buf[i - pos] ^= 0xFF
                data = bytes(buf)
            if self.rate:
                due = t0 + paused + (pos + len(data)) / self.rate
                delay = due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    raise ServerStopping
            pos += len(data)
            yield data
        if self.drop_at is not None:
            # Everything before the cut went out (a drop at or past the end still
            # cuts the connection after the last byte).
            raise DropInjected
