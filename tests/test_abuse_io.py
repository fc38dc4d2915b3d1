"""Issue 16 (items 2, 13, 14, 16, 17, 18): bench I/O under abuse, against a pty peer
that never reads and a fake gpio.sock board: every wait ends on Ctrl-C and on close()
from another thread; one timeout rule at every entry point; errors are
FotabenchErrors; one data path per stream; reprs that say what a thing is."""
from __future__ import annotations

import math
import re
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import fotabench
from fotabench import Modem, SerialPort, Timeline, WatchdogMonitor

from peers import FakeBoard, PtyPeer


@pytest.fixture
def peer():
    p = PtyPeer()
    yield p
    p.close()


@pytest.fixture
def board(tmp_path):
    b = FakeBoard(tmp_path)
    yield b
    b.close()


def fill_until_blocked(port: SerialPort) -> int:
    """Write until the pty (whose peer never reads) takes nothing more."""
    total = 0
    block = b"w" * 65536
    while True:
        try:
            total += port.write(block, timeout=0.05)
        except fotabench.BenchTimeoutError:
            return total


def blocked_writer(port: SerialPort, outcome: dict) -> threading.Thread:
    def run() -> None:
        try:
            port.write(b"x" * 65536, timeout=None)
            outcome["result"] = "returned"
        except BaseException as e:  # noqa: BLE001 - the test looks at what it was
            outcome["result"] = e
        outcome["t_end"] = time.monotonic()

    return threading.Thread(target=run)


def tx_stalled(port: SerialPort, settle: float = 0.3) -> bool:
    before = port.stats()["tx_bytes"]
    time.sleep(settle)
    return port.stats()["tx_bytes"] == before


# --- item 2: every wait ends on Ctrl-C and on close() --------------------------------

def test_ctrl_c_ends_a_write_to_a_peer_that_never_reads(peer):
    with SerialPort(peer.path) as port:
        fill_until_blocked(port)
        assert tx_stalled(port)
        stalled_at = port.stats()["tx_bytes"]
        t_signal = []
        timer = threading.Timer(0.5, lambda: (t_signal.append(time.monotonic()),
                                              os.kill(os.getpid(), signal.SIGINT)))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            port.write(b"x" * 65536, timeout=None)
        t_end = time.monotonic()
        timer.join()
        assert t_end - t0 >= 0.45                  # it really blocked until the signal
        assert t_end - t_signal[0] < 0.25          # and ended promptly after it
        assert port.stats()["tx_bytes"] == stalled_at  # nothing more went out
        assert not port.closed


def test_close_from_another_thread_ends_a_blocked_write(peer):
    port = SerialPort(peer.path)
    fill_until_blocked(port)
    outcome: dict = {}
    t = blocked_writer(port, outcome)
    t.start()
    assert tx_stalled(port, 0.5) and "result" not in outcome  # blocked, not finished
    t0 = time.monotonic()
    closer = threading.Thread(target=port.close)  # a close() that blocks fails, not hangs
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close() blocked behind the write"
    t_closed = time.monotonic()
    t.join(5)
    assert not t.is_alive()
    assert isinstance(outcome["result"], fotabench.ClosedError), outcome
    assert "closed" in str(outcome["result"])
    assert t_closed - t0 < 0.5                      # close() did not block behind it
    assert outcome["t_end"] - t0 < 0.5


def slow_port_with_output_queued(peer) -> SerialPort:
    """A port at 1200 baud with 4 KiB written: 34 s of line time for drain() to wait
    (a pty has no line: the termios backend counts each write's line time)."""
    port = SerialPort(peer.path, 1200)
    port.write(b"d" * 4096, timeout=5)
    return port


def test_ctrl_c_ends_a_drain(peer):
    with slow_port_with_output_queued(peer) as port:
        t_signal = []
        timer = threading.Timer(0.5, lambda: (t_signal.append(time.monotonic()),
                                              os.kill(os.getpid(), signal.SIGINT)))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            port.drain()
        t_end = time.monotonic()
        timer.join()
        assert t_end - t0 >= 0.45                  # it really waited until the signal
        assert t_end - t_signal[0] < 0.5           # and ended promptly after it
        assert not port.closed
        with pytest.raises(fotabench.BenchTimeoutError, match="bytes still not sent"):
            port.drain(timeout=0.1)                # the output is still queued


