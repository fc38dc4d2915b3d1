"""Helpers for the virtual module tests: a pty line reader for UART1/UART2, package
servers (HTTP with fault modes, FTP through pyftpdlib), and the app image builds.

The UART reader will give way to fotabench.SerialPort/Modem once the C core has them.
Every wait is on an event with a timeout; nothing sleeps a fixed time to "let things
settle"."""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import termios
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tool_env import tool_env

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = os.environ.get("FOTABENCH_SANITIZE") == "1"
FINAL = re.compile(r"^(OK|DEACT OK|ERROR|\+CME ERROR: \d+|\+CMS ERROR: \d+)$")


def build_app(version: str, out: Path, pad: int = 0, model: str | None = None) -> Path:
    """make -C firmware sim VERSION=... OUT=... [MODEL=...] (SANITIZE=1 in the ASan pass)."""
    cmd = ["make", "-s", "-C", str(ROOT / "firmware"), "sim", f"VERSION={version}",
           f"OUT={out}", f"PAD={pad}"]
    if model is not None:
        cmd.append(f"MODEL={model}")
    if SANITIZE:
        cmd.append("SANITIZE=1")
    r = subprocess.run(cmd, env=tool_env(), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return out


class Uart:
    """Line reader on a pseudo-terminal. Every line received is kept in `history` with
    its arrival time (time.monotonic_ns)."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        attrs = termios.tcgetattr(self.fd)
        # raw, applied now (TCSAFLUSH would drop what the module already sent)
        attrs[0] = 0
        attrs[1] = 0
        attrs[3] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        self.buf = b""
        self.lines: list[tuple[int, str]] = []
        self.history: list[tuple[int, str]] = []
        self.states: list[tuple[str, int]] = []

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                self._wait(select.POLLOUT, 1.0)
                continue
            view = view[n:]

    def send(self, text: str) -> None:
        self.write(text.encode() + b"\r\n")

    def _wait(self, events: int, timeout: float) -> bool:
        poller = select.poll()  # not select(): benchmarks open > 1024 ports
        poller.register(self.fd, events)
        return bool(poller.poll(max(0.0, timeout) * 1000))

    def _pump(self, timeout: float) -> None:
        if not self._wait(select.POLLIN, timeout):
            return
        try:
            data = os.read(self.fd, 65536)
        except (BlockingIOError, OSError):
            return
        now = time.monotonic_ns()
        self.buf += data
        while True:
            m = re.search(rb"\r\n|\n", self.buf)
            if not m:
                break
            raw, self.buf = self.buf[:m.start()], self.buf[m.end():]
            line = raw.decode("latin-1").strip("\r")
            if line:
                self.lines.append((now, line))
                self.history.append((now, line))

    def read_line(self, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.lines:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line within {timeout} s (partial {self.buf!r})")
            self._pump(left)
        return self.lines.pop(0)[1]

    def expect(self, pattern: str, timeout: float = 5.0) -> re.Match:
        """Read lines until one matches pattern (re.search); earlier lines are dropped
        from the queue but stay in history."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.read_line(max(0.0, left))
            except TimeoutError:
                seen = [l for _, l in self.history[-15:]]
                raise TimeoutError(f"{pattern!r} not seen within {timeout} s; last lines {seen}")
            m = rx.search(line)
            if m:
                return m

    def quiet(self, seconds: float) -> list[str]:
        """Lines that arrive within `seconds` (used to assert that nothing comes)."""
        deadline = time.monotonic() + seconds
        out = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.read_line(left))
            except TimeoutError:
                return out

    def command(self, cmd: str, timeout: float = 10.0) -> list[str]:
        """Send a command; return its lines up to and including the final result.
        Unsolicited +FBSTATE lines are left in `self.states`."""
        self.send(cmd)
        out = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line.startswith("+FBSTATE:"):
                self.states.append(parse_state(line))
                continue
            out.append(line)
            if FINAL.match(line):
                return out


def parse_state(line: str) -> tuple[str, int]:
    m = re.match(r"^\+FBSTATE: (\w+),(-?\d+)$", line)
    assert m, line
    return m.group(1), int(m.group(2))


def wait_ready(uart: Uart, version: str | None = None, timeout: float = 10.0) -> str:
    """Wait for +FBREADY (and the end of the boot URCs); return the version."""
    m = uart.expect(r'^\+FBREADY: "([^"]*)","([^"]*)"$', timeout)
    if version is not None:
        assert m.group(1) == version
    uart.expect(r"^\+CGREG: 1$", timeout)
    return m.group(1)


