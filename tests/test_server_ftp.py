"""The FTP package server against real clients (curl, wget, and the module's own
command sequence through ftplib): passive mode, user/password, CWD/PWD, TYPE I,
SIZE, RETR, read-only, records, and the faults as the client sees them."""
from __future__ import annotations

import ftplib
import os

import pytest

from fotabench import Fault, PackageServer
from server_helpers import LOOPBACK, curl, curl_ftp_url, needs_curl, needs_wget, wget

pytestmark = needs_curl

SIZE = 100_000


@pytest.fixture
def pkg(tmp_path):
    data = os.urandom(SIZE)
    p = tmp_path / "APP.bin"
    p.write_bytes(data)
    return p, data


@pytest.fixture
def srv(pkg):
    with PackageServer([pkg[0]], http=None, user="bench", password="s3cret",
                       ftp_auth_failed_delay=0.1) as s:
        yield s


def module_fetch(url, timeout=10):
    """What the module's core does (opencpu-fota.md §4): USER, PASS, TYPE I, passive,
    CWD to the URL's directory, SIZE, RETR. Returns (size answer, bytes, pwd)."""
    f = ftplib.FTP()
    f.connect(url.host, url.port, timeout=timeout)
    try:
        f.login(url.user, url.password)
        f.voidcmd("TYPE I")
        f.set_pasv(True)
        f.cwd(url.path)
        pwd = f.pwd()
        size = f.size(url.file)
        chunks: list[bytes] = []
        f.retrbinary(f"RETR {url.file}", chunks.append)
        return size, b"".join(chunks), pwd
    finally:
        f.close()


def test_module_sequence_byte_exact(srv, pkg):
    url = srv.url_for("APP.bin", "ftp", module="dut3")
    assert str(url) == f"ftp://{LOOPBACK}/m/dut3/APP.bin:{srv.ftp_port}@bench:s3cret"
    size, data, pwd = module_fetch(url)
    assert size == SIZE and data == pkg[1] and pwd == "/m/dut3"
    (rec,) = srv.wait_records(1, timeout=10, method="RETR")
    assert rec.protocol == "ftp" and rec.client == LOOPBACK and rec.module == "dut3"
    assert rec.file == "APP.bin" and rec.path == "/m/dut3/APP.bin"
    assert rec.bytes_sent == SIZE and rec.size == SIZE and rec.status == 226
    assert rec.outcome == "complete" and rec.start_ns < rec.end_ns and rec.throughput > 0


def test_curl_byte_exact(srv, pkg, tmp_path):
    f = curl(curl_ftp_url(srv.url_for("APP.bin", "ftp")), tmp_path / "o")
    assert f.rc == 0, f.stderr
    assert f.data == pkg[1]


@needs_wget
def test_wget_byte_exact(srv, pkg, tmp_path):
    f = wget(curl_ftp_url(srv.url_for("APP.bin", "ftp", module="w1")), tmp_path / "o")
    assert f.rc == 0, f.stderr
    assert f.data == pkg[1]


def test_url_rules_apply(pkg, tmp_path):
    long = tmp_path / "APPGS3MDM32A01_Upgrade_Package.bin"      # 34 characters
    long.write_bytes(pkg[1])
    import fotabench
    with PackageServer([long], http=0, ftp=0) as s:
        assert str(s.url_for(long, "http")).endswith("/APPGS3MDM32A01_Upgrade_Package.bin")
        with pytest.raises(fotabench.UrlError, match="24"):
            s.url_for(long, "ftp")


def test_read_only_and_wrong_password(srv, pkg):
    f = ftplib.FTP()
    f.connect(LOOPBACK, srv.ftp_port, timeout=10)
    try:
        with pytest.raises(ftplib.error_perm, match="530"):
            f.login("bench", "wrong")
        with pytest.raises(ftplib.error_perm, match="530"):
            f.login("anonymous", "x@y")
        f.login("bench", "s3cret")
        import io
        for op in (lambda: f.storbinary("STOR new.bin", io.BytesIO(b"x")),
                   lambda: f.delete("APP.bin"), lambda: f.mkd("d"),
                   lambda: f.rename("APP.bin", "B.bin")):
            with pytest.raises(ftplib.error_perm, match="55[03]"):
                op()
        assert f.nlst() == ["APP.bin"]
    finally:
        f.close()
    assert pkg[1] == srv.root.joinpath("APP.bin").read_bytes()
    recs = srv.wait_records(2, timeout=10, method="PASS")
    assert all(r.outcome == "rejected" and r.status == 530 for r in recs)


# --- faults ----------------------------------------------------------------------------

def test_login_fail_once_then_ok(srv, pkg, tmp_path):
    srv.add_fault(Fault.login_fail(times=1))
    url = srv.url_for("APP.bin", "ftp")
    f = curl(curl_ftp_url(url), tmp_path / "o")
    assert f.rc == 67, f.stderr                     # "access denied: 530"
    f = curl(curl_ftp_url(url), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1]
    recs = srv.wait_records(2, timeout=10)
    assert recs[0].faults == ["login_fail"] and recs[0].outcome == "fault_injected"
    assert recs[1].outcome == "complete"


