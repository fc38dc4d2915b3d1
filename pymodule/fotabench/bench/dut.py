"""One module under test: its UART (a :class:`fotabench.Modem`), its lines (PWRKEY,
RESET, VBAT, WDI), its model, and the power moves of the M66 hardware design (spec
opencpu-fota.md section 9)::

    >>> with Dut.from_slot(SlotSpec("s1", virtual=VirtualSpec(boot_timing="fast"))) as dut:
    ...     dut.power_on(); dut.wait_ready()                          # doctest: +SKIP
    ...     dut.identity()                                            # doctest: +SKIP
    Identity(imei='86...', model='M66', version='1.0.0', build='...')

Lines are logical, by role: PWRKEY 1 = pressed, RESET 1 = reset held, VBAT 1 = supply
on, WDI read only. ``LineSpec.active_low`` says how the slot is wired (the bench drives
the physical line low to assert the role); a virtual module's lines are the module's
own pins, so PWRKEY and RESET are active low there.

A Dut owns what it opened (the port, the chip, a virtual module) and releases it all on
close(); power events it makes are kept in ``power_events`` on the bench clock, the
evidence :class:`fotabench.bench.Upgrade` uses to tell a power cut by the bench from a
module that rebooted on its own.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from ..gpio import GpioChip, GpioLine
from ..modem import Modem
from ..serial import SerialPort
from ..timeline import Timeline, now_ns
from .config import LINE_ROLES, LineSpec, SlotSpec, VirtualSpec

__all__ = ["Dut", "Identity", "PowerEvent", "DutError", "build_agent", "bundled_agent"]

PathLike = Union[str, "os.PathLike[str]"]
_ROOT = Path(__file__).resolve().parents[3]
_READY = re.compile(rb'\+FBREADY: "([^"]*)","([^"]*)"')
_VER = re.compile(r'\+FBVER: "([^"]*)","([^"]*)"')

# M66 hardware design (spec section 9): VBAT stable ~100 ms, PWRKEY low >= 1 s powers
# on, a 0.7-1 s pulse powers off. Margins inside those limits, not on them.
VBAT_SETTLE_S = 0.1
PWRKEY_ON_S = 1.2
PWRKEY_OFF_S = 0.85
RESET_PULSE_S = 0.1


class DutError(RuntimeError):
    """The bench cannot drive this module as asked (a line not wired, a port that
    cannot be opened, a virtual module that would not start). Always a bench error,
    never a failure of the module."""


@dataclass(frozen=True)
class PowerEvent:
    """A power move the bench made: ``what`` is "vbat_on", "vbat_off" (a cut),
    "pwrkey_on" (power-on press), "pwrkey_off" (power-off pulse), "reset"."""

    t_ns: int
    what: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"t_ns": self.t_ns, "what": self.what, "detail": self.detail}


@dataclass(frozen=True)
class Identity:
    """Who the module is: ``imei`` from ``AT+GSN``, ``model`` from ``AT+CGMM`` (else
    ``ATI``), the running app's version. A field the module does not answer is None."""

    imei: Optional[str]
    model: Optional[str]
    version: Optional[str]
    build: Optional[str]


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # an ASan preload meant for this Python must not reach make
    return env


def firmware_dir() -> Path:
    """The firmware sources: $FOTABENCH_FIRMWARE, else the checkout this package
    lives in (an installed copy, e.g. the ASan pass's, has none: set the variable)."""
    env = os.environ.get("FOTABENCH_FIRMWARE")
    d = Path(env) if env else _ROOT / "firmware"
    if not (d / "Makefile").is_file():
        raise DutError(f"no firmware sources at {d}: set FOTABENCH_FIRMWARE to the "
                       "checkout's firmware/ directory")
    return d


