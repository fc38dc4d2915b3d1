"""Lifetimes of the virtual module's processes and of the bench objects (issue 16, items
1, 4 and 5): nothing of a virtual module outlives its owner, one board per state
directory, gpio.sock's client limit named, and dropped chips, lines, monitors, ports and
modems freed at once (not when the cyclic GC happens to run).

Every wait is on an event (a pidfd, end of file, a pty hang-up) with a generous timeout."""
from __future__ import annotations

import gc
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import fotabench
from fotabench.sim import SimError, VirtualModule, _child_env, board_args, sim_binary

from vm_helpers import ROOT, Uart, build_app, wait_ready

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys")

FAST = dict(boot_timing="fast", link_rate="unlimited", latency_ms=0)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return build_app("1.0.0", tmp_path_factory.mktemp("life") / "app_v1.bin")


@pytest.fixture
def state_dir():
    d = tempfile.mkdtemp(prefix="fblt")  # short: pty and socket paths
    yield Path(d)
    subprocess.run(["rm", "-rf", d])


def wait_gone(pid: int, timeout: float) -> bool:
    """True once process pid has ended (a pidfd becomes readable), False at the timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


def children(pid: int) -> list[int]:
    return [int(x) for t in Path(f"/proc/{pid}/task").iterdir()
            for x in (t / "children").read_text().split()]


def module_pid(board: int, timeout: float = 10.0) -> int:
    """The board's module process (forked at power-on)."""
    deadline = time.monotonic() + timeout
    while not (kids := children(board)):
        assert time.monotonic() < deadline, "the board forked no module process"
        time.sleep(0.02)
    assert len(kids) == 1
    return kids[0]