def test_close_from_another_thread_ends_a_drain(peer):
    port = slow_port_with_output_queued(peer)
    outcome: dict = {}
    started = threading.Event()

    def run() -> None:
        started.set()
        try:
            port.drain(timeout=None)
            outcome["result"] = "returned"
        except BaseException as e:  # noqa: BLE001 - the test looks at what it was
            outcome["result"] = e
        outcome["t_end"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    assert started.wait(5)
    time.sleep(0.5)                                  # let it be in its wait
    assert t.is_alive() and "result" not in outcome  # draining, not finished
    t0 = time.monotonic()
    closer = threading.Thread(target=port.close)     # a close() that blocks fails, not hangs
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close() blocked behind the drain"
    t.join(5)
    assert not t.is_alive()
    assert isinstance(outcome["result"], fotabench.ClosedError), outcome
    assert "closed by another thread while waiting" in str(outcome["result"])
    assert outcome["t_end"] - t0 < 1.0


def test_drain_waits_the_line_time_and_follows_the_timeout_rule(peer):
    with SerialPort(peer.path, 9600) as port:
        port.drain(timeout=0)                        # nothing written: done at once
        port.write(b"x" * 960, timeout=5)           # 1 s at 9600 8N1 (10 bits a byte)
        t0 = time.monotonic()
        with pytest.raises(fotabench.BenchTimeoutError, match=r"draining .*: \d+ bytes"):
            port.drain(timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 0.9
        port.drain(timeout=10)
        assert time.monotonic() - t0 >= 0.95         # the whole line time, not less
        port.write(b"x" * 960, timeout=5)
        port.flush(input=False)                      # unsent output discarded
        port.drain(timeout=0)
        with pytest.raises(fotabench.ArgumentError, match="timeout"):
            port.drain(timeout=-1)


def test_close_from_another_thread_ends_a_blocked_read_and_command(peer):
    for call in ("read", "command", "next_line"):
        modem = Modem(peer.path) if call != "read" else None
        port = modem.port if modem else SerialPort(peer.path)
        outcome: dict = {}

        def run() -> None:
            try:
                if call == "read":
                    port.read(10, timeout=None)
                elif call == "command":
                    modem.command("AT", timeout=None)
                else:
                    modem.next_line(timeout=None)
            except BaseException as e:  # noqa: BLE001
                outcome["e"] = e

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)
        assert t.is_alive()
        port.close()
        t.join(5)
        assert not t.is_alive(), call
        assert isinstance(outcome.get("e"), fotabench.ClosedError), (call, outcome)


@pytest.mark.parametrize("owns_port", [True, False], ids=["own-port", "given-port"])
@pytest.mark.parametrize("call", ["command", "next_line", "expect"])
def test_modem_close_from_another_thread_ends_its_waits(peer, call, owns_port):
    """Upgrade.cancel closes a slot's Modem while the slot's thread waits on it: the
    engine was freed under the waiter (a segfault in the bench's cancel test). The
    waiter must get ClosedError, the process must live, and the port stay usable."""
    port = None if owns_port else SerialPort(peer.path)
    modem = Modem(peer.path if owns_port else port)
    outcome: dict = {}
    started = threading.Event()

    def run() -> None:
        started.set()
        try:
            if call == "command":
                modem.command("AT", timeout=None)
            elif call == "next_line":
                modem.next_line(timeout=None)
            else:
                modem.expect("+NEVER", timeout=None)
        except BaseException as e:  # noqa: BLE001
            outcome["e"] = e

    for _ in range(20):  # the race is narrow: close at many points of the wait
        outcome.clear()
        started.clear()
        t = threading.Thread(target=run)
        t.start()
        assert started.wait(5)
        modem.close()
        t.join(5)
        assert not t.is_alive(), call
        assert isinstance(outcome.get("e"), fotabench.ClosedError), (call, outcome)
        modem = Modem(peer.path if owns_port else port)  # attaching again works
    modem.close()
    if port is not None:
        port.close()


# --- item 13: one timeout rule at every entry point -------------------------------

def entry_points(peer_path: str, board_path: str):
    """(name, call(timeout)) for every public wait that takes a timeout."""
    port = SerialPort(peer_path)
    other = PtyPeer()
    modem = Modem(other.path)
    tl = Timeline()
    chip = fotabench.GpioChip.virtual(board_path)
    wdi = chip.request_input("WDI")
    wd = WatchdogMonitor(wdi, timeout=1.6)
    calls = {
        "SerialPort.read": lambda t: port.read(10, timeout=t),
        "SerialPort.write": lambda t: port.write(b"", timeout=t),
        "SerialPort.expect": lambda t: port.expect(b"never", timeout=t),
        "SerialPort.expect(inactivity)": lambda t: port.expect(b"never", timeout=0,
                                                               inactivity=t),
        "Modem.command": lambda t: modem.command("AT", timeout=t),
        "Modem.command(inactivity)": lambda t: modem.command("AT", timeout=0, inactivity=t),
        "Modem.expect": lambda t: modem.expect("never", timeout=t),
        "Modem.next_line": lambda t: modem.next_line(timeout=t),
        "GpioLine.next_edge": lambda t: wdi.next_edge(timeout=t),
        "WatchdogMonitor.wait_stall": lambda t: wd.wait_stall(timeout=t),
        "Timeline.wait_for": lambda t: tl.wait_for(lambda e: False, timeout=t),
    }

    def close() -> None:
        wd.close()
        chip.close()
        modem.close()
        port.close()
        other.close()

    return calls, close


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, -math.inf])
def test_negative_and_nan_timeouts_are_refused_everywhere_naming_the_parameter(peer, board,
                                                                                bad):
    calls, close = entry_points(peer.path, board.path)
    try:
        for name, call in calls.items():
            with pytest.raises(fotabench.ArgumentError) as info:
                call(bad)
            param = "inactivity" if "inactivity" in name else "timeout"
            assert str(info.value).startswith(f"{param} must be None"), (name, info.value)
            assert isinstance(info.value, ValueError)
    finally:
        close()


