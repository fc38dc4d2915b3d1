#!/usr/bin/env python3
"""Records benchmark: how fast records go into the results database, and how long the
report takes, against what a 64-slot station needs.

    .venv/bin/python bench/perf/records.py [--records 400] [--writers 8] [--sizes 1,100,1000]

1. Database: --records records (made beforehand; making and validating one is timed
   apart) added one transaction each, by 1 writer and by --writers processes at once,
   into SQLite (WAL, synchronous=FULL) and into PostgreSQL (a server started here on
   127.0.0.1 with fsync on, tests/pg_server.py). Also the whole path the bench takes,
   Recorder = run directory (fsync'ed file per record) + SQLite.
   Reference: what 64 slots produce, computed in this run: 64 / 60 s (one upgrade per
   minute per slot) and 64 / the median duration of the generated upgrades (every slot
   back to back). Printed: records/s and the ratio to each reference.
2. Report: a run directory of 1, 100 and 1000 modules; `fotabench report` (a process, as
   a user runs it) timed, file size measured; ratios against the targets (5 s, 10 MB) and
   against reading and verifying the same run directory (Run.open) in this run.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))        # the record generator and the PG launcher

from fotabench.records import Recorder, Run, open_database  # noqa: E402
from pg_server import PgServer, pg_bin  # noqa: E402
from records_helpers import make_record, outcome_for, write_run  # noqa: E402


def _records(first: int, count: int, run_id: str) -> list:
    return [make_record(n, outcome=outcome_for(n, count), run_id=run_id)
            for n in range(first, first + count)]


def _writer(target: str, first: int, count: int, barrier, out) -> None:
    recs = _records(first, count, "bench")
    db = open_database(target)
    barrier.wait()
    t0 = time.perf_counter()
    for r in recs:
        db.add(r)
    out.put((t0, time.perf_counter()))
    db.close()


def db_rate(target: str, total: int, writers: int) -> float:
    """Records/s of ``writers`` processes adding ``total`` records between them."""
    open_database(target).close()             # schema made before the clock starts
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(writers), ctx.Queue()
    share = total // writers
    procs = [ctx.Process(target=_writer, args=(target, i * share, share,
                                               barrier, out)) for i in range(writers)]
    for p in procs:
        p.start()
    spans: list[tuple[float, float]] = []
    while len(spans) < writers:
        try:
            spans.append(out.get(timeout=2))
        except Exception:  # queue.Empty: is a writer dead?
            if any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise SystemExit("a writer failed (see its traceback above)")
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a writer failed (exit {p.exitcode})")
    return share * writers / (max(e for _, e in spans) - min(s for s, _ in spans))


def recorder_rate(tmp: Path, total: int) -> float:
    recs = _records(0, total, "bench-recorder")
    with Recorder(tmp / "recorder-run", db=str(tmp / "recorder.sqlite"),
                  run_id="bench-recorder") as rec:
        t0 = time.perf_counter()
        for r in recs:
            rec.add(r)
        dt = time.perf_counter() - t0
    return total / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=400)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--sizes", default="1,100,1000")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fotabench-perf-records-"))
    try:
        t0 = time.perf_counter()
        sample = _records(0, 100, "ref")
        make_rate = 100 / (time.perf_counter() - t0)
        median_s = statistics.median(r.duration_s for r in sample if r.outcome == "pass")
        ref_minute = 64 / 60.0
        ref_back_to_back = 64 / median_s
        print("reference: what 64 slots produce")
        print(f"  one upgrade per minute per slot         {ref_minute:8.2f} records/s")
        print(f"  back to back ({median_s:.1f} s median upgrade)    {ref_back_to_back:8.2f} "
              f"records/s")
        print(f"  making + validating a record (schema)   {make_rate:8.0f} records/s   "
              f"x{make_rate / ref_back_to_back:,.0f} the back-to-back need")
        print()
        rows = []
        rows.append(("SQLite, 1 writer", db_rate(str(tmp / "one.sqlite"), args.records, 1)))
        rows.append((f"SQLite, {args.writers} writers",
                     db_rate(str(tmp / "many.sqlite"), args.records, args.writers)))
        if pg_bin() is not None:
            server = PgServer(durable=True)
            server.start()
            try:
                rows.append(("PostgreSQL, 1 writer",
                             db_rate(server.new_database(), args.records, 1)))
                rows.append((f"PostgreSQL, {args.writers} writers",
                             db_rate(server.new_database(), args.records, args.writers)))
            finally:
                server.close()
        else:
            print("(PostgreSQL not installed: its rows are skipped)")
        rows.append(("Recorder: run dir + SQLite, 1 writer",
                     recorder_rate(tmp, min(args.records, 200))))
        print(f"{'database writes':40} {'records/s':>10} {'x per-minute':>13} "
              f"{'x back-to-back':>15}")
        for name, rate in rows:
            print(f"  {name:38} {rate:10.0f} {rate / ref_minute:13,.0f} "
                  f"{rate / ref_back_to_back:15,.0f}")
        print()
        print(f"{'report':10} {'time s':>8} {'x 5 s target':>13} {'size MB':>8} "
              f"{'x 10 MB':>8} {'read run s':>11} {'report/read':>12}")
        for n in [int(x) for x in args.sizes.split(",")]:
            run = tmp / f"run{n}"
            write_run(run, n, index_interval_s=3600)
            t0 = time.perf_counter()
            Run.open(run, check_schema=False)
            read_s = time.perf_counter() - t0
            out = tmp / f"report{n}.html"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fotabench", "report", str(run), "-o",
                            str(out)], check=True, capture_output=True)
            rep_s = time.perf_counter() - t0
            mb = out.stat().st_size / 1e6
            print(f"  {n:4} mod. {rep_s:8.2f} {rep_s / 5:13.2f} {mb:8.2f} {mb / 10:8.2f} "
                  f"{read_s:11.2f} {rep_s / read_s:12.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
