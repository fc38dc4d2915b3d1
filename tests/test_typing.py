"""The shipped type information stays true: the extension's .pyi against the
compiled module (stubtest), and the Python package under mypy."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed (make test installs it)")


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_core_stub_matches_extension():
    r = run("mypy.stubtest", "fotabench._core")
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_type_checks():
    r = run("mypy", "--config-file", str(ROOT / "pyproject.toml"))
    assert r.returncode == 0, r.stdout + r.stderr
