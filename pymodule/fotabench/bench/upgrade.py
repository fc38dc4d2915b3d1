"""One FOTA upgrade of one module, as one call::

    >>> from fotabench import Upgrade
    >>> r = Upgrade(dut, "agent_v2.bin").run()          # doctest: +SKIP
    >>> r                                               # doctest: +SKIP
    <UpgradeResult PASS vdut 1.0.0 -> 2.0.0 http in 1.9 s; states START CONNECTING ...>

Phases: power (on if needed), boot (+FBREADY), identify (version, IMEI, model),
attach (GPRS), package (an app image is packaged on the fly), serve (the station's
PackageServer, one of its own on loopback, or the URL given), trigger (AT+FBUPG),
download (+FBSTATE lines checked against the protocol's grammar), reboot (+FBREADY
of the new app, WDI watched all along), verify (the new version).

The outcome is **pass**, **fail** (the module did something wrong: ``check`` says
which) or **error** (the bench, the network or the server failed: ``cause`` says
what). The rule, by evidence, in this order (docs/bench.md):

1. the bench could not do its part (port, lines, boot, attach, packaging, server,
   command timeouts) -> error;
2. the bench cut or cycled the power after the trigger -> error ("power");
3. the package server's record for this module shows the transfer changed or broken
   by the server (an injected fault, a refusal, an HTTP error, the server stopping),
   or no request reached it at all while the module failed -> error ("server",
   "network");
4. otherwise what the module did is judged: the state sequence against the grammar
   ("grammar"), the WDI gaps against 2/3 of the watchdog chip's timeout ("watchdog"),
   the trigger refused ("trigger"), a failure state after a complete transfer
   ("upgrade_failed"), a reboot in the middle ("rebooted"), silence ("silent"), no
   boot after UP_SYSTEM_REBOOT ("reboot"), the version after it ("version") -> fail.

A :class:`RetryPolicy` retries errors, never failures; every attempt is kept.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from .._core import ArgumentError, BenchTimeoutError, ClosedError, FotabenchError
from ..modem import AtResponse
from ..timeline import Timeline, now_ns
from ..url import ModuleUrl
from .config import Timeouts
from .dialect import AGENT, Dialect, TriggerInfo, TriggerRefused
from .dut import BOARD_FAULTS, Dut, DutError
from .events import BenchEvent, EventBus
from .grammar import StateCheck, host_is_ip_literal

__all__ = ["Upgrade", "UpgradeResult", "Attempt", "StateSeen", "RetryPolicy", "OUTCOMES"]

OUTCOMES = ("pass", "fail", "error")
PathLike = Union[str, "os.PathLike[str]"]

#: After a failure state, how long to keep listening for its duplicate (the SDK
#: sometimes reports UP_UPGRADFAILED twice) so the record holds both.
FAILURE_GRACE_S = 0.5
#: How often the download loop looks at the bench's own power moves.
POLL_S = 0.2


@dataclass(frozen=True)
class StateSeen:
    """One state line: the state, its percentage, when its last byte arrived."""

    state: str
    percent: int
    t_ns: int
    line: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Retry an upgrade that ended in **error** (never one that failed): up to
    ``attempts`` attempts in all, ``delay`` seconds apart. ``causes`` limits the
    errors retried (empty: all)."""

    attempts: int = 3
    delay: float = 2.0
    causes: tuple[str, ...] = ()

    def should_retry(self, attempt: "Attempt") -> bool:
        return (attempt.outcome == "error" and attempt.number < self.attempts
                and (not self.causes or attempt.cause in self.causes))


@dataclass(frozen=True)
class Attempt:
    """One attempt: its outcome, the failed check or the error's cause, one sentence
    saying why, and what was seen."""

    number: int
    outcome: str
    check: Optional[str]
    cause: Optional[str]
    reason: str
    start_ns: int
    end_ns: int
    states: tuple[StateSeen, ...] = ()
    grammar: Optional[dict[str, Any]] = None
    watchdog: Optional[dict[str, Any]] = None
    transfers: tuple[dict[str, Any], ...] = ()
    power_events: tuple[dict[str, Any], ...] = ()
    version_before: Optional[str] = None
    version_after: Optional[str] = None
    phases: tuple[tuple[str, int], ...] = ()
    started_utc: str = ""
    ended_utc: str = ""
    url: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["states"] = [asdict(s) for s in self.states]
        d["phases"] = [list(p) for p in self.phases]
        return d


