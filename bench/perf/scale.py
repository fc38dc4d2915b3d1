#!/usr/bin/env python3
"""How the bench scales with the number of modules: for N = 1, 8, 32, 64 virtual modules
(fast boot), over an unlimited link and at 50 kbit/s, one Bench.run upgrading all N at
once from one package server. Prints, per link rate, the wall time relative to N = 1
(measured in the same run), the bench's own CPU (this process: its threads, not the
board programs) per module as a percentage of one core over the run, and the bench
process's peak RSS. Then the board programs' CPU (every virtual module: board and
module process) and how much of the host's cores bench and boards used together over the
run (near 100 %: the machine, not the bench, sets the pace), and where the time went:
each phase's median and longest time over the slots. Each configuration runs in a fresh
process so peak RSS is its own.

Targets (issue 11): at 50 kbit/s, N = 64 within 1.1x the time of N = 1, and under 2 %
of a core per module.

    .venv/bin/python bench/perf/scale.py [--sizes 1,8,32,64] [--pad 42000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORES = os.cpu_count() or 1


def one(n: int, rate: str, pad: int) -> dict:
    from fotabench import Bench, Package
    from fotabench.bench.config import SlotSpec, StationSpec, Timeouts, VirtualSpec
    from fotabench.bench.dut import build_agent
    from fotabench.timeline import now_ns
    work = Path(tempfile.mkdtemp(prefix="fbscale"))
    app = build_agent("2.0.0", work / "v2.bin", pad=pad, model="M66")
    pkg = Package.build(app, work / "v2.pkg", model="M66")
    link = "unlimited" if rate == "unlimited" else int(rate)
    slots = tuple(SlotSpec(f"m{i:02d}", virtual=VirtualSpec(boot_timing="fast", link_rate=link))
                  for i in range(n))
    st = StationSpec("scale", slots, timeouts=Timeouts(boot=120, attach=120, command=30,
                                                       download_inactivity=120,
                                                       download_total=600, reboot=120))
    with Bench(st, out_dir=work / "runs", db="none") as bench:
        c0, w0, t0 = os.times(), time.monotonic(), now_ns()
        run = bench.run(pkg.path, progress=False)
        c1, w1 = os.times(), time.monotonic()
    c2 = os.times()   # after close: every board program reaped, its CPU counted
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    boards = (c2.children_user - c0.children_user) + (c2.children_system - c0.children_system)
    wall = w1 - w0
    return {"n": n, "rate": rate, "wall_s": wall, "cpu_s": cpu, "size": pkg.size,
            "boards_cpu_s": boards, "phases": phases(run.results.values(), t0),
            "cpu_pct_per_module": 100.0 * cpu / wall / n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "pass": sum(1 for r in run.results.values() if r.ok),
            "outcomes": sorted({f"{r.outcome}:{r.cause or r.check or ''}"
                                for r in run.results.values() if not r.ok}),
            "reasons": [f"{r.slot}: {r.reason.splitlines()[0]}"
                        for r in run.results.values() if not r.ok]}


#: Phases as Upgrade records them (Attempt.phases), in order; "start" is the time from
#: Bench.run's call to the slot's first phase (thread and virtual module started).
PHASES = ("start", "package", "power", "boot", "identify", "attach", "serve", "trigger",
          "download", "reboot", "verify")


def phases(results, t0: int) -> dict[str, list[float]]:
    """Per phase, the median and the longest time over the slots (seconds)."""
    per: dict[str, list[float]] = {p: [] for p in PHASES}
    for r in results:
        att = r.attempts[-1]
        marks = list(att.phases)
        if not marks:
            continue
        per["start"].append((marks[0][1] - t0) / 1e9)
        for (name, t), nxt in zip(marks, [m[1] for m in marks[1:]] + [att.end_ns]):
            if name in per:
                per[name].append((nxt - t) / 1e9)
    return {p: [statistics.median(v), max(v)] for p, v in per.items() if v}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,8,32,64")
    ap.add_argument("--rates", default="unlimited,50000")
    ap.add_argument("--pad", type=int, default=42000, help="agent padding: ~60 KB package")
    ap.add_argument("--one", nargs=2, metavar=("N", "RATE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.pad)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    ok = True
    for rate in args.rates.split(","):
        rows = []
        for n in sizes:
            r = subprocess.run([sys.executable, __file__, "--one", str(n), rate,
                                "--pad", str(args.pad)], capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        base = rows[0]["wall_s"]
        label = "unlimited link" if rate == "unlimited" else f"{int(rate) / 1000:g} kbit/s"
        print(f"\n{label}, package {rows[0]['size']} bytes")
        print(f"{'N':>4}  {'wall':>8}  {'vs N=1':>7}  {'bench CPU':>9}  {'CPU/module':>11}  "
              f"{'peak RSS':>9}  {'boards CPU':>10}  {'host':>5}  pass")
        for r in rows:
            # The board programs' CPU (every virtual module: board + module process)
            # against what the machine has over the run: near 100 % means the host's
            # cores, not the bench, set the pace.
            host = 100.0 * (r["cpu_s"] + r["boards_cpu_s"]) / r["wall_s"] / CORES
            print(f"{r['n']:>4}  {r['wall_s']:7.2f}s  {r['wall_s'] / base:6.2f}x  "
                  f"{r['cpu_s']:8.2f}s  {r['cpu_pct_per_module']:9.2f} %  "
                  f"{r['peak_rss_mb']:7.1f}MB  {r['boards_cpu_s']:9.2f}s  {host:4.0f}%  "
                  f"{r['pass']}/{r['n']}"
                  + (f"  {', '.join(r['outcomes'])}" if r["outcomes"] else ""))
            ok = ok and r["pass"] == r["n"]
            for reason in r["reasons"]:
                print(f"        not passed: {reason}")
        print(f"  where the time goes (seconds, median / longest over the slots; start = "
              f"from Bench.run to the slot's first phase)")
        print("  " + f"{'phase':>9}" + "".join(f"  {'N=' + str(r['n']):>13}" for r in rows))
        for p in PHASES:
            if any(p in r["phases"] for r in rows):
                print("  " + f"{p:>9}" + "".join(
                    f"  {r['phases'][p][0]:6.2f}/{r['phases'][p][1]:6.2f}" if p in r["phases"]
                    else f"  {'-':>13}" for r in rows))
        if rate != "unlimited":
            big = rows[-1]
            print(f"targets at {label}: N={big['n']} {big['wall_s'] / base:.2f}x of N=1 "
                  f"(target <= 1.10x), {big['cpu_pct_per_module']:.2f} % of a core per module "
                  f"(target < 2 %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
