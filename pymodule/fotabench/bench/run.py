"""A station of many modules upgraded at once: :class:`Bench`.

    >>> with Bench("bench/stations/virtual-8.yaml") as bench:      # doctest: +SKIP
    ...     run = bench.run("APP_v2.bin")
    >>> run.exit_code, run.run_dir                                   # doctest: +SKIP

Each slot runs on its own thread with its own Dut and :class:`Upgrade`; nothing a slot
does (a failure, a hang, a lost port) waits on another. The slots share one
:class:`fotabench.PackageServer` started from the station's ``server:``; each slot's
URL names its module (``/m/SLOT/NAME``), so the server's records, and faults from the
station file, are the slot's own. Every attempt that ends becomes a record
(:func:`fotabench.records.record_from_result`) written by the bench's
:class:`~fotabench.records.Recorder` at once: the run directory (run.json, records/,
logs/<slot>/ with the UART byte log and the timeline, junit.xml) and the database
(station ``db:``, else ``$FOTABENCH_DB``, else ``runs/fotabench.sqlite``).

Cancelling (``cancel()``, ``stop_on_failure``, Ctrl-C in :meth:`Bench.run`) closes the
running slots' ports, which ends their waits within a moment; each ends as an
**error** with cause "cancelled", "stopped" or "interrupted", recorded like any other,
and its module is left powered as the slot's ``power_after`` says. See docs/bench.md.
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from ..timeline import Timeline, now_ns
from .config import SlotSpec, StationSpec
from .events import BenchEvent, EventBus
from .upgrade import Attempt, RetryPolicy, Upgrade, UpgradeResult, _utc

__all__ = ["Bench", "BenchRun", "SlotJob", "SlotBusyError", "BenchError"]

PathLike = Union[str, "os.PathLike[str]"]


class BenchError(RuntimeError):
    """The bench itself cannot run (its server cannot start, the run directory cannot
    be written, an unknown slot): one line saying what and what to do."""


class SlotBusyError(BenchError):
    """A slot asked to start while its previous upgrade still runs."""


@dataclass(frozen=True)
class BenchRun:
    """What :meth:`Bench.run` did: a result per slot (interrupted slots: outcome
    "error", cause "interrupted"), whether Ctrl-C ended it, where the records are,
    and the exit code a command returns (0 all pass, 1 any fail/error, 130
    interrupted)."""

    results: dict[str, UpgradeResult]
    interrupted: bool
    run_dir: Path
    exit_code: int

    @property
    def counts(self) -> dict[str, int]:
        return {o: sum(1 for r in self.results.values() if r.outcome == o)
                for o in ("pass", "fail", "error")}


class SlotJob:
    """One slot's upgrade running on its own thread (:meth:`Bench.start_slot`)."""

    def __init__(self, bench: "Bench", slot: SlotSpec, package: Path, serial: Optional[str],
                 retry: Optional[RetryPolicy], gate: Optional[threading.Event] = None) -> None:
        self.slot = slot.name
        self.spec = slot
        self.package = package
        self.serial = serial
        self.retry = retry
        self.result: Optional[UpgradeResult] = None
        self.upgrade: Optional[Upgrade] = None
        self._bench = bench
        self._gate = gate
        self._cancel_cause: Optional[str] = None
        self.started_ns = now_ns()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"fotabench-slot-{slot.name}")

    def start(self) -> "SlotJob":
        self._thread.start()
        return self

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> Optional[UpgradeResult]:
        """The result once the slot is done (None if ``timeout`` passed first)."""
        if not self._done.wait(timeout):
            return None
        self._thread.join()
        return self.result

    def cancel(self, cause: str = "cancelled") -> None:
        """End this slot's upgrade promptly (its result: error ``cause``)."""
        with self._lock:
            if self._cancel_cause is None:
                self._cancel_cause = cause
            up = self.upgrade
        if up is not None:
            up.cancel(self._cancel_cause or cause)

    def _main(self) -> None:
        try:
            if self._gate is not None:
                self._gate.wait()
            self.result = self._bench._run_slot(self)
        finally:
            with self._lock:
                # The Upgrade holds the Dut and the upgrade's timeline (every UART line):
                # a station that runs for days keeps results, not those.
                self.upgrade = None
            self._done.set()
            self._bench._job_ended(self)

    def __repr__(self) -> str:
        what = self.result.summary() if self.result else "running"
        return f"<SlotJob {self.slot}: {what}>"


def _scanned_imei(serial: Optional[str]) -> Optional[str]:
    """A scanned code that is an IMEI (15 digits), which the module must then say."""
    return serial if serial is not None and re.fullmatch(r"[0-9]{15}", serial) else None


