"""Errors a person can act on (issue 16 items 11, 12): a bad value or path is named in
one line before anything starts, not after the run or as a page of usage."""
from __future__ import annotations

import subprocess
import sys

import pytest

from fotabench import ArgumentError, VirtualModule

from conftest import app_bytes, package_bytes, run_cli


def test_serve_refuses_an_unwritable_timeline_at_start(tmp_path):
    pkg = tmp_path / "pkg.bin"
    pkg.write_bytes(package_bytes(app_bytes("M66", 100)))
    # Before: it served until stopped, then failed to write and lost the records.
    proc = subprocess.run([sys.executable, "-m", "fotabench", "serve", pkg, "--timeline",
                           tmp_path / "missing" / "t.jsonl"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""  # no "ready" line: nothing was served
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write the timeline" in lines[0]
    assert "missing/t.jsonl" in lines[0]


BAD_SIM_VALUES = [
    ("--link-rate", "-5"), ("--link-rate", "99"), ("--link-rate", "fast"),
    ("--latency-ms", "-1"), ("--wdt-timeout", "-0.5"), ("--wdt-timeout", "nan"),
    ("--http-timeout", "0"), ("--ftp-retry-ms", "-3"), ("--flash-rate", "-1"),
]


@pytest.mark.parametrize("option,value", BAD_SIM_VALUES)
def test_sim_names_the_bad_option(option, value, tmp_path):
    proc = run_cli("sim", "--state", tmp_path / "st", option, value)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # not the board's usage text
    assert option in lines[0] and value in lines[0]
    assert not (tmp_path / "st").exists()


def test_sim_missing_state_parent(tmp_path):
    state = tmp_path / "no" / "such" / "st"
    proc = run_cli("sim", "--state", state)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and str(tmp_path / "no" / "such") in line and "parent" in line
    with pytest.raises(ArgumentError) as ei:
        VirtualModule(None, state)
    assert "parent" in ei.value.message


def test_virtual_module_bad_option_named(tmp_path):
    with pytest.raises(ArgumentError) as ei:
        VirtualModule(None, tmp_path / "st", link_rate=-5)
    assert "--link-rate" in ei.value.message
