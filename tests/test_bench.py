"""fotabench.Bench: many virtual modules at once, each slot independent; cancelling and
Ctrl-C; every attempt recorded (record_from_result -> Recorder -> run directory and
database); `fotabench upgrade` and `fotabench demo` end to end, with bad input."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fotabench import Bench, EventBus
from fotabench.bench.config import SlotSpec, StationSpec, Timeouts, VirtualSpec
from fotabench.bench.dut import bundled_agent
from fotabench.bench.run import BenchError, SlotBusyError
from fotabench.records import Run, open_database, record_from_result, validate
from fotabench.sim import sim_binary
from tool_env import tool_env  # pgrep hangs under the ASan pass's LD_PRELOAD

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys"),
    pytest.mark.skipif(not sim_binary().exists(), reason="board program not built (make build)"),
]

FAST = Timeouts(boot=30, attach=30, command=10, download_inactivity=40,
                download_total=180, reboot=40)


@pytest.fixture(scope="module")
def v2():
    return bundled_agent("2.0.0", "M66")


def vslot(name, *faults, protocol=None, link="unlimited", model="M66", **kw):
    return SlotSpec(name, model=model, protocol=protocol,
                    virtual=VirtualSpec(boot_timing="fast", link_rate=link, faults=faults), **kw)


def station(*slots, name="t"):
    return StationSpec(name, tuple(slots), timeouts=FAST)


def board_pids():
    """Board programs (fotabench-sim) that are children of this process."""
    # Read /proc rather than run ps: under the ASan pass's LD_PRELOAD ps hangs.
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if comm.startswith("fotabench-sim") and ppid == os.getpid():
            found.append(f"{d.name} {ppid} {comm}")
    return found


def test_slots_at_once_each_independent_and_recorded(v2, tmp_path):
    """A pass, a server drop, a power cut and a slot whose port does not exist, all at
    once: each its own outcome, one record each, valid, with states, watchdog and
    transfers; the faults were scoped to their own slot (the server's records)."""
    events, seen = EventBus(), []
    events.subscribe(seen.append)
    st = station(vslot("ok"), vslot("drop", "drop:at=50%", protocol="ftp"),
                 vslot("cut", "power_cut:at=40%"),
                 SlotSpec("gone", port=str(tmp_path / "no-such-tty")))
    with Bench(st, events=events, out_dir=tmp_path, db=str(tmp_path / "r.sqlite")) as b:
        run = b.run(v2, progress=False)
        server_records = list(b.server.records)
    res = run.results
    assert (res["ok"].outcome, res["ok"].version_after) == ("pass", "2.0.0")
    assert (res["drop"].outcome, res["drop"].cause) == ("error", "server")
    assert (res["cut"].outcome, res["cut"].cause) == ("error", "power")
    assert (res["gone"].outcome, res["gone"].cause) == ("error", "port")
    assert "no-such-tty" in res["gone"].reason
    assert run.exit_code == 1 and not run.interrupted
    # the drop hit only its own slot's module path
    faulted = [r for r in server_records if r.faults]
    assert faulted and all(r.module == "drop" for r in faulted)
    assert any(r.module == "ok" and r.outcome == "complete" for r in server_records)
    # the power cut really happened: the bench's VBAT event
    assert [e["what"] for e in res["cut"].power_events].count("vbat_off") == 1
    # records: one per slot, schema-valid, what the result said
    runrec = Run.open(run.run_dir)
    by_slot = {r.slot: r for r in runrec.records}
    assert set(by_slot) == {"ok", "drop", "cut", "gone"}
    for r in runrec.records:
        validate(r.to_dict())
    ok = by_slot["ok"]
    assert ok.outcome == "pass" and ok.module.version_after == "2.0.0"
    assert ok.states[0].state == "UP_START" and ok.states[-1].state == "UP_SYSTEM_REBOOT"
    assert ok.watchdog is not None and ok.watchdog.edges > 2
    assert ok.transfers and ok.transfers[-1].outcome == "complete"
    assert re.fullmatch(r"\d{15}", ok.module.imei or "")
    uart = runrec.log_text(ok, "uart1")
    assert uart is not None and "+FBREADY" in uart
    assert by_slot["drop"].transfers[-1].faults
    assert by_slot["gone"].cause == "port"
    # junit and the database have them too
    assert (run.run_dir / "junit.xml").read_text().count("<testcase") == 4
    db = open_database(str(tmp_path / "r.sqlite"))
    try:
        assert len(db.records(run_id=runrec.run_id)) == 4
    finally:
        db.close()
    kinds = {e.kind for e in seen}
    assert {"phase", "state", "served", "watchdog", "outcome"} <= kinds
    assert not board_pids()


def test_record_from_result_maps_every_attempt(v2, tmp_path):
    """Retries: one record per attempt, numbered, max_attempts from the policy."""
    from fotabench import RetryPolicy
    st = station(vslot("r", "drop:at=50%,times=1"))
    with Bench(st, out_dir=tmp_path, db="none") as b:
        job = b.start_slot("r", v2, retry=RetryPolicy(attempts=2, delay=0.1))
        res = job.wait(120)
    assert res is not None and res.outcome == "pass" and len(res.attempts) == 2
    recs = sorted(Run.open(b.run_dir).records, key=lambda r: r.attempt)
    assert [(r.attempt, r.max_attempts, r.outcome) for r in recs] == [
        (1, 2, "error"), (2, 2, "pass")]
    assert recs[0].cause == "server" and recs[0].transfers[-1].faults
    # the same mapping by hand, outside a bench
    again = record_from_result(res, 1, run_id="x", station="s")
    assert again.outcome == "error" and again.logs == {}


def test_start_slot_busy_cancel_and_stop_on_failure(v2, tmp_path):
    st = station(vslot("slow", link=2000), vslot("bad", "corrupt:at=100"),
                 vslot("slow2", link=2000))
    downloading = threading.Event()
    events = EventBus()
    events.subscribe(lambda e: e.slot == "slow" and e.kind == "state" and downloading.set())
    with Bench(st, events=events, out_dir=tmp_path, db="none") as b:
        job = b.start_slot("slow", v2)
        with pytest.raises(SlotBusyError):
            b.start_slot("slow", v2)
        assert b.busy("slow") and "slow" not in b.idle_slots()
        assert downloading.wait(60), "the slow slot never started downloading"
        t = time.monotonic()
        job.cancel()
        res = job.wait(30)
        assert res is not None and time.monotonic() - t < 10
        assert (res.outcome, res.cause) == ("error", "cancelled")
        run = b.run(v2, slots=["bad", "slow2"], stop_on_failure=True, progress=False)
    assert run.results["bad"].outcome == "error"
    assert (run.results["slow2"].outcome, run.results["slow2"].cause) == ("error", "stopped")
    assert not board_pids()


def test_a_slot_upgraded_again_and_again_leaves_nothing_behind(v2, tmp_path):
    """A station runs for days on one Bench: upgrading a slot again must not keep the
    earlier upgrades alive (their Upgrade, Dut, timeline) nor let the shared server's
    request records grow. Counted objects, not timing."""
    import gc

    from fotabench.bench.upgrade import Upgrade, UpgradeResult
    from fotabench.timeline import Timeline

    def live(cls):
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is cls)

    counts = []
    with Bench(station(vslot("a")), out_dir=tmp_path, db="none") as b:
        for _ in range(4):
            res = b.start_slot("a", v2).wait(120)
            assert res is not None and res.ok, res
            del res
            counts.append((len(b.server.records), live(UpgradeResult), live(Upgrade),
                           live(Timeline)))
        # The server served each upgrade (a complete transfer) but keeps only the
        # last one's records; one result is kept (the slot's last), no Upgrade, no
        # timeline.
        assert all(c[0] >= 1 for c in counts), counts
        assert counts[-1] == counts[1], counts
        assert counts[-1][1:] == (1, 0, 0), counts


