"""The results database: SQLite by default, PostgreSQL for a ``postgresql://`` DSN.

One schema in both (plain TEXT/INTEGER columns, the record itself as its canonical JSON),
versioned: ``fotabench_schema.version``; :data:`MIGRATIONS` are applied on open, in one
transaction (PostgreSQL: under an advisory lock, so stations opening at once migrate
once); a database whose version is above ours is refused (NewerSchemaError). Every
:meth:`Database.add` is its own transaction, idempotent by record id: adding a record the
database already has changes nothing; a different record under the same id is an error.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .record import NewerSchemaError, Record, RecordError, canonical_json

__all__ = ["DEFAULT_DB", "Database", "DatabaseUnavailable", "MIGRATIONS", "SCHEMA_VERSION",
           "open_database", "redact"]

#: Where the CLI looks when neither --db nor $FOTABENCH_DB says: beside the runs.
DEFAULT_DB = "runs/fotabench.sqlite"

# Version N's statements take a database from version N-1 to N. Only ever append.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE records (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            station TEXT NOT NULL,
            slot TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            imei TEXT,
            model TEXT,
            package_md5 TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL,
            start_utc TEXT NOT NULL,
            end_utc TEXT NOT NULL,
            digest TEXT NOT NULL,
            body TEXT NOT NULL)""",
        "CREATE INDEX records_imei ON records (imei)",
        "CREATE INDEX records_station_start ON records (station, start_utc)",
        "CREATE INDEX records_run ON records (run_id)",
        "CREATE INDEX records_start ON records (start_utc)",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
_PG_LOCK = 0x0F07AB3C  # advisory lock key: fotabench migrations

_COLUMNS = ("id", "run_id", "kind", "station", "slot", "attempt", "imei", "model",
            "package_md5", "outcome", "reason", "start_utc", "end_utc", "digest", "body")


class DatabaseUnavailable(RecordError):
    """The database cannot be reached (or went away): nothing was written to it."""

    code_name = "DB_UNAVAILABLE"


