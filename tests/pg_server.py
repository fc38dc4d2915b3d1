"""A throw-away PostgreSQL server for tests and bench/perf/records.py.

Debian's `postgresql` package (binaries in /usr/lib/postgresql/<N>/bin): initdb in a
temporary directory, listening on 127.0.0.1 at a free port and on a unix socket in that
directory, trust authentication for the superuser ``fotabench``. PostgreSQL refuses to
run as root, so when the tests run as root the server runs as ``nobody`` (present on every
Debian system, a fresh chroot included) and its directory is given to that user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any, Optional


def pg_bin() -> Optional[Path]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; "
                               "`make test-deps` does it)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="fotabench-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self._pg(["initdb", "-D", str(self.data), "-U", "fotabench", "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--locale=C"])
        self.running = False

    def _pg(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(self.root),
               "TZ": "UTC"}
        r = subprocess.run([str(self.bindir / argv[0])] + argv[1:], capture_output=True,
                           text=True, env=env, cwd=self.root, timeout=120,
                           **self._run_as, **kw)
        if r.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr}{r.stdout}\n{log}")
        return r

    def start(self) -> None:
        # fsync off for tests (they need a server that restarts, not one that survives a
        # power cut); on (PostgreSQL's default) for benchmarks: ``durable``.
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                f"-c fsync={'on' if self.durable else 'off'} -c max_connections=60")
        self._pg(["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                  "-t", "60", "start"])
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._pg(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])
            self.running = False

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://fotabench@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh, empty database on this server: its DSN."""
        import psycopg
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
