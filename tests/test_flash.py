"""Flashing over UART (issue 15): fotabench.Flasher and `fotabench flash` against the
virtual module's BootROM and download agent (firmware/sim/brom.c), with a SYNTHETIC agent
file written here from docs/flashing.md's layout (never a MediaTek binary).

A blank module is flashed with the bench agent and then upgraded over the air; both chip
families; faults: no handshake, a line that flips or drops bytes, a wrong model, a power
cut mid-flash (a second flash succeeds), Ctrl-C mid-flash."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import fotabench
from fotabench.flash import Flasher, da_inspect
from fotabench.sim import VirtualModule

from tool_env import tool_env
from flash_helpers import make_da_file, power_up_in_download_mode
from vm_helpers import PackageHttpServer, Uart, build_app, collect_states, wait_ready

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys")

FAST = dict(boot_timing="fast", link_rate="unlimited", latency_ms=0)


@pytest.fixture(scope="session")
def da_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("da")
    part1 = bytes((i * 7 + 3) & 0xFF for i in range(0x718))
    part2 = bytes((i * 13 + 1) & 0xFF for i in range(20000 + 1))  # odd: the XOR's last byte
    path = d / "SYNTHETIC_DA.bin"
    path.write_bytes(make_da_file([(0x6261, [(0x70007000, part1), (0x10020000, part2)]),
                                   (0x2503, [(0x70007000, part1), (0x10020000, part2)])]))
    return path


@pytest.fixture(scope="session")
def apps(tmp_path_factory):
    d = tmp_path_factory.mktemp("flash_apps")
    return {"M66": build_app("1.0.0", d / "m66_v1.bin"),
            "M66v2": build_app("2.0.0", d / "m66_v2.bin"),
            "MC60": build_app("1.0.0", d / "mc60_v1.bin", model="MC60"),
            "dir": d}


@pytest.fixture
def state_dir():
    d = tempfile.mkdtemp(prefix="fbfl")
    yield Path(d)
    subprocess.run(["rm", "-rf", d])


def blank_module(state, **opts):
    options = dict(FAST, blank=True, power=False)
    options.update(opts)
    return VirtualModule(None, state, **options)


def debug_lines(uart2: Uart, seconds: float = 0.3) -> list[str]:
    uart2.quiet(seconds)
    return [line for _, line in uart2.history]


def test_blank_module_flashed_then_upgraded_over_the_air(apps, da_file, state_dir):
    http = PackageHttpServer()
    pkg = apps["dir"] / "m66_v2_pkg.bin"
    fotabench.Package.build(apps["M66v2"], pkg)
    http.files["/v2.bin"] = pkg.read_bytes()
    timeline = fotabench.Timeline()
    image = apps["M66"].read_bytes()
    progress: list[tuple[str, int, int]] = []
    try:
        with blank_module(state_dir) as vm, Uart(vm.uart1) as u, Uart(vm.uart2) as dbg:
            assert not (state_dir / "app.bin").exists()
            with Flasher(vm.uart1, da=da_file, timeline=timeline, handshake_timeout=20) as f:
                t = power_up_in_download_mode(vm)
                r = f.flash(apps["M66"], verify=True,
                            progress=lambda *a: progress.append(a))
                t.join()
            assert (r.chip, r.model, r.address, r.length) == ("MT6261", "M66", 0x102C7000,
                                                             len(image))
            assert r.verified and r.resends == 0 and r.baud == 921600
            for fld in dataclasses.fields(r):  # the C values fit the C table's types
                assert type(getattr(r, fld.name)) is fld.type, fld.name
            assert r.packets == (len(image) + 4095) // 4096
            # What the module's flash holds is the image, byte for byte.
            assert (state_dir / "app.bin").read_bytes() == image
            # After the agent's reset the module boots what was written.
            u.expect("^RDY$", 10)
            wait_ready(u, "1.0.0", timeout=20)
            lines = debug_lines(dbg)
            assert any("BROM: handshake, download mode (MT6261)" in l for l in lines), lines
            assert any("BROM: watchdog off" in l for l in lines)
            assert sum("BROM: agent part" in l for l in lines) == 2
            assert any("DA: UART at 921600 baud" in l for l in lines)
            assert any("DA: reset by the watchdog" in l for l in lines)
            # ... and then upgrades over the air like any module.
            assert u.command(f'AT+FBUPG="http://127.0.0.1:{http.port}/v2.bin"') == ["OK"]
            states = collect_states(u, timeout=30)
            assert states[-1] == ("UP_SYSTEM_REBOOT", 100), states
            u.expect("^RDY$", 10)
            wait_ready(u, "2.0.0", timeout=20)
    finally:
        http.close()
    # Progress and timeline: every phase, every erase unit, the write to its end.
    phases = [e.data["phase"] for e in timeline.events(kind="flash.phase")]
    assert phases == ["handshake", "identify", "agent", "speed", "erase", "write", "verify",
                      "finish"]
    assert [e.data for e in timeline.events(kind="flash.chip")][0]["chip"] == "MT6261"
    erase = [p for p in progress if p[0] == "erase"]
    assert erase[-1][1] == erase[-1][2] == len(erase) == (len(image) + 4095) // 4096
    assert [p for p in progress if p[0] == "write"][-1][1:] == (len(image), len(image))
    assert len(timeline.events(kind="flash.done")) == 1


def test_mt2503_module_and_a_wrong_model(apps, da_file, state_dir):
    with blank_module(state_dir, model="MC60") as vm, Uart(vm.uart1) as u:
        with Flasher(vm.uart1, da=da_file, handshake_timeout=20) as f:
            t = power_up_in_download_mode(vm)
            with pytest.raises(fotabench.ModelError) as e:
                f.flash(apps["M66"])  # an M66 image for an MT2503 module
            t.join()
            assert "M66" in e.value.message and "MT2503" in e.value.message
            assert not (state_dir / "app.bin").exists()  # nothing was written
            vm.cut_power()
            vm.set_line("PWRKEY", 1)

            def station_power_up():  # what a station with GPIO wiring does
                vm.set_line("VBAT", 1)
                vm.set_line("PWRKEY", 0)
            r = f.flash(apps["MC60"], baud=460800, power_up=station_power_up)
        assert (r.chip, r.model, r.baud, r.address) == ("MT2503", "MC60", 460800, 0x102DB000)
        wait_ready(u, "1.0.0", timeout=20)
        assert any("MC60" in l for l in u.command("ATI"))


def test_no_handshake_answer_says_what_to_do(da_file, state_dir, apps):
    with blank_module(state_dir) as vm:  # never powered
        with Flasher(vm.uart1, da=da_file, handshake_timeout=0.6) as f:
            t0 = time.monotonic()
            with pytest.raises(fotabench.BenchTimeoutError) as e:
                f.flash(apps["M66"])
            assert time.monotonic() - t0 < 5
    assert "no answer to the BootROM handshake" in e.value.message
    assert "power the module with PWRKEY held low" in e.value.message


@pytest.mark.parametrize("fault,resends", [("flip:3:2", 2), ("drop:2:1", 1)])
def test_line_fault_mid_transfer_is_resent(apps, da_file, state_dir, fault, resends):
    with blank_module(state_dir, line_fault=fault) as vm, Uart(vm.uart1) as u, \
            Uart(vm.uart2) as dbg:
        with Flasher(vm.uart1, da=da_file, handshake_timeout=20) as f:
            t = power_up_in_download_mode(vm)
            r = f.flash(apps["M66"], baud=921600)
            t.join()
        assert r.resends == resends
        wait_ready(u, "1.0.0", timeout=20)
        lines = debug_lines(dbg)
        kind = "flipped" if fault.startswith("flip") else "dropped"
        assert sum(f"line fault: a {'bit' if kind == 'flipped' else 'byte'}" in l
                   for l in lines) == resends, lines
        assert sum("refused" in l for l in lines) == resends


def test_line_that_keeps_failing_ends_in_a_clear_error(apps, da_file, state_dir):
    with blank_module(state_dir, line_fault="flip:2:100") as vm, Uart(vm.uart2) as dbg:
        with Flasher(vm.uart1, da=da_file, handshake_timeout=20, max_resends=3) as f:
            t = power_up_in_download_mode(vm)
            with pytest.raises(fotabench.ChecksumError) as e:
                f.flash(apps["M66"])
            t.join()
        assert "refused 4 times" in e.value.message and "--baud" in e.value.message
        assert sum("line fault" in l for l in debug_lines(dbg)) == 4


def test_power_cut_mid_flash_then_a_second_flash(apps, da_file, state_dir):
    image = apps["M66"].read_bytes()
    with blank_module(state_dir) as vm, Uart(vm.uart1) as u, Uart(vm.uart2) as dbg:
        cut = []

        def progress(phase, done, total):
            if phase == "write" and done >= total // 3 and not cut:
                cut.append(done)
                vm.cut_power()

        with Flasher(vm.uart1, da=da_file, handshake_timeout=20, answer_timeout=1.0) as f:
            t = power_up_in_download_mode(vm)
            with pytest.raises((fotabench.BenchTimeoutError, fotabench.ProtocolError)) as e:
                f.flash(apps["M66"], progress=progress)
            t.join()
        assert cut, e.value.message
        # Half-written: the flash holds a part of the image and does not boot.
        held = (state_dir / "app.bin").read_bytes()
        assert held[:64] == image[:64] and held != image
        vm.set_line("PWRKEY", 1)
        vm.set_line("VBAT", 1)
        vm.set_line("PWRKEY", 0)  # powers on after 1 s, still held: the BootROM's window
        u.expect("^RDY$", 10)
        vm.set_line("PWRKEY", 1)
        assert "app image refused" in " ".join(debug_lines(dbg, 0.5))
        assert not any(l.startswith("+FBREADY") for _, l in u.history)
        # Back to the BootROM, and a second flash succeeds.
        vm.cut_power()
        with Flasher(vm.uart1, da=da_file, handshake_timeout=20) as f:
            t = power_up_in_download_mode(vm)
            r = f.flash(apps["M66"])
            t.join()
        assert r.length == len(image)
        wait_ready(u, "1.0.0", timeout=20)
    assert (state_dir / "app.bin").read_bytes() == image


def test_ctrl_c_mid_flash_ends_it_promptly(apps, da_file, state_dir):
    main = threading.main_thread().ident
    sent: list[float] = []

    def progress(phase, done, total):
        if phase == "write" and not sent:
            sent.append(time.monotonic())
            signal.pthread_kill(main, signal.SIGINT)

    timeline = fotabench.Timeline()
    with blank_module(state_dir) as vm:
        with Flasher(vm.uart1, da=da_file, handshake_timeout=20, timeline=timeline) as f:
            t = power_up_in_download_mode(vm)
            with pytest.raises(KeyboardInterrupt):
                f.flash(apps["M66"], baud=115200, progress=progress)
            ended = time.monotonic()
            t.join()
    assert sent and ended - sent[0] < 2.0  # the cancel poll runs every 50 ms; load margin
    errors = timeline.events(kind="flash.error")
    assert len(errors) == 1 and errors[0].data["status"] == "FB_ERR_CANCELLED"
    assert len(timeline.events(kind="flash.done")) == 0


def run_cli(*args, timeout=120):
    # A Python child keeps the environment: in the ASan pass its extension needs the
    # preloaded runtime (tool_env is for system tools).
    return subprocess.run([sys.executable, "-m", "fotabench", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_cli_flash_with_trace(apps, da_file, state_dir):
    with blank_module(state_dir) as vm, Uart(vm.uart1) as u:
        t = power_up_in_download_mode(vm, delay=1.0)
        r = run_cli("flash", str(apps["M66"]), "--port", vm.uart1, "--da", str(da_file),
                    "--trace", "--handshake-timeout", "20")
        t.join()
        assert r.returncode == 0, r.stderr[-2000:]
        assert "flashed" in r.stdout and "MT6261" in r.stdout and "line rate" in r.stdout
        assert "TRACE +" in r.stderr and "Write 1 bytes:" in r.stderr
        assert "a0" in r.stderr and "Read 1 bytes:" in r.stderr and "5f" in r.stderr
        assert "write   100.0%" in r.stderr
        wait_ready(u, "1.0.0", timeout=20)


def test_cli_bad_input_one_line(apps, da_file, tmp_path):
    env_free = run_cli("flash", str(apps["M66"]), "--port", "/dev/null")
    assert env_free.returncode == 2  # a usage error: no agent given
    assert "MTK_AllInOne_DA.bin" in env_free.stderr and "QFlash" in env_free.stderr
    assert "Traceback" not in env_free.stderr
    wrong = tmp_path / "wrong_da.bin"
    wrong.write_bytes(b"not an agent" * 20)
    r = run_cli("flash", str(apps["M66"]), "--port", "/dev/null", "--da", str(wrong))
    assert r.returncode == 1 and "MTK_DOWNLOAD_AGENT" in r.stderr and "QFlash" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.bin"
    bad.write_bytes(apps["M66"].read_bytes()[:-1])  # length field != size
    r = run_cli("flash", str(bad), "--port", "/dev/null", "--da", str(da_file))
    assert r.returncode == 1 and "length" in r.stderr and "Traceback" not in r.stderr


def test_da_inspect_reads_the_layout(da_file, tmp_path):
    info = da_inspect(da_file)
    assert info["id"] == "SYNTHETIC test agent 1"
    assert [e["hw_code"] for e in info["entries"]] == [0x6261, 0x2503]
    regions = info["entries"][0]["regions"]
    assert regions[1][1:3] == (0x718, 0x70007000) and regions[2][1:3] == (20001, 0x10020000)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(da_file.read_bytes()[:-10])
    with pytest.raises(fotabench.ImageError, match="past the end"):
        da_inspect(cut)
