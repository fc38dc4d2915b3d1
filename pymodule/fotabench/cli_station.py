"""`fotabench station`: check a station file, or show where its JSON Schema is.

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


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("station", help="station files: check one, show the schema")
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
