"""PackageServer: a station's HTTP and FTP package servers, as one object."""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from .. import _core
from ..url import ModuleUrl
from .faults import Fault, FaultSet
from .ftp import FtpServer
from .http import HttpServer, Limits
from .records import RecordLog, RequestRecord

PathLike = Union[str, "os.PathLike[str]"]
# Every error is a FotabenchError (README), with the standard base class callers knew.
ArgumentError = _core.ArgumentError  # a ValueError too


class ServerStateError(_core.FotabenchError, RuntimeError):
    """The server is not in the state the call needs (not started, already started)."""

    code_name = "SERVER_STATE"


class NotServedError(_core.FotabenchError, KeyError):
    """No package of that name is served (a KeyError too)."""

    code_name = "NOT_SERVED"
    __str__ = Exception.__str__  # the message, not KeyError's quoted repr


class ServerBindError(_core.FotabenchError, OSError):
    """A server could not listen (port in use, address not on this machine)."""

    code_name = "SERVER_BIND"


class MissingPackageError(_core.FileError, FileNotFoundError):
    """The package file to serve does not exist."""


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_MODULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,31}")


def check_module_name(module: str) -> str:
    """A module name for per-module paths (/m/NAME/...): returned as is, or ValueError
    saying the rule (no '/', no '..', not empty: it becomes a directory): an
    ArgumentError, a ValueError too."""
    if not isinstance(module, str) or not _MODULE.fullmatch(module):
        raise ArgumentError(f"module name {module!r}: use letters, digits, '_', '-', "
                            "up to 32 characters")
    return module


