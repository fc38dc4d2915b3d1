"""The FTP package server: pyftpdlib, with the bench's records and faults.

pyftpdlib is a mature, pure-Python, RFC 959/3659 server (passive mode, SIZE, TYPE I,
CWD/PWD) whose ``AbstractedFS`` confines every path to the served root (realpath
checked, so a symlink cannot lead out either). ``ThreadedFTPServer`` gives each
control connection its own thread and I/O loop, so a stalled or throttled transfer
holds up no other module. The user has only the ``e``/``l``/``r`` permissions:
nothing can be written, renamed or deleted.

Hooks: ``handle_accepted`` (refuse), the banner (slow accept), ``PASS`` (login
failure), ``SIZE`` (lies and truncation), ``RETR`` (the body through the fault layer,
otherwise ``sendfile``), the data channel's error path (drop), ``log_transfer``
(the record).
"""
from __future__ import annotations

import errno
import logging
import os
import sys
import threading
import time
from typing import Any, Optional

# pyftpdlib ships no type information.
from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
from pyftpdlib.filesystems import AbstractedFS  # type: ignore[import-untyped]
from pyftpdlib.handlers import DTPHandler, FTPHandler  # type: ignore[import-untyped]
from pyftpdlib.handlers.ftp.producers import FileProducer  # type: ignore[import-untyped]
from pyftpdlib.servers import ThreadedFTPServer  # type: ignore[import-untyped]

from .faults import BodyPlan, DropInjected, FaultSet, ServerStopping
from .http import reset_close
from .records import (CLIENT_CLOSED, COMPLETE, FAULT_INJECTED, REJECTED, RecordLog,
                      RequestRecord)

PACING = frozenset({"throttle", "stall", "slow_accept"})
BODY_FAULTS = frozenset({"throttle", "stall", "drop", "corrupt", "truncate"})
_SENDFILE: bool = FTPHandler.use_sendfile

# pyftpdlib logs every command at INFO and, if logging is not configured at all,
# configures the root logger itself on the first loop: give it a quiet handler.
_log = logging.getLogger("pyftpdlib")
if not _log.handlers:
    _log.addHandler(logging.NullHandler())
    _log.setLevel(logging.WARNING)
    _log.propagate = False


class _FaultProducer:
    """A pyftpdlib producer that pulls the body through a BodyPlan."""

    def __init__(self, plan: BodyPlan, file: Any, stop: threading.Event) -> None:
        self.file = file
        self._it = plan.chunks(file, stop)

    def more(self) -> bytes:
        return next(self._it, b"")


class _DTP(DTPHandler):
    """Data channel: a DropInjected from the producer cuts data and control."""

    def handle_error(self) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, DropInjected):
            ch = self.cmd_channel
            ch._fb_dropped = True
            self._resp = ()
            if getattr(ch, "_fb_reset", False):
                try:
                    reset_close(self.socket)
                except OSError:
                    pass
            self.close()
            ch.close()
            return
        if isinstance(exc, ServerStopping):
            self.cmd_channel._fb_stopped = True
        super().handle_error()


class _SessionFS(AbstractedFS):  # type: ignore[misc]
    """pyftpdlib's filesystem, but CWD changes only the session's directory.

    pyftpdlib's ``chdir`` calls ``os.chdir`` and its ``ftp_CWD`` puts the process back
    afterwards. With a thread per session (ThreadedFTPServer) two CWDs at once leave
    the whole bench process in some module's directory: relative paths of the bench
    (its run directory) then pointed into the server's private tree. The checks chdir
    would make are made here instead; the path was already confined by validpath."""

    def chdir(self, path: str) -> None:
        if not os.path.isdir(path):
            raise OSError(errno.ENOTDIR if os.path.exists(path) else errno.ENOENT,
                          os.strerror(errno.ENOTDIR if os.path.exists(path) else errno.ENOENT))
        if not os.access(path, os.X_OK):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        self.cwd = self.fs2ftp(path)


