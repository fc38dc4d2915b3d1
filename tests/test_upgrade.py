"""fotabench.Upgrade against virtual modules: passes over HTTP and FTP, and each fault
ending in the outcome docs/bench.md says (pass / fail / error), with the evidence that
the fault really happened (the server's record, the power events, the module's state)."""
from __future__ import annotations

import json
import os
import sys
import threading

import pytest

from fotabench import Dut, EventBus, Fault, Package, PackageServer, RetryPolicy, Upgrade
from fotabench.bench.config import SlotSpec, Timeouts, VirtualSpec
from fotabench.bench.dut import DutError
from fotabench.modem import Modem
from fotabench.sim import sim_binary
from vm_helpers import build_app

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys"),
    pytest.mark.skipif(not sim_binary().exists(), reason="board program not built (make build)"),
]

FAST = Timeouts(boot=20, attach=20, command=10, download_inactivity=30,
                download_total=120, reboot=30)


@pytest.fixture(scope="session")
def agents(tmp_path_factory):
    d = tmp_path_factory.mktemp("agents")
    v1 = build_app("1.0.0", d / "v1.bin")
    v2 = build_app("2.0.0", d / "v2.bin")
    big = build_app("2.0.0", d / "v2big.bin", pad=200_000)
    return {"v1": v1, "v2": v2, "v2big": big}


