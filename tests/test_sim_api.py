"""fotabench.sim's way to the board program and the agent images, in a checkout (the
installed wheel's side is tests/test_wheel.py)."""
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


def test_checkout_board_program_unless_fotabench_sim(monkeypatch, tmp_path):
    monkeypatch.delenv("FOTABENCH_SIM", raising=False)
    assert sim.sim_binary() == BUILD / "fotabench-sim"
    monkeypatch.setenv("FOTABENCH_SIM", str(tmp_path / "elsewhere"))
    assert sim.sim_binary() == tmp_path / "elsewhere"


def test_agent_image_is_built_in_a_checkout():
    path = sim.agent_image("3.2.1")
    assert path.is_file() and path.parent == BUILD / "images"
    img = fotabench.AppImage.open(path)
    assert img.ok and img.model == "M66"
    # the version is the agent's own string, compiled in
    assert b"3.2.1" in path.read_bytes()
    assert b"3.2.1" not in sim.agent_image("1.0.0").read_bytes()


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
                       capture_output=True, text=True, env=tool_env(), timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == \
        "fotabench: error: give --app or --agent, not both", r.stderr
