#!/usr/bin/env python3
"""The factory end-of-line loop: scan a module's serial number or IMEI (a barcode
scanner types it and Enter), upgrade the module in the next slot, verify it, print a
big PASS or FAIL, next. An empty line or end of input ends the shift with a count.

    bench/eol_upgrade.py --station line3.yaml APP_v2.bin
    bench/eol_upgrade.py --virtual 2 --fast          # two virtual M66 slots, agent v2

Verification: the upgrade's own checks (the state grammar, the watchdog, the new
version after the reboot) and, when the scanned code is an IMEI (15 digits), that the
module in the slot says that IMEI (``AT+GSN``): a module in the wrong slot is a FAIL
(``wrong_module``, before it is upgraded). The verdict shown is the record's: every
upgrade is recorded (run directory and database, as `fotabench upgrade` does) with the
same outcome and check; the scanned code goes into the run's ``serials`` list. Exit 0 when every module
passed, 1 otherwise, 130 on Ctrl-C (the running upgrade stopped and recorded).
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from fotabench import Bench
from fotabench.bench.config import SlotSpec, StationSpec, Timeouts, VirtualSpec
from fotabench.bench.dut import bundled_agent


def verdict(result: Any) -> tuple[bool, str]:
    """PASS or FAIL and one line, from the result the record was made of (the bench
    checked a scanned IMEI against the module's: start_slot(serial=...))."""
    if not result.ok:
        return False, f"{result.outcome} [{result.check or result.cause}]: " \
                      f"{result.reason.splitlines()[0]}"
    return True, f"{result.version_before} -> {result.version_after}, IMEI {result.imei}, " \
                 f"{result.duration:.1f} s"


def big(console: Console, ok: bool, title: str, detail: str) -> None:
    word = "PASS" if ok else "FAIL"
    style = "bold white on green" if ok else "bold white on red"
    # The detail in the body as plain Text: wrapped whole (a subtitle is cut at the
    # panel's width) and never read as markup ("fail [wrong_module]" is not a style).
    body = Text(f"\n{word}\n\n", style=style, justify="center")
    body.append(Text(detail, style=style, justify="center"))
    console.print(Panel(body, title=Text(title), style=style, padding=(0, 4)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", nargs="?", help="package or app image (default with "
                                               "--virtual: the bundled agent v2)")
    ap.add_argument("--station", help="station file; its slots are used in turn")
    ap.add_argument("--virtual", type=int, metavar="N", help="N virtual M66 slots instead")
    ap.add_argument("--fast", action="store_true", help="virtual slots: no boot timing")
    ap.add_argument("--out", default="runs")
    ap.add_argument("--db", default=None)
    ap.add_argument("--operator")
    args = ap.parse_args(argv)
    if bool(args.station) == bool(args.virtual):
        ap.error("give --station FILE or --virtual N")
    if args.virtual:
        timing = "fast" if args.fast else "real"
        station: Any = StationSpec("eol", tuple(
            SlotSpec(f"v{i + 1}", virtual=VirtualSpec(boot_timing=timing,
                                                     link_rate="unlimited"))
            for i in range(args.virtual)),
            timeouts=Timeouts(boot=40, attach=40, download_inactivity=60, reboot=60))
    else:
        station = args.station
    package = args.package or (bundled_agent("2.0.0", "M66") if args.virtual else None)
    if package is None or not Path(package).is_file():
        ap.error(f"no such package or app image: {package}")
    console = Console()
    passed = failed = 0
    serials: list[dict[str, str]] = []
    bench = Bench(station, out_dir=args.out, db=args.db, operator=args.operator)
    slots = itertools.cycle([s.name for s in bench.station.slots])
    code = 0
    try:
        bench.start()
        console.print(f"station {bench.station.name}: scan a module (serial number or IMEI), "
                      "Enter; an empty line ends")
        while True:
            console.print("[bold]scan>[/] ", end="")
            line = sys.stdin.readline()
            scanned = line.strip()
            if not scanned:
                console.print("")
                break
            slot = next(slots)
            console.print(f"{scanned}: upgrading in slot {slot} ...")
            job = bench.start_slot(slot, package, serial=scanned)
            result = job.wait()
            assert result is not None
            ok, detail = verdict(result)
            serials.append({"serial": scanned, "slot": slot, "imei": result.imei or "",
                            "outcome": result.outcome})
            passed += ok
            failed += not ok
            big(console, ok, f"{scanned} (slot {slot})", detail)
    except KeyboardInterrupt:
        bench.cancel("interrupted")
        code = 130
    finally:
        if bench.recorder is not None:
            bench.recorder.run.meta["serials"] = serials
        bench.close()
    console.print(f"{passed + failed} modules: {passed} PASS, {failed} FAIL; records in "
                  f"{bench.run_dir}")
    return code or (0 if failed == 0 else 1)


if __name__ == "__main__":
    sys.exit(main())
