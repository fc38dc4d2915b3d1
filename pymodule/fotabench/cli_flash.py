"""`fotabench flash`: put an app image on a module through its BootROM (docs/flashing.md)."""
from __future__ import annotations

import sys
import time

BAUDS = (921600, 460800, 230400, 115200)


def cmd_flash(args) -> int | None:
    if args.station is not None:
        return cmd_flash_station(args)
    from . import _core
    from .flash import Flasher, trace_printer
    from .image import AppImage

    if len(args.image) != 1:
        raise _core.ArgumentError("--port flashes one module: give one image")
    args.image = args.image[0]
    # The image first: a wrong file is said before the operator powers anything.
    image = AppImage.inspect(args.image)
    failed = [c for c in image.checks if not c.ok]
    if failed:
        raise _core.ImageError(f"{args.image}: {failed[0].name}: {failed[0].detail}")
    with open(args.image, "rb") as f:
        data = f.read()
    last_phase = [""]
    last_shown = [-1.0]

    def progress(phase: str, done: int, total: int) -> None:
        if args.quiet:
            return
        pct = 100.0 * done / total if total else 100.0
        if phase != last_phase[0] or pct >= last_shown[0] + 5 or done == total:
            last_phase[0], last_shown[0] = phase, pct
            print(f"{phase:<7} {pct:5.1f}% ({done}/{total})", file=sys.stderr)

    with Flasher(args.port, da=args.da, handshake_timeout=args.handshake_timeout) as fl:
        if not args.quiet:
            print(f"waiting for the module's BootROM on {args.port}: power it now with PWRKEY "
                  f"held low (download mode)", file=sys.stderr)
        t0 = time.monotonic()
        r = fl.flash(data, verify=args.verify, baud=args.baud, reset=not args.no_reset,
                     progress=progress, trace=trace_printer() if args.trace else None)
    took = time.monotonic() - t0
    print(f"flashed {args.image} ({r.length} bytes) to 0x{r.address:08X} on an {r.chip} "
          f"({r.model} image) in {took:.1f} s: data at {r.baud} baud, "
          f"{r.line_rate_ratio:.2f} of line rate, {r.resends} resends"
          f"{', verified' if r.verified else ''}{', module reset' if not args.no_reset else ''}")
    return None


def cmd_flash_station(args) -> int:
    """Every (selected) slot of a station at once: progress per slot, a record per slot
    and attempt, a summary; exit 0 all passed, 1 any fail/error, 130 Ctrl-C."""
    from . import _core
    from .bench.flash import FlashStation
    from .bench.station import StationError, load_station
    if args.trace:
        raise _core.ArgumentError("--trace is for one module (--port)")
    try:
        spec = load_station(args.station)
    except StationError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        return 2
    slots = [s.strip() for s in args.slots.split(",") if s.strip()] if args.slots else None
    fs = FlashStation(spec, da=args.da, out_dir=args.out, db=args.db, operator=args.operator,
                      handshake_timeout=args.handshake_timeout)
    run = fs.run(args.image, slots=slots, baud=args.baud, verify=args.verify,
                 reset=not args.no_reset, attempts=args.attempts,
                 progress=not args.quiet)
    for name, r in run.results.items():
        fr = r.result
        what = (f"{fr.chip} at 0x{fr.address:08X}, {fr.resends} resends"
                f"{', verified' if fr.verified else ''}") if fr else r.reason
        print(f"{name}: {r.outcome.upper()} (attempt {r.attempt}, "
              f"{(r.end_ns - r.start_ns) / 1e9:.1f} s): {what}")
    n_pass = sum(r.ok for r in run.results.values())
    print(f"flashed {n_pass}/{len(run.results)} slots"
          f"{' (interrupted)' if run.interrupted else ''}; records in {run.run_dir}")
    return run.exit_code


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "flash", help="flash an app image over UART through the MediaTek BootROM",
        description="Flash APP.bin into a module over its main UART: start this, then power "
                    "the module with PWRKEY held low (download mode). With --station, every "
                    "(selected) slot at once: slots with PWRKEY and VBAT wired are powered "
                    "into download mode by the station, the others' operator is told when; "
                    "a record per slot (exit 0 all passed, 1 any fail/error, 130 Ctrl-C). "
                    "Needs MediaTek's "
                    "download agent (MTK_AllInOne_DA.bin from Quectel's QFlash) via --da or "
                    "$FOTABENCH_DA.")
    p.add_argument("image", metavar="APP.bin", nargs="+",
                   help="app image with its GFH header (with --station: one per model, "
                        "each slot gets the one made for its model)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="the module's UART1 (e.g. /dev/ttyUSB0)")
    where.add_argument("--station", metavar="FILE",
                       help="flash the slots of this station file, all at once")
    p.add_argument("--slots", default=None, metavar="A,B",
                   help="with --station: only these slots (default all)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="with --station: the run directory (default runs/flash-STATION-TIME)")
    p.add_argument("--db", default=None, metavar="PATH|DSN",
                   help="with --station: results database (default the station's db:, "
                        "$FOTABENCH_DB, runs/fotabench.sqlite)")
    p.add_argument("--operator", default=None, help="with --station: who runs it (records)")
    p.add_argument("--attempts", type=int, default=1,
                   help="with --station: attempts per slot (default 1)")
    p.add_argument("--da", default=None, help="download agent file (default $FOTABENCH_DA)")
    p.add_argument("--baud", type=int, choices=BAUDS, default=921600,
                   help="speed of the data phase (default 921600)")
    p.add_argument("--verify", action="store_true", help="read the region back and compare")
    p.add_argument("--no-reset", action="store_true", help="leave the module in the agent")
    p.add_argument("--trace", action="store_true",
                   help="print every byte on the wire to stderr (as esptool --trace)")
    p.add_argument("--handshake-timeout", type=float, default=60.0,
                   help="seconds to wait for the BootROM (default 60)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_flash)
