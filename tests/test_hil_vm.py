"""The qemu lane: the C core's GPIO and serial code against real kernel drivers.

tests/hil-vm/lane.py assembles a guest from Debian packages (bookworm-backports
kernel, gpio-sim built out of tree, busybox-static), boots it under qemu with 8250
UARTs and a gpio-sim chip, and runs tests/hil-vm/guest/ (linked statically against
the C core) inside. Each check the guest reports is one test here; a failure shows
the check's detail and the guest's console. docs/hil-vm.md has the design and the
figures.

Skips, with the reason, when the lane cannot run: not x86_64, no qemu, kernel
packages unavailable (a failed download), FOTABENCH_HIL_VM=0; a check the guest
reports PENDING (the core has no API for it yet) skips with its reason. Under CI=true
the lane never passes by skipping: each of those is a failure with the same reason.
The one exception is the ASan pass (FOTABENCH_SANITIZE=1): the lane ran in the normal
pass, and its static guest is not sanitized anyway.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tool_env import tool_env

ROOT = Path(__file__).resolve().parent.parent
LANE = ROOT / "tests" / "hil-vm" / "lane.py"
CI = os.environ.get("CI") == "true"
SANITIZE = os.environ.get("FOTABENCH_SANITIZE", "") not in ("", "0")

# Every check the guest must report (guest/hiltest.c runs them; lane.py adds the host's).
CHECKS = [
    "serial_list",       # libserialport port listing sees the real UARTs, not the absent one
    "serial_loopback",   # open/configure/read back/write/read/DTR/RTS/break in 16550 loopback
    "serial_host",       # guest side of the ttyS1 <-> host socket exchange
    "host_serial",       # host side of it: silent until the guest's port is open
    "gpio_hold",         # outputs held, seen by the simulator
    "gpio_pulse",        # pulses vs the kernel's gpio_value trace timestamps
    "gpio_edges",        # both-edge events in order, seqno, latency vs the pull writes
    "watchdog_100ms",    # WDI fed every 100 ms, a 1 s stall reported and measured
    "watchdog_20ms",     # WDI fed every 20 ms, a 300 ms stall
    "whole_path",        # the core upgrades the virtual module over ttyS1, watching WDI
    "host_whole_path",   # host side: module started, uart1 and WDI relayed, package fetched
    "wdi_gap_match",     # largest WDI gap in the guest vs the same edges at the module
    "lost_events",       # kernel buffer overflow detected by sequence number; core queue overflow
    "lost_events_first", # edges dropped before the first one read: a sequence gap too
]

LANE_TIMEOUT = 900  # cold cache: ~275 MB of kernel packages; warm: ~20 s


def cannot_run(reason: str):
    if CI:
        pytest.fail(f"the qemu lane must run in CI but cannot: {reason}", pytrace=False)
    pytest.skip(reason)


def judge(check: str, got: "dict | None", context: str = "") -> None:
    """One guest check's verdict: PASS passes, FAIL fails; PENDING skips with its reason,
    and fails under CI=true (a lane that tests less than it lists is not a pass)."""
    assert got is not None, f"the guest never reported {check}" + context
    if got["status"] == "PENDING":
        if CI:
            pytest.fail(f"{check}: PENDING under CI=true (the lane must run every check): "
                        f"{got['detail']}" + context, pytrace=False)
        pytest.skip(f"{check}: pending: {got['detail']}")
    assert got["status"] == "PASS", f"{check}: {got['detail']}" + context


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    if SANITIZE:
        pytest.skip("ASan pass: the qemu lane ran in the normal pass (its guest is static, "
                    "not sanitized)")
    if os.environ.get("FOTABENCH_HIL_VM") == "0":
        cannot_run("FOTABENCH_HIL_VM=0: the qemu lane is switched off")
    if platform.machine() != "x86_64":
        cannot_run(f"the qemu lane boots an amd64 kernel: x86_64 hosts only "
                   f"(this is {platform.machine()})")
    if not shutil.which("qemu-system-x86_64"):
        cannot_run("qemu-system-x86_64 is not installed (bash .ci/install-deps --test)")
    out = tmp_path_factory.mktemp("hil-vm")
    try:
        proc = subprocess.run([sys.executable, str(LANE), "--out", str(out)],
                              capture_output=True, text=True, env=tool_env(),
                              timeout=LANE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the qemu lane did not finish in {LANE_TIMEOUT} s:\n"
                    f"{(exc.stderr or b'')[-4000:]!r}", pytrace=False)
    if proc.returncode == 77:
        err = proc.stderr
        cannot_run(err[err.find("SKIP:") + len("SKIP:"):].strip() if "SKIP:" in err
                   else "lane skipped")
    console = (out / "console.log").read_text() if (out / "console.log").exists() else ""
    assert proc.returncode == 0, (
        f"the qemu lane broke (rc {proc.returncode}):\n{proc.stderr[-6000:]}\n"
        f"--- guest console ---\n{console[-6000:]}")
    summary = json.loads((out / "results.json").read_text())
    summary["console"] = console
    summary["out"] = str(out)
    summary["log"] = proc.stderr
    return summary


def explain(summary: dict) -> str:
    return (f"\n--- guest console ({summary['out']}/console.log) ---\n{summary['console'][-8000:]}"
            f"\n--- lane log ---\n{summary['log'][-3000:]}")


@pytest.mark.parametrize("check", CHECKS)
def test_guest_check(lane, check):
    judge(check, lane["results"].get(check), explain(lane))


def test_guest_reported_only_known_checks(lane):
    """A check added to the guest is added here too (so it cannot fail unnoticed)."""
    unknown = sorted(set(lane["results"]) - set(CHECKS))
    assert not unknown, f"checks reported by the guest but not listed in CHECKS: {unknown}"


def test_lane_figures(lane, record_property):
    """The figures docs/hil-vm.md reports: present, and printed with -v -s."""
    fig, meas = lane["figures"], lane["measures"]
    for key in ("boot_s", "guest_run_s", "lane_s"):
        assert fig.get(key) is not None, f"figure {key} missing: {fig}" + explain(lane)
    for key in ("pulse_err_max_us", "watchdog_100ms_gap_measured_ms",
                "watchdog_100ms_gap_produced_ms", "watchdog_20ms_gap_measured_ms",
                "watchdog_20ms_gap_produced_ms"):
        assert key in meas, f"measure {key} missing" + explain(lane)
    for k, v in {**fig, **{k: m["value"] for k, m in meas.items()}}.items():
        record_property(k, v)
    print(f"\nqemu lane ({lane.get('backends')}, kernel {lane['kernel']['abi']}): "
          f"{json.dumps(fig)}")
    for k, m in meas.items():
        print(f"  {k} = {m['value']} {m['unit']}")
