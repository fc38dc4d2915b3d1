"""Serial ports of the C core: real devices (libserialport) and the virtual module's
pseudo-terminals (termios), one reader thread per port in C, every byte logged with
its CLOCK_MONOTONIC time.

Paste into a shell (a pseudo-terminal pair stands in for a module)::

    >>> import os, fotabench
    >>> module_side, bench_side = os.openpty()
    >>> path = os.ttyname(bench_side); os.close(bench_side)
    >>> port = fotabench.SerialPort(path, name="uart1", log="/tmp/uart1.log")
    >>> _ = os.write(module_side, b"RDY\\r\\n")
    >>> port.expect(b"RDY", timeout=2).data
    b'RDY'
    >>> port.write(b"AT\\r")
    3
    >>> os.read(module_side, 3)
    b'AT\\r'
    >>> port.close()

Waits release the GIL and Ctrl-C interrupts them. A port that disappears raises
:class:`fotabench.ClosedError` saying so; :meth:`SerialPort.reopen` opens it again.
"""
from __future__ import annotations

import atexit
import os
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

from . import _core
from .timeline import Timeline, now_ns

__all__ = ["ExpectTimeout", "Match", "PortInfo", "SerialPort", "list_ports"]

Pattern = Union[bytes, str, "re.Pattern[bytes]", "re.Pattern[str]"]

EXPECT_WINDOW = 1 << 20  # bytes kept for matching; older unmatched bytes are dropped


class ExpectTimeout(_core.BenchTimeoutError):
    """expect() saw none of its patterns in time. ``tail`` holds the last bytes
    received, ``log_path`` the port's byte log (None without one)."""

    def __init__(self, message: str, tail: bytes = b"", log_path: str | None = None):
        super().__init__(message)
        self.tail = tail
        self.log_path = log_path


@dataclass(frozen=True)
class Match:
    """What expect() found: ``index`` of the pattern in the list, the regex ``match``,
    ``data`` (the matched bytes) and ``before`` (what came before them)."""

    index: int
    pattern: Any
    match: re.Match[bytes]
    before: bytes

    @property
    def data(self) -> bytes:
        return self.match.group(0)


@dataclass(frozen=True)
class PortInfo:
    """A port the system knows; USB fields are None for non-USB ports."""

    name: str
    description: str
    transport: str
    usb_vid: int | None
    usb_pid: int | None
    usb_bus: int | None
    usb_address: int | None
    usb_manufacturer: str | None
    usb_product: str | None
    usb_serial: str | None


def list_ports() -> list[PortInfo]:
    """Serial ports of this machine with USB details (libserialport).

    >>> isinstance(list_ports(), list)
    True
    """
    out = []
    for raw in _core.list_ports():
        d: dict[str, Any] = dict(raw)
        usb = d["transport"] == "usb"

        def num(key: str) -> int | None:
            v = int(d[key])
            return None if v < 0 else v

        def text(key: str) -> str | None:
            return str(d[key]) if usb and d[key] else None

        out.append(PortInfo(d["name"], d["description"], d["transport"], num("usb_vid"),
                            num("usb_pid"), num("usb_bus"), num("usb_address"),
                            text("usb_manufacturer"), text("usb_product"),
                            text("usb_serial")))
    return out


def compile_patterns(patterns: Pattern | Sequence[Pattern]) -> list[re.Pattern[bytes]]:
    """Literal bytes/str become exact matches; compiled regexes are kept (str ones
    recompiled on bytes, UTF-8)."""
    if isinstance(patterns, (bytes, str, re.Pattern)):
        patterns = [patterns]
    out: list[re.Pattern[bytes]] = []
    for p in patterns:
        if isinstance(p, bytes):
            out.append(re.compile(re.escape(p)))
        elif isinstance(p, str):
            out.append(re.compile(re.escape(p.encode())))
        elif isinstance(p, re.Pattern):
            if isinstance(p.pattern, str):
                out.append(re.compile(p.pattern.encode(), p.flags & ~re.UNICODE))
            else:
                out.append(p)
        else:
            raise TypeError(f"expect pattern must be bytes, str or re.Pattern, not "
                            f"{type(p).__name__}")
    if not out:
        raise _core.ArgumentError("expect needs at least one pattern")
    return out


