#!/usr/bin/env python3
"""`make demo-packaging`: the packaging pipeline, then one upgrade on the simulated bench.

Part 1 runs the `fotabench` command line the way a person would, printing each
command and what it answered, into build/demo/. Part 2 runs
bench/examples/upgrade_virtual_module.py: a virtual module powered through its
lines, upgraded over HTTP from fotabench's package server while its watchdog line
is watched, everything on one timeline.
"""
from __future__ import annotations

import hashlib
import random
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "demo"
FOTABENCH = [sys.executable, "-m", "fotabench"]


def step(title: str) -> None:
    print(f"\n== {title}")


def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    shown = " ".join(shlex.quote(str(a).replace(str(ROOT) + "/", "")) for a in args)
    print(f"$ fotabench {shown}")
    r = subprocess.run([*FOTABENCH, *map(str, args)], capture_output=True, text=True)
    for line in (r.stdout + r.stderr).rstrip().splitlines():
        print(f"  {line}")
    if r.returncode != expect:
        sys.exit(f"demo: `fotabench {shown}` exited {r.returncode}, expected {expect}")
    return r


def sample_app(path: Path, size: int = 200 * 1024) -> None:
    """A stand-in for a compiled OpenCPU app: deterministic bytes with a version tag.
    (The virtual module's real app images come with the firmware issue.)"""
    rng = random.Random(20261125)
    body = bytearray(rng.randbytes(size))
    tag = b"fotabench demo app 1.0.0\0"
    body[256:256 + len(tag)] = tag
    path.write_bytes(bytes(body))


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    raw = OUT / "demo_app_raw.bin"
    app = OUT / "APPGS3MDM32A01.bin"
    pkg = OUT / "APPGS3MDM32A01_Upgrade_Package.bin"
    short = OUT / "demo_v1.bin"
    broken = OUT / "damaged_package.bin"

    step("1. a raw application binary (generated stand-in, 200 KiB)")
    sample_app(raw)
    print(f"  wrote {raw.relative_to(ROOT)} ({raw.stat().st_size} bytes)")

    step("2. wrap it into an M66 app image (the GFH header Quectel's Windows tool adds)")
    run("app", "wrap", raw, "--model", "M66", "-o", app)
    run("app", "inspect", app)

    step("3. package it for FOTA (header + CRC, payload, MD5), verified before it is named")
    run("package", app)
    run("inspect", pkg)
    run("md5", pkg)
    if shutil.which("md5sum"):
        r = subprocess.run(["md5sum", str(pkg)], capture_output=True, text=True)
        print(f"  (md5sum says: {r.stdout.split()[0]})")

    step("4. URLs the module's parser accepts")
    run("url", "http", "192.168.10.10", "/fota/" + pkg.name, "--port", "8080")
    print(f"  The package tool's default name has {len(pkg.name)} characters; the module's FTP")
    print("  file name limit is 24, so the FTP URL is refused with the reason:")
    run("url", "ftp", "192.168.10.10", "/fota/" + pkg.name, expect=1)
    shutil.copyfile(pkg, short)
    run("url", "ftp", "192.168.10.10", "/fota/" + short.name, "--port", "2121",
        "--user", "bench", "--password", "s3cret")
    print("  A URL written by hand with the port before the path, as in many notes:")
    run("url", "check", "ftp://192.168.10.10:21/fota/demo_v1.bin", expect=1)

    step("5. a damaged package is caught before any module sees it")
    data = bytearray(pkg.read_bytes())
    data[80 + 5000] ^= 0x01
    broken.write_bytes(bytes(data))
    r = run("inspect", broken, expect=1)
    assert "FAILED  md5" in r.stdout

    step("made")
    width = max(len(str(p.relative_to(ROOT))) for p in (raw, app, pkg, short, broken))
    for p in (raw, app, pkg, short, broken):
        print(f"  {str(p.relative_to(ROOT)):<{width}}  {p.stat().st_size:>7} bytes  "
              f"md5 {hashlib.md5(p.read_bytes()).hexdigest()}")

    step("6. the simulated bench: upgrade a virtual module from v1 to v2 over HTTP")
    sys.path.insert(0, str(ROOT / "bench" / "examples"))
    import upgrade_virtual_module
    return upgrade_virtual_module.main(["--out", str(OUT)])


if __name__ == "__main__":
    sys.exit(main())
