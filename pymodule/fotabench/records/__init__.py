"""Records, run directories, the results database and the report (docs/records.md).

    >>> rec = Record.create(run_id=..., station="line3", slot="01", package=..., ...)
    >>> with Recorder("runs/2026-11-30-line3", db="runs/fotabench.sqlite") as r:
    ...     r.add(rec)
"""
from .db import (DEFAULT_DB, Database, DatabaseUnavailable, SCHEMA_VERSION as DB_SCHEMA_VERSION,
                 open_database)
from .record import (KINDS, OUTCOMES, SCHEMA_VERSION, STATE_NAMES, ModuleId, NewerSchemaError,
                     PackageRef, PowerEvent, Record, RecordError, State, TamperedRecordError,
                     Transfer, Watchdog, canonical_json, compute_digest, load_schema, utc_now,
                     validate)
from .from_result import record_from_result, records_from_result
from .recorder import DatabasePendingError, Recorder, push_run
from .run import RecordWriteError, Run, RunDirError, RunWriter

__all__ = [
    "DB_SCHEMA_VERSION", "DEFAULT_DB", "Database", "DatabasePendingError",
    "DatabaseUnavailable", "KINDS", "ModuleId", "NewerSchemaError", "OUTCOMES", "PackageRef",
    "PowerEvent", "Record", "RecordError", "RecordWriteError", "Recorder", "Run", "RunDirError",
    "RunWriter", "SCHEMA_VERSION", "STATE_NAMES", "State", "TamperedRecordError", "Transfer",
    "Watchdog", "canonical_json", "compute_digest", "load_schema", "open_database", "push_run", "record_from_result", "records_from_result",
    "utc_now", "validate",
]
