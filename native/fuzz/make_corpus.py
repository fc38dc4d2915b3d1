#!/usr/bin/env python3
"""Seed corpora for the libFuzzer targets in native/fuzz/.

    python3 native/fuzz/make_corpus.py OUT

writes OUT/fuzz_appimage/, OUT/fuzz_package/, OUT/fuzz_url/, OUT/fuzz_at/ and
OUT/fuzz_vline/, OUT/fuzz_dafile/, OUT/fuzz_flash_answers/ (one directory per target, named after the binary in
native/build/fuzz/), then e.g.

    native/build/fuzz/fuzz_url OUT/fuzz_url

Standard library only, and independent of the C core on purpose: the layouts are
written from opencpu-fota.md (section 5 package, section 6 app image, section 3 URLs),
so a seed is also a second opinion on what the core builds. Generated corpora are
not committed.
"""
from __future__ import annotations

import argparse
import hashlib
import struct
from pathlib import Path

# opencpu-fota.md section 6: (name, load address, app region size incl. header)
MODELS = [
    ("M66", 0x102C7000, 360 * 1024),
    ("MC60", 0x102DB000, 0x50000),
    ("MC60E", 0x1030D000, 0x46000),
    ("M26", 0x1021B000, 0x50000),
]

GFH_SIZE = 64
PKG_MAGIC = b"QUECTEL_FOTA_UPGRADE"


