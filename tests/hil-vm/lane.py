#!/usr/bin/env python3
"""fotabench's qemu lane: the C core's GPIO and serial code against real kernel drivers.

Assembles, at run time and from Debian packages only, a guest that has what this
machine's kernel lacks (recipe measured in shared/spec/hil-vm.md):

- a bookworm-backports kernel (image, headers, kbuild), downloaded with
  `apt-get download` into a cache and unpacked there (never installed on the host);
- gpio-sim, which no Debian 12 kernel enables, built out of tree from the same
  version's linux-source package (drivers/gpio/gpio-sim.c + kernel/irq/irq_sim.c);
- an initramfs: busybox-static, /init (guest/init.sh), the module, and the in-guest
  test program (guest/*.c) linked statically against the C core, libgpiod 2 and
  libserialport;

then boots it under qemu (TCG, no KVM needed) with 8250 UARTs: ttyS0 the console,
ttyS1 wired to a host unix socket (this script is the host side), ttyS2 a UART the
guest puts in internal loopback. Last comes the station phase (StationPath): the
guest mounts the host's root read-only over 9p, chroots into it and runs this very
Python's fotabench.Bench on a real-kind slot (ttyS1, lines on gpio-sim) against a
virtual module on the host, its package server reached through qemu's user-mode
network (one forward from the host's loopback, restrict=on). The guest prints `RESULT <name> PASS|FAIL <detail>`
and `MEASURE <name> <value> <unit>` lines; this script adds the host's own RESULT
lines, writes everything to OUT/console.log and OUT/results.json and exits

    0  lane ran (results may still contain FAILs: the caller judges them)
    2  lane broke (build, boot or guest never finished); reason on stderr
    77 lane cannot run here (not x86_64, no qemu, no kernel packages); reason on stderr

Usage: lane.py [--out DIR] [--cache DIR] [--timeout S] [--direct] [--no-whole-path]
               [--no-station]
Cache: $FOTABENCH_HIL_CACHE, else $XDG_CACHE_HOME/fotabench/hil-vm (~/.cache/...).
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import lzma
import os
import platform
import re
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NATIVE = ROOT / "native"
GUEST = HERE / "guest"

SKIP = 77
BROKEN = 2


class LaneSkip(Exception):
    """The lane cannot run on this machine (a reason, not a failure)."""


class LaneError(Exception):
    """The lane could run but broke while assembling or booting."""


def log(msg: str) -> None:
    print(f"[hil-vm {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


T0 = time.monotonic()


def clean_env() -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # the ASan pass preloads libasan into Python
    env["LC_ALL"] = "C"
    return env


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the process (thread) that started it dies,
    so no qemu or virtual module outlives a killed lane."""
    import ctypes
    import signal
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def run(cmd, *, timeout=300, cwd=None, check=True, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=clean_env(), timeout=timeout,
                              capture_output=True, text=True, **kw)
    except subprocess.TimeoutExpired as exc:
        raise LaneError(f"{cmd[0]} timed out after {timeout} s: {' '.join(map(str, cmd))}") from exc
    if check and proc.returncode != 0:
        raise LaneError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                        f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def run_pipe(shell_cmd: str, *, timeout=300) -> None:
    """A pipeline of fixed tools (dpkg-deb | tar); arguments are ours, not user input."""
    run(["bash", "-o", "pipefail", "-c", shell_cmd], timeout=timeout)


# --- host prerequisites --------------------------------------------------------------

QEMU = "qemu-system-x86_64"


def busybox_static() -> str:
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(cand):
            info = run(["file", "-L", cand], check=False).stdout if shutil.which("file") else ""
            if "dynamically linked" not in info:
                return cand
    raise LaneSkip("busybox-static is not installed (apt-get install busybox-static)")


def check_host() -> dict:
    if platform.machine() != "x86_64":
        raise LaneSkip(f"the lane boots an amd64 kernel and runs on x86_64 hosts only "
                       f"(this is {platform.machine()})")
    missing = [t for t in (QEMU, "cpio", "xz", "apt-get", "dpkg-deb", "gcc", "make")
               if not shutil.which(t)]
    if missing:
        raise LaneSkip(f"missing host tools {missing} (bash .ci/install-deps --test installs "
                       "qemu-system-x86 busybox-static cpio xz-utils)")
    return {"busybox": busybox_static()}


# --- kernel packages -----------------------------------------------------------------

def apt_show(spec: str) -> dict:
    proc = run(["apt-cache", "show", "--no-all-versions", spec], check=False, timeout=60)
    fields = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^([A-Za-z-]+): (.*)$", line)
        if m and m.group(1) not in fields:
            fields[m.group(1)] = m.group(2)
    return fields


def resolve_kernel() -> dict:
    """The bookworm-backports kernel (Debian 13 has 6.12 in the release itself)."""
    for spec in ("linux-image-amd64/bookworm-backports", "linux-image-amd64"):
        meta = apt_show(spec)
        m = re.search(r"linux-image-(\d+)\.(\d+)\.(\d+)(\+\S*?)?-amd64", meta.get("Depends", ""))
        if not m:
            continue
        major, minor = int(m.group(1)), int(m.group(2))
        if (major, minor) < (6, 12):
            continue  # Debian 12's own 6.1: use backports or nothing
        abi = m.group(0)[len("linux-image-"):-len("-amd64")]
        return {"abi": abi, "version": meta["Version"], "series": f"{major}.{minor}"}
    raise LaneSkip("no linux-image-amd64 >= 6.12 known to apt (on Debian 12 enable "
                   "bookworm-backports and run apt-get update: .ci/install-deps does)")


def kernel_packages(k: dict) -> list[tuple[str, str]]:
    abi, v = k["abi"], k["version"]
    return [(f"linux-image-{abi}-amd64", v), (f"linux-headers-{abi}-amd64", v),
            (f"linux-headers-{abi}-common", v), (f"linux-kbuild-{abi}", v),
            (f"linux-source-{k['series']}", v)]


def deb_version(path: str) -> str:
    return run(["dpkg-deb", "-f", path, "Version"], timeout=60).stdout.strip()


def fetch_debs(cache: Path, pkgs: list[tuple[str, str]]) -> dict[str, Path]:
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    todo = []
    for name, version in pkgs:
        hit = None
        for cand in sorted(glob.glob(str(debs / f"{name}_*.deb"))):
            if deb_version(cand) == version:
                hit = Path(cand)
            else:
                os.unlink(cand)  # an older kernel: the cache keeps one version
        if hit:
            found[name] = hit
        else:
            todo.append(f"{name}={version}")
    if todo:
        log(f"downloading {' '.join(todo)}")
        t = time.monotonic()
        proc = run(["apt-get", "download", "-q", *todo], cwd=debs, check=False, timeout=900)
        if proc.returncode != 0:
            raise LaneSkip("apt-get download of the kernel packages failed (no network or "
                           f"stale apt lists?):\n{proc.stderr.strip()[-1500:]}")
        log(f"downloaded in {time.monotonic() - t:.1f} s")
        for name, version in pkgs:
            hits = [c for c in glob.glob(str(debs / f"{name}_*.deb")) if deb_version(c) == version]
            if not hits:
                raise LaneError(f"apt-get download did not produce {name} {version}")
            found[name] = Path(hits[0])
    return found


