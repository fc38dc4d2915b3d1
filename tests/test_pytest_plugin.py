"""The pytest plugin (fotabench.pytest_plugin), run the way users run it: inner pytest
sessions through ``pytester``. Upgrades that pass and fail on virtual modules, faults from
markers (with the server's and the module's evidence), slots shared out to xdist workers
(never two at once: from the records' times), a slot lock a SIGKILLed holder does not
leave behind, bad options and station files (a usage error, not a traceback), and what a
failed upgrade shows.

The virtual runs use fast boot timing and an unlimited link, and are few: each inner
session is a separate process that starts its own virtual modules."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fotabench.pytest_plugin import SlotBusyError, SlotLock
from fotabench.sim import sim_binary

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent
needs_board = pytest.mark.skipif(not sim_binary().exists(),
                                 reason="board program not built (make build)")


@pytest.fixture
def inner(pytester, tmp_path, monkeypatch):
    """An inner session's environment: no station from the caller's environment, its own
    slot locks, and the firmware of this checkout."""
    for var in ("FOTABENCH_STATION", "FOTABENCH_VIRTUAL", "FOTABENCH_SLOTS",
                "FOTABENCH_PROTOCOL", "FOTABENCH_OUT", "FOTABENCH_DB", "FOTABENCH_IMAGES",
                "FOTABENCH_VIRTUAL_TIMING", "FOTABENCH_LOCK_TIMEOUT", "FOTABENCH_DA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FOTABENCH_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("FOTABENCH_FIRMWARE", str(ROOT / "firmware"))
    return pytester


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if (p / "run.json").exists())


def records_of(out: Path) -> list[dict]:
    recs = []
    for d in run_dirs(out):
        for f in sorted((d / "records").glob("*.json")):
            recs.append(json.loads(f.read_text()))
    return recs


# ---- without a station: nothing changes --------------------------------------------------

def test_without_options_other_tests_run_and_dut_says_how_to_configure(inner):
    inner.makepyfile(test_x="""
        import pytest

        def test_plain():
            assert 1 + 1 == 2

        @pytest.mark.fb_protocol("ftp")
        @pytest.mark.fb_model("MC60")
        @pytest.mark.fb_fault("drop:at=50%")
        def test_marked_but_plain():
            pass

        def test_wants_a_module(dut):
            pass
    """)
    r = inner.runpytest("--strict-markers", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=2, errors=1)
    out = r.stdout.str()
    assert "no fotabench station configured: give --fb-virtual N" in out
    assert "--fb-station FILE" in out and "FOTABENCH_STATION" in out
    assert "Traceback" not in out and "fotabench.pytest_plugin" not in out.split("short test")[0]
    assert "= fotabench =" not in out           # no run directory, no summary section
    assert not (inner.path / "runs").exists()


def test_markers_and_options_are_documented(inner):
    r = inner.runpytest("--markers")
    out = r.stdout.str()
    for m in ("fb_protocol(name)", "fb_model(*models)", "fb_fault(*specs)",
              "fb_flash(*images, agent=None"):
        assert f"@pytest.mark.{m}" in out
    r = inner.runpytest("--help")
    out = r.stdout.str()
    for opt in ("--fb-station=FILE", "--fb-virtual=N", "--fb-slots=A,B", "--fb-protocol",
                "--fb-out=DIR", "--fb-db", "FOTABENCH_STATION", "--fb-da=FILE",
                "FOTABENCH_DA"):
        assert opt in out, opt


# ---- bad options and bad station files: a usage error, one line each ----------------------

@pytest.mark.parametrize("args, message", [
    (["--fb-virtual", "0"], "--fb-virtual 0: give 1 to 64 virtual modules"),
    (["--fb-virtual", "M66,M67"], "'M67' is neither"),
    (["--fb-virtual", "2", "--fb-station", "s.yaml"], "two different stations: give one"),
    (["--fb-virtual", "2", "--fb-protocol", "gopher"], "--fb-protocol 'gopher': expected "
                                                       "http or ftp"),
    (["--fb-virtual", "2", "--fb-slots", "v1,v9"], "no slot 'v9' in station 'virtual-2' "
                                                   "(its slots: v1, v2)"),
    (["--fb-slots", "v1"], "--fb-slots given, but no fotabench station configured"),
    (["--fb-virtual", "1", "--fb-virtual-timing", "slow"], "expected fast or real"),
    (["--fb-virtual", "1", "--fb-lock-timeout", "soon"], "expected seconds"),
    (["--fb-station", "missing.yaml"], "--fb-station missing.yaml: no such file"),
])
def test_bad_options_are_usage_errors(inner, args, message):
    inner.makepyfile(test_x="def test_x(dut): pass")
    r = inner.runpytest(*args)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    err = r.stderr.str()
    assert message in err, err
    assert "Traceback" not in err + r.stdout.str()


def test_environment_twin_is_read_and_checked(inner, monkeypatch):
    monkeypatch.setenv("FOTABENCH_VIRTUAL", "nonsense")
    inner.makepyfile(test_x="def test_x(): pass")
    r = inner.runpytest()
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert "--fb-virtual 'nonsense'" in r.stderr.str()
    # a variable meant for the fotabench command does not break an unrelated run
    monkeypatch.delenv("FOTABENCH_VIRTUAL")
    monkeypatch.setenv("FOTABENCH_DB", str(inner.path / "x.sqlite"))
    inner.runpytest().assert_outcomes(passed=1)


def test_bad_station_file_lists_every_mistake_without_a_traceback(inner):
    bad = inner.path / "station.yaml"
    bad.write_text(textwrap.dedent("""\
        version: 1
        station: line-3
        slots:
          - name: a1
            model: M67
            virtual: {boot_timing: fast}
          - name: a1
            virtual: {faults: ["drp:at=5"]}
    """))
    inner.makepyfile(test_x="def test_x(dut): pass")
    r = inner.runpytest("--fb-station", str(bad))
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    err = r.stderr.str()
    assert f"--fb-station {bad}: bad station file" in err
    assert f"{bad}:5: slots[0].model: expected one of M66" in err
    assert f"{bad}:7: slots[1].name: duplicate slot name 'a1'" in err
    assert "did you mean 'drop'?" in err
    assert "Traceback" not in err + r.stdout.str()


# ---- the slot lock --------------------------------------------------------------------------

HOLDER = """
import sys, time
from fotabench.pytest_plugin import SlotLock
lock = SlotLock(sys.argv[1], "s1")
lock.acquire(who="holder test")
print("held", flush=True)
time.sleep(300)
"""


def test_slot_lock_names_its_holder_and_a_killed_holder_leaves_it_free(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        lock = SlotLock(tmp_path, "s1")
        with pytest.raises(SlotBusyError, match=rf"slot s1 is still held after 0.2 s by "
                                                rf"pid {p.pid} on .*: holder test"):
            lock.acquire(0.2)
        assert not lock.held
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
        # the kernel dropped the dead holder's flock: free at once
        waited = lock.acquire(30, who="after the kill")
        assert lock.held and waited < 30
        assert "after the kill" in lock.holder()
        lock.release()
        assert not lock.held
        with SlotLock(tmp_path, "s1"):    # and again, as a context manager
            pass
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---- upgrades on virtual modules ------------------------------------------------------------

PASS_AND_FAIL = """
    import pytest

    def test_pass(dut, upgrade, agent_image, station):
        r = upgrade(dut, agent_image("2.0.0"), expect_version="2.0.0")
        r.assert_pass()
        assert station.run_dir.is_dir()

    def test_fail_same_version(dut, upgrade, agent_image):
        r = upgrade(dut, agent_image("1.0.0"))        # already running 1.0.0
        r.assert_pass()

    def test_fail_plain_assert(dut, upgrade, agent_image):
        r = upgrade(dut, agent_image("1.0.0"))
        assert r.ok

    @pytest.mark.fb_fault("drop:at=50%")
    def test_drop_marker(dut, upgrade, agent_image, virtual_module, package_server):
        r = upgrade(dut, agent_image("2.0.0"))
        assert (r.outcome, r.cause) == ("error", "server"), r.reason
        assert r.transfers[-1]["faults"] == ["drop"]     # the server's own record
        assert 0 < r.transfers[-1]["bytes_sent"] < r.transfers[-1]["size"]
        assert r.states[-1].state == "UP_UPGRADFAILED"   # the module saw it fail
        assert virtual_module.pid > 0
        assert len(package_server.faults) == 0           # taken back after the upgrade
