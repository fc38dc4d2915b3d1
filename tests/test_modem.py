"""fotabench.Modem (the C core's AT engine) against a pseudo-terminal peer playing the
bench agent (shared/spec/bench-agent.md): round trips, echo, URC routing (also under
load), errors, timeouts with diagnostics, hostile input, closing under traffic."""
from __future__ import annotations

import queue
import re
import threading

import pytest

import fotabench
from fotabench import Modem, Timeline

from peers import PtyPeer


@pytest.fixture
def peer():
    p = PtyPeer()
    yield p
    p.close()


def agent(echo: bool = False, extra: dict[bytes, bytes] | None = None):
    """A scripted bench agent: answers like shared/spec/bench-agent.md."""
    table = {
        b"AT": b"OK\r\n",
        b"AT+FBVER?": b'+FBVER: "1.2.0","b42"\r\nOK\r\n',
        b"AT+CREG?": b"+CREG: 0,1\r\nOK\r\n",
        b'AT+FBUPG="http://10.0.0.1/x.bin"': b"+CME ERROR: 3518\r\n",
        b"ATX": b"ERROR\r\n",
    }
    table.update(extra or {})

    def fn(cmd: bytes) -> bytes | None:
        out = table.get(cmd)
        if out is None:
            return None
        return (cmd + b"\r\r\n" if echo else b"") + out

    return fn


@pytest.mark.parametrize("echo", [False, True])
def test_round_trip(peer, echo):
    peer.respond(agent(echo=echo))
    with Modem(peer.path) as m:
        r = m.command("AT+FBVER?", timeout=5)
        assert r.ok and r.result == "OK"
        assert r.lines == ['+FBVER: "1.2.0","b42"']
        assert r.echoed is echo
        assert r.final == "OK" and r.code is None
        assert 0 <= r.duration < 5
        assert m("AT").ok


def test_urc_in_a_response_is_routed_not_mixed(peer):
    peer.respond(agent(extra={
        b"AT+FBVER?": b'+FBVER: "1.2.0","b42"\r\n+FBSTATE: UP_GETTING_FILE,45\r\nOK\r\n'}))
    tl = Timeline()
    got: queue.Queue[fotabench.Urc] = queue.Queue()
    with Modem(peer.path, name="uart1", timeline=tl) as m:
        m.on_urc("+FBSTATE:", got.put)
        r = m.command("AT+FBVER?", timeout=5)
        assert r.lines == ['+FBVER: "1.2.0","b42"']
        urc = got.get(timeout=5)
        assert urc.line == "+FBSTATE: UP_GETTING_FILE,45"
        assert r.t_sent_ns <= urc.t_ns <= r.t_done_ns
        # Also kept for expect() and on the timeline.
        assert m.expect("UP_GETTING_FILE", timeout=5).line.endswith(",45")
    kinds = [(e.kind, e.data.get("text")) for e in tl.events(source="uart1")]
    assert ("urc", "+FBSTATE: UP_GETTING_FILE,45") in kinds
    assert ("at.command", "AT+FBVER?") in kinds
    res = tl.events(kind="at.result")
    assert res[0].data["result"] == "OK" and res[0].data["lines"] == ['+FBVER: "1.2.0","b42"']


def test_own_prefix_is_response_not_urc(peer):
    peer.respond(agent())
    seen: list[str] = []
    with Modem(peer.path) as m:
        m.on_urc(None, lambda u: seen.append(u.line))
        r = m.command("AT+CREG?", timeout=5)
        assert r.lines == ["+CREG: 0,1"]
        assert m.next_line(0.05) is None
    assert seen == []


def test_error_results(peer):
    peer.respond(agent())
    with Modem(peer.path) as m:
        with pytest.raises(fotabench.AtError) as ei:
            m.command('AT+FBUPG="http://10.0.0.1/x.bin"', timeout=5)
        assert ei.value.error_code == 3518
        assert ei.value.response.result == "CME_ERROR"
        r = m.command("ATX", timeout=5, check=False)
        assert r.result == "ERROR" and not r.ok