def _utc(t: float) -> str:
    """Wall clock UTC as records write it (docs/records.md): 2026-11-30T05:02:19.123456Z."""
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class UpgradeResult:
    """Everything a record needs about one upgrade (all attempts). The top-level
    fields are those of the last attempt. Times: ``*_ns`` on the bench's monotonic
    clock (fotabench.now_ns), ``started_utc``/``ended_utc`` wall clock, ISO 8601."""

    outcome: str                     # "pass" | "fail" | "error"
    check: Optional[str]             # fail: which check
    cause: Optional[str]             # error: what failed
    reason: str
    slot: str
    model: Optional[str]
    imei: Optional[str]
    version_before: Optional[str]
    build_before: Optional[str]
    version_after: Optional[str]
    build_after: Optional[str]
    expected_version: Optional[str]
    package: Optional[str]
    package_size: Optional[int]
    package_md5: Optional[str]
    package_ok: Optional[bool]
    url: Optional[str]
    protocol: str
    dialect: str
    states: tuple[StateSeen, ...]
    grammar: Optional[dict[str, Any]]
    watchdog: Optional[dict[str, Any]]
    transfers: tuple[dict[str, Any], ...]
    power_events: tuple[dict[str, Any], ...]
    attempts: tuple[Attempt, ...]
    logs: dict[str, str]
    start_ns: int
    end_ns: int
    started_utc: str
    ended_utc: str

    @property
    def ok(self) -> bool:
        return self.outcome == "pass"

    @property
    def duration(self) -> float:
        """Seconds, all attempts."""
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def watchdog_gap_ms(self) -> Optional[float]:
        if not self.watchdog:
            return None
        return float(self.watchdog["longest_gap_ns"]) / 1e6

    @property
    def state_names(self) -> list[str]:
        return [s.state for s in self.states]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["states"] = [asdict(s) for s in self.states]
        d["attempts"] = [a.to_dict() for a in self.attempts]
        d["duration_s"] = round(self.duration, 3)
        return d

    def explain(self, grammar: Any = None) -> str:
        """A failure report: why, the states seen against the grammar, the watchdog's
        longest gap, the transfers, the tail of the UART log and its path
        (``fotabench.bench.explain``; ``grammar``: a custom dialect's)."""
        from .explain import explain
        return explain(self, grammar=grammar)

    def assert_pass(self, grammar: Any = None) -> None:
        """Raise ``UpgradeFailed`` (an AssertionError) whose message is
        :meth:`explain` unless the upgrade passed."""
        from .explain import assert_pass
        assert_pass(self, grammar)

    def summary(self) -> str:
        """One line: outcome, slot, versions, why."""
        what = {"pass": "", "fail": f" [{self.check}]", "error": f" [{self.cause}]"}[self.outcome]
        vers = f"{self.version_before or '?'} -> {self.version_after or '?'}"
        tail = "" if self.outcome == "pass" else f": {self.reason}"
        return (f"{self.outcome.upper()}{what} {self.slot} {vers} {self.protocol} "
                f"in {self.duration:.1f} s{tail}")

    def __repr__(self) -> str:
        groups: list[list[StateSeen]] = []
        for s in self.states:  # runs of one state: GETTING_FILE 0..100
            if groups and groups[-1][0].state == s.state:
                groups[-1].append(s)
            else:
                groups.append([s])
        states = []
        for g in groups:
            name, lo, hi = g[0].state.removeprefix("UP_"), g[0].percent, g[-1].percent
            states.append(name + (f" {lo}..{hi}" if lo != hi else f" {lo}" if lo else "")
                          + (f" x{len(g)}" if lo == hi and len(g) > 1 else ""))
        wd = self.watchdog
        gap = (f"; watchdog gap {wd['longest_gap_ns'] / 1e6:.0f} ms of "
               f"{wd['timeout_ns'] / 1e6:.0f} ms" if wd else "; watchdog not watched")
        tries = f"; {len(self.attempts)} attempts" if len(self.attempts) > 1 else ""
        return (f"<UpgradeResult {self.summary()}; states {', '.join(states) or 'none'}"
                f"{gap}{tries}>")


class _Verdict(Exception):
    """Ends an attempt with an outcome (raised from inside a phase)."""

    def __init__(self, outcome: str, what: str, reason: str):
        super().__init__(reason)
        self.outcome, self.what, self.reason = outcome, what, reason


def _fail(check: str, reason: str) -> _Verdict:
    return _Verdict("fail", check, reason)


def _error(cause: str, reason: str) -> _Verdict:
    return _Verdict("error", cause, reason)


_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def module_name(dut_name: str) -> str:
    """The name a module's URLs carry (``/m/NAME/...``), so the server's records say
    which module fetched: the Dut's name made safe for a path."""
    return _SAFE.sub("_", dut_name)[:32] or "dut"


