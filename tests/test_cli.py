"""The `fotabench` command line, run as a subprocess (`python -m fotabench ...`).

Contract (cli.py): exit 0 ok, 1 a check or the operation failed, 2 usage error;
an operational error is one line on stderr starting with 'fotabench: '.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from conftest import (APP_CHECKS, SPEC_MODELS, SPEC_ROWS, app_bytes, gfh_header, listing, package_bytes,
                      raw_bytes)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fotabench: ")
    for f in fragments:
        assert f in lines[0]


def assert_usage_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "usage:" in proc.stderr
    assert proc.stdout == ""
    for f in fragments:
        assert f in proc.stderr


# --- app wrap / app inspect ------------------------------------------------------------

@pytest.mark.parametrize("model", ["M66", "mc60e"])
def test_app_wrap(model, cli, tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(raw_bytes(999))
    out = tmp_path / "APP.bin"
    proc = cli("app", "wrap", raw, "--model", model, "-o", out)
    assert proc.returncode == 0, proc.stderr
    spec = SPEC_MODELS[model.upper()]
    assert out.read_bytes() == gfh_header(spec.load_address, 999 + 64) + raw.read_bytes()
    assert str(out) in proc.stdout and "1063 bytes" in proc.stdout
    assert spec.name in proc.stdout and f"0x{spec.load_address:08X}" in proc.stdout
    assert proc.stderr == ""


def test_app_wrap_usage_errors(cli, tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"x" * 10)
    assert_usage_error(cli("app", "wrap", raw, "-o", tmp_path / "o.bin"), "--model")
    assert_usage_error(cli("app", "wrap", raw, "--model", "M66"), "--output")
    assert_usage_error(cli("app", "wrap", raw, "--model", "M95", "-o", tmp_path / "o.bin"),
                       "unknown model 'M95'")
    assert_usage_error(cli("app", "wrap"))
    assert_usage_error(cli("app"))
    assert listing(tmp_path) == ["raw.bin"]


def test_app_wrap_failures(cli, tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert_one_line_error(cli("app", "wrap", empty, "--model", "M66", "-o", tmp_path / "o.bin"),
                          "empty")
    assert_one_line_error(cli("app", "wrap", tmp_path / "nope.bin", "--model", "M66", "-o",
                              tmp_path / "o.bin"), "nope.bin")
    assert listing(tmp_path) == ["empty.bin"]


def test_app_wrap_model_auto_is_a_clean_error(cli, tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"x" * 10)
    proc = cli("app", "wrap", raw, "--model", "auto", "-o", tmp_path / "o.bin")
    assert proc.returncode in (1, 2)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("fotabench: ")
    assert not (tmp_path / "o.bin").exists()


def test_app_inspect_text_and_json(cli, tmp_path):
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("MC60", 500))
    proc = cli("app", "inspect", app)
    assert proc.returncode == 0, proc.stderr
    for name in APP_CHECKS:
        assert any(line.split()[:2] == ["ok", name] for line in proc.stdout.splitlines()), name
    assert "0x102DB000" in proc.stdout
    assert "FAILED" not in proc.stdout

    proc = cli("app", "inspect", app, "--json", "--model", "MC60")
    assert proc.returncode == 0
    d = json.loads(proc.stdout)
    assert d["ok"] is True
    assert d["fields"]["load_address"] == 0x102DB000
    assert d["fields"]["file_length"] == 564
    assert d["fields"]["model"] == "MC60"
    assert [c["name"] for c in d["checks"]] == APP_CHECKS


def test_app_inspect_damaged(cli, tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(raw_bytes(500))
    proc = cli("app", "inspect", raw)
    assert proc.returncode == 1
    assert any(line.split()[:2] == ["FAILED", "magic"] for line in proc.stdout.splitlines())
    proc = cli("app", "inspect", raw, "--json")
    assert proc.returncode == 1
    d = json.loads(proc.stdout)
    assert d["ok"] is False
    assert "magic" in [c["name"] for c in d["checks"] if not c["ok"]]

    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("M66", 500))
    proc = cli("app", "inspect", app, "--model", "M26")
    assert proc.returncode == 1
    failed = [line for line in proc.stdout.splitlines() if line.strip().startswith("FAILED")]
    assert len(failed) == 1 and "load_address" in failed[0]
    assert "M66" in failed[0] and "M26" in failed[0]


def test_app_inspect_missing(cli, tmp_path):
    proc = cli("app", "inspect", tmp_path / "nope.bin")
    assert_one_line_error(proc, "nope.bin")
    assert proc.stdout == ""


# --- package / inspect ----------------------------------------------------------------

def test_package_default_output_name(cli, tmp_path):
    sub = tmp_path / "build"
    sub.mkdir()
    app = sub / "APPGS3MDM32A01.bin"
    app.write_bytes(app_bytes("M66", 1001))
    proc = cli("package", app, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = sub / "APPGS3MDM32A01_Upgrade_Package.bin"
    assert listing(sub) == sorted([app.name, out.name])
    data = out.read_bytes()
    assert data == package_bytes(app.read_bytes())
    assert hashlib.md5(data[:-16]).hexdigest() in proc.stdout
    assert str(len(data)) in proc.stdout and "M66" in proc.stdout
    assert listing(tmp_path) == ["build"]


def test_package_output_option_and_special(cli, tmp_path):
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("M26", 10))
    out = tmp_path / "custom.bin"
    proc = cli("package", app, "-o", out, "--special", "format-fs", "--model", "M26")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == package_bytes(app.read_bytes(), special=2)
    assert listing(tmp_path) == ["APP.bin", "custom.bin"]


def test_package_core_refused(cli, tmp_path):
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("M66", 10))
    proc = cli("package", app, "--type", "core")
    assert_one_line_error(proc, "App")
    assert listing(tmp_path) == ["APP.bin"]


def test_package_failures(cli, tmp_path):
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("M66", 10))
    assert_one_line_error(cli("package", app, "--model", "MC60", "-o", tmp_path / "p.bin"),
                          "M66", "MC60")
    raw = tmp_path / "raw.bin"
    raw.write_bytes(raw_bytes(100))
    assert_one_line_error(cli("package", raw, "-o", tmp_path / "p.bin"), "magic")
    assert listing(tmp_path) == ["APP.bin", "raw.bin"]
    assert_usage_error(cli("package", app, "--special", "wipe"), "--special")
    assert_usage_error(cli("package", app, "--type", "delta"), "--type")
    assert_usage_error(cli("package"))
    assert listing(tmp_path) == ["APP.bin", "raw.bin"]


@pytest.fixture
def package_file(tmp_path):
    app = app_bytes("M66", 1002)
    path = tmp_path / "APP_Upgrade_Package.bin"
    path.write_bytes(package_bytes(app, special=1))
    return path


def test_inspect_good(cli, package_file):
    proc = cli("inspect", package_file)
    assert proc.returncode == 0, proc.stderr
    assert "FAILED" not in proc.stdout
    assert any(line.split()[:2] == ["ok", "md5"] for line in proc.stdout.splitlines())
    data = package_file.read_bytes()
    assert data[-16:].hex() in proc.stdout

    proc = cli("inspect", package_file, "--json")
    assert proc.returncode == 0
    d = json.loads(proc.stdout)
    assert d["ok"] is True
    assert d["fields"]["md5"] == data[-16:].hex()
    assert d["fields"]["special"] == 1
    assert d["fields"]["payload_length"] == 1068
    assert d["fields"]["magic"] == "QUECTEL_FOTA_UPGRADE"
    assert d["fields"]["app"]["model"] == "M66"
    assert all(c["ok"] for c in d["checks"])
    assert "md5" in [c["name"] for c in d["checks"]]


def test_inspect_damaged(cli, package_file):
    data = bytearray(package_file.read_bytes())
    data[500] ^= 0x01
    package_file.write_bytes(bytes(data))
    proc = cli("inspect", package_file)
    assert proc.returncode == 1
    failed = [line.split() for line in proc.stdout.splitlines()
              if line.strip().startswith("FAILED")]
    assert [f[1] for f in failed] == ["md5"]

    proc = cli("inspect", package_file, "--json")
    assert proc.returncode == 1
    d = json.loads(proc.stdout)
    assert d["ok"] is False
    assert [c["name"] for c in d["checks"] if not c["ok"]] == ["md5"]
    assert [c["code"] for c in d["checks"] if not c["ok"]] == ["FB_ERR_CHECKSUM"]


def test_inspect_truncated_and_wrong_model(cli, package_file, tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(package_file.read_bytes()[:50])
    proc = cli("inspect", short, "--json")
    assert proc.returncode == 1
    d = json.loads(proc.stdout)
    assert [c["name"] for c in d["checks"]] == ["size"] and d["fields"]["app"] is None

    proc = cli("inspect", package_file, "--model", "MC60E")
    assert proc.returncode == 1
    assert any(line.split()[:2] == ["FAILED", "app.load_address"]
               for line in proc.stdout.splitlines())


def test_inspect_errors(cli, tmp_path):
    assert_one_line_error(cli("inspect", tmp_path / "nope.bin"), "nope.bin")
    assert_one_line_error(cli("inspect", tmp_path), "regular file")
    assert_usage_error(cli("inspect"))
    assert_usage_error(cli("inspect", tmp_path / "x", "--model", "M67"), "unknown model")


# --- md5 --------------------------------------------------------------------------------

@pytest.fixture
def md5_dir(tmp_path):
    files = {
        "a.bin": raw_bytes(3000),
        "with space.bin": b"space",
        "empty": b"",
        "big.bin": raw_bytes(700_000),
        "back\\slash": b"bs",
        "new\nline": b"nl",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path, files


@pytest.mark.skipif(shutil.which("md5sum") is None, reason="needs GNU md5sum")
def test_md5_matches_md5sum(cli, md5_dir):
    d, files = md5_dir
    names = list(files)
    ours = cli("md5", *names, cwd=d)
    ref = subprocess.run(["md5sum", *names], cwd=d, capture_output=True, text=True)
    assert ref.returncode == 0
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == ref.stdout
    assert ours.stderr == ""
    # and the digests themselves, independently
    for name, data in files.items():
        assert hashlib.md5(data).hexdigest() in ours.stdout


@pytest.mark.skipif(shutil.which("md5sum") is None, reason="needs GNU md5sum")
def test_md5_missing_file_in_the_middle(cli, md5_dir):
    d, _ = md5_dir
    names = ["a.bin", "missing.bin", "with space.bin"]
    ours = cli("md5", *names, cwd=d)
    ref = subprocess.run(["md5sum", *names], cwd=d, capture_output=True, text=True)
    assert ours.returncode == 1 and ref.returncode == 1
    assert ours.stdout == ref.stdout  # the other files are still printed
    assert len(ours.stdout.splitlines()) == 2
    assert_one_line_error(ours, "missing.bin")


def test_md5_stdin(cli, md5_dir):
    d, files = md5_dir
    data = raw_bytes(300_001)
    proc = cli("md5", "-", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{hashlib.md5(data).hexdigest()}  -\n"
    proc = cli("md5", "a.bin", "-", input=b"", cwd=d)
    assert proc.stdout == (f"{hashlib.md5(files['a.bin']).hexdigest()}  a.bin\n"
                           f"{hashlib.md5(b'').hexdigest()}  -\n")


def test_md5_usage(cli):
    assert_usage_error(cli("md5"))


def test_md5_undecodable_missing_name(cli, md5_dir):
    d, files = md5_dir
    proc = cli("md5", b"missing\xff", "a.bin", cwd=d)
    assert proc.stdout == f"{hashlib.md5(files['a.bin']).hexdigest()}  a.bin\n"
    assert_one_line_error(proc)


# --- url ---------------------------------------------------------------------------------

def test_url_http(cli):
    proc = cli("url", "http", "10.0.0.2", "/fota/APP.bin")
    assert proc.returncode == 0
    assert proc.stdout == "http://10.0.0.2/fota/APP.bin\n"
    proc = cli("url", "http", "fota.example", "/fota/APP.bin", "--port", "8080", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {
        "url": "http://fota.example:8080/fota/APP.bin", "scheme": "http",
        "host": "fota.example", "host_is_ip": False, "port": 8080, "path": "/fota/APP.bin",
        "file": "APP.bin", "user": "", "password": ""}


def test_url_ftp(cli):
    proc = cli("url", "ftp", "10.0.0.2", "/fota/APP.bin")
    assert proc.returncode == 0
    assert proc.stdout == "ftp://10.0.0.2/fota/APP.bin:21@anonymous:fotabench\n"
    proc = cli("url", "ftp", "ftp.example", "/a/b/APP.bin", "--port", "2121", "--user", "bench",
               "--password", "p@ss:w", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {
        "url": "ftp://ftp.example/a/b/APP.bin:2121@bench:p@ss:w", "scheme": "ftp",
        "host": "ftp.example", "host_is_ip": False, "port": 2121, "path": "/a/b",
        "file": "APP.bin", "user": "bench", "password": "p@ss:w"}


def test_url_build_refusals(cli):
    assert_one_line_error(cli("url", "http", "h", "/dir/"), "HTTP path")
    assert_one_line_error(cli("url", "http", "h", "/a.bin", "--port", "70000"), "1..65535")
    assert_one_line_error(cli("url", "ftp", "h", "/" + "f" * 25), "FTP file name", "25", "24")
    assert_one_line_error(cli("url", "ftp", "h", "/a.bin", "--user", "u" * 20),
                          "FTP user", "20", "19")


def test_url_check_good(cli):
    url = "ftp://www.jjj.com/filePath/xxx.bin:8021@username:password"
    proc = cli("url", "check", url)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"ok: the module decodes {url}\n")
    assert "8021" in proc.stdout and "/filePath" in proc.stdout and "username" in proc.stdout
    proc = cli("url", "check", url, "--json")
    d = json.loads(proc.stdout)
    assert d["ok"] is True
    assert (d["host"], d["port"], d["path"], d["file"], d["user"], d["password"]) == \
        ("www.jjj.com", 8021, "/filePath", "xxx.bin", "username", "password")


@pytest.mark.parametrize("url,reason", [
    ("https://h/a.bin", "https"),
    ("http://h/a.bin:8080", "HTTP path"),
    ("ftp://h:21/a.bin", "port before the path"),
    ("ftp://h/" + "f" * 25 + ":21@u:p", "FTP file name is 25 characters; the module's limit is 24"),
])
def test_url_check_bad(cli, url, reason):
    proc = cli("url", "check", url)
    assert proc.returncode == 1
    assert proc.stdout.startswith("refused: ")
    assert reason in proc.stdout
    proc = cli("url", "check", url, "--json")
    assert proc.returncode == 1
    d = json.loads(proc.stdout)
    assert d["ok"] is False and d["url"] == url and reason in d["error"]


def test_url_check_non_ascii_host(cli):
    proc = cli("url", "check", "http://bücher.example/a.bin")
    assert proc.returncode == 1
    assert proc.stdout.startswith("refused: ") and "0xC3 at offset 8" in proc.stdout


def test_url_usage(cli):
    assert_usage_error(cli("url"))
    assert_usage_error(cli("url", "http", "h"))
    assert_usage_error(cli("url", "ftp", "h", "/a.bin", "--port", "x"))
    assert_usage_error(cli("url", "check"))


# --- misc ---------------------------------------------------------------------------------

def test_no_command_and_unknown_command(cli):
    assert_usage_error(cli())
    assert_usage_error(cli("frobnicate"))


def test_models_json_and_text(cli):
    proc = cli("models", "--json")
    assert proc.returncode == 0
    rows = json.loads(proc.stdout)
    assert sorted((m["name"], m["load_address"], m["region_size"], m["evidence"])
                  for m in rows if m["name"]) == \
        sorted(tuple(r) for r in SPEC_ROWS if r.name)
    assert sorted(m["load_address"] for m in rows if not m["name"]) == \
        sorted(r.load_address for r in SPEC_ROWS if not r.name)
    assert all(m["source"] for m in rows)

    proc = cli("models")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    for r in SPEC_ROWS:  # one line per row: model, address, region or "unknown", evidence
        words = [f"{r.name or '?'}", f"0x{r.load_address:08X}"]
        assert any(line.split()[:2] == words and r.evidence in line and
                   (f"0x{r.region_size:05X}" if r.region_size else "unknown") in line
                   for line in lines), words


def test_inspect_asks_for_the_model_when_an_address_names_several(cli, tmp_path):
    app = tmp_path / "APP.bin"
    app.write_bytes(app_bytes("MC60", 500))
    proc = cli("app", "inspect", app)
    assert proc.returncode == 0, proc.stderr
    assert "MC60 or MC20" in proc.stdout and "name the model" in proc.stdout
    d = json.loads(cli("app", "inspect", app, "--json").stdout)
    assert d["fields"]["model"] is None and d["fields"]["candidates"] == ["MC60", "MC20"]
    for model in ("MC20", "mc60"):
        d = json.loads(cli("app", "inspect", app, "--json", "--model", model).stdout)
        assert d["ok"] and d["fields"]["model"] == model.upper()
    out = tmp_path / "p.bin"
    proc = cli("package", app, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "MC60 or MC20 (name one with --model)" in proc.stdout
    proc = cli("package", app, "-o", out, "--model", "MC20")
    assert proc.returncode == 0 and "MC20 app of 564 bytes" in proc.stdout
    d = json.loads(cli("inspect", out, "--json", "--model", "MC20").stdout)
    assert d["ok"] and d["fields"]["app"]["model"] == "MC20"


def test_warning_level_in_text_and_json(cli, tmp_path):
    """A checksum type 0 (GS2 reading) passes with a warning, shown as such."""
    path = tmp_path / "gs2.bin"
    path.write_bytes(package_bytes(app_bytes("M66", 100), checksum_type=0))
    proc = cli("inspect", path)
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.split()[:2] == ["warning", "checksum_type"] for line in lines)
    assert lines[-1] == "all 17 checks ok, 1 warning"
    d = json.loads(cli("inspect", path, "--json").stdout)
    assert d["ok"] is True
    assert [(c["name"], c["level"], c["ok"]) for c in d["checks"] if c["level"] != "ok"] == \
        [("checksum_type", "warning", True)]
    path.write_bytes(package_bytes(app_bytes("M66", 100), checksum_type=7))
    proc = cli("inspect", path)
    assert proc.returncode == 1
    assert any(line.split()[:2] == ["FAILED", "checksum_type"] for line in proc.stdout.splitlines())


def test_version(cli):
    import fotabench
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"fotabench {fotabench.__version__}"