def kill_quietly(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pty_hung_up(fd: int, timeout: float) -> bool:
    """True once the pty's other side is gone (POLLHUP), False at the timeout."""
    poller = select.poll()
    poller.register(fd, select.POLLHUP)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for _, ev in poller.poll(left * 1000):
            if ev & select.POLLHUP:
                return True
            if ev & select.POLLIN:  # the module's output: take it and wait on
                try:
                    os.read(fd, 65536)
                except OSError:
                    return True
    return False


# --- item 1: nothing outlives its owner ---------------------------------------------------

def test_sigkilled_board_takes_its_module_with_it(app, state_dir):
    """SIGKILL the board in `board | cat`: the module dies within a bounded time, its ptys
    hang up, the pipeline ends; the next board on the state directory starts (stale
    gpio.sock and board.lock)."""
    binary = sim_binary()
    args = board_args(app, state_dir, **FAST)
    pipeline = subprocess.Popen(["sh", "-c", '"$0" "$@" | cat', os.fspath(binary), *args],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=_child_env())
    board = module = 0
    try:
        poller = select.poll()
        poller.register(pipeline.stdout, select.POLLIN)
        assert poller.poll(15000), "no JSON line from the board"
        info = json.loads(pipeline.stdout.readline())
        board = info["pid"]
        module = module_pid(board)
        with Uart(info["uart1"]) as uart:
            wait_ready(uart, "1.0.0", timeout=20)
            assert uart.command("AT") == ["OK"]  # the module answers before the kill
            os.kill(board, signal.SIGKILL)
            assert wait_gone(board, 10)
            assert wait_gone(module, 10), "the module process outlived its board"
            assert pty_hung_up(uart.fd, 10), "UART1 still has a writer"
        # nothing holds the pipeline's stdout any more: cat sees end of file, sh ends
        assert pipeline.stdout.read() == b""
        assert pipeline.wait(10) == 0
        assert (state_dir / "gpio.sock").exists()  # stale: the board had no chance
    finally:
        kill_quietly(board, module)
        if pipeline.poll() is None:
            pipeline.kill()
        pipeline.wait()
        pipeline.stdout.close()
    # the stale socket and lock file do not stop the next board
    with VirtualModule(app, state_dir, **FAST) as vm:
        with Uart(vm.uart1) as uart:
            wait_ready(uart, "1.0.0", timeout=20)
        assert vm.get_line("VBAT") == 1


OWNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fotabench.sim import VirtualModule
    vm = VirtualModule(sys.argv[1], sys.argv[2], boot_timing="fast", link_rate="unlimited",
                       latency_ms=0).start()
    kids = [x for t in Path(f"/proc/{vm.pid}/task").iterdir()
            for x in (t / "children").read_text().split()]
    print(vm.pid, *kids, flush=True)
    time.sleep(3600)
""")


def test_sigkilled_owner_stops_board_and_module(app, state_dir):
    """SIGKILL a Python process that owns a VirtualModule: board and module end, gpio.sock
    goes, and the next VirtualModule on the same state directory starts."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, os.fspath(app), os.fspath(state_dir)],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    pids: list[int] = []
    try:
        poller = select.poll()
        poller.register(owner.stdout, select.POLLIN)
        assert poller.poll(30000), "the owner printed no pids"
        pids = [int(x) for x in owner.stdout.readline().split()]
        assert len(pids) == 2  # board and module
        assert all(Path(f"/proc/{p}").exists() for p in pids)
        owner.kill()
        owner.wait(10)
        for pid in pids:
            assert wait_gone(pid, 15), f"pid {pid} outlived the Python process that owned it"
        # the board stopped on its own (not killed): it removed gpio.sock
        assert not (state_dir / "gpio.sock").exists()
    finally:
        kill_quietly(*pids)
        if owner.poll() is None:
            owner.kill()
        owner.wait()
        owner.stdout.close()
    with VirtualModule(app, state_dir, **FAST) as vm:
        with Uart(vm.uart1) as uart:
            wait_ready(uart, "1.0.0", timeout=20)


def test_a_module_started_from_a_thread_outlives_the_thread(app, state_dir):
    """The owner is the process, not the thread that started the board (PR_SET_PDEATHSIG
    would fire when that thread ends): a VirtualModule made in a worker thread keeps
    running after the thread has ended."""
    import threading

    box: list[VirtualModule] = []
    worker = threading.Thread(target=lambda: box.append(VirtualModule(app, state_dir,
                                                                      **FAST).start()))
    worker.start()
    worker.join(30)
    assert box, "the worker did not start the virtual module"
    vm = box[0]
    try:
        module = module_pid(vm.pid)
        assert not wait_gone(vm.pid, 1.0) and not wait_gone(module, 0.1)
        with Uart(vm.uart1) as uart:
            wait_ready(uart, "1.0.0", timeout=20)
            assert uart.command("AT") == ["OK"]
        assert vm.running and children(vm.pid) == [module]
    finally:
        vm.stop()


def test_hangup_stops_the_board_cleanly(app, state_dir):
    """A closed terminal (SIGHUP) stops `fotabench sim` as SIGTERM does: module killed,
    gpio.sock removed, exit 0."""
    board = subprocess.Popen([os.fspath(sim_binary()), *board_args(app, state_dir, **FAST)],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             env=_child_env())
    module = 0
    try:
        info = json.loads(board.stdout.readline())
        module = module_pid(info["pid"])
        board.send_signal(signal.SIGHUP)
        assert board.wait(10) == 0
        assert wait_gone(module, 10)
        assert not (state_dir / "gpio.sock").exists()
    finally:
        kill_quietly(module)
        if board.poll() is None:
            board.kill()
        board.wait()
        board.stdout.close()


def test_dead_board_is_a_fotabench_error(app, state_dir):
    vm = VirtualModule(app, state_dir, **FAST).start()
    try:
        assert vm.get_line("VBAT") == 1
        os.kill(vm.pid, signal.SIGKILL)
        assert wait_gone(vm.pid, 10)
        with pytest.raises(SimError, match="killed by signal 9") as e:
            vm.set_line("VBAT", 0)
        assert isinstance(e.value, fotabench.FotabenchError)
        assert e.value.code_name == "SIM_ERROR"
        # a fresh connection to the dead board says the same
        with pytest.raises(SimError, match="killed by signal 9"):
            vm.get_line("STATUS")
    finally:
        vm.stop()


# --- item 4: one board per state directory ------------------------------------------------

def test_second_board_on_a_state_directory_names_the_holder(app, state_dir):
    with VirtualModule(app, state_dir, **FAST) as first:
        t0 = time.monotonic()
        with pytest.raises(SimError, match=rf"in use by another board program \(pid {first.pid}\)"):
            VirtualModule(app, state_dir, **FAST).start()
        assert time.monotonic() - t0 < 5  # at once, not at the JSON line's timeout
        # the command line says it too, in one line, with its own exit status
        r = subprocess.run([sys.executable, "-m", "fotabench", "sim", "--state",
                            os.fspath(state_dir), "--boot-timing", "fast"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 3
        assert f"in use by another board program (pid {first.pid})" in r.stderr
        assert r.stdout == ""
        # the first board keeps its gpio.sock (the second one neither stole nor removed it)
        assert (state_dir / "gpio.sock").exists()
        assert first.get_line("VBAT") == 1
        assert first.running


def test_sigkilled_holder_does_not_block_the_next_board(app, state_dir):
    binary = sim_binary()
    holder = subprocess.Popen([os.fspath(binary), *board_args(app, state_dir, **FAST)],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              env=_child_env())
    try:
        info = json.loads(holder.stdout.readline())
        assert (state_dir / "board.lock").read_text().split() == [str(info["pid"])]
        module = module_pid(info["pid"])
        holder.kill()
        holder.wait(10)
        assert wait_gone(module, 10)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        holder.stdout.close()
    with VirtualModule(app, state_dir, **FAST) as vm:
        assert (state_dir / "board.lock").read_text().split() == [str(vm.pid)]
        assert vm.get_line("VBAT") == 1


# --- item 5: gpio.sock's limit, and dropped objects freed -----------------------------------

def test_many_gpio_clients_and_the_limit_named(app, state_dir, tmp_path):
    with VirtualModule(app, state_dir, **FAST) as vm:
        chips = [fotabench.GpioChip.virtual(vm.gpio) for _ in range(40)]  # 32 was the limit
        lines = [c.request_input("STATUS") for c in chips]
        assert all(line.get() == 1 for line in lines)
        for c in chips:
            c.close()
    # the real limit follows the board's open-file limit, and the client past it is told
    wrapper = tmp_path / "board.sh"
    wrapper.write_text(f'#!/bin/sh\nulimit -n 100\nexec "{sim_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    limit = 100 - 64  # the board's reserve for its own files (board.c FD_RESERVE)
    chips = []
    with VirtualModule(app, state_dir, binary=wrapper, **FAST) as vm:
        try:
            for _ in range(limit):
                chips.append(fotabench.GpioChip.virtual(vm.gpio))
                chips[-1].request_input("STATUS")
            with pytest.raises(fotabench.ClosedError,
                               match=rf"too many gpio\.sock clients \(limit {limit}\)"):
                c = fotabench.GpioChip.virtual(vm.gpio)
                try:
                    c.request_input("STATUS")
                finally:
                    c.close()
            # one leaves, and once the board has seen it go the next one is served
            chips.pop().close()
            deadline = time.monotonic() + 10
            while True:
                chip = fotabench.GpioChip.virtual(vm.gpio)
                try:
                    line = chip.request_input("STATUS")
                    break
                except fotabench.ClosedError as e:
                    chip.close()
                    assert "too many" in str(e) and time.monotonic() < deadline
                    time.sleep(0.02)
            chips.append(chip)
            assert line.get() == 1
        finally:
            for c in chips:
                c.close()


def counts() -> tuple[int, int]:
    return len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))


def settle(baseline: tuple[int, int], timeout: float = 10.0) -> tuple[int, int]:
    """The (fds, threads) counts once back at baseline, or the last ones at the timeout
    (a thread may take a moment to end after it was joined or told to)."""
    deadline = time.monotonic() + timeout
    while (now := counts()) != baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    return now


@pytest.mark.parametrize("kind", ["chip", "line", "edge_callback", "monitor", "port",
                                  "modem", "modem_on_port"])
def test_dropped_objects_are_freed_without_the_cyclic_gc(app, state_dir, kind):
    from fotabench.watchdog import WatchdogMonitor

    with VirtualModule(app, state_dir, **FAST) as vm:
        with Uart(vm.uart2):  # keep the UARTs' far side open: nothing depends on timing
            def use_and_drop() -> None:
                if kind == "chip":
                    chip = fotabench.GpioChip.virtual(vm.gpio)
                    assert chip.backend == "virtual"
                elif kind == "line":
                    line = fotabench.GpioChip.virtual(vm.gpio).request_input("WDI")
                    assert line.get() in (0, 1)
                elif kind == "edge_callback":
                    line = fotabench.GpioChip.virtual(vm.gpio).request_output("PWRKEY",
                                                                              initial=1)
                    line.on_edge(lambda e: None)
                elif kind == "monitor":
                    line = fotabench.GpioChip.virtual(vm.gpio).request_input("WDI")
                    mon = WatchdogMonitor(line, timeout=1.6)
                    assert mon is not None
                elif kind == "port":
                    port = fotabench.SerialPort(vm.uart1)
                    assert not port.closed
                elif kind == "modem":
                    modem = fotabench.Modem(vm.uart1)
                    assert modem.port is not None
                else:
                    port = fotabench.SerialPort(vm.uart1)
                    modem = fotabench.Modem(port)
                    assert modem.port is port

            gc.collect()
            was = gc.isenabled()
            gc.disable()
            try:
                use_and_drop()  # first use: lazily made things (types, caches)
                baseline = counts()
                for _ in range(12):
                    use_and_drop()
                after = settle(baseline)
            finally:
                if was:
                    gc.enable()
                gc.collect()
            assert after == baseline, (
                f"12 dropped {kind}s left {after[0] - baseline[0]} fds and "
                f"{after[1] - baseline[1]} threads behind until the cyclic GC runs")
