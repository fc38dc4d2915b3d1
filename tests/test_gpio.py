"""fotabench.GpioChip / GpioLine over a fake gpio.sock board (the virtual line protocol
of docs/architecture.md), and libgpiod's errors on this machine without a chip."""
from __future__ import annotations

import _thread
import queue
import threading

import pytest

import fotabench
from fotabench import GpioChip, Timeline

from peers import FakeBoard


@pytest.fixture
def board(tmp_path):
    b = FakeBoard(tmp_path)
    yield b
    b.close()


def test_outputs_drive_physical_levels(board):
    tl = Timeline()
    with GpioChip(board.path, timeline=tl) as chip:
        assert chip.backend == "virtual"
        pwr = chip.request_output("PWRKEY", initial=0, active_low=True)
        # active-low: logical 0 is the high level
        assert board.sets["PWRKEY"][-1][1] == 1
        t = pwr.set(1)
        assert board.sets["PWRKEY"][-1] == (t, 0)
        assert pwr.get() == 1
        vbat = chip.request_output("VBAT")
        vbat.value = True
        assert board.lines["VBAT"] == ("in", 1)
    assert tl.events(source="gpio:PWRKEY")[0].kind == "gpio.request"
    sets = tl.events(source="gpio:PWRKEY", kind="set")
    assert [(e.data["value"], e.data["level"]) for e in sets] == [(1, 0)]


def test_pulse_holds_for_the_duration_on_the_board_clock(board):
    with GpioChip(board.path) as chip:
        pwr = chip.request_output("PWRKEY", initial=1)
        t0, t1 = pwr.pulse(0, 0.05)
        (ta, va), (tb, vb) = board.sets["PWRKEY"][-2:]
        assert (va, vb) == (0, 1)
        assert (ta, tb) == (t0, t1)
        assert t1 - t0 >= 50_000_000