"""


@needs_board
def test_passing_and_failing_upgrades_records_junit_and_failure_message(inner, tmp_path):
    inner.makepyfile(test_up=PASS_AND_FAIL)
    out = tmp_path / "out"
    junit = tmp_path / "junit.xml"
    r = inner.runpytest_subprocess("--fb-virtual", "1", "--fb-out", str(out),
                                   f"--junitxml={junit}", "-p", "no:cacheprovider",
                                   timeout=600)
    r.assert_outcomes(passed=2, failed=2)
    text = r.stdout.str()
    # the failure message of assert_pass(): the whole upgrade, not just "assert False"
    assert "UpgradeFailed: upgrade of slot v1 (M66, IMEI " in text
    assert "FAIL [version] after 1 attempt(s)" in text
    assert "reason: still running 1.0.0 after UP_SYSTEM_REBOOT and a reboot" in text
    assert "HTTP states follow the grammar (ending: success)" in text
    assert "grammar: HTTP (host is an IP literal):" in text
    assert "UP_GETTING_FILE 5..95 (multiples of 5, never decreasing)" in text
    assert "watchdog: longest WDI gap" in text and "2/3 of 1600 ms): ok" in text
    assert "transfers (the package server's record):" in text
    assert "+FBSTATE: UP_SYSTEM_REBOOT,100" in text       # the UART tail itself
    uart = [ln.split("UART log ", 1)[1].split(" (last")[0] for ln in text.splitlines()
            if ln.lstrip("E ").startswith("UART log ")]
    assert uart and all(Path(u).is_file() for u in uart)
    # a plain `assert r.ok`: the same story in a section of the report
    assert "fotabench upgrade v1" in text
    # records: one per upgrade attempt in the run directory and in the database
    (run,) = run_dirs(out)
    recs = records_of(out)
    assert sorted(x["outcome"] for x in recs) == ["error", "fail", "fail", "pass"]
    assert {x["slot"] for x in recs} == {"v1"}
    assert all(len(x["module"]["imei"]) == 15 for x in recs)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "closed" and meta["station"] == "virtual-1"
    db = sqlite3.connect(out / "fotabench.sqlite")
    rows = db.execute("select outcome, slot, imei, package_md5 from records").fetchall()
    assert sorted(x[0] for x in rows) == ["error", "fail", "fail", "pass"]
    assert {x["id"] for x in recs} == {x[0] for x in db.execute("select id from records")}
    for rec in recs:   # the UART log the record names is in the run directory
        assert (run / rec["logs"]["uart1"]).is_file()
    assert f"run directory {run}" in text
    # JUnit (pytest's own): per-slot properties on every test case
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {"test_pass[v1]", "test_fail_same_version[v1]",
                          "test_fail_plain_assert[v1]", "test_drop_marker[v1]"}
    imeis = {x["module"]["imei"] for x in recs}
    md5 = {x["package"]["md5"] for x in recs if x["outcome"] == "pass"}
    for name, c in cases.items():
        props = {}
        for p in c.iter("property"):
            props.setdefault(p.get("name"), []).append(p.get("value"))
        assert props["slot"] == ["v1"], name
        assert props["imei"][0] in imeis and len(props["imei"]) == 1, name
        assert props["package_md5"], name
        assert props["record_id"][0] in {x["id"] for x in recs}
    pass_props = {p.get("name"): p.get("value") for p in cases["test_pass[v1]"].iter("property")}
    assert pass_props["package_md5"] in md5


STATION = """\
version: 1
station: mixed
timeouts: {attach: 3, boot: 20, download_inactivity: 30, reboot: 30}
slots:
  - name: m66
    model: M66
    virtual: {boot_timing: fast, link_rate: 2000kbit}
  - name: mc60
    model: MC60
    virtual: {boot_timing: fast, link_rate: unlimited}
