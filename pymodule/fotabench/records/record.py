"""The record: one module, one attempt, written once and never changed.

Its shape is ``fotabench/schemas/record-<N>.schema.json`` (docs/records.md). A record
carries its own digest: ``"sha256:" + sha256(canonical JSON of every field but
``digest``)``, canonical meaning keys sorted, no whitespace, UTF-8, integers only (RFC
8785 for the values a record can hold), so any language can check it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import socket
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping, Optional, Sequence

from .. import __version__
from .._core import FotabenchError

__all__ = [
    "KINDS", "OUTCOMES", "SCHEMA_VERSION", "STATE_NAMES",
    "ModuleId", "NewerSchemaError", "PackageRef", "PowerEvent", "Record", "RecordError",
    "State", "TamperedRecordError", "Transfer", "Watchdog",
    "canonical_json", "compute_digest", "load_schema", "utc_now", "validate",
]

#: The newest record schema this fotabench reads. Version 2 adds kind "flash" and its
#: ``flash`` section; upgrade records are still written as version 1 (every record ever
#: written stays valid, and an older fotabench still reads them), flash records as 2.
SCHEMA_VERSION = 2
KINDS = ("upgrade", "flash")
OUTCOMES = ("pass", "fail", "error")
# opencpu-fota.md §2: Upgrade_State values 0..9.
STATE_NAMES = ("UP_FOTAINITFAIL", "UP_START", "UP_URLDECODEFAIL", "UP_CONNECTING",
               "UP_CONNECTED", "UP_GETTING_FILE", "UP_GET_FILE_OK", "UP_SYSTEM_REBOOT",
               "UP_UPGRADFAILED", "FOTA_STATE_END")


class RecordError(FotabenchError):
    """A record (or a run directory, or a database) that is not what it should be."""

    code_name = "RECORD"


class TamperedRecordError(RecordError):
    """A record whose digest does not match its content: changed after it was written."""

    code_name = "RECORD_DIGEST"


class NewerSchemaError(RecordError):
    """Data written by a newer fotabench (its schema version is above the one we know)."""

    code_name = "SCHEMA_NEWER"

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


def canonical_json(obj: Any) -> bytes:
    """The bytes the digest is taken over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def compute_digest(d: Mapping[str, Any]) -> str:
    body = {k: v for k, v in d.items() if k != "digest"}
    return "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()


