"""The HTTP package server against real clients (curl, wget): byte-exact downloads,
what the module's client needs (opencpu-fota.md §4), records, and every fault as the
client sees it."""
from __future__ import annotations

import os
import socket

import pytest

import fotabench
from fotabench import Fault, PackageServer
from server_helpers import LOOPBACK, curl, needs_curl, needs_wget, wget

pytestmark = needs_curl

SIZE = 100_000


@pytest.fixture
def pkg(tmp_path):
    data = os.urandom(SIZE)
    p = tmp_path / "APP_pkg.bin"
    p.write_bytes(data)
    return p, data


@pytest.fixture
def srv(pkg):
    with PackageServer([pkg[0]], ftp=None) as s:
        yield s


def headers(text: str) -> dict[str, str]:
    """The last response's header fields (curl -D), lower-case names."""
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    out = {}
    for line in blocks[-1].split("\n")[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return out


def status_line(text: str) -> str:
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    return blocks[-1].split("\n")[0]


def raw_get(port: int, path: str, extra: str = "") -> bytes:
    """One GET over a raw socket, as the module sends it; the whole answer."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nAccept: */*\r\n"
                  f"User-Agent: QUECTEL_MODULE\r\nConnection: close\r\n{extra}\r\n"
                  .encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


# --- plain serving --------------------------------------------------------------------

def test_curl_byte_exact_with_exact_headers(srv, pkg, tmp_path):
    url = srv.url_for(pkg[0], "http")
    assert str(url) == f"http://{LOOPBACK}:{srv.http_port}/APP_pkg.bin"
    f = curl(str(url), tmp_path / "out")
    assert f.rc == 0, f.stderr
    assert f.data == pkg[1]
    h = headers(f.headers)
    assert status_line(f.headers).startswith("HTTP/1.1 200")
    assert h["content-length"] == str(SIZE)
    assert "transfer-encoding" not in h
    # every header line well under the module's 512-byte limit
    assert all(len(line) < 512 for line in f.headers.splitlines())


@needs_wget
def test_wget_byte_exact(srv, pkg, tmp_path):
    f = wget(str(srv.url_for("APP_pkg.bin", "http")), tmp_path / "out")
    assert f.rc == 0, f.stderr
    assert f.data == pkg[1]


def test_module_request_raw(srv, pkg):
    """Exactly the module's request (§4): status, Content-Length, then the body."""
    answer = raw_get(srv.http_port, "/APP_pkg.bin")
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Length: %d" % SIZE in lines
    assert body == pkg[1]


def test_head_and_keep_alive(srv, pkg, tmp_path):
    url = str(srv.url_for("APP_pkg.bin", "http"))
    f = curl(url, tmp_path / "h", "-I")
    assert f.rc == 0 and headers(f.headers)["content-length"] == str(SIZE)
    # two downloads over one connection: curl reuses it, both byte-exact
    out2 = tmp_path / "b"
    f = curl(url, tmp_path / "a", url, "-o", str(out2))
    assert f.rc == 0, f.stderr
    assert f.data == pkg[1] and out2.read_bytes() == pkg[1]
    recs = srv.wait_records(2, timeout=10, method="GET", outcome="complete")
    assert recs[-1].client_port == recs[-2].client_port       # same connection


def test_record_fields(srv, pkg, tmp_path):
    url = str(srv.url_for("APP_pkg.bin", "http", module="dut7"))
    assert url.endswith("/m/dut7/APP_pkg.bin")
    t0 = fotabench.now_ns()
    f = curl(url, tmp_path / "out")
    assert f.rc == 0 and f.data == pkg[1]
    (rec,) = srv.wait_records(1, timeout=10)
    t1 = fotabench.now_ns()       # after the record exists: its end is stamped after
                                  # the last send, which may be after curl exited
    assert rec.protocol == "http" and rec.client == LOOPBACK and rec.client_port > 0
    assert rec.module == "dut7" and rec.file == "APP_pkg.bin"
    assert rec.method == "GET" and rec.path == "/m/dut7/APP_pkg.bin"
    assert rec.status == 200 and rec.size == SIZE and rec.bytes_sent == SIZE
    assert rec.outcome == "complete" and rec.faults == []
    assert t0 <= rec.start_ns <= rec.end_ns <= t1          # one clock: monotonic ns
    assert rec.throughput == pytest.approx(SIZE / rec.duration_s, rel=1e-6)


def test_records_on_the_shared_timeline(pkg, tmp_path):
    tl = fotabench.Timeline()
    tl.add("test", "note", text="before")
    with PackageServer([pkg[0]], ftp=None, timeline=tl) as s:
        f = curl(str(s.url_for("APP_pkg.bin", "http", module="dut1")), tmp_path / "o")
        assert f.rc == 0
        ev = tl.wait_for(lambda e: e.source == "http" and e.kind == "request", timeout=10)
    (rec,) = s.records
    assert ev.data["module"] == "dut1" and ev.data["bytes_sent"] == SIZE
    assert ev.data["outcome"] == "complete" and ev.data["start_ns"] == rec.start_ns
    assert ev.data["end_ns"] == rec.end_ns and ev.data["throughput"] > 0
    assert rec.start_ns <= ev.t_ns                  # stamped when the request ended
    assert [e.kind for e in tl.events()] == ["note", "request"]


def test_unknown_module_and_file_are_404(srv, pkg, tmp_path):
    srv.url_for("APP_pkg.bin", "http", module="dut1")
    base = f"http://{LOOPBACK}:{srv.http_port}"
    for path in ("/m/dut2/APP_pkg.bin", "/nothing.bin", "/m/dut1/other.bin", "/",
                 "/m/dut1", "/m/dut1/APP_pkg.bin/x"):
        f = curl(base + path, tmp_path / "o", "-f")
        assert f.rc == 22 and "404" in f.stderr, path
    assert curl(base + "/m/dut1/APP_pkg.bin", tmp_path / "o").data == pkg[1]


def test_two_servers_at_once_and_bind_address(pkg, tmp_path):
    with PackageServer([pkg[0]], ftp=None) as a, PackageServer([pkg[0]], ftp=None) as b:
        assert a.http_port != b.http_port
        assert a.http.address[0] == LOOPBACK
        for s in (a, b):
            assert curl(str(s.url_for("APP_pkg.bin")), tmp_path / "o").data == pkg[1]
    with pytest.raises(ValueError, match="host="):
        PackageServer([pkg[0]], bind="0.0.0.0")


def test_served_copy_is_a_snapshot(pkg, tmp_path):
    with PackageServer([pkg[0]], ftp=None) as s:
        pkg[0].write_bytes(b"changed after start")
        assert curl(str(s.url_for("APP_pkg.bin")), tmp_path / "o").data == pkg[1]
        root = s.root
        assert root.is_dir()
    assert not root.exists()                       # the private copy is removed


# --- faults ---------------------------------------------------------------------------

def url_of(srv, module=None):
    return str(srv.url_for("APP_pkg.bin", "http", module=module))


def test_throttle(srv, pkg, tmp_path):
    rate = 100_000          # bytes/s: 100 kB takes 1 s
    srv.add_fault(Fault.throttle(rate))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1]
    assert f.elapsed >= 0.8 * SIZE / rate
    (rec,) = srv.wait_records(1, timeout=10)
    assert rec.outcome == "complete" and rec.faults == ["throttle"]
    assert rec.duration_s >= 0.8 * SIZE / rate


