"""A run directory: the records of one bench run, their logs, and the files made from them.

    RUN_DIR/
      run.json                 run metadata + every record (the index; rewritten atomically)
      records/NNNNNN-<id>.json one file per record, read-only: the durable truth
      logs/<slot>/attempt-<n>/<name>.log   per-slot logs (the bench writes them)
      junit.xml                one test case per slot and attempt
      openhtf/<id>.json        one OpenHTF test record per record
      db-pending.json          records not yet in the database (only while some are not)

Each record is durable the moment :meth:`RunWriter.add` returns: written to a temporary
file, fsync'ed, then linked under its final name (link, unlike rename, never replaces a
file: a record is written once) and the directory fsync'ed. A write that fails (a full
disk) leaves no partial record and raises :class:`RecordWriteError`; run.json then says
``"status": "incomplete"`` with the problem, as soon as it can be written.
"""
from __future__ import annotations

import bisect
import errno
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from .. import __version__
from .junit import JunitCase, junit_case, junit_document
from .record import Record, RecordError, canonical_json, utc_now

__all__ = ["RUN_FORMAT", "RUN_VERSION", "Run", "RunDirError", "RunWriter", "RecordWriteError",
           "write_atomic"]

RUN_FORMAT = "fotabench.run"
RUN_VERSION = 1
PathLike = Union[str, "os.PathLike[str]"]


class RunDirError(RecordError):
    """A directory that is not a fotabench run (or a damaged one)."""

    code_name = "RUN_DIR"


class RecordWriteError(RecordError):
    """A record could not be written (the disk is full, ...): it is not in the run."""

    code_name = "RECORD_WRITE"