"""


@needs_board
def test_station_file_model_marker_and_module_faults(inner, tmp_path):
    # A station file with an M66 and an MC60: a test for one model skips the other slot;
    # a power cut at 40 % is made by the bench (the failure shows where the states part
    # from the grammar); attach_fail goes to the virtual module's board.
    big = tmp_path / "big_v2.bin"
    # build_agent: make without the ASan pass's preload, SANITIZE=1 in that pass.
    from fotabench.bench.dut import build_agent
    build_agent("2.0.0", big, pad=200000, model="M66")
    station = inner.path / "mixed.yaml"
    station.write_text(STATION)
    inner.makepyfile(test_st=f"""
        import pytest

        @pytest.mark.fb_model("M66")
        @pytest.mark.fb_fault("power_cut:at=40%")
        def test_cut(dut, upgrade):
            upgrade(dut, {str(big)!r}).assert_pass()

        @pytest.mark.fb_model("MC60")
        @pytest.mark.fb_fault("attach_fail")
        def test_no_gprs(dut, upgrade, agent_image):
            r = upgrade(dut, agent_image("2.0.0"))
            assert (r.outcome, r.cause) == ("error", "attach"), r.reason
            assert "within 3 s" in r.reason          # the station file's timeouts
            assert r.transfers == () and r.states == ()
            assert r.model == "MC60"
    """)
    out = tmp_path / "out"
    r = inner.runpytest_subprocess("--fb-station", str(station), "--fb-out", str(out),
                                   "-rs", "-p", "no:cacheprovider", timeout=600)
    r.assert_outcomes(passed=1, failed=1, skipped=2)
    text = r.stdout.str()
    assert "slot mc60 holds an MC60; this test is for M66 (fb_model)" in text
    assert "slot m66 holds an M66; this test is for MC60 (fb_model)" in text
    assert "ERROR [power] after 1 attempt(s)" in text
    assert "<-- parts here" in text                      # the states stopped mid-way
    assert "the sequence stopped before UP_GETTING_FILE" in text
    assert "power moves by the bench: " in text and "vbat_off (cut)" in text
    recs = records_of(out)
    cut = next(x for x in recs if x["slot"] == "m66")
    assert cut["cause"] == "power" and cut["power"][-1]["event"] == "vbat_off"
    assert max(s["percent"] for s in cut["states"]) < 100
    assert next(x for x in recs if x["slot"] == "mc60")["cause"] == "attach"
    assert {x["station"] for x in recs} == {"mixed"}


@needs_board
def test_xdist_two_workers_never_hold_one_slot_at_once(inner, tmp_path):
    # --dist each: both workers run the test on every slot, both starting on v1, so
    # they contend for each slot; the lock makes them take turns.
    inner.makepyfile(test_x="""
        def test_upgrade(dut, upgrade, agent_image):
            upgrade(dut, agent_image("2.0.0"), expect_version="2.0.0").assert_pass()
    """)
    out = tmp_path / "out"
    junit = tmp_path / "junit.xml"
    r = inner.runpytest_subprocess("-n", "2", "--dist", "each", "--fb-virtual", "4",
                                   "--fb-out", str(out), f"--junitxml={junit}",
                                   "-p", "no:cacheprovider", timeout=900)
    r.assert_outcomes(passed=8)
    # they did contend: a worker waited for a slot the other held
    waits = [float(p.get("value")) for p in ET.parse(junit).getroot().iter("property")
             if p.get("name") == "slot_wait_s"]
    assert waits and max(waits) >= 0.5
    runs = run_dirs(out)
    assert [p.name.rsplit("-", 1)[1] for p in runs] == ["gw0", "gw1"]
    recs = records_of(out)
    assert len(recs) == 8 and all(x["outcome"] == "pass" for x in recs)
    by_slot: dict[str, list[tuple[int, int]]] = {}
    for x in recs:
        by_slot.setdefault(x["slot"], []).append((x["start_ns"], x["end_ns"]))
    assert sorted(by_slot) == ["v1", "v2", "v3", "v4"]
    for slot, spans in by_slot.items():
        assert len(spans) == 2, slot        # one per worker
        (a0, a1), (b0, b1) = sorted(spans)
        # one monotonic clock for every process on the machine: comparable
        assert a1 <= b0, f"slot {slot} upgraded by both workers at once: {spans}"
    # both sessions' records are one station's, in the one database
    db = sqlite3.connect(out / "fotabench.sqlite")
    assert db.execute("select count(*) from records").fetchone()[0] == 8


@needs_board
def test_the_example_runs_on_a_virtual_station(inner, tmp_path):
    inner.makepyfile(test_example=(ROOT / "bench/test_station_example.py").read_text())
    out = tmp_path / "out"
    r = inner.runpytest_subprocess("--fb-virtual", "1", "--fb-out", str(out),
                                   "-p", "no:cacheprovider", timeout=600)
    r.assert_outcomes(passed=3)
    recs = records_of(out)
    assert [x["outcome"] for x in recs].count("pass") == 6
    assert [x["cause"] for x in recs if x["outcome"] == "error"] == ["server"]


def test_the_example_collects_unchanged_on_a_real_station_and_says_what_is_missing(inner):
    # The same file against the real station file: one test per real slot, and on a
    # machine without that hardware each errors at set-up naming the port, no traceback.
    inner.makepyfile(test_example=(ROOT / "bench/test_station_example.py").read_text())
    real = ROOT / "bench/stations/real-4.yaml"
    r = inner.runpytest("--collect-only", "-q", "--fb-station", str(real))
    ids = [ln for ln in r.stdout.lines if "::" in ln]
    assert len(ids) == 12 and {i.rsplit("[", 1)[1] for i in ids} == {
        "s1]", "s2]", "s3]", "s4]"}
    r = inner.runpytest("--fb-station", str(real), "--fb-slots", "s1",
                        "--fb-out", str(inner.path / "out"),    # not the file's db:
                        "--fb-db", str(inner.path / "out" / "db.sqlite"),
                        "-p", "no:cacheprovider")
    r.assert_outcomes(errors=3)
    out = r.stdout.str()
    assert "slot s1: cannot open /dev/serial/by-id/" in out
    assert "Traceback" not in out


# ---- flashing before the test (fb_flash, flash) ------------------------------------------

@pytest.fixture
def da_file(tmp_path):
    """A SYNTHETIC download agent (tests/flash_helpers.py): never a MediaTek binary."""
    from flash_helpers import make_da_file
    part1 = bytes((i * 7 + 3) & 0xFF for i in range(0x718))
    part2 = bytes((i * 13 + 1) & 0xFF for i in range(20001))
    path = tmp_path / "SYNTHETIC_DA.bin"
    path.write_bytes(make_da_file([(0x6261, [(0x70007000, part1), (0x10020000, part2)]),
                                   (0x2503, [(0x70007000, part1), (0x10020000, part2)])]))
    return path


FACTORY = """\
version: 1
station: factory
timeouts: {boot: 20, attach: 3, download_inactivity: 30, reboot: 30}
slots:
  - name: b1
    model: M66
    virtual: {blank: true, boot_timing: fast, link_rate: unlimited}
  - name: c1
    model: MC60
    virtual: {boot_timing: fast, link_rate: unlimited}