def build_agent(version: str, out: PathLike, pad: int = 0,
                firmware: Optional[PathLike] = None, model: Optional[str] = None) -> Path:
    """The bench agent for the virtual module as an app image for ``model`` (M66 by
    default) (``make -C firmware sim VERSION=... OUT=... MODEL=...``; SANITIZE=1 in the
    ASan pass)."""
    fw = Path(firmware) if firmware is not None else firmware_dir()
    cmd = ["make", "-s", "-C", str(fw), "sim", f"VERSION={version}",
           f"OUT={os.fspath(out)}", f"PAD={pad}"]
    if model:
        cmd.append(f"MODEL={model}")
    if os.environ.get("FOTABENCH_SANITIZE") == "1":
        cmd.append("SANITIZE=1")
    r = subprocess.run(cmd, env=_tool_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise DutError(f"building the agent failed ({' '.join(cmd)}):\n"
                       f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return Path(out)


_bundled_lock = threading.Lock()


def bundled_agent(version: str = "1.0.0", model: str = "M66") -> Path:
    """The agent image a virtual slot starts on when its VirtualSpec names no app
    (built once per checkout and model into firmware/build/agents/; from an installed
    wheel, which has no firmware sources, the image it bundles)."""
    if not os.environ.get("FOTABENCH_FIRMWARE") and not (_ROOT / "firmware" / "Makefile").is_file():
        from ..sim import SimError, agent_image
        try:
            return agent_image(version, model)
        except SimError as e:
            raise DutError(str(e)) from e
    # The ASan pass builds the agent with ASan too: it must not share the cache.
    sub = "agents-asan" if os.environ.get("FOTABENCH_SANITIZE") == "1" else "agents"
    out = firmware_dir() / "build" / sub / f"agent_{model}_{version}.bin"
    with _bundled_lock:
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(f".tmp{os.getpid()}")
            build_agent(version, tmp, model=model)
            os.replace(tmp, out)
    return out


# Faults of a VirtualSpec that are board options: the station file's module faults
# (docs/stations.md) and a few more board settings for tests. The rest (server faults,
# power_cut at a percentage) are injected by Upgrade, not by the board.
_BOARD_FAULTS: dict[str, Callable[[str], tuple[str, Any]]] = {
    "attach_fail": lambda v: ("attach_fail", True),
    "pdp_fail": lambda v: ("pdp_fail", True),
    "wdt_timeout": lambda v: ("wdt_timeout", float(v)),
    "http_timeout": lambda v: ("http_timeout", int(v)),
    "ftp_retry_ms": lambda v: ("ftp_retry_ms", int(v)),
    "flash_rate": lambda v: ("flash_rate", float(v)),
    "line_fault": lambda v: ("line_fault", _line_fault(v)),
}


def _line_fault(value: str) -> str:
    """``mode=flip,first=3,count=2`` (the station file's form) as the board's
    ``--line-fault flip:3:2``."""
    kv = dict(item.strip().partition("=")[::2] for item in value.split(",") if item.strip())
    return f"{kv.get('mode', 'flip')}:{int(kv.get('first', 0))}:{int(kv.get('count', 1))}"

BOARD_FAULTS = frozenset(_BOARD_FAULTS)


def board_fault_options(faults: tuple[str, ...]) -> dict[str, Any]:
    """Board options from a VirtualSpec's faults (``"attach_fail"``,
    ``"wdt_timeout=0"``...; ``-`` and ``_`` alike); other kinds are left to the bench."""
    out: dict[str, Any] = {}
    for f in faults:
        name, _, value = f.replace(":", "=", 1).partition("=")
        conv = _BOARD_FAULTS.get(name.strip().replace("-", "_"))
        if conv is not None:
            k, v = conv(value.strip())
            out[k] = v
    return out


class Dut:
    """A module under test. Build it with :meth:`from_slot` (real or virtual), or
    give the parts: a Modem and the lines by role."""

    def __init__(self, modem: Modem, *, name: str = "dut", model: Optional[str] = "M66",
                 lines: Optional[dict[str, GpioLine]] = None, timeline: Optional[Timeline] = None,
                 virtual: Any = None, owned: tuple[Any, ...] = (), kind: str = "real",
                 where: str = ""):
        self.modem = modem
        self.name = name
        self.model = model
        self.lines: dict[str, GpioLine] = dict(lines or {})
        unknown = set(self.lines) - set(LINE_ROLES)
        if unknown:
            raise ValueError(f"unknown line roles {sorted(unknown)} (use {LINE_ROLES})")
        self.timeline = timeline
        self.vm = virtual               # the VirtualModule, for a virtual slot
        self.kind = kind
        self.where = where
        self.slot: Optional[SlotSpec] = None   # set by from_slot
        self.power_events: list[PowerEvent] = []
        self._owned = list(owned)       # closed in reverse order
        self._closed = False
        self._power_lock = threading.Lock()
        # The agent's unsolicited lines are URCs for the AT engine: they never get
        # mixed into a command's response.
        for prefix in ("+FBSTATE:", "+FBREADY:", "+FBRESETREQ"):
            modem.add_urc(prefix)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_slot(cls, slot: SlotSpec, *, timeline: Optional[Timeline] = None,
                  log_dir: Optional[PathLike] = None,
                  state_dir: Optional[PathLike] = None) -> "Dut":
        """Open a slot: a serial port and a gpiochip (libgpiod) for a real one, or
        start a virtual module (powered off: the bench powers it through its lines)
        for ``slot.virtual``. ``log_dir`` gets the UART byte log ``<slot>.uart1.log``."""
        log = None
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            log = Path(log_dir) / f"{slot.name}.uart1.log"
        if slot.virtual is not None:
            dut = cls._virtual(slot, slot.virtual, timeline, log, state_dir)
            dut.slot = slot
            return dut
        if not slot.port:
            raise DutError(f"slot {slot.name}: no serial port given (port:)")
        owned: list[Any] = []
        try:
            owned.append(_PortLock(slot.port, slot.name))
            try:
                modem = Modem(slot.port, baud=slot.baud, name=slot.name, log=log,
                              timeline=timeline)
            except Exception as e:
                raise DutError(f"slot {slot.name}: cannot open {slot.port}: {e}") from e
            owned.append(modem)
            lines: dict[str, GpioLine] = {}
            if slot.lines:
                if not slot.gpio_chip:
                    raise DutError(f"slot {slot.name}: lines given but no gpio_chip")
                try:
                    chip = GpioChip(slot.gpio_chip, timeline=timeline)
                except Exception as e:
                    raise DutError(f"slot {slot.name}: cannot open {slot.gpio_chip}: {e}") from e
                owned.append(chip)
                lines = _request_lines(chip, slot.lines, slot.name)
            dut = cls(modem, name=slot.name, model=slot.model, lines=lines,
                      timeline=timeline, owned=tuple(owned), kind="real",
                      where=f"{slot.port}" + (f" + {slot.gpio_chip}" if slot.lines else ""))
            dut.slot = slot
            return dut
        except BaseException:
            for o in reversed(owned):
                o.close()
            raise

    @classmethod
    def _virtual(cls, slot: SlotSpec, spec: VirtualSpec, timeline: Optional[Timeline],
                 log: Optional[Path], state_dir: Optional[PathLike]) -> "Dut":
        from ..sim import VirtualModule  # the board program is only needed here
        # A blank module to be flashed needs no app (no agent build just to erase it).
        app: Optional[Path] = (Path(spec.app) if spec.app else None if spec.blank
                               else bundled_agent("1.0.0", slot.model))
        # Short path: pty and socket paths must fit sun_path.
        tmp = None
        if state_dir is None:
            tmp = tempfile.mkdtemp(prefix="fbdut")
            state = Path(tmp)
        else:
            state = Path(state_dir)
        owned: list[Any] = []
        board_log = None
        if log is not None:
            # The board program's own messages beside the UART log, not on the
            # bench's terminal (a live table of 8 slots would be torn by them).
            board_log = open(log.with_name(f"{slot.name}.board.log"), "ab")
            owned.append(board_log)
        try:
            vm = VirtualModule(app, state, power=False, model=slot.model, stderr=board_log,
                               boot_timing=spec.boot_timing,
                               link_rate=spec.link_rate, latency_ms=spec.latency_ms,
                               blank=spec.blank, **board_fault_options(spec.faults))
            try:
                vm.start()
            except Exception as e:
                raise DutError(f"slot {slot.name}: the virtual module did not start: {e}") from e
            owned.append(vm)
            chip = GpioChip.virtual(vm.gpio, timeline=timeline)
            owned.append(chip)
            # The board's lines are the module's pins: PWRKEY and RESET act when low.
            wiring = {"PWRKEY": LineSpec("PWRKEY", True), "RESET": LineSpec("RESET", True),
                      "VBAT": LineSpec("VBAT"), "WDI": LineSpec("WDI")}
            # An unwired virtual slot stands for a slot without GPIO: no lines.
            lines = _request_lines(chip, wiring, slot.name) if spec.wired else {}
            modem = Modem(vm.uart1, name=slot.name, log=log, timeline=timeline)
            owned.append(modem)
            if tmp is not None:
                owned.insert(0, _RemoveDir(tmp))
            return cls(modem, name=slot.name, model=slot.model, lines=lines,
                       timeline=timeline, virtual=vm, owned=tuple(owned), kind="virtual",
                       where=f"virtual module pid {vm.pid}, {vm.uart1}")
        except BaseException:
            for o in reversed(owned):
                o.close() if not hasattr(o, "stop") else o.stop()
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def virtual(cls, app: Optional[PathLike] = None, *, name: str = "vdut",
                model: str = "M66", boot_timing: str = "fast",
                link_rate: Optional[Union[int, str]] = "unlimited",
                timeline: Optional[Timeline] = None, **spec: Any) -> "Dut":
        """A virtual module in one call (fast boot and an unlimited link by default)."""
        vs = VirtualSpec(app=None if app is None else os.fspath(app), boot_timing=boot_timing,
                         link_rate=link_rate, **spec)
        return cls.from_slot(SlotSpec(name, model=model, virtual=vs), timeline=timeline)

    # -- lines and power ------------------------------------------------------------------
    def line(self, role: str) -> GpioLine:
        ln = self.lines.get(role)
        if ln is None:
            raise DutError(f"{self.name}: no {role} line wired"
                           + (f" (wired: {', '.join(sorted(self.lines))})" if self.lines
                              else " (this slot has no GPIO lines)"))
        return ln

    @property
    def wdi(self) -> Optional[GpioLine]:
        return self.lines.get("WDI")

    @property
    def can_power(self) -> bool:
        return "PWRKEY" in self.lines

    def _power(self, what: str, detail: str = "", t_ns: Optional[int] = None) -> PowerEvent:
        ev = PowerEvent(t_ns or now_ns(), what, detail)
        self.power_events.append(ev)
        if self.timeline is not None:
            self.timeline.add(f"power:{self.name}", what, detail=detail)
        return ev

    def power_on(self) -> None:
        """VBAT on (if wired) and ~100 ms to settle, then PWRKEY pressed 1.2 s (>= 1 s)."""
        with self._power_lock:
            if "VBAT" in self.lines:
                t = self.lines["VBAT"].set(1)
                self._power("vbat_on", t_ns=t)
                time.sleep(VBAT_SETTLE_S)
            t0, _ = self.line("PWRKEY").pulse(1, PWRKEY_ON_S)
            self._power("pwrkey_on", f"{PWRKEY_ON_S} s", t_ns=t0)

    def power_off(self) -> None:
        """A normal power-down: PWRKEY pressed 0.85 s (0.7-1 s)."""
        with self._power_lock:
            t0, _ = self.line("PWRKEY").pulse(1, PWRKEY_OFF_S)
            self._power("pwrkey_off", f"{PWRKEY_OFF_S} s", t_ns=t0)

    def cut_power(self, detail: str = "cut") -> int:
        """VBAT off at once (the module dies; its flash keeps what was written).
        ``detail`` goes with the power event (why it was cut)."""
        with self._power_lock:
            t = self.line("VBAT").set(0)
            self._power("vbat_off", detail, t_ns=t)
            return t

    def reset(self) -> None:
        """RESET held 0.1 s."""
        with self._power_lock:
            t0, _ = self.line("RESET").pulse(1, RESET_PULSE_S)
            self._power("reset", f"{RESET_PULSE_S} s", t_ns=t0)

    # -- download mode (spec sections 9, 10; docs/flashing.md) ----------------------------
    @property
    def can_download_mode(self) -> bool:
        """PWRKEY and VBAT wired: the bench can power the module up in download mode."""
        return "PWRKEY" in self.lines and "VBAT" in self.lines

    def hold_for_download(self, off_s: float = 0.3) -> None:
        """First half of a power-up in download mode: PWRKEY held, VBAT cut, ``off_s``
        for the module to die. :meth:`supply_on` is the second half, once the host's
        handshake is running (the BootROM listens only ~150 ms after power-up)."""
        with self._power_lock:
            t = self.line("PWRKEY").set(1)
            self._power("pwrkey_hold", "download mode", t_ns=t)
            t = self.line("VBAT").set(0)
            self._power("vbat_off", "download mode", t_ns=t)
        time.sleep(off_s)

    def supply_on(self) -> None:
        """VBAT on (PWRKEY still held: the module powers up in download mode)."""
        with self._power_lock:
            t = self.line("VBAT").set(1)
            self._power("vbat_on", "download mode", t_ns=t)

    def release_pwrkey(self) -> None:
        with self._power_lock:
            ln = self.lines.get("PWRKEY")
            if ln is not None and ln.get() == 1:
                t = ln.set(0)
                self._power("pwrkey_release", t_ns=t)

    @contextmanager
    def raw_uart(self) -> Iterator[SerialPort]:
        """UART1's open port for a user of raw bytes (a flash through the BootROM,
        :class:`fotabench.Flasher` takes it): the Modem's AT engine is paused for the
        ``with`` block (:meth:`Modem.paused`), then the port is set back to the slot's
        baud rate (a flash leaves it at 115200 8N1) and the engine attached again, so
        ``dut.modem`` works on as before. The port is not opened a second time."""
        with self.modem.paused() as port:
            try:
                yield port
            finally:
                slot = self.slot
                if slot is not None and slot.virtual is None and slot.baud != 115200 \
                        and not port.closed:
                    port.configure(slot.baud)

    def power_events_since(self, t_ns: int) -> list[PowerEvent]:
        return [e for e in list(self.power_events) if e.t_ns >= t_ns]

    # -- the agent --------------------------------------------------------------------------
    def is_on(self, timeout: float = 1.0) -> bool:
        """Does the module answer ``AT`` (within timeout)?"""
        try:
            return self.modem.command("AT", timeout, check=False).ok
        except Exception:
            return False

    def wait_ready(self, timeout: float = 30.0) -> tuple[str, str, int]:
        """Wait for the agent's ``+FBREADY`` (once per boot); (version, build, t_ns)."""
        m = self.modem.expect(re.compile(_READY.pattern), timeout=timeout)
        return m.match.group(1).decode(), m.match.group(2).decode(), m.t_ns

    def version(self, timeout: float = 10.0) -> tuple[str, str]:
        """The running app's (version, build) from ``AT+FBVER?``."""
        r = self.modem.command("AT+FBVER?", timeout)
        for line in r.lines:
            m = _VER.search(line)
            if m:
                return m.group(1), m.group(2)
        raise DutError(f"{self.name}: AT+FBVER? gave no +FBVER line: {r.lines}")

    def identity(self, timeout: float = 10.0) -> Identity:
        """IMEI (``AT+GSN``), model (``AT+CGMM``, else ``ATI``), version. Fields the
        module does not answer are None."""
        imei = model = None
        r = self.modem.command("AT+GSN", timeout, check=False)
        if r.ok:
            imei = next((ln.strip() for ln in r.lines if re.fullmatch(r"\d{14,17}", ln.strip())),
                        None)
        r = self.modem.command("AT+CGMM", timeout, check=False)
        if r.ok and r.lines:
            model = r.lines[0].strip().removeprefix("Quectel_").removeprefix("Quectel ")
        else:
            r = self.modem.command("ATI", timeout, check=False)
            found = next((ln for ln in r.lines if re.match(r"Quectel[_ ]", ln)
                          and "Ltd" not in ln), None) if r.ok else None
            if found:
                model = re.sub(r"^Quectel[_ ]", "", found.strip())
        version: Optional[str] = None
        build: Optional[str] = None
        try:
            version, build = self.version(timeout)
        except Exception:  # noqa: BLE001 - identity is best effort: None says "no answer"
            pass
        return Identity(imei, model, version, build)

    # -- life -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the port, the lines and the virtual module (if any), in that order."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for o in reversed(self._owned):
            try:
                o.stop() if hasattr(o, "stop") and not isinstance(o, Modem) else o.close()
            except Exception as e:  # keep closing the rest
                errors.append(e)
        self._owned.clear()
        if errors:
            raise DutError(f"{self.name}: closing: {errors[0]}") from errors[0]

    def __enter__(self) -> "Dut":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        lines = ",".join(sorted(self.lines)) or "no lines"
        state = " closed" if self._closed else ""
        return f"<Dut {self.name} {self.model or '?'} {self.kind}: {self.where}; {lines}{state}>"


class _PortLock:
    """An advisory lock on a real slot's serial port for as long as the Dut has it
    (flock, as lock-aware tools take it): two benches, or a bench and a terminal
    program, must not both talk to one module. libserialport opens ports shared, so
    without this a busy port would show only as a module that never answers."""

    def __init__(self, port: str, slot: str) -> None:
        import errno
        import fcntl
        try:
            self.fd: Optional[int] = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno == errno.EBUSY:   # TIOCEXCL: another program holds it exclusively
                raise DutError(f"slot {slot}: {port} is busy: another program has it open "
                               "exclusively") from None
            raise DutError(f"slot {slot}: cannot open {port}: {e.strerror or e}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise DutError(f"slot {slot}: {port} is busy: another process holds it "
                           "(another bench or a terminal program)") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _RemoveDir:
    def __init__(self, path: str):
        self.path = path

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _request_lines(chip: GpioChip, wiring: dict[str, LineSpec], slot: str) -> dict[str, GpioLine]:
    out: dict[str, GpioLine] = {}
    for role, spec in wiring.items():
        if role not in LINE_ROLES:
            raise DutError(f"slot {slot}: unknown line role {role!r} (use {LINE_ROLES})")
        try:
            if role == "WDI":
                out[role] = chip.request_input(spec.line, active_low=spec.active_low)
            else:
                # Start released: VBAT off would cut a module already running, so a real
                # VBAT starts on (a bench does not kill a module it merely opened).
                initial = 1 if role == "VBAT" else 0
                out[role] = chip.request_output(spec.line, initial=initial,
                                                active_low=spec.active_low)
        except Exception as e:
            for ln in out.values():
                ln.release()
            raise DutError(f"slot {slot}: cannot request {role} (line {spec.line!r}): {e}") from e
    return out