def unpack_kernel(cache: Path, k: dict, debs: dict[str, Path]) -> Path:
    """cache/<abi>/: vmlinuz, configfs.ko.xz, headers (usr/...), gpio-sim sources."""
    kdir = cache / k["abi"]
    stamp = kdir / ".unpacked"
    if stamp.exists() and stamp.read_text() == k["version"]:
        return kdir
    log(f"unpacking kernel {k['abi']} ({k['version']})")
    if kdir.exists():
        shutil.rmtree(kdir)
    tmp = cache / f".{k['abi']}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    abi = k["abi"]
    img = debs[f"linux-image-{abi}-amd64"]
    # Only what the guest needs from the 100 MB image package.
    run_pipe(f"dpkg-deb --fsys-tarfile '{img}' | tar -x -C '{tmp}' --wildcards "
             f"'./boot/vmlinuz-*' '*/kernel/fs/configfs/configfs.ko*'")
    for name in (f"linux-headers-{abi}-amd64", f"linux-headers-{abi}-common", f"linux-kbuild-{abi}"):
        run(["dpkg-deb", "-x", str(debs[name]), str(tmp)], timeout=300)
    # The headers' Makefile includes an absolute /usr/src/... path: point it at the copy.
    hdr = tmp / "usr" / "src" / f"linux-headers-{abi}-amd64"
    mk = hdr / "Makefile"
    mk.write_text(mk.read_text().replace("/usr/src/", f"{kdir}/usr/src/"))
    # The two gpio-sim sources from the same version's kernel tree (never committed).
    src = debs[f"linux-source-{k['series']}"]
    series = k["series"]
    run_pipe(f"dpkg-deb --fsys-tarfile '{src}' | tar -xO ./usr/src/linux-source-{series}.tar.xz"
             f" | tar -xJ -C '{tmp}' --strip-components=1 --wildcards"
             f" '*/drivers/gpio/gpio-sim.c' '*/kernel/irq/irq_sim.c'", timeout=600)
    vmlinuz = glob.glob(str(tmp / "boot" / "vmlinuz-*"))
    configfs = glob.glob(str(tmp / "lib" / "modules" / "*" / "kernel" / "fs" / "configfs" / "configfs.ko*"))
    if not vmlinuz or not configfs:
        raise LaneError("the kernel image package lacks vmlinuz or configfs.ko")
    shutil.move(vmlinuz[0], tmp / "vmlinuz")
    shutil.move(configfs[0], tmp / Path(configfs[0]).name)
    shutil.rmtree(tmp / "boot")
    if (tmp / "lib").exists():
        shutil.rmtree(tmp / "lib")
    os.rename(tmp, kdir)
    stamp.write_text(k["version"])
    return kdir


# The station phase's guest runs the host's own Python from the host's root, mounted
# read-only over 9p (virtio), and serves packages over a virtio NIC: these modules
# (m in Debian's config; virtio and virtio_pci are built in), dependencies first.
STATION_MODULES = ("netfs", "9pnet", "9pnet_virtio", "9p", "failover", "net_failover",
                   "virtio_net")


def _modinfo_depends(ko: bytes) -> list[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def unpack_station_modules(kdir: Path, debs: dict[str, Path], abi: str) -> list[Path]:
    """kdir/station-modules/: the STATION_MODULES, decompressed (busybox insmod may
    lack xz), in load order (each after what its modinfo `depends=` names)."""
    mdir = kdir / "station-modules"
    order_file = mdir / "order"
    if order_file.exists():
        return [mdir / f"{n}.ko" for n in order_file.read_text().split()]
    tmp = kdir / ".station-modules.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    img = debs[f"linux-image-{abi}-amd64"]
    pats = " ".join(f"'*/{n}.ko*'" for n in STATION_MODULES)
    run_pipe(f"dpkg-deb --fsys-tarfile '{img}' | tar -x -C '{tmp}' --wildcards {pats}")
    found: dict[str, bytes] = {}
    for f in tmp.rglob("*.ko*"):
        name = f.name.split(".ko")[0]
        if name in STATION_MODULES:
            data = f.read_bytes()
            if f.name.endswith(".xz"):
                data = lzma.decompress(data)
            found[name] = data
    missing = set(STATION_MODULES) - set(found)
    if missing:
        raise LaneError(f"the kernel image package lacks the modules {sorted(missing)}")
    order: list[str] = []

    def visit(n: str, path: tuple[str, ...] = ()) -> None:
        if n in order:
            return
        if n not in found:
            raise LaneError(f"module {path[-1]} depends on {n}, which the lane does not load")
        for d in _modinfo_depends(found[n]):
            visit(d, path + (n,))
        order.append(n)

    for n in STATION_MODULES:
        visit(n)
    for n in order:
        (tmp / f"{n}.ko").write_bytes(found[n])
    for d in [p for p in tmp.iterdir() if p.is_dir()]:
        shutil.rmtree(d)
    (tmp / "order").write_text(" ".join(order) + "\n")
    os.rename(tmp, mdir)
    return [mdir / f"{n}.ko" for n in order]


def patch_irq_sim(text: str) -> str:
    """irq_sim.c calls irq_to_desc(), which modules cannot use; same effect through the
    exported generic_handle_domain_irq()."""
    old = re.compile(r"\n(\s*)irqnum = irq_find_mapping\(work_ctx->domain, offset\);\n"
                     r"\s*handle_simple_irq\(irq_to_desc\(irqnum\)\);\n")
    new, n = old.subn(r"\n\1generic_handle_domain_irq(work_ctx->domain, offset);\n", text)
    if n != 1:
        raise LaneError("irq_sim.c changed upstream: cannot patch the irq_to_desc call")
    return re.sub(r"\n\s*int irqnum;\n", "\n", new, count=1)


def build_gpio_sim(kdir: Path, abi: str, out: Path) -> Path:
    mdir = out / "gpio-sim"
    if mdir.exists():
        shutil.rmtree(mdir)
    mdir.mkdir(parents=True)
    shutil.copy(kdir / "drivers" / "gpio" / "gpio-sim.c", mdir / "gpio-sim-main.c")
    (mdir / "irq_sim.c").write_text(patch_irq_sim((kdir / "kernel" / "irq" / "irq_sim.c").read_text()))
    (mdir / "Kbuild").write_text("obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n")
    hdr = kdir / "usr" / "src" / f"linux-headers-{abi}-amd64"
    log("building gpio-sim.ko out of tree")
    run(["make", "-C", str(hdr), f"M={mdir}", "CONFIG_DEBUG_INFO_BTF_MODULES=",
         f"-j{os.cpu_count() or 2}", "modules"], timeout=600)
    return mdir / "gpio-sim.ko"


# --- guest program -------------------------------------------------------------------

def core_api(concern: str) -> bool:
    """Whether the C core has its API for a concern yet (serial: serial.h; gpio: gpio.h
    and watchdog.h). The guest tests the core wherever it can, the library directly
    only where the core has nothing yet."""
    inc = NATIVE / "include" / "fotabench"
    need = {"serial": ("serial.h", "timeline.h"), "gpio": ("gpio.h", "watchdog.h", "timeline.h")}
    return all((inc / h).exists() for h in need[concern]) and \
        (GUEST / f"{concern}_core.c").exists()


def build_guest(out: Path, backends: dict[str, str], whole_path: bool) -> Path:
    """The in-guest test program, static: the C core, libgpiod, libserialport, libcrypto."""
    gdir = out / "guest"
    gdir.mkdir(parents=True, exist_ok=True)
    cflags = ["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-static", "-pthread",
              f"-I{GUEST}"]
    if os.environ.get("FOTABENCH_WERROR"):
        cflags.append("-Werror")
    srcs = [str(GUEST / f) for f in ("hiltest.c", "util.c", "judge.c")]
    srcs += [str(GUEST / f"{concern}_{kind}.c") for concern, kind in backends.items()]
    srcs.append(str(GUEST / "wholepath.c"))
    if whole_path:
        cflags.append("-DHIL_WHOLE_PATH=1")
    libs = []
    if "core" in backends.values():
        core = out / "core"
        log("building the C core (native/) into " + str(core))
        # Our own BUILD dir: never races another engineer's or pytest's native/build.
        run(["make", "-s", "-C", str(NATIVE), f"BUILD={core}", "lib"], timeout=600)
        cflags.append(f"-I{NATIVE / 'include'}")
        libs.append(str(core / "libfotabench.a"))
    pc = run(["pkg-config", "--static", "--libs", "libgpiod", "libserialport", "libcrypto"],
             check=False, timeout=60)
    if pc.returncode != 0:
        raise LaneSkip("pkg-config cannot find libgpiod/libserialport/libcrypto "
                       "(bash .ci/install-deps installs them)")
    libs += pc.stdout.split() + ["-lutil"]  # the core's pty backend (openpty)
    exe = gdir / "hiltest"
    run(["gcc", *cflags, *srcs, "-o", str(exe), *libs], timeout=300)
    return exe


def build_relay(out: Path) -> Path:
    """guest/relay.c, static: the station phase's line relay and line holder (fixture:
    libgpiod directly, no core)."""
    exe = out / "guest" / "hilrelay"
    exe.parent.mkdir(parents=True, exist_ok=True)
    cflags = ["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-static", "-pthread",
              f"-I{GUEST}"]
    if os.environ.get("FOTABENCH_WERROR"):
        cflags.append("-Werror")
    pc = run(["pkg-config", "--static", "--libs", "libgpiod", "libcrypto"], timeout=60)
    run(["gcc", *cflags, str(GUEST / "relay.c"), str(GUEST / "util.c"), "-o", str(exe),
         *pc.stdout.split()], timeout=300)
    return exe


# --- the whole path: a virtual module on the host --------------------------------------

FIRMWARE = ROOT / "firmware"


def start_sim(sim: Path, app: Path, state: Path, log_path: Path, deadline: float):
    """fotabench-sim on `app`, powered off (the bench powers it through its lines):
    (process, its log file, its ready line: uart1 pty, gpio.sock)."""
    state.mkdir(exist_ok=True)
    log_fh = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(sim), "--app", str(app), "--state", str(state), "--boot-timing", "fast",
         "--power", "off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_fh, env=clean_env(),
        start_new_session=True, preexec_fn=_die_with_parent)
    out = proc.stdout
    assert out is not None
    sel = selectors.DefaultSelector()
    sel.register(out, selectors.EVENT_READ)
    if not sel.select(max(0.1, min(15.0, deadline - time.monotonic()))):
        proc.kill()
        proc.wait(timeout=5)
        log_fh.close()
        raise LaneError("the virtual module did not say it was ready in 15 s")
    return proc, log_fh, json.loads(out.readline())


