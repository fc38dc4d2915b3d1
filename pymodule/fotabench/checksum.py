"""MD5 through the C core (OpenSSL EVP, streamed, GIL released)."""
from __future__ import annotations

import os

from . import _core


def md5_file(path: str | os.PathLike) -> str:
    """Hex MD5 of a whole file, in constant memory; other threads keep running.

    >>> md5_file("/dev/null")
    'd41d8cd98f00b204e9800998ecf8427e'
    """
    return _core.md5_file(path).hex()
