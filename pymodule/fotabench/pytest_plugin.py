"""The fotabench pytest plugin: every slot of a station, virtual or real, as test
fixtures (docs/pytest-plugin.md). Registered through the ``pytest11`` entry point, so
installing fotabench is enough::

    def test_upgrade(dut, upgrade, agent_image):
        result = upgrade(dut, agent_image("2.0.0"))
        result.assert_pass()

    @pytest.mark.fb_flash(agent="1.0.0")      # flashed over UART before the test
    def test_from_the_factory(dut, upgrade, agent_image):
        upgrade(dut, agent_image("2.0.0")).assert_pass()

    $ pytest --fb-virtual 4              # four virtual modules made on the fly
    $ pytest --fb-station real-4.yaml    # the same tests on a real station

Nothing here runs unless an ``--fb-*`` option (or its environment variable) is given:
without one, a test that asks for a station fixture errors at set-up with a line that
says how to configure one, and every other test runs as if the plugin were not there.
With pytest-xdist, a slot is held by one worker at a time (a lock file per slot,
``fcntl.flock``: the kernel releases it when its holder dies, even by SIGKILL).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import pytest

if TYPE_CHECKING:
    from .bench.config import SlotSpec, StationSpec
    from .bench.dut import Dut
    from .bench.flash import FlashStation, SlotFlash
    from .bench.upgrade import UpgradeResult
    from .records import Recorder

__all__ = ["SlotLock", "SlotBusyError", "FbStation", "records_from_result"]

# flag, dest, environment twin, metavar, help
_OPTIONS = (
    ("--fb-station", "fb_station", "FOTABENCH_STATION", "FILE",
     "run the station of this station file (docs/stations.md)"),
    ("--fb-virtual", "fb_virtual", "FOTABENCH_VIRTUAL", "N",
     "a station of N virtual modules made on the fly (v1..vN, M66), or a list of models "
     "(M66,MC60,...: one virtual module each)"),
    ("--fb-slots", "fb_slots", "FOTABENCH_SLOTS", "A,B",
     "only these slots of the station"),
    ("--fb-protocol", "fb_protocol", "FOTABENCH_PROTOCOL", "http|ftp",
     "protocol of every upgrade (default: the slot's, else the station's; a test's "
     "fb_protocol marker wins)"),
    ("--fb-out", "fb_out", "FOTABENCH_OUT", "DIR",
     "where run directories go, one per session (and per xdist worker); default runs"),
    ("--fb-db", "fb_db", "FOTABENCH_DB", "PATH|DSN",
     "results database: a SQLite path or postgresql://... (default: the station file's "
     "db, else DIR/fotabench.sqlite)"),
    ("--fb-virtual-timing", "fb_virtual_timing", "FOTABENCH_VIRTUAL_TIMING", "fast|real",
     "virtual modules' boot and link: fast (boot /100, unlimited link; the default for "
     "--fb-virtual) or real (a real module's boot and attach, the board's 50 kbit/s)"),
    ("--fb-images", "fb_images", "FOTABENCH_IMAGES", "DIR",
     "where agent_image() looks first for agent_<MODEL>_<VERSION>.bin (a real station "
     "needs the images built with the OpenCPU SDK there)"),
    ("--fb-lock-timeout", "fb_lock_timeout", "FOTABENCH_LOCK_TIMEOUT", "SECONDS",
     "how long a test waits for a slot another worker holds (default 3600)"),
    ("--fb-da", "fb_da", "FOTABENCH_DA", "FILE",
     "download agent for fb_flash / flash (MTK_AllInOne_DA.bin from Quectel's QFlash; "
     "fotabench never bundles it)"),
)

_MARKERS = (
    "fb_protocol(name): upgrades in this test use protocol 'http' or 'ftp' (fotabench)",
    "fb_model(*models): run this test only on slots holding one of these models; the "
    "others are skipped (fotabench)",
    "fb_fault(*specs): inject faults in this test's upgrades, as a station file writes "
    "them: 'drop:at=50%,times=1', 'power_cut:at=40%', 'attach_fail' (fotabench)",
    "fb_flash(*images, agent=None, verify=False, baud=921600, force=False, "
    "handshake_timeout=60): flash the "
    "test's slot over UART before the test (one image per model, or agent='1.0.0': the "
    "bench agent at that version), through its dut; the agent file from --fb-da "
    "(fotabench)",
)

_HOW = ("no fotabench station configured: give --fb-virtual N (N virtual modules made on "
        "the fly) or --fb-station FILE (or set FOTABENCH_VIRTUAL / FOTABENCH_STATION)")

_SETTINGS = pytest.StashKey["Optional[_Settings]"]()
_STATE = pytest.StashKey["_SessionState"]()
_TEST = pytest.StashKey["_TestState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fotabench", "fotabench: FOTA upgrades on a station's slots")
    for flag, dest, env, metavar, text in _OPTIONS:
        group.addoption(flag, dest=dest, metavar=metavar, default=None,
                        help=f"{text} [env {env}]")


def _option(config: pytest.Config, dest: str) -> Optional[str]:
    value = config.getoption(dest, None)
    if value is None:
        env = next(o[2] for o in _OPTIONS if o[1] == dest)
        value = os.environ.get(env) or None
    return value


# ---- settings: the options, checked once ------------------------------------------------

@dataclass
class _Settings:
    spec: "StationSpec"
    slots: tuple["SlotSpec", ...]       # the selected ones, in station order
    protocol: Optional[str]
    out: Path
    db: Optional[str]
    lock_dir: Path
    images: Optional[Path]
    lock_timeout: float
    session: str                        # shared by the xdist controller and its workers
    da: Optional[str] = None            # the download agent (--fb-da), checked on first use


def _session_token(config: pytest.Config) -> str:
    inp = getattr(config, "workerinput", None)
    if inp and "fotabench_session" in inp:
        return str(inp["fotabench_session"])
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def _virtual_station(value: str, timing: str) -> "StationSpec":
    from .bench.config import SlotSpec, StationSpec, VirtualSpec
    from .bench.station import MODELS
    value = value.strip()
    if re.fullmatch(r"\d+", value):
        n = int(value)
        if not 1 <= n <= 64:
            raise pytest.UsageError(f"--fb-virtual {value}: give 1 to 64 virtual modules")
        models = ["M66"] * n
    else:
        models = [m.strip() for m in value.split(",")]
        bad = [m for m in models if m.upper() not in {x.upper() for x in MODELS}]
        if bad or not models:
            raise pytest.UsageError(
                f"--fb-virtual {value!r}: expected a number of modules or a list of models "
                f"({', '.join(MODELS)}); {bad[0] if bad else 'empty'!r} is neither")
        models = [next(x for x in MODELS if x.upper() == m.upper()) for m in models]
    spec = _virtual_spec(VirtualSpec(), timing)
    slots = tuple(SlotSpec(f"v{i + 1}", model=m, virtual=spec) for i, m in enumerate(models))
    return StationSpec(f"virtual-{len(slots)}", slots)


def _virtual_spec(v: Any, timing: str) -> Any:
    if timing == "fast":
        return replace(v, boot_timing="fast", link_rate="unlimited")
    return replace(v, boot_timing="real")


def _load_settings(config: pytest.Config) -> Optional[_Settings]:
    station_file = _option(config, "fb_station")
    virtual = _option(config, "fb_virtual")
    given = {d: _option(config, d) for _, d, *_ in _OPTIONS}
    if station_file is None and virtual is None:
        # Only options on the command line: an environment variable meant for the
        # fotabench command (FOTABENCH_DB...) must not break unrelated pytest runs.
        extra = [f"--{d.replace('_', '-')}" for _, d, *_ in _OPTIONS
                 if config.getoption(d, None) is not None]
        if extra:
            raise pytest.UsageError(f"{', '.join(extra)} given, but {_HOW}")
        return None
    if station_file is not None and virtual is not None:
        raise pytest.UsageError("--fb-station and --fb-virtual are two different stations: "
                                "give one (check FOTABENCH_STATION / FOTABENCH_VIRTUAL)")
    timing = given["fb_virtual_timing"]
    if timing is not None and timing not in ("fast", "real"):
        raise pytest.UsageError(f"--fb-virtual-timing {timing!r}: expected fast or real")
    if virtual is not None:
        spec = _virtual_station(virtual, timing or "fast")
        key = f"virtual-{_session_token(config)}"   # made for this session only
    else:
        from .bench.station import StationError, load_station
        assert station_file is not None
        if not os.path.isfile(station_file):
            raise pytest.UsageError(f"--fb-station {station_file}: no such file")
        try:
            spec = load_station(station_file)
        except StationError as e:
            raise pytest.UsageError(f"--fb-station {station_file}: bad station file:\n{e}") \
                from None
        if timing is not None:   # said explicitly: it overrides the file's virtual slots
            spec = replace(spec, slots=tuple(
                replace(s, virtual=_virtual_spec(s.virtual, timing)) if s.virtual else s
                for s in spec.slots))
        real = os.path.realpath(station_file)
        key = f"{spec.name}-{hashlib.sha256(real.encode()).hexdigest()[:16]}"
    slots = spec.slots
    if given["fb_slots"] is not None:
        names = [n.strip() for n in given["fb_slots"].split(",") if n.strip()]
        known = [s.name for s in spec.slots]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise pytest.UsageError(
                f"--fb-slots {given['fb_slots']!r}: no slot {unknown[0] if unknown else ''!r} "
                f"in station {spec.name!r} (its slots: {', '.join(known)})")
        slots = tuple(s for s in spec.slots if s.name in names)
    protocol = given["fb_protocol"]
    if protocol is not None and protocol not in ("http", "ftp"):
        raise pytest.UsageError(f"--fb-protocol {protocol!r}: expected http or ftp")
    lock_timeout = 3600.0
    if given["fb_lock_timeout"] is not None:
        try:
            lock_timeout = float(given["fb_lock_timeout"])
            if not lock_timeout >= 0:
                raise ValueError
        except ValueError:
            raise pytest.UsageError(f"--fb-lock-timeout {given['fb_lock_timeout']!r}: "
                                    "expected seconds (0 or more)") from None
    images = given["fb_images"]
    if images is not None and not Path(images).is_dir():
        raise pytest.UsageError(f"--fb-images {images}: not a directory")
    out = Path(given["fb_out"] or "runs")
    db = given["fb_db"] if config.getoption("fb_db", None) is not None else None
    # The database: --fb-db, else the station file's db:, else $FOTABENCH_DB, else beside
    # the run directories (as the bench's records do).
    db = db or spec.db or os.environ.get("FOTABENCH_DB") or str(out / "fotabench.sqlite")
    lock_root = Path(os.environ.get("FOTABENCH_LOCK_DIR")
                     or Path(tempfile.gettempdir()) / f"fotabench-slots-{os.getuid()}")
    return _Settings(spec, slots, protocol, out, db, lock_root / key,
                     None if images is None else Path(images), lock_timeout,
                     _session_token(config), given["fb_da"])


class _XdistHooks:
    """Hands the controller's session token to every worker (one run, one lock
    namespace for a station made on the fly)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["fotabench_session"] = self.token


