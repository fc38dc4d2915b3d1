"""Flashing every slot of a station at once (docs/flashing.md, "A station's slots")::

    >>> fs = FlashStation("station.yaml", da="MTK_AllInOne_DA.bin", out_dir="runs/flash-1")
    >>> run = fs.run("APP.bin", slots=["s1", "s2"], verify=True)      # doctest: +SKIP
    >>> run.exit_code, {s: r.outcome for s, r in run.results.items()}  # doctest: +SKIP
    (0, {'s1': 'pass', 's2': 'pass'})

One thread per slot (the C session releases the GIL), each independent: one slot's
failure never stops another. Each slot's progress goes on the EventBus (phases
download_mode, handshake, agent, erase, write, verify, reset; ``state`` events with the
erase and write percent; the outcome), and each attempt becomes a record of kind
"flash" (schema version 2) in the run directory and the database.

Download mode: a slot with PWRKEY and VBAT wired is powered up by the station (PWRKEY
held, VBAT cut, then VBAT on once the handshake is running); any other slot's operator
is told, one line per slot, to power the module with PWRKEY held low, and the handshake
waits ``handshake_timeout`` seconds.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from .. import _core
from ..flash import FlashResult, Flasher, da_inspect, da_path
from ..image import AppImage
from ..timeline import Timeline, now_ns
from .config import SlotSpec, StationSpec
from .dut import Dut
from .events import BenchEvent, EventBus

__all__ = ["FlashStation", "FlashRun", "SlotFlash", "FLASH_PHASES", "classify"]

PathLike = Union[str, "os.PathLike[str]"]

#: The phases a slot's flash goes through, in order (``phase`` events).
FLASH_PHASES = ("download_mode", "handshake", "agent", "erase", "write", "verify", "reset")

#: Causes that another attempt cannot cure (the station's set-up, the operator's stop).
_NO_RETRY = frozenset({"interrupted", "image_model", "port"})


class _Cancelled(Exception):
    """Raised by the cancel poll of a slot's session when the run is stopped."""


@dataclass(frozen=True)
class SlotFlash:
    """One slot's last attempt: ``outcome`` pass / fail (``check``) / error (``cause``)."""
    slot: str
    outcome: str
    attempt: int
    check: Optional[str] = None
    cause: Optional[str] = None
    detail: str = ""
    result: Optional[FlashResult] = None
    download_mode: str = "operator"     # "gpio" or "operator"
    start_ns: int = 0
    end_ns: int = 0
    record_ids: tuple[str, ...] = ()    # every attempt's record, in order

    @property
    def ok(self) -> bool:
        return self.outcome == "pass"

    @property
    def reason(self) -> str:
        name = self.check if self.outcome == "fail" else self.cause
        return "" if self.outcome == "pass" else (f"{name}: {self.detail}" if self.detail
                                                  else str(name))


@dataclass(frozen=True)
class FlashRun:
    results: dict[str, SlotFlash]
    interrupted: bool
    run_dir: Optional[Path]
    exit_code: int                      # 0 all pass, 1 any fail/error, 130 interrupted


def classify(exc: BaseException, handshake_done: bool) -> tuple[str, str, str]:
    """(outcome, check or cause, detail) of a session that raised ``exc``.

    By evidence: whatever happened before the module answered the handshake says
    nothing about the module (wrong port, not powered, powered too early: error); once
    it answered, a module that answers wrongly, refuses the image's sums after the
    resends, is another chip or stops answering has failed (fail). A port that breaks,
    or the run being stopped, is the station's (error)."""
    msg = str(getattr(exc, "message", "") or exc).splitlines()[0] if str(exc) else \
        type(exc).__name__
    if isinstance(exc, (KeyboardInterrupt, _Cancelled)):
        return "error", "interrupted", "the run was stopped (Ctrl-C)"
    if isinstance(exc, _core.BenchTimeoutError):
        if not handshake_done:
            return "error", "no_handshake", msg
        return "fail", "no_answer", msg
    if isinstance(exc, _core.ChecksumError):
        return "fail", "checksum", msg
    if isinstance(exc, _core.ModelError):
        return "fail", "chip_model", msg
    if isinstance(exc, _core.UnsupportedError):
        return "fail", "unsupported", msg
    if isinstance(exc, (_core.ProtocolError, _core.DataLostError)):
        return "fail", "protocol", msg
    if isinstance(exc, (_core.ClosedError, _core.FileError, OSError)):
        return "error", "port", msg
    return "error", "bench", f"{type(exc).__name__}: {msg}"


