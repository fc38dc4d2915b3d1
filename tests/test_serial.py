"""fotabench.SerialPort over a pseudo-terminal peer: bytes both ways, the log,
expect() and its diagnostics, overflow, loss and reopen, interrupts."""
from __future__ import annotations

import _thread
import os
import random
import re
import threading

import pytest

import fotabench
from fotabench import SerialPort, Timeline

from peers import PtyPeer


@pytest.fixture
def peer():
    p = PtyPeer()
    yield p
    p.close()


def unescape_log(path) -> tuple[bytes, bytes, list[int]]:
    """(rx bytes, tx bytes, times) from a port log, decoded independently."""
    rx, tx, times = bytearray(), bytearray(), []
    for line in open(path, "rb").read().split(b"\n"):
        if not line:
            continue
        t, d, *rest = line.split(b" ", 2)
        times.append(int(t))
        if d == b"#":
            continue
        body = rest[0] if rest else b""
        out = bytearray()
        i = 0
        while i < len(body):
            if body[i:i + 1] == b"\\":
                c = body[i + 1:i + 2]
                if c == b"x":
                    out.append(int(body[i + 2:i + 4], 16))
                    i += 4
                    continue
                out += {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"\\": b"\\"}[c]
                i += 2
            else:
                out.append(body[i])
                i += 1
        (rx if d == b"<" else tx).extend(out)
    return bytes(rx), bytes(tx), times


def test_bytes_both_ways_and_log(peer, tmp_path):
    log = tmp_path / "uart1.log"
    tl = Timeline()
    with SerialPort(peer.path, name="uart1", log=log, timeline=tl) as port:
        assert port.backend == "termios"
        assert port.name == "uart1" and port.log_path == str(log)
        data = bytes(random.Random(1).randbytes(20000)) + b"\0\0\xff"
        peer.send(data)
        got = bytearray()
        while len(got) < len(data):
            chunk = port.read(65536, timeout=5)
            assert chunk, f"only {len(got)} of {len(data)} bytes arrived"
            got += chunk
        assert bytes(got) == data
        assert port.write(b"AT+FBVER?\r") == 10
        assert peer.read_until(b"\r") == b"AT+FBVER?\r"
        assert port.read(10, timeout=0) == b""
        assert port.tail(3) == b"\0\0\xff"
        s = port.stats()
        assert s["rx_bytes"] == len(data) and s["tx_bytes"] == 10 and s["open"]
    rx, tx, times = unescape_log(log)
    assert rx == data and tx == b"AT+FBVER?\r"
    assert times == sorted(times)
    kinds = [e.kind for e in tl.events(source="uart1")]
    assert kinds[0] == "port.open" and "rx" in kinds and "tx" in kinds
    assert kinds[-1] == "port.close"


def test_expect_literal_regex_and_list(peer):
    with SerialPort(peer.path) as port:
        peer.send(b"noise\r\n+FBVER: \"2.1\",\"b7\"\r\nOK\r\n")
        m = port.expect(re.compile(rb'\+FBVER: "([^"]+)"'), timeout=5)
        assert m.match.group(1) == b"2.1"
        assert m.before == b"noise\r\n"
        m = port.expect([b"ERROR", "OK"], timeout=5)
        assert m.index == 1 and m.data == b"OK"
        # What followed the match is still there for read().
        assert port.read(10, timeout=5) == b"\r\n"
        # The earliest match wins, whatever its position in the list.
        peer.send(b"first second")
        m = port.expect([b"second", b"first"], timeout=5)
        assert m.index == 1


def test_expect_timeout_shows_tail_and_log(peer, tmp_path):
    log = tmp_path / "p.log"
    with SerialPort(peer.path, log=log) as port:
        peer.send(b"+FBSTATE: UP_GETTING_FILE,45\r\n")
        port.expect(b"45", timeout=5)
        with pytest.raises(fotabench.ExpectTimeout) as ei:
            port.expect(b"UP_FINISH", timeout=0.2)
    e = ei.value
    assert isinstance(e, fotabench.BenchTimeoutError) and isinstance(e, TimeoutError)
    assert b"UP_GETTING_FILE,45" in e.tail
    assert e.log_path == str(log) and str(log) in str(e)
    assert "UP_GETTING_FILE" in str(e)


def test_inactivity_ends_a_wait_without_an_absolute_timeout(peer):
    with SerialPort(peer.path) as port:
        with pytest.raises(fotabench.ExpectTimeout) as ei:
            port.expect(b"never", timeout=None, inactivity=0.1)
        assert "no byte for 0.1 s" in str(ei.value)