def test_bench_run_starts_every_slot_thread_before_any_slot_runs(tmp_path, v2, monkeypatch):
    """Bench.run starts all the slots' threads first, then lets them go: a slot busy
    starting its module must not delay the start of the next (64 slots queued for
    the GIL at each Thread.start)."""
    names = [f"s{i}" for i in range(8)]
    seen = []

    def run_slot(self, job):
        # what had been started when this slot began
        seen.append(sum(1 for n in names if n in self._jobs and self._jobs[n]._thread.ident))
        return self._error_result(job, "dut", "not run in this test", 0, 0.0)

    monkeypatch.setattr(Bench, "_run_slot", run_slot)
    with Bench(station(*(vslot(n) for n in names)), out_dir=tmp_path, db="none") as b:
        run = b.run(v2, progress=False)
    assert sorted(run.results) == names
    assert seen == [len(names)] * len(names)


def test_bench_forgets_server_records_only_of_ended_upgrades(tmp_path):
    """When a slot starts again, its earlier records and the module-less records
    (connection faults) from before every running slot started go; a running slot's
    stay. The policy itself, with records made here."""
    from fotabench.server import PackageServer
    from fotabench.server.records import RequestRecord

    class Running:
        def __init__(self, slot, started_ns):
            self.slot, self.started_ns = slot, started_ns

        def done(self):
            return False

    b = Bench(station(vslot("a"), vslot("b")), out_dir=tmp_path, db="none")
    b.server = PackageServer([], http=0, ftp=None).start()
    try:
        def rec(module, start, end):
            return RequestRecord("http", "127.0.0.1", 1, start, end, module=module)

        keep = [rec("b", 150, 160), rec(None, 150, 170), rec("c", 10, 20)]
        for r in [rec("a", 10, 20), rec("a", 30, 40), rec(None, 10, 90)] + keep:
            b.server.log.add(r)
        b._jobs["b"] = Running("b", 100)     # b runs since t=100
        b._forget_server_records("a")
        assert b.server.records == keep
    finally:
        b.server.stop()


