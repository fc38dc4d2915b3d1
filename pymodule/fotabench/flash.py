"""Flashing an app image over UART through the MediaTek BootROM (docs/flashing.md).

::

    with fotabench.Flasher("/dev/ttyUSB0", da="MTK_AllInOne_DA.bin") as f:
        result = f.flash("APP.bin", verify=True, progress=print)

The C core runs the whole session with the GIL released; Ctrl-C ends it within 50 ms
with KeyboardInterrupt (the module is left in download mode: power it again).
"""
from __future__ import annotations

import os
import sys
import threading
from typing import IO, Callable, Union

from . import _core
from .serial import SerialPort
from .timeline import Timeline

#: Environment variable naming the download agent when ``da`` is not given.
DA_ENV = "FOTABENCH_DA"

DA_MISSING = (
    "no download agent given: fotabench needs MediaTek's DA for MT6261/MT2503, the file "
    "MTK_AllInOne_DA.bin that ships with Quectel's QFlash (in QFlash's folder); pass it with "
    f"--da FILE (Python: da=...) or set {DA_ENV}. fotabench never bundles it."
)

ProgressFn = Callable[[str, int, int], object]
TraceFn = Callable[[str, bytes, int], object]
ImageArg = Union[str, "os.PathLike[str]", bytes]


class FlashResult(_core.FlashResultBase):
    """What a flash found and did (times in nanoseconds): a frozen dataclass whose fields
    are declared once, in the extension (``_core.FlashResultBase``, from ext/flash.c's
    table), so they cannot drift from what the C core returns."""

    @property
    def line_rate_ratio(self) -> float:
        """Data phase: line-rate floor (bytes on the wire / (baud / 10)) over the time
        it took; 1.0 is the wire's limit."""
        if not self.write_ns or not self.baud:
            return 0.0
        floor_ns = self.data_bytes * 10 * 1e9 / self.baud
        return floor_ns / self.write_ns


def trace_printer(stream: IO[str] | None = None) -> TraceFn:
    """A trace callback that prints every byte on the wire as esptool's --trace does:
    time since the first byte, direction, length, hex dump (16 bytes a line)."""
    out = stream if stream is not None else sys.stderr
    start: list[int] = []

    def trace(direction: str, data: bytes, t_ns: int) -> None:
        if not start:
            start.append(t_ns)
        t = (t_ns - start[0]) / 1e9
        what = "Write" if direction == "tx" else "Read"
        lines = [f"TRACE +{t:.3f} {what} {len(data)} bytes:"]
        for i in range(0, len(data), 16):
            chunk = data[i:i + 16]
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            lines.append(f"    {i:04x}  {chunk.hex(' '):<47}  {text}")
            if i >= 256 and len(data) > 16 * 18:
                lines.append(f"    ... {len(data) - i - 16} more bytes")
                break
        out.write("\n".join(lines) + "\n")

    return trace


def da_path(da: str | os.PathLike[str] | None) -> str:
    """The DA file to use: the argument, else $FOTABENCH_DA; ArgumentError if none."""
    if da is None:
        da = os.environ.get(DA_ENV) or None
    if da is None:
        raise _core.ArgumentError(DA_MISSING)
    return os.fspath(da)


def da_inspect(da: str | os.PathLike[str]) -> dict[str, object]:
    """The DA file's id, version and entries (hw code and load regions)."""
    return dict(_core.da_inspect(os.fspath(da)))


class Flasher:
    """Flashes app images into modules over one UART (a module in download mode:
    PWRKEY held low at power-up, docs/flashing.md).

    ``port`` is a path (opened 115200 8N1, closed with the flasher) or an open
    :class:`SerialPort` (left open). ``da`` is the download agent file
    (``MTK_AllInOne_DA.bin`` from Quectel's QFlash; default ``$FOTABENCH_DA``).
    ``handshake_timeout`` is how long to wait for the module's BootROM (None: for ever).
    """

    def __init__(self, port: str | os.PathLike[str] | SerialPort, *,
                 da: str | os.PathLike[str] | None = None, timeline: Timeline | None = None,
                 source: str = "flash", handshake_timeout: float | None = 60.0,
                 answer_timeout: float = 3.0, max_resends: int = 3,
                 log: str | os.PathLike[str] | None = None):
        self.da = da_path(da)
        # The agent file is read and checked before the port is touched: a wrong file is
        # said before the operator powers anything.
        self.da_info = da_inspect(self.da)
        self.timeline = timeline
        self.source = source
        self.handshake_timeout = handshake_timeout
        self.answer_timeout = answer_timeout
        self.max_resends = max_resends
        if isinstance(port, SerialPort):
            self._port, self._owned = port, False
        else:
            self._port = SerialPort(port, 115200, name=source, timeline=None, log=log)
            self._owned = True

    @property
    def port(self) -> SerialPort:
        return self._port

    def flash(self, image: ImageArg, *, verify: bool = False, baud: int = 921600,
              reset: bool = True, progress: ProgressFn | None = None,
              trace: TraceFn | bool | None = None,
              power_up: Callable[[], object] | None = None,
              cancel: Callable[[], object] | None = None) -> FlashResult:
        """Check the image, wait for the BootROM, flash, and (``reset``) boot it.

        ``power_up`` (a station with GPIO wiring: VBAT on with PWRKEY held low) is called
        on its own thread once the handshake has begun; without it the operator powers
        the module.

        ``progress(phase, done, total)`` per agent chunk, erase unit, packet and
        read-back packet; ``trace(direction, data, t_ns)`` for every byte on the wire
        (``True``: print them to stderr as esptool --trace does).

        ``cancel()`` is asked every 50 ms at most: truthy ends the session with
        KeyboardInterrupt, an exception it raises ends it with that exception (Ctrl-C
        reaches only the main thread; a flash on another thread is stopped this way).
        """
        data = image if isinstance(image, bytes) else _read_image(image)
        if trace is True:
            trace = trace_printer()
        elif trace is False:
            trace = None
        helper = None
        if power_up is not None:
            helper = threading.Timer(0.05, power_up)  # after the first A0s went out
            helper.daemon = True
            helper.start()
        try:
            raw = _core.flash(
                self._port._core, self.da, data, baud=baud, verify=verify, reset=reset,
                handshake_timeout=self.handshake_timeout, answer_timeout=self.answer_timeout,
                max_resends=self.max_resends,
                timeline=None if self.timeline is None else self.timeline._core,
                source=self.source, progress=progress, trace=trace, cancel=cancel)
        finally:
            if helper is not None:
                helper.cancel()
                if helper.is_alive():
                    helper.join()
        return FlashResult(*raw)

    def close(self) -> None:
        if self._owned:
            self._port.close()

    def __enter__(self) -> Flasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_image(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _core.FileError(f"{os.fspath(path)}: {e.strerror}") from None
