"""The qemu lane never passes by skipping under CI=true (issue 9).

A failed kernel download, run for real: tests/test_hil_vm.py in a pytest of its own,
with an `apt-get` first on PATH whose downloads fail and an empty kernel cache. Outside
CI the lane skips with the reason; under CI=true every lane test fails with it. A check
the guest reports PENDING goes through the same judge as the lane's own tests."""
from __future__ import annotations

import inspect
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import test_hil_vm
from tool_env import tool_env

ROOT = Path(__file__).resolve().parent.parent

needs_lane_host = pytest.mark.skipif(
    platform.machine() != "x86_64" or not shutil.which("qemu-system-x86_64")
    or not shutil.which("apt-cache") or test_hil_vm.SANITIZE,
    reason="the lane's own preconditions (x86_64, qemu, apt, not the ASan pass, whose "
           "sanitized extension a nested pytest cannot load) are not met here: the "
           "download step is never reached")


def run_lane_tests(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin"
    fake.mkdir()
    apt_get = fake / "apt-get"
    # Only `apt-get download` is called by the lane; it fails as without a network.
    apt_get.write_text("#!/bin/sh\necho 'E: Failed to fetch (fake apt-get: no network)' >&2\n"
                       "exit 100\n")
    apt_get.chmod(0o755)
    env = tool_env()
    for k in ("CI", "FOTABENCH_SANITIZE", "FOTABENCH_HIL_VM", "PYTEST_ADDOPTS"):
        env.pop(k, None)
    if ci:
        env["CI"] = "true"
    env["PATH"] = f"{fake}{os.pathsep}{env.get('PATH', '')}"
    env["FOTABENCH_HIL_CACHE"] = str(tmp_path / "cache")  # empty: the lane must download
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rfEs", str(ROOT / "tests" / "test_hil_vm.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@needs_lane_host
def test_failed_kernel_download_skips_outside_ci(tmp_path):
    r = run_lane_tests(tmp_path, ci=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "apt-get download of the kernel packages failed" in out, out[-4000:]
    assert "fake apt-get: no network" in out, out[-4000:]
    assert re.search(r"\b(\d+) skipped\b", out) and " passed" not in out, out[-4000:]


@needs_lane_host
def test_failed_kernel_download_fails_under_ci(tmp_path):
    r = run_lane_tests(tmp_path, ci=True)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-4000:]
    assert "the qemu lane must run in CI but cannot" in out, out[-4000:]
    assert "apt-get download of the kernel packages failed" in out, out[-4000:]
    assert "skipped" not in out.splitlines()[-1] and " passed" not in out, out[-4000:]
    # every lane test, not just the first, reports the failure
    others = [f for name, f in vars(test_hil_vm).items() if name.startswith("test_")
              and name != "test_guest_check" and "lane" in inspect.signature(f).parameters]
    n = len(test_hil_vm.CHECKS) + len(others)
    assert re.search(rf"\b{n} errors?\b|\b{n} failed\b", out.splitlines()[-1]), out[-2000:]


PENDING = {"status": "PENDING", "detail": "the C core has no serial/AT API yet"}


def test_pending_check_skips_outside_ci(monkeypatch):
    monkeypatch.setattr(test_hil_vm, "CI", False)
    with pytest.raises(pytest.skip.Exception, match="whole_path: pending: the C core has no"):
        test_hil_vm.judge("whole_path", PENDING)


def test_pending_check_fails_under_ci(monkeypatch):
    monkeypatch.setattr(test_hil_vm, "CI", True)
    with pytest.raises(pytest.fail.Exception,
                       match="whole_path: PENDING under CI=true .*no serial/AT API yet"):
        test_hil_vm.judge("whole_path", PENDING)


@pytest.mark.parametrize("ci", [False, True])
def test_judge_passes_and_fails_as_reported(monkeypatch, ci):
    monkeypatch.setattr(test_hil_vm, "CI", ci)
    test_hil_vm.judge("gpio_hold", {"status": "PASS", "detail": "ok"})
    with pytest.raises(AssertionError, match="gpio_hold: 3 of 8 lines wrong"):
        test_hil_vm.judge("gpio_hold", {"status": "FAIL", "detail": "3 of 8 lines wrong"})
    with pytest.raises(AssertionError, match="never reported gpio_hold"):
        test_hil_vm.judge("gpio_hold", None)