def test_overflow_is_reported_with_the_count(peer, tmp_path):
    log = tmp_path / "flood.log"
    total = 1 << 20
    data = bytes(random.Random(2).randbytes(total))
    with SerialPort(peer.path, ring_size=4096, log=log) as port:
        peer.send(data)  # nobody reads meanwhile
        # Wait on the core's counter until every byte arrived (polled, bounded).
        deadline = fotabench.now_ns() + 30 * 10**9
        while port.stats()["rx_bytes"] < total:
            assert fotabench.now_ns() < deadline, port.stats()
            threading.Event().wait(0.01)
        s = port.stats()
        assert s["dropped_bytes"] == total - 4096
        with pytest.raises(fotabench.DataLostError) as ei:
            port.read(65536)
        assert f"{total - 4096} bytes" in str(ei.value)
        assert str(log) in str(ei.value)
        assert port.read(65536) == data[-4096:]
    # Nothing lost where it matters: the log has every byte.
    rx, _, _ = unescape_log(log)
    assert rx == data


def test_port_loss_then_reopen_through_a_stable_name(tmp_path):
    a = PtyPeer()
    link = tmp_path / "by-id-uart1"
    link.symlink_to(a.path)
    tl = Timeline()
    port = SerialPort(link, name="uart1", timeline=tl)
    try:
        a.send(b"RDY\r\n")
        port.expect(b"RDY\r\n", timeout=5)
        a.close()  # module's board gone
        with pytest.raises(fotabench.ClosedError) as ei:
            port.read(10, timeout=10)
        assert "disappeared" in str(ei.value) and "reopen" in str(ei.value)
        assert isinstance(ei.value, ConnectionError)
        with pytest.raises(fotabench.ClosedError):
            port.write(b"AT\r")
        assert tl.events(kind="port.lost")
        # Back again under the same name (as /dev/serial/by-id/... after replugging).
        b = PtyPeer()
        link.unlink()
        link.symlink_to(b.path)
        port.reopen()
        b.send(b"RDY again\r\n")
        assert port.expect(b"again", timeout=5).data == b"again"
        port.write(b"AT\r")
        assert b.read_until(b"\r") == b"AT\r"
        assert tl.events(kind="port.reopen")
        b.close()
    finally:
        port.close()


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(fotabench.ClosedError) as ei:
        SerialPort(tmp_path / "ttyUSB9")
    assert "ttyUSB9" in str(ei.value)
    with pytest.raises(fotabench.ArgumentError):
        SerialPort("/dev/null", data_bits=9)
    with pytest.raises(ValueError):
        SerialPort("/dev/null", parity="mark")  # type: ignore[arg-type]


def test_pty_has_no_modem_lines(peer):
    with SerialPort(peer.path) as port:
        with pytest.raises(fotabench.UnsupportedError):
            port.set_dtr(True)
        with pytest.raises(fotabench.UnsupportedError):
            port.signals()
        port.flush()
        port.drain()
        port.configure(9600, flow="rtscts")


def test_closed_port_refuses_and_close_is_idempotent(peer):
    port = SerialPort(peer.path)
    port.close()
    port.close()
    assert port.closed
    with pytest.raises(fotabench.ClosedError):
        port.read(1)


def test_close_from_another_thread_ends_a_blocked_read(peer):
    port = SerialPort(peer.path)
    result: list[BaseException | bytes] = []
    started = threading.Event()

    def reader():
        started.set()
        try:
            result.append(port.read(10, timeout=30))
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            result.append(e)

    t = threading.Thread(target=reader)
    t.start()
    started.wait(5)
    port.close()
    t.join(10)
    assert not t.is_alive(), "close() did not end the blocked read"
    assert len(result) == 1
    assert isinstance(result[0], fotabench.ClosedError) or result[0] == b""


def test_ctrl_c_interrupts_a_blocking_read(peer):
    with SerialPort(peer.path) as port:
        timer = threading.Timer(0.1, _thread.interrupt_main)
        # Safety net: if the interrupt were ignored, data ends the read (the test then
        # fails instead of hanging).
        rescue = threading.Timer(20, lambda: peer.send(b"x"))
        timer.start()
        rescue.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                port.read(1, timeout=None)
        finally:
            rescue.cancel()


def test_list_ports_returns_port_infos():
    ports = fotabench.list_ports()
    assert all(isinstance(p, fotabench.PortInfo) for p in ports)
    for p in ports:
        assert p.transport in ("usb", "native", "bluetooth")
        if p.transport != "usb":
            assert p.usb_vid is None


def test_libserialport_refuses_a_pty(peer):
    # Why pty paths get the termios backend (serial_pty.c).
    with pytest.raises(fotabench.FotabenchError):
        SerialPort(peer.path, backend="libserialport")