class _Handler(FTPHandler):
    fb: "FtpServer"            # set on the per-server subclass
    dtp_handler = _DTP
    abstracted_fs = _SessionFS
    banner = "fotabench FTP server ready."
    timeout = 120
    max_login_attempts = 3

    username: str                # pyftpdlib's session attributes this class touches
    _restart_position: int

    # Per-session state (class defaults: pyftpdlib calls add_channel() from
    # within its own __init__).
    _fb_rec: Optional[RequestRecord] = None
    _fb_plan: Optional[BodyPlan] = None
    _fb_dropped = False
    _fb_reset = False
    _fb_stopped = False
    _fb_delay = 0.0
    _fb_banner_due = False
    _fb_pending: list[str] = []

    # --- connection ----------------------------------------------------------------

    def handle(self) -> None:
        slow = self.fb.faults.take(frozenset({"slow_accept"}), "ftp", self.remote_ip)
        if slow:
            self._fb_delay = sum(f.seconds for f in slow)
            self._fb_pending = [f.name for f in slow]
            self._fb_banner_due = True
            return                      # the banner goes out from the session thread
        super().handle()

    def add_channel(self, map: Any = None, events: Any = None) -> None:
        super().add_channel(map, events)
        if self._fb_banner_due:
            self._fb_banner_due = False
            super().handle()

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        # pyftpdlib lets a NUL reach os.path.realpath (ValueError: the session dies
        # with an "unhandled exception"): refuse it as a syntax error instead.
        if "\0" in line:
            self.respond("501 Syntax error: NUL byte in command.")
            return
        super().pre_process_command(line, cmd, arg)

    # --- where the module's identity comes from --------------------------------------

    def _fb_where(self, fspath: str) -> tuple[Optional[str], str, str]:
        """(module, file name, ftp path) of a filesystem path under the root."""
        ftppath = self.fs.fs2ftp(fspath)
        parts = ftppath.strip("/").split("/")
        module = parts[1] if len(parts) == 3 and parts[0] == "m" else None
        return module, parts[-1], ftppath

    def _fb_record(self, method: str, path: str, **kw: Any) -> RequestRecord:
        return RequestRecord("ftp", self.remote_ip, self.remote_port, time.monotonic_ns(),
                             method=method, path=path, **kw)

    # --- commands ---------------------------------------------------------------------

    def ftp_PASS(self, line: str) -> None:
        if not self.authenticated and self.username:
            if self.fb.faults.take(frozenset({"login_fail"}), "ftp", self.remote_ip):
                rec = self._fb_record("PASS", "", status=530, outcome=FAULT_INJECTED,
                                      faults=["login_fail"], detail=f"user {self.username}")
                self.respond("530 Authentication failed.")
                self.username = ""
                self.fb.log.add(rec)
                return
        super().ftp_PASS(line)

    def on_login_failed(self, username: str, password: str) -> None:
        self.fb.log.add(self._fb_record("PASS", "", status=530, outcome=REJECTED,
                                        detail=f"login failed for user {username!r}"))

    def ftp_SIZE(self, path: str) -> None:
        module, name, ftppath = self._fb_where(path)
        if self._current_type == "a" or not self.fs.isfile(self.fs.realpath(path)):
            super().ftp_SIZE(path)
            return
        lies = self.fb.faults.take(frozenset({"size_lie"}), "ftp", self.remote_ip,
                                   module, name)
        if lies:
            value = lies[-1].length
            rec = self._fb_record("SIZE", ftppath, file=name, module=module, status=213,
                                  outcome=FAULT_INJECTED, faults=["size_lie"],
                                  detail=f"SIZE answered {value}")
            try:
                rec.size = self.fs.getsize(path)
            except OSError:
                pass
            self.respond(f"213 {value}")
            self.fb.log.add(rec)
            return
        truncs = self.fb.faults.peek(frozenset({"truncate"}), "ftp", self.remote_ip,
                                     module, name)
        if truncs:
            try:
                size = self.fs.getsize(path)
            except OSError as e:
                self.respond(f"550 {e.strerror}.")
                return
            self.respond(f"213 {BodyPlan.build(size, truncs).length}")
            return
        super().ftp_SIZE(path)

    def ftp_RETR(self, file: str) -> Optional[str]:
        module, name, ftppath = self._fb_where(file)
        rec = self._fb_record("RETR", ftppath, file=name, module=module,
                              faults=list(self._fb_pending))
        self._fb_pending = []
        if self._restart_position:
            self._restart_position = 0
            rec.status, rec.outcome, rec.detail = 554, REJECTED, "REST is not supported"
            self.respond("554 Restart is not supported by this server.")
            self.fb.log.add(rec)
            return None
        try:
            fd = self.run_as_current_user(self.fs.open, file, "rb")
            rec.size = os.fstat(fd.fileno()).st_size
        except OSError as err:
            rec.status, rec.outcome, rec.detail = 550, REJECTED, str(err.strerror)
            self.respond(f"550 {err.strerror}.")
            self.fb.log.add(rec)
            return None
        faults = self.fb.faults.take(BODY_FAULTS, "ftp", self.remote_ip, module, name)
        plan = BodyPlan.build(rec.size, faults)
        self.fb.faults.give_back(plan.unused)
        rec.faults += plan.names
        self._fb_rec, self._fb_plan = rec, plan
        self._fb_reset = plan.reset
        if plan.names:
            self.use_sendfile = False
            producer: Any = _FaultProducer(plan, fd, self.fb.stop_event)
        else:
            self.use_sendfile = _SENDFILE
            producer = FileProducer(fd, self._current_type)
        self.push_dtp_data(producer, isproducer=True, file=fd, cmd="RETR")
        return file

    def on_disconnect(self) -> None:
        # A RETR whose data connection never opened (the client left first).
        rec, self._fb_rec = self._fb_rec, None
        if rec is not None:
            rec.status, rec.outcome = 0, CLIENT_CLOSED
            rec.detail = "left before the data connection opened"
            self.fb.log.add(rec)

    def log_transfer(self, cmd: str, filename: str, receive: bool, completed: bool,
                     elapsed: float, bytes: int) -> None:
        super().log_transfer(cmd, filename, receive, completed, elapsed, bytes)
        rec, plan = self._fb_rec, self._fb_plan
        if rec is None or cmd != "RETR":
            return
        self._fb_rec = self._fb_plan = None
        rec.end_ns = time.monotonic_ns()
        rec.bytes_sent = int(bytes)
        names = set(plan.names) if plan else set()
        if self._fb_dropped:
            rec.outcome, rec.status = FAULT_INJECTED, 0
            rec.detail = f"dropped after {rec.bytes_sent} bytes"
        elif completed:
            rec.status = 226
            rec.outcome = COMPLETE if names <= PACING else FAULT_INJECTED
        else:
            rec.status = 426
            rec.outcome = CLIENT_CLOSED
            if self._fb_stopped:
                rec.detail = "server stopped"
        self.fb.log.add(rec)


