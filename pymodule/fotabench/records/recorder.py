"""What the bench feeds: each record goes to the run directory (durable first), then to
the database in its own transaction.

When the database cannot take a record (unreachable, went away mid-run) the record stays
in the run directory and its id in ``db-pending.json``; the recorder retries at the next
record (no sooner than ``retry_interval_s`` after a failure) and at :meth:`Recorder.close`.
Records still pending at close raise :class:`DatabasePendingError`, which names the run
directory and the command that pushes them later (``fotabench record push RUN_DIR``):
records are never silently lost.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

from .db import Database, DatabaseUnavailable, open_database, redact
from .record import Record, RecordError
from .run import PathLike, Run, RunWriter, write_atomic

__all__ = ["DatabasePendingError", "Recorder", "push_run"]

PENDING = "db-pending.json"


class DatabasePendingError(RecordError):
    """Records kept in the run directory because the database did not take them."""

    code_name = "DB_PENDING"


class Recorder:
    """A run directory plus (optionally) a database. Thread-safe: slots add from their
    own threads. ``db`` is a path, a ``postgresql://`` DSN, an open Database or None."""

    def __init__(self, run_dir: PathLike, *, db: Union[None, str, "Database"] = None,
                 station: str = "station", operator: Optional[str] = None,
                 run_id: Optional[str] = None, retry_interval_s: float = 5.0,
                 index_interval_s: float = 1.0, meta: Optional[dict[str, Any]] = None) -> None:
        self.run = RunWriter(run_dir, station=station, operator=operator, run_id=run_id,
                             index_interval_s=index_interval_s, meta=meta)
        self.retry_interval_s = retry_interval_s
        self._lock = threading.Lock()
        self._db_target: Optional[str] = None
        self.db: Optional[Database] = None
        self.last_db_error: Optional[str] = None
        self._next_try = 0.0
        self.pending: list[str] = self._load_pending()
        # The pending records themselves (the run writer keeps no Record objects);
        # those of a resumed run are read back from its records/ when first needed.
        self._held: dict[str, Record] = {}
        if isinstance(db, Database):
            self.db, self._db_target = db, db.target
        elif db is not None:
            self._db_target = str(db)
            self._try_open()

    @property
    def path(self) -> Path:
        return self.run.path

    def _load_pending(self) -> list[str]:
        f = self.run.path / PENDING
        if not f.exists():
            return []
        ids = json.loads(f.read_text(encoding="utf-8")).get("ids", [])
        return [str(i) for i in ids]

    def _save_pending(self) -> None:
        f = self.run.path / PENDING
        if self.pending:
            doc = {"db": redact(self._db_target or ""), "ids": self.pending,
                   "last_error": self.last_db_error}
            write_atomic(f, json.dumps(doc, indent=1).encode("utf-8") + b"\n")
        elif f.exists():
            f.unlink()

    def _try_open(self) -> bool:
        if self.db is not None:
            return True
        assert self._db_target is not None
        try:
            self.db = open_database(self._db_target)
            return True
        except DatabaseUnavailable as e:
            self._fail(e)
            return False

    def _fail(self, e: Exception) -> None:
        self.last_db_error = str(e)
        self._next_try = time.monotonic() + self.retry_interval_s

    def add(self, record: Record) -> None:
        """Durable in the run directory when this returns (RecordWriteError otherwise),
        and in the database unless it is unavailable (then kept pending)."""
        # Not under our lock: the run writer is thread-safe and its durable write (two
        # fsyncs) must not queue the other slots' records behind this one.
        self.run.add(record)
        with self._lock:
            if self._db_target is None:
                return
            was = len(self.pending)
            self.pending.append(record.id)
            self._held[record.id] = record
            self._flush_locked(force=False)
            if self.pending and len(self.pending) != was:
                self._save_pending()
                self._note()
                self.run.refresh_index()

    def flush(self) -> int:
        """Try to write every pending record now; returns how many are still pending."""
        with self._lock:
            self._flush_locked(force=True)
            return len(self.pending)

    def _flush_locked(self, *, force: bool) -> None:
        if not self.pending or self._db_target is None:
            return
        if not force and time.monotonic() < self._next_try:
            return
        had = len(self.pending)
        if not self._try_open():
            self._note()
            return
        assert self.db is not None
        if any(rid not in self._held for rid in self.pending):
            want = set(self.pending)
            self._held.update({r.id: r for r in self.run.records if r.id in want})
        while self.pending:
            rid = self.pending[0]
            try:
                self.db.add(self._held[rid])
            except DatabaseUnavailable as e:
                self._fail(e)
                self._note()
                break
            self.pending.pop(0)
            self._held.pop(rid, None)
        if had:
            self._save_pending()
            self._note()

    def _note(self) -> None:
        # Said in run.json (at its next rewrite) and in db-pending.json; the records
        # themselves are safe in the run directory, so the run is not "incomplete".
        self.run.meta["database"] = {"target": redact(self._db_target or ""),
                                     "pending": len(self.pending),
                                     "last_error": self.last_db_error}

    def close(self) -> None:
        """Last try at the database, then the final run.json / junit.xml / OpenHTF files.
        DatabasePendingError if records are still not in the database."""
        with self._lock:
            self._flush_locked(force=True)
            if self._db_target is not None:
                self.run.meta["database"] = {"target": redact(self._db_target),
                                             "pending": len(self.pending),
                                             "last_error": self.last_db_error}
            self.run.close()
            if self.db is not None:
                self.db.close()
            if self.pending:
                raise DatabasePendingError(
                    f"{len(self.pending)} record(s) are in {self.run.path} but not in the "
                    f"database {redact(self._db_target or '')} ({self.last_db_error}): run "
                    f"`fotabench record push {self.run.path} --db ...` when it is back")

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def push_run(run_dir: PathLike, db: Union[str, Database]) -> tuple[int, int]:
    """Write every record of a run directory to a database (idempotent). Returns (added,
    already there); clears the run's db-pending.json."""
    run = Run.open(run_dir)
    database = db if isinstance(db, Database) else open_database(db)
    added = present = 0
    try:
        for r in run.records:
            if database.add(r):
                added += 1
            else:
                present += 1
    finally:
        if not isinstance(db, Database):
            database.close()
    pending = Path(run_dir) / PENDING
    if pending.exists():
        pending.unlink()
    return added, present
