"""Hostile and broken clients: malformed HTTP, header floods, slowloris, FTP commands
out of order, path traversal in every spelling, many clients at once. The servers
must not crash, must not serve a byte from outside their directory, and must keep
serving everyone else."""
from __future__ import annotations

import ftplib
import os
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotabench import PackageServer
from fotabench.server import Limits
from server_helpers import CURL, LOOPBACK, curl, curl_ftp_url, needs_curl, tool_env

SIZE = 50_000
SECRET = b"TOP-SECRET-outside-the-served-directory"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("badinput")
    data = os.urandom(SIZE)
    (d / "APP.bin").write_bytes(data)
    (d / "secret.txt").write_bytes(SECRET)
    limits = Limits(header_timeout=1.0, idle_timeout=2.0, max_headers=50,
                    max_header_line=4096, max_head_bytes=32768)
    with PackageServer([d / "APP.bin"], limits=limits, ftp_auth_failed_delay=0.1) as s:
        s.url_for("APP.bin", "http", module="dut1")
        # a symlink planted inside the served directory, pointing out of it
        os.symlink(d / "secret.txt", s.root / "link.txt")
        os.symlink("/etc", s.root / "etc_link")
        yield s, data, d


def exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or timeout)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as c:
        try:
            c.sendall(payload)
        except OSError:
            pass
        out = b""
        while True:
            try:
                b = c.recv(65536)
            except OSError:
                break
            if not b:
                break
            out += b
        return out


def status_of(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), answer[:100]
    return int(line.split()[1])


def assert_still_serving(srv, data) -> None:
    answer = exchange(srv.http_port, b"GET /APP.bin HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
    assert status_of(answer) == 200 and answer.endswith(data)


# --- malformed HTTP -----------------------------------------------------------------------

@pytest.mark.parametrize("payload, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET\r\n\r\n", 400),
    (b"GET /APP.bin\r\n\r\n", 400),                     # HTTP/0.9 style
    (b"GET  /APP.bin HTTP/1.1\r\n\r\n", 400),           # two spaces
    (b"GET /APP.bin HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET /APP.bin HTTP/2.0\r\n\r\n", 505),
    (b"GET /APP.bin FOO/1.1\r\n\r\n", 400),
    (b"\x00\x01\x02\xff\r\n\r\n", 400),
    (b"G\x00T /APP.bin HTTP/1.1\r\n\r\n", 400),
    (b"GET /APP.bin HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"GET /APP.bin HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    (b"GET /APP.bin HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET /APP.bin HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     400),
    (b"GET /APP.bin HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET /APP%zz.bin HTTP/1.1\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\n\r\n", 400),
    (b"POST /APP.bin HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 405),
    (b"DELETE /APP.bin HTTP/1.1\r\nConnection: close\r\n\r\n", 405),
    (b"PUT /new.bin HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405),
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", 414),
])
def test_malformed_requests(env, payload, status):
    srv, data, _ = env
    answer = exchange(srv.http_port, payload)
    assert status_of(answer) == status
    assert not answer.endswith(data)
    assert_still_serving(srv, data)


def test_lenient_where_harmless(env):
    srv, data, _ = env
    for payload in (b"GET /APP.bin HTTP/1.0\r\n\r\n",              # 1.0, no Host
                    b"GET /APP.bin HTTP/1.1\nHost: x\nConnection: close\n\n",  # bare LF
                    b"\r\nGET /APP.bin HTTP/1.1\r\nConnection: close\r\n\r\n",
                    b"GET http://127.0.0.1/APP.bin?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n"):
        answer = exchange(srv.http_port, payload)
        assert status_of(answer) == 200 and answer.endswith(data), payload


def test_header_floods(env):
    srv, data, _ = env
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    assert status_of(exchange(srv.http_port, b"GET /APP.bin HTTP/1.1\r\n" + many + b"\r\n")) \
        == 431
    huge = b"X-Big: " + b"v" * 20000 + b"\r\n"
    assert status_of(exchange(srv.http_port, b"GET /APP.bin HTTP/1.1\r\n" + huge + b"\r\n")) \
        == 431
    # a head that never ends: cut at the size limit, not read into memory forever
    with socket.create_connection((LOOPBACK, srv.http_port), timeout=5) as c:
        c.sendall(b"GET /APP.bin HTTP/1.1\r\n")
        answer = b""
        try:
            for i in range(10000):
                c.sendall(b"X-%d: %s\r\n" % (i, b"y" * 100))
        except OSError:
            pass                                     # the server closed on us: fine
        try:
            while (b := c.recv(65536)):
                answer += b
        except OSError:
            pass
    assert answer == b"" or status_of(answer) == 431
    assert_still_serving(srv, data)


def test_slowloris_does_not_hold_up_others(env, tmp_path):
    srv, data, _ = env
    stop = threading.Event()
    answers: list[bytes] = []

    def loris():
        c = socket.create_connection((LOOPBACK, srv.http_port), timeout=5)
        got = b""
        try:
            c.sendall(b"GET /APP.bin HTTP/1.1\r\n")
            for i in range(1000):
                if stop.wait(0.1):
                    break
                c.sendall(b"X")                    # one byte at a time, forever
        except OSError:
            pass
        try:
            while (b := c.recv(4096)):
                got += b
        except OSError:
            pass
        c.close()
        answers.append(got)

    threads = [threading.Thread(target=loris) for _ in range(30)]
    for t in threads:
        t.start()
    try:
        if CURL:
            for _ in range(3):
                f = curl(str(srv.url_for("APP.bin", "http")), tmp_path / "o", timeout=5)
                assert f.rc == 0 and f.data == data
        else:
            assert_still_serving(srv, data)
        for t in threads:
            t.join(10)                  # header_timeout is 1 s: all cut long before
        assert not any(t.is_alive() for t in threads)
    finally:
        stop.set()
    assert len(answers) == 30
    assert all(a == b"" or status_of(a) == 408 for a in answers)
    assert sum(1 for a in answers if a) >= 25


def test_idle_and_half_sent_connections_are_closed(env):
    srv, data, _ = env
    t = time.monotonic()
    with socket.create_connection((LOOPBACK, srv.http_port), timeout=10) as c:
        answer = c.recv(4096)                         # nothing sent at all
        assert status_of(answer) == 408
    assert time.monotonic() - t < 5


# --- path traversal -----------------------------------------------------------------------

TRAVERSALS = [
    "/../secret.txt", "/../../../../etc/passwd", "/..%2fsecret.txt", "/%2e%2e/secret.txt",
    "/%2e%2e%2fsecret.txt", "/%2E%2E%2Fsecret.txt", "/%252e%252e/secret.txt",
    "/..%5csecret.txt", "/..\\secret.txt", "/m/../APP.bin", "/m/%2e%2e/%2e%2e/secret.txt",
    "/m/dut1/../../secret.txt", "//etc/passwd", "/etc/passwd", "/%2fetc%2fpasswd",
    "/APP.bin%00.txt", "/APP.bin%00", "/link.txt", "/etc_link/passwd", "/./APP.bin",
    "/APP.bin/", "/APP.bin/..", "/.%2e/secret.txt", "/%c0%ae%c0%ae/secret.txt",
    "/m/dut1/%2e%2e%2f%2e%2e%2fsecret.txt", "http://127.0.0.1/../secret.txt",
    "/m//dut1/APP.bin",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_http_path_traversal(env, path):
    srv, data, _ = env
    answer = exchange(srv.http_port, f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n"
                      .encode("latin-1"))
    assert status_of(answer) in (400, 404)
    assert SECRET not in answer and b"root:" not in answer and not answer.endswith(data)


@needs_curl
def test_http_traversal_with_curl_path_as_is(env, tmp_path):
    srv, _, _ = env
    for path in ("/../secret.txt", "/m/../../secret.txt", "/%2e%2e/secret.txt"):
        f = curl(f"http://{LOOPBACK}:{srv.http_port}{path}", tmp_path / "o", "--path-as-is")
        assert SECRET not in f.data and " 404 " in f.headers.split("\r\n")[0] + " "


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "%2e", "%2E%2e", "%2f", "%5c", "\\", "%00",
                                 "APP.bin", "secret.txt", "m", "dut1", "etc", "passwd",
                                 "link.txt", "/", "//", "%25", "%c0%af", "~"]),
                min_size=1, max_size=8))
