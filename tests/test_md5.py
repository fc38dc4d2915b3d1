"""MD5 through the C core (OpenSSL EVP, 256 KiB reads) against hashlib."""
from __future__ import annotations

import hashlib
import os

import pytest

import fotabench
from fotabench import FileError, _core

from conftest import assert_fb_error, raw_bytes

CHUNK = 256 * 1024  # the core's read size (native/src/md5.c)


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 1000,
                                  CHUNK - 1, CHUNK, CHUNK + 1,
                                  (1 << 20) + 12345])  # > 1 MiB, not a multiple of CHUNK
def test_md5_file_matches_hashlib(size, tmp_path):
    data = raw_bytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    expected = hashlib.md5(data).hexdigest()
    assert fotabench.md5_file(path) == expected
    assert fotabench.md5_file(str(path)) == expected
    assert _core.md5_file(path) == hashlib.md5(data).digest()


def test_md5_empty_file_known_value(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert fotabench.md5_file(tmp_path / "empty") == "d41d8cd98f00b204e9800998ecf8427e"


def test_md5_fd(tmp_path):
    data = raw_bytes(CHUNK * 3 + 7)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert _core.md5_fd(f) == hashlib.md5(data).digest()
    with open(path, "rb") as f:
        f.seek(100)  # reads from the current position to EOF
        assert _core.md5_fd(f.fileno()) == hashlib.md5(data[100:]).digest()
    r, w = os.pipe()
    os.write(w, b"through a pipe")
    os.close(w)
    try:
        assert _core.md5_fd(r) == hashlib.md5(b"through a pipe").digest()
    finally:
        os.close(r)


def test_md5_missing_file(tmp_path):
    with pytest.raises(FileError) as ei:
        fotabench.md5_file(tmp_path / "missing.bin")
    assert_fb_error(ei.value, FileError, "FB_ERR_IO")
    assert isinstance(ei.value, OSError)
    assert "missing.bin" in ei.value.message


def test_md5_directory(tmp_path):
    with pytest.raises(FileError) as ei:
        fotabench.md5_file(tmp_path)
    assert_fb_error(ei.value, FileError, "FB_ERR_IO")


def test_md5_long_utf8_path_error_is_file_error(tmp_path):
    # choose the padding so the 399-byte message cut falls inside a 2-byte 'é'
    prefix = f"cannot open {tmp_path}/"
    pad = "a" * ((399 - len(prefix.encode())) % 2 == 0)
    path = tmp_path / (pad + "é" * 200)
    with pytest.raises(FileError) as ei:
        fotabench.md5_file(path)
    assert_fb_error(ei.value, FileError, "FB_ERR_IO")


def test_md5_undecodable_missing_name_is_file_error(tmp_path):
    path = os.fsencode(tmp_path) + b"/missing\xff.bin"
    with pytest.raises(FileError) as ei:
        fotabench.md5_file(path)
    assert_fb_error(ei.value, FileError, "FB_ERR_IO")


def test_md5_undecodable_existing_name(tmp_path):
    path = os.fsencode(tmp_path) + b"/name\xff.bin"
    with open(path, "wb") as f:
        f.write(b"abc")
    assert fotabench.md5_file(path) == hashlib.md5(b"abc").hexdigest()
