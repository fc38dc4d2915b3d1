"""Export records as OpenHTF test records (the JSON its ``OutputToJSON`` callback writes).

One record -> one OpenHTF test record, the layout of ``openhtf.core.test_record.
TestRecord.as_base_types()`` (OpenHTF 1.6): dut_id, station_id, start/end_time_millis,
outcome PASS/FAIL/ERROR, outcome_details, code_info, metadata, phases (each with
measurements), subtests, branches, diagnosers, diagnoses, log_records, marginal. The
mapping is in docs/records.md ("OpenHTF export").
"""
from __future__ import annotations

import calendar
import json
import re
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from .record import Record

__all__ = ["openhtf_record", "write_openhtf"]

_MS = {"name": "millisecond", "code": "C26", "suffix": "ms"}
_BYTE = {"name": "byte", "code": "AD", "suffix": "B"}
_OUTCOME = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}


def utc_millis(utc: str) -> int:
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", utc)
    if not m:
        raise ValueError(f"not a record UTC time: {utc!r}")
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = (m.group(2) or "0")[:3].ljust(3, "0")
    return secs * 1000 + int(frac)


def _measurement(name: str, value: Any, ok: Optional[bool], *, validators: Sequence[str] = (),
                 units: Optional[dict[str, str]] = None, doc: str = "") -> dict[str, Any]:
    m: dict[str, Any] = {"name": name,
                         "outcome": "UNSET" if ok is None else ("PASS" if ok else "FAIL")}
    if validators:
        m["validators"] = list(validators)
    if units:
        m["units"] = units
    if doc:
        m["docstring"] = doc
    if value is not None:
        m["measured_value"] = value
    return m


def openhtf_record(r: Record) -> dict[str, Any]:
    t0 = utc_millis(r.start_utc)
    t_end = utc_millis(r.end_utc)

    def wall(t_ns: Optional[int]) -> int:
        # Monotonic ns -> epoch ms, anchored at the record's start (both clocks read then).
        return t0 if t_ns is None else t0 + (t_ns - r.start_ns) // 1_000_000

    code = {"name": "fotabench upgrade", "docstring": "FOTA upgrade of one module (fotabench)",
            "sourcecode": ""}

    def phase(i: int, name: str, start: int, end: int, measurements: list[dict[str, Any]],
              outcome: Optional[str] = None) -> dict[str, Any]:
        ms = {m["name"]: m for m in measurements}
        if outcome is None:
            outcome = "FAIL" if any(m["outcome"] == "FAIL" for m in ms.values()) else "PASS"
        return {"descriptor_id": i, "name": name, "codeinfo": code, "measurements": ms,
                "options": None, "diagnosers": [], "subtest_name": None,
                "start_time_millis": start, "end_time_millis": max(start, end),
                "attachments": {}, "diagnosis_results": [], "failure_diagnosis_results": [],
                "result": {"phase_result": "STOP" if outcome == "ERROR" else "CONTINUE"},
                "outcome": outcome, "marginal": False}

    first = wall(r.states[0].t_ns) if r.states else t0
    last = wall(r.states[-1].t_ns) if r.states else t0
    final = r.states[-1] if r.states else None
    reboot = any(s.state == "UP_SYSTEM_REBOOT" for s in r.states)
    sent = sum(t.bytes_sent for t in r.transfers)
    phases = [
        phase(1, "identify", t0, first, [
            _measurement("imei", r.module.imei, None if r.module.imei is None else True,
                         validators=["matches ^[0-9]{15}$"]),
            _measurement("model", r.module.model, None),
            _measurement("version_before", r.module.version_before, None),
        ]),
        phase(2, "download", first, last, [
            _measurement("states", [f"{s.state}({s.percent})" for s in r.states] or None,
                         None),
            _measurement("final_percent", None if final is None else final.percent,
                         None if final is None else final.percent == 100,
                         validators=["x == 100"]),
            _measurement("system_reboot", reboot if r.states else None,
                         reboot if r.states else None, validators=["x == True"]),
            _measurement("bytes_served", sent, None if not r.transfers else
                         sent >= r.package.size, validators=[f"x >= {r.package.size}"],
                         units=_BYTE),
        ]),
    ]
    if r.watchdog is not None:
        w = r.watchdog
        phases.append(phase(3, "watchdog", t0, t_end, [
            _measurement("wdi_edges", w.edges, None),
            _measurement("longest_wdi_gap_ms", round(w.longest_gap_ns / 1e6, 3),
                         not w.over_timeout,
                         validators=[f"x < {w.timeout_ns / 1e6:g}"], units=_MS,
                         doc="longest gap between WDI edges against the chip's timeout"),
        ]))
    name = r.check if r.outcome == "fail" else r.cause
    phases.append(phase(4, "result", last, t_end, [
        _measurement("version_after", r.module.version_after, None),
        _measurement(name or "upgrade", r.detail or r.outcome, r.outcome == "pass"),
    ], outcome=_OUTCOME[r.outcome]))
    details = [] if r.outcome == "pass" else [{"code": name, "description": r.detail}]
    return {
        "dut_id": r.module.imei or f"slot-{r.slot}",
        "station_id": r.station,
        "start_time_millis": t0,
        "end_time_millis": t_end,
        "outcome": _OUTCOME[r.outcome],
        "outcome_details": details,
        "code_info": code,
        "metadata": {
            "test_name": f"fotabench.{r.kind}", "test_description":
                "FOTA upgrade of a Quectel OpenCPU module", "config": {},
            "fotabench_record_id": r.id, "fotabench_record_digest": r.digest,
            "run_id": r.run_id, "slot": r.slot, "attempt": r.attempt,
            "max_attempts": r.max_attempts, "operator": r.operator, "model": r.module.model,
            "package_path": r.package.path, "package_size": r.package.size,
            "package_md5": r.package.md5, "url": r.url, "protocol": r.protocol,
            "fotabench_version": r.fotabench_version, "host": r.host,
        },
        "phases": phases,
        "subtests": [], "branches": [], "checkpoints": [], "diagnosers": [], "diagnoses": [],
        "log_records": [
            {"level": 20, "logger_name": f"fotabench.{r.slot}", "source": "fotabench",
             "lineno": 0, "timestamp_millis": wall(s.t_ns),
             "message": f"+FBSTATE {s.state} {s.percent}%"} for s in r.states
        ] + [
            {"level": 20, "logger_name": f"fotabench.{r.slot}.power", "source": "fotabench",
             "lineno": 0, "timestamp_millis": wall(p.t_ns),
             "message": f"power {p.event} {p.detail}".rstrip()} for p in r.power
        ],
        "marginal": False,
    }


def write_openhtf(directory: Path, records: Sequence[Record]) -> list[Path]:
    """One ``<record id>.json`` per record in ``directory`` (created)."""
    from .run import write_atomic
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for r in records:
        p = directory / f"{r.id}.json"
        write_atomic(p, json.dumps(openhtf_record(r), indent=1).encode("utf-8") + b"\n")
        out.append(p)
    return out