def pytest_configure(config: pytest.Config) -> None:
    for m in _MARKERS:
        config.addinivalue_line("markers", m)
    settings = _load_settings(config)
    config.stash[_SETTINGS] = settings
    if settings is not None and config.pluginmanager.hasplugin("xdist") \
            and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_XdistHooks(settings.session), "fotabench-xdist")


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    s = config.stash.get(_SETTINGS, None)
    if s is None:
        return None
    kinds = sorted({"virtual" if x.virtual else "real" for x in s.slots})
    return (f"fotabench: station {s.spec.name!r}, slots {', '.join(x.name for x in s.slots)} "
            f"({'/'.join(kinds)}); records under {s.out}, database {s.db}")


# ---- parametrising: one test per slot ---------------------------------------------------

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dut" not in metafunc.fixturenames:
        return
    s = metafunc.config.stash.get(_SETTINGS, None)
    if s is None:
        return      # the dut fixture says how to configure a station
    models = [m for mark in metafunc.definition.iter_markers("fb_model") for m in mark.args]
    want = {m.upper() for m in models}
    params = []
    for slot in s.slots:
        marks = []
        if want and slot.model.upper() not in want:
            marks.append(pytest.mark.skip(
                reason=f"slot {slot.name} holds an {slot.model}; this test is for "
                       f"{', '.join(models)} (fb_model)"))
        params.append(pytest.param(slot.name, id=slot.name, marks=marks))
    metafunc.parametrize("dut", params, indirect=True)