class Upgrade:
    """One upgrade of ``dut`` to ``package_or_app`` (a FOTA package, or an app image
    packaged on the fly; with a "raw" dialect, any file).

    ``protocol``: "http" or "ftp" (default: the slot's, else "http"). ``url``: fetch
    from there instead of serving the package (the bench then has no transfer record to tell a broken transfer from a
    module's fault). ``server``: the station's running :class:`fotabench.PackageServer`
    (default: one of its own on 127.0.0.1 for the run). ``expect_version``: the
    version the module must run afterwards (default: any other than before).
    ``expect_imei``: the IMEI the module must say (``AT+GSN``), e.g. one scanned off its
    label: another is a **fail** ``wrong_module`` (both IMEIs in the reason), judged
    before anything is served or upgraded.
    ``events``: an :class:`EventBus` (default: a private one shown on stderr by
    :class:`fotabench.bench.progress.Progress`: a live table on a terminal, plain lines
    elsewhere). ``timeline``: where every event lands (default: the Dut's, else a new
    one). ``timeouts``: per phase (default: the slot's, else ``Timeouts()``, fit for
    GPRS). ``log_dir``: write the timeline there as JSON lines. ``wdt_timeout``: the
    watchdog chip's timeout in seconds (the WDI gaps are judged against 2/3 of it).
    ``faults``: fault specs as in a station file (default: a virtual slot's
    ``VirtualSpec.faults``): server faults go to the package server scoped to this
    module, ``power_cut:at=N%`` makes the bench cut VBAT at the first state at or past
    N % (``times``, default 1, attempts), the board's own were applied by the Dut.
    ``on_attempt``: called with the result so far (its last attempt the one that just
    ended) the moment each attempt ends, so a recorder keeps every attempt even when a
    later one is interrupted. :meth:`cancel` (from any thread) ends the run promptly
    as an error.
    """

    def __init__(self, dut: Dut, package_or_app: PathLike, *, protocol: Optional[str] = None,
                 url: Optional[Union[str, ModuleUrl]] = None, server: Any = None,
                 timeouts: Optional[Timeouts] = None, dialect: Optional[Dialect] = None,
                 retry: Optional[RetryPolicy] = None, events: Optional[EventBus] = None,
                 timeline: Optional[Timeline] = None, expect_version: Optional[str] = None,
                 expect_imei: Optional[str] = None, log_dir: Optional[PathLike] = None, wdt_timeout: float = 1.6,
                 workdir: Optional[PathLike] = None, faults: Optional[Sequence[str]] = None,
                 on_attempt: Optional[Callable[["UpgradeResult"], Any]] = None):
        slot = getattr(dut, "slot", None)
        protocol = protocol or (slot.protocol if slot is not None else None) or "http"
        if protocol not in ("http", "ftp"):
            raise ValueError(f"protocol must be 'http' or 'ftp', got {protocol!r}")
        self.dut = dut
        self.source = Path(package_or_app)
        if not self.source.is_file():
            raise FileNotFoundError(f"no such package or app image: {self.source}")
        self.protocol = protocol
        self.url = None if url is None else str(url)
        self.server = server
        self.timeouts = timeouts or (slot.timeouts if slot is not None else None) or Timeouts()
        self.dialect = dialect or AGENT
        self.retry = retry or RetryPolicy(attempts=1)
        # No bus given: a private one, shown by the bench's progress display (a live
        # table on a terminal, plain lines elsewhere) on stderr during run().
        self._own_progress = events is None
        self.events = events if events is not None else EventBus()
        self.timeline = timeline or dut.timeline or Timeline()
        self.expect_version = expect_version
        self.expect_imei = expect_imei
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.wdt_timeout = wdt_timeout
        self.workdir = None if workdir is None else Path(workdir)
        self.module_name = module_name(dut.name)
        if faults is None and slot is not None and slot.virtual is not None:
            faults = slot.virtual.faults
        self._server_faults, self._power_cuts = self._parse_faults(faults or ())
        for prefix in self.dialect.urc_prefixes:
            dut.modem.add_urc(prefix)
        # What the current attempt has learnt (reset per attempt).
        self._pkg: Optional[dict[str, Any]] = None
        self._identity: dict[str, Optional[str]] = {"imei": None, "model": dut.model}
        self._served_total = 0
        self._wall_offset = 0.0
        self.on_attempt = on_attempt
        self._active_faults: list[Any] = []
        # Read now: a cancelled run closes the port before the result is made.
        self._uart_log: Optional[str] = dut.modem.port.log_path
        self._cancelled: Optional[str] = None
        self._cancel_event = threading.Event()

    # -- injected faults ---------------------------------------------------------------------
    def _parse_faults(self, specs: Sequence[str]) -> tuple[list[Any], list[dict[str, Any]]]:
        """The slot's faults (docs/stations.md): server faults for the package server,
        power cuts for the bench to make; the board's own (attach_fail...) were given
        to the virtual module when the Dut started it."""
        server: list[Any] = []
        cuts: list[dict[str, Any]] = []
        if not specs:
            return server, cuts      # no faults: no need to import the station parser
        from .station import parse_fault
        for spec in specs:
            name = spec.replace(":", "=", 1).partition("=")[0].strip().replace("-", "_")
            if name in BOARD_FAULTS:
                continue            # the board's own, applied when the Dut started it
            f = parse_fault(spec)   # ValueError with a one-line reason
            if f.where == "server":
                server.append(f.server_fault)
            elif f.kind == "power_cut":
                cuts.append({"spec": spec, "times": f.params.get("times", 1),
                             "at_percent": f.params.get("at_percent"),
                             "at": f.params.get("at")})
        return server, cuts

    def _add_server_faults(self, server: Any) -> list[Any]:
        import dataclasses
        added = []
        for f in self._server_faults:
            # Scoped to this module's per-module URL, so a shared station server
            # hurts no other slot; connection-level faults (refuse...) happen before a
            # path names the module and can only be scoped by address.
            scoped = f if f.kind in ("refuse", "slow_accept", "login_fail") or f.client \
                else dataclasses.replace(f, client=self.module_name)
            added.append(server.add_fault(scoped))
        return added

    def _maybe_cut_power(self, run: "_Run", percent: int) -> None:
        size = int((self._pkg or {}).get("size") or 0)
        for cut in self._power_cuts:
            if cut.get("left", 0) <= 0 or run.cut_done:
                continue
            at = cut["at_percent"] if cut["at_percent"] is not None else (
                100.0 * cut["at"] / size if size else 0.0)
            if percent >= at:
                cut["left"] -= 1
                run.cut_done = True
                self._emit("power", detail=f"cut (fault {cut['spec']}) at {percent} %")
                self.dut.cut_power()

    # -- events ------------------------------------------------------------------------------
    def _emit(self, kind: str, **kw: Any) -> None:
        self.events.publish(BenchEvent(now_ns(), self.dut.name, kind, **kw))

    def _phase(self, run: "_Run", phase: str, detail: Optional[str] = None) -> None:
        run.phases.append((phase, now_ns()))
        self.timeline.add(f"upgrade:{self.dut.name}", "phase", phase=phase, detail=detail)
        self._emit("phase", phase=phase, detail=detail)

    # -- cancelling -----------------------------------------------------------------------------
    def cancel(self, cause: str = "cancelled") -> None:
        """End a run in progress (from another thread) as an **error** with ``cause``,
        within a moment: the module's port is closed, which ends any wait on it (the
        Dut cannot be used afterwards; close it). No retry follows."""
        if self._cancelled is None:
            self._cancelled = cause
        self._cancel_event.set()
        try:
            self.dut.modem.close()
        except Exception:  # noqa: BLE001 - already closed, or closing: either ends the wait
            pass

    @property
    def cancelled(self) -> Optional[str]:
        return self._cancelled

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> UpgradeResult:
        """Run the upgrade (with retries of errors); never raises for an outcome:
        bench failures become an ``error`` result (Ctrl-C still interrupts)."""
        start_ns, start_wall = now_ns(), time.time()
        self._wall_offset = start_wall - start_ns / 1e9   # bench clock -> wall clock
        self._pkg = None            # a second run() packages again (the first one's
        self._identity = {"imei": None, "model": self.dut.model}   # copy is gone)
        self._served_total = 0
        for cut in self._power_cuts:
            cut["left"] = cut["times"]
        attempts: list[Attempt] = []
        runs: list[_Run] = []
        own_server = None
        tmp = None
        progress = self._start_progress() if self._own_progress else None
        faults_added: list[Any] = []
        try:
            n = 0
            while True:
                n += 1
                self._emit("attempt", attempt=n)
                run = _Run(n)
                runs.append(run)
                try:
                    if self._pkg is None:
                        if self.workdir is None:
                            tmp = tempfile.mkdtemp(prefix="fbupg")
                        self._pkg = self._prepare(run, Path(self.workdir or tmp or "."))
                    if self.url is None and self.server is None and own_server is None:
                        own_server = self._start_server(run)
                    if self.url is None and not faults_added and self._server_faults:
                        # once per run: a fault's `times` budget spans the attempts
                        faults_added = self._add_server_faults(own_server or self.server)
                        self._active_faults = faults_added
                    self._attempt(run, own_server or self.server)
                    verdict = _Verdict("pass", "", "upgraded")
                except _Verdict as v:
                    verdict = v
                except Exception as e:  # noqa: BLE001 - a bench failure is an outcome
                    # (error), never an exception out of run(): a station goes on.
                    verdict = _error(_cause_of(e), f"{type(e).__name__}: {e}")
                finally:
                    run.end_ns = now_ns()
                    try:  # also on Ctrl-C: the monitor's listener must leave the line
                        self._stop_watchdog(run)
                    except Exception:  # noqa: BLE001 - the verdict is already decided
                        pass
                if self._cancelled is not None and verdict.outcome != "pass":
                    verdict = _error(self._cancelled, f"{self._cancelled} during "
                                     f"{run.phases[-1][0] if run.phases else 'the start'} "
                                     f"(then: {verdict.reason.splitlines()[0]})")
                att = self._finish_attempt(run, verdict, own_server or self.server)
                attempts.append(att)
                # One line for displays (a grammar reason is a whole page); the full
                # reason rides in extra.
                detail = ("" if att.outcome == "pass" else
                          f"{att.check or att.cause}: {att.reason.splitlines()[0]}")
                self._emit("outcome", outcome=att.outcome, attempt=n, detail=detail,
                           extra={"reason": att.reason, "check": att.check,
                                  "cause": att.cause})
                if self.on_attempt is not None:
                    try:
                        self.on_attempt(self._result(attempts, runs, start_ns, start_wall))
                    except Exception as e:  # noqa: BLE001 - the record's problem, said
                        self._emit("log", detail=f"recording attempt {n} failed: {e}")
                if self._cancelled is not None or not self.retry.should_retry(att):
                    break
                self._emit("log", detail=f"retrying in {self.retry.delay} s "
                                         f"(error: {att.cause})")
                if self._cancel_event.wait(self.retry.delay):
                    break
        finally:
            if progress is not None:
                progress.stop()
            if faults_added and self.server is not None:   # a shared server: undo ours
                for f in faults_added:
                    self.server.remove_fault(f)
            if own_server is not None:
                own_server.stop()
            if tmp is not None:
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
        return self._result(attempts, runs, start_ns, start_wall)

    __call__ = run

    def _start_progress(self) -> Any:
        from rich.console import Console

        from .progress import Progress
        return Progress(self.events, console=Console(stderr=True),
                        slots=[self.dut.name]).start()

    # -- preparation ---------------------------------------------------------------------------
    def _prepare(self, run: "_Run", work: Path) -> dict[str, Any]:
        """The package to serve: checked, packaged from an app image if need be."""
        from ..checksum import md5_file
        from ..image import AppImage
        from ..package import Package
        self._phase(run, "package", str(self.source))
        if self.dialect.packaging == "raw":
            size = self.source.stat().st_size
            return {"path": self.source, "size": size, "md5": md5_file(self.source),
                    "ok": None, "note": ""}
        try:
            app = AppImage.inspect(self.source)
            is_app = app.ok
        except FotabenchError:
            is_app = False
        if is_app:
            out = work / f"pkg_{os.getpid()}_{run.number}.bin"
            try:
                pkg = Package.build(self.source, out, model=self.dut.model or "auto")
            except FotabenchError as e:
                raise _error("package", f"cannot package {self.source}: {e}") from e
            return {"path": pkg.path, "size": pkg.size, "md5": pkg.md5, "ok": True,
                    "note": f"packaged from app image {self.source}"}
        try:
            pkg = Package.inspect(self.source, model="auto")
        except FotabenchError as e:
            raise _error("package", f"{self.source} is neither a FOTA package nor an app "
                                    f"image: {e}") from e
        # Models sharing a load address are all candidates: refuse only a package
        # none of whose candidates is the slot's model.
        cands = tuple(pkg.candidates) or ((pkg.model,) if pkg.model else ())
        if cands and self.dut.model and self.dut.model.upper() not in {
                c.upper() for c in cands}:
            raise _error("package", f"{self.source} is a package for "
                                    f"{' or '.join(cands)}, this slot holds a "
                                    f"{self.dut.model}")
        note = ""
        if not pkg.ok:
            # Served anyway: a bench may test that modules refuse a bad package. The
            # module is then expected to report a failure; the record says why.
            note = "the package fails its own check (" + "; ".join(
                f"{c.name}: {c.detail}" for c in pkg.failures) + ")"
            self._emit("log", detail=f"warning: {note}")
        return {"path": pkg.path, "size": pkg.size,
                "md5": pkg.md5 if pkg.ok else md5_file(pkg.path), "ok": pkg.ok,
                "note": note}

    def _start_server(self, run: "_Run") -> Any:
        from ..server import PackageServer
        self._emit("log", detail="starting a package server on 127.0.0.1")
        try:
            srv = PackageServer([], bind="127.0.0.1", timeline=self.timeline,
                                http=0 if self.protocol == "http" else None,
                                ftp=0 if self.protocol == "ftp" else None)
            srv.start()
        except Exception as e:
            raise _error("server", f"cannot start the package server: {e}") from e
        return srv

    def _served_url(self, server: Any) -> str:
        assert self._pkg is not None
        path = Path(self._pkg["path"])
        name = path.name
        if len(name) > 24 or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", name):
            # FTP file names are 24 characters at most (spec section 3).
            name = f"fw_{(self._pkg['md5'] or 'x' * 12)[:12]}.bin"
        try:
            try:
                server.add_package(path, name, exist_ok=True)
            except ArgumentError:
                # A shared server already serves other bytes under this name (an app
                # packaged on the fly is always pkg_<pid>_<n>.bin): serve ours by content.
                name = f"fw_{self._pkg['md5'][:12]}.bin"
                server.add_package(path, name, exist_ok=True)
            return str(server.url_for(name, self.protocol, module=self.module_name))
        except Exception as e:
            raise _error("server", f"cannot serve {path} over {self.protocol}: {e}") from e

    # -- one attempt -----------------------------------------------------------------------------
    def _attempt(self, run: "_Run", server: Any) -> None:
        d, t, dia = self.dut, self.timeouts, self.dialect
        run.power_mark = len(d.power_events)
        # power and boot
        self._phase(run, "power")
        if not self._answers():
            # An old boot's announcement still queued must not pass for this boot's.
            while d.modem.next_line(0) is not None:
                pass
            if d.can_power:
                self._emit("power", detail="on (VBAT, then PWRKEY >= 1 s)")
                try:
                    d.power_on()
                except Exception as e:
                    raise _error("gpio", f"power-on failed: {e}") from e
            else:
                self._emit("log", detail="the module does not answer and no PWRKEY is "
                                         "wired: waiting for it to boot")
            self._phase(run, "boot")
            ready = self._wait_ready(t.boot)
            if ready is None:
                raise _error("boot_timeout", f"no boot announcement within {t.boot:g} s of "
                                             "power-on")
            run.version_before, run.build_before = ready
        # identify
        self._phase(run, "identify")
        version = self._version()
        if version is not None:
            run.version_before, run.build_before = version
        if run.version_before is None:
            raise _error("identify", "the module did not say its version (is the bench "
                                     f"agent, or the {dia.name} app, running?)")
        if dia.at:
            ident = d.identity(t.command)
            self._identity = {"imei": ident.imei, "model": ident.model or d.model}
        self._emit("log", extra={"model": self._identity["model"],
                                 "imei": self._identity["imei"],
                                 "version": run.version_before})
        if self.expect_imei is not None:
            self._check_imei(dia)
        # attach
        if dia.at:
            self._phase(run, "attach")
            self._wait_attached(t.attach)
        # serve
        url = self.url if self.url is not None else self._served_url(server)
        run.url = url
        self._phase(run, "serve", url)
        # trigger, with WDI watched from here to the new app's boot
        run.t_trigger = now_ns()
        run.power_mark = len(d.power_events)
        run.faults_used = [f.used for f in self._active_faults]
        # Lines queued before now (an earlier boot's +FBREADY...) are not this upgrade's.
        while d.modem.next_line(0) is not None:
            pass
        self._start_watchdog(run)
        self._phase(run, "trigger")
        self._trigger(run, url)
        # download
        self._phase(run, "download")
        ended = self._follow(run)
        if ended != "success":
            raise self._judge_failed_download(run, server, ended)
        self._check_grammar(run)
        # reboot
        self._phase(run, "reboot")
        ready = self._wait_ready(t.reboot, run=run)
        if ready is None:
            self._bench_power_evidence(run)
            raise _fail("reboot", f"no boot announcement within {t.reboot:g} s of "
                                  f"{run.states[-1].state}")
        run.version_after, run.build_after = ready
        self._stop_watchdog(run)
        self._phase(run, "verify")
        v = self._version()
        if v is not None:
            run.version_after, run.build_after = v
        self._emit("log", extra={"version": run.version_after})   # displays say it
        self._check_watchdog(run)
        want = self.expect_version
        if want is not None and run.version_after != want:
            raise _fail("version", f"running {run.version_after} after the upgrade, "
                                   f"expected {want}")
        if want is None and run.version_after == run.version_before:
            raise _fail("version", f"still running {run.version_before} after "
                                   f"{run.states[-1].state} and a reboot")

    # -- phases' pieces --------------------------------------------------------------------------
    def _answers(self) -> bool:
        cmd = self.dialect.liveness_command or self.dialect.version_command
        if cmd is None:
            return False
        try:
            r = self.dut.modem.command(cmd, 1.5, check=False,
                                       terminator=self.dialect.command_end)
        except BenchTimeoutError:
            return False
        return r.result in ("OK", "CUSTOM")

    def _command(self, cmd: str, timeout: float) -> AtResponse:
        try:
            return self.dut.modem.command(cmd, timeout, check=False,
                                          terminator=self.dialect.command_end)
        except BenchTimeoutError as e:
            raise _error("command_timeout", f"no answer to {cmd!r} within {timeout:g} s") from e

    def _version(self) -> Optional[tuple[str, str]]:
        dia = self.dialect
        if not dia.version_command or not dia.version_pattern:
            return None
        r = self._command(dia.version_command, self.timeouts.command)
        rx = re.compile(dia.version_pattern)
        for line in r.lines:
            m = rx.search(line)
            if m:
                build = m.group("build") if "build" in rx.groupindex else ""
                return m.group("version"), build or ""
        return None

    def _wait_ready(self, timeout: float, run: Optional["_Run"] = None
                    ) -> Optional[tuple[str, str]]:
        """The next boot announcement within timeout, or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            got = self.dut.modem.next_line(min(left, 1.0))
            if got is None:
                continue
            line, t_ns, _ = got
            ready = self.dialect.parse_ready(line)
            if ready is not None:
                if run is not None:
                    run.ready_t_ns = t_ns
                return ready

    def _wait_attached(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = self._command("AT+CGATT?", self.timeouts.command)
            if any(re.match(r"\+CGATT: *1", ln) for ln in r.lines):
                return
            if time.monotonic() >= deadline:
                raise _error("attach", f"not attached to GPRS within {timeout:g} s "
                                       f"(last answer {r.lines + [r.final]})")
            time.sleep(min(1.0, max(0.05, timeout / 100)))

    def _start_watchdog(self, run: "_Run") -> None:
        wdi = self.dut.wdi
        if wdi is None:
            return
        from ..watchdog import WatchdogMonitor
        run.watchdog = WatchdogMonitor(wdi, timeout=self.wdt_timeout, timeline=self.timeline,
                                       source=f"watchdog:{self.dut.name}")

    def _stop_watchdog(self, run: "_Run") -> None:
        wd = run.watchdog
        if wd is None or run.watchdog_result is not None:
            return
        res = wd.stop()
        wd.close()
        run.watchdog_result = asdict(res) | {"ok": res.ok}
        self._emit("watchdog", gap_ms=res.longest_gap_ns / 1e6,
                   extra={"edges": res.edges, "timeout_ms": res.timeout_ns / 1e6})

    def _check_watchdog(self, run: "_Run", context: str = "") -> None:
        w = run.watchdog_result
        if w is None or w["ok"]:
            return
        if w["lost"]:
            raise _error("gpio", f"{w['lost']} WDI edges lost by the bench: the watchdog "
                                 "cannot be judged")
        raise _fail("watchdog", f"WDI not fed in time: longest gap "
                                f"{w['longest_gap_ns'] / 1e6:.0f} ms (limit "
                                f"{w['timeout_ns'] * 2 / 3 / 1e6:.0f} ms = 2/3 of "
                                f"{w['timeout_ns'] / 1e6:.0f} ms){context}")

    def _trigger(self, run: "_Run", url: str) -> None:
        dia = self.dialect
        pkg = self._pkg or {}
        info = TriggerInfo(url, self.protocol, pkg.get("md5"), int(pkg.get("size") or 0),
                           Path(str(pkg.get("path", "package"))).name)
        if callable(dia.trigger):
            try:
                dia.trigger(self.dut, info)
            except TriggerRefused as e:
                raise _fail("trigger", f"the module refused the upgrade: {e}") from e
            return
        cmd = info.format(dia.trigger)
        r = self._command(cmd, self.timeouts.command)
        answer = r.lines + [r.final]
        refused = dia.trigger_refused and any(re.search(dia.trigger_refused, ln)
                                              for ln in r.lines)
        accepted = (any(re.search(dia.trigger_ok, ln) for ln in answer) if dia.trigger_ok
                    else r.ok)
        if refused or not accepted:
            # The module refused: collect what it reports next (FTP's URL decode
            # failure is UP_URLDECODEFAIL right after the answer) for the record.
            self._collect_states(run, FAILURE_GRACE_S * 2)
            raise _fail("trigger", f"the module refused {cmd!r}: {' / '.join(answer)}")

    def _collect_states(self, run: "_Run", seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            got = self.dut.modem.next_line(left)
            if got is None:
                return
            self._note_line(run, *got[:2])

    def _note_line(self, run: "_Run", line: str, t_ns: int) -> Optional[str]:
        """Record a state line; returns its state (or "end"/"ready" for the other lines
        that matter)."""
        st = self.dialect.parse_state(line)
        if st is not None:
            run.states.append(StateSeen(st[0], st[1], t_ns, line))
            self.timeline.add(f"upgrade:{self.dut.name}", "state", state=st[0],
                              percent=st[1])
            self._emit("state", state=st[0], percent=st[1])
            if self._power_cuts:
                self._maybe_cut_power(run, st[1])
            return st[0]
        if self.dialect.is_end_line(line):
            run.end_line = line
            return "end"
        if self.dialect.parse_ready(line) is not None:
            run.ready_midway = (line, t_ns)
            return "ready"
        return None

    def _follow(self, run: "_Run") -> str:
        """Follow state lines until the download ends: "success", "failure", "end"
        (an end line), "ready" (the module rebooted midway), "silent" (inactivity or
        the total limit), "power" (the bench moved the power)."""
        t, dia, d = self.timeouts, self.dialect, self.dut
        total_deadline = time.monotonic() + t.download_total
        last = time.monotonic()
        while True:
            if d.power_events[run.power_mark:]:
                return "power"
            now = time.monotonic()
            if now >= total_deadline or now - last >= t.download_inactivity:
                return "silent"
            wait = min(POLL_S, total_deadline - now, last + t.download_inactivity - now)
            got = d.modem.next_line(max(0.0, wait))
            if got is None:
                continue
            last = time.monotonic()
            what = self._note_line(run, got[0], got[1])
            if what in dia.success:
                return "success"
            if what in dia.failure:
                self._collect_states(run, FAILURE_GRACE_S)
                return "failure"
            if what == "UP_URLDECODEFAIL" and self.protocol == "ftp" and dia is AGENT:
                return "failure"   # FTP: the decode failure is the only callback
            if what in ("end", "ready"):
                return what

    # -- judging -------------------------------------------------------------------------------
    def _bench_power_evidence(self, run: "_Run") -> None:
        moved = self.dut.power_events[run.power_mark:]
        if moved:
            what = ", ".join(f"{e.what} at +{(e.t_ns - run.t_trigger) / 1e9:.2f} s"
                             for e in moved)
            raise _error("power", f"the bench moved the module's power during the upgrade "
                                  f"({what})")

    def _transfers(self, run: "_Run", server: Any) -> list[Any]:
        if server is None or self.url is not None:
            return []
        return [r for r in server.records
                if r.module == self.module_name and r.start_ns >= run.t_trigger]

    def _check_imei(self, dia: Dialect) -> None:
        """The module in the slot is the one expected (scanned), before it is upgraded."""
        want, got = self.expect_imei, self._identity["imei"]
        if got is None:
            how = "" if dia.at else f" (the {dia.name} dialect has no AT identity)"
            raise _error("identify", f"the module did not say its IMEI{how}, so the "
                                     f"expected IMEI {want} cannot be checked")
        if got != want:
            raise _fail("wrong_module", f"wrong module: scanned IMEI {want}, the module in "
                                        f"slot {self.dut.name} says {got}")

    def _judge_failed_download(self, run: "_Run", server: Any, ended: str) -> _Verdict:
        self._stop_watchdog(run)
        self._bench_power_evidence(run)
        recs = self._transfers(run, server) if server is not None else []
        if server is not None and self.url is None:
            self._await_records(run, server)
            recs = self._transfers(run, server)
        broken = [r for r in recs if r.outcome in ("fault_injected", "rejected")]
        where = ""
        if not broken and server is not None and self.url is None:
            # Connection-level faults (refuse, slow_accept, login_fail) happen before a
            # path names the module: records of this attempt's window with no module.
            broken = [r for r in server.records if r.module is None and
                      r.start_ns >= run.t_trigger and r.outcome == "fault_injected"]
            where = f" ({len(broken)} connections, before any path named the module)"
        acting = [f for f, was in zip(self._active_faults, run.faults_used) if f.used > was]
        if not broken and acting:
            # A fault still acting (a stall) has no record yet: its request has not
            # ended when the module gave up. The server's fault log is the evidence.
            return _error("server", f"the server was injecting {', '.join(f.describe() for f in acting)} "
                                    f"into this module's transfer when it ended with "
                                    f"{self._ending(run, ended)}")
        if broken:
            r = broken[-1]
            faults = f" (fault {', '.join(r.faults)})" if r.faults else ""
            return _error("server", f"the server broke the transfer{faults}{where}: {r.protocol} "
                                    f"{r.outcome}, {r.bytes_sent} of {r.size} bytes sent"
                                    + (f", status {r.status}" if r.status else "")
                                    + (f": {r.detail}" if r.detail else ""))
        served_here = self.url is None and server is not None
        if served_here and not recs and ended in ("failure", "end", "silent"):
            return _error("network", "no request for the package reached the server "
                                     f"(the module ended with {self._ending(run, ended)})")
        g = self._grammar(run)
        if g is not None and not g.ok and ended in ("failure", "end"):
            return _fail("grammar", str(g))
        self._check_watchdog(run, "; then the module rebooted in the middle of the "
                                  f"download (after {self._last(run)})"
                             if ended == "ready" else "")
        complete = [r for r in recs if r.outcome == "complete"]
        how = ""
        if complete:
            how = f" after a complete transfer ({complete[-1].bytes_sent} bytes)"
        elif recs:
            r = recs[-1]
            how = f" after the transfer ended {r.outcome} at {r.bytes_sent} of {r.size} bytes"
        note = f"; {self._pkg['note']}" if self._pkg and self._pkg.get("note") else ""
        if not served_here:
            note += "; the URL was given, so no server record tells a broken transfer " \
                    "from the module's fault"
        if ended == "failure":
            return _fail("upgrade_failed", f"the module reported {run.states[-1].state}"
                                           f"{how}{note}")
        if ended == "end":
            return _fail("upgrade_failed", f"the module ended the upgrade with "
                                           f"{run.end_line!r}{how}{note}")
        if ended == "ready":
            return _fail("rebooted", f"the module rebooted in the middle of the download "
                                     f"(after {self._last(run)}){how}")
        return _fail("silent", f"no state line for {self.timeouts.download_inactivity:g} s "
                               f"after {self._last(run)}{how}")

    def _await_records(self, run: "_Run", server: Any) -> None:
        # A server record is added when its request ends, which can be a moment after
        # the module reported the failure.
        try:
            server.wait_for(lambda rs: any(r.module == self.module_name and
                                           r.start_ns >= run.t_trigger for r in rs), 2.0)
        except TimeoutError:
            pass

    @staticmethod
    def _last(run: "_Run") -> str:
        return f"{run.states[-1].state} {run.states[-1].percent}" if run.states else \
            "the trigger"

    def _ending(self, run: "_Run", ended: str) -> str:
        if ended == "end":
            return repr(run.end_line)
        return self._last(run) if ended != "silent" else f"silence after {self._last(run)}"

    def _grammar(self, run: "_Run") -> Optional[StateCheck]:
        host = None
        if run.url:
            m = re.match(r"^[a-zA-Z]+://([^/:@]+)", run.url)
            host = m.group(1) if m else None
        g = self.dialect.grammar_for(self.protocol, host_is_ip_literal(host))
        if g is None:
            return None
        run.grammar = g.check([(s.state, s.percent) for s in run.states])
        return run.grammar

    def _check_grammar(self, run: "_Run") -> None:
        g = self._grammar(run)
        if g is not None and not g.ok:
            self._stop_watchdog(run)
            raise _fail("grammar", str(g))

    # -- the record --------------------------------------------------------------------------------
    def _finish_attempt(self, run: "_Run", v: _Verdict, server: Any) -> Attempt:
        self._stop_watchdog(run)
        if run.grammar is None and run.states:
            self._grammar(run)
        transfers = tuple(r.to_dict() for r in self._transfers(run, server)) \
            if run.t_trigger else ()
        for tr in transfers:   # bytes_served: the slot's total so far (as displays read it)
            self._served_total += tr["bytes_sent"]
            self._emit("served", bytes_served=self._served_total,
                       detail=f"{tr['protocol']} {tr['outcome']}",
                       extra={"transfer_bytes": tr["bytes_sent"]})
        power = tuple(e.to_dict() for e in self.dut.power_events
                      if run.start_ns <= e.t_ns <= run.end_ns)
        return Attempt(run.number, v.outcome, v.what if v.outcome == "fail" else None,
                       v.what if v.outcome == "error" else None, v.reason,
                       run.start_ns, run.end_ns, tuple(run.states),
                       None if run.grammar is None else run.grammar.to_dict(),
                       run.watchdog_result, transfers, power, run.version_before,
                       run.version_after, tuple(run.phases),
                       _utc(self._wall_offset + run.start_ns / 1e9),
                       _utc(self._wall_offset + run.end_ns / 1e9), run.url)

    def _result(self, attempts: list[Attempt], runs: list["_Run"], start_ns: int,
                start_wall: float) -> UpgradeResult:
        last, run = attempts[-1], runs[-1]
        # "before" is what the module ran before the first attempt that could tell
        first = next((r for r in runs if r.version_before), run)
        end_ns = now_ns()
        logs: dict[str, str] = {}
        uart_log = self._uart_log
        if uart_log:
            logs["uart1"] = uart_log
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            p = self.log_dir / f"{self.module_name}.timeline.jsonl"
            self.timeline.write_jsonl(p)
            logs["timeline"] = str(p)
        pkg = self._pkg or {}
        return UpgradeResult(
            outcome=last.outcome, check=last.check, cause=last.cause, reason=last.reason,
            slot=self.dut.name, model=self._identity.get("model") or self.dut.model,
            imei=self._identity.get("imei"),
            version_before=first.version_before, build_before=first.build_before,
            version_after=run.version_after, build_after=run.build_after,
            expected_version=self.expect_version,
            package=str(self.source), package_size=pkg.get("size"),
            package_md5=pkg.get("md5"), package_ok=pkg.get("ok"), url=run.url,
            protocol=self.protocol, dialect=self.dialect.name, states=last.states,
            grammar=last.grammar, watchdog=last.watchdog, transfers=last.transfers,
            power_events=tuple(e for a in attempts for e in a.power_events),
            attempts=tuple(attempts), logs=logs, start_ns=start_ns, end_ns=end_ns,
            started_utc=_utc(start_wall),
            ended_utc=_utc(start_wall + (end_ns - start_ns) / 1e9))


@dataclass
class _Run:
    """What one attempt has seen so far."""

    number: int
    start_ns: int = field(default_factory=now_ns)
    end_ns: int = 0
    phases: list[tuple[str, int]] = field(default_factory=list)
    states: list[StateSeen] = field(default_factory=list)
    version_before: Optional[str] = None
    build_before: Optional[str] = None
    version_after: Optional[str] = None
    build_after: Optional[str] = None
    url: Optional[str] = None
    t_trigger: int = 0
    power_mark: int = 0
    watchdog: Any = None
    watchdog_result: Optional[dict[str, Any]] = None
    grammar: Optional[StateCheck] = None
    end_line: Optional[str] = None
    ready_midway: Optional[tuple[str, int]] = None
    ready_t_ns: int = 0
    cut_done: bool = False
    faults_used: list[int] = field(default_factory=list)


def _cause_of(e: BaseException) -> str:
    if isinstance(e, DutError):
        return "dut"
    if isinstance(e, ClosedError):
        return "port"
    if isinstance(e, BenchTimeoutError):
        return "command_timeout"
    if isinstance(e, OSError):
        return "os"
    return "bench"

