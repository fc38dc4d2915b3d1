"""A station process for the database tests: writes records through a Recorder.

    records_writer.py RUN_DIR DB FIRST COUNT [--shared N] [--paced]

Record n (FIRST <= n < FIRST+COUNT) gets the id md5("unique-n"); with --shared N it
first writes records 0..N-1 with ids md5("shared-n") and identical content (what several
stations writing the same record would do). After each add it prints
``committed <id>`` and flushes. --paced: waits for a line on stdin before each record,
so a test can kill it at a known point.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fotabench.records import Recorder  # noqa: E402
from records_helpers import make_record  # noqa: E402


def main() -> None:
    run_dir, db, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    shared = int(sys.argv[sys.argv.index("--shared") + 1]) if "--shared" in sys.argv else 0
    paced = "--paced" in sys.argv
    plan = [("shared", n) for n in range(shared)] + \
           [("unique", n) for n in range(first, first + count)]
    rec = Recorder(run_dir, db=db, station="st", run_id="run-mp", retry_interval_s=0,
                   index_interval_s=3600)
    for kind, n in plan:
        if paced and not sys.stdin.readline():
            return
        r = make_record(n, run_id="run-mp", id=hashlib.md5(f"{kind}-{n}".encode()).hexdigest())
        rec.add(r)
        if rec.pending:
            print(f"pending {r.id}", flush=True)
        else:
            print(f"committed {r.id}", flush=True)
    rec.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
