#!/usr/bin/env python3
"""Flashing benchmark: a 300 KB app image into blank virtual modules over UART.

    .venv/bin/python bench/perf/flash.py [--size-kb 300] [--modules 8] [--quick]

1. One module at 115200 and at 921600: each phase's time, and the data phase against
   its line-rate floor (bytes on the wire in the write phase / (baud / 10)) as a ratio
   (1.0 = the wire's limit; the virtual module's UART is paced at 10 bits a byte).
   The agent is a SYNTHETIC one of the real MT6261 agent's size (0x718 + 0x1E5C8 bytes),
   always sent at 115200, as the BootROM speaks no faster.
2. --modules modules flashed at once at 921600 (one Flasher thread each, the GIL released
   by every session) against one alone: the ratio of the mean write-phase time, and of
   the wall time of the whole batch.

3. --station: the same modules flashed by FlashStation from a station file (blank
   virtual slots wired, so the station powers them into download mode; events, a record
   per slot in a run directory) against the bare Flasher batch of step 2: the overhead
   of the station side, as ratios of the mean write phase and of the batch wall time.

--quick skips the 115200 run. Exit status 1 when a flash fails; figures never fail it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from fotabench.flash import Flasher, FlashResult  # noqa: E402
from fotabench.sim import VirtualModule  # noqa: E402

from flash_helpers import make_da_file, power_up_in_download_mode  # noqa: E402
from vm_helpers import build_app  # noqa: E402


def flash_one(state: Path, image: Path, da: Path, baud: int) -> FlashResult:
    with VirtualModule(None, state, boot_timing="fast", blank=True, power=False) as vm:
        with Flasher(vm.uart1, da=da, handshake_timeout=30) as f:
            t = power_up_in_download_mode(vm)
            r = f.flash(image, baud=baud)
            t.join()
    return r


def show(label: str, r: FlashResult) -> None:
    floor = r.data_bytes * 10 / r.baud
    print(f"{label}: total {r.total_ns / 1e9:6.2f} s (handshake {r.handshake_ns / 1e9:.2f}, "
          f"agent {r.agent_ns / 1e9:.2f}, erase {r.erase_ns / 1e9:.2f}, "
          f"write {r.write_ns / 1e9:.2f}); data phase {r.data_bytes} bytes on the wire, "
          f"floor {floor:.2f} s, ratio {r.line_rate_ratio:.3f} of line rate")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-kb", type=int, default=300)
    ap.add_argument("--modules", type=int, default=8)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--station", action="store_true",
                    help="also flash the modules with FlashStation (step 3)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fbflb"))
    size = args.size_kb * 1024
    probe = build_app("1.0.0", tmp / "probe.bin")
    image = build_app("1.0.0", tmp / "app.bin", pad=size - probe.stat().st_size)
    da = tmp / "SYNTHETIC_DA.bin"
    da.write_bytes(make_da_file([(0x6261, [(0x70007000, bytes(0x718)),
                                           (0x10020000, bytes(range(256)) * 486 + bytes(200))])]))
    print(f"image {image.stat().st_size} bytes (M66), agent {da.stat().st_size} bytes "
          f"(synthetic), virtual module UART paced at 10 bits/byte")
    try:
        for baud in ([921600] if args.quick else [115200, 921600]):
            show(f"1 module  @ {baud:>6}", flash_one(tmp / f"one{baud}", image, da, baud))

        alone = flash_one(tmp / "alone", image, da, 921600)
        show("1 module  @ 921600 (reference for the batch)", alone)
        results: list[FlashResult | BaseException] = [None] * args.modules  # type: ignore

        def run(i: int) -> None:
            try:
                results[i] = flash_one(tmp / f"m{i}", image, da, 921600)
            except BaseException as e:  # reported below
                results[i] = e

        t0 = time.monotonic()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(args.modules)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        failed = [r for r in results if not isinstance(r, FlashResult)]
        if failed:
            print(f"{len(failed)} of {args.modules} flashes failed: {failed[0]!r}")
            return 1
        ok = [r for r in results if isinstance(r, FlashResult)]
        writes = [r.write_ns / 1e9 for r in ok]
        totals = [r.total_ns / 1e9 for r in ok]
        print(f"{args.modules} modules @ 921600 at once: write phase mean {statistics.mean(writes):.2f} s "
              f"(max {max(writes):.2f}), session mean {statistics.mean(totals):.2f} s, batch wall "
              f"{wall:.2f} s; min line-rate ratio {min(r.line_rate_ratio for r in ok):.3f}")
        print(f"ratio {args.modules} at once / one alone: write phase "
              f"{statistics.mean(writes) / (alone.write_ns / 1e9):.3f}, session "
              f"{statistics.mean(totals) / (alone.total_ns / 1e9):.3f}")
        if args.station:
            from fotabench.bench.flash import FlashStation
            st = tmp / "station.yaml"
            st.write_text("version: 1\nstation: perf\nslots:\n" + "".join(
                f"  - {{name: s{i}, virtual: {{blank: true, boot_timing: fast}}}}\n"
                for i in range(args.modules)))
            t0 = time.monotonic()
            run = FlashStation(st, da=da, out_dir=tmp / "run", db=False,
                               handshake_timeout=30).run(image, baud=921600, progress=False)
            swall = time.monotonic() - t0
            bad = [r for r in run.results.values() if not r.ok]
            if bad:
                print(f"{len(bad)} station slots failed: {bad[0].reason}")
                return 1
            sw = [r.result.write_ns / 1e9 for r in run.results.values() if r.result]
            print(f"{args.modules} slots by FlashStation: write phase mean "
                  f"{statistics.mean(sw):.2f} s, "
                  f"batch wall {swall:.2f} s (records in the run directory: "
                  f"{len(list((tmp / 'run' / 'records').iterdir()))})")
            print(f"ratio FlashStation / bare Flasher threads: write phase "
                  f"{statistics.mean(sw) / statistics.mean(writes):.3f}, batch wall "
                  f"{swall / wall:.3f}")
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
