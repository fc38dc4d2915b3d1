"""Files under abuse (issue 16 items 3, 6-10): non-regular inputs, output = input,
permissions, concurrent writers, signals mid-build, and one-line errors.

Every command that could hang runs in a subprocess with a timeout, so a regression
fails the test instead of hanging the suite.
"""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fotabench import AppImage, ArgumentError, FileError, Package, Special

from conftest import (ROOT, app_bytes, gfh_header, listing, package_bytes, raw_bytes,
                      run_cli)

FIFO_TIMEOUT = 30  # generous under load; a hang is what the test is about


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.bin"
    os.mkfifo(path)
    return path


# --- 3: non-regular files refused at once -------------------------------------------

@pytest.mark.parametrize("argv", [["inspect", "{}"], ["package", "{}", "-o", "{out}"],
                                  ["md5", "{}"], ["app", "inspect", "{}"]],
                         ids=["inspect", "package", "md5", "app-inspect"])
def test_fifo_without_writer_refused_without_blocking(argv, fifo, tmp_path):
    out = tmp_path / "out.bin"
    args = [a.format(fifo, out=out) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "fotabench", *args], capture_output=True,
                          text=True, timeout=FIFO_TIMEOUT)
    assert proc.returncode == 1
    assert "FIFO" in proc.stderr and "not a regular file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert listing(tmp_path) == ["pipe.bin"]


