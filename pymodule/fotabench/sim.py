"""The virtual module: fotabench's bench agent on the simulated OpenCPU runtime.

``VirtualModule`` starts the board program (``sim_binary()``: in a checkout
``firmware/build/fotabench-sim``, built by ``make build``; in an installed wheel the copy
bundled with the package), reads its JSON line and gives the module's UART paths and
power helpers over its virtual lines (``gpio.sock``, docs/architecture.md).
``agent_image("1.0.0")`` gives a bench-agent app image to flash (bundled v1.0.0 and
v2.0.0 for every model the firmware builds; any version in a checkout)::

    with VirtualModule("app.bin", "state/", boot_timing="fast") as vm:
        print(vm.uart1)          # /dev/pts/N: the bench agent's protocol
        vm.cut_power()           # VBAT off: the module dies at once, flash kept
        vm.power_on()            # VBAT on, PWRKEY low 1.2 s

The board process never outlives the object: ``stop()`` (SIGTERM, then SIGKILL) runs on
exit from the ``with`` block and on any error while starting; if this process dies
first, the board sees its pipe (``--owner-fd``) close and stops, and the module process
dies with the board. One board per state directory (``board.lock``): a second one
raises :class:`SimError` naming the holder's pid.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional, Sequence, Union

from . import _core
from ._core import ArgumentError

__all__ = ["VirtualModule", "SimError", "sim_binary", "agent_image", "agent_images",
           "AGENT_VERSIONS"]

_ROOT = Path(__file__).resolve().parents[2]
# What a wheel carries (setup.py: make -C firmware bundle): the board program and the
# agent images agent-<model>-<version>.bin.
_BUNDLE = Path(__file__).resolve().parent / "_firmware"
PathLike = Union[str, "os.PathLike[str]"]
# The agent versions a wheel bundles, for every model (firmware/Makefile BUNDLE_VERSIONS).
AGENT_VERSIONS = ("1.0.0", "2.0.0")


class SimError(_core.FotabenchError, RuntimeError):
    """The board program could not be started, did not answer, or is gone (a
    FotabenchError, as every error of fotabench; a RuntimeError too)."""

    code_name = "SIM_ERROR"


#: The board program's exit status when another board holds the state directory.
EXIT_STATE_BUSY = 3


def _lock_holder(state: Path) -> Optional[int]:
    """The pid written in the state directory's board.lock, if any."""
    try:
        return int((state / "board.lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _checkout() -> Optional[Path]:
    """The source tree this package runs from (an editable install), if any."""
    if (_ROOT / "firmware" / "Makefile").is_file() and (_ROOT / "pymodule" / "fotabench").is_dir():
        return _ROOT
    return None


def _firmware_build() -> Path:
    """firmware/build of the checkout (build/asan when FOTABENCH_SANITIZE=1)."""
    sub = "build/asan" if os.environ.get("FOTABENCH_SANITIZE") == "1" else "build"
    return _ROOT / "firmware" / sub


def sim_binary() -> Path:
    """The board program: $FOTABENCH_SIM, else the build of this checkout (the ASan
    build when FOTABENCH_SANITIZE=1), else the one bundled with the installed package."""
    env = os.environ.get("FOTABENCH_SIM")
    if env:
        return Path(env)
    if _checkout() is not None:
        return _firmware_build() / "fotabench-sim"
    return _BUNDLE / "fotabench-sim"


def agent_images() -> "dict[tuple[str, str], Path]":
    """The bundled agent images, {(model, version): path} (empty in a checkout)."""
    found = {}
    for p in sorted(_BUNDLE.glob("agent-*-*.bin")):
        model, _, version = p.stem[len("agent-"):].partition("-")
        found[(model, version)] = p
    return found


def agent_image(version: str = "1.0.0", model: str = "M66") -> Path:
    """A bench-agent app image for the virtual module, reporting `version` in +FBREADY.

    In a checkout it is built with make (any version; firmware/build/images/, the ASan
    build when FOTABENCH_SANITIZE=1); an installed wheel gives its bundled image
    (AGENT_VERSIONS for every model the firmware builds). Raises SimError when there is
    none."""
    root = _checkout()
    if root is not None:
        if not version or not all(c.isalnum() or c in ".-_+" for c in version):
            raise SimError(f"agent version {version!r}: use letters, digits and . - _ +")
        if not model.isalnum():
            raise SimError(f"model {model!r}: a name such as M66")
        out = _firmware_build() / "images" / f"agent-{model}-{version}.bin"
        cmd = ["make", "-s", "-C", os.fspath(root / "firmware"), "sim", f"VERSION={version}",
               f"MODEL={model}", f"OUT={out}"]
        if os.environ.get("FOTABENCH_SANITIZE") == "1":
            cmd.append("SANITIZE=1")
        r = subprocess.run(cmd, env=_child_env(), capture_output=True, text=True)
        if r.returncode != 0:
            raise SimError(f"building the agent image failed ({' '.join(cmd)}):\n"
                           f"{(r.stdout + r.stderr).strip()[-2000:]}")
        return out
    image = _BUNDLE / f"agent-{model}-{version}.bin"
    if not image.is_file():
        have = ", ".join(f"{m} {v}" for m, v in agent_images()) or "none"
        raise SimError(f"no bundled agent image {version} for {model} (this installation "
                       f"has: {have})")
    return image


def _child_env() -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # the ASan test pass preloads libasan into Python only
    return env


def _number(option: str, value, kind, minimum, what: str):
    try:
        n = kind(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"--{option} {value!r}: not a number ({what})") from None
    if not (n >= minimum) or n in (float("inf"), float("-inf")):  # also refuses NaN
        raise ArgumentError(f"--{option} {value!r}: must be {what}")
    return n


def _check_board_values(*, link_rate, latency_ms, wdt_timeout, http_timeout, ftp_retry_ms,
                        flash_rate, boot_timing) -> None:
    """The board program's own limits (firmware/sim/board.c), checked before it starts."""
    if link_rate is not None and str(link_rate) != "unlimited":
        _number("link-rate", link_rate, float, 100, "at least 100 bits/s, or 'unlimited'")
    if latency_ms is not None:
        _number("latency-ms", latency_ms, int, 0, "0 or more milliseconds")
    if wdt_timeout is not None:
        _number("wdt-timeout", wdt_timeout, float, 0, "0 (no chip) or more seconds")
    if http_timeout is not None:
        _number("http-timeout", http_timeout, int, 1, "at least 1 second")
    if ftp_retry_ms is not None:
        _number("ftp-retry-ms", ftp_retry_ms, int, 0, "0 or more milliseconds")
    if flash_rate is not None:
        _number("flash-rate", flash_rate, float, 0, "0 (instant) or more bytes/s")
    if boot_timing is not None and boot_timing not in ("real", "fast"):
        raise ArgumentError(f"--boot-timing {boot_timing!r}: use real or fast")


def board_args(app: Optional[PathLike], state: PathLike, *, boot_timing: Optional[str] = None,
               link_rate: Union[int, str, None] = None, latency_ms: Optional[int] = None,
               attach_fail: bool = False, pdp_fail: bool = False,
               wdt_timeout: Optional[float] = None, http_timeout: Optional[int] = None,
               ftp_retry_ms: Optional[int] = None, flash_rate: Optional[float] = None,
               power: Optional[bool] = None, reflash: bool = False,
               model: Optional[str] = None, package_check: Optional[str] = None,
               ftp_short_url: Optional[str] = None, imei: Optional[str] = None,
               blank: bool = False, download: Optional[str] = None,
               line_fault: Optional[str] = None) -> list:
    """Command-line options of the board program (None = its default). A value the
    board would refuse raises ArgumentError naming the option (the board itself only
    prints its usage), as does a state directory whose parent does not exist."""
    _check_board_values(link_rate=link_rate, latency_ms=latency_ms, wdt_timeout=wdt_timeout,
                        http_timeout=http_timeout, ftp_retry_ms=ftp_retry_ms,
                        flash_rate=flash_rate, boot_timing=boot_timing)
    parent = os.path.dirname(os.path.abspath(os.fspath(state)))
    if not os.path.isdir(parent):
        raise ArgumentError(f"state directory {os.fspath(state)}: its parent {parent} does "
                            "not exist (the board creates the state directory, not its parents)")
    args = ["--state", os.fspath(state)]
    if app is not None:
        args += ["--app", os.fspath(app)]
    if boot_timing is not None:
        args += ["--boot-timing", boot_timing]
    if link_rate is not None:
        args += ["--link-rate", str(link_rate)]
    if latency_ms is not None:
        args += ["--latency-ms", str(int(latency_ms))]
    if attach_fail:
        args.append("--attach-fail")
    if pdp_fail:
        args.append("--pdp-fail")
    if wdt_timeout is not None:
        args += ["--wdt-timeout", str(wdt_timeout)]
    if http_timeout is not None:
        args += ["--http-timeout", str(int(http_timeout))]
    if ftp_retry_ms is not None:
        args += ["--ftp-retry-ms", str(int(ftp_retry_ms))]
    if flash_rate is not None:
        args += ["--flash-rate", str(flash_rate)]
    if power is not None:
        args += ["--power", "on" if power else "off"]
    if reflash:
        args.append("--reflash")
    if model is not None:
        args += ["--model", model]
    if package_check is not None:
        args += ["--package-check", package_check]
    if ftp_short_url is not None:
        args += ["--ftp-short-url", ftp_short_url]
    if imei is not None:
        args += ["--imei", imei]
    if blank:
        args.append("--blank")
    if download is not None:
        args += ["--download", download]
    if line_fault is not None:
        args += ["--line-fault", line_fault]
    return args


class VirtualModule:
    """One virtual module (``model``: M66 by default, MC60, MC60E, M26, MC20) running the
    bench agent. Keyword options are the board program's (``fotabench sim --help``);
    ``extra_args`` are passed as they are.

    >>> with VirtualModule("APP.bin", "/tmp/vm", power=False) as vm:   # doctest: +SKIP
    ...     vm.power_on()
    ...     fotabench.Modem(vm.uart1).expect("+FBREADY:", timeout=30)
    """

    def __init__(self, app: Optional[PathLike], state: PathLike, *,
                 binary: Optional[PathLike] = None, start_timeout: float = 10.0,
                 extra_args: Sequence[str] = (), stderr=None, **options):
        self.app = app
        self.state = Path(state)
        self.binary = Path(binary) if binary else sim_binary()
        self.args = board_args(app, state, **options) + list(extra_args)
        self.start_timeout = start_timeout
        self._stderr = stderr
        self.proc: Optional[subprocess.Popen] = None
        self.info: dict = {}
        self._sock: Optional[socket.socket] = None
        self._sock_buf = b""
        self._lock = threading.Lock()
        self._owner_fd: Optional[int] = None  # write end of the board's --owner-fd pipe

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> "VirtualModule":
        if self.proc is not None:
            raise SimError("already started")
        if not self.binary.exists():
            raise SimError(f"{self.binary} not found: build it with `make build` (in a "
                           f"checkout), or set FOTABENCH_SIM")
        # The board stops when the read end of this pipe sees end of file: when stop()
        # closes the write end, or when this process dies. (A process forked from this
        # one without exec inherits the write end and keeps the board alive with it.)
        owner_r, self._owner_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [os.fspath(self.binary), *self.args, "--owner-fd", str(owner_r)],
                stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
                env=_child_env(), pass_fds=(owner_r,))
        except OSError as e:
            os.close(self._owner_fd)
            self._owner_fd = None
            raise SimError(f"cannot start the board program {self.binary}: {e}") from e
        finally:
            os.close(owner_r)
        try:
            assert self.proc.stdout is not None
            fd = self.proc.stdout.fileno()
            poller = select.poll()  # not select(): a station may hold > 1024 fds
            poller.register(fd, select.POLLIN)
            ready = poller.poll(self.start_timeout * 1000)
            line = self.proc.stdout.readline() if ready else b""
            if not line:
                code = self.proc.poll()
                if code is None:
                    try:
                        code = self.proc.wait(1.0)
                    except subprocess.TimeoutExpired:
                        pass
                if code == EXIT_STATE_BUSY:
                    holder = _lock_holder(self.state)
                    who = f"pid {holder}" if holder else "pid unknown"
                    raise SimError(f"the state directory {self.state} is in use by another "
                                   f"board program ({who}): stop it or use another directory")
                raise SimError(f"board program gave no JSON line (exit {code})")
            try:
                self.info = json.loads(line)
            except ValueError as e:
                raise SimError(f"board program printed {line[:200]!r}, not its JSON line") from e
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM the board (it kills the module and removes gpio.sock), SIGKILL if it
        does not end within timeout. Returns its exit code."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        proc, self.proc = self.proc, None
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        return proc.returncode

    def __repr__(self) -> str:
        if not self.running:
            return f"<VirtualModule stopped state={self.state}>"
        return (f"<VirtualModule running pid={self.info.get('pid')} "
                f"uart1={self.info.get('uart1')} uart2={self.info.get('uart2')} "
                f"gpio={self.info.get('gpio')} state={self.state}>")

    def __enter__(self) -> "VirtualModule":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):
        if getattr(self, "proc", None) is not None:
            try:
                self.stop(timeout=1.0)
            except Exception:
                pass

    def _info(self, key: str):
        try:
            return self.info[key]
        except KeyError:
            raise SimError(f"no {key}: the virtual module is not started (use start() or "
                           "`with VirtualModule(...)`)") from None

    # -- what the JSON line says -----------------------------------------------------
    @property
    def uart1(self) -> str:
        return self._info("uart1")

    @property
    def uart2(self) -> str:
        return self._info("uart2")

    @property
    def gpio(self) -> str:
        return self._info("gpio")

    @property
    def pid(self) -> int:
        return self._info("pid")

    @property
    def model(self) -> str:
        return self._info("model")

    @property
    def imei(self) -> str:
        return self._info("imei")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- virtual lines ----------------------------------------------------------------
    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            path = self.gpio
            try:
                if len(path.encode()) > 100:  # sun_path limit: go through the directory's fd
                    dfd = os.open(os.path.dirname(path), os.O_RDONLY)
                    try:
                        s.connect(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
                    finally:
                        os.close(dfd)
                else:
                    s.connect(path)
            except BaseException:
                s.close()
                raise
            self._sock = s
            self._sock_buf = b""
        return self._sock

    def _gone(self, what: str) -> SimError:
        """The error for a board that stopped answering: gone, or what went wrong."""
        proc = self.proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        sock = self.info.get("gpio", "?") if self.info else "?"
        if proc is None:  # not started here (or stopped): no exit status to tell
            return SimError(f"gpio.sock {sock}: {what} (did the board program exit?)")
        if code is not None:
            how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            return SimError(f"the board program (pid {proc.pid}) is gone ({how}): gpio.sock "
                            f"{sock}: {what}")
        return SimError(f"gpio.sock {sock} of the board program (pid {proc.pid}): {what}")

    def command(self, text: str, timeout: Optional[float] = 5.0) -> str:
        """Send one gpio.sock command; return its answer (EDGE events are skipped).
        ``timeout``: the one rule (None for ever, negative or NaN refused). A board that
        is gone raises :class:`SimError` saying so."""
        ns = _core.timeout_ns(timeout, "timeout")
        with self._lock:
            try:
                return self._command(text, float("inf") if ns is None else ns / 1e9)
            except OSError as e:  # refused, reset, broken pipe: say what and why
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                raise self._gone(e.strerror or str(e)) from e

    def _command(self, text: str, timeout: float) -> str:
        s = self._connect()
        s.sendall(text.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._sock_buf:
                line, self._sock_buf = self._sock_buf.split(b"\n", 1)
                word = line.split(b" ", 1)[0]
                if word in (b"OK", b"ERR", b"VAL"):
                    return line.decode()
            left = deadline - time.monotonic()
            if left <= 0:
                raise SimError(f"no answer to {text!r} within {timeout} s")
            s.settimeout(None if left == float("inf") else left)
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionResetError("gpio.sock closed")
            self._sock_buf += chunk

    def set_line(self, name: str, value: int) -> int:
        """Drive an input line; returns the CLOCK_MONOTONIC ns it was applied at."""
        answer = self.command(f"SET {name} {int(value)}")
        if not answer.startswith("OK "):
            raise SimError(answer)
        return int(answer.split()[1])

    def get_line(self, name: str) -> int:
        answer = self.command(f"GET {name}")
        if not answer.startswith("VAL "):
            raise SimError(answer)
        return int(answer.split()[2])

    def power_on(self, hold: float = 1.2) -> None:
        """VBAT on, then PWRKEY low for `hold` s (the M66 needs >= 1 s)."""
        self.set_line("VBAT", 1)
        self.set_line("PWRKEY", 0)
        time.sleep(hold)
        self.set_line("PWRKEY", 1)

    def power_off(self, pulse: float = 0.85) -> None:
        """A PWRKEY low pulse of 0.7-1 s: a normal power-down."""
        self.set_line("PWRKEY", 0)
        time.sleep(pulse)
        self.set_line("PWRKEY", 1)

    def cut_power(self) -> int:
        """VBAT off: the module stops at once; the flash keeps what was written."""
        return self.set_line("VBAT", 0)

    def reset(self, pulse: float = 0.1) -> None:
        self.set_line("RESET", 0)
        time.sleep(pulse)
        self.set_line("RESET", 1)
