"""Type stubs for fotabench._core, the C extension (see pymodule/ext/)."""
import os
from typing import Any, Literal, TypedDict

_Path = str | bytes | os.PathLike[str] | os.PathLike[bytes]
_Check = tuple[str, bool, str, str]  # name, ok, code_name, detail

class FotabenchError(Exception):
    code: int
    code_name: str
    @property
    def message(self) -> str: ...

class ArgumentError(FotabenchError, ValueError): ...
class FileError(FotabenchError, OSError): ...
class ImageError(FotabenchError): ...
class ModelError(FotabenchError): ...
class PackageError(FotabenchError): ...
class ChecksumError(FotabenchError): ...
class UrlError(FotabenchError, ValueError): ...
class CryptoError(FotabenchError): ...
class UnsupportedError(FotabenchError): ...

class _AppFields(TypedDict):
    magic: str
    gfh_version: int
    gfh_size: int
    gfh_type: int
    id: bytes
    file_ver: int
    file_type: int
    flash_dev: int
    sig_type: int
    load_address: int
    file_length: int
    max_size: int
    content_offset: int
    sig_len: int
    jump_offset: int
    attr: int
    image_size: int
    model: str | None

class _PackageFields(TypedDict):
    file_size: int
    header_valid: bool
    magic: bytes
    image_type: int
    checksum_type: int
    special: int
    payload_length: int
    digest_length: int
    header_crc: int
    header_crc_computed: int
    md5: str | None
    md5_computed: str | None
    app: _AppFields | None

class _UrlFields(TypedDict):
    scheme: Literal["http", "ftp"]
    host: str
    host_is_ip: bool
    port: int
    path: str
    file: str
    user: str
    password: str

def library_versions() -> dict[str, str]: ...
def md5_file(path: _Path, /) -> bytes: ...
def md5_fd(fd: int | Any, /) -> bytes: ...
def crc16_xmodem(data: bytes, crc: int = 0, /) -> int: ...
def models() -> tuple[tuple[str, int, int], ...]: ...
def app_inspect(path: _Path, model: str | None = None,
                strict: bool = False) -> tuple[_AppFields, tuple[_Check, ...]]: ...
def app_wrap(raw: _Path, out: _Path, model: str) -> _AppFields: ...
def app_header(load_address: int, file_length: int, /) -> bytes: ...
def package_build(app: _Path, out: _Path, model: str | None = None, special: int = 0,
                  image_type: int = 0) -> _PackageFields: ...
def package_inspect(path: _Path, model: str | None = None,
                    strict: bool = False) -> tuple[_PackageFields, tuple[_Check, ...]]: ...
def package_inspect_bytes(data: bytes, model: str | None = None,
                          strict: bool = False) -> tuple[_PackageFields, tuple[_Check, ...]]: ...
def url_parse(url: str, /) -> _UrlFields: ...
def url_http(host: str, path: str, port: int = 80) -> str: ...
def url_ftp(host: str, path: str, user: str, password: str, port: int = 21) -> str: ...
def url_limits() -> dict[str, int]: ...
