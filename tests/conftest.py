"""Shared fixtures and independent reference implementations for the packaging tests.

Everything "expected" in this suite is derived here from the spec
(shared/spec/opencpu-fota.md §3, §5, §6), not from fotabench itself:

- ``crc16_xmodem``: a bit-by-bit CRC-16/XMODEM (poly 0x1021, init 0, no reflection,
  no final XOR);
- ``gfh_header``: the 64-byte GFH FILE_INFO header packed with ``struct`` from the
  spec's field list;
- ``package_header`` / ``package_bytes``: the FOTA package layout, MD5 from hashlib.
"""
from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, settings

import fotabench

ROOT = Path(__file__).resolve().parent.parent

settings.register_profile(
    "fotabench",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fotabench"))


# --- spec facts -------------------------------------------------------------------

class SpecModel(NamedTuple):
    name: str | None
    load_address: int
    region_size: int          # 0: not known
    evidence: str = "linker-scripts"


# opencpu-fota.md §6, "App regions" (the linker scripts of 37 public SDK copies; single
# sources as "seen-once"). A model's first row is its usual address.
SPEC_ROWS = [
    SpecModel("M66", 0x102C7000, 0x5A000),            # 360 KB, SDK V1.7-V2.6
    SpecModel("MC60", 0x102DB000, 0x50000),           # V1.6-V1.8
    SpecModel("MC60E", 0x1030D000, 0x46000),          # V1.6-V1.8
    SpecModel("M26", 0x1021B000, 0x50000),            # V1.6, V2.1, V2.2
    SpecModel("M26", 0x10270000, 0x32000),            # V2.0, V2.2 variants
    SpecModel("MC20", 0x102DB000, 0x50000),           # V1.3, V1.4, V1.7: same script as MC60
    SpecModel("MC20", 0x1030D000, 0x46000, "seen-once"),   # "also one MC20 project"
    SpecModel("MC20", 0x10312000, 0, "seen-once"),    # one real MC20-type app, no script
] + [SpecModel(None, a, 0, "seen-once") for a in (  # single sources, model not recorded
    0x102B5000, 0x10268000, 0x10292000, 0x10293000, 0x1025C000, 0x102EF000)]
SPEC_MODELS = {}
for _row in SPEC_ROWS:
    if _row.name:
        SPEC_MODELS.setdefault(_row.name, _row)
MODEL_NAMES = list(SPEC_MODELS)  # M66, MC60, MC60E, M26, MC20
# 0x08xxxxxx: BC26 0x08292000, BC20 0x082C4000 (MT2625 NB-IoT): not OpenCPU FOTA.
NBIOT_ADDRESSES = [0x08292000, 0x082C4000]


def spec_candidates(load_address: int, image_size: int | None = None) -> list[str]:
    """Model names known at an address whose region holds image_size (all when none does)."""
    rows = [r for r in SPEC_ROWS if r.load_address == load_address and r.name]
    fit = [r for r in rows if image_size is None or not r.region_size
           or image_size <= r.region_size]
    return [r.name for r in (fit or rows)]


# real-vectors.md: the 80-byte headers of six packages made by Quectel's GS3 tool, with
# the app's load address and the payload length each was made from, and the GFH of the
# MC60 app the first was made from (a 46,936-byte raw image wrapped for MC60).
REAL_PACKAGES = [
    # (package size, load address, payload length, header hex)
    (47096, 0x102DB000, 47000,
     "5155454354454c5f464f54415f555047524144450000010000000000" "98b70000"
     "10000000" + "ff" * 40 + "73c10000"),
    (106408, 0x102DB000, 106312,
     "5155454354454c5f464f54415f555047524144450000010000000000" "489f0100"
     "10000000" + "ff" * 40 + "31670000"),
    (166880, 0x102C7000, 166784,
     "5155454354454c5f464f54415f555047524144450000010001000000" "808b0200"
     "10000000" + "ff" * 40 + "18bb0000"),
    (98680, 0x1021B000, 98584,
     "5155454354454c5f464f54415f555047524144450000010000000000" "18810100"
     "10000000" + "ff" * 40 + "c29b0000"),
    (82384, 0x10270000, 82288,
     "5155454354454c5f464f54415f555047524144450000010001000000" "70410100"
     "10000000" + "ff" * 40 + "58f40000"),
    (162216, 0x1030D000, 162120,
     "5155454354454c5f464f54415f555047524144450000010000000000" "48790200"
     "10000000" + "ff" * 40 + "9dbe0000"),
]
REAL_MC60_GFH = bytes.fromhex(
    "4d4d4d014000000046494c455f494e464f000000010000000070070000b02d10"
    "98b70000ffffffff400000000000000040000000030000000000000000000000")
REAL_MC60_RAW_SIZE = 46936

# The C core's status codes (native/include/fotabench/error.h), the contract that
# FotabenchError.code / code_name expose.
FB_CODES = {
    "FB_ERR_ARG": -1,
    "FB_ERR_IO": -2,
    "FB_ERR_NOMEM": -3,
    "FB_ERR_IMAGE": -4,
    "FB_ERR_MODEL": -5,
    "FB_ERR_PACKAGE": -6,
    "FB_ERR_CHECKSUM": -7,
    "FB_ERR_URL": -8,
    "FB_ERR_CRYPTO": -9,
    "FB_ERR_UNSUPPORTED": -10,
}

GFH_SIZE = 64
PKG_MAGIC = b"QUECTEL_FOTA_UPGRADE"
PKG_HEADER_SIZE = 80
MD5_LEN = 16

APP_CHECKS = ["size", "magic", "header_size", "id", "length", "load_address", "region"]
PACKAGE_HEADER_CHECKS = ["size", "magic", "header_crc", "image_type", "checksum_type",
                         "special", "digest_length", "payload_length", "reserved"]


# --- reference implementations ------------------------------------------------------

def crc16_xmodem(data: bytes, crc: int = 0) -> int:
    """CRC-16/XMODEM, bit by bit, straight from the definition."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


def gfh_header(load_address: int, file_length: int, *, magic=b"MMM", version=1,
               header_size=0x40, gfh_type=0, ident=b"FILE_INFO") -> bytes:
    """The GFH FILE_INFO header, field by field from spec §6."""
    head = struct.pack(
        "<3sBHH12sIHBBIIIIIII",
        magic,            # 0x00 "MMM"
        version,          # 0x03 version 1
        header_size,      # 0x04 header size 0x40
        gfh_type,         # 0x06 type 0
        ident,            # 0x08 id "FILE_INFO" (12 bytes, NUL padded)
        1,                # 0x14 file_ver
        0x7000,           # 0x18 file_type
        7,                # 0x1A flash_dev
        0,                # 0x1B sig_type
        load_address,     # 0x1C
        file_length,      # 0x20 header included
        0xFFFFFFFF,       # 0x24 max size
        0x40,             # 0x28 content offset
        0,                # 0x2C sig_len
        0x40,             # 0x30 jump offset
        3,                # 0x34 attr
    )
    assert len(head) == 0x38
    return head + bytes(GFH_SIZE - len(head))


def pad4(n: int) -> int:
    return (n + 3) // 4 * 4


def package_header(payload_length: int, *, image_type=0, checksum_type=1, special=0,
                   digest_length=16, reserved=b"\xff" * 40, magic=PKG_MAGIC,
                   crc: int | None = None) -> bytes:
    """The 80-byte package header of spec §5 (CRC computed unless given); checksum type
    1 as Quectel's GS3 tool writes it."""
    body = magic + struct.pack("<HHIII", image_type, checksum_type, special,
                               payload_length, digest_length) + reserved
    assert len(body) == 76
    if crc is None:
        crc = crc16_xmodem(body)
    return body + struct.pack("<I", crc)


def package_bytes(app: bytes, *, pad_byte=0xFF, payload_length: int | None = None,
                  **header) -> bytes:
    """A whole package built by the reference: header, app, padding, MD5 trailer."""
    payload = pad4(len(app)) if payload_length is None else payload_length
    pad = max(0, pad4(len(app)) - len(app))
    body = package_header(payload, **header) + app + bytes([pad_byte]) * pad
    return body + hashlib.md5(body).digest()


def raw_bytes(size: int, seed: int | None = None) -> bytes:
    """Deterministic pseudo-random bytes that never look like a GFH header."""
    rng = random.Random(size if seed is None else seed)
    data = bytearray(rng.randbytes(size))
    if data[:3] == b"MMM":
        data[0] = 0
    return bytes(data)


def app_bytes(model: str, raw_size: int, seed: int | None = None) -> bytes:
    """A correct app image for model, built by the reference (not by fotabench)."""
    raw = raw_bytes(raw_size, seed)
    return gfh_header(SPEC_MODELS[model].load_address, raw_size + GFH_SIZE) + raw


# --- fixtures -----------------------------------------------------------------------

@pytest.fixture
def raw_bin(tmp_path):
    """raw_bin(size, name=...) -> path of a raw binary of that many bytes."""
    counter = iter(range(10**6))

    def make(size: int, name: str | None = None, seed: int | None = None) -> Path:
        path = tmp_path / (name or f"raw_{size}_{next(counter)}.bin")
        path.write_bytes(raw_bytes(size, seed))
        return path

    return make


@pytest.fixture
def app_image(tmp_path):
    """app_image(model, raw_size) -> path of an app image made by the reference."""
    counter = iter(range(10**6))

    def make(model: str, raw_size: int = 1000, name: str | None = None) -> Path:
        path = tmp_path / (name or f"app_{model}_{raw_size}_{next(counter)}.bin")
        path.write_bytes(app_bytes(model, raw_size))
        return path

    return make


@pytest.fixture
def wrapped_app(tmp_path, raw_bin):
    """wrapped_app(model, raw_size) -> path of an app image made by AppImage.wrap."""
    counter = iter(range(10**6))

    def make(model: str, raw_size: int = 1000) -> Path:
        n = next(counter)
        out = tmp_path / f"wrapped_{model}_{raw_size}_{n}.bin"
        fotabench.AppImage.wrap(raw_bin(raw_size, name=f"wraw_{model}_{raw_size}_{n}.bin"),
                                out, model=model)
        return out

    return make


@pytest.fixture
def built_package(tmp_path, app_image):
    """built_package(model, raw_size, special) -> path of a package made by Package.build."""
    counter = iter(range(10**6))

    def make(model: str = "M66", raw_size: int = 1000, special="none") -> Path:
        app = app_image(model, raw_size)
        out = tmp_path / f"pkg_{model}_{raw_size}_{next(counter)}.bin"
        fotabench.Package.build(app, out, special=special)
        return out

    return make


def run_cli(*args, input: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run `python -m fotabench ARGS`; text stdout/stderr."""
    argv = [a if isinstance(a, (str, bytes, os.PathLike)) else str(a) for a in args]
    proc = subprocess.run([sys.executable, "-m", "fotabench", *argv],
                          input=input, capture_output=True, cwd=cwd, timeout=60)
    proc.stdout = proc.stdout.decode("utf-8", "surrogateescape")
    proc.stderr = proc.stderr.decode("utf-8", "surrogateescape")
    return proc


@pytest.fixture
def cli():
    return run_cli


def assert_fb_error(exc: BaseException, cls: type, code_name: str) -> None:
    """The error contract: class, base class, code, code_name, one-line message."""
    assert isinstance(exc, cls), f"{type(exc).__name__} is not a {cls.__name__}: {exc}"
    assert isinstance(exc, fotabench.FotabenchError)
    assert exc.code_name == code_name
    assert exc.code == FB_CODES[code_name]
    assert isinstance(exc.message, str) and exc.message
    assert "\n" not in exc.message
    assert str(exc) == exc.message


def failed_names(checks) -> list[str]:
    """Names of the failed checks, from Check objects or the raw (name, ok, ...) tuples."""
    return [c[0] for c in checks if not c[1]]


def check_names(checks) -> list[str]:
    return [c[0] for c in checks]


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))
