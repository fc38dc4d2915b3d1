"""Records and run directories: the schema, the digest, durability, JUnit and OpenHTF.

Expected values come from the spec and from independent code here (hashlib + json for the
digest, junitparser for JUnit, the schema file read with jsonschema directly)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from tool_env import tool_env  # system tools without the ASan pass's LD_PRELOAD
from hypothesis import given, strategies as st

from fotabench.records import (NewerSchemaError, Record, RecordError, RecordWriteError, Run,
                               RunDirError, RunWriter, TamperedRecordError, load_schema)
from fotabench.records import run as run_mod
from fotabench.records.openhtf import openhtf_record
from records_helpers import FTP_SEQUENCE, PACKAGE_MD5, make_record, write_run

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "pymodule" / "fotabench" / "schemas" / "record-1.schema.json"


def _schema_validator():
    # The shipped file itself, read here without fotabench's loader.
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _reference_digest(d: dict) -> str:
    # docs/records.md: sha256 over JSON with sorted keys, no whitespace, UTF-8, the digest
    # field left out.
    body = {k: v for k, v in d.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- the record ---------------------------------------------------------------------

@pytest.mark.parametrize("outcome,protocol", [("pass", "http"), ("pass", "ftp"),
                                              ("fail", "http"), ("error", "ftp")])
def test_every_record_is_valid_against_the_shipped_schema(outcome, protocol):
    v = _schema_validator()
    r = make_record(5, outcome=outcome, protocol=protocol)
    d = r.to_dict()
    assert list(v.iter_errors(d)) == []
    assert d["schema_version"] == 1 and d["kind"] == "upgrade"
    assert d["digest"] == _reference_digest(d)
    assert Record.from_dict(d) == r
    assert load_schema(1) == json.loads(SCHEMA_FILE.read_text())   # upgrade records: v1


def test_record_carries_the_spec_state_sequences():
    ftp = make_record(1, protocol="ftp")
    assert [(s.state, s.percent) for s in ftp.states] == FTP_SEQUENCE
    http = make_record(2, protocol="http")
    names = [s.state for s in http.states]
    assert "UP_GET_FILE_OK" not in names            # never over HTTP (spec §2)
    pcts = [s.percent for s in http.states if s.state == "UP_GETTING_FILE"]
    assert pcts == sorted(pcts) and pcts[-1] == 100 and all(p % 5 == 0 for p in pcts)
    assert names[-1] == "UP_SYSTEM_REBOOT"
    fail = make_record(3, outcome="fail")
    assert fail.states[-1].state == "UP_UPGRADFAILED" and fail.check == "download"
    assert fail.transfers[0].faults == ("drop",)
    err = make_record(4, outcome="error")
    assert err.cause == "serial_port" and err.states == () and err.module.imei is None


def test_a_record_built_from_its_fields_reads_back_the_same():
    r = make_record(1, outcome="fail")
    fields = {k: getattr(r, k) for k in r.__dataclass_fields__ if k != "_dict"}
    again = Record(**fields)
    assert again.to_dict() == r.to_dict()
    assert Record.from_dict(again.to_dict()) == r


def test_a_run_takes_only_its_own_records(tmp_path):
    w = RunWriter(tmp_path / "run")
    with pytest.raises(RecordError, match="belongs to run other"):
        w.add(make_record(1, run_id="other"))


def test_record_is_immutable_and_to_dict_is_a_copy():
    r = make_record(1)
    with pytest.raises(AttributeError):
        r.outcome = "fail"  # type: ignore[misc]
    d = r.to_dict()
    d["outcome"] = "fail"
    assert r.to_dict()["outcome"] == "pass"


@pytest.mark.parametrize("change", [
    lambda d: d.update(outcome="fail", check="download"),
    lambda d: d["module"].update(imei="490154203237518"),
    lambda d: d["states"].pop(),
    lambda d: d["watchdog"].update(longest_gap_ns=d["watchdog"]["longest_gap_ns"] - 1),
])
def test_tampered_record_is_detected(change):
    d = make_record(1).to_dict()
    change(d)
    with pytest.raises(TamperedRecordError, match="digest mismatch"):
        Record.from_dict(d)


def test_invalid_records_are_refused_with_the_place():
    d = make_record(1).to_dict()
    d["package"]["md5"] = "not-an-md5"
    with pytest.raises(RecordError, match="package/md5"):
        Record.from_dict(d)
    d = make_record(2, outcome="pass").to_dict()
    d["outcome"] = "fail"     # a fail must name its check
    with pytest.raises(RecordError, match="check"):
        Record.from_dict(d)
    d = make_record(3).to_dict()
    d["start_ns"] = 1.5
    with pytest.raises(RecordError):
        Record.from_dict(d)
    with pytest.raises(RecordError, match="not a JSON object"):
        Record.from_dict([1, 2])  # type: ignore[arg-type]


def test_record_from_newer_fotabench_is_refused_with_its_version():
    d = make_record(1).to_dict()
    d["schema_version"] = 7
    with pytest.raises(NewerSchemaError, match="version 7.*newer fotabench") as e:
        Record.from_dict(d)
    assert e.value.version == 7


@given(st.data())
def test_from_dict_on_damaged_records_raises_only_record_error(data):
    d = make_record(9, outcome="fail").to_dict()
    key = data.draw(st.sampled_from(sorted(d)))
    value = data.draw(st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                st.lists(st.integers(), max_size=3),
                                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
    d[key] = value
    try:
        Record.from_dict(d)
    except RecordError:
        pass


# --- the run directory ----------------------------------------------------------------

def test_run_directory_layout_and_reading_back(tmp_path):
    w = write_run(tmp_path / "run", 3)
    run = Run.open(tmp_path / "run")
    assert sorted(r.id for r in run.records) == sorted(r.id for r in w.records)
    assert {r.outcome for r in run.records} == {"pass", "fail", "error"}
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert doc["format"] == "fotabench.run" and doc["version"] == 1
    assert doc["status"] == "closed" and doc["problems"] == []
    assert len(doc["records"]) == 3
    files = sorted((tmp_path / "run" / "records").iterdir())
    assert len(files) == 3
    assert all(f.stat().st_mode & 0o222 == 0 for f in files)   # written once: read-only
    for r in run.records:
        for rel in r.logs.values():
            assert (tmp_path / "run" / rel).is_file()
            assert rel.startswith(f"logs/{r.slot}/attempt-{r.attempt}/")
    assert not list((tmp_path / "run").rglob(".*.tmp"))


def test_a_record_is_durable_when_add_returns_even_without_close(tmp_path):
    """run.json lags (index interval); records/ does not, and a reader merges both."""
    w = RunWriter(tmp_path / "run", station="s", index_interval_s=3600)
    recs = [make_record(i, run_id=w.run_id) for i in range(4)]
    for r in recs:
        assert w.add(r) is True
    assert len(json.loads((tmp_path / "run" / "run.json").read_text())["records"]) < 4
    assert {r.id for r in Run.open(tmp_path / "run").records} == {r.id for r in recs}


def test_add_is_idempotent_and_a_record_is_written_once(tmp_path):
    w = RunWriter(tmp_path / "run")
    r = make_record(1, run_id=w.run_id)
    assert w.add(r) is True
    assert w.add(r) is False
    other = make_record(2, run_id=w.run_id)
    forged = Record.create(**{**_create_args(other), "id": r.id})
    with pytest.raises(RecordError, match="written once"):
        w.add(forged)
    w.close()
    assert len(Run.open(tmp_path / "run").records) == 1


def test_records_from_many_threads_are_written_at_once_and_all_listed(tmp_path, monkeypatch):
    """A station's slots end together: their records' durable writes (two fsyncs each)
    must not queue behind one lock. Forced: every record write waits at a barrier for
    all the others, which only passes if they are all in write_atomic at once."""
    import threading
    from fotabench.records import Recorder
    n = 6
    rec = Recorder(tmp_path / "run", station="s", index_interval_s=0)
    w = rec.run
    recs = [make_record(i, run_id=w.run_id) for i in range(n)]
    barrier = threading.Barrier(n, timeout=10)
    real = run_mod.write_atomic

    def together(path, data, **kw):
        if path.parent.name == "records":
            barrier.wait()          # BrokenBarrierError if the writes were serialised
        real(path, data, **kw)

    monkeypatch.setattr(run_mod, "write_atomic", together)
    errors: list[BaseException] = []

    def add(r):
        try:
            rec.add(r)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=add, args=(r,)) for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and not barrier.broken
    rec.close()
    names = sorted(p.name for p in (tmp_path / "run" / "records").iterdir())
    assert len({nm.split("-")[0] for nm in names}) == n          # n distinct sequence numbers
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert sorted(d["id"] for d in doc["records"]) == sorted(r.id for r in recs)
    assert [Record.from_dict(d) for d in doc["records"]] == w.records
    assert {r.id for r in Run.open(tmp_path / "run").records} == {r.id for r in recs}


def test_run_writer_keeps_no_record_objects(tmp_path):
    """A station adds records for days: the writer keeps each record's index line and
    test case, not the Record (the soak's RSS grew with them); it reads them back."""
    import gc

    def live():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is Record)

    before = live()
    w = RunWriter(tmp_path / "run", station="s", index_interval_s=0)
    ids = []
    for i in range(5):
        r = make_record(i, run_id=w.run_id)
        ids.append(r.id)
        w.add(r)
    del r
    assert live() == before
    assert [r.id for r in w.records] == ids and len(w) == 5
    w.close()
    assert live() == before


