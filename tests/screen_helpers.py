"""A stand-in for fotabench.Bench (its methods the screen uses: events, station,
start_slot, busy, idle_slots, cancel, results) for the screen's tests that need a slot
held mid-download at will (busy, double click, reopen, restart) and fast runs: each start
publishes a scripted upgrade on the EventBus (the same event kinds and fields the real
Upgrade publishes) and writes a real Record to the database. PASS and a fault's outcome
are also tested on the real Bench (test_screen_browser, test_screen).

A slot whose station entry has faults fails at 45 % (check "download"); ``hold`` keeps
every job in its download until ``release`` (or a cancel): a deterministic busy slot.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fotabench import now_ns
from fotabench.bench.events import BenchEvent, EventBus
from fotabench.bench.station import load_station
from fotabench.records import open_database

from records_helpers import imei_for, make_record

STATION_YAML = """\
version: 1
station: line1-st2
slots:
  - name: s1
    model: M66
    virtual: {boot_timing: fast}
  - name: s2
    model: MC60
    virtual: {boot_timing: fast}
  - name: s3
    model: M66
    virtual: {boot_timing: fast, faults: ["drop:at=45"]}
"""


def write_station(tmp: Path) -> Path:
    p = tmp / "station.yaml"
    p.write_text(STATION_YAML)
    return p


class SlotBusyError(Exception):
    pass


@dataclass
class FakeResult:
    outcome: str
    reason: str
    imei: Optional[str]
    slot: str
    check: Optional[str] = None
    cause: Optional[str] = None


class FakeJob:
    def __init__(self, bench: "FakeBench", slot: str, serial: Optional[str], n: int) -> None:
        self.slot = slot
        self._bench = bench
        self._serial = serial
        self._n = n
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.result: Optional[FakeResult] = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> Optional[FakeResult]:
        self._done.wait(timeout)
        return self.result

    def cancel(self) -> None:
        self._cancel.set()

    def _emit(self, kind: str, **kw: Any) -> None:
        self._bench.events.publish(BenchEvent(now_ns(), self.slot, kind, **kw))

    def _step(self) -> bool:
        """One scripted step's time; False when cancelled."""
        return not self._cancel.wait(self._bench.step_s)

    def _run(self) -> None:
        b = self._bench
        spec = b.station.slot(self.slot)
        fault = bool(spec.virtual and spec.virtual.faults)
        # A scanned IMEI is the module's (the label matches), unless the test says not.
        imei = (self._serial if self._serial and self._serial.isdigit()
                and len(self._serial) == 15 and not b.wrong_module else imei_for(self._n))
        outcome, reason = "pass", ""
        try:
            self._emit("attempt", attempt=1)
            for phase in ("power", "boot", "identify"):
                self._emit("phase", phase=phase)
                if not self._step():
                    raise InterruptedError
            self._emit("phase", phase="identify",
                       extra={"model": spec.model, "imei": imei, "version": "1.0.0"})
            for phase in ("attach", "serve", "trigger", "download"):
                self._emit("phase", phase=phase)
                if not self._step():
                    raise InterruptedError
            for pct in range(0, 101, 5):
                if pct == b.hold_at and b.hold:
                    while not b.released.wait(0.05):
                        if self._cancel.is_set():
                            raise InterruptedError
                self._emit("state", state="UP_GETTING_FILE", percent=pct)
                self._emit("served", bytes_served=pct * 1200)
                self._emit("watchdog", gap_ms=300.0 + pct * 2)
                if fault and pct == 45:
                    self._emit("state", state="UP_UPGRADFAILED", percent=0)
                    outcome = "fail"
                    reason = "UP_UPGRADFAILED after the transfer stopped at 45 %"
                    break
                if not self._step():
                    raise InterruptedError
            if outcome == "pass":
                for phase in ("reboot", "verify"):
                    self._emit("phase", phase=phase)
                    if not self._step():
                        raise InterruptedError
                self._emit("phase", phase="verify", extra={"version": "2.0.0"})
        except InterruptedError:
            outcome, reason = "error", "cancelled"
        self._emit("outcome", outcome=outcome, detail=reason)
        rec = make_record(int(imei[8:14]) if imei != imei_for(self._n) else self._n,
                          outcome=outcome,
                          station=b.station.name, slot=self.slot, run_id="screen-test",
                          base_epoch_s=time.time() - 5)
        with open_database(b.db) as d:
            d.add(rec)
        self.result = FakeResult(outcome, reason, imei, self.slot,
                                 check="download" if outcome == "fail" else None,
                                 cause="cancelled" if outcome == "error" else None)
        with b.lock:
            b.last[self.slot] = self.result
        self._done.set()


class FakeBench:
    def __init__(self, station: Any, db: str, *, step_s: float = 0.05,
                 hold: bool = False, hold_at: int = 50) -> None:
        self.station = load_station(station)
        self.events = EventBus()
        self.db = db
        self.step_s = step_s
        self.hold = hold
        self.hold_at = hold_at             # percent where a held job waits (0: every slot,
                                           # the fault slot too, before it can fail)
        self.wrong_module = False
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.jobs: dict[str, FakeJob] = {}
        self.started: list[tuple[str, Optional[str]]] = []   # every start_slot call
        self.last: dict[str, FakeResult] = {}
        self._n = 0

    def start_slot(self, slot: str, package: Any, *, serial: Optional[str] = None,
                   retry: Any = None) -> FakeJob:
        with self.lock:
            if self.busy_locked(slot):
                raise SlotBusyError(f"slot {slot} is running")
            self._n += 1
            self.started.append((slot, serial))
            job = self.jobs[slot] = FakeJob(self, slot, serial, self._n)
            return job

    def busy_locked(self, slot: str) -> bool:
        j = self.jobs.get(slot)
        return j is not None and not j.done()

    def busy(self, slot: str) -> bool:
        with self.lock:
            return self.busy_locked(slot)

    def idle_slots(self) -> list[str]:
        return [s.name for s in self.station.slots if not self.busy(s.name)]

    def cancel(self) -> None:
        with self.lock:
            jobs = list(self.jobs.values())
        for j in jobs:
            j.cancel()

    def results(self) -> dict[str, FakeResult]:
        with self.lock:
            return dict(self.last)

    def release(self) -> None:
        self.released.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """The screen's uvicorn server on a thread, on loopback; stop() and start again on
    the same port (the station going away and coming back)."""

    def __init__(self, screen: Any, port: Optional[int] = None) -> None:
        self.screen = screen
        self.port = port or free_port()
        self.server: Any = None
        self.thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerThread":
        from fotabench.screen import listen, make_server
        sock = listen("127.0.0.1", self.port)
        self.server = make_server(self.screen)
        srv = self.server

        def run() -> None:
            try:
                srv.run(sockets=[sock])
            finally:
                sock.close()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not srv.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the screen's server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            assert self.thread is not None
            self.thread.join(30)
            assert not self.thread.is_alive(), "the screen's server did not stop"
            self.server = None
