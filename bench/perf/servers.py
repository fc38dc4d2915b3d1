#!/usr/bin/env python3
"""Package server benchmark: fotabench's HTTP server against nginx, and throttle accuracy.

    .venv/bin/python bench/perf/servers.py [--size-kb 300] [--clients 100]
        [--requests 3000] [--runs 5] [--throttle-clients 64] [--throttle-rate 50kbit]
        [--throttle-size-kb 50]

1. Load: a package of --size-kb KB (1 KB = 1000 bytes), --requests GETs by --clients
   concurrent connections (one curl process in --parallel mode, keep-alive), against
   fotabench.PackageServer and against nginx (started here on a loopback port, its
   own config, workers = CPUs) in the same run, alternated --runs times. Every
   transfer's size and status are checked (a short or failed transfer fails the run).
   Reported: median requests/s and throughput (MB/s, 10^6 bytes) of each, and the
   ratio fotabench/nginx (of the medians, and run by run: the runs alternate, so a
   busy machine hits both alike).
2. Throttle accuracy: --throttle-clients concurrent downloads of --throttle-size-kb KB,
   each throttled to --throttle-rate by a fault; achieved rate = size / curl's total
   time per download; reported as achieved/requested (min, median, max), and the
   server's own per-request figure.

Everything runs on 127.0.0.1. Exit status 1 when a transfer fails or is not
byte-exact in size; figures themselves never fail the run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))        # the nginx launcher the tests use

from fotabench import Fault, PackageServer  # noqa: E402
from fotabench.server import parse_rate  # noqa: E402

from server_helpers import NGINX, Nginx  # noqa: E402

CURL = shutil.which("curl")


def load(url: str, n: int, clients: int, size: int, tmp: Path) -> tuple[float, int]:
    """n GETs of url over `clients` parallel connections; (wall seconds, failures)."""
    cfg = tmp / "load.cfg"
    cfg.write_text("".join(f'url = "{url}"\noutput = "/dev/null"\n' for _ in range(n)))
    t = time.perf_counter()
    r = subprocess.run([CURL, "-s", "--parallel", "--parallel-max", str(clients),
                        "--parallel-immediate", "-w", "%{http_code} %{size_download}\n",
                        "-K", str(cfg)], capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t
    lines = r.stdout.split()
    codes, sizes = lines[0::2], lines[1::2]
    bad = sum(1 for c, s in zip(codes, sizes) if c != "200" or int(s) != size)
    bad += n - len(codes)
    return wall, bad


def throttle(url: str, n: int, size: int, tmp: Path) -> list[float]:
    """n parallel downloads; achieved bytes/s of each (size / total time)."""
    cfg = tmp / "thr.cfg"
    cfg.write_text("".join(f'url = "{url}"\noutput = "/dev/null"\n' for _ in range(n)))
    r = subprocess.run([CURL, "-s", "--parallel", "--parallel-max", str(n),
                        "--parallel-immediate", "-w",
                        "%{http_code} %{size_download} %{time_total}\n", "-K", str(cfg)],
                       capture_output=True, text=True, timeout=600)
    rates = []
    for line in r.stdout.splitlines():
        code, got, total = line.split()
        if code != "200" or int(got) != size:
            raise SystemExit(f"throttled transfer failed: {line}")
        rates.append(size / float(total))
    if len(rates) != n:
        raise SystemExit(f"only {len(rates)} of {n} throttled transfers reported")
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-kb", type=int, default=300)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--throttle-clients", type=int, default=64)
    ap.add_argument("--throttle-rate", default="50kbit")
    ap.add_argument("--throttle-size-kb", type=int, default=50)
    args = ap.parse_args()
    if CURL is None:
        print("curl is not installed (apt-get install curl)", file=sys.stderr)
        return 1
    size = args.size_kb * 1000
    failed = False
    with tempfile.TemporaryDirectory(prefix="fb-bench-") as d:
        tmp = Path(d)
        os.chmod(tmp, 0o755)
        www = tmp / "www"
        www.mkdir()
        pkg = www / "APP.bin"
        pkg.write_bytes(os.urandom(size))
        print(f"package {size} bytes, {args.clients} concurrent clients, {args.requests} "
              f"requests per run, {args.runs} runs, {os.cpu_count()} CPUs, "
              f"curl --parallel as the client")
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        nginx = Nginx(www, tmp / "nginx", workers=os.cpu_count() or 1) if NGINX else None
        with PackageServer([pkg], ftp=None) as srv:
            if nginx:
                nginx.start()
            try:
                url = str(srv.url_for("APP.bin", "http"))
                load(url, min(200, args.requests), args.clients, size, tmp)       # warm-up
                if nginx:
                    load(nginx.url("APP.bin"), min(200, args.requests), args.clients, size,
                         tmp)
                for _ in range(args.runs):
                    for name, u, out in (("fotabench", url, ours),
                                         ("nginx", nginx.url("APP.bin") if nginx else None,
                                          theirs)):
                        if u is None:
                            continue
                        wall, bad = load(u, args.requests, args.clients, size, tmp)
                        if bad:
                            print(f"  {name}: {bad} transfers failed or short")
                            failed = True
                        out.append((args.requests / wall, args.requests * size / wall / 1e6))
            finally:
                if nginx:
                    nginx.stop()

        def show(name: str, rs: list[tuple[float, float]]) -> tuple[float, float]:
            rps = statistics.median(r for r, _ in rs)
            mbs = statistics.median(m for _, m in rs)
            print(f"{name:<10} {rps:9.1f} requests/s  {mbs:9.1f} MB/s   "
                  f"(runs: {', '.join(f'{r:.0f}' for r, _ in rs)} req/s)")
            return rps, mbs

        print("load: 300 KB package" if args.size_kb == 300 else f"load: {args.size_kb} KB")
        a = show("fotabench", ours)
        if theirs:
            b = show("nginx", theirs)
            paired = [o[0] / t[0] for o, t in zip(ours, theirs)]
            print(f"ratio fotabench/nginx: {a[0] / b[0]:.2f} (requests/s), "
                  f"{a[1] / b[1]:.2f} (throughput); per run "
                  f"{', '.join(f'{r:.2f}' for r in paired)}")
        else:
            print("nginx: not installed (apt-get install nginx): no ratio")

        rate = parse_rate(args.throttle_rate)
        tsize = args.throttle_size_kb * 1000
        tpkg = www / "THR.bin"
        tpkg.write_bytes(os.urandom(tsize))
        with PackageServer([tpkg], ftp=None) as srv:
            srv.add_fault(Fault.throttle(rate))
            t = time.perf_counter()
            rates = throttle(str(srv.url_for("THR.bin", "http")), args.throttle_clients,
                             tsize, tmp)
            wall = time.perf_counter() - t
            recs = srv.wait_records(args.throttle_clients, timeout=30)
        ratios = sorted(r / rate for r in rates)
        server = sorted(r.throughput / rate for r in recs)
        print(f"throttle: {args.throttle_clients} clients at {args.throttle_rate} "
              f"({rate:.0f} B/s) each, {tsize} bytes each, {wall:.1f} s wall")
        print(f"  achieved/requested (client): min {ratios[0]:.3f}  median "
              f"{statistics.median(ratios):.3f}  max {ratios[-1]:.3f}")
        print(f"  achieved/requested (server records): min {server[0]:.3f}  median "
              f"{statistics.median(server):.3f}  max {server[-1]:.3f}")
        print(f"  aggregate: {sum(rates) * 8 / 1000:.0f} kbit/s for "
              f"{args.throttle_clients * rate * 8 / 1000:.0f} kbit/s requested")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
