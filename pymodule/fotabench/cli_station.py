"""`fotabench station`: check a station file, show where its JSON Schema is, or serve the
station with the operator's web page (docs/operator-screen.md).

``check`` exits 0 with a summary of the slots, or 2 with every problem, one line each
(``FILE:LINE: FIELD: what``, the form editors and CI log parsers pick up).
"""
from __future__ import annotations

import json
import sys
TYPE_CHECKING = False  # not typing's: importing typing costs start-up (see __init__)
if TYPE_CHECKING:
    from .bench.config import SlotSpec, StationSpec

# A /dev/ttyUSBn number follows plug order; by-id (serial number) and by-path (USB port)
# names stay with the adapter.
_UNSTABLE_PREFIXES = ("/dev/ttyUSB", "/dev/ttyACM")


def _lines_text(slot: SlotSpec) -> str:
    parts = []
    for role, spec in slot.lines.items():
        parts.append(f"{role}={spec.line}{' (active-low)' if spec.active_low else ''}")
    return ", ".join(parts)


def _slot_text(slot: SlotSpec) -> str:
    if slot.virtual is not None:
        v = slot.virtual
        bits = [f"virtual, {v.boot_timing} timing"]
        if v.link_rate is not None:
            bits.append(f"link {v.link_rate}" + (" bit/s" if isinstance(v.link_rate, int) else ""))
        if v.faults:
            bits.append("faults " + " ".join(v.faults))
        if v.blank:
            bits.append("blank")
        if not v.wired:
            bits.append("not wired")
        return ", ".join(bits)
    where = f"{slot.port} @ {slot.baud}"
    if slot.gpio_chip:
        where += f"; {slot.gpio_chip}: {_lines_text(slot) or 'no lines'}"
    return where


def summary(spec: StationSpec, file: str) -> list[str]:
    n_virtual = sum(1 for s in spec.slots if s.virtual is not None)
    srv = spec.server
    out = [f"{file}: station {spec.name!r}: {len(spec.slots)} slots "
           f"({len(spec.slots) - n_virtual} real, {n_virtual} virtual), protocol {spec.protocol}, "
           f"server {srv.bind} (http {srv.http_port or 'any'}, ftp {srv.ftp_port or 'any'})"
           + (f", db {spec.db}" if spec.db else "")]
    width = max(len(s.name) for s in spec.slots)
    for s in spec.slots:
        proto = f" {s.protocol}" if s.protocol else ""
        out.append(f"  {s.name:<{width}}  {s.model:<5}{proto}  {_slot_text(s)}")
    for s in spec.slots:
        if s.port and s.port.startswith(_UNSTABLE_PREFIXES):
            out.append(f"note: slot {s.name!r}: {s.port} may name another adapter after a "
                       "reboot or re-plug; /dev/serial/by-id/... stays with the adapter")
    return out