# ---- slot locks -------------------------------------------------------------------------

class SlotBusyError(RuntimeError):
    """The slot stayed held by another process for the whole wait."""


class SlotLock:
    """An exclusive lock on one slot: ``fcntl.flock`` on ``<dir>/<slot>.lock``. The
    kernel drops it when the holder's file is closed, which a crash or SIGKILL does
    too, so a dead worker never leaves a slot locked. The file says who holds it."""

    def __init__(self, directory: os.PathLike[str] | str, slot: str) -> None:
        self.path = Path(directory) / f"{slot}.lock"
        self.slot = slot
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip() or "?"
        except OSError:
            return "?"

    def acquire(self, timeout: Optional[float] = None, *, who: str = "") -> float:
        """Wait for the slot (``timeout`` seconds, None for ever); returns the seconds
        waited. SlotBusyError names the holder when the wait runs out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        t0 = time.monotonic()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if timeout is not None and time.monotonic() - t0 >= timeout:
                        raise SlotBusyError(
                            f"slot {self.slot} is still held after {timeout:g} s by "
                            f"{self.holder()} (lock {self.path})") from None
                    # flock has no timeout of its own: poll. The holder's upgrade takes
                    # seconds to minutes, so 50 ms costs nothing.
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: {who}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return time.monotonic() - t0

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)      # closing drops the flock

    def __enter__(self) -> "SlotLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---- the session: station, server, records -----------------------------------------------

@dataclass
class _SessionState:
    settings: _Settings
    worker: Optional[str]
    server: Any = None
    recorder: Optional["Recorder"] = None
    record_error: Optional[str] = None
    records: int = 0
    flasher: Optional["FlashStation"] = None


class FbStation:
    """What the ``station`` fixture gives: the StationSpec (``spec``), the selected
    slots, the shared package server (started on first use), the run's records."""

    def __init__(self, state: _SessionState) -> None:
        self._state = state

    @property
    def spec(self) -> "StationSpec":
        return self._state.settings.spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def slots(self) -> tuple["SlotSpec", ...]:
        return self._state.settings.slots

    @property
    def protocol(self) -> Optional[str]:
        """The --fb-protocol given, else None (each slot's, else the station's)."""
        return self._state.settings.protocol

    @property
    def server(self) -> Any:
        """The station's PackageServer (``server:`` of the station file), shared by every
        test of this process; started on first use, stopped at the session's end."""
        st = self._state
        if st.server is None:
            from .server import PackageServer
            srv = self.spec.server
            http, ftp = srv.http_port, srv.ftp_port
            if st.worker is not None:
                # Several workers cannot listen on one fixed port: each its own.
                http, ftp = 0, 0
            try:
                st.server = PackageServer(bind=srv.bind, http=http, ftp=ftp,
                                          host=srv.advertise, user=srv.user,
                                          password=srv.password).start()
            except Exception as e:
                pytest.fail(f"station {self.name}: the package server did not start "
                            f"({srv.bind}, http {http}, ftp {ftp}): {e}", pytrace=False)
        return st.server

    @property
    def recorder(self) -> "Recorder":
        """The run's Recorder (run directory + database), made on first use."""
        st = self._state
        if st.recorder is None:
            from .records import Recorder
            s = st.settings
            run_id = f"{s.session}-{_safe(self.name)}" + (f"-{st.worker}" if st.worker else "")
            st.recorder = Recorder(s.out / run_id, db=s.db, station=self.name, run_id=run_id,
                                   meta={"source": "pytest"})
        return st.recorder

    @property
    def run_dir(self) -> Path:
        return self.recorder.path

    def __repr__(self) -> str:
        return (f"<FbStation {self.name}: slots {', '.join(s.name for s in self.slots)}; "
                f"server {'running' if self._state.server else 'not started'}>")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64] or "x"