class FlashStation:
    """Flash an app image into the slots of a station, all at once.

    ``station``: a StationSpec or a station file. ``da``: the download agent (default
    ``$FOTABENCH_DA``). ``out_dir``: the run directory (default
    ``runs/flash-<station>-<UTC time>``); ``db``: the results database (default the
    station's ``db:``, else ``$FOTABENCH_DB``, else ``runs/fotabench.sqlite``; ``False``:
    none). ``prompt(slot, text)`` tells the operator to power a module (default: a line
    on stderr). While :meth:`run` runs, ``duts`` holds each slot's open Dut.
    """

    def __init__(self, station: Union[StationSpec, PathLike], *, da: Optional[PathLike] = None,
                 events: Optional[EventBus] = None, out_dir: Optional[PathLike] = None,
                 db: Union[None, bool, str] = None, operator: Optional[str] = None,
                 timeline: Optional[Timeline] = None, handshake_timeout: float = 60.0,
                 answer_timeout: float = 3.0, max_resends: int = 3,
                 prompt: Optional[Callable[[str, str], Any]] = None) -> None:
        if not isinstance(station, StationSpec):
            from .station import load_station
            station = load_station(station)
        self.station = station
        # The agent file first: a missing or wrong one is said before any slot is touched.
        self.da = da_path(da)
        self.da_info = da_inspect(self.da)
        self.events = events if events is not None else EventBus()
        self.operator = operator
        self.timeline = timeline
        self.handshake_timeout = handshake_timeout
        self.answer_timeout = answer_timeout
        self.max_resends = max_resends
        self.prompt = prompt if prompt is not None else _prompt_stderr
        if out_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            out_dir = Path("runs") / f"flash-{station.name}-{stamp}"
        self.out_dir = Path(out_dir)
        if db is None:
            db = station.db or os.environ.get("FOTABENCH_DB") or None
            if db is None:
                from ..records.db import DEFAULT_DB
                db = DEFAULT_DB
        self.db: Optional[str] = None if db is False or db is True else str(db)
        self.duts: dict[str, Dut] = {}
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    # -- the run ------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop every slot's session within 50 ms (their outcome: error "interrupted")."""
        self._cancel.set()

    def run(self, image: Union[PathLike, Sequence[PathLike]], *,
            slots: Optional[Sequence[str]] = None,
            baud: int = 921600, verify: bool = False, reset: bool = True, attempts: int = 1,
            progress: Optional[bool] = None) -> FlashRun:
        """Flash ``image`` into the selected slots (default all) at once; blocking.
        ``image`` may be several images (a station of mixed models): each slot gets the
        first one made for its model (by the load address in its header).
        Ctrl-C (KeyboardInterrupt on this thread) stops every slot: finished records are
        kept, stopped slots end as error "interrupted", ``exit_code`` 130.

        ``progress``: show the per-slot display (None: on a terminal only)."""
        from ..records import Recorder
        if attempts < 1:
            raise _core.ArgumentError("attempts must be 1 or more")
        chosen = self._select(slots)
        images = load_images(image)
        paths = [i.path for i in images]
        self._cancel.clear()
        recorder = Recorder(self.out_dir, db=self.db, station=self.station.name,
                            operator=self.operator,
                            meta={"kind": "flash", "images": [i.package for i in images]})
        display = None
        if progress or (progress is None and sys.stderr.isatty()):
            from .progress import Progress
            display = Progress(self.events, slots=chosen,
                               title=f"flash {', '.join(p.name for p in paths)}").start()
        results: dict[str, SlotFlash] = {}
        threads = []
        for slot in chosen:
            t = threading.Thread(
                target=self._slot_thread, name=f"fotabench-flash-{slot.name}",
                args=(slot, images, recorder, results,
                      dict(baud=baud, verify=verify, reset=reset), attempts))
            threads.append(t)
        interrupted = False
        try:
            for t in threads:
                t.start()
            _wait_all(threads)
        except KeyboardInterrupt:
            interrupted = True
            self._cancel.set()
            while True:
                try:
                    _wait_all(threads)   # each slot ends within ~50 ms and writes its record
                    break
                except KeyboardInterrupt:   # a second Ctrl-C: still let the records out
                    continue
        finally:
            if display is not None:
                display.stop()
            try:
                recorder.close()
            except _core.FotabenchError as e:   # records kept in the run directory
                print(f"fotabench: {e}", file=sys.stderr)
        if interrupted or self._cancel.is_set():
            code = 130
        else:
            code = 0 if results and all(r.ok for r in results.values()) else 1
        return FlashRun(dict(sorted(results.items())), interrupted or self._cancel.is_set(),
                        recorder.path, code)

    def _select(self, names: Optional[Sequence[str]]) -> list[SlotSpec]:
        if not names:
            return list(self.station.slots)
        out = []
        for n in names:
            try:
                out.append(self.station.slot(n))
            except KeyError:
                known = ", ".join(s.name for s in self.station.slots)
                raise _core.ArgumentError(
                    f"no slot {n!r} in station {self.station.name} (slots: {known})") from None
        return out

    # -- one slot -----------------------------------------------------------------------
    def _emit(self, slot: str, kind: str, **kw: Any) -> None:
        self.events.publish(BenchEvent(now_ns(), slot, kind, **kw))

    def _slot_thread(self, slot: SlotSpec, images: list["_Image"], recorder: Any,
                     results: dict[str, SlotFlash], opts: dict[str, Any],
                     attempts: int) -> None:
        opened: list[Dut] = []

        def get_dut() -> Dut:
            if not opened:
                try:
                    # log_dir: a virtual module's board messages go to
                    # logs/<slot>/<slot>.board.log, not through the display; the UART
                    # log (AT and flash bytes alike) to logs/<slot>/<slot>.uart1.log.
                    d = Dut.from_slot(slot, timeline=self.timeline,
                                      log_dir=recorder.run.log_dir(slot.name, 1).parent)
                except Exception as e:
                    raise _Verdict("error", "port", str(e)) from e
                opened.append(d)
                with self._lock:
                    self.duts[slot.name] = d
            return opened[0]

        last: Optional[SlotFlash] = None
        try:
            last = self._attempts(slot, images, recorder, opts, attempts, get_dut, None)
        finally:
            if opened:
                dut = opened[0]
                self.leave(dut, slot, flashed=bool(last and last.ok and opts["reset"]))
                with self._lock:
                    self.duts.pop(slot.name, None)
                try:
                    dut.close()
                except Exception as e:  # noqa: BLE001
                    print(f"fotabench: slot {slot.name}: {e}", file=sys.stderr)
            if last is not None:
                results[slot.name] = last

    def flash_dut(self, dut: Dut, image: Union[PathLike, Sequence[PathLike]], *,
                  recorder: Any, baud: int = 921600, verify: bool = False,
                  reset: bool = True, attempts: int = 1,
                  log_dir: Optional[PathLike] = None,
                  handshake_timeout: Optional[float] = None) -> SlotFlash:
        """Flash ``image`` into one open Dut (the pytest plugin's ``fb_flash``): through
        its own port and lines (:meth:`Dut.raw_uart`), download mode as for a station's
        slot, a record per attempt into ``recorder`` (a
        :class:`fotabench.records.Recorder`, left open), the dut left open and as the
        flash left it (its caller owns it: no ``power_after``). ``log_dir``: where the
        dut's timeline is written (``<slot>.timeline.jsonl``, named in the record).
        ``handshake_timeout``: this flash's (None: the station's)."""
        if attempts < 1:
            raise _core.ArgumentError("attempts must be 1 or more")
        slot = dut.slot if dut.slot is not None else SlotSpec(dut.name, model=dut.model or "M66")
        images = load_images(image)
        self._cancel.clear()
        hs = self.handshake_timeout if handshake_timeout is None else handshake_timeout
        return self._attempts(slot, images, recorder,
                              dict(baud=baud, verify=verify, reset=reset,
                                   handshake_timeout=hs), attempts,
                              lambda: dut, None if log_dir is None else Path(log_dir))

    def _attempts(self, slot: SlotSpec, images: list["_Image"], recorder: Any,
                  opts: dict[str, Any], attempts: int, get_dut: Callable[[], Dut],
                  log_dir: Optional[Path]) -> SlotFlash:
        mine = image_for(images, slot.model)
        img, data, package = mine.info, mine.data, mine.package
        ids: list[str] = []
        last: Optional[SlotFlash] = None
        for attempt in range(1, attempts + 1):
            t0, u0 = now_ns(), _utc()
            self._emit(slot.name, "attempt", attempt=attempt, extra={"model": slot.model})
            state: dict[str, Any] = {"phases": [], "mode": "operator"}
            dut: Optional[Dut] = None
            stop: Optional[BaseException] = None
            try:
                if slot.model not in img.candidates:
                    given = ", ".join(f"{i.path.name} ({'/'.join(i.info.candidates) or '?'})"
                                      for i in images)
                    raise _Verdict("error", "image_model",
                                   f"no image for an {slot.model}: {given}")
                if self._cancel.is_set():
                    raise _Cancelled()
                dut = get_dut()
                result = self._attempt(slot, dut, data, state, opts)
                v = _Verdict("pass", "", "")
            except _Verdict as e:
                v, result = e, None
            except BaseException as e:  # noqa: BLE001 - judged by evidence, never lost
                outcome, what, detail = classify(e, state.get("handshake_done", False))
                v, result = _Verdict(outcome, what, detail), None
                if isinstance(e, KeyboardInterrupt):
                    stop = e      # Ctrl-C on this thread (flash_dut): recorded, then raised
            finally:
                if dut is not None:
                    try:
                        dut.release_pwrkey()
                    except Exception:  # noqa: BLE001 - the module may be gone already
                        pass
            t1, u1 = now_ns(), _utc()
            last = SlotFlash(slot.name, v.outcome, attempt,
                             check=v.what if v.outcome == "fail" else None,
                             cause=v.what if v.outcome == "error" else None,
                             detail=v.detail, result=result,
                             download_mode=state["mode"], start_ns=t0, end_ns=t1)
            timeline = None
            if log_dir is not None and dut is not None and dut.timeline is not None:
                timeline = log_dir / f"{slot.name}.timeline.jsonl"
                try:
                    log_dir.mkdir(parents=True, exist_ok=True)
                    dut.timeline.write_jsonl(timeline)
                except Exception as e:  # noqa: BLE001 - the record without it
                    print(f"fotabench: slot {slot.name}: timeline not written: {e}",
                          file=sys.stderr)
                    timeline = None
            rid = self._record(recorder, slot, last, state, package, attempts, u0, u1, dut,
                               timeline)
            if rid:
                ids.append(rid)
            self._emit(slot.name, "outcome", outcome=v.outcome,
                       detail=last.reason or None, attempt=attempt)
            if stop is not None:
                raise stop
            if v.outcome == "pass" or v.what in _NO_RETRY or self._cancel.is_set():
                break
        assert last is not None
        return replace(last, record_ids=tuple(ids))

    def leave(self, dut: Dut, slot: SlotSpec, *, flashed: bool = False) -> None:
        """Leave the slot's module as ``power_after`` says once its flash is over (pass,
        fail or interrupted). ``off``: with VBAT wired, VBAT is cut (PWRKEY released
        first): the module may be in its BootROM, in the agent, or booting the image
        just written, and only the supply turns it off in each of these; the flash is
        over, so nothing written is at risk (as when the operator unplugs it). With
        PWRKEY alone, a normal power-down once the module answers AT (``flashed``: it
        is booting the new app, so up to the boot timeout). Said on the bus either way.
        """
        if slot.power_after != "off":
            return
        name = slot.name
        try:
            dut.release_pwrkey()
            if "VBAT" in dut.lines:
                if dut.lines["VBAT"].get() == 1:
                    dut.cut_power("power_after: off")
                    self._emit(name, "power", detail="off (power_after: off): VBAT cut")
                return
            if dut.can_power:
                t = slot.timeouts or self.station.timeouts
                deadline = time.monotonic() + (t.boot if flashed else 0.5)
                while True:
                    if dut.is_on(1.0):
                        dut.power_off()
                        self._emit(name, "power",
                                   detail="off (power_after: off): PWRKEY power-down")
                        return
                    if time.monotonic() >= deadline:
                        break
                self._emit(name, "log", detail="power_after off: the module does not answer "
                                               "AT and no VBAT line is wired: left as it is")
                return
            self._emit(name, "log", detail="power_after off: no PWRKEY or VBAT line wired: "
                                           "power the module off by hand")
        except Exception as e:  # noqa: BLE001 - said; the slot is released anyway
            self._emit(name, "log", detail=f"power_after off failed: {e}")

    def _attempt(self, slot: SlotSpec, dut: Dut, data: bytes, state: dict[str, Any],
                 opts: dict[str, Any]) -> FlashResult:
        name = slot.name
        port = slot.port if dut.vm is None else dut.vm.uart1
        if port is None:   # from_slot refuses a real slot without one
            raise _Verdict("error", "port", f"slot {name}: no serial port given (port:)")
        # The flash owns the UART for its session: the Dut's AT engine is paused (the
        # same open port, never a second open), and back afterwards.
        with dut.raw_uart() as uart:
            return self._session(name, port, uart, dut, data, state, opts)

    def _session(self, name: str, port: str, uart: Any, dut: Dut, data: bytes,
                 state: dict[str, Any], opts: dict[str, Any]) -> FlashResult:
        phases: list[dict[str, Any]] = state["phases"]

        def phase(p: str) -> None:
            phases.append({"phase": p, "t_ns": now_ns()})
            self._emit(name, "phase", phase=p)

        def cancel() -> bool:
            if self._cancel.is_set():
                raise _Cancelled()
            return False

        phase("download_mode")
        gpio = dut.can_download_mode
        state["mode"] = "gpio" if gpio else "operator"
        if gpio:
            dut.hold_for_download()

            def power_up() -> None:
                dut.supply_on()
                self._emit(name, "power", detail="VBAT on, PWRKEY held (download mode)")
        else:
            hs = opts.get("handshake_timeout", self.handshake_timeout)
            wait = "for ever" if hs is None else f"up to {hs:g} s"

            def power_up() -> None:
                text = (f"slot {name}: power the module now with PWRKEY held low (download "
                        f"mode); waiting {wait} for its BootROM on {port}")
                self._emit(name, "log", detail=text, extra={"prompt": "power"})
                self.prompt(name, text)
        last = {"phase": "", "pct": -1}

        def progress(p: str, done: int, total: int) -> None:
            if not state.get("handshake_done"):
                # The first progress is the agent going out: the BootROM answered.
                state["handshake_done"] = True
                if gpio:
                    dut.release_pwrkey()
            if p != last["phase"]:
                last["phase"], last["pct"] = p, -1
                phase(p)
            pct = 100 * done // total if total else 100
            if p in ("erase", "write", "verify") and pct != last["pct"]:
                last["pct"] = pct
                self._emit(name, "state", state=p, percent=pct)

        with Flasher(uart, da=self.da, timeline=dut.timeline, source=f"flash:{name}",
                     handshake_timeout=opts.get("handshake_timeout", self.handshake_timeout),
                     answer_timeout=self.answer_timeout, max_resends=self.max_resends) as fl:
            phase("handshake")
            r = fl.flash(data, verify=opts["verify"], baud=opts["baud"], reset=opts["reset"],
                         progress=progress, power_up=power_up, cancel=cancel)
        if opts["reset"]:
            phase("reset")
        self._emit(name, "log", detail=f"{r.chip} ({r.model} image) at 0x{r.address:08X}, "
                                       f"{r.length} bytes, {r.resends} resends"
                                       + (", verified" if r.verified else ""),
                   extra={"model": r.model})
        return r

    def _record(self, recorder: Any, slot: SlotSpec, sf: SlotFlash, state: dict[str, Any],
                package: dict[str, Any], attempts: int, u0: str, u1: str,
                dut: Optional[Dut], timeline: Optional[Path] = None) -> Optional[str]:
        from ..records import ModuleId, PackageRef, PowerEvent, Record
        r = sf.result
        power = [] if dut is None else [PowerEvent(e.t_ns, e.what, e.detail)
                                        for e in dut.power_events_since(sf.start_ns)]
        run = recorder.run

        def relative(p: Optional[PathLike]) -> Optional[str]:
            # Only files inside the run directory are named (a record travels with it).
            if p is None or not Path(p).exists():
                return None
            try:
                return str(run.relative(p))
            except ValueError:
                return None

        logs = {}
        # The Dut's UART log: its AT traffic and the flash's bytes, every attempt.
        uart = None if dut is None else dut.modem.port.log_path
        found = {"uart1": relative(uart), "timeline": relative(timeline),
                 "board": None if uart is None else
                 relative(Path(uart).with_name(f"{slot.name}.board.log"))}
        logs = {k: v for k, v in found.items() if v is not None}
        done = {p["phase"] for p in state["phases"]}
        flash = {
            "da": {"path": self.da, "id": self.da_info.get("id"),
                   "version": self.da_info.get("version")},
            "baud": r.baud if r else 0, "verify": "verify" in done or bool(r and r.verified),
            "chip": r.chip if r else None, "hw_id": r.hw_id if r else None,
            "model": r.model if r else None, "address": r.address if r else None,
            "length": r.length if r else package["size"],
            "checksum": r.checksum if r else None, "packets": r.packets if r else 0,
            "resends": r.resends if r else 0, "erase_units": r.erase_units if r else 0,
            "data_bytes": r.data_bytes if r else 0,
            "line_rate_ppm": int(round(r.line_rate_ratio * 1e6)) if r else 0,
            "verified": bool(r and r.verified), "download_mode": sf.download_mode,
            "phases": state["phases"],
            "phase_ns": {} if r is None else {
                "handshake": r.handshake_ns, "agent": r.agent_ns, "erase": r.erase_ns,
                "write": r.write_ns, "verify": r.verify_ns, "total": r.total_ns},
        }
        try:
            rec = Record.create(
                run_id=run.run_id, station=self.station.name, slot=slot.name,
                operator=self.operator, attempt=sf.attempt, max_attempts=attempts,
                module=ModuleId(model=r.model if r else slot.model),
                package=PackageRef(**package), outcome=sf.outcome, check=sf.check,
                cause=sf.cause, detail=sf.detail[:1000], power=power, logs=logs,
                start_ns=sf.start_ns, end_ns=sf.end_ns, start_utc=u0, end_utc=u1,
                kind="flash", flash=flash)
            recorder.add(rec)
            return rec.id
        except _core.FotabenchError as e:   # a full disk: said, the other slots go on
            print(f"fotabench: slot {slot.name}: record not written: {e}", file=sys.stderr)
            return None