def describe_patterns(patterns: Sequence[re.Pattern[bytes]]) -> str:
    return ", ".join(repr(p.pattern) for p in patterns)


_open_ports: "weakref.WeakSet[SerialPort]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Reader threads call into Python for callbacks: stop them before the interpreter
    # goes away.
    for p in list(_open_ports):
        p.close()


class SerialPort:
    """A serial port: ``SerialPort("/dev/ttyUSB0", 115200, flow="rtscts")`` for a real
    module's UART1, or a virtual module's ``/dev/pts/N``.

    >>> with fotabench.SerialPort("/dev/ttyUSB0", log="uart1.log") as port:  # doctest: +SKIP
    ...     port.write(b"AT\\r")
    ...     port.expect(b"OK", timeout=2).before

    ``log`` writes every byte in and out with its time; ``timeline`` gets the port's
    events (``port.open``, ``rx``, ``tx``, ``overflow``, ``port.lost``...);
    ``ring_size`` bounds the bytes held for :meth:`read` and :meth:`expect` (1 MiB by
    default; on overflow the oldest go and the next read raises
    :class:`fotabench.DataLostError` with the count).
    """

    def __init__(self, path: str | os.PathLike[str], baud: int = 115200, *,
                 data_bits: int = 8, parity: Literal["none", "odd", "even"] = "none",
                 stop_bits: int = 1, flow: Literal["none", "rtscts", "xonxoff"] = "none",
                 ring_size: int = 0, name: str | None = None,
                 log: str | os.PathLike[str] | None = None, timeline: Timeline | None = None,
                 backend: Literal["auto", "termios", "libserialport"] = "auto"):
        self.timeline = timeline
        self._core = _core.SerialPort(
            path, baud, data_bits, parity, stop_bits, flow, ring_size, name,
            None if log is None else os.fspath(log),
            None if timeline is None else timeline._core, backend)
        self._buf = bytearray()
        self._lock = threading.Lock()
        # Kept here too: a closed port still says which one it was.
        self._path, self._name = self._core.path, self._core.name
        _open_ports.add(self)

    # --- properties ---------------------------------------------------------------
    @property
    def path(self) -> str | None:
        return self._path

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def log_path(self) -> str | None:
        return self._core.log_path

    @property
    def backend(self) -> str | None:
        """``"termios"`` (pseudo-terminal) or ``"libserialport"``."""
        return self._core.backend

    @property
    def closed(self) -> bool:
        return self._core.closed

    def stats(self) -> dict[str, Any]:
        """rx_bytes, tx_bytes, dropped_bytes, last_rx_ns, open."""
        return dict(self._core.stats())

    # --- I/O ----------------------------------------------------------------------
    def write(self, data: bytes | str, timeout: float | None = 10.0) -> int:
        """Send all of data (str is UTF-8); returns its length. Waits for room up to
        timeout seconds (None: for ever, 0: only what fits now), then
        :class:`fotabench.BenchTimeoutError`; Ctrl-C and a close() from another thread
        end the wait (KeyboardInterrupt, :class:`fotabench.ClosedError`)."""
        if isinstance(data, str):
            data = data.encode()
        return self._core.write(data, timeout)

    def read(self, size: int = 65536, timeout: float | None = 0.0) -> bytes:
        """Up to size bytes (at most what the ring holds); waits up to timeout seconds
        (None: for ever, 0: not at all) for the first; b"" at the timeout. Bytes held
        back by an earlier expect() come first. With a :class:`fotabench.Modem`
        attached the stream is the Modem's: :class:`fotabench.BusyError`."""
        with self._lock:
            if self._buf:
                out = bytes(self._buf[:size])
                del self._buf[:size]
                return out
        return self._core.read(size, timeout)

    def tail(self, n: int = 4096) -> bytes:
        """The last bytes received (at most 4096), whoever read them."""
        return self._core.tail(n)

    def expect(self, patterns: Pattern | Sequence[Pattern], timeout: float | None = 10.0,
               inactivity: float | None = None) -> Match:
        """Wait until one of patterns appears in the byte stream and return the
        :class:`Match`; bytes up to the match's end are consumed. A pattern is literal
        bytes/str or a compiled regex. ``inactivity`` ends the wait when no byte has
        arrived for that many seconds (an upgrade takes minutes, silence does not).
        On timeout :class:`ExpectTimeout` shows the last bytes and the log path."""
        regs = compile_patterns(patterns)
        timeout_ns = _core.timeout_ns(timeout, "timeout")
        inactivity_ns = _core.timeout_ns(inactivity, "inactivity")
        start = now_ns()
        deadline = None if timeout_ns is None else start + timeout_ns
        with self._lock:
            while True:
                best = None
                snapshot = bytes(self._buf)  # matches keep referring to what they saw
                for i, r in enumerate(regs):
                    m = r.search(snapshot)
                    if m and (best is None or m.start() < best[1].start()):
                        best = (i, m)
                if best is not None:
                    i, m = best
                    del self._buf[:m.end()]
                    return Match(i, regs[i], m, snapshot[:m.start()])
                now = now_ns()
                last_rx = max(self._core.stats()["last_rx_ns"], start)
                idle = inactivity_ns is not None and now - last_rx >= inactivity_ns
                if (deadline is not None and now >= deadline) or idle:
                    why = (f"no byte for {inactivity} s" if idle
                           else f"not within {timeout} s")
                    tail = self.tail(400)
                    raise ExpectTimeout(
                        f"expect on {self.name}: none of [{describe_patterns(regs)}] seen "
                        f"({why}); last bytes received: {tail[-200:]!r}"
                        + (f"; log: {self.log_path}" if self.log_path else ""),
                        tail, self.log_path)
                wait = 0.25
                if deadline is not None:
                    wait = min(wait, max(0.0, (deadline - now) / 1e9))
                if inactivity_ns is not None:
                    wait = min(wait, max(0.0, (last_rx + inactivity_ns - now) / 1e9))
                chunk = self._core.read(65536, wait)
                if chunk:
                    self._buf += chunk
                    if len(self._buf) > EXPECT_WINDOW:
                        del self._buf[:len(self._buf) - EXPECT_WINDOW]

    # --- control ------------------------------------------------------------------
    def set_dtr(self, on: bool) -> None:
        self._core.set_dtr(on)

    def set_rts(self, on: bool) -> None:
        self._core.set_rts(on)

    def signals(self) -> dict[str, bool]:
        """cts, dsr, dcd, ri (UnsupportedError on a pseudo-terminal)."""
        return self._core.signals()

    def send_break(self, duration: float = 0.25) -> None:
        self._core.send_break(max(1, int(duration * 1000)))

    def flush(self, input: bool = True, output: bool = True) -> None:
        """Discard unread input (and what expect() held) and/or unsent output."""
        which = (1 if input else 0) | (2 if output else 0)
        if not which:
            return
        if input:
            with self._lock:
                self._buf.clear()
        self._core.flush(which)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until all output has left (the one timeout rule; BenchTimeoutError when
        flow control still holds some at the end). Ctrl-C and a close() from another
        thread end it. On a pseudo-terminal it waits the line time of what was written
        at the port's baud, as a UART would."""
        self._core.drain(timeout)

    def configure(self, baud: int = 115200, *, data_bits: int = 8,
                  parity: Literal["none", "odd", "even"] = "none", stop_bits: int = 1,
                  flow: Literal["none", "rtscts", "xonxoff"] = "none") -> None:
        self._core.configure(baud, data_bits, parity, stop_bits, flow)

    def reopen(self) -> None:
        """Open the same path again after it disappeared (same settings, same log)."""
        self._core.reopen()

    def close(self) -> None:
        self._core.close()
        _open_ports.discard(self)

    def __enter__(self) -> SerialPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"open {self.backend}"
        return f"<SerialPort {self.name} {self.path} {state}>"
