"""The AT engine on a serial port: commands with their responses, URCs to
subscribers, expect() on lines. The engine runs in the C core on the port's reader
thread; Python only sees finished lines.

Paste into a shell (a thread plays the module on a pseudo-terminal)::

    >>> import os, threading, fotabench
    >>> module_side, bench_side = os.openpty()
    >>> path = os.ttyname(bench_side); os.close(bench_side)
    >>> def module():
    ...     os.read(module_side, 100)                      # b"AT+FBVER?\\r"
    ...     os.write(module_side, b'+FBREADY: "1.0","b1"\\r\\n+FBVER: "1.0","b1"\\r\\nOK\\r\\n')
    >>> with fotabench.Modem(path, name="uart1") as modem:
    ...     threading.Thread(target=module).start()
    ...     r = modem.command("AT+FBVER?", timeout=5)
    ...     r.ok, r.lines, modem.expect("+FBREADY:", timeout=5).line
    (True, ['+FBVER: "1.0","b1"'], '+FBREADY: "1.0","b1"')
"""
from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import _core
from ._callbacks import CallbackErrors
from .serial import ExpectTimeout, Pattern, SerialPort, compile_patterns, describe_patterns
from .timeline import Timeline, now_ns

__all__ = ["AtError", "AtResponse", "LineMatch", "Modem", "Urc"]


def _text(b: bytes) -> str:
    # Lossless: undecodable bytes survive as surrogates (b.encode(errors=...) restores).
    return b.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class AtResponse:
    """The result of one AT command: ``result`` is "OK", "ERROR", "CME_ERROR",
    "CMS_ERROR", "CUSTOM" (your terminator) or "OTHER" (NO CARRIER, BUSY...);
    ``lines`` its own response lines (no echo, no URCs)."""

    command: str
    result: str
    code: int | None
    final: str
    lines: list[str]
    echoed: bool
    t_sent_ns: int
    t_done_ns: int

    @property
    def ok(self) -> bool:
        return self.result == "OK"

    @property
    def duration(self) -> float:
        """Seconds from sending to the final result."""
        return (self.t_done_ns - self.t_sent_ns) / 1e9


class AtError(_core.FotabenchError):
    """The module answered ERROR / +CME ERROR / +CMS ERROR (``response`` has it all;
    ``error_code`` the +CME/+CMS number)."""

    code_name = "AT_ERROR"

    def __init__(self, message: str, response: AtResponse):
        super().__init__(message)
        self.response = response
        self.error_code = response.code


@dataclass(frozen=True)
class Urc:
    """An unsolicited line with a known prefix, stamped when its last byte arrived."""

    line: str
    t_ns: int


@dataclass(frozen=True)
class LineMatch:
    """What Modem.expect() found: the pattern's ``index``, the ``line`` (or partial
    line, for prompts), the regex ``match`` and the line's time."""

    index: int
    line: str
    match: re.Match[bytes]
    t_ns: int
    partial: bool = False


@dataclass
class _Subscriber:
    prefix: str | None
    fn: Callable[[Urc], Any]
    active: bool = field(default=True)


def _weak_dispatch(ref: weakref.ReferenceType[Modem]) -> Callable[[bytes, int], None]:
    def dispatch(line: bytes, t_ns: int) -> None:
        modem = ref()
        if modem is not None:
            modem._dispatch(line, t_ns)
    return dispatch


def _detach_engine(core: _core.SerialPort) -> None:
    if not core.closed:
        core.at_set_urc_callback(None)
        core.at_detach()