"""


@needs_board
def test_fb_flash_flashes_a_blank_module_then_it_is_upgraded_and_failures_fail_setup(
        inner, tmp_path, da_file):
    from fotabench.bench.dut import bundled_agent
    from fotabench.records import validate
    mc60 = bundled_agent("1.0.0", "MC60")
    station = inner.path / "factory.yaml"
    station.write_text(FACTORY)
    inner.makepyfile(test_factory=f"""
        import pytest

        @pytest.mark.fb_model("M66")
        @pytest.mark.fb_flash(agent="1.0.0", verify=True)
        def test_blank_flashed_then_upgraded(dut, upgrade, agent_image, virtual_module):
            assert dut.version()[0] == "1.0.0"          # the image just flashed runs
            upgrade(dut, agent_image("2.0.0"), expect_version="2.0.0").assert_pass()

        @pytest.mark.fb_model("M66")
        @pytest.mark.fb_flash({str(mc60)!r})
        def test_image_for_another_model(dut):
            raise AssertionError("not reached: set-up fails")

        @pytest.mark.fb_model("M66")
        @pytest.mark.fb_fault("line_fault:mode=flip,first=1,count=100")
        @pytest.mark.fb_flash(agent="1.0.0")
        def test_line_keeps_flipping(dut):
            raise AssertionError("not reached: set-up fails")

        @pytest.mark.fb_model("MC60")
        def test_flash_mid_test(dut, flash):
            assert dut.version()[0] == "1.0.0"
            modem = dut.modem
            sf = flash(dut, agent="2.0.0")
            assert sf.ok and sf.result.chip == "MT2503" and sf.download_mode == "gpio"
            assert dut.modem is modem and dut.version()[0] == "2.0.0"   # the same port
    """)
    out = tmp_path / "out"
    junit = tmp_path / "junit.xml"
    r = inner.runpytest_subprocess("--fb-station", str(station), "--fb-da", str(da_file),
                                   "--fb-out", str(out), f"--junitxml={junit}",
                                   "-p", "no:cacheprovider", timeout=600)
    text = r.stdout.str()
    r.assert_outcomes(passed=2, errors=2, skipped=4)
    # A flash that did not pass fails the test's set-up, saying what the record says.
    assert "ERROR at setup of test_image_for_another_model[b1]" in text
    assert ("flash of slot b1 (M66) with agent_MC60_1.0.0.bin: ERROR [image_model]: "
            "no image for an M66") in text
    assert "ERROR at setup of test_line_keeps_flipping[b1]" in text
    assert "flash of slot b1 (M66) with agent_M66_1.0.0.bin: FAIL [checksum]: " in text
    assert "refused 4 times" in text and "Traceback" not in text
    (run,) = run_dirs(out)
    recs = records_of(out)
    flashes = [x for x in recs if x["kind"] == "flash"]
    for x in recs:
        validate(x)
    assert sorted((x["slot"], x["outcome"], x["check"] or x["cause"]) for x in flashes) == [
        ("b1", "error", "image_model"), ("b1", "fail", "checksum"), ("b1", "pass", None),
        ("c1", "pass", None)]
    ups = [x for x in recs if x["kind"] == "upgrade"]
    assert [(x["slot"], x["outcome"]) for x in ups] == [("b1", "pass")]
    good = next(x for x in flashes if x["slot"] == "b1" and x["outcome"] == "pass")
    assert good["schema_version"] == 2 and good["flash"]["verified"]
    assert good["flash"]["chip"] == "MT6261" and good["flash"]["download_mode"] == "gpio"
    assert [p["event"] for p in good["power"]][:3] == ["pwrkey_hold", "vbat_off", "vbat_on"]
    assert good["package"]["path"].endswith("agent_M66_1.0.0.bin")
    # flashed, then upgraded: one module, in that order
    assert good["end_ns"] <= ups[0]["start_ns"]
    # The flash is on the test's timeline and in its UART log, both in the run directory.
    # split("\n"), not splitlines(): rx data may hold U+0085 or U+2028, legal unescaped
    # in a JSON string, where splitlines() would cut an event in two.
    tl_text = (run / good["logs"]["timeline"]).read_text()
    tl = [json.loads(ln) for ln in tl_text.split("\n") if ln]
    kinds = [e["kind"] for e in tl if e["source"] == "flash:b1"]
    assert kinds[0] == "flash.start" and "flash.done" in kinds, kinds[:5]
    assert (run / good["logs"]["uart1"]).stat().st_size > good["package"]["size"]
    # ... and the upgrade's timeline (the same file, rewritten) still holds it
    up_tl = (run / ups[0]["logs"]["timeline"]).read_text()
    assert '"flash.done"' in up_tl and "UP_SYSTEM_REBOOT" in up_tl
    db = sqlite3.connect(out / "fotabench.sqlite")
    assert {x[0] for x in db.execute("select id from records")} == {x["id"] for x in recs}
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    props = {p.get("name"): p.get("value")
             for p in cases["test_blank_flashed_then_upgraded[b1]"].iter("property")}
    assert props["flash"] == "b1: pass" and props["flash_md5"] == good["package"]["md5"]
    mid = next(x for x in flashes if x["slot"] == "c1")
    assert mid["flash"]["chip"] == "MT2503" and mid["package"]["path"].endswith(
        "agent_MC60_2.0.0.bin")


@needs_board
def test_fb_flash_on_a_real_slot_is_not_repeated_until_the_app_may_have_changed(
        inner, tmp_path, da_file):
    # A "real" slot: a port and a gpio chip given by path, as on a real station; behind
    # them a board program this test starts, so the module keeps its flash from one test
    # to the next as a real one does (blank at first).
    import shutil
    from fotabench.bench.dut import bundled_agent
    from fotabench.sim import VirtualModule
    images = tmp_path / "images"
    images.mkdir()
    for v in ("1.0.0", "2.0.0"):
        shutil.copy(bundled_agent(v, "M66"), images / f"agent_M66_{v}.bin")
    vm = VirtualModule(None, tmp_path / "vm", power=False, model="M66", blank=True,
                       boot_timing="fast", link_rate="unlimited",
                       stderr=open(tmp_path / "board.log", "ab"))
    vm.start()
    try:
        station = inner.path / "bench.yaml"
        station.write_text(textwrap.dedent(f"""\
            version: 1
            station: bench
            power_after: off
            timeouts: {{boot: 20, attach: 3, download_inactivity: 30, reboot: 30}}
            slots:
              - name: r1
                model: M66
                port: {vm.uart1}
                gpio_chip: {vm.gpio}
                lines:
                  PWRKEY: {{line: PWRKEY, active_low: true}}
                  VBAT: VBAT
                  RESET: {{line: RESET, active_low: true}}
                  WDI: WDI
        """))
        inner.makepyfile(test_bench="""
            import pytest

            @pytest.mark.fb_flash(agent="1.0.0")
            def test_a_flashed(dut):
                assert dut.vm is None and dut.version()[0] == "1.0.0"

            @pytest.mark.fb_flash(agent="1.0.0")
            def test_b_already_on_it(dut):
                assert dut.version()[0] == "1.0.0"

            @pytest.mark.fb_flash(agent="1.0.0")
            def test_c_upgraded(dut, upgrade, agent_image):
                upgrade(dut, agent_image("2.0.0"), expect_version="2.0.0").assert_pass()

            @pytest.mark.fb_flash(agent="1.0.0")
            def test_d_flashed_again(dut):
                assert dut.version()[0] == "1.0.0"

            @pytest.mark.fb_flash(agent="1.0.0", force=True)
            def test_e_forced(dut):
                assert dut.version()[0] == "1.0.0"
        """)
        out = tmp_path / "out"
        junit = tmp_path / "junit.xml"
        r = inner.runpytest_subprocess("--fb-station", str(station), "--fb-da", str(da_file),
                                       "--fb-images", str(images), "--fb-out", str(out),
                                       f"--junitxml={junit}", "-p", "no:cacheprovider",
                                       timeout=600)
        r.assert_outcomes(passed=5)
        cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
                 for c in ET.parse(junit).getroot().iter("testcase")}
        flash = {n.split("[")[0]: p["flash"] for n, p in cases.items()}
        assert flash["test_a_flashed"] == "r1: pass"
        assert flash["test_b_already_on_it"].startswith(
            "r1: skipped: agent_M66_1.0.0.bin (md5 ")
        assert "test_bench.py::test_a_flashed[r1] (record " in flash["test_b_already_on_it"]
        assert flash["test_c_upgraded"].startswith("r1: skipped: ")
        assert flash["test_d_flashed_again"] == "r1: pass"      # the upgrade changed the app
        assert flash["test_e_forced"] == "r1: pass"
        recs = records_of(out)
        recs.sort(key=lambda x: x["start_ns"])
        assert [(x["kind"], x["outcome"]) for x in recs] == [
            ("flash", "pass"), ("upgrade", "pass"), ("flash", "pass"), ("flash", "pass")]
        assert f"(record {recs[0]['id']})" in flash["test_b_already_on_it"]
        # Through the slot's own port and lines; power_after: off at each test's end
        # (the plugin's teardown): the module is off now.
        assert all(x["flash"]["download_mode"] == "gpio" for x in recs if x["kind"] == "flash")
        assert vm.get_line("STATUS") == 0
        assert (tmp_path / "board.log").read_text().count("PWRKEY power-off pulse") >= 5
    finally:
        vm.stop()


@needs_board
def test_fb_flash_mistakes_error_at_setup_in_one_line(inner, tmp_path):
    inner.makepyfile(test_x="""
        import pytest

        @pytest.mark.fb_flash(agent="1.0.0")
        def test_no_agent_file(dut):
            pass

        @pytest.mark.fb_flash("nope.bin")
        def test_no_image(dut):
            pass

        @pytest.mark.fb_flash(agent="1.0.0", speed=1)
        def test_bad_argument(dut):
            pass
    """)
    r = inner.runpytest_subprocess("--fb-virtual", "1", "--fb-out", str(tmp_path / "out"),
                                   "-p", "no:cacheprovider", timeout=300)
    r.assert_outcomes(errors=3)
    text = r.stdout.str()
    assert ("fb_flash: no download agent given: fotabench needs MediaTek's DA for "
            "MT6261/MT2503, the file MTK_AllInOne_DA.bin") in text
    assert "pass it with --fb-da FILE (or set FOTABENCH_DA)" in text
    assert "fb_flash: no image 'nope.bin' (looked for " in text
    assert "fb_flash marker: unknown argument 'speed'" in text
    assert "Traceback" not in text
    assert not any(x["kind"] == "flash" for x in records_of(tmp_path / "out")) \
        if (tmp_path / "out").exists() else True


@needs_board
def test_fb_flash_unwired_slot_prompts_the_operator_on_the_terminal(inner, tmp_path, da_file):
    # A slot without GPIO wiring: the operator is told, past pytest's capture, to power
    # the module; nobody does here, so the handshake times out: an error, not a fail.
    station = inner.path / "op.yaml"
    station.write_text("version: 1\nstation: op\nslots:\n  - name: u1\n    model: M66\n"
                       "    virtual: {blank: true, boot_timing: fast, wired: false}\n")
    inner.makepyfile(test_op="""
        import pytest

        @pytest.mark.fb_flash(agent="1.0.0", handshake_timeout=1.5)
        def test_nobody_powers_it(dut):
            pass
    """)
    out = tmp_path / "out"
    r = inner.runpytest_subprocess("--fb-station", str(station), "--fb-da", str(da_file),
                                   "--fb-out", str(out), "-p", "no:cacheprovider",
                                   timeout=300)
    r.assert_outcomes(errors=1)
    err, text = r.stderr.str(), r.stdout.str()
    # on the terminal while the test runs, not in a captured section afterwards
    assert ("slot u1: power the module now with PWRKEY held low (download mode); "
            "waiting up to 1.5 s for its BootROM") in err, err
    assert "flash of slot u1 (M66) with agent_M66_1.0.0.bin: ERROR [no_handshake]: " in text
    assert "Captured stderr setup" not in text
    (rec,) = records_of(out)
    assert (rec["kind"], rec["outcome"], rec["cause"]) == ("flash", "error", "no_handshake")
    assert rec["flash"]["download_mode"] == "operator" and rec["power"] == []
