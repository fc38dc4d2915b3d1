"""`fotabench flash`: put an app image on a module through its BootROM (docs/flashing.md)."""
from __future__ import annotations

import sys
import time

BAUDS = (921600, 460800, 230400, 115200)


def cmd_flash(args) -> None:
    from . import _core
    from .flash import Flasher, trace_printer
    from .image import AppImage

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


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "flash", help="flash an app image over UART through the MediaTek BootROM",
        description="Flash APP.bin into a module over its main UART: start this, then power "
                    "the module with PWRKEY held low (download mode). Needs MediaTek's "
                    "download agent (MTK_AllInOne_DA.bin from Quectel's QFlash) via --da or "
                    "$FOTABENCH_DA.")
    p.add_argument("image", metavar="APP.bin", help="app image with its GFH header")
    p.add_argument("--port", required=True, help="the module's UART1 (e.g. /dev/ttyUSB0)")
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
