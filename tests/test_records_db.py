"""The results database, SQLite and a real PostgreSQL server (tests/pg_server.py): schema
and migrations, idempotence, several station processes at once, a server that goes away
mid-run, SIGKILL of a writer, and the `runs` / `record` commands."""
from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fotabench.records import (DatabasePendingError, NewerSchemaError, Recorder, RecordError,
                               Run, open_database)
from fotabench.records.db import MIGRATIONS, SCHEMA_VERSION
from pg_server import PgServer, pg_bin
from records_helpers import make_record, write_run

HERE = Path(__file__).resolve().parent
WRITER = HERE / "records_writer.py"
needs_pg = pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed "
                              "(apt-get install postgresql; make test-deps does it)")


@pytest.fixture(scope="module")
def pg():
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = PgServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_pg)])
def db_target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "runs" / "fotabench.sqlite")
    return request.getfixturevalue("pg").new_database()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fotabench", *args], capture_output=True,
                          text=True, timeout=120, env=env)


# --- schema, migrations, idempotence ---------------------------------------------------

def test_open_creates_the_schema_and_applies_migrations(db_target):
    with open_database(db_target) as db:
        assert db.schema_version == SCHEMA_VERSION == MIGRATIONS[-1][0]
        assert db.count() == 0
    with open_database(db_target) as db:        # opening again changes nothing
        assert db.schema_version == SCHEMA_VERSION


def test_sqlite_is_in_wal_mode(tmp_path):
    open_database(tmp_path / "f.sqlite").close()
    c = sqlite3.connect(tmp_path / "f.sqlite")
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_schema_from_a_newer_fotabench_is_refused_with_its_version(db_target):
    open_database(db_target).close()
    if db_target.startswith("postgresql"):
        import psycopg
        with psycopg.connect(db_target, autocommit=True) as c:
            c.execute("UPDATE fotabench_schema SET version = 42")
    else:
        c = sqlite3.connect(db_target)
        c.execute("UPDATE fotabench_schema SET version = 42")
        c.commit()
        c.close()
    with pytest.raises(NewerSchemaError, match=r"schema version 42.*newer fotabench") as e:
        open_database(db_target)
    assert e.value.version == 42


def test_add_is_idempotent_by_record_id_and_get_verifies(db_target):
    r = make_record(1, outcome="fail")
    with open_database(db_target) as db:
        assert db.add(r) is True
        assert db.add(r) is False
        assert db.count() == 1
        got = db.get(r.id)
        assert got == r and got.digest == r.digest
        assert db.get(r.id[:8]) == r
        other = make_record(2)
        from fotabench.records import Record
        forged = Record.create(run_id=other.run_id, station=other.station, slot=other.slot,
                               package=other.package, outcome="pass", start_ns=other.start_ns,
                               end_ns=other.end_ns, start_utc=other.start_utc,
                               end_utc=other.end_utc, id=r.id)
        with pytest.raises(RecordError, match="different record"):
            db.add(forged)
        with pytest.raises(RecordError, match="no record"):
            db.get("abcdef")
        with pytest.raises(RecordError, match="not a record id"):
            db.get("xyz")


def test_filters(db_target):
    recs = [make_record(1, station="st-a"), make_record(2, outcome="fail", station="st-a"),
            make_record(3, outcome="error", station="st-b", base_epoch_s=1_800_000_000.0)]
    with open_database(db_target) as db:
        for r in recs:
            db.add(r)
        assert [x["id"] for x in db.find(imei=recs[0].module.imei)] == [recs[0].id]
        assert {x["id"] for x in db.find(station="st-a")} == {recs[0].id, recs[1].id}
        assert [x["id"] for x in db.find(outcome="fail")] == [recs[1].id]
        assert [x["id"] for x in db.find(since="2027-01-01")] == [recs[2].id]
        runs = db.runs()
        assert len(runs) == 1 and runs[0]["records"] == 3
        assert (runs[0]["pass"], runs[0]["fail"], runs[0]["error"]) == (1, 1, 1)