def test_zero_polls_everywhere(peer, board):
    calls, close = entry_points(peer.path, board.path)
    try:
        for name, call in calls.items():
            t0 = time.monotonic()
            try:
                call(0)
            except fotabench.BenchTimeoutError:
                pass  # expect/command/wait_for say "not in time" at once
            assert time.monotonic() - t0 < 0.2, name
    finally:
        close()


def test_none_and_inf_wait_until_something_happens(peer):
    with SerialPort(peer.path) as port:
        for forever in (None, math.inf, 1e300):
            threading.Timer(0.2, peer.send, (b"x",)).start()
            t0 = time.monotonic()
            assert port.read(10, timeout=forever) == b"x"
            assert time.monotonic() - t0 >= 0.15


def test_timeout_ns_is_the_one_rule():
    assert fotabench._core.timeout_ns(None) is None
    assert fotabench._core.timeout_ns(math.inf) is None
    assert fotabench._core.timeout_ns(0) == 0
    assert fotabench._core.timeout_ns(1.5) == 1_500_000_000
    with pytest.raises(TypeError, match="inactivity must be None or a number"):
        fotabench._core.timeout_ns("1", "inactivity")


def test_a_huge_read_is_capped_not_a_memory_error(peer):
    with SerialPort(peer.path, ring_size=4096) as port:
        peer.send(b"abc")
        assert port.read(2**40, timeout=5) == b"abc"
        with pytest.raises(fotabench.ArgumentError, match="size must be > 0"):
            port.read(0)


# --- item 17: one data path per stream ----------------------------------------------