def crc16_xmodem(data: bytes, crc: int = 0) -> int:
    """CRC-16/XMODEM: poly 0x1021, init 0, no reflection, no final XOR."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


assert crc16_xmodem(b"123456789") == 0x31C3


def gfh_header(load_address: int, file_length: int) -> bytes:
    """The 64-byte MediaTek GFH FILE_INFO header of an OpenCPU app image."""
    h = bytearray(GFH_SIZE)
    h[0:3] = b"MMM"
    h[3] = 1                                   # GFH version
    struct.pack_into("<HH", h, 4, 0x40, 0)     # header size, type FILE_INFO
    h[8:20] = b"FILE_INFO".ljust(12, b"\0")
    struct.pack_into("<I", h, 0x14, 1)         # file_ver
    struct.pack_into("<H", h, 0x18, 0x7000)    # file_type
    h[0x1A] = 7                                # flash_dev: serial flash
    h[0x1B] = 0                                # sig_type
    struct.pack_into("<IIIIIIII", h, 0x1C, load_address, file_length, 0xFFFFFFFF,
                     0x40, 0, 0x40, 3, 0)      # ... max size, content, sig, jump, attr
    return bytes(h)


def code_bytes(n: int, seed: int) -> bytes:
    """Deterministic filler that looks a little like ARM code (not all zero)."""
    out = bytearray()
    x = seed * 2654435761 & 0xFFFFFFFF
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out += struct.pack("<I", x)
    return bytes(out[:n])


def app_image(load_address: int, code_len: int, seed: int = 0) -> bytes:
    return gfh_header(load_address, GFH_SIZE + code_len) + code_bytes(code_len, seed)


def package_header(payload_length: int, image_type: int = 0, special: int = 0,
                   checksum_type: int = 0, digest_length: int = 16) -> bytes:
    h = bytearray(PKG_MAGIC)
    h += struct.pack("<HHIII", image_type, checksum_type, special, payload_length,
                     digest_length)
    h += b"\xff" * 40
    h += struct.pack("<I", crc16_xmodem(bytes(h)))
    assert len(h) == 80
    return bytes(h)


def package(app: bytes, special: int = 0, image_type: int = 0) -> bytes:
    pad = (-len(app)) % 4
    body = package_header(len(app) + pad, image_type, special) + app + b"\xff" * pad
    return body + hashlib.md5(body).digest()


def appimage_seeds() -> dict[str, bytes]:
    seeds = {}
    for i, (name, addr, region) in enumerate(MODELS):
        for code_len in (0, 1, 61, 512):
            seeds[f"valid_{name}_{code_len}"] = app_image(addr, code_len, i)
        seeds[f"headeronly_{name}_region_full"] = gfh_header(addr, region)  # length != size
        seeds[f"bad_{name}_length"] = gfh_header(addr, 64 + 100) + code_bytes(99, i)
        seeds[f"bad_{name}_region"] = gfh_header(addr, region + 4)
    m66 = MODELS[0][1]
    good = app_image(m66, 32)
    seeds["bad_magic"] = b"MMX" + good[3:]
    seeds["bad_version"] = good[:3] + b"\x02" + good[4:]
    seeds["bad_id"] = good[:8] + b"FILE_INFX" + good[17:]
    seeds["bad_address"] = gfh_header(0x10000000, 96) + code_bytes(32, 9)
    seeds["truncated_header"] = good[:40]
    seeds["empty"] = b""
    return seeds


def package_seeds() -> dict[str, bytes]:
    seeds = {}
    for i, (name, addr, _region) in enumerate(MODELS):
        for code_len in (0, 1, 2, 3, 200):
            seeds[f"valid_{name}_{code_len}"] = package(app_image(addr, code_len, i))
        seeds[f"valid_{name}_special3"] = package(app_image(addr, 17, i), special=3)
    m66 = MODELS[0][1]
    app = app_image(m66, 45)
    good = package(app)
    seeds["core_type"] = package(app, image_type=1)
    seeds["bad_crc"] = good[:76] + b"\0\0\0\0" + good[80:]
    seeds["bad_md5"] = good[:-1] + bytes([good[-1] ^ 1])
    seeds["truncated"] = good[:-5]
    seeds["minimal_96"] = good[:80] + good[-16:]
    seeds["app_image_not_package"] = app
    # Structured-mode parameter blocks: model, tweak, app length (u32), special, where
    # (u32), xor, arg; then code bytes. One per model x tweak keeps every branch seeded.
    for m in range(len(MODELS)):
        for tweak in range(12):
            arg = tweak * 5 + m
            if tweak in (6, 7):  # region-sized tweaks run only when arg has 0x70 set
                arg |= 0x70
            params = struct.pack("<BBIBIBB", m, tweak, 37 * tweak + m, tweak & 3,
                                 1000 + tweak, tweak * 17 & 0xFF, arg)
            seeds[f"structured_m{m}_t{tweak}"] = params + code_bytes(24, tweak)
    return seeds


URLS_VALID = [
    # opencpu-fota.md section 3, the application note's own examples (the FTP ones with
    # :port@user:password, which the bench always writes)
    "ftp://www.jjj.com/filePath/xxx.bin:8021@username:password",
    "http://23.11.67.89/filePath/xxx.bin",
    "http://www.quectel.com:8080/filePath/xxx.bin",
    "http://192.168.1.10/fota/APP_Upgrade_Package.bin",
    "http://fota.example.com:80/APPGS3MDM32A01_Upgrade_Package.bin",
    "HTTP://Example.COM:65535/a/b/c/d.bin",
    "ftp://192.168.10.10/filePath/APP.bin:21@anonymous:guest",
    "ftp://10.0.0.1/APP.bin:21@u:",
    "ftp://ftp.example.org/fota/v2/APPGS3MDM32A01.bin:2121@user:p@ss:word",
]

URLS_INVALID = [
    "ftp://192.168.10.10/filePath/APP.bin",          # no :port@user:password
    "ftp://www.jjj.com:8021/filePath/xxx.bin@u:p",   # port before the path
    "ftp://user@host/file.bin:21@u:p",
    "http://www.quectel.com/filePath/xxx.bin:8080",  # the note's file:port form
    "https://www.quectel.com/fota.bin",
    "http://user:pass@host/fota.bin",
    "http://host/dir/",
    "http://host",
    "http://999.1.1.1/a.bin",
    "http://1.2.3/a.bin",
    "http://host:0/a.bin",
    "http://host:65536/a.bin",
    'http://host/a"b.bin',
    "http://host/a b.bin",
    "tftp://host/a.bin",
    "ftp://host/" + "d" * 60 + "/f.bin:21@u:p",
    "ftp://host/dir/" + "f" * 25 + ":21@u:p",
    "ftp://host/f.bin:21@" + "u" * 20 + ":p",
    "ftp://host/f.bin:21@u:" + "p" * 20,
    "http://" + "h" * 151 + "/a.bin",
    "http://host/" + "a" * 200 + ".bin",
    "",
]

# Inputs that once broke an invariant (keep them: the smoke run then checks them every
# time instead of only when the fuzzer happens to find them again).
URLS_REGRESSION = [
    # '@' in the FTP user ("u@x"): the parser accepted it and fb_url_ftp refused to
    # rebuild it (found by fuzz_url; the parser refuses it since 6dd8760)
    "ftp://host/f.bin:21@u@x:pw",
]

# Builder mode: host, path, user, password, port separated by newlines.
BUILDER_INPUTS = [
    "192.168.1.10\n/fota/APP.bin\nanonymous\nguest\n21",
    "fota.example.com\n/APP.bin\nu\n\n8080",
    "host\n/a:b/c.bin\nu\np\n21",
    "host\n/dir/\nu\np\n21",
    "host\n/f.bin\nu@x\np:q@r\n2121",
]


def at_seeds() -> dict[str, bytes]:
    """fuzz_at: byte 0 the line buffer size, byte 1 the chunking (bit 7: "> " prompt),
    then what a module sends (shared/spec/bench-agent.md)."""
    streams = {
        "ok": b"AT\r\r\nOK\r\n",
        "fbver": b'+FBVER: "1.2.0","b42"\r\nOK\r\n',
        "creg_urc_mid": b"+CREG: 0,1\r\n+FBSTATE: UP_GETTING_FILE,45\r\n\r\nOK\r\n",
        "cme": b"+CME ERROR: 3518\r\n",
        "boot": b"RDY\r\n+CFUN: 1\r\n+CPIN: READY\r\nCall Ready\r\nSMS Ready\r\n"
                b'+FBREADY: "1.0","b1"\r\n',
        "prompt": b"\r\n> ",
        "garbage": bytes(range(256)) + b"\r\nOK\r\n",
        "long": b"A" * 300 + b"\r\nOK\r\n",
    }
    out = {}
    for name, body in streams.items():
        out[name] = bytes([0x3F, 0x01]) + body
        out[name + "_small"] = bytes([0x06, 0x83]) + body
    return out


def vline_seeds() -> dict[str, bytes]:
    """fuzz_vline: lines of the virtual line protocol (docs/architecture.md)."""
    lines = ["OK 1234567890", "ERR WDI is an output of the module", "VAL PWRKEY 0 42",
             "EDGE WDI 1 1700000000000 17", "LINE STATUS out 1", "LINE VBAT in 0",
             "EDGE WDI 1 5 0", "VAL X 2 1", "OK 1 2", "LINES",
             # regression: a time past INT64_MAX was accepted as a negative time
             "OK 9999999999991234347"]
    return {f"l{i}": line.encode() for i, line in enumerate(lines)}


def dafile_seeds() -> dict[str, bytes]:
    """fuzz_dafile: DA files in mtkclient's legacy layout (docs/flashing.md), SYNTHETIC
    agents written here from the documented fields, never a MediaTek binary."""
    def dafile(entries):
        head = bytearray(0x6C)
        head[:18] = b"MTK_DOWNLOAD_AGENT"
        head[0x20:0x20 + 9] = b"SYNTHETIC"
        struct.pack_into("<III", head, 0x60, 4, 0x22668899, len(entries))
        table = bytearray()
        blobs = bytearray()
        base = 0x6C + 0xDC * len(entries)
        for hw, parts in entries:
            e = bytearray(0xDC)
            struct.pack_into("<10H", e, 0, 0xDADA, hw, 0, 0, 0, 0, 0x200, 0, 1, len(parts) + 1)
            for r, (addr, data) in enumerate(parts, start=1):
                struct.pack_into("<5I", e, 20 + 20 * r, base + len(blobs), len(data), addr, 0, 0)
                blobs += data
            table += e
        return bytes(head + table + blobs)
    good = dafile([(0x6261, [(0x70007000, bytes(range(256)) * 7), (0x10020000, b"\x55" * 900)]),
                   (0x2503, [(0x70007000, b"\xAA" * 33)])])
    return {"two_entries": good, "one_entry": dafile([(0x6261, [(0x70007000, b"A")])]),
            "truncated": good[:-50], "header_only": good[:0x6C], "empty": b""}


def flash_answer_seeds() -> dict[str, bytes]:
    """fuzz_flash_answers: the agent's banner and its 40-byte flash report."""
    info = bytearray(40)
    info[4:8] = (0xEF6016).to_bytes(4, "big")
    info[32:34] = b"\x5a\x5a"
    info[39] = 0xC1
    return {"banner": b"\xc0\x03\x02\x8e", "info": bytes(info),
            "info_nonor": b"\x00\x00\x00\x01" + bytes(info[4:]), "short": b"\xc0"}


