"""An upgrade's result as records: one :class:`Record` per attempt (docs/records.md).

``fotabench.bench.upgrade.UpgradeResult`` holds every attempt; a record is one attempt,
so each :class:`~fotabench.bench.upgrade.Attempt` becomes one record carrying the
result's identity (IMEI, model), package and logs with that attempt's own states,
watchdog figures, transfers, power events, outcome and times.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

from .record import (STATE_NAMES, ModuleId, PackageRef, PowerEvent, Record, State, Transfer,
                     Watchdog)

__all__ = ["record_from_result", "records_from_result"]

_IMEI_DIGITS = 15


def _package(result: Any) -> PackageRef:
    """The package as served; when the upgrade ended before it was read (a bench
    error), the file given, measured here."""
    path = result.package or "?"
    size, md5 = result.package_size, result.package_md5
    if size is None or not md5:
        try:
            from ..checksum import md5_file
            size = os.path.getsize(path) if size is None else size
            md5 = md5 or md5_file(path)
        except Exception:  # noqa: BLE001 - a missing file: the record still says which
            size, md5 = size or 0, md5 or "0" * 32
    return PackageRef(str(path), int(size), str(md5))


def _watchdog(wd: Optional[Mapping[str, Any]]) -> Optional[Watchdog]:
    if not wd:
        return None
    return Watchdog(edges=int(wd["edges"]), longest_gap_ns=int(wd["longest_gap_ns"]),
                    longest_gap_at_ns=(None if not wd.get("longest_gap_at_ns")
                                       else int(wd["longest_gap_at_ns"])),
                    timeout_ns=int(wd["timeout_ns"]),
                    over_two_thirds=bool(wd["over_two_thirds"]),
                    over_timeout=bool(wd["over_timeout"]),
                    edge_t_ns=tuple(int(t) for t in wd.get("edge_t_ns", ())))


def _logs(logs: Mapping[str, str], run_dir: Optional[Path]) -> dict[str, str]:
    """Paths relative to the run directory (a record holds no others)."""
    out: dict[str, str] = {}
    if run_dir is None:
        return out
    base = run_dir.resolve()
    for name, p in logs.items():
        try:
            out[name] = Path(p).resolve().relative_to(base).as_posix()
        except ValueError:
            continue          # outside the run directory: not the record's
    return out


def record_from_result(result: Any, attempt: Optional[int] = None, *, run_id: str,
                       station: str, operator: Optional[str] = None,
                       max_attempts: Optional[int] = None,
                       run_dir: Optional[os.PathLike[str] | str] = None,
                       logs: Optional[Mapping[str, str]] = None) -> Record:
    """The record of ``attempt`` (1-based; default the last) of an UpgradeResult.
    ``logs``: name -> path (default the result's); paths outside ``run_dir`` are
    left out, the rest made relative to it. States a custom dialect names outside the
    SDK's ``Upgrade_State`` names are left out (the record's schema knows those only)."""
    attempts = result.attempts
    if not attempts:
        raise ValueError(f"{result.slot}: an UpgradeResult with no attempt has no record")
    a = attempts[-1] if attempt is None else attempts[attempt - 1]
    imei = result.imei if result.imei and len(result.imei) == _IMEI_DIGITS \
        and result.imei.isdigit() else None
    states = [State(s.state, int(s.percent), int(s.t_ns)) for s in a.states
              if s.state in STATE_NAMES]
    transfers = [Transfer.from_request(t) for t in a.transfers]
    power = [PowerEvent(int(p["t_ns"]), str(p.get("what") or p.get("event")),
                        str(p.get("detail", ""))) for p in a.power_events]
    detail = "" if a.outcome == "pass" else a.reason.splitlines()[0] if a.reason else ""
    rd = None if run_dir is None else Path(run_dir)
    return Record.create(
        run_id=run_id, station=station, slot=result.slot, operator=operator,
        attempt=a.number, max_attempts=max(max_attempts or len(attempts), a.number),
        module=ModuleId(imei=imei, model=result.model,
                        version_before=a.version_before or result.version_before,
                        version_after=a.version_after),
        package=_package(result), url=a.url, protocol=result.protocol,
        states=states, watchdog=_watchdog(a.watchdog), transfers=transfers, power=power,
        outcome=a.outcome, check=a.check or ("unknown" if a.outcome == "fail" else None),
        cause=a.cause or ("unknown" if a.outcome == "error" else None), detail=detail,
        logs=_logs(result.logs if logs is None else logs, rd),
        start_ns=int(a.start_ns), end_ns=int(max(a.end_ns, a.start_ns)),
        start_utc=a.started_utc or result.started_utc,
        end_utc=a.ended_utc or result.ended_utc)


def records_from_result(result: Any, **kw: Any) -> list[Record]:
    """One record per attempt of an UpgradeResult (same keywords as record_from_result)."""
    return [record_from_result(result, i + 1, **kw) for i in range(len(result.attempts))]