def redact(target: str) -> str:
    """A DSN as it may be printed: without its password."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", target)


def _row(record: Record) -> tuple[Any, ...]:
    return (record.id, record.run_id, record.kind, record.station, record.slot,
            record.attempt, record.module.imei, record.module.model, record.package.md5,
            record.outcome, record.reason, record.start_utc, record.end_utc, record.digest,
            canonical_json(record.to_dict()).decode("utf-8"))


class Database:
    """Base of the two back ends; :func:`open_database` picks one."""

    kind = "?"
    _param = "?"

    def __init__(self, target: str) -> None:
        self.target = target

    # --- the back end's part -------------------------------------------------------
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _insert(self, row: tuple[Any, ...]) -> Optional[str]:
        """Insert in one transaction; None when inserted, else the digest already there."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # --- common -------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._param)

    def _check_and_migrate(self, version: Optional[int], apply: Any) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise NewerSchemaError(
                f"database {redact(self.target)} has schema version {version}, from a newer "
                f"fotabench (this one knows up to {SCHEMA_VERSION}): upgrade fotabench",
                version)
        for v, statements in MIGRATIONS:
            if version is None or v > version:
                for s in statements:
                    apply(s)
        if version is None:
            apply(f"INSERT INTO fotabench_schema (version) VALUES ({SCHEMA_VERSION})")
        elif version < SCHEMA_VERSION:
            apply(f"UPDATE fotabench_schema SET version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        return int(self._execute("SELECT version FROM fotabench_schema")[0][0])

    def add(self, record: Record) -> bool:
        """Commit ``record`` (its own transaction). True when added, False when the
        database already had it; RecordError when it has another record with that id."""
        existing = self._insert(_row(record))
        if existing is None:
            return True
        if existing != record.digest:
            raise RecordError(f"database {redact(self.target)} already has a different "
                              f"record {record.id} (digest {existing}): a record is "
                              f"written once")
        return False

    def get(self, record_id: str) -> Record:
        """The record with this id (or unique id prefix of at least 6 characters),
        digest verified."""
        if not re.fullmatch(r"[0-9a-f]{6,32}", record_id):
            raise RecordError(f"{record_id!r} is not a record id (32 hex digits, or a "
                              f"prefix of at least 6)")
        rows = self._execute(self._sql("SELECT body FROM records WHERE id LIKE ? ORDER BY id"
                                       " LIMIT 2"), (record_id + "%",))
        if not rows:
            raise RecordError(f"no record {record_id} in {redact(self.target)}")
        if len(rows) > 1:
            raise RecordError(f"record id prefix {record_id} is ambiguous in "
                              f"{redact(self.target)}: give more digits")
        return Record.from_dict(json.loads(rows[0][0]), what=f"record {record_id}")

    def _where(self, *, imei: Optional[str] = None, station: Optional[str] = None,
               outcome: Optional[str] = None, since: Optional[str] = None,
               run_id: Optional[str] = None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for column, value in (("imei", imei), ("station", station), ("outcome", outcome),
                              ("run_id", run_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("start_utc >= ?")
            params.append(since)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def find(self, *, limit: Optional[int] = None, **filters: Any) -> list[dict[str, Any]]:
        """Record summaries (newest first) matching the filters (imei, station, outcome,
        since = an ISO date/time compared with start_utc, run_id)."""
        where, params = self._where(**filters)
        sql = (f"SELECT {', '.join(c for c in _COLUMNS if c != 'body')} FROM records{where} "
               f"ORDER BY start_utc DESC, id")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cols = [c for c in _COLUMNS if c != "body"]
        return [dict(zip(cols, r)) for r in self._execute(self._sql(sql), params)]

    def records(self, **filters: Any) -> list[Record]:
        """Whole records (oldest first), digest verified."""
        where, params = self._where(**filters)
        rows = self._execute(self._sql(f"SELECT body FROM records{where} "
                                       f"ORDER BY start_utc, id"), params)
        return [Record.from_dict(json.loads(b), check_schema=False) for (b,) in rows]

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        """One row per run that has records matching the filters, newest first."""
        where, params = self._where(**filters)
        sql = (
            "SELECT run_id, MIN(station), MIN(start_utc), MAX(end_utc), COUNT(*), "
            "SUM(CASE WHEN outcome = 'pass' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN outcome = 'fail' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END) "
            f"FROM records{where} GROUP BY run_id ORDER BY MIN(start_utc) DESC, run_id")
        keys = ("run_id", "station", "start_utc", "end_utc", "records", "pass", "fail",
                "error")
        return [dict(zip(keys, (int(v) if isinstance(v, (int, float)) and i >= 4 else v
                                for i, v in enumerate(r))))
                for r in self._execute(self._sql(sql), params)]

    def count(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM records")[0][0])

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqliteDatabase(Database):
    kind = "sqlite"
    _param = "?"

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, create: bool = True) -> None:
        super().__init__(str(path))
        p = Path(path)
        if not create and not p.is_file():
            raise RecordError(f"no database at {p}: give --db PATH (SQLite) or "
                              f"postgresql://... (or set FOTABENCH_DB)")
        try:
            if create:
                p.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: every transaction below is explicit (BEGIN ... COMMIT).
            self._conn = sqlite3.connect(str(p), timeout=60, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise RecordError(f"database {p}: {e}") from None

    def _migrate(self) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            has = c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'fotabench_schema'").fetchone()
            version = None
            if has:
                row = c.execute("SELECT version FROM fotabench_schema").fetchone()
                version = int(row[0]) if row else None
            else:
                c.execute("CREATE TABLE fotabench_schema (version INTEGER NOT NULL)")
            self._check_and_migrate(version, c.execute)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as e:
            raise RecordError(f"database {self.target}: {e}") from None

    def _insert(self, row: tuple[Any, ...]) -> Optional[str]:
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                cur = c.execute(f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES "
                                f"({', '.join('?' * len(_COLUMNS))}) "
                                f"ON CONFLICT (id) DO NOTHING", row)
                existing = None
                if cur.rowcount == 0:
                    existing = c.execute("SELECT digest FROM records WHERE id = ?",
                                         (row[0],)).fetchone()[0]
                c.execute("COMMIT")
                return existing
            except BaseException:
                c.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:
            raise DatabaseUnavailable(f"database {self.target}: {e}") from None

    def close(self) -> None:
        self._conn.close()


class PostgresDatabase(Database):
    kind = "postgresql"
    _param = "%s"

    def __init__(self, dsn: str, *, connect_timeout: float = 5.0) -> None:
        super().__init__(dsn)
        try:
            import psycopg
        except ImportError:
            raise RecordError("a postgresql:// database needs psycopg 3: pip install "
                              "'fotabench[postgres]' (or psycopg[binary])") from None
        self._psycopg = psycopg
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._connect()
        self._migrate()

    def _connect(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = self._psycopg.connect(
                self.target, autocommit=True,
                connect_timeout=max(1, int(round(self.connect_timeout))))
        except self._psycopg.Error as e:
            self._conn = None
            raise DatabaseUnavailable(f"database {redact(self.target)} unreachable: "
                                      f"{str(e).strip().splitlines()[0]}") from None
        return self._conn

    def _lost(self, e: Exception) -> DatabaseUnavailable:
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:  # closing a dead connection may itself fail
            pass
        self._conn = None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return DatabaseUnavailable(f"database {redact(self.target)} went away: {first}")

    def _migrate(self) -> None:
        conn = self._connect()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS fotabench_schema "
                         "(version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM fotabench_schema").fetchone()
            self._check_and_migrate(None if row is None else int(row[0]),
                                    lambda s: conn.execute(s))

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            rows: list[tuple[Any, ...]] = conn.execute(sql, tuple(params)).fetchall()
            return rows
        except self._psycopg.OperationalError as e:
            raise self._lost(e) from None
        except self._psycopg.Error as e:
            raise RecordError(f"database {redact(self.target)}: {e}") from None

    def _insert(self, row: tuple[Any, ...]) -> Optional[str]:
        conn = self._connect()
        try:
            with conn.transaction():
                cur = conn.execute(
                    f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES "
                    f"({', '.join(['%s'] * len(_COLUMNS))}) ON CONFLICT (id) DO NOTHING", row)
                if cur.rowcount == 1:
                    return None
                found = conn.execute("SELECT digest FROM records WHERE id = %s",
                                     (row[0],)).fetchone()
                return str(found[0])
        except self._psycopg.OperationalError as e:
            raise self._lost(e) from None
        except self._psycopg.Error as e:
            raise DatabaseUnavailable(f"database {redact(self.target)}: {e}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def open_database(target: Union[str, "os.PathLike[str]"], *, create: bool = True) -> Database:
    """A path opens (``create``: creates) a SQLite file; ``postgresql://`` or
    ``postgres://`` a PostgreSQL database. Migrations are applied on open."""
    t = os.fspath(target)
    if t.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(t)
    if "://" in t:
        raise RecordError(f"{redact(t)}: not a database (give a SQLite file path or a "
                          f"postgresql:// DSN)")
    return SqliteDatabase(t, create=create)