class _Server(ThreadedFTPServer):
    fb: "FtpServer"
    poll_timeout = 0.1          # how soon session threads notice a stop

    def __init__(self, *args: Any, **kw: Any) -> None:
        # ThreadedFTPServer keeps its stop event and lock on the class: two servers
        # in one process would stop each other. Give each server its own.
        self._exit = threading.Event()
        self._lock = threading.Lock()
        super().__init__(*args, **kw)

    def handle_accepted(self, sock: Any, addr: Any) -> Any:
        if self.fb.faults.take(frozenset({"refuse"}), "ftp", addr[0]):
            self.fb.log.add(RequestRecord("ftp", addr[0], addr[1], time.monotonic_ns(),
                                          outcome=FAULT_INJECTED, faults=["refuse"]))
            reset_close(sock)
            return None
        return super().handle_accepted(sock, addr)

    def _loop(self, handler: Any) -> None:
        if handler._fb_delay and self.fb.stop_event.wait(handler._fb_delay):
            handler.close()
            return
        super()._loop(handler)


class FtpServer:
    """pyftpdlib serving ``root`` read-only to one user, on (bind, port)."""

    def __init__(self, bind: str, port: int, root: str, user: str, password: str,
                 faults: FaultSet, log: RecordLog, *, auth_failed_delay: float = 1.0,
                 max_connections: int = 1024) -> None:
        self.faults = faults
        self.log = log
        self.stop_event = threading.Event()
        auth = DummyAuthorizer()
        auth.add_user(user, password, root, perm="elr")
        handler = type("FotabenchFTPHandler", (_Handler,), {
            "fb": self, "authorizer": auth, "auth_failed_timeout": auth_failed_delay,
        })
        server_cls = type("FotabenchFTPServer", (_Server,), {
            "fb": self, "max_cons": max_connections, "max_cons_per_ip": 0,
        })
        self._server = server_cls((bind, port), handler, backlog=1024)
        self._thread: Optional[threading.Thread] = None
        self._running = False

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.address
        return host, port

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="fotabench-ftp", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while self._running:
                self._server.serve_forever(timeout=0.05, blocking=False,
                                           handle_exit=False)
        finally:
            self._server.close_all()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._server.close_all()