def test_run_index_encodes_each_record_once(tmp_path, monkeypatch):
    """run.json is rewritten as records come: a rewrite must not encode every record
    again (a long run's rewrites grew with its records, in Python, under the GIL)."""
    w = RunWriter(tmp_path / "run", station="s", index_interval_s=0)
    calls = []
    real = Record.to_dict
    monkeypatch.setattr(Record, "to_dict", lambda self: calls.append(self.id) or real(self))
    recs = [make_record(i, run_id=w.run_id) for i in range(5)]
    for r in recs:
        w.add(r)
    w.close()
    # the record file and the index line: twice per record, however many rewrites
    # (one per add here, and the close); openhtf export at close is its own
    assert max(calls.count(r.id) for r in recs) <= 3
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [d["id"] for d in doc["records"]] == [r.id for r in recs]
    assert doc["status"] == "closed"


def _create_args(r: Record) -> dict:
    return dict(run_id=r.run_id, station=r.station, slot=r.slot, package=r.package,
                outcome=r.outcome, start_ns=r.start_ns, end_ns=r.end_ns,
                start_utc=r.start_utc, end_utc=r.end_utc, check=r.check, cause=r.cause,
                detail=r.detail)


def test_reopening_a_run_resumes_it(tmp_path):
    w = RunWriter(tmp_path / "run", station="s")
    w.add(make_record(1, run_id=w.run_id))
    w2 = RunWriter(tmp_path / "run")
    assert w2.run_id == w.run_id and len(w2.records) == 1
    w2.add(make_record(2, run_id=w.run_id))
    w2.close()
    assert len(Run.open(tmp_path / "run").records) == 2


