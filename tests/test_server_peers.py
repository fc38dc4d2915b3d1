"""The virtual module's downloads, end to end: from fotabench's own package servers
(with faults the module must survive) and from real nginx and vsftpd, so the module
side is not tuned only to our servers. Expected state sequences are the SDK's real
ones (opencpu-fota.md §2)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time

import pytest

import fotabench
from fotabench import Fault, ModuleUrl, PackageServer
from fotabench.sim import VirtualModule, sim_binary
from server_helpers import (LOOPBACK, NGINX, VSFTPD, Nginx, Vsftpd, needs_nginx,
                            needs_vsftpd)
from vm_helpers import Uart, build_app, collect_states, wait_ready

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys")

FAST = dict(boot_timing="fast", link_rate="unlimited", latency_ms=0)
FTP_OK = [("UP_START", 0), ("UP_CONNECTING", 0), ("UP_CONNECTED", 0),
          ("UP_GETTING_FILE", 0), ("UP_GET_FILE_OK", 100), ("UP_SYSTEM_REBOOT", 100)]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("peer_images")
    try:
        v1 = build_app("1.0.0", d / "app_v1.bin")
        v2 = build_app("2.0.0", d / "app_v2.bin")
    except (subprocess.CalledProcessError, FileNotFoundError, RuntimeError) as e:
        pytest.skip(f"the virtual module's app could not be built: {e}")
    if not sim_binary().exists():
        pytest.skip(f"{sim_binary()} is missing: make -C firmware sim")
    pkg = d / "v2.bin"
    fotabench.Package.build(v2, pkg)
    return {"v1": v1, "pkg": pkg, "data": pkg.read_bytes()}


@pytest.fixture
def vm(images):
    state = tempfile.mkdtemp(prefix="fbsv")     # short: pty and socket paths
    try:
        with VirtualModule(images["v1"], state, **FAST) as m:
            with Uart(m.uart1) as u:
                wait_ready(u, "1.0.0")
                yield u
    finally:
        shutil.rmtree(state, ignore_errors=True)


def upgrade(u: Uart, url, retry: bool = False) -> list[tuple[str, int]]:
    """AT+FBUPG and the states until it ends. ``retry``: the virtual module posts
    UP_UPGRADFAILED a moment before its FOTA worker is free again, and a start in
    that moment returns -1 (+FBUPG: -1): as a bench would, try again until it starts
    (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        r = u.command(f'AT+FBUPG="{url}"')
        if r == ["OK"] or not retry:
            break
        assert r == ["+FBUPG: -1", "OK"] and time.monotonic() < deadline, r
        u.quiet(0.05)
    assert r == ["OK"]
    return collect_states(u, timeout=30)


def assert_http_ok(states):
    assert states[:4] == [("UP_START", 0), ("UP_CONNECTING", 0), ("UP_CONNECTED", 0),
                          ("UP_GETTING_FILE", 0)], states
    assert states[-1] == ("UP_SYSTEM_REBOOT", 100), states
    assert "UP_GET_FILE_OK" not in [s for s, _ in states]


def rebooted_into_v2(u: Uart) -> None:
    u.expect("^RDY$", 10)
    wait_ready(u, "2.0.0")


# --- fotabench's servers ------------------------------------------------------------------

def test_module_http_from_package_server(images, vm):
    with PackageServer([images["pkg"]], ftp=None) as srv:
        url = srv.url_for("v2.bin", "http", module="vm1")
        t0 = fotabench.now_ns()
        assert_http_ok(upgrade(vm, url))
        (rec,) = srv.wait_records(1, timeout=10)
        t1 = fotabench.now_ns()
    rebooted_into_v2(vm)
    assert rec.module == "vm1" and rec.outcome == "complete"
    assert rec.bytes_sent == len(images["data"]) and rec.client == LOOPBACK
    assert t0 < rec.start_ns < rec.end_ns < t1         # one clock with the bench


def test_module_ftp_from_package_server(images, vm):
    with PackageServer([images["pkg"]], http=None, user="bench", password="pw") as srv:
        states = upgrade(vm, srv.url_for("v2.bin", "ftp", module="vm2"))
        assert states == FTP_OK
        (rec,) = srv.wait_records(1, timeout=10, method="RETR")
    rebooted_into_v2(vm)
    assert rec.module == "vm2" and rec.outcome == "complete"
    assert rec.bytes_sent == len(images["data"])


def test_module_survives_http_drop_and_retries(images, vm):
    with PackageServer([images["pkg"]], ftp=None) as srv:
        srv.add_fault(Fault.drop(at_percent=50, times=1))
        url = srv.url_for("v2.bin", "http", module="vm3")
        states = upgrade(vm, url)
        assert states[-1] == ("UP_UPGRADFAILED", 0), states
        assert vm.command("AT+FBVER?")[0].startswith('+FBVER: "1.0.0"')
        assert_http_ok(upgrade(vm, url, retry=True))    # the retry succeeds
        recs = srv.wait_records(2, timeout=10)
    rebooted_into_v2(vm)
    assert [r.outcome for r in recs] == ["fault_injected", "complete"]
    assert recs[0].bytes_sent == len(images["data"]) // 2


@pytest.mark.parametrize("fault", [Fault.status(500, times=1), Fault.chunked(times=1),
                                   Fault.redirect(times=1), Fault.corrupt(at_percent=60,
                                                                          times=1),
                                   Fault.truncate(at_percent=90, times=1)],
                         ids=["500", "chunked", "redirect", "corrupt", "truncate"])
def test_module_refuses_bad_http_answers(images, vm, fault):
    with PackageServer([images["pkg"]], ftp=None) as srv:
        srv.add_fault(fault)
        url = srv.url_for("v2.bin", "http")
        states = upgrade(vm, url)
        assert states[-1] == ("UP_UPGRADFAILED", 0), states
        assert vm.command("AT+FBVER?")[0].startswith('+FBVER: "1.0.0"')
        assert_http_ok(upgrade(vm, url, retry=True))
        recs = srv.wait_records(2, timeout=10)
    rebooted_into_v2(vm)
    # the fault really was served the first time, and only then (a chunked answer is
    # cut by the module at its headers: the server records client_closed)
    assert recs[0].faults and recs[0].outcome in ("fault_injected", "client_closed"), recs
    assert not recs[1].faults and recs[1].outcome == "complete", recs


@pytest.mark.parametrize("fault", [Fault.drop(at=1000, times=1), Fault.size_lie(100, times=1),
                                   Fault.corrupt(at_percent=50, times=1),
                                   Fault.truncate(at_percent=50, times=1)],
                         ids=["drop", "size_lie", "corrupt", "truncate"])
def test_module_survives_ftp_faults_and_retries(images, vm, fault):
    with PackageServer([images["pkg"]], http=None, ftp_auth_failed_delay=0.1) as srv:
        srv.add_fault(fault)
        url = srv.url_for("v2.bin", "ftp", module="vm4")
        states = upgrade(vm, url)
        assert states[-1] == ("UP_UPGRADFAILED", 0), states
        assert vm.command("AT+FBVER?")[0].startswith('+FBVER: "1.0.0"')
        assert upgrade(vm, url, retry=True) == FTP_OK
        retrs = srv.wait_records(2, timeout=10, method="RETR")
        recs = sorted(srv.records, key=lambda r: r.start_ns)
    rebooted_into_v2(vm)
    # the fault really was served (in the first attempt: SIZE for size_lie, RETR for the
    # others), once; the retry's RETR was complete
    faulted = [r for r in recs if r.outcome == "fault_injected"]
    assert len(faulted) == 1 and faulted[0].start_ns < retrs[-1].start_ns, recs
    assert retrs[-1].outcome == "complete", recs


def test_module_core_retries_a_failed_ftp_login(images, vm):
    """The core tries the FTP connection 5 times (spec §2): one failed login is
    absorbed within the same upgrade."""
    with PackageServer([images["pkg"]], http=None, ftp_auth_failed_delay=0.1) as srv:
        srv.add_fault(Fault.login_fail(times=1))
        assert upgrade(vm, srv.url_for("v2.bin", "ftp", module="vm5")) == FTP_OK
        recs = srv.wait_records(2, timeout=10)
    rebooted_into_v2(vm)
    assert [(r.method, r.outcome) for r in recs] == [("PASS", "fault_injected"),
                                                     ("RETR", "complete")]


def test_module_ftp_login_always_failing_ends_in_reset_request(images):
    """Five failed logins: no callback at all, only the reset request (spec §2)."""
    state = tempfile.mkdtemp(prefix="fbsv")
    try:
        with VirtualModule(images["v1"], state, ftp_retry_ms=100, **FAST) as m, \
                Uart(m.uart1) as u, \
                PackageServer([images["pkg"]], http=None, ftp_auth_failed_delay=0.05) as srv:
            wait_ready(u, "1.0.0")
            srv.add_fault(Fault.login_fail())
            assert u.command(f'AT+FBUPG="{srv.url_for("v2.bin", "ftp")}"') == ["OK"]
            u.expect(r"^\+FBRESETREQ$", 20)
            states = [line for _, line in u.history if line.startswith("+FBSTATE:")]
            assert states == ["+FBSTATE: UP_START,0", "+FBSTATE: UP_CONNECTING,0"]
            recs = srv.wait_records(5, timeout=10, method="PASS")
            assert len(recs) == 5 and all(r.outcome == "fault_injected" for r in recs)
            assert not [r for r in srv.records if r.method == "RETR"]
    finally:
        shutil.rmtree(state, ignore_errors=True)


# --- real peers ------------------------------------------------------------------------------

@needs_nginx
def test_module_http_from_nginx(images, vm, tmp_path):
    root = tmp_path / "www"
    (root / "fota").mkdir(parents=True)
    shutil.copy(images["pkg"], root / "fota" / "v2.bin")
    with Nginx(root, tmp_path / "nginx") as ng:
        url = ModuleUrl.http(LOOPBACK, "/fota/v2.bin", port=ng.port)
        assert_http_ok(upgrade(vm, url))
    rebooted_into_v2(vm)


@needs_vsftpd
def test_module_ftp_from_vsftpd(images, vm, tmp_path):
    root = tmp_path / "ftproot"
    (root / "fota").mkdir(parents=True)
    shutil.copy(images["pkg"], root / "fota" / "v2.bin")
    for p in (tmp_path, root, root / "fota"):
        p.chmod(0o755)
    with Vsftpd(root, tmp_path / "vsftpd") as vs:
        url = ModuleUrl.ftp(LOOPBACK, "/fota/v2.bin", port=vs.port, user=vs.user,
                            password=vs.password)
        assert upgrade(vm, url) == FTP_OK
    rebooted_into_v2(vm)


def test_peer_servers_serve_byte_exact(images, tmp_path):
    """The launchers themselves: nginx and vsftpd answer curl byte-exact (so a module
    failure above is the module's, not the peer's setup)."""
    from server_helpers import CURL, curl
    if CURL is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    root = tmp_path / "r"
    root.mkdir()
    shutil.copy(images["pkg"], root / "v2.bin")
    for p in (tmp_path, root):
        p.chmod(0o755)
    ran = 0
    if NGINX is not None:
        with Nginx(root, tmp_path / "ng") as ng:
            assert curl(ng.url("v2.bin"), tmp_path / "o1").data == images["data"]
            ran += 1
    if VSFTPD is not None:
        with Vsftpd(root, tmp_path / "vs") as vs:
            assert curl(vs.url("v2.bin"), tmp_path / "o2").data == images["data"]
            ran += 1
    if not ran:
        pytest.skip("neither nginx nor vsftpd is installed (apt-get install nginx vsftpd)")