def cmd_check(args) -> int:
    from dataclasses import asdict

    from .bench.station import StationError, load_station
    try:
        spec = load_station(args.file)
    except StationError as e:
        if args.json:
            json.dump({"ok": False, "file": args.file,
                       "errors": [i.to_dict() for i in e.issues]}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            for issue in e.issues:
                print(issue, file=sys.stderr)
            n = len(e.issues)
            print(f"fotabench: {args.file}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return 2
    if args.json:
        json.dump({"ok": True, "file": args.file, "station": asdict(spec)}, sys.stdout,
                  indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(summary(spec, args.file)))
    return 0


def cmd_schema(args) -> int:
    from .bench.station import schema_path
    if args.path:
        print(schema_path())
    else:
        with open(schema_path(), encoding="utf-8") as f:
            sys.stdout.write(f.read())
    return 0


def _fail(msg: str) -> int:
    print(f"fotabench: {msg}", file=sys.stderr)
    return 2


def cmd_serve(args) -> int:
    import os

    from .screen import is_loopback
    token = args.token or os.environ.get("FOTABENCH_SCREEN_TOKEN") or None
    # Refuse a shared network before anything starts (an operator network is shared).
    if not is_loopback(args.bind):
        if not args.allow_remote:
            return _fail(f"--bind {args.bind} puts the station's screen on the network: "
                         "add --allow-remote and a token (--token or FOTABENCH_SCREEN_TOKEN)")
        if not token:
            return _fail(f"--bind {args.bind} --allow-remote needs a token: --token or "
                         "FOTABENCH_SCREEN_TOKEN (anyone on the network could start runs)")
    if token is not None and len(token) < 8:
        return _fail("the screen's token is too short: give at least 8 characters")
    if not 0 <= args.port <= 65535:
        return _fail(f"--port {args.port}: give 0..65535")
    if args.package is not None and not os.path.isfile(args.package):
        return _fail(f"{args.package}: no such package or app file")

    from .bench.station import StationError, load_station
    try:
        spec = load_station(args.file)
    except StationError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        return 2
    from .records.db import DEFAULT_DB
    db = args.db or spec.db or os.environ.get("FOTABENCH_DB") or DEFAULT_DB
    from .screen import Screen, listen, serve, url_for
    try:
        sock = listen(args.bind, args.port)
    except OSError as e:
        return _fail(f"cannot listen on {args.bind}:{args.port}: {e.strerror or e}")
    from .bench.run import Bench
    port = sock.getsockname()[1]
    try:
        with Bench(spec, db=db, operator=args.operator) as bench:
            screen = Screen(bench, args.package, db=db, token=token)
            url = url_for(args.bind, port)
            print(f"fotabench: station {spec.name!r} ({len(spec.slots)} slots): {url}"
                  + (" (open it once with ?token=..., or give the token as the HTTP "
                     "password)" if token else ""), flush=True)
            progress = None
            if not args.quiet:
                # The terminal (or journal) keeps a plain log of every slot's run.
                from .bench.progress import Progress
                progress = Progress(bench.events, slots=spec.slots, live=False).start()
            try:
                serve(screen, sock)
            finally:
                if progress is not None:
                    progress.stop()
    finally:
        sock.close()
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("station",
                              help="station files: check one, show the schema, serve the "
                                   "operator's screen")
    sub = p.add_subparsers(dest="station_command", required=True, metavar="ACTION")
    c = sub.add_parser("check", help="validate a station file and summarise its slots",
                       description="Validate a station file (docs/stations.md). Exit 0 with a "
                                   "summary, or 2 with every problem as FILE:LINE: FIELD: what.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_check)
    s = sub.add_parser("schema", help="print the station file's JSON Schema (for editors)")
    s.add_argument("--path", action="store_true", help="print where the schema file is")
    s.set_defaults(func=cmd_schema)
    v = sub.add_parser("serve", help="run the station with the operator's web page",
                       description="Run the station's bench with a web page for the operator "
                                   "(docs/operator-screen.md): one tile per slot, start per "
                                   "slot or all, a scan field, stop, today's yield. Loopback "
                                   "only unless --allow-remote with a token.")
    v.add_argument("file", metavar="FILE")
    v.add_argument("--bind", default="127.0.0.1", help="address (default 127.0.0.1)")
    v.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any)")
    v.add_argument("--package", metavar="PKG_OR_APP",
                   help="what a start upgrades to (a FOTA package or an app image)")
    v.add_argument("--allow-remote", action="store_true",
                   help="allow a --bind that is not loopback (needs a token)")
    v.add_argument("--token", help="the page's token or password (default "
                                    "$FOTABENCH_SCREEN_TOKEN); required with --allow-remote")
    v.add_argument("--db", help="results database (default: the station's db:, "
                                "$FOTABENCH_DB, runs/fotabench.sqlite)")
    v.add_argument("--operator", help="who runs the station (written into each record)")
    v.add_argument("--quiet", action="store_true",
                   help="no plain log of the slots' runs on stdout")
    v.set_defaults(func=cmd_serve)
