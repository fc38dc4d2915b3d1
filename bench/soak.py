#!/usr/bin/env python3
"""Soak the bench: virtual upgrades in rounds (``--slots`` at once), each slot given a
random fault (seeded: a run can be replayed) or none, for ``--count`` upgrades or
``--minutes``. Reports hangs (a slot not done within its deadline), wrong outcomes (a
fault not detected as the outcome docs/bench.md says), and the bench process's open
file descriptors and RSS after each round (flat means nothing leaks: ports, lines,
board programs, server connections, threads).

    bench/soak.py --count 200 --fast --seed 1

Exit 0 when there was no hang, no wrong outcome and no fd growth.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from fotabench import Bench, Package
from fotabench.bench.config import SlotSpec, StationSpec, Timeouts, VirtualSpec
from fotabench.bench.dut import bundled_agent

#: kind -> (station fault specs, protocol or None for either, expected (outcome, what))
KINDS = {
    "none": ((), None, ("pass", None)),
    "corrupt": (("corrupt:at=1000",), None, ("error", "server")),
    "drop": (("drop:at=50%",), None, ("error", "server")),
    "truncate": (("truncate:at=60%",), "http", ("error", "server")),
    "status": (("status:code=404",), "http", ("error", "server")),
    "stall": (("stall:at=30%,seconds=5", "http_timeout=2"), "http", ("error", "server")),
    "power_cut": (("power_cut:at=40%",), None, ("error", "power")),
    "bad_package": ((), None, ("fail", "upgrade_failed")),
}


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=None, help="run for a time instead")
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fast", action="store_true", help="no boot timing (virtual modules)")
    ap.add_argument("--deadline", type=float, default=120.0,
                    help="seconds after which a slot still running counts as a hang")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="fbsoak"))
    pkg = Package.build(bundled_agent("2.0.0", "M66"), work / "v2.pkg", model="M66")
    data = bytearray(Path(pkg.path).read_bytes())
    data[80 + 5000] ^= 1
    bad = work / "damaged.pkg"
    bad.write_bytes(bytes(data))
    timing = "fast" if args.fast else "real"
    t = Timeouts(boot=40, attach=40, command=10, download_inactivity=30,
                 download_total=120, reboot=40)
    hangs: list[str] = []
    wrong: list[str] = []
    kinds_seen: Counter[str] = Counter()
    samples: list[tuple[int, int, int, int]] = []   # (upgrades, fds, rss kB, threads)
    t0 = time.monotonic()
    base = (fds(), rss_kb(), threading.active_count())
    order = list(KINDS)
    bench = Bench(StationSpec("soak", (SlotSpec("none"),), timeouts=t), out_dir=work / "runs",
                  db="none").start()
    try:
        loop(args, rng, bench, order, pkg, bad, timing, hangs, wrong, kinds_seen, samples,
             t0)
    finally:
        bench.close()
    done = samples[-1][0] if samples else 0
    rounds = len(samples)
    report(args, done, rounds, t0, kinds_seen, hangs, wrong, samples, base)
    ok = not hangs and not wrong and samples and samples[-1][1] <= samples[0][1]
    return 0 if ok else 1


def loop(args, rng, bench, order, pkg, bad, timing, hangs, wrong, kinds_seen, samples, t0):
    done = rounds = 0
    while True:
        if args.minutes is not None:
            if time.monotonic() - t0 >= args.minutes * 60:
                break
        elif done >= args.count:
            break
        rounds += 1
        n = args.slots if args.minutes is not None else min(args.slots, args.count - done)
        # every kind at least once early on, then at random
        plan = [order[(rounds - 1) * n + i] if (rounds - 1) * n + i < len(order)
                else rng.choice(order) for i in range(n)]
        slots = []
        packages = {}
        for i, kind in enumerate(plan):
            specs, proto, _ = KINDS[kind]
            name = f"s{i}"     # a station's slots: the same names every round
            slots.append(SlotSpec(name, protocol=proto or rng.choice(("http", "ftp")),
                                  virtual=VirtualSpec(boot_timing=timing, link_rate="unlimited",
                                                      faults=specs)))
            packages[name] = bad if kind == "bad_package" else Path(pkg.path)
        # One bench (one package server) for the whole soak, as a station runs; each
        # round's slots (new faults and protocols) replace the last.
        bench.station = replace(bench.station, slots=tuple(slots))
        jobs = {s.name: bench.start_slot(s.name, packages[s.name]) for s in slots}
        end = time.monotonic() + args.deadline
        for (name, job), kind in zip(jobs.items(), plan):
            res = job.wait(max(0.0, end - time.monotonic()))
            if res is None:
                hangs.append(f"round {rounds} {name} ({kind})")
                job.cancel("hang")
                res = job.wait(30)
            kinds_seen[kind] += 1
            want = KINDS[kind][2]
            got = (res.outcome, None if res.ok else (res.check or res.cause)) if res \
                else ("hung", None)
            if got != want:
                wrong.append(f"{name} ({kind}, {slots[int(name.split('s')[-1])].protocol}):"
                             f" expected {want}, got {got}: "
                             f"{res.reason.splitlines()[0] if res else ''}")
                print(f"  WRONG {wrong[-1]}", flush=True)
        done += n
        samples.append((done, fds(), rss_kb(), threading.active_count()))
        print(f"{done:5d} upgrades  {time.monotonic() - t0:7.1f} s  fds {samples[-1][1]:4d}  "
              f"RSS {samples[-1][2] / 1024:6.1f} MB  threads {samples[-1][3]:3d}  "
              f"hangs {len(hangs)}  wrong {len(wrong)}", flush=True)


def report(args, done, rounds, t0, kinds_seen, hangs, wrong, samples, base):
    print()
    print(f"soak: {done} upgrades in {time.monotonic() - t0:.0f} s, {rounds} rounds of "
          f"{args.slots}, seed {args.seed}")
    print("kinds: " + ", ".join(f"{k} {kinds_seen[k]}" for k in KINDS))
    print(f"hangs: {len(hangs)}" + (f" ({', '.join(hangs)})" if hangs else ""))
    print(f"wrong outcomes: {len(wrong)}")
    for w in wrong:
        print(f"  {w}")
    if samples:
        # growth from the end of the first round (imports and caches warmed up) to the end
        first, last = samples[0], samples[-1]
        print(f"fds: before {base[0]}, after round 1 {first[1]}, at the end {last[1]} "
              f"(growth {last[1] - first[1]:+d})")
        print(f"RSS: before {base[1] / 1024:.1f} MB, after round 1 {first[2] / 1024:.1f} MB, "
              f"at the end {last[2] / 1024:.1f} MB (growth {(last[2] - first[2]) / 1024:+.1f} MB)")
        print(f"threads: before {base[2]}, at the end {last[3]}")
    missing = [k for k in KINDS if kinds_seen[k] == 0]
    if missing:
        print(f"kinds never run: {', '.join(missing)}")


if __name__ == "__main__":
    sys.exit(main())
