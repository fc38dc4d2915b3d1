"""Test peers for bench I/O: a pseudo-terminal playing a module's UART, and a fake
gpio.sock board (docs/architecture.md, "Virtual line protocol"), until the virtual
module (firmware/sim) is there to play them for real."""
from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path


class PtyPeer:
    """The module's side of a pseudo-terminal. ``path`` is the bench's side (what a
    virtual module prints as "uart1"). ``respond(fn)`` starts a thread that reads
    CR-terminated commands and writes fn(command) back (bytes or None)."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        # Raw on the module's side too: bytes pass unchanged both ways.
        import tty
        tty.setraw(slave)
        os.close(slave)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.received = bytearray()
        self.closed = False
        self._close_lock = threading.Lock()

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            _, w, _ = select.select([], [self.master], [], 5)
            assert w, "the bench side stopped reading (pty full for 5 s)"
            n = os.write(self.master, view)
            view = view[n:]

    def read_until(self, token: bytes, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while token not in self.received:
            left = deadline - time.monotonic()
            assert left > 0, f"peer did not get {token!r}; got {bytes(self.received)!r}"
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    self.received += os.read(self.master, 65536)
                except OSError:
                    time.sleep(0.01)  # the bench side is not open yet
        i = self.received.index(token) + len(token)
        out = bytes(self.received[:i])
        del self.received[:i]
        return out

    def respond(self, fn: Callable[[bytes], bytes | None]) -> None:
        def run() -> None:
            buf = b""
            while not self._stop.is_set():
                r, _, _ = select.select([self.master], [], [], 0.05)
                if not r:
                    continue
                try:
                    buf += os.read(self.master, 65536)
                except OSError:
                    continue  # bench side not open (EIO): wait
                while b"\r" in buf:
                    cmd, buf = buf.split(b"\r", 1)
                    out = fn(cmd)
                    if out:
                        self.send(out)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Idempotent and thread-safe (tests close from timers too)."""
        self._stop.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(5)
        with self._close_lock:
            if not self.closed:
                os.close(self.master)
                self.closed = True


class FakeBoard:
    """A gpio.sock server speaking the virtual line protocol. Lines have a direction
    and a value; SET on an input line records (t_ns, value) in ``sets[line]``;
    ``emit_edge(line, value, t_ns=None, seq=None)`` sends EDGE to every watcher (seq
    counts per line from 1 unless given, to fake a lost event)."""

    def __init__(self, directory: Path, lines: dict[str, tuple[str, int]] | None = None):
        self.path = str(directory / "gpio.sock")
        self.lines = dict(lines or {"PWRKEY": ("in", 1), "RESET": ("in", 1),
                                    "VBAT": ("in", 0), "WDI": ("out", 0),
                                    "STATUS": ("out", 0)})
        self.sets: dict[str, list[tuple[int, int]]] = {n: [] for n in self.lines}
        self.seq: dict[str, int] = {n: 0 for n in self.lines}
        self.watchers: dict[socket.socket, set[str]] = {}
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(16)
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.raw_replies: list[bytes] = []  # if set, answers instead of the protocol
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _send(self, conn: socket.socket, text: str) -> None:
        try:
            conn.sendall(text.encode() + b"\n")
        except OSError:
            pass

    def _handle(self, conn: socket.socket, line: str) -> None:
        now = time.monotonic_ns()
        if self.raw_replies:
            conn.sendall(self.raw_replies.pop(0))
            return
        parts = line.split()
        if not parts:
            return
        cmd, args = parts[0], parts[1:]
        with self.lock:
            if cmd == "SET" and len(args) == 2 and args[0] in self.lines:
                name, v = args[0], args[1]
                if self.lines[name][0] != "in" or v not in ("0", "1"):
                    self._send(conn, f"ERR {name} is not an input of the module")
                    return
                self.lines[name] = ("in", int(v))
                self.sets[name].append((now, int(v)))
                self._send(conn, f"OK {now}")
            elif cmd == "GET" and len(args) == 1 and args[0] in self.lines:
                self._send(conn, f"VAL {args[0]} {self.lines[args[0]][1]} {now}")
            elif cmd == "WATCH" and len(args) == 1 and args[0] in self.lines:
                self.watchers.setdefault(conn, set()).add(args[0])
                self._send(conn, f"OK {now}")
            elif cmd == "UNWATCH" and len(args) == 1:
                self.watchers.setdefault(conn, set()).discard(args[0])
                self._send(conn, f"OK {now}")
            elif cmd == "LINES":
                for n, (d, v) in self.lines.items():
                    self._send(conn, f"LINE {n} {d} {v}")
                self._send(conn, f"OK {now}")
            else:
                self._send(conn, f"ERR unknown command or line: {line}")

    def emit_edge(self, name: str, value: int, t_ns: int | None = None,
                  seq: int | None = None) -> None:
        with self.lock:
            self.seq[name] = self.seq[name] + 1 if seq is None else seq
            d, _ = self.lines[name]
            self.lines[name] = (d, value)
            t = time.monotonic_ns() if t_ns is None else t_ns
            for conn, names in list(self.watchers.items()):
                if name in names:
                    self._send(conn, f"EDGE {name} {value} {t} {self.seq[name]}")

    def watching(self, name: str) -> bool:
        with self.lock:
            return any(name in s for s in self.watchers.values())

    def _run(self) -> None:
        conns: dict[socket.socket, bytes] = {}
        while not self._stop.is_set():
            r, _, _ = select.select([self.server, *conns], [], [], 0.05)
            for s in r:
                if s is self.server:
                    c, _ = self.server.accept()
                    conns[c] = b""
                    self.connected.set()
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    conns.pop(s, None)
                    with self.lock:
                        self.watchers.pop(s, None)
                    s.close()
                    continue
                buf = conns[s] + data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._handle(s, line.decode(errors="replace").strip())
                conns[s] = buf
        for c in conns:
            c.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