def collect_states(uart: Uart, until=("UP_SYSTEM_REBOOT", "UP_UPGRADFAILED"),
                   timeout: float = 30.0, extra_wait: float = 0.0) -> list[tuple[str, int]]:
    """+FBSTATE lines until one of `until` (then `extra_wait` s more for duplicates)."""
    states = list(uart.states)
    uart.states = []
    deadline = time.monotonic() + timeout
    while not states or states[-1][0] not in until:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"upgrade did not end; states {states}")
        line = uart.read_line(left)
        if line.startswith("+FBSTATE:"):
            states.append(parse_state(line))
    if extra_wait:
        for line in uart.quiet(extra_wait):
            if line.startswith("+FBSTATE:"):
                states.append(parse_state(line))
    return states


# --- HTTP package server with faults -------------------------------------------------

class PackageHttpServer:
    """Serves files from a dict; `mode` selects a fault:
    ok, redirect, chunked, nolength, longheader, close_half, stall, stall_headers, notfound,
    slow.

    Every request is recorded in `requests` (dicts): path, request_line, headers, t_ns
    (when the request was read), sent (body bytes written), and for the stall modes
    stalled_ns (when the server went silent) and client_closed_ns (when the client gave
    up and closed: None if it never did). All times are time.monotonic_ns, the clock of
    the module's timeline."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.mode = "ok"
        self.requests: list[dict] = []
        self.stall_event = threading.Event()
        self.stalled = threading.Event()   # set when a stall begins
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, rec, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                rec["sent"] += len(data)

            def _stall(self, rec) -> None:
                """Send nothing more until the test ends or the client closes; record both."""
                rec["stalled_ns"] = time.monotonic_ns()
                server.stalled.set()
                sock = self.connection
                while not server.stall_event.is_set():
                    ready, _, _ = select.select([sock], [], [], 0.01)
                    if not ready:
                        continue
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        rec["client_closed_ns"] = time.monotonic_ns()
                        return

            def do_GET(self):
                rec = {"path": self.path, "request_line": self.requestline,
                       "headers": list(self.headers.items()), "t_ns": time.monotonic_ns(),
                       "sent": 0, "stalled_ns": None, "client_closed_ns": None}
                server.requests.append(rec)
                body = server.files.get(self.path)
                mode = server.mode
                if mode == "stall_headers":
                    self._stall(rec)
                    self.close_connection = True
                    return
                if body is None or mode == "notfound":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/elsewhere.bin")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if mode == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._send(rec, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
                    return
                if mode == "longheader":
                    self.send_header("X-Padding", "p" * 600)
                if mode != "nolength":
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                if mode in ("close_half", "stall"):
                    self._send(rec, body[:len(body) // 2])
                    if mode == "stall":
                        self._stall(rec)
                    self.close_connection = True
                    return
                if mode == "slow":
                    for i in range(0, len(body), 512):
                        self._send(rec, body[i:i + 512])
                        time.sleep(0.01)
                    return
                self._send(rec, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.stall_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class PackageFtpServer:
    """pyftpdlib on 127.0.0.1, user bench / password `password` (default pw), home =
    directory; `anonymous` also lets anonymous in."""

    def __init__(self, home: Path, size_delta: int = 0, password: str = "pw",
                 anonymous: bool = False):
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer
        import logging
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        auth = DummyAuthorizer()
        auth.add_user("bench", password, str(home), perm="elr")
        if anonymous:
            auth.add_anonymous(str(home), perm="elr")

        class Handler(FTPHandler):
            authorizer = auth
            passive_ports = None

            def ftp_SIZE(self, path):
                if not size_delta:
                    return super().ftp_SIZE(path)
                # announce more than the file holds: RETR then ends early (truncation)
                self.respond(f"213 {os.path.getsize(path) + size_delta}")

        from pyftpdlib.ioloop import IOLoop
        # an IOLoop of its own, polled in non-blocking steps by one thread that also
        # closes it: the default IOLoop is a process-wide singleton
        self.server = FTPServer(("127.0.0.1", 0), Handler, ioloop=IOLoop())
        self.port = self.server.socket.getsockname()[1]
        self._running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while self._running:
                self.server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        finally:
            self.server.close_all()

    def close(self):
        self._running = False
        self.thread.join(5)


def copy_state(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)


class LineWatcher:
    """Collects EDGE events of one virtual line in a thread: (level, t_ns, seq)."""

    def __init__(self, gpio_path: str, line: str):
        import socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(gpio_path)
        self.sock.sendall(f"WATCH {line}\n".encode())
        self.edges: list[tuple[int, int, int]] = []
        self.line = line
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        buf = b""
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except OSError:
                continue
            if not data:
                return
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                parts = raw.decode().split()
                if parts[:2] == ["EDGE", self.line]:
                    self.edges.append((int(parts[2]), int(parts[3]), int(parts[4])))

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def max_gap_s(self, since_ns: int = 0, until_ns: int | None = None) -> float:
        ts = [t for _, t, _ in self.edges if t >= since_ns and (until_ns is None or t <= until_ns)]
        return max((b - a for a, b in zip(ts, ts[1:])), default=0) / 1e9
