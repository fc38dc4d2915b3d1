#!/usr/bin/env python3
"""One FOTA upgrade of a virtual module, the way a station does it to a real one.

Power the module through its lines (VBAT, PWRKEY), wait for the bench agent's
+FBREADY, serve the v2 package, send AT+FBUPG, follow +FBSTATE while the watchdog
monitor watches WDI, then see v2 boot. Everything lands on one timeline, written
as JSON lines at the end.

    python bench/examples/upgrade_virtual_module.py [--protocol http|ftp] [--out DIR]

Needs `make build` (the board program and the extension). On a real station the same
objects take other backends: SerialPort("/dev/ttyUSB0"), GpioChip("/dev/gpiochip0").
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fotabench
from fotabench import GpioChip, Modem, Package, PackageServer, Timeline, WatchdogMonitor
from fotabench.sim import VirtualModule

ROOT = Path(__file__).resolve().parents[2]


def build_agent(version: str, out: Path) -> Path:
    """The bench agent for the virtual module, as an M66 app image."""
    # make is a system tool: a sanitizer preload meant for this Python must not reach it.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run(["make", "-s", "-C", str(ROOT / "firmware"), "sim", f"VERSION={version}",
                    f"OUT={out}"], check=True, env=env)
    return out


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

    v1 = build_agent("1.0.0", args.out / "agent_v1.bin")
    v2 = build_agent("2.0.0", args.out / "agent_v2.bin")
    pkg = Package.build(v2, args.out / "fw_v2.bin")  # FTP file names: 24 characters at most
    print(f"agent v1 {v1.stat().st_size} bytes, v2 package {pkg.size} bytes, md5 {pkg.md5}")

    tl = Timeline()
    state = Path(tempfile.mkdtemp(prefix="fbdemo"))  # short: pty and socket paths
    link = args.link_rate if args.link_rate == "unlimited" else int(args.link_rate)
    timing = {"boot_timing": "fast", "link_rate": "unlimited"} if args.fast else \
        {"link_rate": link}
    try:
        with VirtualModule(v1, state, power=False, **timing) as vm, \
                GpioChip.virtual(vm.gpio, timeline=tl) as chip:
            vbat = chip.request_output("VBAT", initial=0)
            pwrkey = chip.request_output("PWRKEY", initial=1)  # active low: idle high
            wdi = chip.request_input("WDI")
            print(f"virtual module: uart1 {vm.uart1}, lines on {vm.gpio}")

            with Modem(vm.uart1, name="uart1", timeline=tl) as modem:
                modem.add_urc("+FBSTATE")
                modem.add_urc("+FBREADY")
                modem.add_urc("+CGREG")
                vbat.set(1)
                pwrkey.pulse(0, 1.2)  # M66: PWRKEY low >= 1 s powers on
                ready = modem.expect("+FBREADY:", timeout=30)
                print(f"powered on: {ready.line}")
                print(f"AT+FBVER? -> {modem.command('AT+FBVER?').lines}")
                # FOTA needs GPRS: wait for the core's attach URC, as on a real module
                # (about 16 s after power-on on the MC60 trace, spec section 8).
                attached = modem.expect("+CGREG: 1", timeout=60)
                print(f"network: {attached.line} after {(attached.t_ns - ready.t_ns) / 1e9:.1f} s")

                with PackageServer([pkg.path], timeline=tl, user="bench", password="demo") as srv, \
                        WatchdogMonitor(wdi, timeline=tl, source="watchdog") as wd:
                    url = srv.url_for(pkg.path, args.protocol, module="dut1")
                    print(f"upgrade from {url}")
                    t0 = fotabench.now_ns()
                    answer = modem.command(f'AT+FBUPG="{url}"')
                    if not answer.ok:
                        print(f"AT+FBUPG refused: {answer.final}")
                        return 1
                    while True:
                        m = modem.expect(re.compile(r"\+FBSTATE: (\w+),(\d+)"), timeout=300,
                                         inactivity=150)
                        state_name, pct = m.match.group(1).decode(), m.match.group(2).decode()
                        print(f"  {(m.t_ns - t0) / 1e9:7.2f} s  {state_name} {pct}")
                        if state_name in ("UP_SYSTEM_REBOOT", "UP_UPGRADFAILED"):
                            break
                    if state_name == "UP_UPGRADFAILED":
                        print("upgrade failed: the module keeps v1")
                        return 1
                    ready = modem.expect('+FBREADY: "2.0.0"', timeout=60)
                    print(f"  {(ready.t_ns - t0) / 1e9:7.2f} s  rebooted: {ready.line}")
                    verdict = wd.stop()
                    rec = srv.records[-1]
                print(f"server: {rec.protocol} {rec.outcome}, {rec.bytes_sent} bytes in "
                      f"{rec.duration_s:.2f} s to {rec.module}")
                print(f"watchdog: {verdict.edges} edges, longest gap "
                      f"{verdict.longest_gap_ns / 1e6:.0f} ms of {verdict.timeout_ns / 1e6:.0f} ms "
                      f"-> {'fed' if verdict.ok else 'NOT fed in time'}")
    finally:
        shutil.rmtree(state, ignore_errors=True)

    events = tl.events()
    path = args.out / "timeline.jsonl"
    tl.write_jsonl(path)
    counts = collections.Counter(e.source.split(":")[0] for e in events)
    print(f"timeline: {len(events)} events ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
          f" -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