# --- the recorder: run directory first, then the database -------------------------------

def test_recorder_writes_both_and_push_is_idempotent(db_target, tmp_path):
    with Recorder(tmp_path / "run", db=db_target, station="st") as rec:
        for i in range(5):
            rec.add(make_record(i, run_id=rec.run.run_id))
        assert rec.pending == []
    run = Run.open(tmp_path / "run")
    with open_database(db_target) as db:
        assert {r.id for r in db.records()} == {r.id for r in run.records}
    r = _cli("record", "push", str(tmp_path / "run"), "--db", db_target)
    assert r.returncode == 0 and "0 record(s) added" in r.stdout and "5 already there" in r.stdout


@needs_pg
def test_postgres_going_away_mid_run_loses_nothing(tmp_path):
    server = PgServer()
    server.start()
    try:
        dsn = server.new_database()
        rec = Recorder(tmp_path / "run", db=dsn, station="st", retry_interval_s=0,
                       index_interval_s=0)
        recs = [make_record(i, run_id=rec.run.run_id) for i in range(8)]
        for r in recs[:3]:
            rec.add(r)
        assert rec.pending == []
        server.stop()
        for r in recs[3:6]:
            rec.add(r)                      # no exception: kept in the run directory
        assert rec.pending == [r.id for r in recs[3:6]]
        assert "went away" in (rec.last_db_error or "") or "unreachable" in (rec.last_db_error or "")
        pending = json.loads((tmp_path / "run" / "db-pending.json").read_text())
        assert pending["ids"] == [r.id for r in recs[3:6]]
        meta = json.loads((tmp_path / "run" / "run.json").read_text())
        assert meta["database"]["pending"] == 3
        server.start()
        rec.add(recs[6])                    # the next record flushes the backlog
        assert rec.pending == []
        assert not (tmp_path / "run" / "db-pending.json").exists()
        with open_database(dsn) as db:
            assert {r.id for r in db.records()} == {r.id for r in recs[:7]}
        # Down at the end of the run: a clear error, and `record push` later.
        server.stop()
        rec.add(recs[7])
        with pytest.raises(DatabasePendingError, match=r"1 record\(s\).*fotabench record push"):
            rec.close()
        server.start()
        r = _cli("record", "push", str(tmp_path / "run"), "--db", dsn)
        assert r.returncode == 0, r.stderr
        assert "1 record(s) added" in r.stdout and "7 already there" in r.stdout
        with open_database(dsn) as db:
            assert db.count() == 8
    finally:
        server.close()


@needs_pg
def test_unreachable_database_at_start_keeps_records_locally(tmp_path):
    dsn = "postgresql://fotabench@127.0.0.1:9/none"    # port 9 (discard): nothing listens
    rec = Recorder(tmp_path / "run", db=dsn, retry_interval_s=0)
    r = make_record(1, run_id=rec.run.run_id)
    rec.add(r)
    assert rec.pending == [r.id] and "unreachable" in (rec.last_db_error or "")
    with pytest.raises(DatabasePendingError):
        rec.close()
    assert [x.id for x in Run.open(tmp_path / "run").records] == [r.id]


# --- several processes --------------------------------------------------------------