def test_http_paths_never_escape(env, parts):
    srv, data, _ = env
    path = "/" + "/".join(parts)
    answer = exchange(srv.http_port, f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n"
                      .encode("latin-1"))
    st_ = status_of(answer)
    assert SECRET not in answer and b"root:" not in answer
    if st_ == 200:
        assert path in ("/APP.bin", "/m/dut1/APP.bin") and answer.endswith(data)
    else:
        assert st_ in (400, 404)


def ftp_login(srv) -> ftplib.FTP:
    f = ftplib.FTP()
    f.connect(LOOPBACK, srv.ftp_port, timeout=10)
    f.login(srv.user, srv.password)
    return f


@pytest.mark.parametrize("path", ["../secret.txt", "../../../../etc/passwd", "/etc/passwd",
                                  "/../secret.txt", "link.txt", "etc_link/passwd",
                                  "m/../../secret.txt", "..\\secret.txt", "%2e%2e/secret.txt",
                                  "APP.bin\x00.txt", "~/secret.txt"])
def test_ftp_path_traversal(env, path):
    srv, data, _ = env
    f = ftp_login(srv)
    try:
        for cmd in (f"SIZE {path}", f"RETR {path}"):
            with pytest.raises(ftplib.error_perm) as e:
                if cmd.startswith("RETR"):
                    f.retrbinary(cmd, lambda b: pytest.fail("data was sent"))
                else:
                    f.sendcmd(cmd)
            assert str(e.value)[:3] in ("550", "501", "553")
        f.sendcmd("CWD /")
        try:
            f.cwd("../../..")
        except ftplib.error_perm:
            pass
        assert f.pwd() == "/"                       # cannot climb out of the root
    finally:
        f.close()
    # still serving
    f = ftp_login(srv)
    try:
        chunks: list[bytes] = []
        f.retrbinary("RETR APP.bin", chunks.append)
        assert b"".join(chunks) == data
    finally:
        f.close()