def _safe_name(text: str) -> str:
    """A slot name as a directory name: letters, digits, '.', '_', '-' only."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "_"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_atomic(path: Path, data: bytes, *, replace: bool = True, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a reader sees all of it or nothing: a temporary
    file beside it, fsync, then rename (``replace``) or link (never replaces; FileExistsError
    when ``path`` exists), then fsync of the directory. On any error the temporary file is
    removed and the error raised."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _describe_oserror(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    if e.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return e.strerror or str(e)


class RunWriter:
    """Appends records to a run directory as they come (one writer per run).

    ``index_interval_s``: run.json and junit.xml are rewritten at most this often while
    records come (and always at :meth:`close`); the records/ files are what makes a record
    durable, and readers merge them, so a run killed between two rewrites loses nothing.
    Opening an existing run directory resumes it (its records are kept)."""

    def __init__(self, path: PathLike, *, run_id: Optional[str] = None,
                 station: str = "station", operator: Optional[str] = None,
                 meta: Optional[dict[str, Any]] = None, index_interval_s: float = 1.0,
                 openhtf: bool = True) -> None:
        self.path = Path(path)
        self.index_interval_s = index_interval_s
        self.openhtf = openhtf
        self.problems: list[str] = []
        self._ids: dict[str, str] = {}
        # What the index needs of each record, made once when it is added: its line in
        # run.json and its junit test case. A rewrite joins them rather than encoding
        # every record again (json's indent= runs in pure Python under the GIL: a
        # 64-slot station spent its end doing it), and the Record objects themselves are
        # not kept (a station runs for days: the soak's RSS grew with them); ``records``
        # reads them back from records/.
        self._entries: list[tuple[int, str, JunitCase]] = []    # (seq, line, case)
        self._writing: dict[str, str] = {}      # id -> digest, being written
        # Records come from many slots' threads at once: ids, the list and the index
        # under this lock, the durable write (two fsyncs) outside it, so concurrent
        # writes share the file system's commits instead of queueing.
        self._lock = threading.RLock()
        self._last_index = 0.0
        self._dirty = False
        self._closed = False
        existing = self.path / "run.json"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "records").mkdir(exist_ok=True)
            (self.path / "logs").mkdir(exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run directory {self.path}: "
                              f"{_describe_oserror(e)}") from None
        if existing.exists():
            run = Run.open(self.path)
            self.meta = dict(run.meta)
            self.problems = list(run.meta.get("problems", []))
            for seq, rec in enumerate(run.records):
                self._keep(rec, self._entry(rec, seq))
        else:
            self.meta = {
                "format": RUN_FORMAT, "version": RUN_VERSION,
                "run_id": run_id or f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-"
                                    f"{_safe_name(station)}-{os.getpid()}",
                "station": station, "operator": operator, "host": socket.gethostname(),
                "fotabench_version": __version__, "started_utc": utc_now(),
                "ended_utc": None, "status": "open", "problems": [],
                **(meta or {}),
            }
            self._write_index()
        self.run_id: str = self.meta["run_id"]
        self._seq = len(self._entries)

    # --- layout -------------------------------------------------------------------
    def log_dir(self, slot: str, attempt: int = 1) -> Path:
        """Where the bench puts the logs of ``slot``'s ``attempt`` (created)."""
        d = self.path / "logs" / _safe_name(slot) / f"attempt-{attempt}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log_path(self, slot: str, attempt: int, name: str) -> Path:
        return self.log_dir(slot, attempt) / f"{_safe_name(name)}.log"

    def relative(self, path: PathLike) -> str:
        """A path as the record holds it: relative to the run directory, '/'-separated."""
        return Path(path).resolve().relative_to(self.path.resolve()).as_posix()

    # --- writing ------------------------------------------------------------------
    def _entry(self, record: Record, seq: int) -> tuple[int, str, JunitCase]:
        return (seq, json.dumps(record.to_dict(), ensure_ascii=False),
                junit_case(record, str(self.meta.get("station", "station"))))

    def _keep(self, record: Record, entry: tuple[int, str, JunitCase]) -> None:
        self._ids[record.id] = record.digest
        # in the order of the records/ files (concurrent adds may end out of order)
        bisect.insort(self._entries, entry, key=lambda e: e[0])

    @property
    def records(self) -> list[Record]:
        """Every record of the run, read back from records/ (in their order)."""
        with self._lock:
            ids = set(self._ids)
        return [r for r in Run.open(self.path, check_schema=False).records if r.id in ids]

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def index_bytes(self) -> int:
        """What the writer holds in memory for the index (every record's run.json line
        and JUnit case), in bytes of text: it grows with the run, by design."""
        with self._lock:
            return sum(len(line) + len(case.xml) for _, line, case in self._entries)

    def add(self, record: Record) -> bool:
        """Make ``record`` durable in the run. True when it was added, False when the run
        already had it (same id and digest: adding is idempotent). RecordError when the
        run has another record with that id; RecordWriteError when it cannot be written.
        Safe to call from several threads at once."""
        with self._lock:
            if self._closed:
                raise RecordError(f"run {self.path} is closed")
            if record.run_id != self.run_id:
                raise RecordError(f"record {record.id} belongs to run {record.run_id}, not "
                                  f"to {self.run_id} ({self.path})")
            known = self._ids.get(record.id) or self._writing.get(record.id)
            if known is not None:
                if known != record.digest:
                    raise RecordError(f"run {self.path} already has a different record "
                                      f"{record.id}: a record is written once")
                return False
            self._writing[record.id] = record.digest
            seq = self._seq
            name = f"{seq:06d}-{record.id}.json"
            self._seq += 1
        target = self.path / "records" / name
        try:
            write_atomic(target, canonical_json(record.to_dict()) + b"\n",
                         replace=False, mode=0o444)
        except OSError as e:
            msg = (f"record {record.id} (slot {record.slot}, attempt {record.attempt}) was "
                   f"NOT written to {self.path}: {_describe_oserror(e)}")
            with self._lock:
                del self._writing[record.id]
                self.problems.append(msg)
                self.meta["status"] = "incomplete"
                self._try_index()
            raise RecordWriteError(msg + "; the run is marked incomplete") from None
        entry = self._entry(record, seq)     # outside the lock too
        with self._lock:
            del self._writing[record.id]
            self._keep(record, entry)
            self._dirty = True
            if time.monotonic() - self._last_index >= self.index_interval_s:
                self._try_index()
        return True

    def _try_index(self) -> None:
        try:
            self._write_index()
        except OSError as e:
            # The records/ files are the truth; the index is written again next time.
            note = f"run.json not rewritten: {_describe_oserror(e)}"
            if note not in self.problems:
                self.problems.append(note)
            self.meta["status"] = "incomplete"

    def _write_index(self) -> None:
        with self._lock:
            self.meta["problems"] = list(self.problems)
            if self.problems and self.meta.get("status") != "closed":
                self.meta["status"] = "incomplete"
            # The metadata indented, each record on one line (encoded once, in _keep).
            head = json.dumps({k: v for k, v in self.meta.items() if k != "records"},
                              indent=1, ensure_ascii=False)     # "{\n ...\n}"
            listed = ("[\n  " + ",\n  ".join(e[1] for e in self._entries)
                      + "\n ]") if self._entries else "[]"
            text = f'{head[:-2]},\n "records": {listed}\n}}'
            write_atomic(self.path / "run.json", text.encode("utf-8") + b"\n")
            write_atomic(self.path / "junit.xml",
                         junit_document(self.meta, [e[2] for e in self._entries]))
            self._last_index = time.monotonic()
            self._dirty = False

    def refresh_index(self, *, force: bool = False) -> None:
        """Rewrite run.json and junit.xml now if the index interval has passed (or
        ``force``): after run metadata changed (the database's state, ...)."""
        with self._lock:
            if force or time.monotonic() - self._last_index >= self.index_interval_s:
                self._try_index()

    def note_problem(self, message: str) -> None:
        """Something the run must say (a database that kept records back, ...)."""
        with self._lock:
            if message not in self.problems:
                self.problems.append(message)
                self._dirty = True

    def close(self) -> None:
        """Final run.json, junit.xml and OpenHTF export. Raises RecordWriteError if they
        cannot be written (the records/ files are still there)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self.meta["ended_utc"] = utc_now()
        if self.meta.get("status") == "open" and not self.problems:
            self.meta["status"] = "closed"
        elif self.problems:
            self.meta["status"] = "incomplete"
        try:
            self._write_index()
            if self.openhtf:
                from .openhtf import write_openhtf
                write_openhtf(self.path / "openhtf", self.records)
        except OSError as e:
            raise RecordWriteError(f"run {self.path}: run.json/junit.xml not written at "
                                   f"close: {_describe_oserror(e)}") from None
        self._closed = True

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Run:
    """A run directory as read back: ``meta`` (run.json without its records) and
    ``records`` (every record, verified: digest always, schema when ``check_schema``)."""

    def __init__(self, path: Path, meta: dict[str, Any], records: list[Record]) -> None:
        self.path = path
        self.meta = meta
        self.records = records

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    @classmethod
    def open(cls, path: PathLike, *, check_schema: bool = True) -> "Run":
        p = Path(path)
        index = p / "run.json"
        if not p.is_dir():
            raise RunDirError(f"{p} is not a directory (a run directory holds run.json)")
        if not index.is_file():
            raise RunDirError(f"{p} is not a fotabench run directory: it has no run.json")
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RunDirError(f"{index}: not readable as JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT:
            raise RunDirError(f"{index} is not a fotabench run index (no \"format\": "
                              f"\"{RUN_FORMAT}\")")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RunDirError(f"{index}: \"version\" is {version!r}, not a run format version")
        if version > RUN_VERSION:
            from .record import NewerSchemaError
            raise NewerSchemaError(
                f"{index} is run format version {version}, from a newer fotabench (this "
                f"one reads up to {RUN_VERSION}): upgrade fotabench", version)
        listed = doc.get("records") or []
        if not isinstance(listed, list):
            raise RunDirError(f"{index}: \"records\" is not a list")
        meta = {k: v for k, v in doc.items() if k != "records"}
        by_id: dict[str, Record] = {}
        # records/ is the durable truth; run.json may lag it by one index interval.
        for f in sorted((p / "records").glob("*.json")):
            try:
                d = json.loads(f.read_bytes())
            except (OSError, ValueError) as e:
                raise RunDirError(f"{f}: not readable as JSON ({e})") from None
            rec = Record.from_dict(d, what=str(f), check_schema=check_schema)
            by_id[rec.id] = rec
        for i, d in enumerate(listed):
            rid = d.get("id") if isinstance(d, dict) else None
            if rid in by_id:
                if d.get("digest") != by_id[rid].digest:
                    raise RunDirError(f"{index}: record {rid} differs from "
                                      f"records/*-{rid}.json")
                continue
            rec = Record.from_dict(d, what=f"{index} record {i}", check_schema=check_schema)
            by_id[rec.id] = rec
        return cls(p, meta, list(by_id.values()))

    def log_text(self, record: Record, name: str) -> Optional[str]:
        rel = record.logs.get(name)
        if rel is None:
            return None
        f = (self.path / rel)
        try:
            return f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


def iter_records(paths: Iterable[PathLike]) -> Iterable[Record]:
    for p in paths:
        yield from Run.open(p).records