def test_serial_expect_on_a_port_owned_by_a_modem_says_to_use_the_modem(peer):
    with SerialPort(peer.path) as port:
        modem = Modem(port)
        peer.send(b"+FBREADY: 1\r\n")
        with pytest.raises(fotabench.BusyError, match=r"Modem.expect\(\)"):
            port.expect(b"+FBREADY", timeout=2)
        with pytest.raises(fotabench.BusyError):
            port.read(10, timeout=0)
        assert modem.expect("+FBREADY:", timeout=5).line == "+FBREADY: 1"
        with pytest.raises(fotabench.BusyError, match="already attached"):
            Modem(port)
        modem.close()
        peer.send(b"raw")
        assert port.expect(b"raw", timeout=5).data == b"raw"  # the stream is the port's again


# --- item 14: errors are FotabenchErrors; callback errors are reported ------------

def test_a_closed_modem_raises_closed_error(peer):
    with SerialPort(peer.path) as port:
        modem = Modem(port)
        modem.close()
        for call in (lambda: modem.command("AT", timeout=1), lambda: modem.expect("x", 1),
                     lambda: modem.next_line(0), lambda: modem.add_urc("+X:")):
            with pytest.raises(fotabench.ClosedError, match="Modem is closed"):
                call()
        assert "closed" in repr(modem)


def test_callback_exceptions_are_printed_once_with_the_traceback(peer, capfd):
    tl = Timeline()
    with Modem(peer.path, timeline=tl) as modem:
        modem.on_urc("+FBSTATE:", lambda u: 1 / 0)
        peer.send(b"+FBSTATE: A\r\n+FBSTATE: B\r\n")
        tl.wait_for(lambda e: e.kind == "callback.error" and "+FBSTATE: B" in e.data["on"],
                    timeout=5)
        assert [type(e) for e in modem.callback_errors] == [ZeroDivisionError] * 2
        assert "callback_errors=2" in repr(modem)
    err = capfd.readouterr().err
    assert err.count("ZeroDivisionError") == 1          # once, not per URC
    assert "Traceback" in err and "lambda u: 1 / 0" in err
    assert "+FBSTATE: A" in err


def test_edge_callback_exceptions_are_reported(board, capfd):
    tl = Timeline()
    with fotabench.GpioChip.virtual(board.path, timeline=tl) as chip:
        wdi = chip.request_input("WDI")
        wdi.on_edge(lambda e: [][1])
        board.emit_edge("WDI", 1)
        tl.wait_for(lambda e: e.kind == "callback.error", timeout=5)
        assert [type(e) for e in wdi.callback_errors] == [IndexError]
    err = capfd.readouterr().err
    assert "IndexError" in err and "GPIO line WDI" in err


def test_package_server_errors_are_fotabench_errors(tmp_path):
    srv = fotabench.PackageServer()
    with pytest.raises(fotabench.FotabenchError, match="not started") as info:
        srv.root
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(fotabench.FileError) as info:
        srv.add_package(tmp_path / "missing.bin")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(fotabench.ArgumentError):
        fotabench.PackageServer(http=None, ftp=None)
    pkg = tmp_path / "p.bin"
    pkg.write_bytes(b"x")
    with fotabench.PackageServer([pkg], ftp=None) as srv:
        with pytest.raises(fotabench.FotabenchError) as info:
            srv.url_for("other.bin")
        assert isinstance(info.value, KeyError)
        assert str(info.value).startswith("no package named 'other.bin'")  # not quoted
        with pytest.raises(fotabench.FotabenchError):
            srv.ftp_port
        assert f"http://127.0.0.1:{srv.http_port}/" in repr(srv)
        assert "packages=['p.bin']" in repr(srv) and "running" in repr(srv)
    assert "stopped" in repr(srv)


def test_virtual_module_errors_are_fotabench_errors(tmp_path):
    vm = fotabench.VirtualModule(None, tmp_path / "state", binary=tmp_path / "no-such-board")
    with pytest.raises(fotabench.FotabenchError, match="not found"):
        vm.start()
    vm.info = {"gpio": str(tmp_path / "gone.sock")}  # a board that went away
    with pytest.raises(fotabench.FotabenchError, match="did the board program exit"):
        vm.command("GET WDI", timeout=1)
    assert repr(vm).startswith("<VirtualModule stopped state=")


# --- item 16: subinterpreters are refused cleanly -----------------------------------

