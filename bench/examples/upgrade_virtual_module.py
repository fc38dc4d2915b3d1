#!/usr/bin/env python3
"""One FOTA upgrade of a virtual module, the way a station does it to a real one.

`fotabench.Upgrade` does the whole job: power the module through its lines (VBAT,
PWRKEY), wait for the bench agent's +FBREADY, package v2 and serve it, send AT+FBUPG,
follow +FBSTATE against the protocol's grammar while the watchdog monitor watches WDI,
then see v2 boot. Everything lands on one timeline, written as JSON lines at the end.

    python bench/examples/upgrade_virtual_module.py [--protocol http|ftp] [--out DIR]

Needs `make build` (the board program and the extension). On a real station the same
call takes a Dut of another kind: Dut.from_slot(SlotSpec("s1", port="/dev/ttyUSB0",
gpio_chip="/dev/gpiochip0", lines={"PWRKEY": LineSpec(17), "WDI": LineSpec(27)})).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fotabench import Dut, Upgrade
from fotabench.bench.config import SlotSpec, Timeouts, VirtualSpec
from fotabench.bench.dut import build_agent

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", choices=["http", "ftp"], default="http")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "demo")
    ap.add_argument("--link-rate", default="256000",
                    help="module downlink in bit/s, or 'unlimited' (a real GPRS link is "
                         "about 50000)")
    ap.add_argument("--fast", action="store_true",
                    help="fast boot timing and an unlimited link (for tests)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    v1 = build_agent("1.0.0", args.out / "agent_v1.bin", firmware=ROOT / "firmware")
    v2 = build_agent("2.0.0", args.out / "agent_v2.bin", firmware=ROOT / "firmware")
    link = args.link_rate if args.link_rate == "unlimited" else int(args.link_rate)
    spec = VirtualSpec(app=str(v1), boot_timing="fast" if args.fast else "real",
                       link_rate="unlimited" if args.fast else link)

    with Dut.from_slot(SlotSpec("dut1", virtual=spec), log_dir=args.out) as dut:
        print(dut)
        result = Upgrade(dut, v2, protocol=args.protocol, expect_version="2.0.0",
                         timeouts=Timeouts(), log_dir=args.out).run()
    print(repr(result))
    for s in result.states:
        print(f"  {(s.t_ns - result.start_ns) / 1e9:7.2f} s  {s.state} {s.percent}")
    for t in result.transfers:
        print(f"server: {t['protocol']} {t['outcome']}, {t['bytes_sent']} bytes to {t['module']}")
    record = args.out / "result.json"
    record.write_text(json.dumps(result.to_dict(), indent=1))
    print(f"record: {record}; timeline: {result.logs.get('timeline')}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
