#!/usr/bin/env python3
"""MD5 throughput: `fotabench md5` against `openssl dgst -md5` on one large cached file.

    .venv/bin/python bench/perf/md5_throughput.py [--size-mb 512] [--runs 5] [--dir DIR]

Writes a file of --size-mb MB (1 MB = 2**20 bytes) in a temporary directory (under
--dir if given; removed at the end), reads it once to warm the page cache, then
alternates the two commands --runs times each, checks that they print the same digest,
and reports median and best wall time and throughput. The target is
fotabench/openssl >= 0.95 (median throughput), whole commands as a user runs them:
process start-up included. The in-process figure (fotabench.md5_file, no start-up)
and each command's start-up on an empty file are printed to tell the two costs apart.
Exit status 1 when a digest differs or a command fails; a ratio below target is
reported, not an error.
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

MB = 1 << 20
TARGET = 0.95
BLOCK = 4 * MB


def make_file(path: Path, size: int) -> None:
    """Random-looking content, fast: one urandom block, each copy stamped with its
    index so no two blocks are equal."""
    base = bytearray(os.urandom(BLOCK))
    with open(path, "wb") as f:
        written = 0
        i = 0
        while written < size:
            base[:8] = i.to_bytes(8, "little")
            n = min(BLOCK, size - written)
            f.write(memoryview(base)[:n])
            written += n
            i += 1


def warm(path: Path) -> float:
    t = time.perf_counter()
    buf = bytearray(BLOCK)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - t


def fotabench_cmd() -> list[str]:
    script = Path(sys.executable).parent / "fotabench"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fotabench"]


def run_timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return dt, p.stdout


def digest_fotabench(out: str) -> str:
    return out.split()[0]          # md5sum format: "<hex>  <name>"


def digest_openssl(out: str) -> str:
    return out.strip().split()[-1]  # "MD5(<name>)= <hex>"


def row(name: str, times: list[float], size: int) -> dict:
    med, best = statistics.median(times), min(times)
    r = {"name": name, "median": med, "best": best,
         "med_mbs": size / MB / med, "best_mbs": size / MB / best}
    print(f"  {name:<28} median {med:7.3f} s  best {best:7.3f} s   "
          f"median {r['med_mbs']:7.1f} MB/s  best {r['best_mbs']:7.1f} MB/s")
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=512, help="file size in MB (2**20 bytes)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each command")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the temporary file")
    args = ap.parse_args(argv)
    if args.size_mb < 1 or args.runs < 1:
        ap.error("--size-mb and --runs must be >= 1")
    openssl = shutil.which("openssl")
    if not openssl:
        print("openssl not found on PATH", file=sys.stderr)
        return 1
    import fotabench  # the package under test, in this interpreter

    fb = fotabench_cmd()
    size = args.size_mb * MB
    tmp = Path(tempfile.mkdtemp(prefix="fotabench-md5-", dir=args.dir))
    try:
        path = tmp / "payload.bin"
        t = time.perf_counter()
        make_file(path, size)
        print(f"file: {path} ({args.size_mb} MB, written in {time.perf_counter() - t:.2f} s)")
        print(f"page cache warm-up read: {warm(path):.2f} s")
        print(f"fotabench: {' '.join(fb)} md5 FILE   (core linked to {fotabench.library_versions()['openssl']})")
        print(f"openssl:   {openssl} dgst -md5 FILE   "
              f"({subprocess.run([openssl, 'version'], capture_output=True, text=True).stdout.strip()})")

        fb_times, ossl_times, inproc_times = [], [], []
        digests = set()
        for i in range(args.runs):
            # Alternate which goes first so neither always runs on a just-touched cache.
            order = [("fb", fb + ["md5", str(path)]), ("ossl", [openssl, "dgst", "-md5", str(path)])]
            if i % 2:
                order.reverse()
            for which, cmd in order:
                dt, out = run_timed(cmd)
                if which == "fb":
                    fb_times.append(dt)
                    digests.add(("fotabench", digest_fotabench(out)))
                else:
                    ossl_times.append(dt)
                    digests.add(("openssl", digest_openssl(out)))
        for _ in range(args.runs):
            t = time.perf_counter()
            d = fotabench.md5_file(path)
            inproc_times.append(time.perf_counter() - t)
            digests.add(("fotabench.md5_file", d))

        # Start-up alone: each command on an empty file.
        empty = tmp / "empty"
        empty.touch()
        fb_start = statistics.median(run_timed(fb + ["md5", str(empty)])[0] for _ in range(5))
        ossl_start = statistics.median(
            run_timed([openssl, "dgst", "-md5", str(empty)])[0] for _ in range(5))

        values = {d for _, d in digests}
        if len(values) != 1:
            print("DIGEST MISMATCH:", sorted(digests), file=sys.stderr)
            return 1
        print(f"digest: {values.pop()} (identical from all {len(digests)} sources)")
        print(f"\n{args.runs} runs each, wall time of the whole command "
              f"(1 MB = 2**20 bytes):")
        r_fb = row("fotabench md5", fb_times, size)
        r_os = row("openssl dgst -md5", ossl_times, size)
        r_ip = row("fotabench.md5_file (in-proc)", inproc_times, size)
        print(f"\nstart-up on an empty file (median of 5): fotabench {fb_start * 1000:.0f} ms, "
              f"openssl {ossl_start * 1000:.0f} ms")
        ratio = r_fb["med_mbs"] / r_os["med_mbs"]
        verdict = "PASS" if ratio >= TARGET else "BELOW"
        print(f"ratio fotabench/openssl (median throughput): {ratio:.3f}   "
              f"target >= {TARGET}: {verdict}")
        ratio_ip = r_ip["med_mbs"] / r_os["med_mbs"]
        print(f"ratio fotabench.md5_file (in-process)/openssl: {ratio_ip:.3f}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
