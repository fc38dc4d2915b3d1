#!/usr/bin/env python3
"""A picture of the live progress table mid-run, and of the end-of-run summary, without
running a bench: synthetic BenchEvents for the slots of bench/stations/virtual-8.yaml
(one passed, one failed its MD5 check, one lost its server connection, one had its power
cut, the others at various points), rendered by fotabench.bench.progress.

    python bench/examples/progress_snapshot.py [--out DIR]    (default: build/)

Writes progress-midrun.svg and progress-summary.svg (rich's Console.save_svg), and a
PNG of each when `rsvg-convert` (Debian: librsvg2-bin) is installed.
"""
from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from fotabench.bench.events import BenchEvent, EventBus
from fotabench.bench.progress import Progress, summary_table
from fotabench.bench.station import load_station

ROOT = Path(__file__).resolve().parents[2]


def events() -> list[BenchEvent]:
    def e(t: float, slot: str, kind: str, **kw) -> BenchEvent:
        return BenchEvent(int(t * 1e9), slot, kind, **kw)

    def start(slot: str, imei: str, model: str) -> list[BenchEvent]:
        return [e(0, slot, "attempt", attempt=1), e(0, slot, "phase", phase="power"),
                e(9, slot, "phase", phase="identify",
                  extra={"imei": imei, "model": model, "version": "1.0.0"}),
                e(10, slot, "phase", phase="attach")]

    def download(slot: str, upto: int, size: int, gap: float) -> list[BenchEvent]:
        out = [e(20, slot, "phase", phase="download")]
        out += [e(21 + p, slot, "state", state="UP_GETTING_FILE", percent=p)
                for p in range(0, upto + 1, 5)]
        out += [e(21 + upto, slot, "served", bytes_served=size * upto // 100),
                e(21 + upto, slot, "watchdog", gap_ms=gap)]
        return out

    ev: list[BenchEvent] = []
    ev += start("v1", "866425031000011", "M66") + download("v1", 100, 241_664, 812) + [
        e(140, "v1", "state", state="UP_SYSTEM_REBOOT", percent=100),
        e(141, "v1", "phase", phase="reboot"),
        e(165, "v1", "phase", phase="verify", extra={"version": "2.0.0"}),
        e(166, "v1", "outcome", outcome="pass")]
    ev += start("v2", "866425031000029", "M66") + download("v2", 65, 241_664, 790)
    ev += start("v3", "866425031000037", "MC60") + download("v3", 100, 241_664, 805) + [
        e(130, "v3", "state", state="UP_UPGRADFAILED", percent=0),
        e(130, "v3", "outcome", outcome="fail",
          detail="UP_UPGRADFAILED after 100 %: package MD5 refused")]
    ev += start("v4", "866425031000045", "MC60") + download("v4", 50, 241_664, 1180) + [
        e(75, "v4", "outcome", outcome="error",
          detail="server dropped the connection at 50 %"),
        e(80, "v4", "attempt", attempt=2)] + download("v4", 20, 241_664, 1180)
    ev += start("v5", "866425031000052", "MC60E") + download("v5", 30, 241_664, 640)
    ev += start("v6", "866425031000060", "M26") + download("v6", 40, 241_664, 1720) + [
        e(70, "v6", "power", detail="VBAT cut at 40 %"),
        e(70, "v6", "phase", phase="boot")]
    ev += start("v7", "866425031000078", "MC20") + [
        e(20, "v7", "phase", phase="download"),
        e(22, "v7", "state", state="UP_GETTING_FILE", percent=0),
        e(60, "v7", "served", bytes_served=120_000)]
    ev += [e(0, "v8", "attempt", attempt=1), e(0, "v8", "phase", phase="boot")]
    return ev


def save(console: Console, out: Path, name: str, title: str) -> Path:
    svg = out / f"{name}.svg"
    console.save_svg(str(svg), title=title)
    if shutil.which("rsvg-convert"):
        png = out / f"{name}.png"
        subprocess.run(["rsvg-convert", "-o", str(png), str(svg)], check=True)
        return png
    return svg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    station = load_station(ROOT / "bench/stations/virtual-8.yaml")

    bus = EventBus()
    progress = Progress(console=Console(file=io.StringIO()), live=True,
                        slots=station.slots, title=station.name)
    bus.subscribe(progress)          # rows only: the picture is drawn below, not live
    for ev in events():
        bus.publish(ev)
    con = Console(record=True, width=150, file=io.StringIO(), force_terminal=True)
    con.print(progress.render())
    print(save(con, out, "progress-midrun", "fotabench: virtual-8, mid-run"))

    con = Console(record=True, width=110, file=io.StringIO(), force_terminal=True)
    con.print(summary_table(progress.summary_rows(), title=station.name))
    print(save(con, out, "progress-summary", "fotabench: virtual-8, summary"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