def test_pulse_is_interruptible_and_still_ends(board):
    with GpioChip(board.path) as chip:
        pwr = chip.request_output("PWRKEY", initial=1)
        threading.Timer(0.1, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            pwr.pulse(0, 30)
        assert board.lines["PWRKEY"] == ("in", 1)  # the opposite level was set


def test_edges_in_order_with_board_timestamps(board):
    with GpioChip(board.path) as chip:
        wdi = chip.request_input("WDI")
        assert board.watching("WDI")
        for i in range(1, 6):
            board.emit_edge("WDI", i % 2, t_ns=1000 * i)
        got = [wdi.next_edge(timeout=5) for _ in range(5)]
        assert [(e.value, e.t_ns, e.seq) for e in got] == [(i % 2, 1000 * i, i)
                                                           for i in range(1, 6)]
        assert wdi.next_edge(0) is None
        assert wdi.stats() == {"edges": 5, "lost": 0, "dropped": 0, "callback_dropped": 0}


def test_lost_edge_is_reported_where_it_happened(board):
    tl = Timeline()
    with GpioChip(board.path, timeline=tl) as chip:
        wdi = chip.request_input("WDI")
        board.emit_edge("WDI", 1, seq=1)
        board.emit_edge("WDI", 0, seq=2)
        board.emit_edge("WDI", 1, seq=5)  # 3 and 4 never came
        assert wdi.next_edge(5).seq == 1
        assert wdi.next_edge(5).seq == 2
        with pytest.raises(fotabench.DataLostError) as ei:
            wdi.next_edge(5)
        assert "2 edge(s) missed" in str(ei.value)
        assert wdi.next_edge(5).seq == 5
        assert wdi.stats()["lost"] == 2
    lost = tl.events(kind="edge.lost")
    assert lost and lost[0].data == {"missed": 2, "seq": 5}


def test_edge_callback_runs_from_the_core_thread(board):
    got: queue.Queue[fotabench.Edge] = queue.Queue()
    with GpioChip(board.path) as chip:
        status = chip.request_input("STATUS", active_low=True)
        status.on_edge(got.put)
        board.emit_edge("STATUS", 1)
        e = got.get(timeout=5)
        assert e.value == 0  # active low
        assert status.next_edge(5).value == 0


def test_board_refusals_are_clear(board):
    with GpioChip(board.path) as chip:
        with pytest.raises(fotabench.ArgumentError) as ei:
            chip.request_output("WDI")
        assert "request it as an input" in str(ei.value)
        with pytest.raises(fotabench.ArgumentError) as ei:
            chip.request_output("GPIO99")
        assert "no line GPIO99" in str(ei.value)
        with pytest.raises(fotabench.UnsupportedError):
            chip.request_input("WDI", bias="pull-up")
        with pytest.raises(fotabench.ArgumentError):
            chip.request_output(7)
        wdi = chip.request_input("WDI")
        with pytest.raises(fotabench.ArgumentError):
            wdi.set(1)
        with pytest.raises(fotabench.ArgumentError):
            chip.request_input("WDI")  # already requested


def test_garbage_from_the_board_times_out_clearly(board):
    with GpioChip(board.path) as chip:
        out = chip.request_output("RESET")
        board.raw_replies.append(b"\x00\xffnonsense that is not the protocol\n" + b"X" * 5000
                                 + b"\n")
        with pytest.raises(fotabench.BenchTimeoutError) as ei:
            out.set(1)
        assert "malformed" in str(ei.value)
        assert out.set(0) > 0  # the connection still works


def test_board_gone(board):
    chip = GpioChip(board.path)
    out = chip.request_output("RESET")
    board.close()
    with pytest.raises(fotabench.ClosedError) as ei:
        for _ in range(100):
            out.set(1)
    assert "virtual module" in str(ei.value)
    chip.close()


def test_release_and_close(board):
    chip = GpioChip(board.path)
    wdi = chip.request_input("WDI")
    wdi.release()
    assert wdi.released
    with pytest.raises(fotabench.ClosedError):
        wdi.next_edge(0)
    wdi2 = chip.request_input("WDI")  # can be requested again
    chip.close()
    assert wdi2.released and chip.closed
    with pytest.raises(fotabench.ClosedError):
        wdi2.get()


def test_no_board_is_a_clear_error(tmp_path):
    with pytest.raises(fotabench.ClosedError) as ei:
        GpioChip.virtual(tmp_path / "gpio.sock")
    assert "virtual module running" in str(ei.value)


def test_gpiod_chip_missing_is_a_clear_error():
    with pytest.raises(fotabench.ClosedError) as ei:
        GpioChip("/dev/gpiochip-not-here")
    assert "gpiodetect" in str(ei.value)


def test_gpiod_chip_label_not_found_is_a_clear_error():
    # A name without '/' is gpiochipN or a chip label (the qemu lane opens gpio-sim's
    # chip by its label); none here has this one.
    with pytest.raises(fotabench.ClosedError) as ei:
        GpioChip("fb-no-such-label")
    assert "no GPIO chip named or labelled fb-no-such-label" in str(ei.value)
    assert "gpiodetect" in str(ei.value)


def test_fast_toggling_line_has_a_defined_result(board):
    # 20000 edges as fast as the board can send (a line toggling at 10 kHz, with board
    # stamps 100 us apart): the queue keeps the newest 1024 and says how many it dropped;
    # the counters account for every edge.
    n = 20000
    with GpioChip(board.path) as chip:
        wdi = chip.request_input("WDI", queue_max=1024)
        for i in range(1, n + 1):
            board.emit_edge("WDI", i % 2, t_ns=100_000 * i)
        deadline = fotabench.now_ns() + 30 * 10**9
        while wdi.stats()["edges"] < n:
            assert fotabench.now_ns() < deadline, wdi.stats()
            threading.Event().wait(0.01)
        s = wdi.stats()
        assert s == {"edges": n, "lost": 0, "dropped": n - 1024, "callback_dropped": 0}
        with pytest.raises(fotabench.DataLostError):
            wdi.next_edge(0)
        kept = list(wdi.edges(0))
        assert [e.seq for e in kept] == list(range(n - 1023, n + 1))


def test_a_blocked_edge_callback_does_not_stall_the_line(board):
    release = threading.Event()
    entered = threading.Event()
    called: list[int] = []

    def slow(e):
        entered.set()
        release.wait(30)
        called.append(e.seq)

    with GpioChip(board.path) as chip:
        wdi = chip.request_input("WDI")
        wdi.on_edge(slow)
        board.emit_edge("WDI", 1)
        assert entered.wait(5)
        for i in range(2, 6):
            board.emit_edge("WDI", i % 2)
        # the reader keeps going while the callback is stuck
        assert [wdi.next_edge(5).seq for _ in range(5)] == [1, 2, 3, 4, 5]
        release.set()
        deadline = fotabench.now_ns() + 10 * 10**9
        while len(called) < 5 and fotabench.now_ns() < deadline:
            threading.Event().wait(0.01)
    assert called == [1, 2, 3, 4, 5]