def test_module_that_never_answers(peer, tmp_path):
    log = tmp_path / "u.log"
    peer.respond(lambda cmd: b"+CSQ: 20,0\r\n" if cmd == b"AT+CSQ" else None)
    with Modem(peer.path, log=log) as m:
        with pytest.raises(fotabench.BenchTimeoutError) as ei:
            m.command("AT+CSQ", timeout=0.3)
        msg = str(ei.value)
        assert "AT+CSQ" in msg and "1 response line so far" in msg
        assert "+CSQ: 20,0" in msg and str(log) in msg
        # The engine is usable afterwards, and the late lines are not the next answer's.
        peer.send(b"OK\r\n")
        assert m.expect(re.compile(r"^OK$"), timeout=5).line == "OK"


def test_inactivity_not_absolute_time_for_long_operations(peer):
    # An "upgrade" that talks every 10 ms for a while: with only an inactivity limit
    # (far above the interval) it completes; with silence it ends quickly.
    def fn(cmd: bytes) -> bytes | None:
        if cmd == b"AT+FBUPDATE":
            for i in range(50):
                peer.send(b"+FBSTATE: UP_UPGRADING,%d\r\n" % (i * 2))
                threading.Event().wait(0.01)
            return b"OK\r\n"
        return None

    peer.respond(fn)
    states: list[str] = []
    with Modem(peer.path) as m:
        m.on_urc("+FBSTATE:", lambda u: states.append(u.line))
        r = m.command("AT+FBUPDATE", timeout=None, inactivity=5.0)
        assert r.ok
        with pytest.raises(fotabench.BenchTimeoutError) as ei:
            m.command("AT+SILENT", timeout=None, inactivity=0.2)
        assert "no byte received for 0.2 s" in str(ei.value)
    assert len(states) == 50


def test_urc_routing_under_load(peer):
    n_urcs, n_cmds = 3000, 200
    peer.respond(agent())
    got: list[str] = []
    done = threading.Event()

    def on_urc(u):
        got.append(u.line)
        if len(got) == n_urcs:
            done.set()

    with Modem(peer.path, queue_max=n_urcs + 10) as m:
        m.on_urc("+FBSTATE:", on_urc)
        flood = threading.Thread(target=lambda: [
            peer.send(b"+FBSTATE: UP_GETTING_FILE,%d\r\n" % i) for i in range(n_urcs)])
        flood.start()
        for _ in range(n_cmds):
            r = m.command("AT+FBVER?", timeout=10)
            assert r.lines == ['+FBVER: "1.2.0","b42"'], r
        flood.join(30)
        assert done.wait(30), f"{len(got)} of {n_urcs} URCs delivered"
    assert got == [f"+FBSTATE: UP_GETTING_FILE,{i}" for i in range(n_urcs)]


def test_prompt_without_line_end(peer):
    peer.respond(lambda cmd: b"> " if cmd.startswith(b"AT+CMGS") else None)
    with Modem(peer.path) as m:
        r = m.command('AT+CMGS="123"', timeout=5, terminator="> ")
        assert r.result == "CUSTOM" and r.final == "> "
        peer.send(b"\r\nWAIT> ")
        lm = m.expect("WAIT> ", timeout=5)
        assert lm.partial


def test_garbage_nuls_and_endless_lines(peer):
    peer.respond(agent())
    with Modem(peer.path, line_max=1024) as m:
        peer.send(b"\x00\xff\xfe garbage \x00\r\n")
        lm = m.expect(b"garbage", timeout=5)
        assert lm.match.string == b"\x00\xff\xfe garbage \x00"
        assert "\udcff" in lm.line  # undecodable bytes survive (surrogateescape)
        # 100 KB without a line end: delivered in 1024-byte pieces, never stalls.
        peer.send(b"A" * 100_000 + b"\r\nafter\r\n")
        assert m.expect("after", timeout=10).line == "after"
        assert m.command("AT", timeout=5).ok


def test_callback_errors_do_not_stop_the_engine(peer):
    peer.respond(agent())
    ok = threading.Event()
    with Modem(peer.path) as m:
        m.on_urc("RDY", lambda u: 1 / 0)
        m.on_urc("RDY", lambda u: ok.set())
        peer.send(b"RDY\r\n")
        assert ok.wait(5)
        assert m.command("AT", timeout=5).ok
        assert [type(e) for e in m.callback_errors] == [ZeroDivisionError]


def test_close_during_urc_flood_does_not_deadlock(peer):
    m = Modem(peer.path)
    hits = []
    m.on_urc(None, lambda u: hits.append(u))
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            try:
                peer.send(b"+FBSTATE: UP_GETTING_FILE,1\r\n" * 50)
            except (OSError, AssertionError):
                return

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    while len(hits) < 100:
        threading.Event().wait(0.01)
    closer = threading.Thread(target=m.close)
    closer.start()
    closer.join(10)
    stop.set()
    assert not closer.is_alive(), "Modem.close() deadlocked with callbacks running"
    assert m.port.closed


