"""Helpers for the package server tests: real clients (curl, wget) and real peers
(nginx, vsftpd) started on loopback ports from private config files.

Nothing here uses a system service: nginx and vsftpd run in the foreground as
children of the test, with their configuration, logs and pid files in a temporary
directory, and are killed at the end of the test.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from tool_env import tool_env  # noqa: F401  (re-exported for the server tests)

LOOPBACK = "127.0.0.1"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
VSFTPD = shutil.which("vsftpd") or ("/usr/sbin/vsftpd" if os.path.exists("/usr/sbin/vsftpd")
                                    else None)
CURL = shutil.which("curl")
WGET = shutil.which("wget")

needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed "
                                "(apt-get install curl; make test-deps installs it)")
needs_wget = pytest.mark.skipif(WGET is None, reason="wget is not installed "
                                "(apt-get install wget; make test-deps installs it)")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed "
                                 "(apt-get install nginx; make test-deps installs it)")
needs_vsftpd = pytest.mark.skipif(VSFTPD is None, reason="vsftpd is not installed "
                                  "(apt-get install vsftpd; make test-deps installs it)")


@dataclass
class Fetch:
    rc: int
    data: bytes
    stderr: str
    elapsed: float
    headers: str = ""


def curl(url: str, out: Path, *args: str, timeout: float = 30) -> Fetch:
    """curl URL -> out; returns exit code, the bytes written and the elapsed time.
    ``-D`` captures the response headers for HTTP."""
    assert CURL is not None
    hdr = out.with_name(out.name + ".headers")
    for p in (out, hdr):
        if p.exists():
            p.unlink()
    t = time.monotonic()
    r = subprocess.run([CURL, "-sS", "--max-time", str(timeout), "-o", str(out),
                        "-D", str(hdr), *args, url],
                       capture_output=True, text=True, timeout=timeout + 10, env=tool_env())
    elapsed = time.monotonic() - t
    data = out.read_bytes() if out.exists() else b""
    headers = hdr.read_text("latin-1") if hdr.exists() else ""
    return Fetch(r.returncode, data, r.stderr, elapsed, headers)


def wget(url: str, out: Path, *args: str, timeout: float = 30) -> Fetch:
    assert WGET is not None
    if out.exists():
        out.unlink()
    t = time.monotonic()
    r = subprocess.run([WGET, "-q", "--tries=1", f"--timeout={timeout}", "-O", str(out),
                        *args, url], capture_output=True, text=True, timeout=timeout + 10,
                       env=tool_env())
    elapsed = time.monotonic() - t
    data = out.read_bytes() if out.exists() else b""
    return Fetch(r.returncode, data, r.stderr, elapsed)


def curl_ftp_url(module_url) -> str:
    """The module's FTP URL (ftp://host/dir/file:port@user:pw) in the RFC form
    curl and wget read (ftp://user:pw@host:port/dir/file)."""
    u = module_url
    d = u.path.rstrip("/")
    return f"ftp://{u.user}:{u.password}@{u.host}:{u.port}{d}/{u.file}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)   # polling a port that is not open yet; bounded by timeout
    raise TimeoutError(f"nothing listening on {LOOPBACK}:{port} after {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Nginx:
    """nginx serving ``root`` on 127.0.0.1:port, foreground, private prefix."""

    def __init__(self, root: Path, workdir: Path, workers: int = 1) -> None:
        assert NGINX is not None
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.workers = workers
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    def _conf(self, port: int) -> str:
        w = self.workdir
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(f"  {k}_temp_path {w}/{k};" for k in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""{user}worker_processes {self.workers};
daemon off;
master_process on;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  server {{
    listen {LOOPBACK}:{port};
    root {self.root};
    location / {{ }}
  }}
}}
"""

    def start(self) -> "Nginx":
        self.workdir.mkdir(parents=True, exist_ok=True)
        last: Exception = RuntimeError("nginx did not start")
        for _ in range(3):                   # a free port can be taken in between
            port = free_port()
            conf = self.workdir / "nginx.conf"
            conf.write_text(self._conf(port))
            self.proc = subprocess.Popen([NGINX, "-p", str(self.workdir), "-c", str(conf)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         env=tool_env())
            try:
                wait_listening(port, self.proc)
                self.port = port
                return self
            except (RuntimeError, TimeoutError) as e:
                _stop(self.proc)
                last = e
        err = (self.workdir / "error.log")
        raise RuntimeError(f"{last}: {err.read_text() if err.exists() else ''}")

    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            if self.proc.stderr:
                self.proc.stderr.close()

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Vsftpd:
    """vsftpd serving ``root`` to anonymous on 127.0.0.1:port, passive mode,
    read-only, foreground, no chroot or namespaces (runs as the launching user)."""

    user = "anonymous"
    password = "fotabench"

    def __init__(self, root: Path, workdir: Path) -> None:
        assert VSFTPD is not None
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    def _conf(self, port: int) -> str:
        return f"""listen=YES
listen_ipv6=NO
listen_address={LOOPBACK}
listen_port={port}
background=NO
run_as_launching_user=YES
anonymous_enable=YES
no_anon_password=YES
anon_root={self.root}
anon_world_readable_only=NO
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_address={LOOPBACK}
port_enable=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=NO
vsftpd_log_file={self.workdir}/vsftpd.log
dual_log_enable=NO
syslog_enable=NO
secure_chroot_dir={self.workdir}/empty
max_clients=0
max_per_ip=0
use_localtime=NO
"""

    def start(self) -> "Vsftpd":
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "empty").mkdir(exist_ok=True)
        last: Exception = RuntimeError("vsftpd did not start")
        for _ in range(3):
            port = free_port()
            conf = self.workdir / "vsftpd.conf"
            conf.write_text(self._conf(port))
            os.chmod(conf, 0o600)
            self.proc = subprocess.Popen([VSFTPD, str(conf)], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=tool_env())
            try:
                wait_listening(port, self.proc)
                self.port = port
                return self
            except (RuntimeError, TimeoutError) as e:
                out = self.proc.stdout.read().decode(errors="replace") if (
                    self.proc.poll() is not None and self.proc.stdout) else ""
                _stop(self.proc)
                last = RuntimeError(f"{e}: {out}")
        raise last

    def url(self, name: str) -> str:
        return f"ftp://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            if self.proc.stdout:
                self.proc.stdout.close()

    def __enter__(self) -> "Vsftpd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