def test_full_disk_leaves_no_half_record_and_the_run_says_so(tmp_path, monkeypatch):
    w = RunWriter(tmp_path / "run", station="s", index_interval_s=0)
    first = make_record(1, run_id=w.run_id)
    w.add(first)
    real = run_mod._write_all

    def half_then_enospc(fd, data):
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_mod, "_write_all", half_then_enospc)
    lost = make_record(2, run_id=w.run_id)
    with pytest.raises(RecordWriteError, match="no space left.*NOT written|NOT written.*no space"):
        w.add(lost)
    # Nothing half-written: neither under records/ nor as a temporary file.
    names = [p.name for p in (tmp_path / "run" / "records").iterdir()]
    assert len(names) == 1 and first.id in names[0]
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.setattr(run_mod, "_write_all", real)      # space is back
    w.add(make_record(3, run_id=w.run_id))
    w.close()
    run = Run.open(tmp_path / "run")
    assert len(run.records) == 2 and lost.id not in {r.id for r in run.records}
    assert run.meta["status"] == "incomplete"
    assert any(lost.id in p and "no space left" in p for p in run.meta["problems"])


def test_full_disk_on_a_real_small_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
            capture_output=True, env=tool_env()).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission); the "
                    "simulated ENOSPC test covers the logic")
    try:
        w = RunWriter(mnt / "run", station="s", index_interval_s=3600, openhtf=False)
        added, failed = [], None
        for i in range(200):
            r = make_record(i, run_id=w.run_id)
            try:
                w.add(r)
                added.append(r.id)
            except RecordWriteError as e:
                failed = (r.id, str(e))
                break
        assert failed is not None, "a 64 KiB tmpfs never filled"
        assert "no space left" in failed[1]
        assert not [p for p in (mnt / "run").rglob("*") if p.name.endswith(".tmp")]
        # Every record file present is complete and valid; the failed one is absent.
        run = Run.open(mnt / "run")
        assert [r.id for r in sorted(run.records, key=lambda r: added.index(r.id))] == added
        assert failed[0] not in {r.id for r in run.records}
    finally:
        subprocess.run(["umount", str(mnt)], check=True, env=tool_env())


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunDirError, match="not a directory"):
        Run.open(tmp_path / "nope")
    with pytest.raises(RunDirError, match="no run.json"):
        Run.open(tmp_path)
    (tmp_path / "run.json").write_text("{\"format\": \"something else\"}")
    with pytest.raises(RunDirError, match="not a fotabench run index"):
        Run.open(tmp_path)
    (tmp_path / "run.json").write_text("{\"format\": \"fotabench.run\", \"version\": 9}")
    with pytest.raises(NewerSchemaError, match="version 9"):
        Run.open(tmp_path)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@given(doc=st.dictionaries(st.sampled_from(["format", "version", "run_id", "records",
                                            "status"]), _json, max_size=5),
       fmt=st.booleans())
