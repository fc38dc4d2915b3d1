"""Realistic records without a bench, for the records/database/report tests and
bench/perf/records.py.

State sequences are written from the spec (shared/spec/opencpu-fota.md §2), not from
fotabench: over HTTP UP_START, UP_CONNECTING (the host is an IP literal), UP_CONNECTED,
UP_GETTING_FILE at 0 then multiples of 5 (duplicates, never decreasing), 100, then
UP_SYSTEM_REBOOT(100), and never UP_GET_FILE_OK; over FTP UP_START, UP_CONNECTING,
UP_CONNECTED, UP_GETTING_FILE(0), UP_GET_FILE_OK(100), UP_SYSTEM_REBOOT(100); a failure
reports UP_UPGRADFAILED(0), sometimes twice. The watchdog (§7): the app feeds every
~400 ms, the chip's timeout is 1.6 s, the bench warns above 2/3 of it.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Optional

from fotabench.records import (ModuleId, PackageRef, PowerEvent, Record, RunWriter, State,
                               Transfer, Watchdog)

MS = 1_000_000
S = 1_000_000_000
TIMEOUT_NS = 1600 * MS
PACKAGE_SIZE = 312_448
PACKAGE_MD5 = hashlib.md5(b"fotabench synthetic package").hexdigest()

HTTP_HEAD = ["UP_START", "UP_CONNECTING", "UP_CONNECTED", "UP_GETTING_FILE"]
FTP_SEQUENCE = [("UP_START", 0), ("UP_CONNECTING", 0), ("UP_CONNECTED", 0),
                ("UP_GETTING_FILE", 0), ("UP_GET_FILE_OK", 100), ("UP_SYSTEM_REBOOT", 100)]


def imei_for(n: int) -> str:
    """A 15-digit IMEI with a valid Luhn check digit (TAC 86 1234 05 = a Quectel-like one)."""
    body = f"86123405{n:06d}"
    total = 0
    for i, ch in enumerate(body):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def _utc(base_epoch_s: float, offset_ns: int) -> str:
    import datetime as dt
    t = dt.datetime.fromtimestamp(base_epoch_s + offset_ns / S, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_record(n: int, *, outcome: str = "pass", protocol: str = "http",
                run_id: str = "run-synthetic", station: str = "line3-st1",
                slot: Optional[str] = None, attempt: int = 1, t0_ns: int = 10 * S,
                base_epoch_s: float = 1_796_000_000.0, rng: Optional[random.Random] = None,
                logs: Optional[dict[str, str]] = None, id: Optional[str] = None) -> Record:
    """Module ``n``'s upgrade: pass, fail (the server drops the transfer at ~45 %: the
    module reports UP_UPGRADFAILED twice; check ``download``), or error (the serial port
    vanished during identify; cause ``serial_port``)."""
    rng = rng or random.Random(n)
    slot = slot or f"{n % 64 + 1:02d}"
    t = t0_ns
    power = [PowerEvent(t, "power_on", "VBAT 4.0 V"), PowerEvent(t + 80 * MS, "pwrkey",
                                                                 "held 1000 ms")]
    identify_end = t + 3 * S + rng.randrange(0, 400) * MS
    states: list[State] = []
    transfers: list[Transfer] = []
    check = cause = None
    detail = ""
    version_after = None
    imei: Optional[str] = imei_for(n)
    model: Optional[str] = "M66"
    before = "M66FAR01A12_OCPU_v1.0.3"
    if outcome == "error":
        end = identify_end - 1200 * MS
        cause = "serial_port"
        detail = f"/dev/ttyUSB{n % 64}: device disconnected (EIO) while waiting for ATI"
        imei = None
        model = None
        before = None
    else:
        t = identify_end + 600 * MS
        path = f"/m/{slot}/APP_Upgrade_Package.bin"
        if protocol == "http":
            for name in HTTP_HEAD:
                states.append(State(name, 0, t))
                t += rng.randrange(150, 450) * MS
        else:
            for name, pct in FTP_SEQUENCE[:4]:
                states.append(State(name, pct, t))
                t += rng.randrange(150, 450) * MS
        dl_start = t
        rate = rng.randrange(24_000, 40_000)           # bytes/s, a GPRS-ish link
        full_ns = PACKAGE_SIZE * S // rate
        stop_at = 45 if outcome == "fail" else 100
        if protocol == "http":
            pct = 0
            while pct < stop_at:
                pct = min(stop_at, pct + rng.choice((5, 5, 5, 10)))
                t_p = dl_start + full_ns * pct // 100
                states.append(State("UP_GETTING_FILE", pct, t_p))
                if rng.random() < 0.2 and pct < stop_at:  # duplicates are likely
                    states.append(State("UP_GETTING_FILE", pct, t_p + 40 * MS))
        t = dl_start + full_ns * stop_at // 100
        sent = PACKAGE_SIZE * stop_at // 100
        if outcome == "fail":
            t += 30 * S // 10
            states.append(State("UP_UPGRADFAILED", 0, t))
            states.append(State("UP_UPGRADFAILED", 0, t + 5 * MS))
            transfers.append(Transfer(protocol, "127.0.0.1", 40000 + n % 20000, dl_start,
                                      dl_start + full_ns * stop_at // 100,
                                      "GET" if protocol == "http" else "RETR", path,
                                      "APP_Upgrade_Package.bin", slot,
                                      200 if protocol == "http" else 150, PACKAGE_SIZE, sent,
                                      "fault_injected", ("drop",),
                                      f"dropped after {sent} bytes"))
            check = "download"
            detail = (f"UP_UPGRADFAILED(0) at 45 %: the server closed the transfer after "
                      f"{sent} of {PACKAGE_SIZE} bytes (fault drop)")
            end = t + 2 * S
        else:
            if protocol == "ftp":
                states.append(State("UP_GET_FILE_OK", 100, t))
            t += 120 * MS
            states.append(State("UP_SYSTEM_REBOOT", 100, t))
            transfers.append(Transfer(protocol, "127.0.0.1", 40000 + n % 20000, dl_start,
                                      dl_start + full_ns, "GET" if protocol == "http"
                                      else "RETR", path, "APP_Upgrade_Package.bin", slot,
                                      200 if protocol == "http" else 150, PACKAGE_SIZE,
                                      PACKAGE_SIZE, "complete", (), ""))
            power.append(PowerEvent(t + 300 * MS, "reset", "Ql_FOTA_Update: reboot into "
                                                          "the new app"))
            end = t + 9 * S + rng.randrange(0, 1000) * MS
            version_after = "M66FAR01A12_OCPU_v1.1.0"
            detail = "version M66FAR01A12_OCPU_v1.1.0 after reboot"
    # WDI: ~400 ms by the app; a longer gap while the core copies the image after reboot.
    edges: list[int] = []
    te = power[0].t_ns + 500 * MS
    reboot_t = next((s.t_ns for s in states if s.state == "UP_SYSTEM_REBOOT"), None)
    while te < end:
        edges.append(te)
        step = 400 * MS + rng.randrange(-30, 30) * MS
        if reboot_t is not None and te < reboot_t + 300 * MS <= te + step:
            step = 900 * MS + rng.randrange(0, 250) * MS
        te += step
    gaps = [(b - a, b) for a, b in zip(edges, edges[1:])]
    longest, at = max(gaps) if gaps else (0, None)
    wd = Watchdog(len(edges), longest, at, TIMEOUT_NS, longest > TIMEOUT_NS * 2 // 3,
                  longest > TIMEOUT_NS, tuple(edges))
    power.append(PowerEvent(end - 50 * MS, "power_off", ""))
    return Record.create(
        run_id=run_id, station=station, slot=slot, attempt=attempt, max_attempts=2,
        operator="a.mueller", module=ModuleId(imei, model, before, version_after),
        package=PackageRef("/srv/fota/APP_Upgrade_Package.bin", PACKAGE_SIZE, PACKAGE_MD5),
        url=(f"http://127.0.0.1:8080{'/m/' + slot}/APP_Upgrade_Package.bin"
             if protocol == "http" else
             f"ftp://127.0.0.1/m/{slot}/APP_Upgrade_Package.bin:2121@fota:fota"),
        protocol=protocol, states=states, watchdog=wd, transfers=transfers, power=power,
        outcome=outcome, check=check, cause=cause, detail=detail, logs=logs or {},
        start_ns=t0_ns, end_ns=end, start_utc=_utc(base_epoch_s, 0),
        end_utc=_utc(base_epoch_s, end - t0_ns), host="bench-pc-07", id=id)


def outcome_for(n: int, total: int) -> str:
    """A realistic mix: about 4 % fail, 2 % error."""
    if n % 50 == 7:
        return "error"
    if n % 25 == 3:
        return "fail"
    return "pass"


def write_run(path: Path, count: int, *, station: str = "line3-st1",
              index_interval_s: float = 60.0, with_logs: bool = True) -> RunWriter:
    """A closed run directory of ``count`` modules (``outcome_for`` mix, one FTP module
    in five) with UART logs for every slot; one failing module gets a second attempt."""
    w = RunWriter(path, station=station, operator="a.mueller", index_interval_s=index_interval_s)
    t0 = 10 * S
    for n in range(count):
        outcome = "fail" if count <= 3 and n == 1 else "error" if count <= 3 and n == 2 \
            else outcome_for(n, count)
        slot = f"{n % 64 + 1:02d}"
        attempts = [outcome, "pass"] if outcome == "fail" and n % 2 == 1 and count > 3 else [outcome]
        for a, oc in enumerate(attempts, start=1):
            logs = {}
            if with_logs:
                p = w.log_path(slot, a, f"uart-{n}")
                p.write_text(_uart_log(n, oc), encoding="utf-8")
                logs["uart"] = w.relative(p)
            rec = make_record(n, outcome=oc, protocol="ftp" if n % 5 == 4 else "http",
                              run_id=w.run_id, station=station, slot=slot, attempt=a,
                              t0_ns=t0 + n * 7 * S + (a - 1) * 40 * S,
                              base_epoch_s=1_796_000_000.0 + n * 7 + (a - 1) * 40, logs=logs)
            w.add(rec)
    w.close()
    return w


def _uart_log(n: int, outcome: str) -> str:
    lines = [f"[{i * 0.1:8.3f}] {text}" for i, text in enumerate([
        "RDY", "AT OK", "ATI", "Quectel_Ltd", "Quectel_M66", "Revision: M66FAR01A12",
        "AT+GSN", imei_for(n), "OK", "+FBAGENT: ready 1.0",
        "AT+FBURL=...", "OK", "+FBSTATE: UP_START,0", "+FBSTATE: UP_CONNECTING,0",
        "+FBSTATE: UP_CONNECTED,0", "+FBSTATE: UP_GETTING_FILE,0",
    ])]
    if outcome == "fail":
        lines += ["[   2.000] +FBSTATE: UP_GETTING_FILE,45",
                  "[   5.100] ERROR: http recv: connection closed by peer (135 KB of 305 KB)",
                  "[   5.102] +FBSTATE: UP_UPGRADFAILED,0", "[   5.107] +FBSTATE: UP_UPGRADFAILED,0"]
    elif outcome == "error":
        lines = lines[:3] + ["[   0.300] serial: read failed: EIO (device disconnected)"]
    else:
        lines += ["[   9.000] +FBSTATE: UP_GETTING_FILE,100", "[   9.120] +FBSTATE: UP_SYSTEM_REBOOT,100",
                  "[  18.000] RDY", "[  18.400] Revision: M66FAR01A12 app v1.1.0"]
    return "\n".join(lines) + "\n"