def write(directory: Path, seeds: dict[str, bytes]) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (directory / name).write_bytes(data)
    return len(seeds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output directory (one subdirectory per target)")
    args = ap.parse_args(argv)
    urls = {f"valid_{i:02d}": u.encode() for i, u in enumerate(URLS_VALID)}
    urls.update({f"invalid_{i:02d}": u.encode() for i, u in enumerate(URLS_INVALID)})
    urls.update({f"builder_{i:02d}": u.encode() for i, u in enumerate(BUILDER_INPUTS)})
    urls.update({f"regression_{i:02d}": u.encode() for i, u in enumerate(URLS_REGRESSION)})
    counts = {
        "fuzz_appimage": write(args.out / "fuzz_appimage", appimage_seeds()),
        "fuzz_package": write(args.out / "fuzz_package", package_seeds()),
        "fuzz_url": write(args.out / "fuzz_url", urls),
        "fuzz_at": write(args.out / "fuzz_at", at_seeds()),
        "fuzz_vline": write(args.out / "fuzz_vline", vline_seeds()),
        "fuzz_dafile": write(args.out / "fuzz_dafile", dafile_seeds()),
        "fuzz_flash_answers": write(args.out / "fuzz_flash_answers", flash_answer_seeds()),
    }
    for target, n in counts.items():
        print(f"{args.out / target}: {n} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