def test_import_in_a_subinterpreter_fails_cleanly():
    code = r'''
import sys
try:
    import _xxsubinterpreters as interp          # 3.11, 3.12
except ImportError:
    try:
        import _interpreters as interp           # 3.13+
    except ImportError:
        print("SKIP no subinterpreter module"); sys.exit(0)
i = interp.create()
try:
    failed = interp.run_string(i, "import fotabench._core")  # 3.13+ returns the error
    print(f"REFUSED {failed}" if failed is not None else "IMPORTED")
except Exception as e:                           # 3.11, 3.12 raise it
    print("REFUSED", type(e).__name__, e)
import fotabench._core                           # the main interpreter is fine
print("MAIN OK")
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    if out.stdout.startswith("SKIP"):
        pytest.skip(out.stdout.strip())
    assert "IMPORTED" not in out.stdout, out
    # Our own ImportError on 3.11; 3.12+ refuse through the module's slot first.
    assert "REFUSED" in out.stdout and "ImportError" in out.stdout, out
    assert "subinterpreters" in out.stdout, out
    assert "MAIN OK" in out.stdout and out.returncode == 0, out


# --- item 18: reprs -----------------------------------------------------------------

def test_reprs_say_what_a_thing_is(peer, board):
    port = SerialPort(peer.path, name="uart1")
    assert repr(port) == f"<SerialPort uart1 {peer.path} open termios>"
    port.close()
    assert repr(port) == f"<SerialPort uart1 {peer.path} closed>"  # keeps its path
    assert port.path == peer.path
    with fotabench.GpioChip.virtual(board.path) as chip:
        assert repr(chip) == f"<GpioChip {board.path} open virtual>"
        wdi = chip.request_input("WDI")
        assert repr(wdi) == "<GpioLine WDI input held>"
        with WatchdogMonitor(wdi, timeout=1.6) as wd:
            assert repr(wd).startswith("<WatchdogMonitor WDI running timeout=1.6s edges=0")
        assert repr(wd).startswith("<WatchdogMonitor WDI stopped,closed timeout=1.6s")
        assert repr(wd).endswith(" ok>") and "longest_gap=" in repr(wd)


def test_damaged_package_does_not_look_good(built_package, app_image, tmp_path):
    good = fotabench.Package.inspect(built_package())
    assert " ok " in repr(good) and "FAILED" not in repr(good)
    bad_path = tmp_path / "bad.bin"
    data = bytearray(good.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad_path.write_bytes(bytes(data))
    bad = fotabench.Package.inspect(bad_path)
    assert not bad.ok
    assert "FAILED" in repr(bad) and all(c.name in repr(bad) for c in bad.failures)
    app = fotabench.AppImage.inspect(app_image("M66", 1000))
    assert f"load_address={app.load_address:#x}" in repr(app)
    assert f"file_length={app.file_length:#x}" in repr(app)


def test_dir_of_the_package_is_the_public_api():
    names = dir(fotabench)
    assert "TYPE_CHECKING" not in names and "importlib" not in names
    assert "_import_module" not in names
    assert {"SerialPort", "Modem", "BusyError", "__version__"} <= set(names)


def test_public_classes_have_an_example():
    for cls in (fotabench.AppImage, fotabench.Package, fotabench.SerialPort, fotabench.Modem,
                fotabench.GpioChip, fotabench.WatchdogMonitor, fotabench.VirtualModule):
        assert ">>>" in (cls.__doc__ or ""), cls.__name__


def test_bad_arguments_of_the_bench_io_types_are_argument_errors(peer):
    for call, text in [
        (lambda: WatchdogMonitor(timeout=-1), "timeout must be in (0, 3600] s"),
        (lambda: WatchdogMonitor(start_ns=-5), "start_ns must be >= 0"),
        (lambda: SerialPort(peer.path, parity="weird"), "unknown parity 'weird'"),
        (lambda: SerialPort(peer.path, ring_size=-1), "ring_size must be >= 0"),
        (lambda: Timeline().add_at(-1, "s", "k"), "t_ns must be a CLOCK_MONOTONIC time > 0"),
    ]:
        with pytest.raises(fotabench.ArgumentError, match=re.escape(text)):
            call()


def test_every_fault_constructor_has_an_example():
    from fotabench.server.faults import KINDS
    for kind in KINDS:
        doc = getattr(fotabench.Fault, kind).__doc__ or ""
        assert f"Fault.{kind}(" in doc, kind


def test_a_long_pulse_ends_on_close_from_another_thread_and_still_sets_back(board):
    chip = fotabench.GpioChip.virtual(board.path)
    pwrkey = chip.request_output("PWRKEY", initial=1)
    outcome: dict = {}

    def run() -> None:
        try:
            pwrkey.pulse(0, 30)
        except BaseException as e:  # noqa: BLE001
            outcome["e"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 5
    while not board.sets["PWRKEY"][1:] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [v for _, v in board.sets["PWRKEY"]][-1] == 0       # the pulse is on
    t0 = time.monotonic()
    closer = threading.Thread(target=chip.close)
    closer.start()
    closer.join(5)
    t.join(5)
    assert not closer.is_alive() and not t.is_alive()
    assert time.monotonic() - t0 < 1.0
    assert isinstance(outcome.get("e"), fotabench.ClosedError), outcome
    assert [v for _, v in board.sets["PWRKEY"]][-2:] == [0, 1]  # set back before closing


def test_a_running_virtual_module_says_its_pid_ptys_and_state(tmp_path):
    from fotabench.sim import sim_binary
    from vm_helpers import build_app
    if not sim_binary().exists():
        pytest.skip(f"{sim_binary()} not built (make -C firmware board)")
    app = build_app("1.0.0", tmp_path / "app.bin")
    state = tmp_path / "s"
    with fotabench.VirtualModule(app, state, boot_timing="fast", power=False) as vm:
        r = repr(vm)
        assert r.startswith(f"<VirtualModule running pid={vm.pid} ")
        for part in (f"uart1={vm.uart1}", f"uart2={vm.uart2}", f"gpio={vm.gpio}",
                     f"state={state}"):
            assert part in r, (part, r)
    assert repr(vm) == f"<VirtualModule stopped state={state}>"


def test_a_virtual_module_not_started_says_so(tmp_path):
    vm = fotabench.VirtualModule(None, tmp_path / "state")
    for attr in ("uart1", "uart2", "gpio", "pid"):
        with pytest.raises(fotabench.FotabenchError, match="not started"):
            getattr(vm, attr)


def test_a_package_server_on_a_busy_port_is_a_fotabench_error():
    with fotabench.PackageServer(ftp=None) as first:
        with pytest.raises(fotabench.FotabenchError, match="cannot serve on 127.0.0.1") as info:
            fotabench.PackageServer(http=first.http_port, ftp=None).start()
        assert isinstance(info.value, OSError)


def test_package_server_waits_follow_the_one_rule():
    with fotabench.PackageServer(ftp=None) as srv:
        for bad in (-1, math.nan):
            with pytest.raises(fotabench.ArgumentError, match="timeout must be None"):
                srv.wait_for(lambda rs: False, bad)
        t0 = time.monotonic()
        with pytest.raises(fotabench.BenchTimeoutError) as info:
            srv.wait_records(1, timeout=0)
        assert isinstance(info.value, TimeoutError)
        assert time.monotonic() - t0 < 0.2


def test_virtual_module_command_timeouts_follow_the_one_rule(tmp_path):
    vm = fotabench.VirtualModule(None, tmp_path / "state")
    for bad in (-1, math.nan):
        with pytest.raises(fotabench.ArgumentError, match="timeout must be None"):
            vm.command("GET WDI", timeout=bad)


def test_a_line_offset_out_of_int_range_is_an_argument_error_not_truncated(board):
    # 2**32 would become line 0 if the long were cut to an int before the check
    with fotabench.GpioChip.virtual(board.path) as chip:
        for bad in (-1, 2**32, 2**31):
            with pytest.raises(fotabench.ArgumentError,
                               match=rf"line offset must be >= 0 and <= 2147483647, got {bad}"):
                chip.request_input(bad)