class WholePath:
    """Host side of the whole path: the virtual module (firmware/'s fotabench-sim)
    with an app 1.0.0, a FOTA package of 2.0.0 on fotabench's PackageServer, and the
    two relays: module uart1 <-> guest ttyS1, module WDI edges -> guest ttyS3."""

    FROM, TO = "1.0.0", "2.0.0"

    def __init__(self, out: Path):
        self.out = out / "wholepath"
        self.server: Any = None  # fotabench.server.PackageServer
        self.url = ""
        self.sim: subprocess.Popen | None = None
        self._sim_log: Any = None
        self.forwarded: list[tuple[int, int, int]] = []  # (t_ns host, value, seq)
        self.to_guest = self.to_module = 0
        self.sim_log = ""
        self._records: list = []

    def prepare(self, core: Path) -> None:
        """Raises LaneSkip with the reason when there is no virtual module to use."""
        if not (FIRMWARE / "Makefile").exists() or not (FIRMWARE / "sim" / "board.c").exists():
            raise LaneSkip("no virtual module in this tree (firmware/sim)")
        try:
            sys.path.insert(0, str(ROOT / "pymodule"))
            import fotabench  # noqa: F401  (the extension: make build)
            from fotabench.server import PackageServer
        except Exception as exc:  # ImportError, or the extension not built
            raise LaneSkip(f"fotabench is not importable here ({exc}); run under .venv") from exc
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        apps = {}
        for version in (self.FROM, self.TO):
            apps[version] = self.out / f"app-{version}.bin"
            args = ["make", "-s", "-C", str(FIRMWARE), "sim", f"BLD={self.out / 'fw'}",
                    f"BUILD={core}", f"NATIVE_LIB={core / 'libfotabench.a'}",
                    f"VERSION={version}", f"OUT={apps[version]}"]
            if os.environ.get("FOTABENCH_WERROR"):
                args.append("WERROR=1")
            proc = run(args, check=False, timeout=600)
            if proc.returncode != 0:
                raise LaneError("building the virtual module failed:\n"
                                f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        pkg = self.out / f"upgrade-{self.TO}.bin"
        fotabench.Package.build(apps[self.TO], pkg)
        self.server = PackageServer([pkg], http=0, ftp=None).start()
        self.url = str(self.server.url_for(pkg, "http"))
        self.app_from = apps[self.FROM]
        self.package = pkg

    def env_file(self) -> str:
        return f"URL={self.url}\nFROM={self.FROM}\nTO={self.TO}\n"

    def start_module(self, deadline: float) -> dict:
        self.sim, self._sim_log, info = start_sim(self.out / "fw" / "fotabench-sim",
                                                  self.app_from, self.out / "state",
                                                  self.out / "sim.log", deadline)
        return info

    def stop(self) -> None:
        if self.sim and self.sim.poll() is None:
            self.sim.terminate()
            try:
                self.sim.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait(timeout=5)
        if getattr(self, "_sim_log", None):
            self._sim_log.close()
            self._sim_log = None
        if (self.out / "sim.log").exists():
            self.sim_log = (self.out / "sim.log").read_text(errors="replace")
        if self.server:
            self._records = list(self.server.records)
            self.server.stop()
            self.server = None

    def downloads(self) -> list:
        return list(self.server.records) if self.server else self._records




class StationPath:
    """Host side of the station phase: the guest runs `fotabench.Bench` on a station
    file whose slot s1 is of the real kind (port /dev/ttyS1, lines on the gpio-sim
    chip) and whose slot s2 wires a line another program holds. Here: a fresh virtual
    module (agent 1.0.0, powered off) whose uart1 is relayed to ttyS1, whose WDI
    edges go to the guest over ttyS3, and whose PWRKEY/RESET/VBAT pins follow the
    levels the guest's bench drives on gpio-sim (sent back over ttyS3). The package
    server is the guest bench's own, bound in the guest; qemu forwards
    127.0.0.1:<port> on the host to it (user networking, restrict=on: the guest
    reaches nothing else), and the module downloads through that forward.

    Files: OUT/station/ is shared read-write with the guest at the same path (the
    station file, the package, the guest's result.json and run directory);
    OUT/station-host/ holds the module's state and the host's logs."""

    HOLD_LINE, HOLD_CONSUMER = 6, "hil-holder"   # RELAY: slot s2's PWRKEY

    def __init__(self, out: Path, wp: WholePath):
        self.share = out / "station"
        self.host = out / "station-host"
        self.wp = wp
        self.port = 0
        self.sim: subprocess.Popen | None = None
        self._sim_log: Any = None
        self.levels: list[tuple[float, str, int, str]] = []  # (host t, pin, level, board reply)
        self.forwarded: list[tuple[int, int, int]] = []  # WDI edges: (t_ns, value, seq)
        self.to_guest = bytearray()    # module uart1 -> guest ttyS1
        self.to_module = bytearray()   # guest ttyS1 -> module uart1
        self.sim_log = ""

    def prepare(self) -> None:
        for d in (self.share, self.host):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        self.package = self.share / self.wp.package.name
        shutil.copy(self.wp.package, self.package)
        # A free port on the host's loopback for qemu's forward (the guest binds the
        # same number): a tiny race with other programs, said if it ever bites.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        (self.share / "station.in.yaml").write_text(f"""\
# The qemu lane's station (tests/hil-vm/lane.py writes it; the guest's /init puts
# the gpio-sim chip's path for @CHIP@ into station.yaml). Slot s1 is a real-kind
# slot: the 8250 UART ttyS1 (the host relays it to the virtual module's uart1) and
# lines on gpio-sim (named by its label) wired like the module's pins (PWRKEY and
# RESET_N act low). Slot s2's PWRKEY is line {self.HOLD_LINE}, which another
# program holds.
version: 1
station: qemu-guest
protocol: http
power_after: on
server:
  bind: 0.0.0.0           # in the guest; qemu forwards 127.0.0.1:{self.port} of the host
  advertise: 127.0.0.1    # the module, on the host, fetches through that forward
  http_port: {self.port}
  ftp_port: 0
slots:
  - name: s1
    model: M66
    port: /dev/ttyS1
    gpio_chip: fb-bench     # the chip's label: the core finds its /dev/gpiochipN
    lines:
      PWRKEY: {{line: 0, active_low: true}}
      RESET: {{line: 1, active_low: true}}
      VBAT: 2
      WDI: 3
  - name: s2
    model: M66
    port: /dev/ttyS2
    gpio_chip: "@CHIP@"
    lines:
      PWRKEY: {{line: {self.HOLD_LINE}, active_low: true}}
      WDI: 7
""")

    def env_file(self, modules: list[Path]) -> str:
        return (f"STATION_MODULES='{' '.join(m.stem for m in modules)}'\n"
                f"OUT='{self.share}'\nWT='{ROOT}'\nPY='{sys.executable}'\n"
                f"PKG='{self.package}'\nHOLD_LINE={self.HOLD_LINE}\n"
                f"HOLD_CONSUMER={self.HOLD_CONSUMER}\n")

    def qemu_args(self) -> list[str]:
        return ["-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                "multidevs=remap",
                "-virtfs", f"local,path={self.share},mount_tag=out,security_model=none,"
                "multidevs=remap",
                "-nic", f"user,model=virtio-net-pci,restrict=on,"
                f"hostfwd=tcp:127.0.0.1:{self.port}-:{self.port}"]

    def start_module(self, deadline: float) -> dict:
        self.sim, self._sim_log, info = start_sim(self.wp.out / "fw" / "fotabench-sim",
                                                  self.wp.app_from, self.host / "state",
                                                  self.host / "sim.log", deadline)
        return info

    def stop(self) -> None:
        if self.sim and self.sim.poll() is None:
            self.sim.terminate()
            try:
                self.sim.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait(timeout=5)
        if self._sim_log:
            self._sim_log.close()
            self._sim_log = None
        if (self.host / "sim.log").exists():
            self.sim_log = (self.host / "sim.log").read_text(errors="replace")

    def host_record(self) -> dict:
        (self.host / "uart-to-module.log").write_bytes(bytes(self.to_module))
        (self.host / "uart-to-guest.log").write_bytes(bytes(self.to_guest))
        return {"port": self.port, "levels": self.levels,
                "wdi_edges_relayed": len(self.forwarded),
                "bytes_to_guest": len(self.to_guest), "bytes_to_module": len(self.to_module),
                "to_module_text": self.to_module.decode("latin-1")[-4000:],
                "to_guest_text": self.to_guest.decode("latin-1")[-4000:],
                "sim_log": self.sim_log[-3000:]}


# --- initramfs -----------------------------------------------------------------------

def build_initramfs(out: Path, busybox: str, kdir: Path, gpio_sim: Path, hiltest: Path,
                    wholepath_env: str | None, station: "tuple[str, list[Path], Path] | None"
                    = None) -> Path:
    """station: (its /etc/station.env, the modules it loads, hilrelay)."""
    root = out / "initramfs"
    if root.exists():
        shutil.rmtree(root)
    for d in ("bin", "sbin", "proc", "sys", "dev", "run", "tmp", "etc", "lib/modules"):
        (root / d).mkdir(parents=True)
    if wholepath_env:
        (root / "etc" / "wholepath.env").write_text(wholepath_env)
    shutil.copy(busybox, root / "bin" / "busybox")
    shutil.copy(GUEST / "init.sh", root / "init")
    os.chmod(root / "init", 0o755)
    configfs = next(kdir.glob("configfs.ko*"))
    if configfs.suffix == ".xz":  # busybox insmod may lack xz: decompress here
        with open(root / "lib" / "modules" / "configfs.ko", "wb") as fh:
            subprocess.run(["xz", "-dc", str(configfs)], stdout=fh, check=True,
                           env=clean_env(), timeout=60)
    else:
        shutil.copy(configfs, root / "lib" / "modules" / "configfs.ko")
    shutil.copy(gpio_sim, root / "lib" / "modules" / "gpio-sim.ko")
    shutil.copy(hiltest, root / "bin" / "hiltest")
    if station:
        env, modules, relay = station
        (root / "etc" / "station.env").write_text(env)
        for m in modules:
            shutil.copy(m, root / "lib" / "modules" / m.name)
        shutil.copy(relay, root / "bin" / "hilrelay")
    img = out / "initrd.cpio"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    # Uncompressed: the kernel unpacks it faster than it would gunzip it under TCG.
    with open(img, "wb") as fh:
        proc = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=root,
                              input="\n".join(files).encode(), stdout=fh,
                              stderr=subprocess.PIPE, env=clean_env(), timeout=120)
    if proc.returncode != 0:
        raise LaneError(f"cpio failed: {proc.stderr.decode()[-1000:]}")
    return img


# --- boot and the host side of ttyS1 -------------------------------------------------

class Console:
    """Guest console lines (ttyS0 on qemu's stdout), each stamped with host time."""

    def __init__(self, stream):
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.eof = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream):
        buf = b""
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode("utf-8", "replace").rstrip("\r")
                with self.cond:
                    self.lines.append((time.monotonic(), line))
                    self.cond.notify_all()
        with self.cond:
            if buf:
                self.lines.append((time.monotonic(), buf.decode("utf-8", "replace")))
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, pattern: str, deadline: float, start: int = 0):
        """(index, time, match) of the first line from `start` matching, or None."""
        rx = re.compile(pattern)
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i][1])
                    if m:
                        return i, self.lines[i][0], m
                    i += 1
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def text(self) -> str:
        with self.cond:
            return "\n".join(line for _, line in self.lines)