def luhn_ok(digits: str) -> bool:
    """The IMEI check digit (Luhn), written here from its definition."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class Events:
    """Collects every BenchEvent (the bus is what progress, records and plugin see)."""

    def __init__(self):
        self.bus = EventBus()
        self.all = []
        self.bus.subscribe(self.all.append)

    def kinds(self, kind):
        return [e for e in self.all if e.kind == kind]


def vdut(agents, name="dut1", **spec):
    spec.setdefault("boot_timing", "fast")
    spec.setdefault("link_rate", "unlimited")
    return Dut.from_slot(SlotSpec(name, virtual=VirtualSpec(app=str(agents["v1"]), **spec)))


@pytest.mark.parametrize("protocol", ["http", "ftp"])
def test_upgrade_passes(agents, protocol, tmp_path):
    ev = Events()
    with vdut(agents) as dut:
        r = Upgrade(dut, agents["v2"], protocol=protocol, timeouts=FAST, events=ev.bus,
                    expect_version="2.0.0", log_dir=tmp_path).run()
        assert dut.version()[0] == "2.0.0"     # the module itself says so
    assert r.outcome == "pass", r.reason
    assert (r.check, r.cause) == (None, None)
    assert (r.version_before, r.version_after) == ("1.0.0", "2.0.0")
    assert r.model == "M66" and r.imei == dut.vm.imei     # AT+CGMM, AT+GSN
    assert len(r.imei) == 15 and luhn_ok(r.imei)
    names = r.state_names
    assert names[0] == "UP_START" and names[-1] == "UP_SYSTEM_REBOOT"
    assert ("UP_GET_FILE_OK" in names) == (protocol == "ftp")
    assert "UP_CONNECTING" in names            # 127.0.0.1 is an IP literal
    assert r.grammar["ok"] and r.grammar["ending"] == "success"
    # the package was built from the app image and served whole to this module
    assert r.package_size > os.path.getsize(agents["v2"]) and len(r.package_md5) == 32
    assert [t["outcome"] for t in r.transfers] == ["complete"]
    assert r.transfers[0]["bytes_sent"] == r.package_size and r.transfers[0]["module"] == "dut1"
    assert r.url.startswith(f"{protocol}://127.0.0.1")
    # WDI was watched through download and reboot, and fed
    assert r.watchdog["ok"] and r.watchdog["edges"] >= 2
    assert r.watchdog["longest_gap_ns"] < r.watchdog["timeout_ns"] * 2 / 3
    # power: the module started off, the bench pressed PWRKEY after VBAT
    assert [e["what"] for e in r.power_events] == ["vbat_on", "pwrkey_on"]
    assert len(r.attempts) == 1 and r.end_ns > r.start_ns and r.started_utc.endswith("Z")
    assert r.attempts[0].started_utc[:16] == r.started_utc[:16] and r.attempts[0].url == r.url
    # the event stream: phases in order, the states, the outcome
    phases = [e.phase for e in ev.kinds("phase")]
    for a, b in zip(["power", "boot", "identify", "attach", "serve", "trigger", "download",
                     "reboot", "verify"], ["boot", "identify", "attach", "serve", "trigger",
                                           "download", "reboot", "verify", None]):
        assert a in phases and (b is None or phases.index(a) < phases.index(b))
    assert [(e.state, e.percent) for e in ev.kinds("state")] == \
        [(s.state, s.percent) for s in r.states]
    assert [e.outcome for e in ev.kinds("outcome")] == ["pass"]
    assert ev.kinds("served")[0].bytes_served == r.package_size
    assert ev.kinds("watchdog")[0].gap_ms == r.watchdog_gap_ms
    # a record: JSON as it is; a repr a person reads
    d = json.loads(json.dumps(r.to_dict()))
    assert d["outcome"] == "pass" and d["states"][0]["state"] == "UP_START"
    text = repr(r)
    assert text.startswith("<UpgradeResult PASS dut1 1.0.0 -> 2.0.0") and "watchdog gap" in text
    assert "SYSTEM_REBOOT" in text
    assert os.path.getsize(r.logs["timeline"]) > 0


def test_limited_link_shows_percentages(agents):
    ev = Events()
    with vdut(agents, link_rate=2_000_000) as dut:
        r = Upgrade(dut, agents["v2big"], timeouts=FAST, events=ev.bus).run()
    assert r.outcome == "pass", r.reason
    pcts = [s.percent for s in r.states if s.state == "UP_GETTING_FILE"]
    middle = [p for p in pcts if 0 < p < 100]
    assert len(middle) >= 10, pcts
    assert all(p % 5 == 0 for p in pcts) and pcts == sorted(pcts)
    assert [e.percent for e in ev.kinds("state") if e.state == "UP_GETTING_FILE"] == pcts
    assert r.transfers[0]["size"] > 200_000
    # the link really limited the download: >= 200 kB at 2 Mbit/s takes > 0.8 s (the
    # server's own record ends sooner: loopback socket buffers take the rest at once)
    got = [s.t_ns for s in r.states if s.state == "UP_GETTING_FILE"]
    assert got[-1] - got[0] > 0.8e9


def test_corrupted_package_fails_and_is_not_retried(agents, tmp_path):
    pkg = Package.build(agents["v2"], tmp_path / "bad.bin")
    data = bytearray(pkg.path.read_bytes())
    data[len(data) // 2] ^= 0xFF              # one byte of the app, inside the MD5
    pkg.path.write_bytes(bytes(data))
    assert not Package.inspect(pkg.path).ok
    with vdut(agents) as dut:
        r = Upgrade(dut, pkg.path, timeouts=FAST, events=EventBus(),
                    retry=RetryPolicy(attempts=3, delay=0)).run()
        assert dut.version()[0] == "1.0.0"     # the module kept its app
    assert r.outcome == "fail" and r.check == "upgrade_failed", r.reason
    assert "UP_UPGRADFAILED" in r.reason and "fails its own check" in r.reason
    assert r.states[-1].state == "UP_UPGRADFAILED" and r.grammar["ok"]
    assert r.package_ok is False
    # the module got every byte: this was the module's verdict, not a broken transfer
    assert [t["outcome"] for t in r.transfers] == ["complete"]
    assert len(r.attempts) == 1                # failures are never retried


@pytest.mark.parametrize("protocol", ["http", "ftp"])
def test_server_drop_is_an_error_and_the_retry_passes(agents, protocol):
    with vdut(agents) as dut, PackageServer(http=0 if protocol == "http" else None,
                                            ftp=0 if protocol == "ftp" else None) as srv:
        srv.add_fault(Fault.drop(at_percent=50, times=1))
        r = Upgrade(dut, agents["v2"], protocol=protocol, server=srv, timeouts=FAST,
                    events=EventBus(), retry=RetryPolicy(attempts=2, delay=0.1)).run()
        records = srv.records
    first, second = r.attempts
    assert first.outcome == "error" and first.cause == "server", first.reason
    assert "drop" in first.reason
    assert first.states[-1].state == "UP_UPGRADFAILED"
    # the fault really happened: the server's own record of attempt 1
    broken = [t for t in first.transfers if t["outcome"] == "fault_injected"]
    assert broken and broken[0]["faults"] == ["drop"]
    assert 0 < broken[0]["bytes_sent"] < broken[0]["size"]
    assert second.outcome == "pass" and r.outcome == "pass" and r.version_after == "2.0.0"
    assert [x.outcome for x in records].count("complete") == 1


def test_server_drop_every_time_exhausts_the_retries(agents):
    with vdut(agents) as dut, PackageServer(ftp=None) as srv:
        srv.add_fault(Fault.drop(at_percent=30))
        r = Upgrade(dut, agents["v2"], server=srv, timeouts=FAST, events=EventBus(),
                    retry=RetryPolicy(attempts=3, delay=0)).run()
    assert [a.outcome for a in r.attempts] == ["error"] * 3
    assert r.outcome == "error" and r.cause == "server"
    assert sum(1 for x in srv.records if x.outcome == "fault_injected") >= 3


def test_power_cut_mid_download_is_an_error_and_the_retry_powers_on(agents):
    ev = Events()
    cut = threading.Event()
    with vdut(agents, link_rate=1_000_000) as dut:
        def cut_at_40(e):
            if e.kind == "state" and (e.percent or 0) >= 40 and not cut.is_set():
                cut.set()
                dut.cut_power()
        ev.bus.subscribe(cut_at_40)
        r = Upgrade(dut, agents["v2big"], timeouts=FAST, events=ev.bus,
                    retry=RetryPolicy(attempts=2, delay=0.1)).run()
    first, second = r.attempts
    assert cut.is_set()
    assert first.outcome == "error" and first.cause == "power", first.reason
    assert "vbat_off" in first.reason
    assert max(s.percent for s in first.states) < 100    # cut mid-download
    assert [p["what"] for p in first.power_events][-1] == "vbat_off"
    # the second attempt found the module off and powered it on again
    assert [p["what"] for p in second.power_events] == ["vbat_on", "pwrkey_on"]
    assert second.outcome == "pass" and r.version_after == "2.0.0"
    assert [e.outcome for e in ev.kinds("outcome")] == ["error", "pass"]


def test_watchdog_gap_over_two_thirds_fails(agents):
    # The agent feeds WDI every 200 ms; judged against a 250 ms chip (limit 167 ms)
    # the same waveform is too slow: the watchdog check must say so.
    with vdut(agents) as dut:
        r = Upgrade(dut, agents["v2"], timeouts=FAST, events=EventBus(),
                    wdt_timeout=0.25).run()
    assert r.outcome == "fail" and r.check == "watchdog", r.reason
    assert "longest gap" in r.reason and not r.watchdog["ok"]
    assert r.watchdog["longest_gap_ns"] > 0.25e9 * 2 / 3
    assert r.version_after == "2.0.0"           # the module did upgrade; WDI was late


def test_same_version_is_a_version_failure(agents):
    with vdut(agents) as dut:
        r = Upgrade(dut, agents["v1"], timeouts=FAST, events=EventBus()).run()
    assert r.outcome == "fail" and r.check == "version", r.reason
    assert r.states[-1].state == "UP_SYSTEM_REBOOT" and r.version_after == "1.0.0"


def test_expected_imei_the_module_says_passes_another_fails_before_any_upgrade(agents):
    """expect_imei (a scanned label): the module's own passes; another is a fail
    wrong_module naming both, judged at identify: nothing served, version unchanged."""
    with vdut(agents) as dut:
        own = dut.vm.imei
        r = Upgrade(dut, agents["v2"], timeouts=FAST, events=EventBus(), expect_imei=own).run()
        assert r.outcome == "pass", r.reason
        other = "123456789012347"
        ev = Events()
        r = Upgrade(dut, agents["v1"], timeouts=FAST, events=ev.bus, expect_imei=other).run()
        assert dut.version()[0] == "2.0.0"          # the module was left as it was
    assert (r.outcome, r.check, r.cause) == ("fail", "wrong_module", None), r.reason
    assert r.reason == f"wrong module: scanned IMEI {other}, the module in slot dut1 says {own}"
    assert r.imei == own and r.transfers == () and r.states == () and r.version_after is None
    assert len(r.attempts) == 1                      # a fail is never retried
    phases = [e.phase for e in ev.kinds("phase")]
    assert "identify" in phases and "serve" not in phases and "trigger" not in phases


def test_boot_timeout_is_an_error(agents):
    module_side, bench_side = os.openpty()   # a port where nothing ever answers
    path = os.ttyname(bench_side)
    try:
        with Dut(Modem(path, name="mute"), name="mute") as dut:   # and no lines wired
            r = Upgrade(dut, agents["v2"], timeouts=Timeouts(boot=0.5),
                        events=EventBus()).run()
    finally:
        os.close(module_side)
        os.close(bench_side)
    assert r.outcome == "error" and r.cause == "boot_timeout", r.reason
    assert "0.5 s" in r.reason and r.states == () and r.transfers == ()
    assert [p for p, _ in r.attempts[0].phases] == ["package", "power", "boot"]


def test_missing_port_and_missing_file_say_so(agents, tmp_path):
    with pytest.raises(DutError, match="cannot open /dev/nonexistent-fb"):
        Dut.from_slot(SlotSpec("s1", port="/dev/nonexistent-fb"))
    with vdut(agents) as dut:
        with pytest.raises(FileNotFoundError, match="no such package"):
            Upgrade(dut, tmp_path / "nope.bin")
        with pytest.raises(ValueError, match="unknown kind 'drp'; did you mean 'drop'"):
            Upgrade(dut, agents["v2"], faults=["drp:at=5"])
        assert "virtual" in repr(dut) and "PWRKEY" in repr(dut)
        state = dut.vm.state
        assert dut.vm.running and state.is_dir()
    # closing released everything: the board process, the port, the lines, its state
    assert "closed" in repr(dut)
    assert not dut.vm.running and dut.modem.port.closed
    assert all(ln.released for ln in dut.lines.values()) and not state.exists()


def test_default_progress_goes_to_stderr(agents, capfd):
    # No bus given: the bench's progress display, plain lines when stderr is no terminal.
    with vdut(agents) as dut:
        r = Upgrade(dut, agents["v2"], timeouts=FAST).run()
    err = capfd.readouterr().err
    assert r.ok
    lines = [ln for ln in err.splitlines() if " dut1 " in ln]
    assert any(ln.endswith("phase download") for ln in lines), err
    assert any("UP_SYSTEM_REBOOT" in ln for ln in lines), err
    assert any("PASS" in ln and "1.0.0 -> 2.0.0" in ln for ln in lines), err
    assert any("model M66" in ln for ln in lines), err


def test_module_already_on_upgrades_without_power_moves(agents):
    # Two upgrades in a row on one Dut: the second finds the module running (no power
    # move) with the first run's lines behind it, and still judges only its own.
    with vdut(agents) as dut:
        first = Upgrade(dut, agents["v2"], timeouts=FAST, events=EventBus()).run()
        second = Upgrade(dut, agents["v1"], timeouts=FAST, events=EventBus(),
                         expect_version="1.0.0").run()
    assert first.ok and second.ok, (first.reason, second.reason)
    assert [p["what"] for p in first.power_events] == ["vbat_on", "pwrkey_on"]
    assert second.power_events == () and "boot" not in [p for p, _ in second.attempts[0].phases]
    assert (second.version_before, second.version_after) == ("2.0.0", "1.0.0")


def test_ftp_connection_refused_ends_with_a_reset_request(agents):
    # Five refused connections: the SDK sends no callback, only a reset request
    # (+FBRESETREQ); the server's records show it refused them: an error, not a fail.
    with vdut(agents, faults=("ftp-retry-ms=50",)) as dut, PackageServer(http=None) as srv:
        srv.add_fault(Fault(kind="refuse", protocol="ftp"))
        r = Upgrade(dut, agents["v2"], protocol="ftp", server=srv, timeouts=FAST,
                    events=EventBus()).run()
        refused = [x for x in srv.records if x.outcome == "fault_injected"]
    assert r.outcome == "error" and r.cause == "server", r.reason
    assert r.state_names == ["UP_START", "UP_CONNECTING"]
    assert r.grammar["ok"] and r.grammar["ending"] == "connection failed"
    assert len(refused) == 5 and "refuse" in r.reason


def test_url_given_is_fetched_as_is(agents, tmp_path):
    pkg = Package.build(agents["v2"], tmp_path / "fw.bin")
    with vdut(agents) as dut, PackageServer([pkg.path], ftp=None) as srv:
        url = srv.url_for(pkg.path, "http")
        r = Upgrade(dut, pkg.path, url=url, timeouts=FAST, events=EventBus()).run()
        assert [x.outcome for x in srv.records] == ["complete"]
    assert r.ok and r.url == str(url)
    assert r.transfers == ()           # not the Upgrade's server: no record of its own


def test_app_that_stops_feeding_wdi_mid_download_fails_the_watchdog_check(agents):
    # AT+FBWDT=0 at 10 %: the app's logic watchdog expires (2 s), WDI stops, the
    # external chip resets the module (1.6 s later) in the middle of the download.
    sent = threading.Event()
    ev = Events()
    with vdut(agents, link_rate=250_000) as dut:
        def stop_feeding(e):
            if e.kind == "state" and (e.percent or 0) >= 10 and not sent.is_set():
                sent.set()
                assert dut.modem.command("AT+FBWDT=0", 5).ok
        ev.bus.subscribe(stop_feeding)
        r = Upgrade(dut, agents["v2big"], timeouts=FAST, events=ev.bus).run()
        assert dut.version()[0] == "1.0.0"          # reset into the old app
    assert sent.is_set()
    assert r.outcome == "fail" and r.check == "watchdog", r.reason
    assert "rebooted in the middle of the download" in r.reason
    assert r.watchdog["over_timeout"] and r.watchdog["longest_gap_ns"] >= 1.6e9 * 0.9
    assert max(s.percent for s in r.states) < 100 and r.power_events[-1]["what"] == "pwrkey_on"


def test_slot_faults_from_the_station_file_are_injected(agents):
    # A virtual slot's faults as a station file writes them: the bench cuts VBAT at
    # 40 % of the first attempt (times=1 by default), the retry then passes.
    with vdut(agents, link_rate=1_000_000, faults=("power_cut:at=40%",)) as dut:
        r = Upgrade(dut, agents["v2big"], timeouts=FAST, events=EventBus(),
                    retry=RetryPolicy(attempts=2, delay=0.1)).run()
    first, second = r.attempts
    assert first.outcome == "error" and first.cause == "power", first.reason
    cut = [s.percent for s in first.states if s.state == "UP_GETTING_FILE"]
    assert 40 <= cut[-1] < 100
    assert second.outcome == "pass" and r.version_after == "2.0.0"
    assert [p["what"] for p in r.power_events].count("vbat_off") == 1


def test_slot_server_fault_is_scoped_to_the_module(agents):
    # corrupt:at=1000 on a shared server: this slot's download is corrupted (error
    # server: the record shows it), another module's download of the same file is not.
    with vdut(agents, faults=("corrupt:at=1000,count=8",)) as dut, \
            PackageServer(ftp=None) as srv:
        r = Upgrade(dut, agents["v2"], server=srv, timeouts=FAST, events=EventBus()).run()
        assert len(srv.faults) == 0        # a shared server: the Upgrade took its fault back
        name = r.url.rsplit("/", 1)[1]
        other = srv.url_for(name, "http", module="other")
        import urllib.request
        with urllib.request.urlopen(str(other), timeout=10) as resp:
            body = resp.read()
    assert r.outcome == "error" and r.cause == "server", r.reason
    assert r.transfers[0]["faults"] == ["corrupt"]
    assert r.states[-1].state == "UP_UPGRADFAILED"       # the module's MD5 check caught it
    assert len(body) == r.package_size
    assert [x.faults for x in srv.records if x.module == "other"] == [[]]


def test_another_model_and_a_package_for_the_wrong_model(tmp_path):
    # An MC60 slot: the board runs an MC60, the app image is packaged for the MC60;
    # an M66 package on that slot is refused by the bench before anything is sent.
    v1 = build_app("1.0.0", tmp_path / "mc60_v1.bin", model="MC60")
    v2 = build_app("2.0.0", tmp_path / "mc60_v2.bin", model="MC60")
    m66 = Package.build(build_app("2.0.0", tmp_path / "m66_v2.bin"), tmp_path / "m66.bin")
    slot = SlotSpec("mc1", model="MC60", protocol="ftp",
                    virtual=VirtualSpec(app=str(v1), boot_timing="fast", link_rate="unlimited"))
    with Dut.from_slot(slot) as dut:
        assert dut.vm.model == "MC60"
        wrong = Upgrade(dut, m66.path, timeouts=FAST, events=EventBus()).run()
        r = Upgrade(dut, v2, timeouts=FAST, events=EventBus()).run()
    assert wrong.outcome == "error" and wrong.cause == "package", wrong.reason
    assert "package for M66" in wrong.reason and "MC60" in wrong.reason
    assert wrong.transfers == () and wrong.states == ()
    assert r.outcome == "pass", r.reason
    assert r.protocol == "ftp" and r.model == "MC60"     # the slot's protocol and model
    assert (r.version_before, r.version_after) == ("1.0.0", "2.0.0")


def test_a_shared_server_serves_each_app_by_its_content(agents):
    # Apps are packaged on the fly under one name per process and attempt
    # (pkg_<pid>_1.bin): on a shared station server the second upgrade must get its own
    # package, not the first one's under the same name.
    with vdut(agents) as dut, PackageServer(ftp=None) as srv:
        up = Upgrade(dut, agents["v2"], server=srv, timeouts=FAST, events=EventBus(),
                     expect_version="2.0.0").run()
        down = Upgrade(dut, agents["v1"], server=srv, timeouts=FAST, events=EventBus(),
                       expect_version="1.0.0").run()
        served = srv.packages
    assert up.ok and down.ok, (up.reason, down.reason)
    assert up.url != down.url and up.package_md5 != down.package_md5
    assert len(served) == 2 and f"fw_{down.package_md5[:12]}.bin" in served


def test_slots_serving_one_package_at_once_on_a_shared_server_all_get_a_url(tmp_path):
    """A station's slots reach "serve" together and each serves the same package by
    name on the one server. Forced interleaving: every slot is inside add_package at
    once (a barrier), i.e. past any check made before it; none may be refused (the
    check-then-add this replaced ended a 64-slot run's slot as error "server": 'a
    package named ... is already served')."""
    from types import SimpleNamespace

    from fotabench.checksum import md5_file
    n = 4
    pkg = tmp_path / "agent_v2.pkg"
    pkg.write_bytes(os.urandom(5000))
    md5 = md5_file(pkg)

    def fake_dut(name):
        modem = SimpleNamespace(add_urc=lambda prefix: None,
                                port=SimpleNamespace(log_path=None))
        return SimpleNamespace(name=name, model="M66", timeline=None, modem=modem)

    ups = [Upgrade(fake_dut(f"s{i}"), pkg, events=EventBus()) for i in range(n)]
    for up in ups:
        up._pkg = {"path": pkg, "size": 5000, "md5": md5, "ok": True, "note": ""}
    with PackageServer([], ftp=None) as srv:
        gate = threading.Barrier(n, timeout=20)
        real = srv.add_package

        def add_package(*a, **kw):
            gate.wait()
            return real(*a, **kw)

        srv.add_package = add_package
        urls, errors = {}, []

        def serve(up):
            try:
                urls[up.dut.name] = up._served_url(srv)
            except BaseException as e:  # noqa: BLE001 - asserted below
                errors.append(e)

        threads = [threading.Thread(target=serve, args=(up,)) for up in ups]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and not gate.broken
        assert srv.packages == ["agent_v2.pkg"]
        assert sorted(urls) == [f"s{i}" for i in range(n)]
        assert all(u.endswith(f"/m/{name}/agent_v2.pkg") for name, u in urls.items())