def _session_state(config: pytest.Config) -> _SessionState:
    s = config.stash.get(_SETTINGS, None)
    if s is None:
        pytest.fail(_HOW, pytrace=False)
    st = config.stash.get(_STATE, None)
    if st is None:
        worker = getattr(config, "workerinput", {}).get("workerid")
        st = _SessionState(s, worker)
        config.stash[_STATE] = st
    return st


def pytest_sessionfinish(session: pytest.Session) -> None:
    st = session.config.stash.get(_STATE, None)
    if st is None:
        return
    if st.server is not None:
        st.server.stop()
        st.server = None
    if st.recorder is not None:
        try:
            st.recorder.close()
        except Exception as e:  # noqa: BLE001 - said in the summary, records are on disk
            st.record_error = str(e)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    s = config.stash.get(_SETTINGS, None)
    if s is None or hasattr(config, "workerinput"):
        return
    runs = sorted(p for p in s.out.glob(f"{s.session}-*") if p.is_dir()) \
        if s.out.is_dir() else []
    st = config.stash.get(_STATE, None)
    if not runs:
        return
    tr = terminalreporter
    tr.section("fotabench")
    for p in runs:
        tr.write_line(f"run directory {p}")
    tr.write_line(f"database {s.db}")
    if st is not None and st.record_error:
        tr.write_line(f"records: {st.record_error}", red=True)


# ---- per test ----------------------------------------------------------------------------

@dataclass
class _TestState:
    results: list[tuple[str, "UpgradeResult", Any]] = field(default_factory=list)


def _marker_faults(node: pytest.Item) -> tuple[str, ...]:
    return tuple(str(a) for mark in node.iter_markers("fb_fault") for a in mark.args)


def _marker_protocol(node: pytest.Item) -> Optional[str]:
    mark = node.get_closest_marker("fb_protocol")
    if mark is None:
        return None
    if len(mark.args) != 1 or mark.args[0] not in ("http", "ftp"):
        pytest.fail(f"fb_protocol marker: expected 'http' or 'ftp', got {mark.args!r}",
                    pytrace=False)
    return str(mark.args[0])


