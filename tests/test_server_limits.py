"""Issue 16 item 15: what the servers record is what happened. A fault that cannot act
on the file (past its end) is neither recorded nor charged to its budget; the HTTP head
limit holds however the head arrives; NaN never reaches a JSON line."""
from __future__ import annotations

import ftplib
import json
import math
import os
import socket
import urllib.request

import pytest

from fotabench import PackageServer, Timeline
from fotabench.server import Fault, Limits

from server_helpers import LOOPBACK

SIZE = 10_000


@pytest.fixture
def pkg(tmp_path):
    data = os.urandom(SIZE)
    path = tmp_path / "APP.bin"
    path.write_bytes(data)
    return path, data


def _http_get(srv) -> bytes:
    with urllib.request.urlopen(srv.url_for("APP.bin", "http").url, timeout=10) as r:
        return r.read()


def _ftp_get(srv) -> bytes:
    out = bytearray()
    with ftplib.FTP() as ftp:
        ftp.connect(LOOPBACK, srv.ftp_port, timeout=10)
        ftp.login(srv.user, srv.password)
        ftp.retrbinary("RETR APP.bin", out.extend)
    return bytes(out)


PAST_THE_END = [Fault.drop(at=10**9), Fault.drop(at=SIZE + 1), Fault.stall(5, at=10**9),
                Fault.corrupt(at=SIZE), Fault.corrupt(at=10**9, count=3),
                Fault.truncate(at=SIZE), Fault.truncate(at=10**9),
                Fault.corrupt(at_percent=100)]


@pytest.mark.parametrize("proto", ["http", "ftp"])
@pytest.mark.parametrize("fault", PAST_THE_END, ids=lambda f: f.describe())
def test_fault_past_the_end_is_not_recorded_as_injected(proto, fault, pkg):
    path, data = pkg
    fault.times = 1
    fault.protocol = proto
    get = _http_get if proto == "http" else _ftp_get
    with PackageServer([path], http=0 if proto == "http" else None,
                       ftp=0 if proto == "ftp" else None, faults=[fault]) as srv:
        assert get(srv) == data
        rec = srv.wait_records(1, timeout=10, method="GET" if proto == "http" else "RETR")[0]
        assert rec.outcome == "complete" and rec.faults == [], rec
        # the one-shot budget is still there: nothing was applied
        assert fault.used == 0 and not fault.exhausted


def test_fault_at_the_end_still_acts(pkg):
    """A drop at exactly the size cuts after the last byte (documented); a drop inside
    the file is recorded: the boundary is where the fault can still act."""
    path, data = pkg
    with PackageServer([path], ftp=None, faults=[Fault.drop(at=SIZE - 1, times=1)]) as srv:
        with pytest.raises(Exception):
            _http_get(srv)
        (rec,) = srv.wait_records(1, timeout=10)
        assert rec.outcome == "fault_injected" and rec.faults == ["drop"]
        assert rec.bytes_sent == SIZE - 1


def test_http_head_limit_holds_when_the_head_arrives_at_once(pkg):
    path, data = pkg
    limits = Limits(max_head_bytes=65536)
    # 10 lines of 8000 bytes: each line and the field count are within their limits,
    # the whole head (80 KB) is not.
    head = (b"GET /APP.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
            b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(10)) + b"\r\n")
    assert len(head) > 65536
    with PackageServer([path], ftp=None, limits=limits) as srv:
        with socket.create_connection((LOOPBACK, srv.http_port), timeout=10) as c:
            c.sendall(head)
            answer = b""
            while (b := c.recv(65536)):
                answer += b
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        # and a head just under the limit is served
        ok = (b"GET /APP.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
              b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(8)) + b"\r\n")
        assert 60000 < len(ok) < 65536
        with socket.create_connection((LOOPBACK, srv.http_port), timeout=10) as c:
            c.sendall(ok)
            answer = b""
            while (b := c.recv(65536)):
                answer += b
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(data)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_never_reaches_jsonl(value, tmp_path):
    tl = Timeline()
    ev = tl.add("test", "note", x=value, nested={"y": [1.5, value]})
    (stored,) = tl.events()
    assert stored.data == {"x": json.dumps(value), "nested": {"y": [1.5, json.dumps(value)]}}
    out = tmp_path / "t.jsonl"
    tl.write_jsonl(out)
    for line in out.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in {line}"))
    assert json.loads(ev.to_json(), parse_constant=lambda c: pytest.fail(c))


@pytest.mark.parametrize("spec", ["throttle:rate=inf", "throttle:rate=nan",
                                  "stall:seconds=inf", "stall:seconds=nan",
                                  "slow_accept:seconds=inf"])
def test_non_finite_fault_parameters_refused(spec):
    with pytest.raises(ValueError):
        Fault.parse(spec)
