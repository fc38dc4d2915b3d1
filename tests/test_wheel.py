"""`pip install` of the wheel is enough for virtual modules (issue 9, item 4).

The sdist is built from this checkout and must carry every source (the C core, the
extension, the firmware); a wheel is built from that sdist alone (so from source, with no
build product of the checkout), installed into a fresh virtual environment outside the
checkout, and tests/wheel_upgrade.py runs from there: the bundled board program and agent
images, `fotabench sim --agent`, and a real upgrade 1.0.0 -> 2.0.0 over HTTP.
About a minute: the wheel compiles the core, the extension and the firmware."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tool_env import tool_env

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = os.environ.get("FOTABENCH_SANITIZE", "") not in ("", "0")

pytestmark = [
    pytest.mark.wheel,
    pytest.mark.skipif(SANITIZE, reason="ASan pass: the wheel is built and checked in the "
                                        "normal pass (a user's wheel is not sanitized)"),
]


def clean_env() -> dict:
    """Nothing of this test run may leak into the builds or the fresh environment."""
    env = tool_env()
    for k in ("FOTABENCH_SIM", "FOTABENCH_SANITIZE", "PYTHONPATH", "PYTEST_ADDOPTS"):
        env.pop(k, None)
    return env


def run(cmd, cwd, timeout=900) -> subprocess.CompletedProcess:
    r = subprocess.run([os.fspath(c) for c in cmd], cwd=cwd, env=clean_env(),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n" \
                              f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def firmware_models() -> list[str]:
    """MODELS from firmware/Makefile, read with make itself."""
    r = subprocess.run(["make", "-s", "-C", str(ROOT / "firmware"), "models"],
                       capture_output=True, text=True, env=tool_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                               "print(b.build_sdist(sys.argv[1]))", out], cwd=ROOT)
    (path,) = out.glob("fotabench-*.tar.gz")
    return path


def test_sdist_carries_every_source(sdist):
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "native/src", "native/include",
                              "pymodule/ext", "firmware"], capture_output=True, text=True)
    expected = set(tracked.stdout.split()) if tracked.returncode == 0 else set()
    expected |= {"native/Makefile", "firmware/Makefile", "firmware/sim/board.c",
                 "firmware/sim/mkimage.c", "firmware/app/fb_agent.c", "setup.py"}
    missing = sorted(expected - names)
    assert not missing, f"the sdist lacks {missing}"
    built = sorted(n for n in names if n.startswith(("firmware/build", "native/build")))
    assert not built, f"the sdist carries build products: {built[:10]}"


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From the sdist alone: unpacked by pip in a directory of its own, everything compiled
    # from source. The test venv's setuptools: no build dependency download.
    run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "-w", out, sdist], cwd=out)
    (path,) = out.glob("fotabench-*.whl")
    return path


def test_wheel_carries_board_program_and_images(wheel):
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
    board = infos.get("fotabench/_firmware/fotabench-sim")
    assert board is not None, f"no board program in the wheel: {sorted(infos)[:40]}"
    assert (board.external_attr >> 16) & 0o111, "the board program is not executable"
    assert any(n.startswith("fotabench/_core") and n.endswith(".so") for n in infos)
    models = firmware_models()
    assert "M66" in models
    for m in models:
        for v in ("1.0.0", "2.0.0"):
            assert f"fotabench/_firmware/agent-{m}-{v}.bin" in infos, f"no {m} {v} image"


def test_wheel_registers_the_pytest_plugin(wheel):
    # `pip install fotabench` is enough for pytest to load the plugin (docs/pytest-plugin.md)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = z.read(ep).decode()
    assert "fotabench/pytest_plugin.py" in names
    assert "[pytest11]\nfotabench = fotabench.pytest_plugin" in text, text


def test_installed_wheel_upgrades_a_virtual_module(wheel, tmp_path):
    work = tmp_path / "outside"
    work.mkdir()
    venv = work / "venv"
    # The system Python, as a user has it (not this test's venv).
    python = shutil.which("python3") or sys.executable
    run([python, "-m", "venv", venv], cwd=work)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         wheel], cwd=work)
    script = work / "wheel_upgrade.py"
    shutil.copy(ROOT / "tests" / "wheel_upgrade.py", script)
    r = run([venv / "bin" / "python", script], cwd=work, timeout=600)
    assert "wheel check: ok" in r.stdout, r.stdout
    assert 'upgraded a virtual module 1.0.0 -> 2.0.0' in r.stdout, r.stdout
    assert '+FBREADY: "2.0.0"' in r.stdout, r.stdout
    site = str(venv)
    assert f"installed: {site}" in r.stdout, r.stdout