def _test_log_dir(station: FbStation, slot: str, node: pytest.Item) -> Path:
    base = station.run_dir / "logs" / _safe(slot)
    name = _safe(node.name)
    d, n = base / name, 1
    while d.exists():           # the same test again (reruns): its own directory
        n += 1
        d = base / f"{name}-{n}"
    d.mkdir(parents=True)
    return d


@pytest.fixture(scope="session")
def station(pytestconfig: pytest.Config) -> FbStation:
    """The station under test (--fb-station / --fb-virtual): its spec, selected slots,
    shared package server and run records."""
    return FbStation(_session_state(pytestconfig))


@pytest.fixture(scope="session")
def package_server(station: FbStation) -> Any:
    """The station's PackageServer (shared; started on first use)."""
    return station.server


@pytest.fixture
def dut(request: pytest.FixtureRequest, station: FbStation) -> Iterator["Dut"]:
    """One slot's module (one test per selected slot, ids are slot names), held for
    this test alone, powered and ready; released afterwards."""
    from .bench.dut import BOARD_FAULTS, Dut
    from .bench.station import parse_fault
    from .timeline import Timeline
    name = getattr(request, "param", None)
    if name is None:
        pytest.fail("the dut fixture is parametrised by the plugin (one test per slot): "
                    "request it from a test function, not from a session/module fixture",
                    pytrace=False)
    s = station._state.settings
    slot = station.spec.slot(name)
    node = request.node
    faults = _marker_faults(node)
    for f in faults:
        try:
            parse_fault(f)
        except ValueError as e:
            pytest.fail(f"fb_fault marker: {e}", pytrace=False)
    board = [f for f in faults
             if f.replace(":", "=", 1).partition("=")[0].strip().replace("-", "_")
             in BOARD_FAULTS]
    if slot.virtual is not None:
        if faults:   # the board's go to the module at start, the rest to the Upgrade
            slot = replace(slot, virtual=replace(slot.virtual,
                                                 faults=slot.virtual.faults + faults))
    elif board:
        pytest.skip(f"slot {slot.name} is a real module: fault {board[0]!r} needs a "
                    "virtual one")
    lock = SlotLock(s.lock_dir, slot.name)
    try:
        waited = lock.acquire(s.lock_timeout, who=node.nodeid)
    except SlotBusyError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        node.user_properties.append(("slot", slot.name))
        if waited >= 0.5:
            node.user_properties.append(("slot_wait_s", f"{waited:.1f}"))
        log_dir = _test_log_dir(station, slot.name, node)
        timeline = Timeline()
        try:
            d = Dut.from_slot(slot, timeline=timeline, log_dir=log_dir)
        except Exception as e:
            pytest.fail(f"slot {slot.name}: {e}", pytrace=False)
        d._fb_log_dir = log_dir            # type: ignore[attr-defined]
        d._fb_faults = faults              # type: ignore[attr-defined]
        try:
            marked = _marker_flash(node)
            if marked is not None:
                # Flashed first (a blank module cannot get ready), through this Dut.
                paths = _image_paths(node, station, slot.model, marked["images"],
                                     marked.get("agent"))
                sf = _flash(station, node, d, paths, verify=bool(marked.get("verify")),
                            baud=int(marked.get("baud", 921600)),
                            force=bool(marked.get("force")),
                            handshake_timeout=float(marked.get("handshake_timeout", 60)))
                if sf is not None:
                    _wait_answers(d, slot, station.spec, paths[0].name)
            _power_and_ready(d, slot, station.spec)
            ident = d.identity(timeout=(slot.timeouts or station.spec.timeouts).command)
            if ident.imei:
                node.user_properties.append(("imei", ident.imei))
            yield d
        finally:
            try:
                if slot.virtual is None and slot.power_after == "off" and d.can_power \
                        and d.is_on():
                    d.power_off()
            finally:
                d.close()
    finally:
        lock.release()


def _power_and_ready(d: "Dut", slot: "SlotSpec", spec: "StationSpec") -> None:
    t = slot.timeouts or spec.timeouts
    if d.is_on():
        return
    if d.can_power:
        d.power_on()
    try:
        d.wait_ready(t.boot)
    except Exception as e:  # noqa: BLE001 - the bench could not get it ready
        how = "after power-on" if d.can_power else "(no PWRKEY wired: waited for it)"
        pytest.fail(f"slot {slot.name}: no +FBREADY within {t.boot:g} s {how}: {e}",
                    pytrace=False)


