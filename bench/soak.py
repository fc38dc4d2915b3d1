#!/usr/bin/env python3
"""Soak the bench: virtual upgrades in rounds (``--slots`` at once), each slot given a
random fault (seeded: a run can be replayed) or none, for ``--count`` upgrades or
``--minutes``. Reports hangs (a slot not done within its deadline), wrong outcomes (a
fault not detected as the outcome docs/bench.md says), and the bench process's open
file descriptors and RSS after each round (flat means nothing leaks: ports, lines,
board programs, server connections, threads).

    bench/soak.py --count 200 --fast --seed 1

Exit 0 when there was no hang, no wrong outcome, every fault kind ran, and fds, RSS and
threads were flat after the warm-up (``--warmup`` upgrades): the floors (lowest values)
of the second half of the rounds no higher than the first half's for fds and threads,
and for RSS (read after malloc_trim) a rise between them of at most what the run's index
keeps per record by design plus ``--rss-limit-kb``. ``--tracemalloc`` prints where
Python's allocations grew.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

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


#: RSS growth per upgrade (after warm-up, between the floors of the two halves of the
#: rounds) still called flat, beyond what the run's index keeps by design (each record's
#: run.json line and JUnit case, ~4 kB, measured in the run). The leaks this soak found
#: were 55-250 kB per upgrade; one upgrade's objects (a timeline, a Dut) are tens of kB.
RSS_LIMIT_KB = 5.0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc malloc_trim), so RSS
    measures what is live rather than the allocator's high-water marks: every slot
    runs on a new thread, and glibc's per-thread arenas keep freed memory."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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
    ap.add_argument("--warmup", type=int, default=50,
                    help="upgrades before the fd and RSS slopes are measured (imports, "
                         "caches, pymalloc arenas settle)")
    ap.add_argument("--rss-limit-kb", type=float, default=RSS_LIMIT_KB,
                    help="RSS growth per upgrade after warm-up, beyond the run index's "
                         "own, still called flat")
    ap.add_argument("--no-trim", dest="trim", action="store_false",
                    help="measure RSS without first giving the C heap's free memory back "
                         "(malloc_trim)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace Python allocations: print the biggest growths between the "
                         "end of warm-up and the end (slow: for hunting a leak)")
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
    # (upgrades, fds, RSS kB, threads, RSS kB before the heap was trimmed)
    samples: list[tuple[int, int, int, int, int]] = []
    if args.tracemalloc:
        tracemalloc.start(8)
    snaps: list[Any] = []
    t0 = time.monotonic()
    base = (fds(), rss_kb(), threading.active_count())
    order = list(KINDS)
    bench = Bench(StationSpec("soak", (SlotSpec("none"),), timeouts=t), out_dir=work / "runs",
                  db="none").start()
    try:
        loop(args, rng, bench, order, pkg, bad, timing, hangs, wrong, kinds_seen, samples,
             t0, snaps)
        if args.tracemalloc:
            snaps.append(tracemalloc.take_snapshot())
        # What the run keeps by design: each record's run.json line and JUnit case.
        index = bench.recorder.run if bench.recorder is not None else None
        design_kb = index.index_bytes / len(index) / 1024 if index is not None and len(
            index) else 0.0
    finally:
        bench.close()
    done = samples[-1][0] if samples else 0
    rounds = len(samples)
    flat = report(args, done, rounds, t0, kinds_seen, hangs, wrong, samples, base,
                  design_kb)
    if args.tracemalloc and len(snaps) == 2:
        print(f"\nPython allocations grown from upgrade {args.warmup} to the end "
              "(tracemalloc, top 15 places):")
        keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
        diff = snaps[1].filter_traces(keep).compare_to(snaps[0].filter_traces(keep), "lineno")
        for st in diff[:15]:
            print(f"  {st.size_diff / 1024:+9.1f} kB {st.count_diff:+7d} blocks  "
                  f"{st.traceback[0].filename}:{st.traceback[0].lineno}")
    ok = not hangs and not wrong and flat and all(kinds_seen[k] for k in KINDS)
    return 0 if ok else 1


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares growth per upgrade of (upgrades, value) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def loop(args, rng, bench, order, pkg, bad, timing, hangs, wrong, kinds_seen, samples, t0,
         snaps):
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
        raw = rss_kb()
        if args.trim:
            trim_heap()
        samples.append((done, fds(), rss_kb(), threading.active_count(), raw))
        if args.tracemalloc and not snaps and done >= args.warmup:
            snaps.append(tracemalloc.take_snapshot())
        print(f"{done:5d} upgrades  {time.monotonic() - t0:7.1f} s  fds {samples[-1][1]:4d}  "
              f"RSS {samples[-1][2] / 1024:6.1f} MB"
              + (f" ({raw / 1024:.1f} before trim)" if args.trim else "")
              + f"  threads {samples[-1][3]:3d}  "
              f"hangs {len(hangs)}  wrong {len(wrong)}", flush=True)


def report(args, done, rounds, t0, kinds_seen, hangs, wrong, samples, base, design_kb):
    print()
    print(f"soak: {done} upgrades in {time.monotonic() - t0:.0f} s, {rounds} rounds of "
          f"{args.slots}, seed {args.seed}")
    print("kinds: " + ", ".join(f"{k} {kinds_seen[k]}" for k in KINDS))
    print(f"hangs: {len(hangs)}" + (f" ({', '.join(hangs)})" if hangs else ""))
    print(f"wrong outcomes: {len(wrong)}")
    for w in wrong:
        print(f"  {w}")
    flat = False
    if samples:
        first, last = samples[0], samples[-1]
        print(f"fds: before {base[0]}, after round 1 {first[1]}, at the end {last[1]}")
        print(f"RSS: before {base[1] / 1024:.1f} MB, after round 1 {first[2] / 1024:.1f} MB, "
              f"at the end {last[2] / 1024:.1f} MB")
        print(f"threads: before {base[2]}, at the end {last[3]}")
        # Flat or not: the slope per upgrade after warm-up (imports, caches and the
        # allocator's arenas settle in the first rounds), least squares over the rounds.
        after = [s for s in samples if s[0] >= args.warmup]
        if len(after) < 3:
            print(f"flat: not judged: fewer than 3 rounds after the warm-up of "
                  f"{args.warmup} upgrades (run more: --count)")
        else:
            fd_slope = slope([(s[0], s[1]) for s in after])
            rss_slope = slope([(s[0], s[2]) for s in after])
            # A round can end with a server thread (its socket, its buffers) still
            # finishing a transfer the module gave up on (a stall): samples err upwards.
            # So compare the floors of the two halves: a leak raises the floor.
            half = len(after) // 2
            first, second = after[:half], after[half:]

            def floor(i):
                return min(s[i] for s in first), min(s[i] for s in second)
            fd_floor, rss_floor, th_floor = floor(1), floor(2), floor(3)
            span = (second[0][0] + second[-1][0]) / 2 - (first[0][0] + first[-1][0]) / 2
            rss_floor_slope = (rss_floor[1] - rss_floor[0]) / span
            limit = design_kb + args.rss_limit_kb
            fds_flat = fd_floor[1] <= fd_floor[0]
            threads_flat = th_floor[1] <= th_floor[0]
            rss_flat = rss_floor_slope <= limit
            flat = fds_flat and rss_flat and threads_flat
            print(f"after warm-up (upgrades {after[0][0]}..{after[-1][0]}, {len(after)} "
                  f"rounds; floors: the lowest of each half of them):")
            print(f"  fds     floor {fd_floor[0]} then {fd_floor[1]} (range "
                  f"{min(s[1] for s in after)}..{max(s[1] for s in after)}, slope "
                  f"{fd_slope:+.3f}/upgrade): {'FLAT' if fds_flat else 'GROWING'}")
            print(f"  RSS     floor {rss_floor[0] / 1024:.1f} then {rss_floor[1] / 1024:.1f} MB: "
                  f"{rss_floor_slope:+.1f} kB/upgrade (least squares over every round: "
                  f"{rss_slope:+.1f}); flat: <= {limit:.1f} = the run's index, "
                  f"{design_kb:.1f} kB per record by design, + {args.rss_limit_kb:g}: "
                  f"{'FLAT' if rss_flat else 'GROWING'}")
            print(f"  threads floor {th_floor[0]} then {th_floor[1]}: "
                  f"{'FLAT' if threads_flat else 'GROWING'}")
    missing = [k for k in KINDS if kinds_seen[k] == 0]
    if missing:
        print(f"kinds never run: {', '.join(missing)}")
    return flat


if __name__ == "__main__":
    sys.exit(main())
