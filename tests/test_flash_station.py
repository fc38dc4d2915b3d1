"""Flashing the slots of a station at once (issue 15, the bench side):
fotabench.bench.flash.FlashStation and `fotabench flash --station`, against blank virtual
modules of both chip families, with a SYNTHETIC download agent (tests/flash_helpers.py).

Four slots of two families at once from a station file (one with a line that keeps
flipping bits: fail, the others pass), records valid with their flash section and JUnit,
a slot without wiring whose operator is prompted (the test powers the module after the
prompt), a slot never powered (error), Ctrl-C to the CLI mid-run (exit 130, finished
records kept, no process left)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from junitparser import JUnitXml

from fotabench.bench.events import EventBus
from fotabench.bench.flash import FlashStation, classify
from fotabench.bench.station import load_station
from fotabench.records import Run, validate
import fotabench

from flash_helpers import make_da_file
from vm_helpers import build_app

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys")


@pytest.fixture(scope="module")
def da_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("da")
    part1 = bytes((i * 7 + 3) & 0xFF for i in range(0x718))
    part2 = bytes((i * 13 + 1) & 0xFF for i in range(20001))
    path = d / "SYNTHETIC_DA.bin"
    path.write_bytes(make_da_file([(0x6261, [(0x70007000, part1), (0x10020000, part2)]),
                                   (0x2503, [(0x70007000, part1), (0x10020000, part2)])]))
    return path


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    d = tmp_path_factory.mktemp("fs_apps")
    return {"M66": build_app("1.0.0", d / "m66.bin"),
            "MC60": build_app("1.0.0", d / "mc60.bin", model="MC60"),
            "dir": d}


def station_file(path: Path, slots: str) -> Path:
    path.write_text("version: 1\nstation: flashline\nslots:\n" + slots)
    return path


def slot(name: str, model: str, *extra: str) -> str:
    opts = ", ".join(("blank: true", "boot_timing: fast") + extra)
    return f"  - {{name: {name}, model: {model}, virtual: {{{opts}}}}}\n"


def test_four_slots_two_families_at_once_one_line_fault(apps, da_file, tmp_path):
    st = station_file(tmp_path / "st.yaml",
                      slot("m1", "M66") + slot("m2", "M66") + slot("c1", "MC60")
                      + slot("c2", "MC60", 'faults: ["line_fault:mode=flip,first=1,count=100"]'))
    bus = EventBus()
    events = []
    bus.subscribe(events.append)
    fs = FlashStation(st, da=da_file, events=bus, out_dir=tmp_path / "run",
                      db=str(tmp_path / "fb.sqlite"), handshake_timeout=30)
    t0 = time.monotonic()
    run = fs.run([apps["M66"], apps["MC60"]], verify=True)
    took = time.monotonic() - t0
    res = run.results
    assert {s: r.outcome for s, r in res.items()} == {
        "m1": "pass", "m2": "pass", "c1": "pass", "c2": "fail"}, \
        {s: r.reason for s, r in res.items()}
    assert run.exit_code == 1 and not run.interrupted
    assert res["c2"].check == "checksum" and "refused 4 times" in res["c2"].detail
    for s, chip, model in (("m1", "MT6261", "M66"), ("m2", "MT6261", "M66"),
                           ("c1", "MT2503", "MC60")):
        r = res[s].result
        assert r is not None and (r.chip, r.model, r.verified) == (chip, model, True)
        assert res[s].download_mode == "gpio"
    # At once, not one after another: four sessions of this size take ~4 s each.
    starts = sorted(r.start_ns for r in res.values())
    assert (starts[-1] - starts[0]) / 1e9 < 2.0
    assert took < 4 * min((r.end_ns - r.start_ns) / 1e9 for r in res.values())
    # Each slot's phases on the bus, in order, and the write's percent to 100.
    for s in ("m1", "c1"):
        phases = [e.phase for e in events if e.slot == s and e.kind == "phase"]
        assert phases == ["download_mode", "handshake", "agent", "erase", "write", "verify",
                          "reset"], phases
        writes = [e.percent for e in events if e.slot == s and e.kind == "state"
                  and e.state == "write"]
        assert writes[-1] == 100 and writes == sorted(writes)
    outcomes = {e.slot: e.outcome for e in events if e.kind == "outcome"}
    assert outcomes == {"m1": "pass", "m2": "pass", "c1": "pass", "c2": "fail"}
    # Records: one per slot, valid (schema 2, kind flash), in the run and the database.
    done = Run.open(run.run_dir)
    recs = {r.slot: r for r in done.records}
    assert set(recs) == {"m1", "m2", "c1", "c2"}
    for r in recs.values():
        d = r.to_dict()
        validate(d)
        assert d["schema_version"] == 2 and d["kind"] == "flash"
        assert d["flash"]["download_mode"] == "gpio"
        assert [p["event"] for p in d["power"]][:3] == ["pwrkey_hold", "vbat_off", "vbat_on"]
        assert (run.run_dir / d["logs"]["uart1"]).stat().st_size > 0
        assert "module powered on" in (run.run_dir / d["logs"]["board"]).read_text()
    assert recs["c1"].flash["chip"] == "MT2503" and recs["c1"].flash["verified"]
    assert recs["c1"].package.path.endswith("mc60.bin")
    assert recs["m1"].flash["address"] == 0x102C7000 and recs["m1"].package.path.endswith("m66.bin")
    assert recs["c2"].outcome == "fail" and recs["c2"].check == "checksum"
    assert recs["c2"].flash["chip"] is None and "write" in [p["phase"] for p in
                                                             recs["c2"].flash["phases"]]
    from fotabench.records import open_database
    db = open_database(str(tmp_path / "fb.sqlite"))
    try:
        assert {r.id for r in db.records(run_id=done.run_id)} == {r.id for r in recs.values()}
    finally:
        db.close()
    suite = next(iter(JUnitXml.fromfile(str(run.run_dir / "junit.xml"))))
    cases = {c.name: c for c in suite}
    assert set(cases) == {f"flash {s} attempt 1" for s in ("m1", "m2", "c1", "c2")}
    assert cases["flash c2 attempt 1"].result[0].type == "checksum"
    assert not cases["flash m1 attempt 1"].result


def test_unwired_slot_prompts_the_operator_and_an_unpowered_one_is_an_error(apps, da_file,
                                                                          tmp_path):
    st = station_file(tmp_path / "st.yaml",
                      slot("op", "M66", "wired: false") + slot("off", "M66", "wired: false"))
    prompts: list[tuple[str, str, float]] = []
    fs: FlashStation

    def operator(slot_name: str, text: str) -> None:
        prompts.append((slot_name, text, time.monotonic()))
        if slot_name == "op":   # the operator powers this one, with PWRKEY held low
            vm = fs.duts[slot_name].vm
            threading.Timer(0.3, lambda: (vm.set_line("VBAT", 1),
                                          vm.set_line("PWRKEY", 0))).start()

    fs = FlashStation(load_station(st), da=da_file, out_dir=tmp_path / "run", db=False,
                      handshake_timeout=8, prompt=operator)
    run = fs.run(apps["M66"])
    assert {p[0] for p in prompts} == {"op", "off"}
    text = dict((p[0], p[1]) for p in prompts)["op"]
    assert "slot op: power the module now with PWRKEY held low" in text and "8 s" in text
    op, off = run.results["op"], run.results["off"]
    assert op.outcome == "pass" and op.download_mode == "operator", op.reason
    assert off.outcome == "error" and off.cause == "no_handshake"
    assert "no answer to the BootROM handshake" in off.detail
    recs = {r.slot: r for r in Run.open(run.run_dir).records}
    assert recs["op"].flash["download_mode"] == "operator" and recs["op"].power == ()
    assert recs["off"].outcome == "error" and recs["off"].cause == "no_handshake"
    assert run.exit_code == 1


def test_slot_without_its_image_or_its_port_is_an_error_before_it_is_touched(apps, da_file,
                                                                            tmp_path):
    st = station_file(tmp_path / "st.yaml", slot("c1", "MC60")
                      + f"  - {{name: r1, model: M66, port: {tmp_path}/no-such-tty}}\n")
    fs = FlashStation(st, da=da_file, out_dir=tmp_path / "run", db=False, handshake_timeout=5)
    run = fs.run(apps["M66"])
    r = run.results["c1"]
    assert (r.outcome, r.cause) == ("error", "image_model") and "MC60" in r.detail
    recs = {x.slot: x for x in Run.open(run.run_dir).records}
    rec = recs["c1"]
    assert rec.cause == "image_model" and rec.power == () and rec.flash["phases"] == []
    # A real slot whose port is not there: the station's error, said with the port.
    r = run.results["r1"]
    assert (r.outcome, r.cause) == ("error", "port") and "no-such-tty" in r.detail
    assert recs["r1"].cause == "port"


def test_power_after_off_is_applied_once_a_slot_is_flashed(apps, da_file, tmp_path):
    # Two wired slots: "off" is left with VBAT cut once its flash is over, "on" is left
    # running the image just written. The evidence is the module's own: its STATUS and
    # VBAT lines read from the board while the slot is still open, and the board's log.
    st = station_file(tmp_path / "st.yaml",
                      slot("off", "M66").replace("}}", "}, power_after: off}")
                      + slot("on", "M66"))
    assert load_station(st).slot("off").power_after == "off"
    bus = EventBus()
    seen: dict[str, dict] = {}
    fs: FlashStation

    def watch(ev):
        # Synchronous on the slot's thread: the slot is still open here.
        if ev.kind == "power" and "power_after" in (ev.detail or ""):
            vm = fs.duts[ev.slot].vm
            seen[ev.slot] = {"detail": ev.detail, "STATUS": vm.get_line("STATUS"),
                             "VBAT": vm.get_line("VBAT"),
                             "events": [e.what for e in fs.duts[ev.slot].power_events]}
        elif ev.kind == "outcome" and ev.slot == "on":
            # The flash is over (reset: booting the new app): it stays powered.
            vm = fs.duts["on"].vm
            deadline = time.monotonic() + 20
            while vm.get_line("STATUS") != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            seen["on"] = {"STATUS": vm.get_line("STATUS"), "VBAT": vm.get_line("VBAT"),
                          "events": [e.what for e in fs.duts["on"].power_events]}
    bus.subscribe(watch)
    fs = FlashStation(st, da=da_file, events=bus, out_dir=tmp_path / "run", db=False,
                      handshake_timeout=30)
    run = fs.run(apps["M66"])
    assert {s: r.outcome for s, r in run.results.items()} == {"off": "pass", "on": "pass"}, \
        {s: r.reason for s, r in run.results.items()}
    assert not bus.errors, bus.errors          # the watcher itself did not raise
    assert set(seen) == {"off", "on"}, seen
    off, on = seen["off"], seen["on"]
    assert off["detail"] == "off (power_after: off): VBAT cut"
    assert (off["STATUS"], off["VBAT"]) == (0, 0), off      # the module is off
    assert off["events"][-1] == "vbat_off" and off["events"][:3] == [
        "pwrkey_hold", "vbat_off", "vbat_on"]
    assert (on["STATUS"], on["VBAT"]) == (1, 1), on          # booted the new app, left on
    assert "vbat_off" not in on["events"][2:]
    logs = {s: (run.run_dir / "logs" / s / f"{s}.board.log").read_text() for s in ("off", "on")}
    # The board saw the cut after the flash's reset booted the new app, and "on" saw
    # none after it. (Not a count against the other slot: the board logs a cut only of
    # a running module, and whether a module had started before the first cut of the
    # download mode depends on timing.)
    assert logs["off"].rindex("VBAT cut") > logs["off"].rindex("module powered on")
    assert logs["on"].rfind("VBAT cut") < logs["on"].rindex("module powered on")


def test_classify_by_evidence():
    assert classify(fotabench.BenchTimeoutError("x"), False)[:2] == ("error", "no_handshake")
    assert classify(fotabench.BenchTimeoutError("x"), True)[:2] == ("fail", "no_answer")
    assert classify(fotabench.ModelError("x"), True)[:2] == ("fail", "chip_model")
    assert classify(KeyboardInterrupt(), True)[:2] == ("error", "interrupted")


def test_cli_station_bad_input_one_line(apps, da_file, tmp_path):
    st = station_file(tmp_path / "st.yaml", slot("m1", "M66"))
    base = [sys.executable, "-m", "fotabench", "flash", str(apps["M66"]), "--station", str(st),
            "--out", str(tmp_path / "run"), "--db", str(tmp_path / "fb.sqlite")]
    r = subprocess.run(base, capture_output=True, text=True,
                       env={**os.environ, "FOTABENCH_DA": ""}, timeout=60)
    assert r.returncode == 2 and "MTK_AllInOne_DA.bin" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = subprocess.run(base + ["--da", str(apps["M66"])], capture_output=True, text=True,
                       env=dict(os.environ), timeout=60)   # not an agent file
    assert r.returncode == 1 and "not a download agent file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(base + ["--da", str(da_file), "--slots", "zz"], capture_output=True,
                       text=True, env=dict(os.environ), timeout=60)
    assert r.returncode == 2 and "no slot 'zz'" in r.stderr and "m1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()   # refused before any slot was touched


def _descendants(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_cli_ctrl_c_mid_run_exit_130_records_kept_no_process_left(da_file, tmp_path):
    big = build_app("1.0.0", tmp_path / "big.bin", pad=160_000)   # ~15 s to write at 115200
    st = station_file(tmp_path / "st.yaml",
                      slot("bad", "M66", 'faults: ["line_fault:mode=flip,first=0,count=100"]')
                      + slot("w1", "M66") + slot("w2", "M66"))
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "fotabench", "flash", str(big), "--station",
                          str(st), "--da", str(da_file), "--baud", "115200", "--out", str(out),
                          "--db", str(tmp_path / "fb.sqlite"), "--handshake-timeout", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ))   # a fotabench child keeps ASan's preload
    lines: list[str] = []
    seen = threading.Event()

    def read():
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            if "bad" in line and "FAIL" in line:
                seen.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(120), "".join(lines)
        # The failed slot is finished; the others are still writing.
        assert not any("w1" in ln and ("PASS" in ln or "FAIL" in ln) for ln in lines), lines
        family = _descendants(p.pid)
        assert family, "the virtual modules run as children of the CLI"
        p.send_signal(signal.SIGINT)
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(10)
    stderr = p.stderr.read() if p.stderr else ""
    assert rc == 130, ("".join(lines), stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in family if _alive(pid)], "stray processes after Ctrl-C"
    recs = {r.slot: r for r in Run.open(out).records}
    assert set(recs) == {"bad", "w1", "w2"}, ("".join(lines), stderr[-3000:])
    assert (recs["bad"].outcome, recs["bad"].check) == ("fail", "checksum")
    for s in ("w1", "w2"):
        assert (recs[s].outcome, recs[s].cause) == ("error", "interrupted")
        assert "write" in [ph["phase"] for ph in recs[s].flash["phases"]]
    assert "interrupted" in "".join(lines)


def test_flash_record_is_schema_2_and_upgrade_records_stay_1():
    from fotabench.records import PackageRef, Record, RecordError
    common = dict(run_id="r1", station="st", slot="s1", outcome="pass", start_ns=1, end_ns=2,
                  start_utc="2026-11-30T06:00:00.000000Z",
                  end_utc="2026-11-30T06:00:01.000000Z",
                  package=PackageRef("APP.bin", 10, "0" * 32))
    flash = {"da": {"path": "DA.bin", "id": "x", "version": 4}, "baud": 921600,
             "verify": False, "chip": "MT6261", "hw_id": 0x35C0, "model": "M66",
             "address": 0x102C7000, "length": 10, "checksum": 5, "packets": 1, "resends": 0,
             "erase_units": 1, "data_bytes": 13, "line_rate_ppm": 990000, "verified": False,
             "download_mode": "gpio", "phases": [{"phase": "handshake", "t_ns": 1}],
             "phase_ns": {"total": 1}}
    r = Record.create(kind="flash", flash=flash, **common)
    d = r.to_dict()
    assert d["schema_version"] == 2 and d["flash"]["chip"] == "MT6261"
    assert Record.from_dict(d) == r and Record.from_dict(d).flash == flash
    up = Record.create(**common).to_dict()
    assert up["schema_version"] == 1 and "flash" not in up
    with pytest.raises(RecordError, match="flash"):
        Record.create(kind="flash", **common)             # a flash record needs its section
    with pytest.raises(RecordError):
        Record.create(flash=flash, **common)              # an upgrade record has none
    bad = dict(flash, line_rate_ppm=0.99)
    with pytest.raises(RecordError, match="float|integer"):
        Record.create(kind="flash", flash=bad, **common)


from hypothesis import given, strategies as hst  # noqa: E402

_LF_ATOMS = hst.sampled_from(["mode", "first", "count", "times", "=", ",", "flip", "drop",
                              "0", "3", "-1", "x", " ", "%", ":", "1e3", "99999999999"])


@given(hst.lists(_LF_ATOMS, max_size=12).map("".join))
def test_fuzz_line_fault_spec(rest):
    """A station file's line_fault spec: a clear ValueError, or the board's option."""
    import re
    from fotabench.bench.dut import board_fault_options
    from fotabench.bench.station import parse_fault
    spec = "line_fault:" + rest
    try:
        f = parse_fault(spec)
    except ValueError as e:
        assert "\n" not in str(e) and spec in str(e)
        return
    assert f.where == "module" and f.params["mode"] in ("flip", "drop")
    opt = board_fault_options((spec,))["line_fault"]
    assert re.fullmatch(r"(flip|drop):\d+:\d+", opt), opt
    assert 0 <= f.params["first"] <= 10**6 and 1 <= f.params.get("count", 1) <= 10**6
    assert opt == f"{f.params['mode']}:{f.params['first']}:{f.params.get('count', 1)}"