class PackageServer:
    """HTTP and FTP servers for FOTA packages, started and stopped by the bench.

    ::

        with PackageServer(["APP_Upgrade.bin"], bind="127.0.0.1") as srv:
            url = srv.url_for("APP_Upgrade.bin", "http", module="dut1")
            srv.add_fault(Fault.drop(at_percent=50, times=1))   # the retry succeeds
            ...                      # the module fetches str(url)
            srv.wait_for(lambda rs: any(r.outcome == "complete" for r in rs), 60)

    The packages are copied into a private directory (removed on stop), so what is
    served is exactly what was given even if the build directory changes, and
    nothing else is reachable: HTTP looks request paths up by name, FTP's
    filesystem is confined to that directory and read-only. A package is served as
    ``/NAME`` and, once :meth:`url_for` names a module, as ``/m/MODULE/NAME``: the
    records then say which module fetched it, even when all modules share one IP.

    ``http``/``ftp``: a port (0 = any free port) or None to not run that server.
    ``host``: the address put in URLs (default: ``bind``; required when binding
    to a wildcard address). ``timeline``: a ``fotabench.Timeline`` that receives a
    ``("http"|"ftp", "request", **record)`` event per finished request.
    """

    def __init__(self, packages: Union[Iterable[PathLike], Mapping[str, PathLike]] = (),
                 *, bind: str = "127.0.0.1", http: Optional[int] = 0,
                 ftp: Optional[int] = 0, host: Optional[str] = None,
                 user: str = "fotabench", password: str = "fotabench",
                 timeline: Any = None, faults: Iterable[Fault] = (),
                 limits: Optional[Limits] = None, ftp_auth_failed_delay: float = 1.0,
                 on_record: Optional[Callable[[RequestRecord], None]] = None) -> None:
        if http is None and ftp is None:
            raise ArgumentError("PackageServer needs http, ftp or both")
        self.bind = bind
        self.host = host or bind
        if self._is_wildcard(self.host):
            raise ArgumentError(f"bound to {bind}: pass host= (the address modules reach)")
        self.user, self.password = user, password
        self.faults = FaultSet(list(faults))
        self.log = RecordLog(timeline, on_record)
        self.timeline = timeline
        self.limits = limits or Limits()
        self._http_port, self._ftp_port = http, ftp
        self._ftp_auth_delay = ftp_auth_failed_delay
        self._lock = threading.Lock()
        self._root: Optional[Path] = None
        self._files: dict[str, Path] = {}
        self._modules: dict[str, dict[str, Path]] = {}
        self.http: Optional[HttpServer] = None
        self.ftp: Optional[FtpServer] = None
        self._pending: list[tuple[PathLike, Optional[str]]] = []
        items = packages.items() if isinstance(packages, Mapping) else (
            (None, p) for p in packages)
        for name, path in items:
            self._pending.append((path, name))

    @staticmethod
    def _is_wildcard(addr: str) -> bool:
        try:
            return ipaddress.ip_address(addr).is_unspecified
        except ValueError:
            return False

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> "PackageServer":
        if self._root is not None:
            raise ServerStateError("PackageServer already started")
        self._root = Path(tempfile.mkdtemp(prefix="fotabench-serve-")).resolve()
        try:
            for path, name in self._pending:
                self.add_package(path, name)
            if self._http_port is not None:
                self.http = HttpServer(self.bind, self._http_port, self._lookup,
                                       self.faults, self.log, self.limits)
            if self._ftp_port is not None:
                self.ftp = FtpServer(self.bind, self._ftp_port, str(self._root), self.user,
                                     self.password, self.faults, self.log,
                                     auth_failed_delay=self._ftp_auth_delay,
                                     max_connections=self.limits.max_connections)
        except _core.FotabenchError:
            self.stop()
            raise
        except OSError as e:  # a port in use, an address not on this machine
            self.stop()
            raise ServerBindError(f"cannot serve on {self.bind}: {e.strerror or e}") from e
        except BaseException:
            self.stop()
            raise
        if self.http:
            self.http.start()
        if self.ftp:
            self.ftp.start()
        return self

    def stop(self) -> None:
        """Stop both servers (cutting open transfers) and remove the served copy."""
        if self.http is not None:
            self.http.stop()
        if self.ftp is not None:
            self.ftp.stop()
        self.http = self.ftp = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> "PackageServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self._root is None:
            return f"<PackageServer stopped bind={self.bind}>"
        urls = [f"http://{self.host}:{self.http_port}/"] if self.http else []
        urls += [f"ftp://{self.host}:{self.ftp_port}/"] if self.ftp else []
        return f"<PackageServer running {' '.join(urls)} packages={self.packages}>"

    # --- what is served ----------------------------------------------------------------

    @property
    def root(self) -> Path:
        if self._root is None:
            raise ServerStateError("PackageServer is not started")
        return self._root

    @property
    def packages(self) -> list[str]:
        with self._lock:
            return sorted(self._files)

    def add_package(self, path: PathLike, name: Optional[str] = None, *,
                    exist_ok: bool = False) -> str:
        """Serve a copy of ``path`` as ``name`` (default: its file name).

        With ``exist_ok``, a package already served under ``name`` with the same bytes is
        not an error (slots of one station sharing a server each ask for it, at once);
        one with other bytes still is.
        """
        src = Path(path)
        name = name or src.name
        if not _NAME.fullmatch(name):
            raise ArgumentError(f"package name {name!r}: use letters, digits, '.', '_', '-'"
                             " (not starting with '.'), up to 100 characters")
        if name == "m":
            raise ArgumentError("package name 'm' is reserved for per-module paths")
        if not src.is_file():
            raise MissingPackageError(f"no such package file: {src}")
        if self._root is None:
            self._pending.append((path, name))
            return name
        dst = self._root / name
        with self._lock:
            if name in self._files:
                # Checked under the lock: a check by the caller before this call races
                # with another thread adding the same name.
                if exist_ok and _same_bytes(src, self._files[name]):
                    return name
                raise ArgumentError(f"a package named {name!r} is already served"
                                    + (" with other contents" if exist_ok else ""))
            tmp = self._root / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, dst)
            self._files[name] = dst
        return name

    def _module_path(self, module: str, name: str) -> Path:
        check_module_name(module)
        with self._lock:
            if name not in self._files:
                raise NotServedError(f"no package named {name!r} (served: "
                               f"{', '.join(sorted(self._files)) or 'none'})")
            per = self._modules.setdefault(module, {})
            if name not in per:
                d = self.root / "m" / module
                d.mkdir(parents=True, exist_ok=True)
                link = d / name
                try:
                    os.link(self._files[name], link)
                except OSError:
                    shutil.copyfile(self._files[name], link)
                per[name] = link
            return per[name]

    def _lookup(self, module: Optional[str], name: str) -> Optional[str]:
        with self._lock:
            p = self._files.get(name) if module is None else self._modules.get(
                module, {}).get(name)
        return str(p) if p is not None else None

    def _package_name(self, package: PathLike) -> str:
        name = str(package)
        with self._lock:
            if name in self._files:
                return name
            base = Path(name).name
            if base in self._files:
                return base
        raise NotServedError(f"no package named {name!r} is served")

    # --- URLs ---------------------------------------------------------------------------

    @property
    def http_port(self) -> int:
        if self.http is None:
            raise ServerStateError("no HTTP server running")
        return self.http.address[1]

    @property
    def ftp_port(self) -> int:
        if self.ftp is None:
            raise ServerStateError("no FTP server running")
        return self.ftp.address[1]

    def url_for(self, package: PathLike, protocol: str = "http",
                module: Optional[str] = None) -> ModuleUrl:
        """The URL a module is given for ``package`` (a served name, or the path that
        was served), built under the module's URL rules (``ModuleUrl``; UrlError when
        a field breaks a limit, e.g. an FTP file name over 24 characters). With
        ``module``, the per-module path ``/m/MODULE/NAME``."""
        name = self._package_name(package)
        path = f"/{name}"
        if module is not None:
            self._module_path(module, name)
            path = f"/m/{module}/{name}"
        if protocol == "http":
            return ModuleUrl.http(self.host, path, port=self.http_port)
        if protocol == "ftp":
            return ModuleUrl.ftp(self.host, path, port=self.ftp_port, user=self.user,
                                 password=self.password)
        raise ArgumentError(f"protocol must be 'http' or 'ftp', got {protocol!r}")

    # --- faults -------------------------------------------------------------------------

    def add_fault(self, fault: Union[Fault, str]) -> Fault:
        """Inject a fault (a Fault, or its CLI form ``"drop:at=50%,times=1"``)."""
        f = Fault.parse(fault) if isinstance(fault, str) else fault
        return self.faults.add(f)

    inject = add_fault

    def remove_fault(self, fault: Fault) -> None:
        self.faults.remove(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    # --- records ------------------------------------------------------------------------

    @property
    def records(self) -> list[RequestRecord]:
        """Finished requests, in the order they finished."""
        return self.log.snapshot()

    def forget_records(self, predicate: Callable[[RequestRecord], bool]) -> int:
        """Drop the finished records ``predicate`` selects (a station that runs for days
        forgets what its ended upgrades no longer need); returns how many went."""
        return self.log.discard(predicate)

    def wait_for(self, predicate: Callable[[list[RequestRecord]], bool],
                 timeout: Optional[float] = 30.0) -> list[RequestRecord]:
        """Block until ``predicate(records)``; BenchTimeoutError (a TimeoutError) after
        ``timeout`` s (None: for ever).

        >>> srv.wait_for(lambda rs: any(r.outcome == "complete" for r in rs), 60)  # doctest: +SKIP
        """
        return self.log.wait(predicate, timeout)

    def wait_records(self, n: int, timeout: Optional[float] = 30.0, **match: Any
                     ) -> list[RequestRecord]:
        """Block until ``n`` records whose fields equal ``match`` exist; returns them
        ordered by ``start_ns`` (the order the requests came in: a record is added
        when its request ends, and the end of one can be stamped after the next
        one started)."""
        def sel(rs: list[RequestRecord]) -> list[RequestRecord]:
            return [r for r in rs if all(getattr(r, k) == v for k, v in match.items())]
        self.log.wait(lambda rs: len(sel(rs)) >= n, timeout)
        return sorted(sel(self.log.snapshot()), key=lambda r: r.start_ns)


def _same_bytes(a: Path, b: Path) -> bool:
    import filecmp
    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False