def load_images(image: Union[PathLike, Sequence[PathLike]]) -> list["_Image"]:
    """The images, their headers checked first: a bad file is said before any module
    is touched (the model is checked per slot; :func:`image_for` picks a slot's)."""
    paths = ([Path(os.fspath(image))] if isinstance(image, (str, os.PathLike))
             else [Path(os.fspath(i)) for i in image])
    if not paths:
        raise _core.ArgumentError("no image to flash")
    images: list[_Image] = []
    for path in paths:
        img = AppImage.inspect(path)
        failed = [c for c in img.checks if not c.ok and c.name != "model"]
        if failed:
            raise _core.ImageError(f"{path}: {failed[0].name}: {failed[0].detail}")
        data = path.read_bytes()
        images.append(_Image(path, img, data, {"path": str(path), "size": len(data),
                                               "md5": hashlib.md5(data).hexdigest()}))
    return images


def image_for(images: Sequence["_Image"], model: str) -> "_Image":
    """A slot's image: the first made for its model (MC60 and MC20 share one), else the
    first (its flash then ends as error ``image_model``)."""
    return next((i for i in images if model in i.info.candidates), images[0])


@dataclass(frozen=True)
class _Image:
    path: Path
    info: AppImage
    data: bytes
    package: dict[str, Any]


@dataclass
class _Verdict(Exception):
    outcome: str
    what: str
    detail: str = field(default="")


def _wait_all(threads: Sequence[threading.Thread]) -> None:
    # Not Thread.join: on CPython 3.11 a join interrupted by Ctrl-C goes through the
    # bpo-45274 branch of _wait_for_tstate_lock, which releases the running thread's
    # lock and marks it stopped; the process then exits before that slot's record is
    # written (seen once in the Ctrl-C test). is_alive() never blocks; sleep is safe.
    while any(t.is_alive() for t in threads):
        time.sleep(0.05)


def _utc() -> str:
    from ..records import utc_now
    return utc_now()


def _prompt_stderr(slot: str, text: str) -> None:
    print(text, file=sys.stderr, flush=True)