def test_fifo_and_device_refused_by_the_python_api(tmp_path):
    """In a subprocess: a regression would block in open() for good."""
    code = f"""
import fotabench, os
os.mkfifo({str(tmp_path / 'p')!r})
for fn in (fotabench.Package.inspect, fotabench.AppImage.inspect, fotabench.md5_file,
           lambda p: fotabench.Package.build(p, {str(tmp_path / 'o.bin')!r})):
    for path in ({str(tmp_path / 'p')!r}, "/dev/null"):
        try:
            fn(path)
        except fotabench.FileError as e:
            assert "not a regular file" in e.message, e.message
            print("refused", "FIFO" in e.message or "character device" in e.message)
        else:
            raise SystemExit("accepted " + path)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=FIFO_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == ["refused True"] * 8


def test_md5_stdin_still_reads_a_pipe():
    proc = run_cli("md5", "-", input=b"hello\n")
    assert proc.returncode == 0
    assert proc.stdout == f"{hashlib.md5(b'hello' + bytes([10])).hexdigest()}  -\n"


# --- 6: output = input ------------------------------------------------------------------

def _same_file_paths(tmp_path: Path, name: str) -> list[Path]:
    """The input itself, by another spelling, by a hard link, through a symlinked dir."""
    target = tmp_path / name
    os.link(target, tmp_path / f"link-{name}")
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    return [target, tmp_path / "." / name, tmp_path / f"link-{name}", tmp_path / "alias" / name]


def test_package_onto_its_input_refused(tmp_path):
    app = tmp_path / "APP.bin"
    data = app_bytes("M66", 1000)
    app.write_bytes(data)
    for out in _same_file_paths(tmp_path, "APP.bin"):
        with pytest.raises(ArgumentError) as ei:
            Package.build(app, out)
        assert "is the input" in ei.value.message
        proc = run_cli("package", app, "-o", out)
        assert proc.returncode == 2 and "destroy the input" in proc.stderr
        assert app.read_bytes() == data
    assert sorted(listing(tmp_path)) == ["APP.bin", "alias", "link-APP.bin"]


def test_wrap_onto_its_input_refused(tmp_path):
    raw = tmp_path / "raw.bin"
    data = raw_bytes(999)
    raw.write_bytes(data)
    for out in _same_file_paths(tmp_path, "raw.bin"):
        with pytest.raises(ArgumentError) as ei:
            AppImage.wrap(raw, out, model="MC60")
        assert "is the input" in ei.value.message
        proc = run_cli("app", "wrap", raw, "--model", "MC60", "-o", out)
        assert proc.returncode == 2 and "destroy the input" in proc.stderr
        assert raw.read_bytes() == data


# --- 7: permissions -----------------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o077, 0o600), (0o022, 0o644), (0o002, 0o664)])
def test_new_output_honours_umask(umask, mode, tmp_path):
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("M66", 100))
    raw = tmp_path / "raw.bin"
    raw.write_bytes(raw_bytes(100))
    old = os.umask(umask)
    try:
        Package.build(app, tmp_path / "p.bin")
        AppImage.wrap(raw, tmp_path / "w.bin", model="M66")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.bin").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "w.bin").stat().st_mode) == mode


def test_replacing_a_file_keeps_its_mode(tmp_path):
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("M66", 100))
    raw = tmp_path / "raw.bin"
    raw.write_bytes(raw_bytes(100))
    for out, mode in ((tmp_path / "p.bin", 0o600), (tmp_path / "w.bin", 0o640)):
        out.write_bytes(b"old")
        out.chmod(mode)
    old = os.umask(0o022)
    try:
        Package.build(app, tmp_path / "p.bin")
        AppImage.wrap(raw, tmp_path / "w.bin", model="M66")
        assert run_cli("package", app, "-o", tmp_path / "p.bin").returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.bin").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "w.bin").stat().st_mode) == 0o640
    assert (tmp_path / "p.bin").read_bytes() == package_bytes(app.read_bytes())


# --- 8: concurrent builds to one output ---------------------------------------------------

def test_concurrent_builds_report_what_they_wrote(tmp_path):
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("M66", 20000))
    out = tmp_path / "out.bin"
    specials = [Special.NONE, Special.CLEAR_NVRAM, Special.FORMAT_FS, Special(3)]
    expected = {s: hashlib.md5(package_bytes(app.read_bytes(), special=int(s))[:-16]).hexdigest()
                for s in specials}
    wrong: list[str] = []
    start = threading.Barrier(len(specials))

    def build(special: Special) -> None:
        start.wait()
        for _ in range(25):
            pkg = Package.build(app, out, special=special)
            if pkg.special != special or pkg.md5 != expected[special]:
                wrong.append(f"asked {special!r}, reported {pkg.special!r} {pkg.md5}")

    threads = [threading.Thread(target=build, args=(s,)) for s in specials]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []
    assert listing(tmp_path) == ["APP.bin", "out.bin"]
    assert Package.open(out).md5 in expected.values()


def test_build_result_does_not_reopen_the_output(tmp_path, monkeypatch):
    """The result is the verification of what was written before the rename."""
    from fotabench import _core
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("M66", 500))

    def refuse(*args, **kwargs):
        raise AssertionError("the output was re-opened after the build")

    monkeypatch.setattr(_core, "package_inspect", refuse)
    monkeypatch.setattr(_core, "app_inspect", refuse)
    pkg = Package.build(app, tmp_path / "p.bin", special="clear-nvram")
    assert pkg.ok and pkg.model == "M66" and pkg.special == Special.CLEAR_NVRAM
    assert pkg.md5 == hashlib.md5(package_bytes(app.read_bytes(), special=1)[:-16]).hexdigest()
    raw = tmp_path / "raw.bin"
    raw.write_bytes(raw_bytes(100))
    img = AppImage.wrap(raw, tmp_path / "w.bin", model="M26", load_address=0x10270000)
    assert img.ok and img.load_address == 0x10270000 and img.size == 164


# --- 9: signals mid-build ---------------------------------------------------------------

# An app at 0x10312000 (an MC20-type app whose region size is not known) may be large:
# 1 GiB, sparse, so that the build is long enough to be interrupted mid-way.
BIG = 1 << 30


@pytest.fixture
def big_app(tmp_path):
    path = tmp_path / "BIG.bin"
    with open(path, "wb") as f:
        f.write(gfh_header(0x10312000, BIG))
        f.truncate(BIG)
    return path


def _temp_files(directory: Path, name: str) -> list[str]:
    return [p for p in listing(directory) if p.startswith(name + ".")]


def _wait_for_temp(directory: Path, name: str, proc=None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _temp_files(directory, name):
        assert proc is None or proc.poll() is None, "the build ended before the signal"
        assert time.monotonic() < deadline, "no temporary file appeared"
        time.sleep(0.005)


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                         (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_cli_signal_mid_build_leaves_no_temp_file(signum, code, big_app, tmp_path):
    out = tmp_path / "out.bin"
    # The child starts with the signal's default action: under nohup (SIGHUP ignored, and
    # ignored dispositions are inherited) the CLI rightly leaves SIGHUP ignored.
    proc = subprocess.Popen([sys.executable, "-m", "fotabench", "package", big_app, "-o", out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    try:
        _wait_for_temp(tmp_path, "out.bin", proc)
        sent = time.monotonic()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert listing(tmp_path) == ["BIG.bin"], "a temporary file or partial output remains"
    # promptly: far less than writing the remaining ~1 GiB would take (generous, loaded CI)
    assert took < 10, f"{took:.1f} s to stop"


@pytest.mark.parametrize("what", ["package", "wrap"])
def test_keyboard_interrupt_mid_build_from_python(what, big_app, tmp_path):
    out = tmp_path / "out.bin"
    if what == "package":
        build = lambda: Package.build(big_app, out)  # noqa: E731
    else:  # the MC20 address with no known region size: a raw image of any size fits
        build = lambda: AppImage.wrap(big_app, out, model="MC20",  # noqa: E731
                                      load_address=0x10312000)
        big_app.write_bytes(b"\0" * 64)  # a raw binary, not an app image
        os.truncate(big_app, BIG)
    main = threading.get_ident()
    seen = threading.Event()

    def interrupt() -> None:
        _wait_for_temp(tmp_path, "out.bin")
        seen.set()
        signal.pthread_kill(main, signal.SIGINT)

    watcher = threading.Thread(target=interrupt, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        build()
        # the build finishing before the signal would be a test failure, not a pass
        seen.wait(60)
        time.sleep(1)
    watcher.join(timeout=60)
    assert seen.is_set()
    assert listing(tmp_path) == ["BIG.bin"]


# --- 10: one-line errors, no tracebacks -------------------------------------------------

def _one_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_md5_of_closed_stdin():
    proc = subprocess.run([sys.executable, "-m", "fotabench", "md5", "-"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0  # an empty input is fine
    proc = subprocess.run(f"exec {sys.executable} -m fotabench md5 - <&-", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "standard input is closed" in _one_line(proc)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_md5_to_a_full_disk(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"x")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "fotabench", "md5", f], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 1
    assert "No space left on device" in _one_line(proc)


def test_url_check_with_a_byte_that_is_not_utf8():
    url = b"http://h/\xff.bin"
    proc = subprocess.run([sys.executable, "-m", "fotabench", "url", "check", url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == ""
    assert proc.stdout.startswith("refused: byte 0xff at position 9 is not valid UTF-8")
    proc = subprocess.run([sys.executable, "-m", "fotabench", "url", "check", url, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and '"ok": false' in proc.stdout


@pytest.mark.parametrize("name", ["bad/name", "..", "", "a" * 33])
def test_serve_bad_module_name(name, tmp_path):
    pkg = tmp_path / "pkg.bin"
    pkg.write_bytes(package_bytes(app_bytes("M66", 100)))
    proc = run_cli("serve", pkg, "--module", name)
    assert proc.returncode == 2
    assert "module name" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("fotabench serve: error:")
