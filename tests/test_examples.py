"""The example a README points to runs as printed: one upgrade of a virtual module
through the public API (Dut, Upgrade)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fotabench.sim import sim_binary

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not sim_binary().exists(), reason="board program not built (make build)")
@pytest.mark.parametrize("protocol", ["http", "ftp"])
def test_upgrade_example(protocol, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench/examples/upgrade_virtual_module.py"),
                        "--fast", "--protocol", protocol, "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"<UpgradeResult PASS dut1 1\.0\.0 -> 2\.0\.0 " + protocol, out), out
    assert f"server: {protocol} complete" in out
    assert "watchdog gap" in out
    states = re.findall(r"s  (UP_\w+) (\d+)", out)
    assert states[0] == ("UP_START", "0") and states[-1] == ("UP_SYSTEM_REBOOT", "100")
    assert (tmp_path / "dut1.timeline.jsonl").stat().st_size > 0
    assert json.loads((tmp_path / "result.json").read_text())["outcome"] == "pass"