def utc_now() -> str:
    """Wall-clock UTC as the record writes it: 2026-11-30T05:02:19.123456Z."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@lru_cache(maxsize=None)
def load_schema(version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema shipped in the package for record schema ``version``."""
    text = resources.files("fotabench").joinpath(
        f"schemas/record-{version}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=None)
def _validator(version: int = SCHEMA_VERSION) -> Any:
    import jsonschema
    return jsonschema.Draft202012Validator(load_schema(version))


def _version_of(d: Mapping[str, Any]) -> int:
    v = d.get("schema_version")
    # Each record is checked against the schema of its own version (1 or 2); anything
    # else is checked against the newest, whose const then names the problem.
    return v if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= SCHEMA_VERSION \
        else SCHEMA_VERSION


def _check_version(d: Mapping[str, Any], what: str) -> None:
    version = d.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{what} has record schema version {version}, from a newer fotabench (this "
            f"fotabench {__version__} reads up to version {SCHEMA_VERSION}): upgrade fotabench",
            version)


def validate(d: Mapping[str, Any], what: str = "record") -> None:
    """Raise RecordError unless ``d`` is valid against the record schema."""
    _check_version(d, what)
    error = next(iter(_validator(_version_of(d)).iter_errors(d)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise RecordError(f"{what} is not a valid fotabench record: at {where}: "
                          f"{error.message}")
    _no_floats(d, what)


def _no_floats(obj: Any, what: str) -> None:
    # The schema says integer, but JSON Schema counts 1.0 as an integer; the digest's
    # canonical form must not depend on how a language prints floats.
    if isinstance(obj, float):
        raise RecordError(f"{what}: {obj!r} is a float; every number in a record is an integer")
    if isinstance(obj, dict):
        for v in obj.values():
            _no_floats(v, what)
    elif isinstance(obj, list):
        for v in obj:
            _no_floats(v, what)


@dataclass(frozen=True)
class State:
    """One +FBSTATE: the callback state, its percent, when it arrived."""

    state: str
    percent: int
    t_ns: int


@dataclass(frozen=True)
class Watchdog:
    edges: int
    longest_gap_ns: int
    longest_gap_at_ns: Optional[int]
    timeout_ns: int
    over_two_thirds: bool
    over_timeout: bool
    edge_t_ns: tuple[int, ...] = ()


@dataclass(frozen=True)
class Transfer:
    """The package server's RequestRecord, as plain values (no derived throughput)."""

    protocol: str
    client: str
    client_port: int
    start_ns: int
    end_ns: int
    method: str = ""
    path: str = ""
    file: Optional[str] = None
    module: Optional[str] = None
    status: int = 0
    size: int = 0
    bytes_sent: int = 0
    outcome: str = "complete"
    faults: tuple[str, ...] = ()
    detail: str = ""

    @classmethod
    def from_request(cls, rec: Any) -> "Transfer":
        """From a fotabench.server RequestRecord (or its to_dict())."""
        d = rec if isinstance(rec, Mapping) else rec.to_dict()
        fields: dict[str, Any] = {k: (tuple(d[k]) if k == "faults" else d[k])
                                  for k in cls.__dataclass_fields__ if k in d}
        return cls(**fields)


@dataclass(frozen=True)
class PowerEvent:
    t_ns: int
    event: str
    detail: str = ""


@dataclass(frozen=True)
class ModuleId:
    imei: Optional[str] = None
    model: Optional[str] = None
    version_before: Optional[str] = None
    version_after: Optional[str] = None


@dataclass(frozen=True)
class PackageRef:
    path: str
    size: int
    md5: str


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, (tuple, list)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class Record:
    """One module, one attempt. Build it with :meth:`create` (which stamps id, host,
    version and digest and validates), read it with :meth:`from_dict` (which validates
    and verifies the digest)."""

    id: str
    run_id: str
    station: str
    slot: str
    operator: Optional[str]
    attempt: int
    max_attempts: int
    module: ModuleId
    package: PackageRef
    url: Optional[str]
    protocol: Optional[str]
    states: tuple[State, ...]
    watchdog: Optional[Watchdog]
    transfers: tuple[Transfer, ...]
    power: tuple[PowerEvent, ...]
    outcome: str
    check: Optional[str]
    cause: Optional[str]
    detail: str
    logs: Mapping[str, str]
    start_ns: int
    end_ns: int
    start_utc: str
    end_utc: str
    fotabench_version: str
    host: str
    digest: str
    kind: str = "upgrade"
    schema_version: int = 1
    flash: Optional[Mapping[str, Any]] = None   # kind "flash" only (schema version 2)
    _dict: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built directly (not by create/from_dict): the JSON form comes from the fields.
        # Its digest is whatever was given; a reader verifies it.
        if not self._dict:
            d = {k: _plain(getattr(self, k)) for k in self.__dataclass_fields__ if k != "_dict"}
            if d.get("flash") is None:
                d.pop("flash", None)    # no such field in an upgrade record
            object.__setattr__(self, "_dict", json.loads(json.dumps(d)))

    @classmethod
    def create(cls, *, run_id: str, station: str, slot: str, package: PackageRef,
               outcome: str, start_ns: int, end_ns: int, start_utc: str, end_utc: str,
               attempt: int = 1, max_attempts: int = 1, operator: Optional[str] = None,
               module: ModuleId = ModuleId(), url: Optional[str] = None,
               protocol: Optional[str] = None, states: Sequence[State] = (),
               watchdog: Optional[Watchdog] = None, transfers: Sequence[Transfer] = (),
               power: Sequence[PowerEvent] = (), check: Optional[str] = None,
               cause: Optional[str] = None, detail: str = "",
               logs: Optional[Mapping[str, str]] = None, kind: str = "upgrade",
               flash: Optional[Mapping[str, Any]] = None,
               id: Optional[str] = None, host: Optional[str] = None,
               fotabench_version: str = __version__) -> "Record":
        d: dict[str, Any] = {
            # An upgrade record is still a version-1 record; a flash record needs 2.
            "schema_version": 2 if kind == "flash" else 1, "kind": kind,
            "id": id or uuid.uuid4().hex, "run_id": run_id, "station": station,
            "slot": slot, "operator": operator, "attempt": attempt,
            "max_attempts": max_attempts, "module": _plain(module),
            "package": _plain(package), "url": url, "protocol": protocol,
            "states": _plain(states), "watchdog": _plain(watchdog),
            "transfers": _plain(transfers), "power": _plain(power), "outcome": outcome,
            "check": check, "cause": cause, "detail": detail, "logs": dict(logs or {}),
            "start_ns": start_ns, "end_ns": end_ns, "start_utc": start_utc,
            "end_utc": end_utc, "fotabench_version": fotabench_version,
            "host": host or socket.gethostname(),
        }
        if flash is not None:
            d["flash"] = _plain(flash)
        d["digest"] = compute_digest(d)
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, what: str = "record",
                  check_schema: bool = True) -> "Record":
        """Validate ``d`` against the schema (``check_schema``; the digest is always
        verified) and build the Record. RecordError / TamperedRecordError /
        NewerSchemaError say what is wrong."""
        if not isinstance(d, Mapping):
            raise RecordError(f"{what} is not a JSON object")
        if check_schema:
            validate(d, what)
        else:
            _check_version(d, what)
        digest = compute_digest(d)
        if d.get("digest") != digest:
            raise TamperedRecordError(
                f"{what} {d.get('id')}: digest mismatch (stored {d.get('digest')}, content "
                f"gives {digest}): the record was changed after it was written")
        try:
            wd = d["watchdog"]
            return cls(
                id=d["id"], run_id=d["run_id"], station=d["station"], slot=d["slot"],
                operator=d["operator"], attempt=d["attempt"], max_attempts=d["max_attempts"],
                module=ModuleId(**d["module"]), package=PackageRef(**d["package"]),
                url=d["url"], protocol=d["protocol"],
                states=tuple(State(**s) for s in d["states"]),
                watchdog=None if wd is None else Watchdog(
                    **{**wd, "edge_t_ns": tuple(wd["edge_t_ns"])}),
                transfers=tuple(Transfer(**{**t, "faults": tuple(t["faults"])})
                                for t in d["transfers"]),
                power=tuple(PowerEvent(**p) for p in d["power"]),
                outcome=d["outcome"], check=d["check"], cause=d["cause"],
                detail=d["detail"], logs=dict(d["logs"]), start_ns=d["start_ns"],
                end_ns=d["end_ns"], start_utc=d["start_utc"], end_utc=d["end_utc"],
                fotabench_version=d["fotabench_version"], host=d["host"],
                digest=d["digest"], kind=d["kind"], schema_version=d["schema_version"],
                flash=d.get("flash"),
                _dict=json.loads(json.dumps(d)))
        except (KeyError, TypeError) as e:
            raise RecordError(f"{what} is not a valid fotabench record: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON values (a fresh copy: changing it changes nothing here)."""
        out: dict[str, Any] = json.loads(json.dumps(self._dict))
        return out

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self._dict, indent=indent, ensure_ascii=False)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def reason(self) -> str:
        """The named check (fail) or cause (error), with the detail: one line."""
        name = self.check if self.outcome == "fail" else self.cause
        if self.outcome == "pass":
            return ""
        return f"{name}: {self.detail}" if self.detail else str(name)