def test_size_lie(srv, pkg):
    srv.add_fault(Fault.size_lie(123, file="APP.bin"))
    size, data, _ = module_fetch(srv.url_for("APP.bin", "ftp"))
    assert size == 123 and data == pkg[1]
    rec = srv.wait_records(1, timeout=10, method="SIZE")[0]
    assert rec.outcome == "fault_injected" and rec.size == SIZE


def test_truncate_agrees_with_size(srv, pkg, tmp_path):
    srv.add_fault(Fault.truncate(at=3000, times=1))
    size, data, _ = module_fetch(srv.url_for("APP.bin", "ftp"))
    assert size == 3000 and data == pkg[1][:3000]
    assert module_fetch(srv.url_for("APP.bin", "ftp"))[1] == pkg[1]


@pytest.mark.parametrize("at, at_percent, expect", [(4321, None, 4321), (None, 25, SIZE // 4)])
def test_drop(srv, pkg, tmp_path, at, at_percent, expect):
    srv.add_fault(Fault.drop(at=at, at_percent=at_percent, times=1))
    url = srv.url_for("APP.bin", "ftp")
    f = curl(curl_ftp_url(url), tmp_path / "o")
    assert f.rc in (18, 56), f.stderr               # partial file / connection lost
    assert f.data == pkg[1][:expect]
    (rec,) = srv.wait_records(1, timeout=10, method="RETR")
    assert rec.outcome == "fault_injected" and rec.bytes_sent == expect
    # the module's client: the control connection is gone, no 226
    srv.add_fault(Fault.drop(at=100, times=1))
    with pytest.raises((EOFError, OSError, ftplib.Error)):
        module_fetch(url)
    assert module_fetch(url)[1] == pkg[1]


def test_corrupt(srv, pkg, tmp_path):
    srv.add_fault(Fault.corrupt(at_percent=50, count=2))
    f = curl(curl_ftp_url(srv.url_for("APP.bin", "ftp")), tmp_path / "o")
    assert f.rc == 0 and len(f.data) == SIZE
    h = SIZE // 2
    assert [i for i in range(SIZE) if f.data[i] != pkg[1][i]] == [h, h + 1]


def test_throttle(srv, pkg, tmp_path):
    srv.add_fault(Fault.throttle("800kbit"))        # 100 kB/s: 100 kB in 1 s
    f = curl(curl_ftp_url(srv.url_for("APP.bin", "ftp")), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1]
    assert f.elapsed >= 0.8
    (rec,) = srv.wait_records(1, timeout=10, method="RETR")
    assert rec.outcome == "complete" and rec.faults == ["throttle"]


def test_stall(srv, pkg, tmp_path):
    srv.add_fault(Fault.stall(1.0, at=10_000))
    size, data, _ = module_fetch(srv.url_for("APP.bin", "ftp"))
    assert data == pkg[1]
    (rec,) = srv.wait_records(1, timeout=10, method="RETR")
    assert rec.duration_s >= 0.8


def test_refuse_and_slow_accept(srv, pkg, tmp_path):
    srv.add_fault(Fault.refuse(times=1, protocol="ftp"))
    url = srv.url_for("APP.bin", "ftp")
    f = curl(curl_ftp_url(url), tmp_path / "o")
    assert f.rc in (7, 8, 56), f.stderr             # no greeting: reset
    srv.add_fault(Fault.slow_accept(1.0, times=1))
    f = curl(curl_ftp_url(url), tmp_path / "o")
    assert f.rc == 0 and f.data == pkg[1] and f.elapsed >= 0.8
    recs = srv.records
    assert recs[0].faults == ["refuse"]
    assert [r for r in recs if r.method == "RETR"][0].faults == ["slow_accept"]


def test_faults_by_module(srv, pkg, tmp_path):
    srv.add_fault(Fault.truncate(at=10, client="dut2"))
    assert module_fetch(srv.url_for("APP.bin", "ftp", module="dut1"))[1] == pkg[1]
    assert module_fetch(srv.url_for("APP.bin", "ftp", module="dut2"))[1] == pkg[1][:10]


def test_concurrent_cwd_leaves_the_process_cwd_alone(srv, pkg):
    """pyftpdlib's CWD did os.chdir and put it back afterwards: with a thread per
    session, two sessions' CWDs at once left the whole bench process inside a module's
    directory of the server (the bench's relative run directory then vanished). CWD
    must change the session's directory only."""
    import threading

    names = [f"m{i}" for i in range(8)]
    urls = [srv.url_for(pkg[0], "ftp", module=n) for n in names]
    before = os.getcwd()
    seen: list[str] = []
    errors: list[BaseException] = []
    go = threading.Barrier(len(urls))

    def session(url):
        try:
            f = ftplib.FTP()
            f.connect(url.host, url.port, timeout=10)
            f.login(url.user, url.password)
            go.wait(10)
            for _ in range(40):
                f.cwd(url.path)
                seen.append(f.pwd())
                f.cwd("/")
            f.quit()
        except BaseException as e:  # reported below, with the thread's own error
            errors.append(e)

    threads = [threading.Thread(target=session, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(seen) == 40 * len(urls)          # every CWD really ran
    assert {p.rstrip("/").rsplit("/", 1)[-1] for p in seen} == set(names)
    assert os.getcwd() == before
