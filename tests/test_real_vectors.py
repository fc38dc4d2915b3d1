"""fotabench against artefacts made by Quectel's own tools (shared/spec/real-vectors.md).

The 80-byte package header depends only on the image type, checksum type, special
option and payload length, so a package fotabench builds from *any* app of the same
length and load address must start with exactly the real header; a package carrying
a real header must pass inspection. Expected bytes are the spec's (conftest.py), never
fotabench's.
"""
from __future__ import annotations

import hashlib
import json
import struct

import pytest

from fotabench import AppImage, Package, Special

from conftest import (REAL_MC60_GFH, REAL_MC60_RAW_SIZE, REAL_PACKAGES, SPEC_ROWS, gfh_header,
                      package_header, raw_bytes, spec_candidates)

IDS = [f"{size}B@0x{load:08X}" for size, load, _, _ in REAL_PACKAGES]


def _special(header: bytes) -> int:
    """The special option of a real header (offset 24, spec §5): input, not verdict."""
    return struct.unpack_from("<I", header, 24)[0]


def _app(load: int, length: int) -> bytes:
    return gfh_header(load, length) + raw_bytes(length - 64, seed=length)


@pytest.mark.parametrize("size,load,payload,header_hex", REAL_PACKAGES, ids=IDS)
def test_reference_reproduces_the_real_header(size, load, payload, header_hex):
    """Guard the reference (conftest.package_header) itself against the real bytes."""
    header = bytes.fromhex(header_hex)
    assert len(header) == 80 and size == 80 + payload + 16
    assert package_header(payload, special=_special(header)) == header


@pytest.mark.parametrize("size,load,payload,header_hex", REAL_PACKAGES, ids=IDS)
def test_build_gives_the_real_header(size, load, payload, header_hex, tmp_path):
    header = bytes.fromhex(header_hex)
    app = tmp_path / "APP.bin"
    app.write_bytes(_app(load, payload))
    special = Special(_special(header))
    for model in ["auto"] + spec_candidates(load, payload):
        out = tmp_path / f"{model}.bin"
        pkg = Package.build(app, out, model=model, special=special)
        data = out.read_bytes()
        assert data[:80] == header, f"model {model}: header differs from the real one"
        assert len(data) == size == pkg.size
        assert data[80:-16] == app.read_bytes()
        assert data[-16:] == hashlib.md5(data[:-16]).digest()
        # only a row seen once (MC20 at 0x1030D000) is a warning; the header is the same
        seen_once = any(r.name == model and r.load_address == load and
                        r.evidence == "seen-once" for r in SPEC_ROWS)
        assert pkg.ok
        assert [c.name for c in pkg.warnings] == (["app.load_address"] if seen_once else [])


@pytest.mark.parametrize("size,load,payload,header_hex", REAL_PACKAGES, ids=IDS)
def test_inspect_passes_a_package_with_the_real_header(size, load, payload, header_hex,
                                                       tmp_path):
    body = bytes.fromhex(header_hex) + _app(load, payload)
    path = tmp_path / "real.bin"
    path.write_bytes(body + hashlib.md5(body).digest())
    pkg = Package.open(path)  # raises on any failed check
    assert pkg.ok and pkg.warnings == (), [c for c in pkg.checks if c.level != "ok"]
    assert pkg.fields["checksum_type"] == 1 and pkg.size == size
    assert pkg.app is not None and pkg.app["load_address"] == load
    assert pkg.candidates == tuple(spec_candidates(load, payload))
    assert pkg.model == (pkg.candidates[0] if len(pkg.candidates) == 1 else None)
    for model in spec_candidates(load, payload):
        assert Package.open(path, model=model).model == model


def test_cli_inspect_passes_a_real_header(cli, tmp_path):
    size, load, payload, header_hex = REAL_PACKAGES[0]
    body = bytes.fromhex(header_hex) + _app(load, payload)
    path = tmp_path / "real.bin"
    path.write_bytes(body + hashlib.md5(body).digest())
    proc = cli("inspect", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "all 17 checks ok"
    d = json.loads(cli("inspect", path, "--json").stdout)
    assert d["ok"] and {c["level"] for c in d["checks"]} == {"ok"}


def test_wrap_gives_the_real_mc60_gfh(tmp_path, cli):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(raw_bytes(REAL_MC60_RAW_SIZE))
    img = AppImage.wrap(raw, tmp_path / "APP.bin", model="MC60")
    assert (tmp_path / "APP.bin").read_bytes()[:64] == REAL_MC60_GFH
    assert img.size == 47000 and img.model == "MC60"
    proc = cli("app", "wrap", raw, "--model", "MC60", "-o", tmp_path / "cli.bin")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli.bin").read_bytes()[:64] == REAL_MC60_GFH
    # and the package of that app starts with the real 47,096-byte package's header
    pkg = Package.build(tmp_path / "APP.bin", tmp_path / "p.bin")
    assert (tmp_path / "p.bin").read_bytes()[:80] == bytes.fromhex(REAL_PACKAGES[0][3])
    assert pkg.size == REAL_PACKAGES[0][0]


def test_wrap_at_a_models_other_address(tmp_path, cli):
    """The M26 has two app addresses (§6); wrap writes its usual one unless told."""
    raw = tmp_path / "raw.bin"
    raw.write_bytes(raw_bytes(1000))
    AppImage.wrap(raw, tmp_path / "a.bin", model="M26")
    assert (tmp_path / "a.bin").read_bytes()[:64] == gfh_header(0x1021B000, 1064)
    img = AppImage.wrap(raw, tmp_path / "b.bin", model="M26", load_address=0x10270000)
    assert (tmp_path / "b.bin").read_bytes()[:64] == gfh_header(0x10270000, 1064)
    assert img.model == "M26" and img.candidates == ("M26",)
    proc = cli("app", "wrap", raw, "--model", "M26", "--load-address", "0x10270000",
               "-o", tmp_path / "c.bin")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    proc = cli("app", "wrap", raw, "--model", "M66", "--load-address", "0x10270000",
               "-o", tmp_path / "d.bin")
    assert proc.returncode == 2 and not (tmp_path / "d.bin").exists()  # usage error
    assert proc.stderr.startswith("fotabench: error:") and "0x102C7000" in proc.stderr