def test_stall_at_byte(srv, pkg, tmp_path):
    srv.add_fault(Fault.stall(1.0, at=5000, times=1))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1]
    assert f.elapsed >= 0.8
    # a client with a shorter patience than the stall fails, with the first half
    srv.add_fault(Fault.stall(5.0, at_percent=50, times=1))
    f = curl(url_of(srv), tmp_path / "o2", timeout=1)
    assert f.rc == 28
    assert 0 < len(f.data) <= SIZE // 2
    assert f.data == pkg[1][:len(f.data)]


@pytest.mark.parametrize("at, at_percent, expect", [(1234, None, 1234),
                                                    (None, 50, SIZE // 2),
                                                    (0, None, 0)])
def test_drop(srv, pkg, tmp_path, at, at_percent, expect):
    srv.add_fault(Fault.drop(at=at, at_percent=at_percent))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 18, f.stderr                     # "transfer closed with N bytes remaining"
    assert f.data == pkg[1][:expect]
    assert headers(f.headers)["content-length"] == str(SIZE)
    (rec,) = srv.wait_records(1, timeout=10)
    assert rec.outcome == "fault_injected" and rec.bytes_sent == expect


def test_drop_with_reset(srv, pkg, tmp_path):
    srv.add_fault(Fault.drop(at=2000, reset=True))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc in (18, 56), f.stderr               # partial file or connection reset
    assert len(f.data) <= 2000 and f.data == pkg[1][:len(f.data)]


def test_corrupt(srv, pkg, tmp_path):
    srv.add_fault(Fault.corrupt(at=777, count=3))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 0 and len(f.data) == SIZE
    diff = [i for i in range(SIZE) if f.data[i] != pkg[1][i]]
    assert diff == [777, 778, 779]
    assert all(f.data[i] == pkg[1][i] ^ 0xFF for i in diff)
    (rec,) = srv.wait_records(1, timeout=10)
    assert rec.outcome == "fault_injected" and rec.faults == ["corrupt"]


def test_truncate(srv, pkg, tmp_path):
    srv.add_fault(Fault.truncate(at=4096))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1][:4096]
    assert headers(f.headers)["content-length"] == "4096"