@needs_pg
def test_several_stations_into_one_postgres_lose_and_duplicate_nothing(pg, tmp_path):
    dsn = pg.new_database()
    n_proc, unique, shared = 4, 12, 10
    procs = [subprocess.Popen([sys.executable, str(WRITER), str(tmp_path / f"run{i}"), dsn,
                               str(1000 + i * unique), str(unique), "--shared", str(shared)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n_proc)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.count("committed ") == unique + shared and "pending" not in out
    expected = {hashlib.md5(f"shared-{n}".encode()).hexdigest() for n in range(shared)} | {
        hashlib.md5(f"unique-{n}".encode()).hexdigest()
        for n in range(1000, 1000 + n_proc * unique)}
    with open_database(dsn) as db:
        ids = [r["id"] for r in db.find()]
    assert len(ids) == len(set(ids)) == len(expected) == shared + n_proc * unique
    assert set(ids) == expected


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=needs_pg)])
def test_sigkill_mid_run_loses_no_committed_record(backend, tmp_path, request):
    target = (str(tmp_path / "db.sqlite") if backend == "sqlite"
              else request.getfixturevalue("pg").new_database())
    p = subprocess.Popen([sys.executable, str(WRITER), str(tmp_path / "run"), target, "0", "16",
                          "--paced"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    committed = []
    for _ in range(6):
        p.stdin.write("go\n")
        p.stdin.flush()
        line = p.stdout.readline()
        assert line.startswith("committed "), line + p.stderr.read() if p.stderr else ""
        committed.append(line.split()[1])
    p.stdin.write("go\n")       # the 7th record is being written when the kill lands
    p.stdin.flush()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    with open_database(target) as db:
        in_db = {r.id for r in db.records()}
        assert len(in_db) < 16
    assert set(committed) <= in_db
    in_run = {r.id for r in Run.open(tmp_path / "run").records}   # every file complete
    assert set(committed) <= in_run and in_db <= in_run
    if backend == "sqlite":
        c = sqlite3.connect(target)
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- the command line ---------------------------------------------------------------

def test_cli_runs_and_record_show(db_target, tmp_path):
    w = write_run(tmp_path / "run", 8)
    assert _cli("record", "push", str(tmp_path / "run"), "--db", db_target).returncode == 0
    r = _cli("runs", "--db", db_target)
    assert r.returncode == 0, r.stderr
    assert w.run_id in r.stdout and "1 run(s)" in r.stdout
    r = _cli("runs", "--db", db_target, "--json")
    runs = json.loads(r.stdout)
    assert runs[0]["records"] == len(w.records)
    assert runs[0]["fail"] == sum(x.outcome == "fail" for x in w.records)
    fail = next(x for x in w.records if x.outcome == "fail")
    r = _cli("runs", "--db", db_target, "--outcome", "fail", "--json")   # runs with a fail
    assert [x["run_id"] for x in json.loads(r.stdout)] == [w.run_id]
    r = _cli("runs", "--db", db_target, "--outcome", "fail", "--records", "--json")
    assert [x["id"] for x in json.loads(r.stdout)] == [fail.id]
    r = _cli("runs", "--db", db_target, "--imei", str(fail.module.imei))
    assert fail.id[:12] in r.stdout and "download" in r.stdout
    r = _cli("runs", "--db", db_target, "--station", "nope", "--records")
    assert r.returncode == 0 and "0 record(s)" in r.stdout
    r = _cli("record", "show", fail.id[:10], "--db", db_target, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == fail.to_dict()
    r = _cli("record", "show", fail.id, "--db", db_target)
    assert "FAIL  download" in r.stdout and "UP_UPGRADFAILED(0)" in r.stdout
    r = _cli("record", "show", fail.id[:8], "--run-dir", str(tmp_path / "run"), "--json")
    assert json.loads(r.stdout)["id"] == fail.id


def test_cli_errors_are_one_line(tmp_path):
    r = _cli("runs", "--db", str(tmp_path / "missing.sqlite"))
    assert r.returncode == 1 and r.stderr.startswith("fotabench: error: no database at")
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "missing.sqlite").exists()
    r = _cli("runs", "--db", str(tmp_path / "x.sqlite"), "--since", "yesterday")
    assert r.returncode == 2 and "not a date" in r.stderr
    open_database(tmp_path / "x.sqlite").close()
    r = _cli("record", "show", "0123456789", "--db", str(tmp_path / "x.sqlite"))
    assert r.returncode == 1 and "no record 0123456789" in r.stderr
    r = _cli("record", "push", str(tmp_path), "--db", str(tmp_path / "x.sqlite"))
    assert r.returncode == 1 and "no run.json" in r.stderr