class HostPeer:
    """The host end of the guest's ttyS1 (qemu socket chardev, qemu is the server).

    Connects at once (bytes the guest sends while nobody is connected are lost), but
    stays silent until the guest's console says its port is open: qemu would hold
    early bytes and libserialport's port listing would echo them back."""

    def __init__(self, path: Path, relay_path: Path, console: Console, deadline: float,
                 wholepath: "WholePath | None", station: "StationPath | None" = None):
        self.path, self.relay_path, self.console, self.deadline = path, relay_path, console, deadline
        self.wp = wholepath
        self.st = station
        self.results: list[str] = []
        self.received = bytearray()
        self.sock = None
        self.relay = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def join(self, timeout):
        self._thread.join(timeout)

    def result(self, name, ok, detail):
        self.results.append(f"RESULT {name} {'PASS' if ok else 'FAIL'} {detail}")

    def _recv_until(self, sock, token: bytes, deadline: float) -> bool:
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        try:
            while token not in self.received:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(min(left, 0.5)):
                    if time.monotonic() >= deadline:
                        return False
                    continue
                chunk = sock.recv(65536)
                if not chunk:
                    return False
                self.received += chunk
            return True
        finally:
            sel.unregister(sock)

    def _run(self):
        try:
            self._exchange()
        except Exception as exc:  # reported as a failed host check, never swallowed
            self.result("host_serial", False, f"host side raised {type(exc).__name__}: {exc}")
            return
        if self.wp:
            try:
                self._whole_path()
            except Exception as exc:
                self.result("host_whole_path", False,
                            f"host side raised {type(exc).__name__}: {exc}")
            finally:
                self.wp.stop()
        if self.st:
            try:
                self._station()
            except Exception as exc:
                self.result("host_station", False,
                            f"host side raised {type(exc).__name__}: {exc}")
            finally:
                self.st.stop()

    def _connect(self, path: Path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                sock.connect(str(path))
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > self.deadline:
                    sock.close()
                    return None
                time.sleep(0.02)  # polling for qemu to create the socket, bounded above

    def _exchange(self):
        sock = self._connect(self.path)
        if sock is None:
            self.result("host_serial", False, f"qemu never opened {self.path}")
            return
        self.sock = sock
        self.relay = self._connect(self.relay_path)
        found = self.console.wait_for(r"^HOSTPEER READY (\S+)", self.deadline)
        if not found:
            self.result("host_serial", False, "the guest never said its ttyS1 was open")
            return
        before = bytes(self.received)
        nonce = found[2].group(1).encode()
        # The guest speaks first: PING <nonce>; then we answer and send a block.
        if not self._recv_until(sock, b"PING " + nonce + b"\n", self.deadline):
            self.result("host_serial", False,
                        f"no PING from the guest, got {bytes(self.received)[-200:]!r}")
            return
        block = bytes((i * 7 + 3) & 0xFF for i in range(4096))
        digest = hashlib.sha256(block).hexdigest()[:16]
        sock.sendall(b"PONG " + nonce + b"\n" + f"BLOCK {len(block)} {digest}\n".encode() + block)
        ok = self._recv_until(sock, f"GOT {len(block)} {digest}\n".encode(), self.deadline)
        self.result("host_serial", ok and not before,
                    "ping/pong and a 4096-byte block over the 8250 driver"
                    + ("" if ok else f"; guest answer {bytes(self.received)[-200:]!r}")
                    + (f"; bytes before ready: {before!r}" if before else ""))

    def _whole_path(self):
        """Waits for the guest's WHOLEPATH READY, then powers the virtual module on and
        relays its uart1 and its WDI edges until WHOLEPATH DONE."""
        wp = self.wp
        found = self.console.wait_for(r"^(WHOLEPATH READY|HILVM END)", self.deadline)
        if not found or found[2].group(1) != "WHOLEPATH READY":
            self.result("host_whole_path", False, "the guest never said WHOLEPATH READY")
            return
        start_idx = found[0]
        if self.relay is None:
            self.result("host_whole_path", False, f"qemu never opened {self.relay_path}")
            return
        info = wp.start_module(self.deadline)
        pty = os.open(info["uart1"], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            import tty
            tty.setraw(pty)
            gpio = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            gpio.connect(info["gpio"])
            gpio.sendall(b"WATCH WDI\n")
            # Power on like a bench: VBAT, then PWRKEY low for >= 1 s (the M66's
            # spec), then high.
            gpio.sendall(b"SET VBAT 1\nSET PWRKEY 0\n")
            t_release = time.monotonic() + 1.1
            pwrkey_held = True
            sel = selectors.DefaultSelector()
            sel.register(pty, selectors.EVENT_READ, "pty")
            sel.register(self.sock, selectors.EVENT_READ, "uart")
            sel.register(gpio, selectors.EVENT_READ, "gpio")
            gbuf = b""
            done = False
            while not done and time.monotonic() < self.deadline:
                if pwrkey_held and time.monotonic() >= t_release:
                    gpio.sendall(b"SET PWRKEY 1\n")
                    pwrkey_held = False
                for key, _ in sel.select(0.05):
                    if key.data == "pty":
                        try:
                            data = os.read(pty, 65536)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""  # EIO: the board closed its side
                        if not data:
                            sel.unregister(pty)
                            continue
                        self.sock.sendall(data)
                        wp.to_guest += len(data)
                    elif key.data == "uart":
                        data = self.sock.recv(65536)
                        if not data:  # qemu went away
                            sel.unregister(self.sock)
                            continue
                        os.write(pty, data)
                        wp.to_module += len(data)
                    else:
                        chunk = gpio.recv(65536)
                        if not chunk:  # the board went away
                            sel.unregister(gpio)
                            continue
                        gbuf += chunk
                        while b"\n" in gbuf:
                            line, gbuf = gbuf.split(b"\n", 1)
                            f = line.decode().split()
                            if len(f) == 5 and f[0] == "EDGE" and f[1] == "WDI":
                                v, t_ns, seq = int(f[2]), int(f[3]), int(f[4])
                                wp.forwarded.append((t_ns, v, seq))
                                self.relay.sendall(f"W {v} {seq}\n".encode())
                done = self.console.wait_for(r"^(WHOLEPATH DONE|HILVM END)", 0, start_idx) is not None
            gpio.close()
        finally:
            os.close(pty)
            wp.stop()
        fetched = [r for r in wp.downloads() if getattr(r, "outcome", "") == "complete"]
        ok = done and wp.to_guest > 0 and wp.to_module > 0 and len(wp.forwarded) > 0 and fetched
        self.result("host_whole_path", bool(ok),
                    f"virtual module {wp.FROM} on the host: {wp.to_guest} bytes module->guest, "
                    f"{wp.to_module} guest->module, {len(wp.forwarded)} WDI edges relayed, "
                    f"{len(fetched)} complete download(s) of {wp.url}"
                    + ("" if done else "; the guest never said WHOLEPATH DONE"))


    def _station(self):
        """The station phase: on the guest's STATION READY, starts a fresh virtual
        module, says GO over ttyS3, then relays until STATION DONE: uart1 <-> ttyS1,
        the module's WDI edges -> ttyS3, and the pin levels the guest's bench drives
        on gpio-sim ("O PWRKEY 0" from ttyS3) -> the module's pins (gpio.sock SET)."""
        st = self.st
        found = self.console.wait_for(r"^(STATION READY|STATION SETUP-FAILED.*|HILVM END)",
                                      self.deadline)
        if not found or found[2].group(1) != "STATION READY":
            self.result("host_station", False, "the guest's station phase never got ready: "
                        + (found[2].group(1) if found else "no STATION line"))
            return
        start_idx = found[0]
        if self.relay is None or self.sock is None:
            self.result("host_station", False, "qemu's ttyS1/ttyS3 sockets are not connected")
            return
        info = st.start_module(self.deadline)
        pty = os.open(info["uart1"], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        board_replies: list[str] = []
        try:
            import tty
            tty.setraw(pty)
            gpio = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            gpio.connect(info["gpio"])
            gpio.sendall(b"WATCH WDI\n")
            self.relay.sendall(b"GO\n")
            sel = selectors.DefaultSelector()
            sel.register(pty, selectors.EVENT_READ, "pty")
            sel.register(self.sock, selectors.EVENT_READ, "uart")
            sel.register(gpio, selectors.EVENT_READ, "gpio")
            sel.register(self.relay, selectors.EVENT_READ, "levels")
            gbuf = rbuf = b""
            done = False
            while not done and time.monotonic() < self.deadline:
                for key, _ in sel.select(0.05):
                    if key.data == "pty":
                        try:
                            data = os.read(pty, 65536)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""  # EIO: the board closed its side
                        if not data:
                            sel.unregister(pty)
                            continue
                        self.sock.sendall(data)
                        st.to_guest += data
                    elif key.data == "uart":
                        data = self.sock.recv(65536)
                        if not data:
                            sel.unregister(self.sock)
                            continue
                        os.write(pty, data)
                        st.to_module += data
                    elif key.data == "levels":
                        chunk = self.relay.recv(65536)
                        if not chunk:
                            sel.unregister(self.relay)
                            continue
                        rbuf += chunk
                        while b"\n" in rbuf:
                            line, rbuf = rbuf.split(b"\n", 1)
                            f = line.decode(errors="replace").split()
                            if len(f) == 3 and f[0] == "O" and f[1] in ("PWRKEY", "RESET", "VBAT") \
                                    and f[2] in ("0", "1"):
                                gpio.sendall(f"SET {f[1]} {f[2]}\n".encode())
                                st.levels.append((time.monotonic(), f[1], int(f[2]), ""))
                    else:
                        chunk = gpio.recv(65536)
                        if not chunk:
                            sel.unregister(gpio)
                            continue
                        gbuf += chunk
                        while b"\n" in gbuf:
                            line, gbuf = gbuf.split(b"\n", 1)
                            f = line.decode().split()
                            if len(f) == 5 and f[0] == "EDGE" and f[1] == "WDI":
                                v, t_ns, seq = int(f[2]), int(f[3]), int(f[4])
                                st.forwarded.append((t_ns, v, seq))
                                self.relay.sendall(f"W {v} {seq}\n".encode())
                            elif f and f[0] in ("OK", "ERR"):
                                board_replies.append(line.decode())
                done = self.console.wait_for(r"^(STATION DONE|HILVM END)", 0, start_idx) is not None
            gpio.close()
        finally:
            os.close(pty)
            st.stop()
        # Each SET got its reply in order (WATCH first): a refused level is a failure.
        replies = board_replies[1:]
        st.levels = [(t, pin, v, replies[i] if i < len(replies) else "")
                     for i, (t, pin, v, _) in enumerate(st.levels)]
        refused = [lv for lv in st.levels if not lv[3].startswith("OK")]
        presses = pwrkey_presses(st.levels)
        upg = re.search(rb'AT\+FBUPG="([^"]*)"', bytes(st.to_module))
        ready2 = b'+FBREADY: "2.0.0"' in bytes(st.to_guest)
        reboot = "module reboot" in st.sim_log
        ok = (done and not refused and any(d >= 1.0 for d in presses)
              and any(pin == "VBAT" and v == 1 for _, pin, v, _ in st.levels)
              and upg is not None and f"127.0.0.1:{st.port}/".encode() in upg.group(1)
              and ready2 and reboot and len(st.forwarded) > 0)
        self.result("host_station", bool(ok),
                    f"virtual module 1.0.0 on the host driven by the guest's bench: pin levels "
                    f"{[(p, v) for _, p, v, _ in st.levels]} (refused {len(refused)}), PWRKEY "
                    f"presses {[round(d, 2) for d in presses]} s; "
                    f"{len(st.to_module)} bytes guest->module, {len(st.to_guest)} module->guest; "
                    f"trigger {upg.group(0).decode() if upg else 'none'}; "
                    f"new +FBREADY 2.0.0 {'seen' if ready2 else 'NOT seen'}; module reboot "
                    f"{'logged' if reboot else 'NOT logged'}; {len(st.forwarded)} WDI edges relayed"
                    + ("" if done else "; the guest never said STATION DONE"))


def pwrkey_presses(levels) -> list[float]:
    """Durations (host clock) the module's PWRKEY pin was held low, from the levels
    relayed (the pin acts low)."""
    out, t_low = [], None
    for t, pin, v, _ in levels:
        if pin != "PWRKEY":
            continue
        if v == 0 and t_low is None:
            t_low = t
        elif v == 1 and t_low is not None:
            out.append(t - t_low)
            t_low = None
    return out


def boot(out: Path, kdir: Path, initrd: Path, timeout: float,
         wholepath: "WholePath | None" = None, station: "StationPath | None" = None) -> dict:
    sock_path = out / "ttyS1.sock"
    relay_path = out / "ttyS3.sock"
    for p in (sock_path, relay_path):
        p.unlink(missing_ok=True)
    cmd = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc",
           "-accel", "tcg", "-m", "512", "-no-reboot",
           "-kernel", str(kdir / "vmlinuz"), "-initrd", str(initrd),
           "-append", "console=ttyS0 quiet panic=-1 8250.nr_uarts=5",
           "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
           "-chardev", f"socket,id=u1,path={sock_path},server=on,wait=off",
           "-device", "isa-serial,chardev=u1,index=1",
           "-chardev", "null,id=u2", "-device", "isa-serial,chardev=u2,index=2",
           "-chardev", f"socket,id=u3,path={relay_path},server=on,wait=off",
           "-device", "isa-serial,chardev=u3,index=3"]
    if station:
        cmd += station.qemu_args()
        cmd[cmd.index("-m") + 1] = "768"  # the host's Python and the bench run in the guest
    log("booting: " + " ".join(cmd))
    t_start = time.monotonic()
    deadline = t_start + timeout
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env(), start_new_session=True,
                            preexec_fn=_die_with_parent)
    console = Console(proc.stdout)
    peer = HostPeer(sock_path, relay_path, console, deadline, wholepath, station)
    peer.start()
    fig = {}
    try:
        first = console.wait_for(r".", deadline)
        fig["first_output_s"] = round(first[1] - t_start, 2) if first else None
        init = console.wait_for(r"^HILVM INIT", deadline)
        fig["boot_s"] = round(init[1] - t_start, 2) if init else None
        end = console.wait_for(r"^HILVM END", deadline)
        if end:
            fig["guest_run_s"] = round(end[1] - (init[1] if init else t_start), 2)
            try:
                proc.wait(timeout=max(1.0, min(20.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        peer.join(max(0.1, min(10.0, deadline - time.monotonic())))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if wholepath:
            wholepath.stop()  # idempotent; the peer normally did it
        if station:
            station.stop()
        for conn in (peer.sock, peer.relay):
            if conn:
                conn.close()
        stderr = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        for p in (sock_path, relay_path):
            p.unlink(missing_ok=True)
    fig["qemu_s"] = round(time.monotonic() - t_start, 2)
    return {"console": console.text(), "qemu_stderr": stderr, "host_results": peer.results,
            "finished": bool(end), "timed_out": not end and time.monotonic() >= deadline,
            "qemu_rc": proc.returncode, "figures": fig}


def parse(console: str, host_results: list[str]) -> tuple[dict, dict]:
    results: dict[str, dict[str, str]] = {}
    measures: dict[str, dict[str, str]] = {}
    for line in console.splitlines() + host_results:
        m = re.match(r"^RESULT (\S+) (PASS|FAIL|PENDING)\s?(.*)$", line.strip())
        if m:
            prev = results.get(m.group(1))
            if prev and prev["status"] == "FAIL":  # a check may add a second verdict:
                if m.group(2) == "FAIL":          # any FAIL stands, details add up
                    prev["detail"] += " || " + m.group(3)
                continue
            if prev and m.group(2) == "FAIL":
                m_detail = prev["detail"] + " || " + m.group(3)
                results[m.group(1)] = {"status": "FAIL", "detail": m_detail}
                continue
            results[m.group(1)] = {"status": m.group(2), "detail": m.group(3)}
            continue
        m = re.match(r"^MEASURE (\S+) (\S+)\s?(.*)$", line.strip())
        if m:
            measures[m.group(1)] = {"value": m.group(2), "unit": m.group(3)}
    return results, measures


def wdi_gap_match(wp: WholePath, results: dict, measures: dict) -> None:
    """The guest's largest WDI gap (kernel edge stamps after the relay) against the
    same pair of edges as the virtual module produced them (its own stamps)."""
    name = "wdi_gap_match"
    k = measures.get("wholepath_wdi_max_gap_edge")
    measured = measures.get("wholepath_wdi_max_gap_ms")
    if not k or not measured:
        results[name] = {"status": "FAIL", "detail": "the guest reported no WDI gap"}
        return
    k = int(float(k["value"]))
    fwd = wp.forwarded
    if not 2 <= k <= len(fwd):
        results[name] = {"status": "FAIL",
                         "detail": f"edge {k} not among the {len(fwd)} relayed"}
        return
    produced = (fwd[k - 1][0] - fwd[k - 2][0]) / 1e6
    host_max = max((b[0] - a[0]) / 1e6 for a, b in zip(fwd, fwd[1:])) if len(fwd) > 1 else 0
    m = float(measured["value"])
    measures["wholepath_wdi_gap_produced_ms"] = {"value": f"{produced:.3f}", "unit": "ms"}
    measures["wholepath_wdi_host_max_gap_ms"] = {"value": f"{host_max:.3f}", "unit": "ms"}
    bound = 50.0  # the relay: host select loop, qemu socket, 8250, guest thread, sysfs
    ok = abs(m - produced) <= bound
    results[name] = {"status": "PASS" if ok else "FAIL",
                     "detail": f"largest WDI gap in the guest {m:.1f} ms (edges {k - 1}->{k}) vs "
                               f"{produced:.1f} ms between the same edges at the module "
                               f"(error {m - produced:+.1f} ms, bound {bound:.0f}); the module's "
                               f"largest gap overall {host_max:.1f} ms"}


STATION_CHECKS = ("station_upgrade", "station_gpio_held", "host_station")


def station_unsupported() -> str | None:
    """Why this qemu cannot run the station phase (None: it can)."""
    devs = run([QEMU, "-device", "help"], check=False, timeout=60).stdout
    nets = run([QEMU, "-netdev", "help"], check=False, timeout=60).stdout
    if "virtio-9p-pci" not in devs:
        return f"{QEMU} has no virtio-9p-pci (built without virtfs)"
    if not re.search(r"^user$", nets, re.M):
        return f"{QEMU} has no user-mode networking (built without slirp)"
    return None


def judge_station(st: StationPath, console: str, results: dict, measures: dict) -> dict:
    """The guest's own report of its Bench run (OUT/station/result.json, written by
    guest/station_run.py) judged here; the host side judged itself (host_station)."""
    guest: dict[str, Any] = {}
    path = st.share / "result.json"
    lines = [ln for ln in console.splitlines() if ln.startswith(("STATION", "HOLDER", "RELAY"))]
    tail = " | ".join(lines[-12:])

    def put(name: str, ok: bool, detail: str) -> None:
        results[name] = {"status": "PASS" if ok else "FAIL", "detail": detail}

    try:
        guest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        for name in ("station_upgrade", "station_gpio_held"):
            put(name, False, f"no result from the guest's bench ({exc}); console: {tail}")
        return {"guest": guest, "host": st.host_record(), "console": lines}
    if "error" in guest:
        for name in ("station_upgrade", "station_gpio_held"):
            put(name, False, f"the guest's bench raised {guest['error']}: "
                             f"{guest.get('traceback', '')[-1500:]}")
        return {"guest": guest, "host": st.host_record(), "console": lines}
    res = guest.get("results", {})
    s1, s2 = res.get("s1") or {}, res.get("s2") or {}
    problems = []
    if s1.get("outcome") != "pass":
        problems.append(f"outcome {s1.get('outcome')} ({s1.get('cause') or s1.get('check')}: "
                        f"{(s1.get('reason') or '')[:600]})")
    if (s1.get("version_before"), s1.get("version_after")) != ("1.0.0", "2.0.0"):
        problems.append(f"versions {s1.get('version_before')}->{s1.get('version_after')}")
    gap = (s1.get("watchdog") or {}).get("longest_gap_ns")
    if not gap or not 0 < gap / 1e6 < 1600:
        problems.append(f"watchdog longest gap {gap} ns (must be > 0 and < 1.6 s)")
    requests = [e for e in guest.get("gpio_timeline", []) if e["kind"] == "gpio.request"]
    gpiod = [e for e in requests if e["data"].get("backend") == "gpiod"]
    if len(gpiod) < 4:
        problems.append(f"gpio requests through libgpiod: {requests}")
    records = sorted(Path(guest.get("run_dir", "/nonexistent")).glob("records/*.json"))
    recs = [json.loads(r.read_text()) for r in records]
    rec1 = [r for r in recs if r.get("slot") == "s1"]
    if not rec1 or rec1[-1].get("outcome") != "pass":
        problems.append(f"no passing record of s1 in {guest.get('run_dir')}/records "
                        f"({[(r.get('slot'), r.get('outcome')) for r in recs]})")
    states = [x.get("state") for x in s1.get("states", [])]
    put("station_upgrade", not problems,
        f"fotabench.Bench in the guest (Python {guest.get('python')}, the host's over 9p), "
        f"slot s1 on /dev/ttyS1 + gpio-sim: {s1.get('outcome')} "
        f"{s1.get('version_before')}->{s1.get('version_after')} in {s1.get('duration_s')} s, "
        f"{len(states)} states ending {states[-2:]}, watchdog longest gap "
        f"{(gap or 0) / 1e6:.1f} ms, {len(gpiod)} lines requested through libgpiod, "
        f"{len(recs)} record(s) in the run directory"
        + (f"; PROBLEMS: {'; '.join(problems)}" if problems else ""))
    reason = s2.get("reason") or ""
    held_ok = (s2.get("outcome") == "error" and s2.get("cause") == "gpio"
               and st.HOLD_CONSUMER in reason and f"offset {st.HOLD_LINE}" in reason)
    put("station_gpio_held", held_ok,
        f"slot s2 whose PWRKEY (line {st.HOLD_LINE}) another program holds as "
        f"{st.HOLD_CONSUMER!r}: {s2.get('outcome')}[{s2.get('cause')}] {reason!r}; "
        f"slot s1 alongside: {s1.get('outcome')}")
    for key in ("import_s", "run_s"):
        if key in guest:
            measures[f"station_{key}"] = {"value": str(guest[key]), "unit": "s"}
    if s1.get("duration_s") is not None:
        measures["station_upgrade_s"] = {"value": str(s1["duration_s"]), "unit": "s"}
    if gap:
        measures["station_wdi_max_gap_ms"] = {"value": f"{gap / 1e6:.3f}", "unit": "ms"}
    return {"guest": guest, "host": st.host_record(), "console": lines,
            "records": recs, "station_yaml": (st.share / "station.yaml").read_text()
            if (st.share / "station.yaml").exists() else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "hil-vm")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=180.0, help="guest run bound, seconds")
    ap.add_argument("--direct", action="store_true",
                    help="test libgpiod/libserialport directly even where the core has its API")
    ap.add_argument("--no-whole-path", action="store_true",
                    help="skip the virtual-module upgrade (the whole path)")
    ap.add_argument("--no-station", action="store_true",
                    help="skip the station phase (fotabench.Bench in the guest)")
    args = ap.parse_args(argv)
    cache = args.cache or Path(os.environ.get("FOTABENCH_HIL_CACHE") or
                               Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                               / "fotabench" / "hil-vm")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"figures": {}}
    wp, wp_reason, wp_status = None, None, "PENDING"
    st, st_reason, st_status = None, None, "PENDING"
    try:
        host = check_host()
        t = time.monotonic()
        k = resolve_kernel()
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".lock", "w") as lock:
            # Lanes started at once (several engineers, parallel CI jobs) share the cache.
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
            debs = fetch_debs(cache, kernel_packages(k))
            kdir = unpack_kernel(cache, k, debs)
        summary["figures"]["kernel_ready_s"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        ko = build_gpio_sim(kdir, k["abi"], out)
        backends = {c: "core" if core_api(c) and not args.direct else "direct"
                    for c in ("serial", "gpio")}
        log(f"guest backends: {backends}")
        # The whole path needs the core's serial + AT engine in the guest and the
        # virtual module on the host.
        if args.direct:
            wp_reason = "--direct: the whole path is the core's (fb_serial + fb_at)"
        elif backends["serial"] != "core" or not (NATIVE / "include" / "fotabench" / "at.h").exists():
            wp_reason = "the C core has no serial/AT API yet"
        elif args.no_whole_path:
            wp_reason = "--no-whole-path"
        else:
            wp_reason = None
        hiltest = build_guest(out, backends, wp_reason is None)
        wp_status = "PENDING"
        if wp_reason is None:
            try:
                wp = WholePath(out)
                wp.prepare(out / "core")
            except LaneSkip as exc:
                wp, wp_reason = None, str(exc)
            except LaneError as exc:  # the rest of the lane still runs
                if wp:
                    wp.stop()
                wp, wp_reason, wp_status = None, str(exc).replace("\n", " | ")[-1500:], "FAIL"
        station = None
        if args.no_station:
            st_reason = "--no-station"
        elif wp is None:
            st_reason, st_status = f"needs the whole path's virtual module: {wp_reason}", wp_status
        else:
            st_reason = station_unsupported()
        if st_reason is None:
            try:
                with open(cache / ".lock", "w") as lock:
                    import fcntl
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    modules = unpack_station_modules(kdir, debs, k["abi"])
                st = StationPath(out, wp)
                st.prepare()
                station = (st.env_file(modules), modules, build_relay(out))
            except LaneError as exc:  # the rest of the lane still runs
                st, st_reason, st_status = None, str(exc).replace("\n", " | ")[-1500:], "FAIL"
        initrd = build_initramfs(out, host["busybox"], kdir, ko, hiltest,
                                 wp.env_file() if wp else None, station)
        summary["figures"]["build_s"] = round(time.monotonic() - t, 2)
        summary.update(kernel=k, backends=backends,
                       initrd_bytes=initrd.stat().st_size)
        booted = boot(out, kdir, initrd, args.timeout, wp, st)
    except LaneSkip as exc:
        if wp:
            wp.stop()
        if st:
            st.stop()
        print(f"SKIP: {exc}", file=sys.stderr)
        return SKIP
    except LaneError as exc:
        if wp:
            wp.stop()
        if st:
            st.stop()
        print(f"BROKEN: {exc}", file=sys.stderr)
        return BROKEN
    if wp_reason:
        for name in ("whole_path", "host_whole_path", "wdi_gap_match"):
            booted["host_results"].append(f"RESULT {name} {wp_status} {wp_reason}")
    if st_reason:
        for name in STATION_CHECKS:
            booted["host_results"].append(f"RESULT {name} {st_status} {st_reason}")
    (out / "console.log").write_text(booted["console"] + "\n")
    results, measures = parse(booted["console"], booted["host_results"])
    if wp:
        wdi_gap_match(wp, results, measures)
        summary["sim_log_tail"] = wp.sim_log[-3000:]
    if st:
        summary["station"] = judge_station(st, booted["console"], results, measures)
    summary["figures"].update(booted["figures"])
    summary["figures"]["lane_s"] = round(time.monotonic() - T0, 2)
    summary.update(results=results, measures=measures, finished=booted["finished"],
                   timed_out=booted["timed_out"], qemu_rc=booted["qemu_rc"],
                   qemu_stderr=booted["qemu_stderr"][-4000:])
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, r in results.items():
        log(f"{r['status']:7} {name} {r['detail']}")
    for name, m in measures.items():
        log(f"MEASURE {name} = {m['value']} {m['unit']}")
    log(f"figures {summary['figures']}")
    if not booted["finished"]:
        print("BROKEN: the guest did not finish "
              f"({'timed out' if booted['timed_out'] else 'qemu exited ' + str(booted['qemu_rc'])});"
              f" console tail:\n{booted['console'][-3000:]}\n{booted['qemu_stderr'][-1000:]}",
              file=sys.stderr)
        return BROKEN
    return 0


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through boot()'s finally: qemu is stopped


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