def _default_db(station: StationSpec, db: Optional[str]) -> str:
    from ..records.db import DEFAULT_DB
    return db or station.db or os.environ.get("FOTABENCH_DB") or DEFAULT_DB


class Bench:
    """A station (a StationSpec, or the path of a station file) ready to upgrade its
    slots. ``events``: the one event stream (default: a new EventBus). ``out_dir``:
    where the run directory is made (default ``runs/``); ``db``: the results database
    (default: the station's ``db:``, ``$FOTABENCH_DB``, ``runs/fotabench.sqlite``;
    ``""`` or "none" for none). ``operator``: who runs it (records say). ``timeline``:
    where every slot's events land (default: one per upgrade, written to the slot's
    logs)."""

    def __init__(self, station: Union[StationSpec, PathLike], *,
                 events: Optional[EventBus] = None, out_dir: Optional[PathLike] = None,
                 db: Optional[str] = None, operator: Optional[str] = None,
                 timeline: Optional[Timeline] = None) -> None:
        if not isinstance(station, StationSpec):
            from .station import load_station
            station = load_station(station)
        self.station = station
        self.events = events if events is not None else EventBus()
        self.operator = operator
        # A given timeline gets every slot's events; otherwise each job has its own
        # (its slot's timeline.jsonl holds that slot only, and a long-running station
        # does not keep every event it ever saw).
        self.timeline = timeline
        self.out_dir = Path(out_dir) if out_dir is not None else Path("runs")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in station.name)
        self.run_dir = self.out_dir / f"{stamp}-{safe}-{os.getpid()}"
        target = _default_db(station, db)
        self.db: Optional[str] = None if target.lower() in ("", "none") else target
        self.server: Any = None
        self.recorder: Any = None
        self._lock = threading.Lock()
        self._jobs: dict[str, SlotJob] = {}
        self._results: dict[str, UpgradeResult] = {}
        self._job_count = 0
        self._started = False
        self._closed = False
        self._done_cv = threading.Condition()

    # -- life ------------------------------------------------------------------------------
    def start(self) -> "Bench":
        """The package server up (HTTP and FTP on the station's ports) and the run
        directory made. BenchError when either cannot be."""
        if self._started:
            return self
        from ..records import Recorder
        from ..server import PackageServer
        self._warm_imports()
        self._limit_malloc_arenas()
        srv = self.station.server
        try:
            self.recorder = Recorder(self.run_dir, db=self.db, station=self.station.name,
                                     operator=self.operator,
                                     meta={"station_file": self.station.path})
        except Exception as e:
            raise BenchError(f"cannot write the run directory {self.run_dir}: {e}") from e
        server = PackageServer([], bind=srv.bind, host=srv.advertise, http=srv.http_port,
                               ftp=srv.ftp_port, user=srv.user, password=srv.password,
                               timeline=self.timeline)
        try:
            server.start()
        except Exception as e:
            self._close_recorder()
            raise BenchError(f"station {self.station.name}: cannot start the package "
                             f"server on {srv.bind} (http port {srv.http_port or 'any'}, "
                             f"ftp port {srv.ftp_port or 'any'}): {e}") from e
        self.server = server
        self._started = True
        return self

    @staticmethod
    def _limit_malloc_arenas() -> None:
        """At most two glibc malloc arenas in this process (unless MALLOC_ARENA_MAX says
        otherwise). Every slot runs on a new thread and glibc gives concurrent threads
        arenas of their own (up to 8 per core): what outlives an upgrade (a record's
        index line, a server record) stays scattered through them and each arena's heap
        ratchets up: a soak of 8 slots at once grew 75-90 kB per upgrade (malloc_trim
        could not give it back) where one slot at a time, or one arena, stayed flat.
        Python allocates under the GIL anyway, so more arenas buy the bench nothing."""
        if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
            return
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):   # no such C library call: nothing to limit
            return
        mallopt(-8, 2)    # M_ARENA_MAX (glibc's malloc.h); musl ignores it

    def _warm_imports(self) -> None:
        """Import here, once, what the slots' threads import lazily. A first import
        holds the import lock while it runs Python, and with 64 slot threads wanting
        the GIL it gets a 64th of it: every slot then waited on the lock (the start
        of a 64-slot run took 0.2-0.5 s longer than a 1-slot run's)."""
        import importlib
        names = ["fotabench.bench.dut", "fotabench.watchdog", "fotabench.checksum",
                 "fotabench.image", "fotabench.package", "fotabench.records.junit",
                 "fotabench.records.openhtf"]
        if any(s.virtual is not None for s in self.station.slots):
            names.append("fotabench.sim")
        if any(s.virtual is not None and s.virtual.faults for s in self.station.slots):
            names += ["fotabench.bench.station", "fotabench.server.faults"]
        for name in names:
            importlib.import_module(name)
        # Every record is validated: the validator (jsonschema's import, the schema) is
        # made once here, not by every slot ending at once (lru_cache does not hold the
        # others while the first builds it: each would build its own).
        from ..records.record import SCHEMA_VERSION, _validator
        _validator(SCHEMA_VERSION)

    def close(self) -> None:
        """Cancel running slots (their modules left as ``power_after`` says), wait
        for them, stop the server, close the records (run.json, junit.xml)."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        for job in list(self._jobs.values()):
            job.wait()
        if self.server is not None:
            self.server.stop()
        self._close_recorder()

    def _close_recorder(self) -> None:
        if self.recorder is None:
            return
        rec, self.recorder = self.recorder, None
        try:
            rec.close()
        except Exception as e:  # noqa: BLE001 - the records are in the run directory
            self._log("", f"records: {e}")

    def __enter__(self) -> "Bench":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- slots -----------------------------------------------------------------------------
    def _slot(self, name: str) -> SlotSpec:
        try:
            return self.station.slot(name)
        except KeyError:
            names = ", ".join(s.name for s in self.station.slots)
            raise BenchError(f"station {self.station.name} has no slot {name!r} "
                             f"(slots: {names})") from None

    def busy(self, slot: str) -> bool:
        job = self._jobs.get(slot)
        return job is not None and not job.done()

    def idle_slots(self) -> list[str]:
        return [s.name for s in self.station.slots if not self.busy(s.name)]

    def results(self) -> dict[str, UpgradeResult]:
        """The last result of each slot that has finished one."""
        with self._lock:
            return dict(self._results)

    def start_slot(self, slot: str, package: PathLike, *, serial: Optional[str] = None,
                   retry: Optional[RetryPolicy] = None,
                   _gate: Optional[threading.Event] = None) -> SlotJob:
        """Start one slot's upgrade on its own thread (SlotBusyError if it runs).

        ``serial``: the code scanned off the module's label. An IMEI (15 digits) must
        be the module's own: another is a fail ``wrong_module``, recorded as such, and
        the module is not upgraded (``Upgrade(expect_imei=...)``)."""
        spec = self._slot(slot)
        if self._closed:
            raise BenchError("the bench is closed")
        self.start()
        pkg = Path(package)
        if not pkg.is_file():
            raise BenchError(f"no such package or app image: {pkg}")
        with self._lock:
            if self.busy(slot):
                raise SlotBusyError(f"slot {slot} is still upgrading")
            self._forget_server_records(slot)
            job = SlotJob(self, spec, pkg, serial, retry, _gate)
            self._jobs[slot] = job
            self._job_count += 1
            job.number = self._job_count  # type: ignore[attr-defined]
        return job.start()

    def _forget_server_records(self, slot: str) -> None:
        """The shared server keeps a record per request; a station that runs for days
        must not keep them all (the soak's RSS grew with them). When a slot starts
        again its earlier upgrades have ended and their results hold their transfers:
        its records go, and the records that name no module (connection faults) from
        before every running slot started."""
        from .upgrade import module_name
        if self.server is None:
            return
        running = [j for j in self._jobs.values() if not j.done()]
        oldest = min((j.started_ns for j in running), default=now_ns())
        # (two slot names may make one module name: never a running slot's)
        mine = None if any(module_name(j.slot) == module_name(slot) for j in running) \
            else module_name(slot)
        self.server.forget_records(lambda r: (mine is not None and r.module == mine) or (
            r.module is None and r.end_ns < oldest))

    def cancel(self, cause: str = "cancelled") -> None:
        """Stop every running slot promptly (each: error ``cause``)."""
        for job in list(self._jobs.values()):
            if not job.done():
                job.cancel(cause)

    # -- one slot (on its thread) --------------------------------------------------------------
    def _log(self, slot: str, text: str) -> None:
        self.events.publish(BenchEvent(now_ns(), slot, "log", detail=text))

    def _run_slot(self, job: SlotJob) -> UpgradeResult:
        from .dut import Dut
        spec = job.spec
        start_ns, start_wall = now_ns(), time.time()
        assert self.recorder is not None
        log_dir = self.recorder.path / "logs" / spec.name / f"job-{getattr(job, 'number', 1)}"
        dut = None
        result: Optional[UpgradeResult] = None
        timeline = self.timeline if self.timeline is not None else Timeline()
        try:
            if job._cancel_cause is not None:
                raise _Cancelled(job._cancel_cause)
            self.events.publish(BenchEvent(now_ns(), spec.name, "phase", phase="open",
                                           detail=spec.port or "virtual"))
            try:
                dut = Dut.from_slot(spec, timeline=timeline, log_dir=log_dir)
            except Exception as e:  # noqa: BLE001 - the slot's error, not the bench's
                cause = "port" if ("cannot open" in str(e) or "is busy" in str(e)) \
                    else "dut"
                if "cannot request" in str(e) or "gpio" in str(e).lower():
                    cause = "gpio"
                result = self._error_result(job, cause, str(e), start_ns, start_wall)
                return result
            up = Upgrade(dut, job.package, protocol=spec.protocol or self.station.protocol,
                         server=self.server, timeouts=spec.timeouts or self.station.timeouts,
                         retry=job.retry, events=self.events, timeline=timeline,
                         log_dir=log_dir, expect_imei=_scanned_imei(job.serial),
                         on_attempt=lambda r: self._record(job, r))
            with job._lock:
                job.upgrade = up
                pending = job._cancel_cause
            if pending is not None:
                up.cancel(pending)
            result = up.run()
            return result
        except _Cancelled as c:
            result = self._error_result(job, str(c), f"{c} before the slot started",
                                        start_ns, start_wall)
            return result
        except Exception as e:  # noqa: BLE001 - a bench bug must not end other slots
            result = self._error_result(job, "bench", f"{type(e).__name__}: {e}",
                                        start_ns, start_wall)
            return result
        finally:
            if dut is not None:
                self._leave(dut, spec)
            if result is not None:
                with self._lock:
                    self._results[spec.name] = result
                if not result.attempts or job.upgrade is None:
                    self._record(job, result)   # no Upgrade ran: record the error here

    def _leave(self, dut: Any, spec: SlotSpec) -> None:
        """The module left powered as the station says, then the slot's port, lines
        (and virtual module) released."""
        try:
            if spec.power_after == "off" and dut.can_power and dut.is_on(0.5):
                self.events.publish(BenchEvent(now_ns(), spec.name, "power",
                                               detail="off (power_after: off)"))
                dut.power_off()
        except Exception as e:  # noqa: BLE001 - said, and the slot is released anyway
            self._log(spec.name, f"power_after off failed: {e}")
        try:
            dut.close()
        except Exception as e:  # noqa: BLE001
            self._log(spec.name, f"closing the slot: {e}")

    def _record(self, job: SlotJob, result: UpgradeResult) -> None:
        from ..records import record_from_result
        rec = self.recorder
        if rec is None:
            return
        try:
            r = record_from_result(result, run_id=rec.run.run_id, station=self.station.name,
                                   operator=self.operator,
                                   max_attempts=(job.retry.attempts if job.retry else 1),
                                   run_dir=rec.path)
            rec.add(r)
        except Exception as e:  # noqa: BLE001 - said on the stream and in run.json
            self._log(job.slot, f"record not written: {e}")
            try:
                rec.run.note_problem(f"{job.slot}: record not written: {e}")
            except Exception:  # noqa: BLE001
                pass

    def _error_result(self, job: SlotJob, cause: str, reason: str, start_ns: int,
                      start_wall: float) -> UpgradeResult:
        """An error before any upgrade could start (the slot's port, lines, module)."""
        end_ns = now_ns()
        end_wall = start_wall + (end_ns - start_ns) / 1e9
        att = Attempt(1, "error", None, cause, reason, start_ns, end_ns,
                      started_utc=_utc(start_wall), ended_utc=_utc(end_wall))
        spec = job.spec
        self.events.publish(BenchEvent(now_ns(), spec.name, "outcome", outcome="error",
                                       attempt=1, detail=f"{cause}: {reason.splitlines()[0]}",
                                       extra={"reason": reason, "cause": cause}))
        return UpgradeResult(
            outcome="error", check=None, cause=cause, reason=reason, slot=spec.name,
            model=spec.model, imei=None, version_before=None, build_before=None,
            version_after=None, build_after=None, expected_version=None,
            package=str(job.package), package_size=None, package_md5=None, package_ok=None,
            url=None, protocol=spec.protocol or self.station.protocol, dialect="agent",
            states=(), grammar=None, watchdog=None, transfers=(), power_events=(),
            attempts=(att,), logs={}, start_ns=start_ns, end_ns=end_ns,
            started_utc=_utc(start_wall), ended_utc=_utc(end_wall))

    def _job_ended(self, job: SlotJob) -> None:
        with self._done_cv:
            self._done_cv.notify_all()
        _trim_heap()


    # -- all at once ---------------------------------------------------------------------------
    def run(self, package: Union[PathLike, Mapping[str, PathLike]], *, slots: Optional[Sequence[str]] = None,
            stop_on_failure: bool = False, retry: Optional[RetryPolicy] = None,
            progress: Optional[bool] = None) -> BenchRun:
        """Upgrade every slot (or ``slots``) at once and wait for all. ``progress``:
        show the live table (None: yes). ``package`` may be a mapping slot -> package
        (a station of several models: each gets its own). Ctrl-C cancels every slot and returns a
        BenchRun with ``interrupted`` set (exit code 130) after all are recorded."""
        names = [s.name for s in self.station.slots] if slots is None else list(slots)
        for n in names:
            self._slot(n)
        if len(set(names)) != len(names):
            raise BenchError(f"a slot is named twice in {names}")
        self.start()
        display = None
        if progress is None or progress:
            from rich.console import Console

            from .progress import Progress
            display = Progress(self.events, console=Console(stderr=True),
                               slots=[self._slot(n) for n in names],
                               title=f"station {self.station.name}").start()
        interrupted = False
        jobs: list[SlotJob] = []
        # The slots' threads wait at this gate until all are started: Thread.start()
        # waits for the new thread to run, and with the started slots busy (starting
        # their modules) each start waited its turn for the GIL (64 slots: 0.3 s
        # before the last one began).
        gate = threading.Event()
        try:
            try:
                try:
                    for n in names:
                        if isinstance(package, Mapping):
                            if n not in package:
                                raise BenchError(f"no package given for slot {n}")
                            jobs.append(self.start_slot(n, package[n], retry=retry,
                                                        _gate=gate))
                        else:
                            jobs.append(self.start_slot(n, package, retry=retry, _gate=gate))
                finally:
                    gate.set()
                stopped = False
                while not all(j.done() for j in jobs):
                    with self._done_cv:
                        self._done_cv.wait(0.2)
                    if stop_on_failure and not stopped and any(
                            j.done() and j.result is not None and not j.result.ok
                            for j in jobs):
                        stopped = True
                        for j in jobs:
                            if not j.done():
                                j.cancel("stopped")
            except KeyboardInterrupt:
                interrupted = True
                for j in jobs:
                    j.cancel("interrupted")
            # Every slot ends (its port closed ends its waits): wait for all, even
            # through a second Ctrl-C, so nothing is left running.
            for j in jobs:
                while True:
                    try:
                        j.wait()
                        break
                    except KeyboardInterrupt:
                        interrupted = True
                        j.cancel("interrupted")
        finally:
            if display is not None:
                display.stop()
        if self.recorder is not None:
            try:
                self.recorder.flush()
                self.recorder.run.refresh_index(force=True)
            except Exception as e:  # noqa: BLE001 - kept pending, said at close
                self._log("", f"records: {e}")
        results = {j.slot: j.result for j in jobs if j.result is not None}
        if display is not None:
            from rich.console import Console

            from .progress import print_summary
            print_summary(display.rows(), console=Console(stderr=True),
                          title=f"station {self.station.name}"
                                + (" (interrupted)" if interrupted else ""))
        code = 130 if interrupted else (0 if results and all(
            r.ok for r in results.values()) and len(results) == len(names) else 1)
        return BenchRun(results, interrupted, self.run_dir, code)

    def __repr__(self) -> str:
        busy = [s for s in self._jobs if self.busy(s)]
        return (f"<Bench {self.station.name}: {len(self.station.slots)} slots, "
                f"{len(busy)} running; run dir {self.run_dir}>")


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim) when a job
    ends: glibc keeps what an upgrade freed in its heaps (a soak's RSS rose 60-90 kB per
    upgrade while what was live stayed flat), and a station runs for days. A few ms,
    outside the GIL (ctypes releases it)."""
    trim = _MALLOC_TRIM[0]
    if trim is None:
        try:
            trim = ctypes.CDLL(None).malloc_trim if sys.platform.startswith("linux") \
                else False
        except (OSError, AttributeError):   # not glibc: nothing to trim
            trim = False
        _MALLOC_TRIM[0] = trim
    if trim:
        trim(0)


_MALLOC_TRIM: list[Any] = [None]     # glibc's malloc_trim, once looked up


class _Cancelled(Exception):
    pass