class Modem:
    """The AT engine on a port. ``Modem("/dev/pts/7")`` opens the port (keyword
    arguments go to :class:`SerialPort`) and closes it on close();
    ``Modem(port)`` uses an open :class:`SerialPort` and leaves it open. While a Modem
    is attached it owns the port's byte stream: ``SerialPort.read``/``expect`` raise
    :class:`fotabench.BusyError` (use :meth:`expect` and :meth:`next_line`).

    >>> with fotabench.Modem("/dev/ttyUSB0", flow="rtscts") as modem:  # doctest: +SKIP
    ...     modem.command("ATI").lines
    ...     modem.expect("+CGREG: 1", timeout=60)

    ``urcs`` adds prefixes to the known URCs (+FBSTATE:, +FBREADY:, +FBUPG:, RDY,
    +CFUN:, +CPIN:, Call Ready, SMS Ready, +CREG:, +CGREG:, NORMAL POWER DOWN,
    UNDER-VOLTAGE).
    """

    def __init__(self, port: SerialPort | str | os.PathLike[str], *,
                 urcs: Sequence[str] = (), line_max: int = 0, queue_max: int = 0,
                 timeline: Timeline | None = None, **port_options: Any):
        if isinstance(port, SerialPort):
            if timeline is not None or port_options:
                raise TypeError("timeline and port options belong to the SerialPort when "
                                "one is given")
            self.port = port
            self._owns_port = False
        else:
            self.port = SerialPort(port, timeline=timeline, **port_options)
            self._owns_port = True
        self._core = self.port._core
        self._lock = threading.Lock()
        self._subs: list[_Subscriber] = []
        self._callback_errors = CallbackErrors(f"Modem on {self.port.path}")
        self._subs_lock = threading.Lock()
        self._closed = False
        self._paused = False
        # Kept to attach the engine again as it was after paused().
        self._attach_args = (line_max, queue_max)
        self._urcs: list[str] = []
        try:
            self._core.at_attach(line_max, queue_max)
            for u in urcs:
                self.add_urc(u)
            # The port's engine must not own this Modem (a cycle would keep the port's
            # threads alive until the cyclic GC): it calls back through a weak
            # reference, and a dropped Modem detaches its engine.
            self._core.at_set_urc_callback(_weak_dispatch(weakref.ref(self)))
            self._release = weakref.finalize(self, _detach_engine, self._core)
        except BaseException:
            self.close()
            raise

    @property
    def timeline(self) -> Timeline | None:
        return self.port.timeline

    @property
    def callback_errors(self) -> list[BaseException]:
        """Exceptions raised by URC subscribers (on the callback thread): the first
        was printed to stderr with its traceback, each is on the timeline."""
        return self._callback_errors.errors

    @property
    def closed(self) -> bool:
        return self._closed or self.port.closed

    # --- commands -----------------------------------------------------------------
    def command(self, cmd: str, timeout: float | None = 10.0, *,
                inactivity: float | None = None, terminator: str | None = None,
                check: bool = True) -> AtResponse:
        """Send ``cmd`` (CR is added) and collect its response until the final result.
        ``timeout`` bounds the whole command, ``inactivity`` the silence (no byte for
        that many seconds). An ERROR result raises :class:`AtError` unless
        ``check=False``; no result in time raises :class:`fotabench.BenchTimeoutError`
        with what did arrive.

        Commands are serialized: another thread's command waits its turn."""
        with self._lock:
            result, code, final, lines, echoed, t0, t1 = self._core.at_command(
                cmd, timeout, inactivity, terminator)
        resp = AtResponse(cmd, result, None if code < 0 else code, _text(final),
                          [_text(x) for x in lines], echoed, t0, t1)
        if check and result in ("ERROR", "CME_ERROR", "CMS_ERROR"):
            raise AtError(f"{cmd!r} answered {resp.final!r}", resp)
        return resp

    def __call__(self, cmd: str, timeout: float | None = 10.0, **kw: Any) -> AtResponse:
        return self.command(cmd, timeout, **kw)

    # --- URCs ---------------------------------------------------------------------
    def add_urc(self, prefix: str) -> None:
        """Treat lines starting with prefix as URCs from now on."""
        self._core.at_add_urc(prefix)
        self._urcs.append(prefix)

    def on_urc(self, prefix: str | None, fn: Callable[[Urc], Any]) -> Callable[[], None]:
        """Call fn(Urc) for every URC starting with prefix (None: all), in order, on the
        engine's callback thread with the GIL held (never on the port's reader: a slow
        fn does not hold up reading). Returns a function that unsubscribes."""
        sub = _Subscriber(prefix, fn)
        with self._subs_lock:
            self._subs.append(sub)

        def unsubscribe() -> None:
            sub.active = False
            with self._subs_lock:
                if sub in self._subs:
                    self._subs.remove(sub)

        return unsubscribe

    def _dispatch(self, line: bytes, t_ns: int) -> None:
        urc = Urc(_text(line), t_ns)
        with self._subs_lock:
            subs = list(self._subs)
        for s in subs:
            if s.active and (s.prefix is None or urc.line.startswith(s.prefix)):
                try:
                    s.fn(urc)
                except Exception as e:  # noqa: BLE001 - one bad subscriber must not
                    # silence the others or the reader thread: report it (_callbacks.py).
                    self._callback_errors.report(e, f"URC {urc.line!r}", self.timeline,
                                                 self.port.name or "modem")

    # --- lines and expect -----------------------------------------------------------
    def next_line(self, timeout: float | None = 0.0) -> tuple[str, int, bool] | None:
        """The next unsolicited line as (text, t_ns, is_urc), or None at the timeout."""
        got = self._core.at_next_line(timeout)
        if got is None:
            return None
        line, t_ns, urc = got
        return _text(line), t_ns, urc

    def expect(self, patterns: Pattern | Sequence[Pattern], timeout: float | None = 10.0,
               inactivity: float | None = None) -> LineMatch:
        """Wait for an unsolicited line (URCs included) matching one of patterns
        (literal text or regex, searched within the line); lines before it are
        consumed. A line still being received counts too, for prompts such as "> ".
        On timeout :class:`ExpectTimeout` shows the last bytes and the log path."""
        regs = compile_patterns(patterns)
        timeout_ns = _core.timeout_ns(timeout, "timeout")
        inactivity_ns = _core.timeout_ns(inactivity, "inactivity")
        start = now_ns()
        deadline = None if timeout_ns is None else start + timeout_ns
        rx_seen = self._core.at_wait_rx(0, 0)
        while True:
            got = self._core.at_next_line(0)
            while got is not None:
                line, t_ns, _ = got
                for i, r in enumerate(regs):
                    m = r.search(line)
                    if m:
                        return LineMatch(i, _text(line), m, t_ns)
                got = self._core.at_next_line(0)
            partial = self._core.at_partial()
            if partial:
                for i, r in enumerate(regs):
                    m = r.search(partial)
                    if m:
                        return LineMatch(i, _text(partial), m, now_ns(), partial=True)
            now = now_ns()
            last_rx = max(self.port.stats()["last_rx_ns"], start)
            idle = inactivity_ns is not None and now - last_rx >= inactivity_ns
            if (deadline is not None and now >= deadline) or idle:
                why = f"no byte for {inactivity} s" if idle else f"not within {timeout} s"
                tail = self.port.tail(400)
                log = self.port.log_path
                raise ExpectTimeout(
                    f"expect on {self.port.name}: no line matching "
                    f"[{describe_patterns(regs)}] ({why}); last bytes received: "
                    f"{tail[-200:]!r}" + (f"; log: {log}" if log else ""), tail, log)
            wait = 0.25
            if deadline is not None:
                wait = min(wait, max(0.0, (deadline - now) / 1e9))
            if inactivity_ns is not None:
                wait = min(wait, max(0.0, (last_rx + inactivity_ns - now) / 1e9))
            rx_seen = self._core.at_wait_rx(rx_seen, wait)

    # --- lending the port -------------------------------------------------------------
    @contextmanager
    def paused(self) -> Iterator[SerialPort]:
        """Lend the port's raw byte stream (a flash through the BootROM speaks no AT):
        the engine is detached for the ``with`` block, so :meth:`SerialPort.read` and
        the C flasher get every byte, and attached again afterwards on the same port
        (same log, URC prefixes and subscribers). Lines that arrived meanwhile are not
        the engine's. The port stays open throughout: a Dut's port is never opened
        twice. Commands meanwhile raise :class:`fotabench.ClosedError`."""
        if self.closed:
            raise _core.ClosedError(f"Modem on {self.port.path} is closed")
        if self._paused:
            raise _core.BusyError(f"Modem on {self.port.path} is already paused")
        with self._lock:          # a command in progress ends first
            self._core.at_set_urc_callback(None)
            self._core.at_detach()
            self._paused = True
        try:
            yield self.port
        finally:
            self._paused = False
            if not self._closed and not self.port.closed:
                self._core.at_attach(*self._attach_args)
                for u in self._urcs:
                    self._core.at_add_urc(u)
                self._core.at_set_urc_callback(_weak_dispatch(weakref.ref(self)))

    # --- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        """Detach the engine (and close the port if this Modem opened it). Calls after
        it raise :class:`fotabench.ClosedError`."""
        self._closed = True
        if hasattr(self, "_release"):
            self._release.detach()
        if not self.port.closed and not self._paused:   # paused: nothing attached
            self._core.at_set_urc_callback(None)
            self._core.at_detach()
        if self._owns_port:
            self.port.close()

    def __enter__(self) -> Modem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        errors = len(self.callback_errors)
        return (f"<Modem {state} on {self.port.name or '?'} ({self.port.path})"
                + (f" callback_errors={errors}" if errors else "") + ">")
