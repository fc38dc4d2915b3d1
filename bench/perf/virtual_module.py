"""Figures of the virtual module (issue 3): boot-to-+FBREADY, upgrade time of a 300 KB
package at the default link rate (50 kbit/s) and unlimited, memory (RSS) of one module,
and how many modules run at once with every watchdog still fed.

    .venv/bin/python bench/perf/virtual_module.py [--quick] [--max-modules N]

Builds the images with `make -C firmware sim`, serves the package with http.server on
127.0.0.1. Times are wall clock on this machine."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import fotabench  # noqa: E402
from fotabench.sim import VirtualModule  # noqa: E402
from vm_helpers import Uart, build_app, wait_ready  # noqa: E402

PKG_TARGET = 300 * 1024


def pss_kb(pid: int) -> int:
    """Proportional set size: shared library pages divided among their users."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def serve(directory: Path):
    handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa
    SimpleHTTPRequestHandler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def boot_time(app: Path, timing: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="fbperf") as st:
            with VirtualModule(app, st, boot_timing=timing, power=False,
                               stderr=subprocess.DEVNULL) as vm:
                with Uart(vm.uart1) as u:
                    vm.set_line("VBAT", 1)
                    vm.set_line("PWRKEY", 0)
                    t_press = time.monotonic_ns()
                    u.expect(r"^\+FBREADY:", 30)
                    t_ready = u.history[-1][0]
                    vm.set_line("PWRKEY", 1)
                    # the module powers on when PWRKEY has been low for 1 s
                    times.append((t_ready - t_press) / 1e9 - 1.0)
    return sorted(times)[len(times) // 2]


def upgrade_time(v1: Path, pkg_dir: Path, pkg_name: str, **opts) -> tuple[float, float]:
    httpd = serve(pkg_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="fbperf") as st:
            with VirtualModule(v1, st, stderr=subprocess.DEVNULL, **opts) as vm:
                with Uart(vm.uart1) as u:
                    wait_ready(u, "1.0.0", timeout=60)
                    t0 = time.monotonic()
                    url = f"http://127.0.0.1:{httpd.server_address[1]}/{pkg_name}"
                    assert u.command(f'AT+FBUPG="{url}"') == ["OK"]
                    u.expect(r"^\+FBSTATE: UP_SYSTEM_REBOOT,100$", 600)
                    t_dl = time.monotonic() - t0
                    u.expect(r'^\+FBREADY: "2\.0\.0"', 120)
                    return t_dl, time.monotonic() - t0
    finally:
        httpd.shutdown()
        httpd.server_close()


def one_module_rss(app: Path) -> tuple[int, int, int]:
    with tempfile.TemporaryDirectory(prefix="fbperf") as st:
        with VirtualModule(app, st, boot_timing="fast", link_rate="unlimited",
                           stderr=subprocess.DEVNULL) as vm:
            with Uart(vm.uart1) as u:
                wait_ready(u, "1.0.0")
                time.sleep(0.5)
                kids = children(vm.pid)
                return (rss_kb(vm.pid), sum(rss_kb(k) for k in kids),
                        pss_kb(vm.pid) + sum(pss_kb(k) for k in kids))


def many_modules(app: Path, n: int, hold: float, log: Path) -> tuple[int, int, int]:
    """Start n modules, keep them `hold` s; returns (ready, watchdog resets, boots)."""
    vms, uarts = [], []
    log.write_text("")
    with open(log, "ab") as err:
        tmp = tempfile.mkdtemp(prefix="fbmany")
        try:
            for i in range(n):
                vm = VirtualModule(app, f"{tmp}/m{i}", boot_timing="fast",
                                   link_rate="unlimited", stderr=err)
                vm.start()
                vms.append(vm)
                uarts.append(Uart(vm.uart1))
            ready = 0
            for u in uarts:
                try:
                    u.expect(r"^\+FBREADY:", 60)
                    ready += 1
                except TimeoutError:
                    pass
            time.sleep(hold)
        finally:
            for u in uarts:
                u.close()
            for vm in vms:
                vm.stop()
            subprocess.run(["rm", "-rf", tmp])
    text = log.read_text()
    return ready, text.count("watchdog reset"), text.count("module powered on")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the 50 kbit/s download")
    ap.add_argument("--max-modules", type=int, default=400)
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--only-many", action="store_true", help="only the many-modules run")
    ap.add_argument("--start", type=int, default=10, help="modules in the first step (doubles)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fbperf"))
    v1 = build_app("1.0.0", work / "v1.bin")
    so_size = (v1.stat().st_size) - 64
    pad = PKG_TARGET - 80 - 16 - 64 - so_size
    v2 = build_app("2.0.0", work / "v2.bin", pad=pad)
    pkg = work / "v2_pkg.bin"
    fotabench.Package.build(v2, pkg)
    print(f"package: {pkg.stat().st_size} bytes ({pkg.stat().st_size / 1024:.0f} KB)")

    if args.only_many:
        return many_report(v1, work, args)
    print(f"boot to +FBREADY (from the power-on moment), boot-timing real: "
          f"{boot_time(v1, 'real'):.3f} s")
    print(f"boot to +FBREADY (from the power-on moment), boot-timing fast: "
          f"{boot_time(v1, 'fast'):.3f} s")

    dl, total = upgrade_time(v1, work, pkg.name, boot_timing="fast", link_rate="unlimited",
                             latency_ms=0)
    print(f"300 KB upgrade, unlimited link: download {dl:.2f} s, to +FBREADY v2 {total:.2f} s")
    if not args.quick:
        dl, total = upgrade_time(v1, work, pkg.name, boot_timing="real")
        print(f"300 KB upgrade, default link (50 kbit/s, 420 ms latency, real boot timing): "
              f"download {dl:.1f} s, to +FBREADY v2 {total:.1f} s")

    return many_report(v1, work, args)


def many_report(v1: Path, work: Path, args) -> int:
    board, module, pss = one_module_rss(v1)
    print(f"RSS of one virtual module: board {board} KB + module process {module} KB "
          f"= {board + module} KB (PSS {pss} KB)")

    n, best = args.start, 0
    while n <= args.max_modules:
        ready, resets, boots = many_modules(v1, n, args.hold, work / "many.log")
        ok = ready == n and resets == 0 and boots == n
        print(f"{n} modules at once for {args.hold:.0f} s: {ready} ready, "
              f"{resets} watchdog resets -> {'ok' if ok else 'FAILED'}")
        if not ok:
            break
        best = n
        n *= 2
    print(f"modules at once with every watchdog fed: {best}"
          + (" (the limit tried)" if best * 2 > args.max_modules else ""))
    subprocess.run(["rm", "-rf", str(work)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