def test_wrong_content_length(srv, pkg, tmp_path):
    srv.add_fault(Fault.wrong_length(SIZE + 500, times=1))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 18 and f.data == pkg[1]          # short by 500: early close
    srv.add_fault(Fault.wrong_length(1000, times=1))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1][:1000]    # the client trusts the header


def test_chunked(srv, pkg, tmp_path):
    srv.add_fault(Fault.chunked())
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1]
    h = headers(f.headers)
    assert h["transfer-encoding"] == "chunked" and "content-length" not in h
    raw = raw_get(srv.http_port, "/APP_pkg.bin")
    assert b"Transfer-Encoding: chunked" in raw and raw.endswith(b"\r\n0\r\n\r\n")


def test_redirect_once_then_the_file(srv, pkg, tmp_path):
    srv.add_fault(Fault.redirect(times=1))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 0 and status_line(f.headers).split()[1] == "302"
    assert headers(f.headers)["location"] == "/APP_pkg.bin"
    f = curl(url_of(srv), tmp_path / "o")           # one-shot: used up
    assert f.rc == 0 and f.data == pkg[1]
    srv.add_fault(Fault.redirect(times=1))
    f = curl(url_of(srv), tmp_path / "o", "-L")     # an ordinary client follows
    assert f.rc == 0 and f.data == pkg[1]


@pytest.mark.parametrize("code", [404, 500])
def test_status_for_first_n_attempts(srv, pkg, tmp_path, code):
    srv.add_fault(Fault.status(code, times=2))
    for _ in range(2):
        f = curl(url_of(srv), tmp_path / "o", "-f")
        assert f.rc == 22 and str(code) in f.stderr
    f = curl(url_of(srv), tmp_path / "o", "-f")     # the retry succeeds
    assert f.rc == 0 and f.data == pkg[1]
    recs = srv.wait_records(3, timeout=10)
    assert [r.outcome for r in recs] == ["fault_injected"] * 2 + ["complete"]
    assert [r.status for r in recs] == [code, code, 200]


def test_refuse(srv, pkg, tmp_path):
    srv.add_fault(Fault.refuse(times=1))
    f = curl(url_of(srv), tmp_path / "o")
    # connect failed / empty reply / reset: when the RST lands decides which
    assert f.rc in (7, 52, 56), f.stderr
    assert f.data == b""
    assert curl(url_of(srv), tmp_path / "o").data == pkg[1]
    recs = srv.wait_records(2, timeout=10)
    assert recs[0].faults == ["refuse"] and recs[0].outcome == "fault_injected"


def test_slow_accept(srv, pkg, tmp_path):
    srv.add_fault(Fault.slow_accept(1.0, times=1))
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1]
    assert f.elapsed >= 0.8
    (rec,) = srv.wait_records(1, timeout=10)
    assert rec.faults == ["slow_accept"] and rec.outcome == "complete"


def test_fault_scopes(pkg, tmp_path):
    other = tmp_path / "OTHER.bin"
    other.write_bytes(b"other" * 1000)
    with PackageServer([pkg[0], other], ftp=None) as s:
        s.add_fault(Fault.status(404, file="OTHER.bin"))            # per file
        s.add_fault(Fault.status(500, client="dut2"))               # per module
        s.add_fault(Fault.status(503, client="127.0.0.2"))          # another IP
        s.add_fault(Fault.drop(at=10, protocol="ftp"))              # the other server
        ok = curl(url_of(s, "dut1"), tmp_path / "o")
        assert ok.rc == 0 and ok.data == pkg[1]
        assert curl(str(s.url_for("OTHER.bin", "http", module="dut1")), tmp_path / "o",
                    "-f").rc == 22
        f = curl(url_of(s, "dut2"), tmp_path / "o", "-f")
        assert f.rc == 22 and "500" in f.stderr
        s.add_fault(Fault.status(503, client=LOOPBACK, times=1))    # this IP
        f = curl(url_of(s, "dut1"), tmp_path / "o", "-f")
        assert f.rc == 22 and "503" in f.stderr


