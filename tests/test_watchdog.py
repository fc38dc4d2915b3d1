"""fotabench.WatchdogMonitor: verdicts on known waveforms (exact, from the edges' own
stamps), and live on a line of a fake board: a stall is seen while it happens."""
from __future__ import annotations

import threading

import pytest

import fotabench
from fotabench import GpioChip, Timeline, WatchdogMonitor

from peers import FakeBoard

MS = 1_000_000
S = 1_000_000_000


def square(period_ms: int, count: int, start: int = S) -> list[int]:
    return [start + i * period_ms * MS for i in range(1, count + 1)]


def test_regular_feeding_is_ok():
    r = WatchdogMonitor.check(square(400, 10), start_ns=S, stop_ns=S + 4200 * MS)
    assert r.edges == 10
    assert r.longest_gap_ns == 400 * MS
    assert r.shortest_interval_ns == r.mean_interval_ns == 400 * MS
    assert r.timeout_ns == 1600 * MS
    assert r.ok and not r.running


@pytest.mark.parametrize("gap_ms,two_thirds,timeout", [
    (1000, False, False),   # under 2/3 of 1.6 s (1.0667 s)
    (1100, True, False),    # over 2/3, under the timeout
    (1601, True, True),     # the chip would have reset
])
def test_one_long_gap(gap_ms, two_thirds, timeout):
    edges = [S + 100 * MS, S + 200 * MS, S + 200 * MS + gap_ms * MS, S + 300 * MS + gap_ms * MS]
    r = WatchdogMonitor.check(edges, start_ns=S, stop_ns=edges[-1] + 100 * MS)
    assert r.longest_gap_ns == gap_ms * MS
    assert r.longest_gap_at_ns == S + 200 * MS
    assert (r.over_two_thirds, r.over_timeout) == (two_thirds, timeout)
    assert r.ok is not two_thirds


def test_custom_timeout_and_edges_of_the_watch():
    # No edge at all: the watch is one gap. A first edge late: the gap from the start.
    r = WatchdogMonitor.check([], start_ns=S, stop_ns=S + 500 * MS, timeout=0.4)
    assert r.edges == 0 and r.longest_gap_ns == 500 * MS and r.over_timeout
    r = WatchdogMonitor.check([S + 350 * MS], start_ns=S, stop_ns=S + 360 * MS, timeout=0.4)
    assert r.longest_gap_at_ns == S and r.over_two_thirds and not r.over_timeout


def test_intervals_and_verdict_on_the_timeline():
    tl = Timeline()
    m = WatchdogMonitor(timeline=tl, start_ns=S, source="wdt")
    for t in [S + 100 * MS, S + 300 * MS, S + 600 * MS]:
        m.feed(t)
    assert m.intervals() == [200 * MS, 300 * MS]
    r = m.stop(S + 700 * MS)
    m.close()
    v = tl.events(source="wdt", kind="watchdog.verdict")[0].data
    assert v["edges"] == 3 and v["longest_gap_ns"] == 300 * MS == r.longest_gap_ns
    assert v["over_timeout"] is False


def test_10khz_waveform():
    edges = [S + i * 100_000 for i in range(1, 20001)]
    r = WatchdogMonitor.check(edges, start_ns=S, stop_ns=S + 2 * S)
    assert r.edges == 20000 and r.longest_gap_ns == 100_000 and r.ok


@pytest.fixture
def board(tmp_path):
    b = FakeBoard(tmp_path)
    yield b
    b.close()


def test_live_on_a_line(board):
    tl = Timeline()
    with GpioChip(board.path, timeline=tl) as chip:
        wdi = chip.request_input("WDI")
        with WatchdogMonitor(wdi, timeout=0.3, timeline=tl) as wd:
            # feeding, stamped by the board
            for i in range(5):
                board.emit_edge("WDI", i % 2)
            tl.wait_for(lambda e: e.kind == "edge" and e.data["seq"] == 5, timeout=5)
            # then nothing: wait_stall returns while the line is stalled
            gap = wd.wait_stall(2 / 3, timeout=10)
            assert gap is not None and gap > 200 * MS
            stall = tl.wait_for(lambda e: e.kind == "watchdog.stall", timeout=10)
            assert stall.data["gap_ns"] > 300 * MS
        r = wd.result
        assert r.edges == 5 and r.over_timeout and not r.ok
    kinds = [e.kind for e in tl.events(source="watchdog:WDI")]
    assert kinds[0] == "watchdog.start" and "watchdog.warning" in kinds
    assert kinds[-1] == "watchdog.verdict"