def test_bench_errors(tmp_path, v2):
    with pytest.raises(BenchError, match="no slot 'x'"):
        Bench(station(vslot("a")), out_dir=tmp_path, db="none").start_slot("x", v2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        from dataclasses import replace
        st = replace(station(vslot("a")), server=replace(station(vslot("a")).server,
                                                         http_port=port))
        with pytest.raises(BenchError, match=f"cannot start the package server.*{port}"):
            Bench(st, out_dir=tmp_path, db="none").start()


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "fotabench", *map(str, args)],
                          capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)


def test_cli_upgrade_bad_input(tmp_path, v2):
    r = _cli("upgrade", v2, "--port", tmp_path / "nope", "--out", tmp_path, "--db", "none")
    assert r.returncode == 1
    assert re.search(r"fotabench: error: nope: port: .*cannot open .*nope", r.stderr), r.stderr
    assert "Traceback" not in r.stderr
    # a port another process holds: busy, said at once (not a module that never boots)
    import fcntl
    master, slave = os.openpty()
    try:
        fcntl.flock(slave, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t = time.monotonic()
        r = _cli("upgrade", v2, "--port", os.ttyname(slave), "--out", tmp_path, "--db", "none")
        assert r.returncode == 1 and time.monotonic() - t < 20
        assert re.search(r"port: .* is busy: another process holds it", r.stderr), r.stderr
    finally:
        os.close(slave)
        os.close(master)
    r = _cli("upgrade", tmp_path / "missing.bin", "--port", "/dev/null")
    assert r.returncode == 2 and "no such package" in r.stderr
    r = _cli("upgrade", v2)
    assert r.returncode == 2 and "--port PORT" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nstation: x\nslots:\n  - name: a\n    virtual: true\n    baud: 9\n")
    r = _cli("upgrade", v2, "--station", bad)
    assert r.returncode == 2 and "bad.yaml:6" in r.stderr
    r = _cli("upgrade", v2, "--port", "/dev/null", "--pwrkey", "3")
    assert r.returncode == 2 and "--gpio-chip" in r.stderr
    # a package for another model: an error result, said in one line
    st = tmp_path / "mc60.yaml"
    st.write_text("version: 1\nstation: x\nslots:\n  - name: a\n    model: MC60\n"
                  "    virtual: {boot_timing: fast}\n")
    from fotabench import Package
    pkg = Package.build(v2, tmp_path / "m66.pkg", model="M66")
    r = _cli("upgrade", pkg.path, "--station", st, "--out", tmp_path, "--db", "none",
             "--quiet")
    assert r.returncode == 1
    assert re.search(r"error: a: package: .*package for M66.*MC60", r.stderr), r.stderr
    assert not board_pids()


def test_cli_upgrade_ctrl_c_mid_run(tmp_path, v2):
    """SIGINT to `fotabench upgrade --station` during a 4-slot run: exit 130, a summary,
    a record per slot (finished ones as they ended, the rest "interrupted"), power as
    the station says, no board program left."""
    st = tmp_path / "st.yaml"
    slots = "".join(f"  - name: s{i}\n    virtual: {{boot_timing: fast, link_rate: 2kbit}}\n"
                    for i in range(3))
    slots += "  - name: quick\n    virtual: {boot_timing: fast, link_rate: unlimited}\n"
    slots += "    power_after: off\n"
    st.write_text(f"version: 1\nstation: cc\nslots:\n{slots}")
    p = subprocess.Popen([sys.executable, "-m", "fotabench", "upgrade", str(v2), "--station",
                          str(st), "--out", str(tmp_path), "--db", "none"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        # wait until the quick slot passed and the slow ones download
        deadline = time.monotonic() + 120
        rundirs: list[Path] = []
        while time.monotonic() < deadline:
            rundirs = list(tmp_path.glob("*-cc-*"))
            if rundirs and any("quick" in f.read_text() for f in
                               (rundirs[0] / "records").glob("*.json")):
                break
            time.sleep(0.3)
        assert rundirs, "no run directory"
        time.sleep(1.0)
        children = subprocess.run(["pgrep", "-g", str(os.getpgid(p.pid))],
                                  capture_output=True, text=True, env=tool_env()).stdout.split()
        assert len(children) >= 4      # fotabench and its board programs
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "interrupted" in err and "station cc (interrupted)" in err
    recs = {r.slot: r for r in Run.open(rundirs[0]).records}
    assert set(recs) == {"s0", "s1", "s2", "quick"}
    assert recs["quick"].outcome == "pass"
    for s in ("s0", "s1", "s2"):
        assert (recs[s].outcome, recs[s].cause) == ("error", "interrupted")
    meta = json.loads((rundirs[0] / "run.json").read_text())
    assert meta["status"] == "closed"
    # The board programs end on their own once their owner has gone (slower under ASan):
    # wait for the session to empty, with a bound.
    deadline = time.monotonic() + 20
    while (left := subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True,
                                  text=True, env=tool_env()).stdout) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == "", "a process of the run was left"


def test_demo_fast_faults_end_to_end(tmp_path):
    r = _cli("demo", "--fast", "--modules", "4", "--faults", "--out", tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    got = re.findall(r"^  (s\d)\s+(\S+)\s+(\S+)\s+(\S+)\s+expected (.+?)\s+got (.+?)\s+(ok|WRONG)$",
                     r.stderr, re.M)
    assert [g[0] for g in got] == ["s1", "s2", "s3", "s4"]
    assert all(g[-1] == "ok" for g in got)
    assert [g[3] for g in got] == ["-", "corrupt", "stall", "drop"]
    assert "every slot got its expected outcome" in r.stdout
    run_dir = Path(re.search(r"run directory: (\S+)", r.stdout).group(1))
    assert (run_dir / "report.html").stat().st_size > 1000
    assert len(Run.open(run_dir).records) == 4


def test_eol_loop_reads_scans_from_stdin(tmp_path):
    """Three scans piped in: two serial numbers pass, an IMEI that is not the module's
    is a FAIL; an empty line ends the shift; the codes are in run.json. The FAIL the
    operator saw is the record's: fail wrong_module naming both IMEIs, in the record,
    the database row, junit.xml and the report, and that module was not upgraded."""
    scanned = "123456789012347"
    db_path = tmp_path / "results.sqlite"
    r = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent /
                                            "bench" / "eol_upgrade.py"),
                        "--virtual", "2", "--fast", "--out", str(tmp_path), "--db",
                        str(db_path)],
                       input=f"SN-0001\nSN-0002\n{scanned}\n\n", capture_output=True,
                       text=True, timeout=300, env={**os.environ, "COLUMNS": "160"})
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert out.count("PASS") >= 2 and "FAIL" in out
    assert f"fail [wrong_module]: wrong module: scanned IMEI {scanned}" in out
    assert re.search(r"says \d{15}", out)          # the module's IMEI, shown whole
    assert "3 modules: 2 PASS, 1 FAIL" in out
    run_dir = next(tmp_path.glob("*-eol-*"))
    meta = json.loads((run_dir / "run.json").read_text())
    assert [s["serial"] for s in meta["serials"]] == ["SN-0001", "SN-0002", scanned]
    assert [s["slot"] for s in meta["serials"]] == ["v1", "v2", "v1"]
    assert [s["outcome"] for s in meta["serials"]] == ["pass", "pass", "fail"]
    records = Run.open(run_dir).records
    assert len(records) == 3
    assert [x.outcome for x in records] == ["pass", "pass", "fail"]
    wrong = records[-1]
    module_imei = wrong.module.imei
    assert module_imei and module_imei != scanned
    assert (wrong.slot, wrong.check, wrong.cause) == ("v1", "wrong_module", None)
    assert scanned in wrong.detail and module_imei in wrong.detail, wrong.detail
    validate(wrong.to_dict())
    # Judged before the upgrade: nothing was served to that module, it kept its version.
    assert not wrong.transfers and not wrong.states and wrong.module.version_after is None
    db = open_database(str(db_path))
    try:
        rows = db.find(run_id=wrong.run_id, outcome="fail")
    finally:
        db.close()
    assert len(rows) == 1 and rows[0]["slot"] == "v1" and rows[0]["imei"] == module_imei
    assert scanned in rows[0]["reason"] and "wrong_module" in rows[0]["reason"], rows[0]
    junit = (run_dir / "junit.xml").read_text()
    assert junit.count("<failure") == 1 and 'type="wrong_module"' in junit
    failure = junit[junit.index("<failure"):junit.index("</failure>")]
    assert scanned in failure and module_imei in failure, failure
    rep = _cli("report", run_dir)                   # the run's report, as an engineer makes it
    assert rep.returncode == 0, rep.stdout + rep.stderr
    report = (run_dir / "report.html").read_text()
    assert "wrong_module" in report and scanned in report and module_imei in report
