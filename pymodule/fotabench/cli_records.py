"""`fotabench runs`, `fotabench record show|push` and `fotabench report`: the results
database and run directories from the command line (docs/records.md)."""
from __future__ import annotations

import argparse
import json
import os
import sys


def _db_target(args) -> str:
    from .records.db import DEFAULT_DB
    return args.db or os.environ.get("FOTABENCH_DB") or DEFAULT_DB


def _open_db(args):
    from .records.db import open_database
    return open_database(_db_target(args), create=False)


def _since(value: str) -> str:
    import datetime as dt
    try:
        text = value[:-1] if value.endswith("Z") else value
        dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date (give YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], UTC)") from None
    return value.rstrip("Z")


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    widths = [max([len(title)] + [len(str(r.get(key) if r.get(key) is not None else "-"))
                                  for r in rows]) for key, title in columns]
    print("  ".join(t.ljust(w) for (_, t), w in zip(columns, widths)).rstrip())
    for r in rows:
        print("  ".join(str(r.get(k) if r.get(k) is not None else "-").ljust(w)
                        for (k, _), w in zip(columns, widths)).rstrip())


def cmd_runs(args) -> None:
    filters = {"imei": args.imei, "station": args.station, "outcome": args.outcome,
               "since": args.since, "run_id": args.run}
    with _open_db(args) as db:
        if args.records or args.imei or args.run:
            rows = db.find(limit=args.limit, **filters)
            if args.json:
                json.dump(rows, sys.stdout, indent=2)
                sys.stdout.write("\n")
                return
            for r in rows:
                r["id"] = r["id"][:12]
            _table(rows, [("id", "RECORD"), ("start_utc", "START (UTC)"),
                          ("station", "STATION"), ("slot", "SLOT"), ("attempt", "TRY"),
                          ("imei", "IMEI"), ("outcome", "OUTCOME"), ("reason", "REASON")])
            print(f"{len(rows)} record(s)")
            return
        runs = db.runs(**filters)
        if args.limit is not None:
            runs = runs[:args.limit]
        if args.json:
            json.dump(runs, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return
        _table(runs, [("run_id", "RUN"), ("station", "STATION"), ("start_utc", "START (UTC)"),
                      ("records", "RECORDS"), ("pass", "PASS"), ("fail", "FAIL"),
                      ("error", "ERROR")])
        print(f"{len(runs)} run(s)")


def _print_record(r) -> None:
    m = r.module
    print(f"record {r.id}  ({r.kind}, schema {r.schema_version}, {r.digest})")
    for key, value in (
            ("outcome", r.outcome.upper() + (f"  {r.reason}" if r.outcome != "pass" else "")),
            ("run", r.run_id), ("station / slot", f"{r.station} / {r.slot}"),
            ("attempt", f"{r.attempt} of {r.max_attempts}"), ("operator", r.operator),
            ("imei", m.imei), ("model", m.model),
            ("version", f"{m.version_before or '?'} -> {m.version_after or '?'}"),
            ("package", f"{r.package.path} ({r.package.size} bytes, md5 {r.package.md5})"),
            ("url", f"{r.url} ({r.protocol})"),
            ("time (UTC)", f"{r.start_utc} .. {r.end_utc} ({r.duration_s:.1f} s)"),
            ("host", f"{r.host}, fotabench {r.fotabench_version}")):
        print(f"  {key:<16} {value if value is not None else '-'}")
    print("  states")
    for s in r.states:
        print(f"    {(s.t_ns - r.start_ns) / 1e9:9.3f} s  {s.state}({s.percent})")
    if r.watchdog is not None:
        w = r.watchdog
        flag = "OVER TIMEOUT" if w.over_timeout else "over 2/3" if w.over_two_thirds else "ok"
        print(f"  watchdog         {w.edges} edges, longest gap {w.longest_gap_ns / 1e6:.0f} ms "
              f"(timeout {w.timeout_ns / 1e6:.0f} ms): {flag}")
    for t in r.transfers:
        print(f"  transfer         {t.protocol} {t.method} {t.path}: {t.bytes_sent}/{t.size} "
              f"bytes, {t.outcome}{' ' + ','.join(t.faults) if t.faults else ''}")
    for p in r.power:
        print(f"  power {(p.t_ns - r.start_ns) / 1e9:9.3f} s  {p.event} {p.detail}".rstrip())
    for name, path in sorted(r.logs.items()):
        print(f"  log {name:<12} {path}")


def cmd_record_show(args) -> None:
    if args.run_dir:
        from .records import RecordError, Run
        run = Run.open(args.run_dir)
        found = [r for r in run.records if r.id.startswith(args.id)]
        if len(found) != 1:
            raise RecordError(f"{'no' if not found else 'more than one'} record {args.id} in "
                              f"{args.run_dir}")
        rec = found[0]
    else:
        with _open_db(args) as db:
            rec = db.get(args.id)
    if args.json:
        sys.stdout.write(rec.to_json(indent=2) + "\n")
    else:
        _print_record(rec)


def cmd_record_push(args) -> None:
    from .records import push_run
    from .records.db import redact
    from .records.db import open_database
    target = _db_target(args)
    added, present = push_run(args.run_dir, open_database(target))
    print(f"{args.run_dir}: {added} record(s) added to {redact(target)}, {present} already there")


def cmd_report(args) -> None:
    from pathlib import Path
    from typing import Optional
    from .records import RecordError, Run
    from .records.report import write_report
    if args.run_dir:
        run = Run.open(args.run_dir, check_schema=False)
        run_dir: Optional[Path] = run.path
        records, meta = run.records, run.meta
        source = str(run.path)
        default_out = run.path / "report.html"
    else:
        if not args.run:
            raise RecordError("report: give a run directory, or --db ... --run RUN_ID")
        with _open_db(args) as db:
            records = db.records(run_id=args.run)
        if not records:
            raise RecordError(f"no records of run {args.run} in the database")
        first = records[0]
        meta = {"run_id": args.run, "station": first.station, "host": first.host,
                "operator": first.operator, "started_utc": first.start_utc,
                "ended_utc": max(r.end_utc for r in records), "status": None}
        run_dir = Path(args.logs) if args.logs else None
        source = "the database"
        default_out = Path(f"report-{args.run}.html")
    out = Path(args.output) if args.output else default_out
    write_report(records, meta, out, run_dir=run_dir, source=source)
    fails = sum(r.outcome != "pass" for r in records)
    print(f"{out}: {len(records)} record(s), {fails} not passed")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="SQLite file or postgresql:// DSN (default $FOTABENCH_DB, "
                                "else runs/fotabench.sqlite)")