# ---- flashing over UART (docs/pytest-plugin.md#flashing) ---------------------------------

def _flash_station(station: FbStation) -> "FlashStation":
    """The session's FlashStation (its agent file checked once, on first use)."""
    st = station._state
    if st.flasher is None:
        from .bench.flash import FlashStation
        from .flash import DA_ENV
        da = st.settings.da
        if da is None:
            pytest.fail("fb_flash: no download agent given: fotabench needs MediaTek's DA "
                        "for MT6261/MT2503, the file MTK_AllInOne_DA.bin that ships with "
                        "Quectel's QFlash (in QFlash's folder); pass it with --fb-da FILE "
                        f"(or set {DA_ENV}). fotabench never bundles it.", pytrace=False)
        try:
            st.flasher = FlashStation(station.spec, da=da, db=False)
        except Exception as e:  # noqa: BLE001 - a missing or wrong file: one line
            pytest.fail(f"fb_flash: --fb-da {da}: {e}", pytrace=False)
    return st.flasher


def _flash_memo(station: FbStation, slot: str) -> Path:
    # Beside the slot's lock, read and written only while holding it: every worker of
    # the session sees what the slot holds.
    return station._state.settings.lock_dir / f"{_safe(slot)}.flashed"


def _forget_flash(station: FbStation, slot: str) -> None:
    try:
        _flash_memo(station, slot).unlink()
    except FileNotFoundError:
        pass


def _image_paths(node: pytest.Item, station: FbStation, model: str,
                 images: tuple[Any, ...], agent: Optional[str]) -> list[Path]:
    if agent is not None:
        if images:
            pytest.fail("fb_flash: give image files or agent=VERSION, not both",
                        pytrace=False)
        return [_agent_path(station, str(agent), model)]
    if not images:
        pytest.fail("fb_flash: name the image to flash: fb_flash('APP.bin') (one per "
                    "model) or fb_flash(agent='1.0.0')", pytrace=False)
    out = []
    extra = station._state.settings.images
    for i in images:
        p = Path(os.fspath(i))
        # A relative name: beside the test file, then in --fb-images, then as given.
        tries = [p] if p.is_absolute() else (
            [node.path.parent / p] + ([extra / p] if extra is not None else []) + [p])
        found = next((t for t in tries if t.is_file()), None)
        if found is None:
            pytest.fail(f"fb_flash: no image {os.fspath(i)!r} (looked for "
                        f"{', '.join(str(t) for t in tries)})", pytrace=False)
        out.append(found)
    return out


def _flash(station: FbStation, node: pytest.Item, d: "Dut", paths: list[Path], *,
           verify: bool = False, baud: int = 921600, force: bool = True,
           check: bool = True, handshake_timeout: float = 60.0) -> Optional["SlotFlash"]:
    """Flash ``paths`` into the dut's slot through the dut (its port and lines), record
    it, and fail the test (``check``) naming the outcome when it did not pass. None when
    skipped: a real slot that this session (any worker) flashed with the same image and
    nothing upgraded since (``force`` False)."""
    import json
    from .bench.flash import image_for, load_images
    fs = _flash_station(station)
    slot = d.slot
    assert slot is not None
    try:
        images = load_images(paths)
    except Exception as e:  # noqa: BLE001 - a bad file: one line
        pytest.fail(f"fb_flash: {e}", pytrace=False)
    mine = image_for(images, slot.model)
    md5 = mine.package["md5"]
    props = node.user_properties
    memo = _flash_memo(station, slot.name)
    s = station._state.settings
    if not force and slot.virtual is None:
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = None
        if known and known.get("session") == s.session and known.get("md5") == md5:
            props.append(("flash", f"{slot.name}: skipped: {mine.path.name} (md5 {md5}) "
                                   f"is on it since {known.get('test')} "
                                   f"(record {known.get('record')})"))
            if d.timeline is not None:
                d.timeline.add(f"flash:{slot.name}", "flash.skipped", md5=md5,
                               record=known.get("record"), image=str(mine.path))
            return None
    _forget_flash(station, slot.name)     # whatever happens now, the memo is stale
    recorder = station.recorder
    capman = None if d.can_download_mode else \
        node.config.pluginmanager.getplugin("capturemanager")
    try:
        if capman is not None:
            # The operator powers this module: the prompt (stderr) must reach them, so
            # capture is off for the flash (suspended from this, the main thread).
            with capman.global_and_fixture_disabled():
                sf = fs.flash_dut(d, [i.path for i in images], recorder=recorder, baud=baud,
                                  verify=verify, log_dir=getattr(d, "_fb_log_dir", None),
                                  handshake_timeout=handshake_timeout)
        else:
            sf = fs.flash_dut(d, [i.path for i in images], recorder=recorder, baud=baud,
                              verify=verify, log_dir=getattr(d, "_fb_log_dir", None),
                              handshake_timeout=handshake_timeout)
    except Exception as e:  # noqa: BLE001 - bad arguments (a baud rate...): one line
        pytest.fail(f"fb_flash: slot {slot.name}: {e}", pytrace=False)
    station._state.records += len(sf.record_ids)
    props.append(("flash", f"{slot.name}: {sf.outcome}"
                  + (f" [{sf.check or sf.cause}]" if not sf.ok else "")))
    props.append(("flash_md5", md5))
    for rid in sf.record_ids:
        props.append(("record_id", rid))
    if sf.ok:
        if slot.virtual is None:
            memo.write_text(json.dumps({"session": s.session, "md5": md5,
                                        "record": sf.record_ids[-1] if sf.record_ids else None,
                                        "test": node.nodeid}))
    elif check:
        what = sf.check if sf.outcome == "fail" else sf.cause
        where = f"record {sf.record_ids[-1]} in {recorder.path}" if sf.record_ids \
            else f"run {recorder.path}"
        pytest.fail(f"flash of slot {slot.name} ({slot.model}) with {mine.path.name}: "
                    f"{sf.outcome.upper()} [{what}]: {sf.detail} ({where})", pytrace=False)
    return sf