def test_damaged_run_index_raises_only_record_errors(tmp_path_factory, doc, fmt):
    d = tmp_path_factory.mktemp("damaged")
    if fmt:
        doc = {**doc, "format": "fotabench.run"}
    (d / "run.json").write_text(json.dumps(doc))
    try:
        Run.open(d)
    except RecordError:      # RunDirError, NewerSchemaError, TamperedRecordError included
        pass


def test_tampered_record_file_in_a_run_is_detected(tmp_path):
    write_run(tmp_path / "run", 3)
    f = sorted((tmp_path / "run" / "records").iterdir())[0]
    d = json.loads(f.read_text())
    d["outcome"], d["check"] = "fail", "download"
    os.chmod(f, 0o644)
    f.write_text(json.dumps(d))
    with pytest.raises(TamperedRecordError, match="changed after it was written"):
        Run.open(tmp_path / "run")


# --- JUnit ----------------------------------------------------------------------------

def test_junit_xml_is_read_by_junitparser_with_one_case_per_slot_and_attempt(tmp_path):
    junitparser = pytest.importorskip("junitparser")
    w = write_run(tmp_path / "run", 30)
    xml = junitparser.JUnitXml.fromfile(str(tmp_path / "run" / "junit.xml"))
    suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
    cases = [c for s in suites for c in s]
    assert len(cases) == len(w.records)
    by_id = {r.id: r for r in w.records}
    seen = set()
    for case in cases:
        # Test-case properties (as pytest's record_property writes them).
        props = {p.name: p.value for p in case.child(junitparser.Properties)}
        r = by_id[props["record_id"]]
        assert (r.slot, r.attempt) not in seen
        seen.add((r.slot, r.attempt))
        assert props["imei"] == (r.module.imei or "") and props["slot"] == r.slot
        assert props["package_md5"] == PACKAGE_MD5 and props["model"] == (r.module.model or "")
        kinds = [type(x).__name__ for x in case.result]
        if r.outcome == "pass":
            assert case.is_passed and kinds == []
        elif r.outcome == "fail":
            assert kinds == ["Failure"] and case.result[0].type == r.check
        else:
            assert kinds == ["Error"] and case.result[0].type == r.cause
    s = suites[0]
    assert s.tests == len(w.records)
    assert s.failures == sum(r.outcome == "fail" for r in w.records) > 0
    assert s.errors == sum(r.outcome == "error" for r in w.records) > 0


# --- OpenHTF --------------------------------------------------------------------------

def test_openhtf_export_has_the_test_record_layout(tmp_path):
    w = write_run(tmp_path / "run", 3)
    files = sorted((tmp_path / "run" / "openhtf").glob("*.json"))
    assert len(files) == 3
    # The keys TestRecord.as_base_types() writes (OpenHTF 1.6) and PhaseRecord's.
    top = {"dut_id", "station_id", "start_time_millis", "end_time_millis", "outcome",
           "outcome_details", "code_info", "metadata", "phases", "subtests", "branches",
           "diagnosers", "diagnoses", "log_records", "marginal"}
    phase_keys = {"name", "descriptor_id", "codeinfo", "measurements", "start_time_millis",
                  "end_time_millis", "attachments", "result", "outcome"}
    by_id = {r.id: r for r in w.records}
    for f in files:
        d = json.loads(f.read_text())
        r = by_id[d["metadata"]["fotabench_record_id"]]
        assert top <= set(d)
        assert d["outcome"] == {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}[r.outcome]
        assert d["dut_id"] == (r.module.imei or f"slot-{r.slot}")
        assert d["end_time_millis"] >= d["start_time_millis"] > 1.7e12
        assert d["metadata"]["test_name"] == "fotabench.upgrade"
        assert d["metadata"]["package_md5"] == r.package.md5
        for p in d["phases"]:
            assert phase_keys <= set(p)
            assert p["outcome"] in ("PASS", "FAIL", "SKIP", "ERROR")
            for name, m in p["measurements"].items():
                assert m["name"] == name and m["outcome"] in ("PASS", "FAIL", "UNSET")
        if r.outcome != "pass":
            name = r.check if r.outcome == "fail" else r.cause
            assert d["outcome_details"] == [{"code": name, "description": r.detail}]
            assert d["phases"][-1]["measurements"][name]["outcome"] == "FAIL"
        else:
            assert d["outcome_details"] == []
    fail = openhtf_record(make_record(3, outcome="fail"))
    download = next(p for p in fail["phases"] if p["name"] == "download")
    assert download["measurements"]["final_percent"]["measured_value"] == 0   # UPGRADFAILED(0)
    assert download["outcome"] == "FAIL"


def test_cli_start_up_does_not_import_the_records_layer():
    code = ("import sys; from fotabench.cli import main; main(['models']); "
            "bad = [m for m in ('jinja2', 'jsonschema', 'psycopg', 'sqlite3', "
            "'fotabench.records') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