def add_runs(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list past runs, or their records, from the "
                                           "results database")
    _add_db(p)
    p.add_argument("--imei", help="only this module (lists its records)")
    p.add_argument("--station")
    p.add_argument("--outcome", choices=["pass", "fail", "error"])
    p.add_argument("--since", type=_since, metavar="DATE",
                   help="records started at or after DATE (UTC, YYYY-MM-DD[THH:MM[:SS]])")
    p.add_argument("--run", metavar="RUN_ID", help="the records of one run")
    p.add_argument("--records", action="store_true", help="list records, not runs")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)


def add_record(subparsers) -> None:
    p = subparsers.add_parser("record", help="one record: show it, or push a run's records "
                                             "to the database")
    sub = p.add_subparsers(dest="record_command", required=True, metavar="ACTION")
    s = sub.add_parser("show", help="print one record (digest verified)")
    s.add_argument("id", help="record id (32 hex digits, or a unique prefix of 6 or more)")
    _add_db(s)
    s.add_argument("--run-dir", help="read the record from this run directory instead")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_record_show)
    u = sub.add_parser("push", help="write a run directory's records to the database "
                                    "(idempotent; for records kept back while it was away)")
    u.add_argument("run_dir")
    _add_db(u)
    u.set_defaults(func=cmd_record_push)


def add_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="one self-contained HTML report of a run")
    p.add_argument("run_dir", nargs="?", help="run directory (or use --db and --run)")
    p.add_argument("-o", "--output", help="HTML file (default RUN_DIR/report.html)")
    _add_db(p)
    p.add_argument("--run", metavar="RUN_ID", help="with --db: the run to report")
    p.add_argument("--logs", metavar="RUN_DIR", help="with --db: where the run's logs are")
    p.set_defaults(func=cmd_report)
