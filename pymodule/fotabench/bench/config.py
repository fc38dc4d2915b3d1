"""What a station is made of, as plain data: the contract between the station file
(``station.py`` reads YAML into these), the bench (``Dut.from_slot``, ``Bench``) and the
records. Frozen dataclasses: a loaded station is never changed behind a running bench.

Durations are seconds (float); ``None`` never means "forever" here: every phase has a
finite default that fits a GPRS module (spec opencpu-fota.md sections 2, 4, 8, 9).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Timeouts", "LineSpec", "VirtualSpec", "SlotSpec", "ServerSpec", "StationSpec",
           "LINE_ROLES"]

#: The module lines a station may wire, by role.
LINE_ROLES = ("PWRKEY", "RESET", "VBAT", "WDI")


@dataclass(frozen=True)
class Timeouts:
    """Per-phase limits of one upgrade."""
    boot: float = 30.0                 # power-on (or reset) to +FBREADY
    attach: float = 90.0               # +FBREADY to GPRS attached (+CGREG: 1 / AT+CGATT? 1)
    command: float = 10.0              # one AT command to its final result
    download_inactivity: float = 150.0  # no +FBSTATE line for this long while downloading
                                        # (the module's own HTTP no-data limit is 120 s)
    download_total: float = 1800.0     # AT+FBUPG to UP_SYSTEM_REBOOT / a failure state
    reboot: float = 90.0               # UP_SYSTEM_REBOOT to +FBREADY of the new app
                                        # (the boot loader copies the app while feeding WDI)


@dataclass(frozen=True)
class LineSpec:
    """One GPIO line: its offset (or name) on the slot's chip, and its polarity as wired.
    ``active_low`` means the bench drives the physical line low to assert the role
    (PWRKEY through an inverting transistor is the usual case: False)."""
    line: int | str
    active_low: bool = False


@dataclass(frozen=True)
class VirtualSpec:
    """A virtual module in place of a real one (``virtual: true`` in a station file)."""
    app: Optional[str] = None          # app image it starts on; None = the bundled agent v1
    boot_timing: str = "real"          # "real" (a module's boot and GPRS attach) or "fast"
    link_rate: Optional[int | str] = None   # bit/s or "unlimited"; None = the board's default
    latency_ms: Optional[int] = None
    faults: tuple[str, ...] = ()       # fault specs, e.g. "drop:at=50%,times=1", "power-cut:at=40%"
    blank: bool = False                # starts with its app area erased (to be flashed first)
    wired: bool = True                 # False: the bench drives none of its lines, as a slot
                                       # without GPIO wiring (the operator powers it)


@dataclass(frozen=True)
class SlotSpec:
    """One slot of a station: where a module sits and how it is wired."""
    name: str
    model: str = "M66"
    port: Optional[str] = None         # serial port path (/dev/serial/by-id/... encouraged)
    baud: int = 115200
    gpio_chip: Optional[str] = None    # /dev/gpiochipN or a chip label
    lines: dict[str, LineSpec] = field(default_factory=dict)  # keys from LINE_ROLES
    virtual: Optional[VirtualSpec] = None   # set: a virtual module, port/gpio_chip unused
    power_after: str = "on"            # how the module is left after a run: "on" or "off"
    timeouts: Optional[Timeouts] = None     # None: the station's
    protocol: Optional[str] = None     # "http" or "ftp"; None: the station's


@dataclass(frozen=True)
class ServerSpec:
    """The station's own package server."""
    bind: str = "127.0.0.1"
    advertise: Optional[str] = None    # host the modules reach it by (default: bind)
    http_port: int = 0                 # 0 = any free port
    ftp_port: int = 0
    user: str = "bench"
    password: str = "bench"


@dataclass(frozen=True)
class StationSpec:
    """A whole station, as read from its file (``path`` None when built in code)."""
    name: str
    slots: tuple[SlotSpec, ...]
    server: ServerSpec = ServerSpec()
    timeouts: Timeouts = Timeouts()
    protocol: str = "http"             # "http" or "ftp"
    db: Optional[str] = None           # results database: a path (SQLite) or a postgresql:// DSN
    path: Optional[str] = None

    def slot(self, name: str) -> SlotSpec:
        for s in self.slots:
            if s.name == name:
                return s
        raise KeyError(name)
