"""fotabench: bench harness for Quectel OpenCPU FOTA upgrades.

Packaging pipeline (this release)::

    >>> import fotabench
    >>> app = fotabench.AppImage.wrap("app_raw.bin", "APP.bin", model="M66")
    >>> pkg = fotabench.Package.build("APP.bin", "APP_Upgrade_Package.bin")
    >>> pkg.md5
    '...'
    >>> str(fotabench.ModuleUrl.http("192.168.1.10", "/fota/APP_Upgrade_Package.bin"))
    'http://192.168.1.10/fota/APP_Upgrade_Package.bin'

Every error is a :class:`FotabenchError` carrying the C core's ``code``,
``code_name`` and ``message``.
"""
from importlib import import_module as _import_module

# Not `from typing import ...`: typing alone costs more start-up than the rest of this
# file. mypy treats a TYPE_CHECKING constant like typing's.
TYPE_CHECKING = False

from ._core import (
    ArgumentError,
    BenchTimeoutError,
    BusyError,
    ChecksumError,
    ClosedError,
    CryptoError,
    DataLostError,
    FileError,
    FotabenchError,
    ImageError,
    ModelError,
    PackageError,
    ProtocolError,
    UnsupportedError,
    UrlError,
    library_versions,
)
# Everything but the extension loads on first use (PEP 562): a command such as
# `fotabench md5` should not pay for pyftpdlib, dataclasses and friends at start-up.
_LAZY = {
    "Check": "checks", "md5_file": "checksum",
    "AppImage": "image", "Model": "image", "models": "image",
    "Package": "package", "Special": "package", "ModuleUrl": "url",
    "Edge": "gpio", "GpioChip": "gpio", "GpioLine": "gpio",
    "AtError": "modem", "AtResponse": "modem", "LineMatch": "modem", "Modem": "modem",
    "Urc": "modem",
    "ExpectTimeout": "serial", "Match": "serial", "PortInfo": "serial",
    "SerialPort": "serial", "list_ports": "serial",
    "Event": "timeline", "Timeline": "timeline", "now_ns": "timeline",
    "WatchdogMonitor": "watchdog", "WatchdogResult": "watchdog",
    "VirtualModule": "sim",
    "Flasher": "flash", "FlashResult": "flash",
    "Fault": "server", "PackageServer": "server", "RequestRecord": "server",
    "Record": "records", "RecordError": "records", "Recorder": "records", "Run": "records",
    "RunWriter": "records", "open_database": "records",
    "Dut": "bench.dut", "Identity": "bench.dut",
    "Upgrade": "bench.upgrade", "UpgradeResult": "bench.upgrade",
    "RetryPolicy": "bench.upgrade", "StateSeen": "bench.upgrade",
    "Bench": "bench.run", "BenchRun": "bench.run", "SlotJob": "bench.run",
    "Dialect": "bench.dialect", "StatePattern": "bench.dialect",
    "BenchEvent": "bench.events", "EventBus": "bench.events",
    "check_states": "bench.grammar", "grammar_for": "bench.grammar",
}

if TYPE_CHECKING:
    from .checks import Check
    from .checksum import md5_file
    from .image import AppImage, Model, models
    from .package import Package, Special
    from .url import ModuleUrl
    from .gpio import Edge, GpioChip, GpioLine
    from .modem import AtError, AtResponse, LineMatch, Modem, Urc
    from .serial import ExpectTimeout, Match, PortInfo, SerialPort, list_ports
    from .server import Fault, PackageServer, RequestRecord
    from .records import Record, RecordError, Recorder, Run, RunWriter, open_database
    from .sim import VirtualModule
    from .flash import Flasher, FlashResult
    from .timeline import Event, Timeline, now_ns
    from .watchdog import WatchdogMonitor, WatchdogResult
    from .bench.dialect import Dialect, StatePattern
    from .bench.dut import Dut, Identity
    from .bench.run import Bench, BenchRun, SlotJob
    from .bench.events import BenchEvent, EventBus
    from .bench.grammar import check_states, grammar_for
    from .bench.upgrade import RetryPolicy, StateSeen, Upgrade, UpgradeResult


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fotabench' has no attribute {name!r}")
    value = getattr(_import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public names and the module's dunders: not TYPE_CHECKING, not helpers.
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})


__version__ = "0.1.0"

__all__ = [
    "AppImage",
    "ArgumentError",
    "AtError",
    "AtResponse",
    "BenchTimeoutError",
    "BusyError",
    "Check",
    "ChecksumError",
    "ClosedError",
    "CryptoError",
    "DataLostError",
    "Edge",
    "Event",
    "ExpectTimeout",
    "FileError",
    "FlashResult",
    "Flasher",
    "FotabenchError",
    "GpioChip",
    "GpioLine",
    "ImageError",
    "LineMatch",
    "Match",
    "Model",
    "ModelError",
    "Modem",
    "ModuleUrl",
    "Package",
    "PackageError",
    "PortInfo",
    "ProtocolError",
    "SerialPort",
    "Special",
    "Timeline",
    "UnsupportedError",
    "Urc",
    "UrlError",
    "WatchdogMonitor",
    "WatchdogResult",
    "library_versions",
    "list_ports",
    "md5_file",
    "models",
    "now_ns",
    "Fault",
    "PackageServer",
    "RequestRecord",
    "VirtualModule",
    "Record",
    "RecordError",
    "Recorder",
    "Run",
    "RunWriter",
    "open_database",
    "Bench",
    "BenchEvent",
    "BenchRun",
    "SlotJob",
    "Dialect",
    "Dut",
    "EventBus",
    "Identity",
    "RetryPolicy",
    "StatePattern",
    "StateSeen",
    "Upgrade",
    "UpgradeResult",
    "check_states",
    "grammar_for",
]
