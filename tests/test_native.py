"""The C core's own test drivers (native/tests/*.c), built and run from pytest.

In the sanitizer pass (FOTABENCH_SANITIZE=1, `make test-asan`) they are built with
ASan + UBSan and run with LeakSanitizer on, which is where a leak in the core shows:
the Python-side run cannot check leaks under an uninstrumented interpreter.
"""
import os
import subprocess
from pathlib import Path

import pytest

from tool_env import tool_env

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "native"
SANITIZE = os.environ.get("FOTABENCH_SANITIZE", "") not in ("", "0")
DRIVERS = sorted(p.stem for p in (NATIVE / "tests").glob("test_*.c"))


def driver_env():
    # LeakSanitizer on for the drivers in the sanitizer pass: the leak check of the core.
    return tool_env(ASAN_OPTIONS="detect_leaks=1:abort_on_error=1") if SANITIZE else tool_env()


@pytest.fixture(scope="session")
def driver_dir():
    args = ["make", "-s", "-C", str(NATIVE), "tests"]
    if SANITIZE:
        args.append("SANITIZE=1")
    if os.environ.get("FOTABENCH_WERROR"):
        args.append("WERROR=1")
    build = subprocess.run(args, capture_output=True, text=True, env=driver_env())
    assert build.returncode == 0, f"building the C drivers failed:\n{build.stdout}{build.stderr}"
    return NATIVE / "build" / ("asan" if SANITIZE else "native") / "tests"


@pytest.mark.parametrize("driver", DRIVERS)
def test_c_driver(driver, driver_dir, tmp_path):
    run = subprocess.run([str(driver_dir / driver), str(tmp_path)], capture_output=True,
                         text=True, env=driver_env(), timeout=120)
    assert run.returncode == 0, f"{driver} failed:\n{run.stdout}{run.stderr}"
    assert "all checks passed" in run.stdout