# --- FTP out of order ---------------------------------------------------------------------

def test_ftp_commands_out_of_order(env):
    srv, data, _ = env
    f = ftplib.FTP()
    f.connect(LOOPBACK, srv.ftp_port, timeout=10)
    try:
        def code(cmd: str) -> str:
            try:
                return f.sendcmd(cmd)[:3]
            except ftplib.all_errors as e:
                return str(e)[:3]
        assert code("RETR APP.bin") == "530"
        assert code("SIZE APP.bin") == "530"
        assert code("CWD /m") == "530"
        assert code("PASV") == "530"
        assert code("PASS " + srv.password) == "503"        # PASS before USER
        assert code("NOSUCHCMD x") == "500"
        assert code("USER " + srv.user) == "331"
        assert code("PASS " + srv.password) == "230"
        assert code("PASS " + srv.password) == "503"        # twice
        assert code("TYPE X") in ("501", "504")
        f.voidcmd("TYPE I")
        assert code("REST 100") == "350"
        with pytest.raises(ftplib.error_perm, match="554"):  # no resume here
            f.retrbinary("RETR APP.bin", lambda b: None)
        chunks: list[bytes] = []
        f.retrbinary("RETR APP.bin", chunks.append)
        assert b"".join(chunks) == data
        # RETR with no data connection: pyftpdlib answers 150 and waits for one; the
        # client may leave and the server carries on
        assert code("RETR APP.bin") == "150"
    finally:
        f.close()
    f = ftp_login(srv)
    f.close()
    # the RETR whose data connection never opened is still recorded
    left = "left before the data connection opened"
    rec = next(r for r in srv.wait_for(lambda rs: any(r.detail == left for r in rs),
                                        timeout=10) if r.detail == left)
    assert rec.method == "RETR" and rec.outcome == "client_closed" and rec.bytes_sent == 0


def test_ftp_garbage_on_the_control_connection(env):
    srv, data, _ = env
    answer = exchange(srv.ftp_port, b"\x00\xff\xfe garbage\r\n" * 20 + b"X" * 20000
                      + b"\r\nQUIT\r\n")
    assert answer.startswith(b"220")
    assert b"221" in answer
    f = ftp_login(srv)
    f.close()


# --- many clients at once ------------------------------------------------------------------

@needs_curl
def test_many_clients_at_once(env, tmp_path):
    srv, data, _ = env
    n_http, n_ftp = 200, 40
    http_url = str(srv.url_for("APP.bin", "http"))
    ftp_url = curl_ftp_url(srv.url_for("APP.bin", "ftp"))
    cfg = tmp_path / "curl.cfg"
    lines = []
    for i in range(n_http):
        lines += [f'url = "{http_url}"', f'output = "{tmp_path}/h{i}"']
    for i in range(n_ftp):
        lines += [f'url = "{ftp_url}"', f'output = "{tmp_path}/f{i}"']
    cfg.write_text("\n".join(lines) + "\n")
    before = len(srv.records)
    r = subprocess.run([CURL, "-sS", "--parallel", "--parallel-max", "240", "--max-time",
                        "30", "-K", str(cfg)], capture_output=True, text=True, timeout=60,
                       env=tool_env())
    assert r.returncode == 0, r.stderr[-2000:]
    for i in range(n_http):
        assert (tmp_path / f"h{i}").read_bytes() == data
    for i in range(n_ftp):
        assert (tmp_path / f"f{i}").read_bytes() == data
    recs = srv.wait_for(lambda rs: len([x for x in rs[before:] if x.outcome == "complete"])
                        >= n_http + n_ftp, timeout=20)[before:]
    assert len([x for x in recs if x.protocol == "http" and x.outcome == "complete"]) == n_http
    assert len([x for x in recs if x.protocol == "ftp" and x.method == "RETR"]) == n_ftp


def test_connection_limit_answers_503(tmp_path):
    (tmp_path / "A.bin").write_bytes(b"a" * 1000)
    with PackageServer([tmp_path / "A.bin"], ftp=None,
                       limits=Limits(max_connections=5, header_timeout=5)) as s:
        held = [socket.create_connection((LOOPBACK, s.http_port), timeout=5)
                for _ in range(5)]
        try:
            s.wait_records(0, timeout=1)
            # the 6th is answered 503 at once, the held ones are unaffected
            deadline = time.monotonic() + 10
            while True:
                answer = exchange(s.http_port, b"")
                if answer and status_of(answer) == 503:
                    break
                assert time.monotonic() < deadline
        finally:
            for c in held:
                c.close()
        deadline = time.monotonic() + 10
        while True:                      # slots free again once the held ones close
            answer = exchange(s.http_port, b"GET /A.bin HTTP/1.1\r\nConnection: close\r\n\r\n")
            if status_of(answer) == 200:
                break
            assert time.monotonic() < deadline