def test_modem_on_an_open_port_leaves_it_open(peer):
    peer.respond(agent())
    with fotabench.SerialPort(peer.path) as port:
        with Modem(port) as m:
            assert m.command("AT", timeout=5).ok
        assert not port.closed
        port.write(b"AT\r")
        assert port.expect(b"OK", timeout=5).data == b"OK"


def test_paused_lends_the_raw_stream_and_the_engine_comes_back_as_it_was(peer):
    # A flash through the BootROM borrows the open port (Dut.raw_uart): raw bytes, no
    # AT engine; afterwards the same Modem works on, URC prefixes and subscribers kept.
    peer.respond(agent())
    urcs: queue.Queue = queue.Queue()
    with Modem(peer.path, urcs=["+XB:"]) as m:
        m.on_urc("+XB:", urcs.put)
        port = m.port
        with m.paused() as raw:
            assert raw is port and not port.closed
            with pytest.raises(fotabench.ClosedError):
                m.command("AT", timeout=1)
            with pytest.raises(fotabench.BusyError):      # one borrower at a time
                with m.paused():
                    pass
            peer.send(b"\x5f\xf5+XB: not a URC now\r\n")   # a BootROM's answers
            got = b""
            while b"\n" not in got:
                got += raw.read(100, timeout=5)
            assert got == b"\x5f\xf5+XB: not a URC now\r\n"
            assert urcs.empty()
        assert not port.closed and m.command("AT", timeout=5).ok
        peer.send(b"+XB: 1\r\n")
        assert urcs.get(timeout=5).line == "+XB: 1"           # its own prefix, its subscriber
        with pytest.raises(fotabench.BusyError):
            port.read(1)                                      # the engine has the stream again
    assert port.closed                                        # closed with the Modem, once


def test_port_loss_during_command(peer):
    with Modem(peer.path) as m:
        threading.Timer(0.1, peer.close).start()
        with pytest.raises(fotabench.ClosedError) as ei:
            m.command("AT", timeout=10)
        assert "disappeared" in str(ei.value)


def test_modem_survives_port_loss_and_reopen(tmp_path):
    a = PtyPeer()
    link = tmp_path / "uart1"
    link.symlink_to(a.path)
    a.respond(agent())
    with Modem(link, name="uart1") as m:
        assert m.command("AT", timeout=5).ok
        a.close()
        with pytest.raises(fotabench.ClosedError):
            m.command("AT", timeout=5)
        b = PtyPeer()
        link.unlink()
        link.symlink_to(b.path)
        b.respond(agent(echo=True))
        m.port.reopen()
        r = m.command("AT+FBVER?", timeout=5)
        assert r.ok and r.echoed and r.lines == ['+FBVER: "1.2.0","b42"']
        b.close()


def test_urc_between_echo_and_response(peer):
    peer.respond(lambda cmd: b"AT+FBVER?\r\r\n+FBREADY: \"1.2.0\",\"b42\"\r\n"
                 b'+FBVER: "1.2.0","b42"\r\nOK\r\n' if cmd == b"AT+FBVER?" else None)
    with Modem(peer.path) as m:
        r = m.command("AT+FBVER?", timeout=5)
        assert r.echoed and r.lines == ['+FBVER: "1.2.0","b42"']
        assert m.next_line(5)[0] == '+FBREADY: "1.2.0","b42"'


def test_a_blocked_urc_callback_does_not_stall_the_port(peer):
    peer.respond(agent())
    release = threading.Event()
    entered = threading.Event()
    seen: list[str] = []

    def slow(u):
        entered.set()
        release.wait(30)
        seen.append(u.line)

    with Modem(peer.path) as m:
        m.on_urc("RDY", slow)
        peer.send(b"RDY\r\nRDY\r\n")
        assert entered.wait(5)
        # The callback is stuck; the port still reads and commands still complete.
        for _ in range(20):
            assert m.command("AT", timeout=5).ok
        release.set()
        deadline = fotabench.now_ns() + 10 * 10**9
        while len(seen) < 2 and fotabench.now_ns() < deadline:
            threading.Event().wait(0.01)
    assert seen == ["RDY", "RDY"]
