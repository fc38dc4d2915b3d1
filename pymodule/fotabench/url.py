"""URLs under the module's own FOTA URL rules (opencpu-fota.md §3)."""
from __future__ import annotations

from dataclasses import dataclass

from . import _core

LIMITS: dict[str, int] = _core.url_limits()


@dataclass(frozen=True)
class ModuleUrl:
    """A URL the module decodes, with the fields it decodes it into.

    Build one rather than writing it by hand::

        >>> str(ModuleUrl.ftp("10.0.0.2", "/fota/APP.bin", port=2121, user="bench", password="pw"))
        'ftp://10.0.0.2/fota/APP.bin:2121@bench:pw'
        >>> ModuleUrl.parse("http://10.0.0.2:8080/fota/APP.bin").port
        8080

    For FTP, ``path`` is the directory the module changes to and ``file`` the file
    it fetches; for HTTP, ``path`` is the request path.
    """

    url: str
    scheme: str
    host: str
    host_is_ip: bool
    port: int
    path: str
    file: str
    user: str
    password: str

    def __str__(self) -> str:
        return self.url

    @classmethod
    def parse(cls, url: str) -> "ModuleUrl":
        """Decode as the module does; UrlError names the field and limit it breaks."""
        return cls(url=url, **_core.url_parse(url))

    @classmethod
    def http(cls, host: str, path: str, port: int = 80) -> "ModuleUrl":
        """``http://host[:port]/path`` (the port right after the host)."""
        return cls.parse(_core.url_http(host, path, port))

    @classmethod
    def ftp(cls, host: str, path: str, port: int = 21, user: str = "anonymous",
            password: str = "fotabench") -> "ModuleUrl":
        """``ftp://host/dir/file:port@user:password``, always with port and
        credentials (the module's parser mis-reads URLs without them)."""
        return cls.parse(_core.url_ftp(host, path, user, password, port))

    def to_dict(self) -> dict:
        return {
            "url": self.url, "scheme": self.scheme, "host": self.host,
            "host_is_ip": self.host_is_ip, "port": self.port, "path": self.path,
            "file": self.file, "user": self.user, "password": self.password,
        }
