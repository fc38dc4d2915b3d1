"""The HTTP package server: a minimal HTTP/1.1 server that writes every byte itself.

Why not http.server or a framework: the module's client (opencpu-fota.md §4) needs
exact control of the bytes (a status and Content-Length, no chunking unless asked,
Content-Length lies, a cut at byte X, stalls, pacing, a slow accept), and a bench
must survive hostile clients (slowloris, header floods). Here the request head is
read under one deadline and hard limits, the response is written by hand, and the
body goes out through ``os.sendfile`` when no fault applies or through the fault
layer (:class:`~fotabench.server.faults.BodyPlan`) when one does. One thread per
connection: a stalled or throttled client never holds up another.

The request path is never joined to a filesystem path: it is decoded, checked, and
looked up by name in the server's catalogue (``/NAME`` or ``/m/MODULE/NAME``).
"""
from __future__ import annotations

import errno
import logging
import os
import re
import select
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import unquote_to_bytes

from .faults import BodyPlan, DropInjected, FaultSet, ServerStopping
from .records import (CLIENT_CLOSED, COMPLETE, FAULT_INJECTED, REJECTED, RecordLog,
                      RequestRecord)

_log = logging.getLogger("fotabench.server")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_REASONS = {
    200: "OK", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
# Faults that only pace the body: a transfer that ends as planned with only these
# is "complete"; any other fault makes it "fault_injected".
PACING = frozenset({"throttle", "stall", "slow_accept"})
REQUEST_FAULTS = frozenset({"status", "redirect", "throttle", "stall", "drop", "corrupt",
                            "truncate", "wrong_length", "chunked"})
CONNECT_FAULTS = frozenset({"refuse", "slow_accept"})

Lookup = Callable[[Optional[str], str], Optional[str]]


class _Partial(Exception):
    """A send failed after ``sent`` bytes."""

    def __init__(self, sent: int, error: OSError) -> None:
        super().__init__(str(error))
        self.sent = sent
        self.error = error


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Limits:
    """Defences against hostile clients (all configurable per server)."""

    header_timeout: float = 10.0     # the whole request head must arrive within this
    idle_timeout: float = 15.0       # keep-alive: wait this long for the next request
    send_timeout: float = 60.0       # a client that reads nothing for this long is cut
    max_request_line: int = 8190
    max_header_line: int = 8190
    max_headers: int = 100
    max_head_bytes: int = 65536
    max_connections: int = 1024


@dataclass
class _Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: dict[str, str] = field(default_factory=dict)
    keep_alive: bool = True
    has_body: bool = False


def reset_close(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def parse_path(target: str) -> tuple[Optional[str], str]:
    """(module, name) from a request target; HttpError(404) for anything that is not
    ``/NAME`` or ``/m/MODULE/NAME`` with plain segments (so ``..``, ``.``, empty
    segments, NUL, backslashes and encoded slashes never reach a lookup)."""
    if target.startswith(("http://", "HTTP://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    if not target.startswith("/"):
        raise HttpError(400, "request target is not a path")
    path = target.split("?", 1)[0].split("#", 1)[0]
    raw_segments = path.split("/")[1:]
    segments = []
    for raw in raw_segments:
        if re.search(r"%(?![0-9A-Fa-f]{2})", raw):
            raise HttpError(400, "bad percent-encoding")
        seg_b = unquote_to_bytes(raw)
        try:
            seg = seg_b.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(404, "path is not UTF-8") from None
        if seg in ("", ".", "..") or any(c in seg for c in "/\\\0") or any(
                ord(c) < 0x20 or ord(c) == 0x7F for c in seg):
            raise HttpError(404, "path segment refused")
        segments.append(seg)
    if len(segments) == 1:
        return None, segments[0]
    if len(segments) == 3 and segments[0] == "m":
        return segments[1], segments[2]
    raise HttpError(404, "no such path")


class HttpServer:
    """Serves the catalogue over HTTP on (bind, port); see the module docstring."""

    def __init__(self, bind: str, port: int, lookup: Lookup, faults: FaultSet,
                 log: RecordLog, limits: Optional[Limits] = None) -> None:
        self.lookup = lookup
        self.faults = faults
        self.log = log
        self.limits = limits or Limits()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((bind, port))
            self._sock.listen(1024)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()
        self._thread: Optional[threading.Thread] = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="fotabench-http",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._sock.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # --- accepting -----------------------------------------------------------------

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select():
                    if key.fileobj is not self._sock:
                        return
                    while not self._stop.is_set():
                        try:
                            conn, addr = self._sock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as e:
                            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                           errno.ENOMEM):
                                time.sleep(0.05)   # out of descriptors: back off
                                break
                            if e.errno == errno.ECONNABORTED:
                                continue
                            raise
                        self._spawn(conn, addr)
        finally:
            sel.close()

    def _spawn(self, conn: socket.socket, addr) -> None:
        conn.setblocking(True)
        with self._lock:
            busy = len(self._conns) >= self.limits.max_connections
            if not busy:
                self._conns.add(conn)
        if busy:
            rec = RequestRecord("http", addr[0], addr[1], time.monotonic_ns(),
                                status=503, outcome=REJECTED, detail="too many connections")
            try:
                conn.settimeout(1.0)
                conn.sendall(self._simple(503, "too many connections", False))
            except OSError:
                pass
            conn.close()
            self.log.add(rec)
            return
        t = threading.Thread(target=self._serve_conn, args=(conn, addr),
                             name=f"fotabench-http-{addr[0]}:{addr[1]}", daemon=True)
        with self._lock:
            self._threads.add(t)
        t.start()

    # --- one connection --------------------------------------------------------------

    def _serve_conn(self, conn: socket.socket, addr) -> None:
        ip, port = addr[0], addr[1]
        accepted = time.monotonic_ns()
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn_faults = self.faults.take(CONNECT_FAULTS, "http", ip)
            if any(f.kind == "refuse" for f in conn_faults):
                self.log.add(RequestRecord("http", ip, port, time.monotonic_ns(),
                                           outcome=FAULT_INJECTED, faults=["refuse"]))
                reset_close(conn)
                return
            pending = [f.name for f in conn_faults]
            for f in conn_faults:
                if self._stop.wait(f.seconds):
                    return
            buf = b""
            first = True
            while not self._stop.is_set():
                try:
                    got = self._read_head(conn, buf, first)
                except HttpError as e:
                    self._reject(conn, ip, port, accepted if first else
                                 time.monotonic_ns(), e)
                    return
                if got is None:
                    return
                # The first request of a connection starts at accept (a slow accept is
                # part of what the client waited for); a later one when its head is in
                # (not while the connection idled).
                start = accepted if first else time.monotonic_ns()
                head, buf = got
                first = False
                rec = RequestRecord("http", ip, port, start, faults=pending)
                pending = []
                try:
                    req = self._parse_head(head)
                except HttpError as e:
                    self._reject(conn, ip, port, start, e)
                    return
                if not self._respond(conn, req, rec):
                    return
        except Exception as e:  # noqa: BLE001 - one bad client never takes the server down
            if not isinstance(e, (OSError, ServerStopping)):
                _log.exception("http connection %s", addr)
        finally:
            self._linger_close(conn)
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())

    def _linger_close(self, conn: socket.socket) -> None:
        """Close after the client had a chance to read our last answer: closing with
        unread request bytes pending makes the kernel send a RST that can destroy the
        answer in flight (e.g. a 405 to a POST with a body). So: FIN first, then read
        and discard for at most 1 s, then close."""
        try:
            if conn.fileno() >= 0 and not self._stop.is_set():
                conn.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + 1.0   # a dripping client gets 1 s, no more
                drained = 0
                while drained < 262144:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    conn.settimeout(left)
                    b = conn.recv(65536)
                    if not b:
                        break
                    drained += len(b)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _read_head(self, conn: socket.socket, buf: bytes, first: bool
                   ) -> Optional[tuple[bytes, bytes]]:
        """(head, rest) once a whole request head is in; None on a clean close or an
        idle keep-alive timeout; HttpError(408/431) on slow or oversized heads."""
        lim = self.limits
        deadline = time.monotonic() + (lim.header_timeout if first or buf
                                       else lim.idle_timeout)
        started = bool(buf) or first
        while True:
            end = _head_end(buf)
            if end is not None:
                # The limit holds however the head arrived (one recv can bring more).
                if end[1] > lim.max_head_bytes:
                    raise HttpError(431, "request head too large")
                return buf[:end[0]], buf[end[1]:]
            if len(buf) > lim.max_head_bytes:
                raise HttpError(431, "request head too large")
            if buf and b"\n" not in buf and len(buf) > lim.max_request_line:
                raise HttpError(414, "request line too long")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not buf and not first:
                    return None                          # idle keep-alive: just close
                raise HttpError(408, "request head not received in time")
            conn.settimeout(min(remaining, 0.5))
            try:
                data = conn.recv(65536)
            except socket.timeout:
                if self._stop.is_set():
                    return None
                continue
            except OSError:
                return None
            if not data:
                return None
            if not started:
                started = True
                deadline = time.monotonic() + lim.header_timeout
            buf += data

    def _parse_head(self, head: bytes) -> _Request:
        lim = self.limits
        lines = head.split(b"\n")
        lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
        while lines and lines[0] == b"":       # RFC 9112: ignore leading empty lines
            lines.pop(0)
        if not lines:
            raise HttpError(400, "empty request")
        line = lines[0]
        if len(line) > lim.max_request_line:
            raise HttpError(414, "request line too long")
        parts = line.split(b" ")
        if len(parts) != 3 or not all(parts):
            raise HttpError(400, "malformed request line")
        method_b, target_b, version_b = parts
        if not _TOKEN.fullmatch(method_b):
            raise HttpError(400, "malformed method")
        m = _VERSION.fullmatch(version_b)
        if not m:
            raise HttpError(400, "malformed HTTP version")
        version = (int(m.group(1)), int(m.group(2)))
        if version[0] != 1:
            raise HttpError(505, "only HTTP/1.x is served")
        if any(b < 0x21 or b > 0x7E for b in target_b):
            raise HttpError(400, "bad character in the request target")
        req = _Request(method_b.decode("ascii"), target_b.decode("ascii"), version)
        if len(lines) - 1 > lim.max_headers:
            raise HttpError(431, "too many header fields")
        for ln in lines[1:]:
            if len(ln) > lim.max_header_line:
                raise HttpError(431, "header line too long")
            if ln[:1] in (b" ", b"\t"):
                raise HttpError(400, "obsolete header line folding")
            name, colon, value = ln.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise HttpError(400, "malformed header line")
            if b"\0" in value or b"\r" in value:
                raise HttpError(400, "bad character in a header value")
            req.headers[name.decode("ascii").lower()] = value.strip().decode("latin-1")
        conn_hdr = req.headers.get("connection", "").lower()
        if version == (1, 0):
            req.keep_alive = "keep-alive" in conn_hdr
        else:
            req.keep_alive = "close" not in conn_hdr
        te = req.headers.get("transfer-encoding")
        cl = req.headers.get("content-length")
        if te is not None:
            raise HttpError(400, "request bodies are not accepted")
        if cl is not None:
            if not cl.isdigit():
                raise HttpError(400, "bad Content-Length")
            if int(cl) > 0:
                req.has_body = True
        return req

    # --- responses ---------------------------------------------------------------------

    @staticmethod
    def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _simple(self, status: int, text: str, keep_alive: bool,
                extra: Optional[list[tuple[str, str]]] = None, body: bool = True) -> bytes:
        payload = (text + "\n").encode("utf-8")
        hdrs = [("Server", "fotabench"), ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(payload))),
                ("Connection", "keep-alive" if keep_alive else "close")]
        hdrs += extra or []
        return self._head(status, hdrs) + (payload if body else b"")

    def _reject(self, conn: socket.socket, ip: str, port: int, start: int,
                e: HttpError) -> None:
        rec = RequestRecord("http", ip, port, start, status=e.status, outcome=REJECTED,
                            detail=e.detail)
        try:
            conn.settimeout(2.0)
            conn.sendall(self._simple(e.status, e.detail, False))
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.log.add(rec)

    def _respond(self, conn: socket.socket, req: _Request, rec: RequestRecord) -> bool:
        """Answer one request; True to keep the connection for another."""
        rec.method = req.method
        rec.path = req.target[:300]
        keep = req.keep_alive and not req.has_body
        conn.settimeout(self.limits.send_timeout)
        if req.method not in ("GET", "HEAD"):
            rec.status, rec.outcome, rec.detail = 405, REJECTED, "method not allowed"
            conn.sendall(self._simple(405, "only GET and HEAD", keep, [("Allow", "GET, HEAD")],
                                      body=True))
            self.log.add(rec)
            return keep
        try:
            module, name = parse_path(req.target)
        except HttpError as e:
            rec.status, rec.outcome, rec.detail = e.status, REJECTED, e.detail
            if e.status == 400:
                keep = False
            conn.sendall(self._simple(e.status, "not found" if e.status == 404 else e.detail,
                                      keep, body=req.method == "GET"))
            self.log.add(rec)
            return keep
        rec.module = module
        path = self.lookup(module, name)
        if path is None:
            rec.status, rec.outcome, rec.detail = 404, REJECTED, "no such package"
            conn.sendall(self._simple(404, "not found", keep, body=req.method == "GET"))
            self.log.add(rec)
            return keep
        rec.file = name
        # A HEAD shows what a GET would get without using up a fault's budget.
        pick = self.faults.peek if req.method == "HEAD" else self.faults.take
        faults = pick(REQUEST_FAULTS, "http", rec.client, module, name)
        for f in faults:
            if f.kind == "status":
                rec.status, rec.outcome = f.code, FAULT_INJECTED
                rec.faults = rec.faults + [f.name]
                conn.sendall(self._simple(f.code, f"fault injected: status {f.code}", keep,
                                          body=req.method == "GET"))
                self.log.add(rec)
                return keep
            if f.kind == "redirect":
                loc = f.location or req.target
                rec.status, rec.outcome = f.code, FAULT_INJECTED
                rec.faults = rec.faults + [f.name]
                conn.sendall(self._simple(f.code, f"fault injected: redirect to {loc}", keep,
                                          [("Location", loc)], body=req.method == "GET"))
                self.log.add(rec)
                return keep
        try:
            f_obj = open(path, "rb")
        except OSError:
            rec.status, rec.outcome, rec.detail = 404, REJECTED, "package vanished"
            conn.sendall(self._simple(404, "not found", keep))
            self.log.add(rec)
            return keep
        with f_obj:
            size = os.fstat(f_obj.fileno()).st_size
            plan = BodyPlan.build(size, faults)
            if req.method != "HEAD":  # HEAD only peeked: nothing to give back
                self.faults.give_back(plan.unused)
            rec.size, rec.status = size, 200
            rec.faults = rec.faults + plan.names
            hdrs = [("Server", "fotabench"), ("Content-Type", "application/octet-stream")]
            if plan.chunked:
                hdrs.append(("Transfer-Encoding", "chunked"))
            else:
                hdrs.append(("Content-Length", str(plan.length)))
            framing_ok = not plan.chunked and plan.length == plan.send
            if not framing_ok and not plan.chunked:
                keep = False                  # a lying length: the body ends at close
            if plan.drop_at is not None:
                keep = False
            hdrs.append(("Connection", "keep-alive" if keep else "close"))
            # MSG_MORE: the head goes out in the same segment as the body's start
            # (one segment fewer per response; ~1.7x the requests/s). Only when the
            # body follows at once: a fault's first byte may be seconds away.
            more = getattr(socket, "MSG_MORE", 0) if (
                req.method == "GET" and not plan.names and size) else 0
            conn.sendall(self._head(200, hdrs), more)
            if req.method == "HEAD":
                rec.outcome = COMPLETE if set(plan.names) <= PACING else FAULT_INJECTED
                self.log.add(rec)
                return keep
            try:
                if not plan.names:
                    rec.bytes_sent = self._sendfile(conn, f_obj, size)
                    ok = rec.bytes_sent == size
                else:
                    ok = self._send_plan(conn, f_obj, plan, rec)
            except DropInjected:
                rec.outcome = FAULT_INJECTED
                rec.detail = f"dropped after {rec.bytes_sent} bytes"
                rec.end_ns = time.monotonic_ns()
                if plan.reset:
                    reset_close(conn)
                else:
                    try:
                        conn.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                self.log.add(rec)
                return False
            except ServerStopping:
                rec.outcome, rec.detail = CLIENT_CLOSED, "server stopped"
                self.log.add(rec)
                return False
            except _Partial as e:
                rec.bytes_sent = e.sent
                rec.outcome = CLIENT_CLOSED
                rec.detail = f"{type(e.error).__name__}: {e.error}"
                self.log.add(rec)
                return False
            except OSError as e:
                rec.outcome, rec.detail = CLIENT_CLOSED, f"{type(e).__name__}: {e}"
                self.log.add(rec)
                return False
            if not ok:
                rec.outcome = CLIENT_CLOSED
                self.log.add(rec)
                return False
            rec.end_ns = time.monotonic_ns()
            rec.outcome = COMPLETE if set(plan.names) <= PACING else FAULT_INJECTED
            if not keep:
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            self.log.add(rec)
            return keep

    def _sendfile(self, conn: socket.socket, f, size: int) -> int:
        """sendfile(2) the whole file; bytes sent (fewer when the client left, which
        raises). Polls only when the socket buffer is full (socket.sendfile polls
        before every call and builds a selector per response)."""
        sock_fd, file_fd = conn.fileno(), f.fileno()
        timeout_ms = int(self.limits.send_timeout * 1000)
        poller = None
        sent = 0
        while sent < size:
            try:
                n = os.sendfile(sock_fd, file_fd, sent, size - sent)
            except BlockingIOError:
                if poller is None:
                    poller = select.poll()
                    poller.register(sock_fd, select.POLLOUT)
                if not poller.poll(timeout_ms):
                    raise TimeoutError("client read nothing for send_timeout") from None
                if self._stop.is_set():
                    raise ServerStopping from None
                continue
            except OSError as e:
                raise _Partial(sent, e) from None
            if n == 0:
                break                                  # the file shrank under us
            sent += n
        return sent

    def _send_plan(self, conn: socket.socket, f, plan: BodyPlan, rec: RequestRecord) -> bool:
        for data in plan.chunks(f, self._stop):
            if plan.chunked:
                conn.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            else:
                conn.sendall(data)
            rec.bytes_sent += len(data)
        if plan.chunked:
            conn.sendall(b"0\r\n\r\n")
        return True


def _head_end(buf: bytes) -> Optional[tuple[int, int]]:
    """(end of head, start of what follows) or None: CRLFCRLF, or bare LFLF."""
    i = buf.find(b"\r\n\r\n")
    j = buf.find(b"\n\n")
    if i < 0 and j < 0:
        return None
    if j >= 0 and (i < 0 or j < i):
        return j, j + 2
    return i, i + 4