def test_fault_from_cli_form(srv, pkg, tmp_path):
    srv.add_fault("drop:at=10%,times=1")
    f = curl(url_of(srv), tmp_path / "o")
    assert f.rc == 18 and f.data == pkg[1][:SIZE // 10]
    assert curl(url_of(srv), tmp_path / "o").data == pkg[1]


def test_client_closing_early_is_recorded(srv, pkg, tmp_path):
    srv.add_fault(Fault.throttle(20_000))
    f = curl(url_of(srv), tmp_path / "o", "--max-time", "0.5")
    assert f.rc == 28
    (rec,) = srv.wait_records(1, timeout=10)
    assert rec.outcome == "client_closed" and 0 < rec.bytes_sent < SIZE


def test_stop_cuts_a_stalled_transfer_quickly(pkg):
    import time
    s = PackageServer([pkg[0]], ftp=None).start()
    try:
        s.add_fault(Fault.stall(60, at=1000))
        c = socket.create_connection((LOOPBACK, s.http_port), timeout=10)
        c.sendall(b"GET /APP_pkg.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while got.count(b"\r\n\r\n") == 0 or len(got.partition(b"\r\n\r\n")[2]) < 1000:
            b = c.recv(65536)
            assert b, "closed before the stall"
            got += b
        t = time.monotonic()
    finally:
        s.stop()
    assert time.monotonic() - t < 3
    assert c.recv(65536) == b""                     # cut, not left hanging
    c.close()
    (rec,) = s.records
    assert rec.outcome == "client_closed" and rec.detail == "server stopped"
    assert rec.bytes_sent == 1000


def test_client_leaving_a_plain_download_is_recorded(tmp_path):
    """The fault-free path (sendfile): a client that resets after a few bytes is
    recorded as client_closed with the bytes that went out, and the server goes on."""
    import struct
    big = tmp_path / "BIG.bin"
    size = 32 * 1024 * 1024                 # more than loopback socket buffers hold
    big.write_bytes(b"\xa5" * size)
    with PackageServer([big], ftp=None) as s:
        c = socket.create_connection((LOOPBACK, s.http_port), timeout=10)
        c.sendall(b"GET /BIG.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(1000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()                                   # RST
        (rec,) = s.wait_records(1, timeout=20)
        assert rec.outcome == "client_closed" and 0 < rec.bytes_sent < size
        assert rec.file == "BIG.bin" and rec.size == size
        answer = raw_get(s.http_port, "/nothing")
        assert answer.startswith(b"HTTP/1.1 404")


def test_slots_adding_one_package_at_once_all_get_it(tmp_path):
    """Slots of a station share a server and each serve their package by name: the
    check and the add are one step, so none of them is refused (this race failed the
    demo in CI: 'a package named ... is already served')."""
    import threading
    data = os.urandom(4096)
    copies = []
    for i in range(8):  # the same bytes from 8 places, as 8 slots have them
        p = tmp_path / f"slot{i}" / "agent_v2_MC60.pkg"
        p.parent.mkdir()
        p.write_bytes(data)
        copies.append(p)
    other = tmp_path / "other" / "agent_v2_MC60.pkg"
    other.parent.mkdir()
    other.write_bytes(os.urandom(4096))
    with PackageServer([], ftp=None) as s:
        gate = threading.Barrier(len(copies))
        errors: list[BaseException] = []

        def add(p):
            gate.wait(timeout=10)
            try:
                s.add_package(p, exist_ok=True)
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)
        threads = [threading.Thread(target=add, args=(p,)) for p in copies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert s.packages == ["agent_v2_MC60.pkg"]
        got = curl(str(s.url_for("agent_v2_MC60.pkg", "http")), tmp_path / "got")
        assert got.rc == 0 and got.data == data
        # Other bytes under a served name are still refused, and without exist_ok even
        # the same bytes are (a second add is a caller's mistake).
        with pytest.raises(fotabench.ArgumentError, match="other contents"):
            s.add_package(other, exist_ok=True)
        with pytest.raises(fotabench.ArgumentError, match="already served"):
            s.add_package(copies[0])
