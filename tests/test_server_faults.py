"""Fault objects on their own: construction, the CLI form, budgets (one-shot, first N),
scopes, and the body plan's bytes (against a reference computed here)."""
from __future__ import annotations

import io
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fotabench.server import Fault, FaultSet, parse_rate
from fotabench.server.faults import BodyPlan, DropInjected, ServerStopping


@pytest.mark.parametrize("text, rate", [("6250", 6250), ("6250B", 6250), ("50kbit", 6250),
                                        ("50kbit/s", 6250), ("10kB", 10000),
                                        ("10KiB", 10240), ("1Mbit", 125000), ("2MB", 2e6),
                                        (300, 300), (12.5, 12.5)])
def test_parse_rate(text, rate):
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("bad", ["", "fast", "-5", "0", "10 parsecs", "kbit"])
def test_parse_rate_refuses(bad):
    with pytest.raises(ValueError):
        parse_rate(bad)


def test_parse_cli_forms():
    f = Fault.parse("drop:at=50%,times=1")
    assert (f.kind, f.at, f.at_percent, f.times) == ("drop", None, 50.0, 1)
    f = Fault.parse("throttle:rate=50kbit,client=dut1")
    assert f.rate == 6250 and f.client == "dut1" and f.protocol is None
    f = Fault.parse("stall:at=1000,seconds=2.5,protocol=ftp")
    assert (f.at, f.seconds, f.protocol) == (1000, 2.5, "ftp")
    f = Fault.parse("status:code=404,file=APP.bin")
    assert f.code == 404 and f.file == "APP.bin" and f.protocol == "http"
    assert Fault.parse("size-lie:length=7").protocol == "ftp"
    assert Fault.parse("chunked").kind == "chunked"
    assert Fault.parse("redirect:location=/x").location == "/x"
    assert Fault.parse("redirect").code == 302
    assert Fault.parse("drop:at=5,reset=yes").reset is True


@pytest.mark.parametrize("bad", [
    "explode", "drop", "drop:at=x", "drop:at=150%", "stall:seconds=0", "status:code=99",
    "status", "wrong_length", "size_lie:length=-1", "refuse:file=A.bin",
    "login_fail:protocol=http", "chunked:protocol=ftp", "drop:times=0", "drop:at=1,bogus=2",
    "drop:at", "redirect:code=200", "throttle:rate=0",
])
def test_parse_refuses(bad):
    with pytest.raises(ValueError, match="fault"):
        Fault.parse(bad)


def test_budget_one_shot_first_n_and_scopes():
    fs = FaultSet()
    once = fs.add(Fault.drop(at=1, times=1))
    twice = fs.add(Fault.status(500, times=2, file="A.bin"))
    always = fs.add(Fault.throttle(1000, client="dut1"))
    kinds = frozenset({"drop", "status", "throttle"})
    take = lambda **kw: [f.kind for f in fs.take(kinds, "http", "10.0.0.1", **kw)]
    assert take(module="dut1", file="A.bin") == ["drop", "status", "throttle"]
    assert take(module="dut2", file="A.bin") == ["status"]
    assert take(module="dut1", file="A.bin") == ["throttle"]
    assert take(module="dut1", file="B.bin") == ["throttle"]
    assert (once.used, twice.used, always.used) == (1, 2, 3)
    assert fs.peek(kinds, "http", "10.0.0.1", "dut1", "A.bin") == [always]
    # protocol scope; an IP scope matches the client address
    fs.add(Fault.drop(at=1, protocol="ftp", client="10.0.0.1"))
    assert [f.kind for f in fs.take(kinds, "ftp", "10.0.0.1")] == ["drop"]
    assert [f.kind for f in fs.take(kinds, "ftp", "10.0.0.2")] == []


def test_budget_is_exact_under_concurrency():
    fs = FaultSet([Fault.drop(at=0, times=50)])
    hits = []

    def worker():
        for _ in range(100):
            hits.extend(fs.take(frozenset({"drop"}), "http", "c"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(hits) == 50


def body(plan: BodyPlan, data: bytes) -> tuple[bytes, bool]:
    out = b""
    try:
        for chunk in plan.chunks(io.BytesIO(data), threading.Event(), chunk=777):
            out += chunk
    except DropInjected:
        return out, True
    return out, False


@given(data=st.binary(min_size=0, max_size=5000),
       at=st.integers(0, 6000), count=st.integers(1, 10),
       drop=st.one_of(st.none(), st.integers(0, 6000)),
       trunc=st.one_of(st.none(), st.integers(0, 6000)))
def test_body_plan_bytes_match_reference(data, at, count, drop, trunc):
    faults = [Fault.corrupt(at=at, count=count)]
    if drop is not None:
        faults.append(Fault.drop(at=drop))
    if trunc is not None:
        faults.append(Fault.truncate(at=trunc))
    plan = BodyPlan.build(len(data), faults)
    got, dropped = body(plan, data)
    # reference: truncate, corrupt, then cut
    send = len(data) if trunc is None else min(trunc, len(data))
    ref = bytearray(data[:send])
    for i in range(at, min(at + count, send)):
        ref[i] ^= 0xFF
    if drop is not None:
        ref = ref[:min(drop, len(data))]
    assert got == bytes(ref)
    # a drop past the end cannot act: not applied (issue 16 item 15)
    assert dropped == (drop is not None and drop <= len(data))
    assert plan.length == send


def test_plan_lengths():
    assert BodyPlan.build(100, [Fault.wrong_length(7)]).length == 7
    p = BodyPlan.build(100, [Fault.chunked()])
    assert p.chunked and p.length is None
    assert BodyPlan.build(100, [Fault.truncate(at_percent=25)]).send == 25
    assert BodyPlan.build(100, [Fault.drop(at_percent=50)]).limit == 50


def test_stall_and_stop():
    stop = threading.Event()
    plan = BodyPlan.build(10, [Fault.stall(30, at=4)])
    it = plan.chunks(io.BytesIO(b"0123456789"), stop)
    assert next(it) == b"0123"
    stop.set()                                        # stalled: a stop wakes it at once
    with pytest.raises(ServerStopping):
        next(it)