def _wait_answers(d: "Dut", slot: "SlotSpec", spec: "StationSpec", image: str) -> None:
    """After a flash's reset the new app boots: wait (the boot timeout) until it answers
    AT. Not power_on(): a PWRKEY press on a module already booting may switch it off."""
    t = slot.timeouts or spec.timeouts
    deadline = time.monotonic() + t.boot
    while not d.is_on(1.0):
        if time.monotonic() >= deadline:
            pytest.fail(f"slot {slot.name}: flashed {image}, but the module did not answer "
                        f"AT within {t.boot:g} s of its reset (the dut fixture needs an app "
                        "the bench talks to, such as the bench agent)", pytrace=False)


def _marker_flash(node: pytest.Item) -> Optional[dict[str, Any]]:
    mark = node.get_closest_marker("fb_flash")
    if mark is None:
        return None
    known = {"agent", "verify", "baud", "force", "handshake_timeout"}
    bad = sorted(set(mark.kwargs) - known)
    if bad:
        pytest.fail(f"fb_flash marker: unknown argument {bad[0]!r} (known: "
                    f"{', '.join(sorted(known))})", pytrace=False)
    return {"images": tuple(mark.args), **mark.kwargs}


@pytest.fixture
def flash(request: pytest.FixtureRequest, station: FbStation) -> Callable[..., Any]:
    """``flash(dut, *images, agent=None, verify=False, baud=921600, check=True,
    ready=True, handshake_timeout=60)``: flash the dut's slot over UART now, through
    the dut (its port and lines), record it and return the
    :class:`fotabench.bench.flash.SlotFlash`. ``check``:
    fail the test when it did not pass; ``ready``: then wait (the boot timeout) until
    the new app answers AT."""
    node = request.node

    def run(d: "Dut", *images: Any, agent: Optional[str] = None, verify: bool = False,
            baud: int = 921600, check: bool = True, ready: bool = True,
            handshake_timeout: float = 60.0) -> Any:
        slot = d.slot
        if slot is None:
            pytest.fail("flash: give the dut fixture's Dut", pytrace=False)
        paths = _image_paths(node, station, slot.model, images, agent)
        sf = _flash(station, node, d, paths, verify=verify, baud=baud, force=True,
                    check=check, handshake_timeout=handshake_timeout)
        if sf is not None and sf.ok and ready:
            _wait_answers(d, slot, station.spec, paths[0].name)
        return sf

    return run


@pytest.fixture
def virtual_module(dut: "Dut") -> Any:
    """The dut's VirtualModule (skips on a real slot)."""
    if dut.vm is None:
        pytest.skip(f"slot {dut.name} is a real module: virtual_module needs a virtual slot")
    return dut.vm


@pytest.fixture
def agent_image(request: pytest.FixtureRequest, station: FbStation) -> Callable[..., Path]:
    """``agent_image(version, model=None)``: the bench agent app image at ``version``
    for a slot's model (default: the test's dut's): ``--fb-images DIR`` first
    (``agent_<MODEL>_<VERSION>.bin``), else built for the virtual module."""
    def get(version: str, model: Optional[str] = None) -> Path:
        if model is None:
            name = getattr(request.node, "callspec", None)
            slot = name.params.get("dut") if name is not None else None
            model = station.spec.slot(slot).model if slot else "M66"
        return _agent_path(station, version, model)
    return get