def test_live_lost_edges_are_counted(board):
    with GpioChip(board.path) as chip:
        wdi = chip.request_input("WDI")
        wd = WatchdogMonitor(wdi, timeout=5)
        board.emit_edge("WDI", 1, seq=1)
        board.emit_edge("WDI", 0, seq=3)
        deadline = fotabench.now_ns() + 10 * S
        while wd.result.edges < 2:
            assert fotabench.now_ns() < deadline
            threading.Event().wait(0.01)
        r = wd.stop()
        assert r.lost == 1 and not r.ok
        wd.close()


def test_releasing_the_line_stops_its_monitor(board):
    with GpioChip(board.path) as chip:
        wdi = chip.request_input("WDI")
        wd = WatchdogMonitor(wdi, timeout=5)
        wdi.release()
        assert not wd.result.running
        wd.close()


# --- against the virtual module (firmware/sim), when it is built -------------------------

def test_bench_io_against_the_virtual_module(tmp_path):
    """Power the module up through our GPIO, talk AT on its UART1, watch WDI while the
    agent feeds it, stop the feeding (AT+FBWDT=0): the monitor sees the stall live and
    the watchdog chip resets the module, which boots again."""
    import tempfile
    import subprocess

    from fotabench import Modem
    from fotabench.sim import VirtualModule, sim_binary

    if not sim_binary().exists():
        pytest.skip(f"{sim_binary()} not built (make -C firmware board)")
    from vm_helpers import build_app

    app = build_app("1.0.0", tmp_path / "app.bin")
    state = tempfile.mkdtemp(prefix="fbio")  # short: gpio.sock goes into sun_path
    tl = Timeline()
    try:
        with VirtualModule(app, state, boot_timing="fast", link_rate="unlimited",
                           latency_ms=0, power=False) as vm, \
                GpioChip.virtual(vm.gpio, timeline=tl) as chip, \
                Modem(vm.uart1, name="uart1", timeline=tl) as modem:
            vbat = chip.request_output("VBAT", initial=0)
            pwrkey = chip.request_output("PWRKEY", initial=1)
            wdi = chip.request_input("WDI")
            vbat.set(1)
            t0, t1 = pwrkey.pulse(0, 1.2)
            assert t1 - t0 >= 1_200_000_000
            ready = modem.expect("+FBREADY:", timeout=30)
            assert '"1.0.0"' in ready.line
            r = modem.command("AT+FBVER?", timeout=10)
            assert r.ok and r.lines[0].startswith('+FBVER: "1.0.0"')
            with WatchdogMonitor(wdi, timeout=1.6, timeline=tl) as wd:
                since = len(tl)
                for _ in range(3):  # three feeds seen after the start
                    ev = tl.wait_for(lambda e: e.source == "gpio:WDI" and e.kind == "edge",
                                     timeout=20, since=since)
                    since = ev.seq + 1
                # The monitor consumes edges on its own queue, so right after the
                # timeline shows the third edge its count may still lag: judge it after
                # the stall, which it reports only once every earlier edge is in.
                assert not wd.result.over_timeout
                assert modem.command("AT+FBWDT=0", timeout=10).ok
                gap = wd.wait_stall(2 / 3, timeout=20)
                assert gap is not None
                assert wd.result.edges >= 3
                again = modem.expect("+FBREADY:", timeout=60)  # reset by the chip
                assert again.t_ns > ready.t_ns
            verdict = wd.result
            assert verdict.over_two_thirds and verdict.over_timeout
            assert verdict.longest_gap_ns > 1_600_000_000
    finally:
        subprocess.run(["rm", "-rf", state])
    assert tl.events(kind="watchdog.stall")
    assert [e.data["text"] for e in tl.events(source="uart1", kind="at.command")][:2] == \
        ["AT+FBVER?", "AT+FBWDT=0"]
