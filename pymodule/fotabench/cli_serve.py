"""`fotabench serve`: run the package servers until SIGINT/SIGTERM.

Prints one JSON line when both servers are listening (like `fotabench sim`), so a
script or test can read the ports and URLs::

    {"event": "ready", "http": 8080, "ftp": 2121, "bind": "127.0.0.1",
     "urls": {"APP.bin": {"http": "...", "ftp": "..."}}, "modules": {...}}

then one line per finished request (JSON with --json, else a short text line), and
exits 0 on SIGINT/SIGTERM after stopping the servers.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
TYPE_CHECKING = False  # not typing's: importing typing costs start-up (see __init__)
if TYPE_CHECKING:
    from typing import Any

    from .server import Fault, RequestRecord


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535")
    return port


def _module_name(value: str) -> str:
    from .server.core import check_module_name
    try:
        return check_module_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _fault(value: str) -> Fault:
    from .server import Fault  # imported here: the servers load only for `serve`
    try:
        return Fault.parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _text(rec: RequestRecord) -> str:
    who = rec.client + (f" [{rec.module}]" if rec.module else "")
    faults = f" faults={','.join(rec.faults)}" if rec.faults else ""
    return (f"{rec.protocol} {who} {rec.method or '-'} {rec.path or '-'} {rec.status} "
            f"{rec.bytes_sent}/{rec.size} B {rec.duration_s:.3f} s "
            f"{rec.throughput / 1000:.1f} kB/s {rec.outcome}{faults}"
            + (f" ({rec.detail})" if rec.detail else ""))


def cmd_serve(args: argparse.Namespace) -> None:
    from .server import PackageServer
    from .timeline import Timeline
    out_lock = threading.Lock()

    def emit(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def on_record(rec: RequestRecord) -> None:
        emit(json.dumps({"event": "request", **rec.to_dict()}) if args.json
             else _text(rec))

    http = args.http
    ftp = args.ftp
    if http is None and ftp is None:
        http = ftp = 0
    timeline = Timeline() if args.timeline else None
    if args.timeline:
        # Found out now, not at exit when the records would be lost with it.
        try:
            with open(args.timeline, "a"):
                pass
        except OSError as e:
            print(f"fotabench: error: serve: cannot write the timeline to {args.timeline}: "
                  f"{e.strerror or e}", file=sys.stderr)
            raise SystemExit(2) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        srv = PackageServer(args.packages, bind=args.bind, http=http, ftp=ftp,
                            host=args.host, user=args.user, password=args.password,
                            timeline=timeline, faults=args.fault or (), on_record=on_record)
        srv.start()
    except (OSError, ValueError, KeyError) as e:
        print(f"fotabench: error: serve: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        urls: dict[str, dict[str, str]] = {}
        modules: dict[str, dict[str, dict[str, str]]] = {}
        for name in srv.packages:
            urls[name] = {p: srv.url_for(name, p).url for p in ("http", "ftp")
                          if (p == "http" and srv.http) or (p == "ftp" and srv.ftp)}
            for m in args.module or ():
                modules.setdefault(m, {})[name] = {
                    p: srv.url_for(name, p, module=m).url for p in urls[name]}
        ready = {"event": "ready", "bind": args.bind,
                 "http": srv.http_port if srv.http else None,
                 "ftp": srv.ftp_port if srv.ftp else None,
                 "root": str(srv.root), "urls": urls, "modules": modules,
                 "faults": [f.describe() for f in srv.faults]}
        emit(json.dumps(ready))
        if not args.json:
            for name, u in urls.items():
                for p, url in u.items():
                    emit(f"serving {name} over {p}: {url}")
        while not stop.wait(0.5):
            pass
    finally:
        srv.stop()
    if timeline is not None:
        timeline.write_jsonl(args.timeline)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    s = subparsers.add_parser(
        "serve", help="serve FOTA packages over HTTP and FTP (with optional faults)",
        description="Serve packages read-only over HTTP and/or FTP until interrupted. "
                    "Without --http/--ftp both run on free ports. The first stdout line "
                    "is a JSON object with the ports and module URLs; then one line per "
                    "request.",
        epilog="Fault specs: KIND[:key=value,...], e.g. drop:at=50%,times=1  "
               "throttle:rate=50kbit  stall:at=1000,seconds=5  corrupt:at=100,count=4  "
               "truncate:at=1000  wrong_length:length=10  chunked  redirect  "
               "status:code=404  refuse  slow_accept:seconds=3  login_fail  "
               "size_lie:length=100. Scope keys: file=, client= (IP or module), "
               "protocol=, times= (first N attempts).")
    s.add_argument("packages", nargs="+", metavar="PACKAGE", help="package files to serve")
    s.add_argument("--http", type=_port, metavar="PORT", help="run HTTP on PORT (0: free)")
    s.add_argument("--ftp", type=_port, metavar="PORT", help="run FTP on PORT (0: free)")
    s.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; a station binds to "
                        "its module-facing interface)")
    s.add_argument("--host", help="address written in URLs (default: --bind)")
    s.add_argument("--user", default="fotabench", help="FTP user (max 19 characters)")
    s.add_argument("--password", default="fotabench", help="FTP password")
    s.add_argument("--module", action="append", metavar="NAME", type=_module_name,
                   help="also serve per-module paths /m/NAME/... (repeatable)")
    s.add_argument("--fault", action="append", type=_fault, metavar="SPEC",
                   help="inject a fault (repeatable), see below")
    s.add_argument("--json", action="store_true", help="one JSON object per request")
    s.add_argument("--timeline", metavar="FILE",
                   help="write the requests as a timeline (JSON lines) on exit")
    s.set_defaults(func=cmd_serve)
    return s