def _agent_path(station: FbStation, version: str, model: str) -> Path:
    images = station._state.settings.images
    if images is not None:
        p = images / f"agent_{model}_{version}.bin"
        if p.is_file():
            return p
    if any(s.virtual is None and s.model == model for s in station.slots):
        pytest.fail(f"no agent image {model} {version} for a real module: put "
                    f"agent_{model}_{version}.bin (built with the OpenCPU SDK, "
                    "docs/bench-agent.md) in --fb-images DIR", pytrace=False)
    from .bench.dut import bundled_agent
    return bundled_agent(version, model)


@pytest.fixture
def upgrade(request: pytest.FixtureRequest, station: FbStation) -> Callable[..., Any]:
    """``upgrade(dut, package_or_app, **kw)``: run a :class:`fotabench.Upgrade` on the
    dut with the station's server, the test's protocol and faults, record it (run
    directory, database, JUnit properties) and return its UpgradeResult."""
    from .bench.upgrade import Upgrade
    node = request.node
    ts = node.stash.setdefault(_TEST, _TestState())
    protocol = _marker_protocol(node)

    def run(d: "Dut", package: Any, **kw: Any) -> "UpgradeResult":
        if protocol is not None:
            kw.setdefault("protocol", protocol)
        elif station.protocol is not None:
            kw.setdefault("protocol", station.protocol)
        if "url" not in kw:
            kw.setdefault("server", station.server)
        faults = getattr(d, "_fb_faults", ())
        if faults and d.vm is None and "faults" not in kw:
            kw["faults"] = faults          # a virtual slot has them in its VirtualSpec
        kw.setdefault("log_dir", getattr(d, "_fb_log_dir", None))
        if "timeouts" not in kw:    # a slot's None means the station's (Upgrade knows no station)
            slot = d.slot
            kw["timeouts"] = (slot.timeouts if slot is not None and slot.timeouts
                              else station.spec.timeouts)
        up = Upgrade(d, package, **kw)
        _forget_flash(station, d.name)    # the slot's app may change: flash it again
        result = up.run()
        ts.results.append((d.name, result, up))
        _record(station, node, result, up)
        return result

    return run


def _record(station: FbStation, node: pytest.Item, result: "UpgradeResult", up: Any) -> None:
    st = station._state
    props = node.user_properties
    if result.imei and ("imei", result.imei) not in props:
        props.append(("imei", result.imei))
    if result.package_md5:
        props.append(("package_md5", result.package_md5))
    props.append(("upgrade", f"{result.slot}: {result.outcome}"
                  + (f" [{result.check or result.cause}]" if not result.ok else "")))
    try:
        rec = station.recorder
        for r in records_from_result(result, run_id=rec.run.run_id, station=station.name,
                                     run_dir=rec.path, max_attempts=up.retry.attempts):
            rec.add(r)
            st.records += 1
            props.append(("record_id", r.id))
    except Exception as e:  # noqa: BLE001 - the test's verdict stands; say it
        st.record_error = f"{type(e).__name__}: {e}"
        node.add_report_section("call", "fotabench records", f"not recorded: {e}")


def records_from_result(result: "UpgradeResult", *, run_id: str, station: str,
                        run_dir: Optional[Path] = None, max_attempts: Optional[int] = None,
                        operator: Optional[str] = None) -> list[Any]:
    """One :class:`fotabench.records.Record` per attempt of ``result``, by the bench's
    own converter (``fotabench.records.record_from_result``), so a test's records are
    the ones ``fotabench upgrade`` writes."""
    from .records.from_result import record_from_result
    return [record_from_result(result, a.number, run_id=run_id, station=station,
                               operator=operator, max_attempts=max_attempts,
                               run_dir=run_dir)
            for a in result.attempts]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()   # type: ignore[attr-defined]
    ts = item.stash.get(_TEST, None)
    if ts is None or not ts.results or report.when != "call" or not report.failed:
        return
    # A failed test that ran upgrades: each one's story, as pytest-embedded shows an
    # expect failure, but for the whole upgrade.
    for slot, result, up in ts.results:
        grammar = None
        if result.grammar and up.dialect.name != "fotabench-agent":
            try:
                grammar = up.dialect.grammar_for(result.grammar["protocol"],
                                                 result.grammar["host_is_ip"])
            except Exception:  # noqa: BLE001 - the dict is shown instead
                grammar = None
        text = result.explain(grammar) if not result.ok else result.summary()
        report.sections.append((f"fotabench upgrade {slot}", text))
