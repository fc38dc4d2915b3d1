"""fotabench.sim's way to the board program and the agent images: in a checkout (make
build's editable install), and installed (the ASan pass's regular install of
.venv-asan; a fresh venv from the wheel is tests/test_wheel.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fotabench
from fotabench import sim
from tool_env import tool_env

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = os.environ.get("FOTABENCH_SANITIZE") == "1"
BUILD = ROOT / "firmware" / ("build/asan" if SANITIZE else "build")
IN_CHECKOUT = Path(sim.__file__).resolve().parent == ROOT / "pymodule" / "fotabench"
BUNDLE = Path(sim.__file__).resolve().parent / "_firmware"
checkout_only = pytest.mark.skipif(not IN_CHECKOUT, reason="fotabench is installed here, "
                                   "not run from the checkout")
installed_only = pytest.mark.skipif(IN_CHECKOUT, reason="fotabench runs from the checkout "
                                    "here (editable install)")


def test_board_program_unless_fotabench_sim(monkeypatch, tmp_path):
    monkeypatch.delenv("FOTABENCH_SIM", raising=False)
    if IN_CHECKOUT:
        assert sim.sim_binary() == BUILD / "fotabench-sim"
    else:
        assert sim.sim_binary() == BUNDLE / "fotabench-sim"
        assert os.access(sim.sim_binary(), os.X_OK)
    monkeypatch.setenv("FOTABENCH_SIM", str(tmp_path / "elsewhere"))
    assert sim.sim_binary() == tmp_path / "elsewhere"


@installed_only
def test_installed_package_gives_its_bundled_images():
    images = sim.agent_images()
    models = subprocess.run(["make", "-s", "-C", str(ROOT / "firmware"), "models"],
                            capture_output=True, text=True, env=tool_env()).stdout.split()
    assert "M66" in models
    assert set(images) == {(m, v) for m in models for v in sim.AGENT_VERSIONS}, images
    assert sim.agent_image("2.0.0") == BUNDLE / "agent-M66-2.0.0.bin"
    assert fotabench.AppImage.open(sim.agent_image("1.0.0")).model == "M66"
    with pytest.raises(sim.SimError, match=r"no bundled agent image 3\.2\.1 for M66 "
                                           r"\(this installation has: .*M66 1\.0\.0"):
        sim.agent_image("3.2.1")


@checkout_only
def test_agent_image_is_built_in_a_checkout():
    path = sim.agent_image("3.2.1")
    assert path.is_file() and path.parent == BUILD / "images"
    img = fotabench.AppImage.open(path)
    assert img.ok and img.model == "M66"
    # the version is the agent's own string, compiled in
    assert b"3.2.1" in path.read_bytes()
    assert b"3.2.1" not in sim.agent_image("1.0.0").read_bytes()


@checkout_only
def test_agent_image_for_another_model():
    # MC60 and MC20 share an app region: check against MC60 by name, at its load address
    img = fotabench.AppImage.open(sim.agent_image("1.0.0", model="MC60"), model="MC60")
    mc60 = next(m for m in fotabench.models() if m.name == "MC60")
    assert img.ok and img.model == "MC60" and img.load_address == mc60.load_address


@checkout_only
@pytest.mark.parametrize("version,model,match", [
    ("1.0.0", "XX9", "MODEL=XX9 is not one of"),
    ("1.0.0", "M66; rm", "a name such as M66"),
    ("1 0", "M66", "use letters, digits"),
])
def test_agent_image_refuses_bad_input(version, model, match):
    with pytest.raises(sim.SimError, match=match):
        sim.agent_image(version, model)


def test_cli_sim_agent_and_app_exclusive(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fotabench", "sim", "--agent", "1.0.0",
                        "--app", "x.bin", "--state", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)  # python: full env
    assert r.returncode == 2 and r.stderr.strip() == \
        "fotabench: error: give --app or --agent, not both", r.stderr
