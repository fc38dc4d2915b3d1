"""The qemu lane: the C core's GPIO and serial code against real kernel drivers.

tests/hil-vm/lane.py assembles a guest from Debian packages (bookworm-backports
kernel, gpio-sim built out of tree, busybox-static), boots it under qemu with 8250
UARTs and a gpio-sim chip, and runs tests/hil-vm/guest/ (linked statically against
the C core) inside. Each check the guest reports is one test here; a failure shows
the check's detail and the guest's console. Last, the station phase: the host's own
Python and fotabench.Bench, run in the guest, upgrade the host's virtual module
through a real-kind slot (ttyS1 + gpio-sim); the test_station_* tests assert its
evidence. docs/hil-vm.md has the design and the figures.

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
    "station_upgrade",   # fotabench.Bench in the guest: a real-kind slot (ttyS1 + gpio-sim)
    "station_gpio_held", # a slot whose PWRKEY another program holds: error[gpio]
    "host_station",      # host side: the module's pins follow the guest's lines; the trigger
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


# --- the station phase: the same Bench and Upgrade code on a real-kind slot ----------------

def station(lane) -> dict:
    """The station phase's evidence (lane.py's judge_station), once its check ran."""
    judge("station_upgrade", lane["results"].get("station_upgrade"), explain(lane))
    st = lane.get("station")
    assert st and st.get("guest", {}).get("results"), "no station evidence" + explain(lane)
    return st


def test_station_upgrade_over_8250_and_gpio_sim(lane):
    """fotabench.Bench, run in the guest by the host's own Python and fotabench (9p),
    upgrades the virtual module on the host through slot s1: /dev/ttyS1 (8250, through
    libserialport) and PWRKEY/RESET/VBAT/WDI on the gpio-sim chip (libgpiod); its
    server, in the guest, serves the module through qemu's forward."""
    st = station(lane)
    guest, host = st["guest"], st["host"]
    assert guest["executable"] == sys.executable, "the guest ran another Python"
    assert guest["fotabench"].startswith(str(ROOT / "pymodule")), guest["fotabench"]
    yaml_text = st["station_yaml"]
    # s1 names its chip by label (the core finds /dev/gpiochipN), s2 by path
    assert "port: /dev/ttyS1" in yaml_text and "gpio_chip: fb-bench" in yaml_text
    assert "gpio_chip: \"/dev/gpiochip" in yaml_text
    s1 = guest["results"]["s1"]
    assert s1["outcome"] == "pass", s1["reason"]
    assert (s1["version_before"], s1["version_after"]) == ("1.0.0", "2.0.0")
    assert [s["state"] for s in s1["states"]][-1] == "UP_SYSTEM_REBOOT"
    # The watchdog was watched on gpio-sim's WDI for the whole upgrade (the module
    # feeds every 200 ms; its chip bites at 1.6 s).
    wd = s1["watchdog"]
    assert wd["edges"] > 5 and 150e6 < wd["longest_gap_ns"] < 1600e6 and wd["lost"] == 0, wd
    # Every line of s1 through libgpiod on the gpio-sim chip, none virtual.
    req = {e["source"]: e["data"] for e in guest["gpio_timeline"] if e["kind"] == "gpio.request"}
    assert {k: v["backend"] for k, v in req.items()} == {
        "gpio:0": "gpiod", "gpio:1": "gpiod", "gpio:2": "gpiod", "gpio:3": "gpiod"}, req
    assert req["gpio:3"]["direction"] == "input" and req["gpio:0"]["active_low"] is True
    # The bench powered the module: VBAT then a 1.2 s PWRKEY press, which the relay
    # carried to the module's pins on the host (held low >= 1 s by the host's clock).
    assert [p["what"] for p in s1["power_events"]] == ["vbat_on", "pwrkey_on"]
    levels = [(pin, v) for _, pin, v, _ in host["levels"]]
    assert ("VBAT", 1) in levels and ("PWRKEY", 0) in levels, levels
    assert all(reply.startswith("OK") for *_, reply in host["levels"]), host["levels"]
    presses = _presses(host["levels"])
    assert presses and 1.0 <= presses[0] < 2.0, presses
    # The trigger went over ttyS1 to the module, with the guest server's URL.
    assert f'AT+FBUPG="http://127.0.0.1:{host["port"]}/m/s1/' in host["to_module_text"]
    assert '+FBREADY: "2.0.0"' in host["to_guest_text"]
    assert "module reboot" in host["sim_log"]
    # The record, written in the guest's run directory, says the same; the package
    # went from the guest's server to the module on the host (slirp's 10.0.2.2).
    rec = [r for r in st["records"] if r["slot"] == "s1"]
    assert len(rec) == 1 and rec[0]["outcome"] == "pass", rec
    assert rec[0]["module"]["version_after"] == "2.0.0"
    assert rec[0]["watchdog"], rec[0]
    done = [t for t in rec[0]["transfers"] if t["outcome"] == "complete"]
    assert done and done[0]["client"] == "10.0.2.2" and \
        done[0]["bytes_sent"] == rec[0]["package"]["size"], rec[0]["transfers"]


def _presses(levels) -> list[float]:
    out, low = [], None
    for t, pin, v, _ in levels:
        if pin == "PWRKEY" and v == 0 and low is None:
            low = t
        elif pin == "PWRKEY" and v == 1 and low is not None:
            out.append(t - low)
            low = None
    return out


def test_station_gpio_line_held_by_another_program(lane):
    """Slot s2's PWRKEY (gpio-sim line 6, "RELAY") is held by another process
    (guest/relay.c `hold`, consumer "hil-holder"): s2 ends error[gpio] with one line
    naming the line and the holder the kernel reports; s1 beside it still passes."""
    judge("station_gpio_held", lane["results"].get("station_gpio_held"), explain(lane))
    st = station(lane)
    assert any(ln.startswith("HOLDER READY") and "line=6" in ln for ln in st["console"])
    s1, s2 = st["guest"]["results"]["s1"], st["guest"]["results"]["s2"]
    assert (s2["outcome"], s2["cause"]) == ("error", "gpio"), s2
    reason = s2["reason"]
    assert "\n" not in reason and "Traceback" not in reason
    assert "PWRKEY" in reason and "offset 6" in reason and '"RELAY"' in reason, reason
    assert 'held by "hil-holder"' in reason, reason
    assert s2["version_before"] is None and not s2["states"], "s2 must not have started"
    assert s1["outcome"] == "pass" and s2["end_ns"] < s1["end_ns"]
    rec = [r for r in st["records"] if r["slot"] == "s2"]
    assert len(rec) == 1 and (rec[0]["outcome"], rec[0]["cause"]) == ("error", "gpio"), rec
