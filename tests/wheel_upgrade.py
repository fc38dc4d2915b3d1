"""A virtual FOTA upgrade using nothing but an installed fotabench (issue 9's wheel check).

Run by `make check-wheel` (.ci/check-wheel) and tests/test_wheel.py with the Python of a
fresh virtual environment the wheel was installed into, from a directory outside the
checkout: the board program and the agent images must be the ones the wheel carries.

    python wheel_upgrade.py      # exit 0 and a summary line, or a traceback and exit 1
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fotabench
from fotabench import Modem, Package, PackageServer
from fotabench.sim import AGENT_VERSIONS, VirtualModule, agent_image, agent_images, sim_binary


def check_installed() -> list[str]:
    """Everything comes from the installed package, nothing from a source tree."""
    pkg = Path(fotabench.__file__).resolve().parent
    assert "site-packages" in pkg.parts, f"fotabench imported from {pkg}, not an installed copy"
    binary = sim_binary()
    assert binary.resolve().is_relative_to(pkg), f"board program {binary} is not the bundled one"
    assert os.access(binary, os.X_OK), f"bundled board program {binary} is not executable"
    images = agent_images()
    models = sorted({m for m, _ in images})
    assert "M66" in models, f"no M66 agent images bundled: {images}"
    for m in models:
        for v in AGENT_VERSIONS:
            assert (m, v) in images, f"bundled images lack {m} {v}: {sorted(images)}"
    print(f"installed: {pkg}; board program {binary.name}; agent images "
          f"{', '.join(f'{m} {v}' for m, v in sorted(images))}")
    return models


def check_cli(work: Path, model: str) -> None:
    """`fotabench sim --agent 1.0.0 --model M` starts a virtual module of that model with the
    bundled image built for it: its JSON line names the ptys and the model, and the agent
    boots on it (+FBREADY "1.0.0": the module's boot accepted the image for its model)."""
    exe = Path(sys.executable).parent / "fotabench"
    proc = subprocess.Popen([os.fspath(exe), "sim", "--agent", "1.0.0", "--model", model,
                             "--state", os.fspath(work / f"cli-{model}"), "--boot-timing", "fast"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, f"fotabench sim printed nothing (exit {proc.poll()}): " \
                     f"{proc.stderr.read() if proc.stderr and proc.poll() is not None else ''}"
        info = json.loads(line)
        assert info["uart1"].startswith("/dev/pts/"), info
        assert info.get("model", model) == model, info
        with Modem(info["uart1"], name=f"cli-{model}") as modem:
            modem.add_urc("+FBREADY")
            ready = modem.expect("+FBREADY:", timeout=60)
            assert '"1.0.0"' in ready.line, ready.line
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"fotabench sim --agent 1.0.0 --model {model}: {ready.line}, exit {proc.returncode}")


def upgrade(work: Path) -> None:
    v1, v2 = agent_image("1.0.0"), agent_image("2.0.0")
    pkg = Package.build(v2, work / "fw_v2.bin")
    with VirtualModule(v1, work / "state", boot_timing="fast", link_rate="unlimited") as vm, \
            Modem(vm.uart1, name="uart1") as modem:
        for urc in ("+FBSTATE", "+FBREADY", "+CGREG"):
            modem.add_urc(urc)
        ready = modem.expect("+FBREADY:", timeout=60)
        assert '"1.0.0"' in ready.line, ready.line
        modem.expect("+CGREG: 1", timeout=120)
        with PackageServer([pkg.path]) as srv:
            url = srv.url_for(pkg.path, "http", module="wheel")
            answer = modem.command(f'AT+FBUPG="{url}"')
            assert answer.ok, f"AT+FBUPG refused: {answer.final}"
            end = modem.expect(re.compile(r"\+FBSTATE: (UP_SYSTEM_REBOOT|UP_UPGRADFAILED)"),
                               timeout=300)
            assert end.match.group(1) == b"UP_SYSTEM_REBOOT", f"upgrade failed: {end.line}"
            ready = modem.expect('+FBREADY: "2.0.0"', timeout=120)
            records = [r for r in srv.records if r.outcome == "complete"]
            assert records, f"the server never sent the package completely: {srv.records}"
    print(f"upgraded a virtual module 1.0.0 -> 2.0.0 over HTTP ({records[-1].bytes_sent} "
          f"bytes): {ready.line}")


def main() -> int:
    models = check_installed()
    work = Path(tempfile.mkdtemp(prefix="fbwheel"))  # short: pty and socket paths
    try:
        for model in models:
            check_cli(work, model)
        upgrade(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("wheel check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
