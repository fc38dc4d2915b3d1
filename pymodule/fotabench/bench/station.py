"""Station files: YAML in, a :class:`~fotabench.bench.config.StationSpec` out, and every
mistake reported at once as ``FILE:LINE: FIELD: what is wrong``.

Three passes, so an error always names the place a person edits:

1. YAML is composed (PyYAML's node graph keeps each node's line) and turned into plain
   data by our own walk, which records the line of every value and key, refuses
   duplicate keys and recursive aliases, and reads scalars by YAML 1.2's core schema
   (``on``/``off``/``yes``/``no`` are strings, ``017`` is 17), as editors do;
2. the shipped JSON Schema (``fotabench/schemas/station-1.schema.json``) checks the shape;
   its error paths are mapped back to lines, unknown keys get a "did you mean";
3. checks a schema cannot express: duplicate slot names, two slots on one serial port,
   one GPIO line used twice on a chip, a real slot without a port, fault specs.

See docs/stations.md for the format.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterable, Iterator, Optional, Union

import jsonschema
import yaml

from .config import (LINE_ROLES, LineSpec, ServerSpec, SlotSpec, StationSpec, Timeouts,
                     VirtualSpec)

__all__ = ["StationError", "StationIssue", "load_station", "load_station_text",
           "check_station", "schema", "schema_path", "parse_fault", "FaultSpec",
           "parse_link_rate", "MODELS", "MODULE_FAULTS", "FORMAT_VERSION"]

FORMAT_VERSION = 1
#: Models a slot may name: the four the core has profiles for, and the MC20, which
#: shares the MC60's platform (spec opencpu-fota.md section 6).
MODELS = ("M66", "MC60", "MC60E", "M26", "MC20")
#: Faults the virtual module itself suffers (the rest are the package server's, see
#: fotabench.server.faults): key -> the keys it takes.
MODULE_FAULTS = {"power_cut": ("at", "times"), "attach_fail": (), "pdp_fail": (),
                 # UART1 flips a bit in, or drops a byte of, flash write packets first..
                 # first+count-1 (docs/flashing.md): only a flash meets it.
                 "line_fault": ("mode", "first", "count")}

Path = tuple[Union[str, int], ...]
_MAX_NODES = 100_000   # aliases may expand a small text into a huge tree
_MAX_DEPTH = 64        # a station file is a few levels deep; deeper is not a station


@dataclass(frozen=True)
class StationIssue:
    """One problem in a station file. ``line`` is 1-based; ``field`` a path such as
    ``slots[2].lines.WDI.line`` (empty for the file as a whole)."""
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:" if self.line else f"{self.file}:"
        return f"{where} {self.field}: {self.message}" if self.field else f"{where} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field,
                "message": self.message}


class StationError(ValueError):
    """A station file that cannot be used; ``issues`` holds every problem found, and
    ``str()`` is one line per problem."""

    def __init__(self, issues: Iterable[StationIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


# --- pass 1: YAML with lines ---------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars: PyYAML's 1.1 rules make ``on`` a
    boolean and ``0755`` octal, which a station file (``power_after: on``) and the VS
    Code YAML extension (1.2) would read differently."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
        ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                  r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
        ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
        ("merge", r"^(?:<<)$", "<")):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_regexp),
                                  list(_first))

_TAG = "tag:yaml.org,2002:"


def _field(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Doc:
    """The plain data of one document, with the line of every value and key."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.value_line: dict[Path, int] = {}
        self.key_line: dict[Path, int] = {}
        self.issues: list[StationIssue] = []
        self.nodes = 0
        self.node_path: dict[int, Path] = {}
        self.refused: set[str] = set()

    def issue(self, line: int, path: Path, message: str, *, refused: bool = False) -> None:
        """Record a problem; ``refused``: the value at ``path`` was dropped (None)."""
        self.issues.append(StationIssue(self.file, line, _field(path), message))
        if refused:
            self.refused.add(_field(path))

    def line(self, path: Path) -> int:
        """The line of the value at ``path``, or of its nearest ancestor."""
        while path not in self.value_line and path:
            path = path[:-1]
        return self.value_line.get(path, 1)

    def convert(self, node: yaml.Node, path: Path, stack: tuple[int, ...] = ()) -> Any:
        line = node.start_mark.line + 1
        self.value_line.setdefault(path, line)
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _TooLarge(line)
        if id(node) in stack:
            # The composer keeps no mark of the alias itself: report at the anchor.
            self.issues.append(StationIssue(
                self.file, line, _field(self.node_path[id(node)]),
                f"recursive alias: this anchored node contains an alias to itself "
                f"(at {_field(path)})"))
            self.refused.add(_field(path))
            return None
        self.node_path.setdefault(id(node), path)
        if len(stack) >= _MAX_DEPTH:
            self.issue(line, path, f"nested more than {_MAX_DEPTH} levels deep", refused=True)
            return None
        stack = stack + (id(node),)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path, line)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _TAG + "seq":
                self.issue(line, path, f"unsupported YAML tag {node.tag}", refused=True)
                return None
            return [self.convert(n, path + (i,), stack) for i, n in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        if node.tag != _TAG + "map":
            self.issue(line, path, f"unsupported YAML tag {node.tag}", refused=True)
            return None
        out: dict[str, Any] = {}
        merges = []
        for knode, vnode in node.value:
            kline = knode.start_mark.line + 1
            if knode.tag == _TAG + "merge":
                merges.append(vnode)   # after the explicit keys, so their lines win
                continue
            if not isinstance(knode, yaml.ScalarNode):
                self.issue(kline, path, "a key must be a plain name, not a list or mapping")
                continue
            key = knode.value
            if key in out:
                self.issue(kline, path + (key,),
                           f"duplicate key (first at line {self.key_line[path + (key,)]})")
                continue
            # setdefault: a merged mapping converted at this path keeps explicit lines.
            self.key_line.setdefault(path + (key,), kline)
            self.value_line.setdefault(path + (key,), vnode.start_mark.line + 1)
            out[key] = self.convert(vnode, path + (key,), stack)
        for vnode in merges:
            for key, value in self._merge(vnode, path, stack).items():
                out.setdefault(key, value)
        return out

    def _merge(self, vnode: yaml.Node, path: Path, stack: tuple[int, ...]) -> dict[str, Any]:
        """YAML's ``<<: *defaults`` (or a list of them; the first one wins a key)."""
        sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
        out: dict[str, Any] = {}
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                self.issue(src.start_mark.line + 1, path,
                           "<< merges a mapping (or a list of mappings) only")
                continue
            data = self.convert(src, path, stack)
            for key, value in (data or {}).items():
                out.setdefault(key, value)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: Path, line: int) -> Any:
        tag, text = node.tag, node.value
        if tag == _TAG + "str":
            return text
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "bool":
            low = text.lower()
            if low in ("true", "false"):
                return low == "true"
        elif tag == _TAG + "int":
            try:
                base = 0 if text[:2].lower() in ("0x", "0o") else 10
                return int(text.replace("_", "") if base == 0 else text, base)
            except ValueError:
                pass
        elif tag == _TAG + "float":
            try:
                value = float(text.replace(".inf", "inf").replace(".Inf", "inf")
                              .replace(".INF", "inf").replace(".nan", "nan")
                              .replace(".NaN", "nan").replace(".NAN", "nan"))
            except ValueError:
                pass
            else:
                if math.isfinite(value):
                    return value
                self.issue(line, path, f"expected a finite number, got {text}", refused=True)
                return None
        else:
            self.issue(line, path, f"unsupported YAML tag {tag}", refused=True)
            return None
        self.issue(line, path, f"{text!r} is not a valid {tag[len(_TAG):]}", refused=True)
        return None


class _TooLarge(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


_FAILED = object()


def _compose(text: str, doc: _Doc) -> Any:
    """The document's plain data, or _FAILED (with doc.issues saying why)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(s for s in (e.context, e.problem) if s)
        doc.issues.append(StationIssue(doc.file, mark.line + 1 if mark else 0, "",
                                       f"not valid YAML: {what}"))
        return _FAILED
    except yaml.reader.ReaderError as e:   # a character YAML does not allow
        line = text[:e.position].count("\n") + 1
        doc.issues.append(StationIssue(doc.file, line, "", f"not valid YAML: character "
                                       f"#x{e.character:04x} is not allowed ({e.reason})"
                                       if isinstance(e.character, int) else
                                       f"not valid YAML: {e.reason}"))
        return _FAILED
    except yaml.YAMLError as e:
        doc.issues.append(StationIssue(doc.file, 0, "", "not valid YAML: " + " ".join(
            str(e).split())))
        return _FAILED
    except RecursionError:
        doc.issues.append(StationIssue(doc.file, 0, "", "not a station file: nested too deeply"))
        return _FAILED
    if node is None:
        doc.issues.append(StationIssue(doc.file, 1, "", "empty file: a station file needs "
                                       "version, station and slots"))
        return _FAILED
    try:
        return doc.convert(node, ())
    except _TooLarge as e:
        doc.issues.append(StationIssue(doc.file, e.line, "",
                                       f"too large: aliases expand to more than "
                                       f"{_MAX_NODES} values"))
    except RecursionError:
        doc.issues.append(StationIssue(doc.file, 0, "", "not a station file: nested too deeply"))
    return _FAILED


# --- pass 2: the schema --------------------------------------------------------------

_schema_cache: dict[str, Any] = {}


def schema_path() -> str:
    """Where the shipped JSON Schema is (for an editor's settings)."""
    return str(resources.files("fotabench") / "schemas" / f"station-{FORMAT_VERSION}.schema.json")


def schema() -> dict[str, Any]:
    """The station file's JSON Schema (Draft 2020-12), as shipped in the package."""
    if "schema" not in _schema_cache:
        with open(schema_path(), encoding="utf-8") as f:
            _schema_cache["schema"] = json.load(f)
    result: dict[str, Any] = _schema_cache["schema"]
    return result


def _validator() -> jsonschema.Draft202012Validator:
    if "validator" not in _schema_cache:
        _schema_cache["validator"] = jsonschema.Draft202012Validator(schema())
    v: jsonschema.Draft202012Validator = _schema_cache["validator"]
    return v


_JSON_TYPE = {"object": dict, "array": list, "string": str, "boolean": bool,
              "null": type(None)}


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number"):
        if isinstance(value, bool):
            return False
        return isinstance(value, int) if name == "integer" else isinstance(value, (int, float))
    return isinstance(value, _JSON_TYPE.get(name, ()))


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def _resolved(sch: Any) -> dict[str, Any]:
    """A subschema with one level of ``$ref`` followed (ours are all #/$defs/x)."""
    if isinstance(sch, dict) and "$ref" in sch:
        ref = sch["$ref"]
        target = schema()["$defs"][ref.rsplit("/", 1)[1]]
        return {**target, **{k: v for k, v in sch.items() if k != "$ref"}}
    return sch if isinstance(sch, dict) else {}


def _schema_issues(doc: _Doc, err: jsonschema.ValidationError) -> Iterator[StationIssue]:
    path: Path = tuple(err.absolute_path)
    inst = err.instance
    sch = err.schema if isinstance(err.schema, dict) else {}
    v = err.validator
    expected: Any = err.validator_value
    if v == "additionalProperties" and isinstance(inst, dict):
        known = list(sch.get("properties", {}))
        patterns = list(sch.get("patternProperties", {}))
        for key in inst:
            if key in known or any(re.search(pat, key) for pat in patterns):
                continue
            guess = (difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                     or [k for k in known if k.lower() == key.lower()]
                     or [k for k in known if k.startswith(key) or key.startswith(k)])
            hint = (f"did you mean {guess[0]!r}?" if guess
                    else f"expected one of: {', '.join(known)}")
            yield StationIssue(doc.file, doc.key_line.get(path + (key,), doc.line(path)),
                               _field(path + (key,)), f"unknown key; {hint}")
        return
    if v == "required" and isinstance(inst, dict):
        for key in expected:
            if key not in inst:
                yield StationIssue(doc.file, doc.line(path), _field(path + (key,)),
                                   "missing (required)")
        return
    if v in ("anyOf", "oneOf"):
        # Report inside the branch of the value's own type (a mapping's typo, not
        # "matches none of three forms"), else the schema's one-line message.
        for i, branch in enumerate(expected):
            b = _resolved(branch)
            if "type" in b and _is_type(inst, b["type"]) and isinstance(inst, (dict, list)):
                subs = [e for e in (err.context or []) if e.relative_schema_path[0] == i]
                for sub in subs:
                    yield from _schema_issues(doc, sub)
                if subs:
                    return
    message = sch.get("errorMessage")
    if not message:
        if v == "type":
            kind = {"object": "a mapping", "array": "a list"}
            message = f"expected {kind.get(sch['type'], 'a ' + str(sch['type']))}"
        elif v == "enum":
            message = "expected one of " + ", ".join(str(x) for x in expected)
        elif v == "const":
            message = f"expected {expected}"
        else:
            message = err.message
    yield StationIssue(doc.file, doc.line(path), _field(path), f"{message}, got {_shown(inst)}")


# --- pass 3: what the schema cannot say ------------------------------------------------

@dataclass(frozen=True)
class FaultSpec:
    """A parsed fault of a virtual slot: ``where`` is "module" (the virtual module
    suffers it: power_cut, attach_fail, pdp_fail) or "server" (the package server
    injects it into this slot's download; ``server_fault`` is the
    ``fotabench.server.Fault``)."""
    text: str
    kind: str
    where: str
    params: dict[str, Any]
    server_fault: Any = None


def parse_fault(spec: str) -> FaultSpec:
    """``KIND[:key=value,...]``; raises ValueError with a one-line reason."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().replace("-", "_")
    if kind in MODULE_FAULTS:
        params: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            key, value = key.strip().replace("-", "_"), value.strip()
            if not eq:
                raise ValueError(f"fault {spec!r}: {item!r} is not key=value")
            if key not in MODULE_FAULTS[kind]:
                allowed = ", ".join(MODULE_FAULTS[kind]) or "no keys"
                raise ValueError(f"fault {spec!r}: unknown key {key!r} ({kind} takes {allowed})")
            if key == "mode":
                if value not in ("flip", "drop"):
                    raise ValueError(f"fault {spec!r}: mode must be flip or drop")
                params[key] = value
                continue
            try:
                if key == "at" and value.endswith("%"):
                    params["at_percent"] = float(value[:-1])
                    if not 0 <= params["at_percent"] <= 100:
                        raise ValueError("at must be within 0..100%")
                else:
                    params[key] = int(value)
                    if params[key] < (1 if key in ("times", "count") else 0):
                        raise ValueError(f"{key} must be "
                                         f"{'>= 1' if key in ('times', 'count') else '>= 0'}")
                    if key in ("first", "count") and params[key] > 1_000_000:
                        raise ValueError(f"{key} must be at most 1000000 (packets)")
            except ValueError as e:
                raise ValueError(f"fault {spec!r}: {key}: {e}") from None
        if kind == "power_cut" and "at" not in params and "at_percent" not in params:
            raise ValueError(f"fault {spec!r}: power_cut needs at=N% (of the download) "
                             "or at=BYTES")
        if kind == "line_fault" and ("mode" not in params or "first" not in params):
            raise ValueError(f"fault {spec!r}: line_fault needs mode=flip|drop and first=PACKET")
        return FaultSpec(spec, kind, "module", params)
    from ..server.faults import KINDS, Fault   # only files with faults pay for it
    if kind not in KINDS:
        known = sorted(set(KINDS) | set(MODULE_FAULTS))
        guess = difflib.get_close_matches(kind, known, n=1)
        hint = f"did you mean {guess[0]!r}?" if guess else f"one of {', '.join(known)}"
        raise ValueError(f"fault {spec!r}: unknown kind {kind!r}; {hint}")
    fault = Fault.parse(spec)
    params = {k: v for k, v in vars(fault).items() if k not in ("kind", "used")
              and v not in (None, 0, 0.0, False)}
    return FaultSpec(spec, fault.kind, "server", params, fault)


_RATE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(bit|kbit|mbit|b|kb|kib|mb|mib)(?:/s)?\s*",
                   re.IGNORECASE)
_BITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "b": 8, "kb": 8e3, "kib": 8192,
         "mb": 8e6, "mib": 8 * 1048576}


def parse_link_rate(value: Union[int, str]) -> Union[int, str]:
    """A virtual module's downlink rate as the board takes it: bits/s (int, >= 100)
    or "unlimited". Strings need a unit (``50kbit``, ``6kB``): a bare number in a
    string is refused rather than guessed as bits or bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        bps = value
    elif isinstance(value, str) and value.strip().lower() == "unlimited":
        return "unlimited"
    elif isinstance(value, str) and (m := _RATE.fullmatch(value)):
        bps = int(float(m.group(1)) * _BITS[m.group(2).lower()])
    else:
        raise ValueError(f"expected bits/s (an integer, 100 or more), a rate with a unit "
                         f"such as 50kbit, or unlimited, got {_shown(value)}")
    if bps < 100:
        raise ValueError(f"a link slower than 100 bit/s is not a link, got {_shown(value)}")
    return bps


def _chip_key(chip: str) -> str:
    return chip[len("/dev/"):] if chip.startswith("/dev/") else chip


def _port_key(port: str, base: str) -> str:
    path = os.path.join(base, port)
    # Two by-id links to one adapter are one port; only resolvable where it is plugged.
    return os.path.realpath(path) if os.path.exists(path) else os.path.normpath(path)


def _semantic(doc: _Doc, data: dict[str, Any], base: str) -> None:
    db = data.get("db")
    if isinstance(db, str) and "://" in db and not db.startswith(("postgresql://",
                                                                  "postgres://")):
        doc.issue(doc.line(("db",)), ("db",),
                  f"expected a SQLite file path or a postgresql:// DSN, got {_shown(db)}")
    server = data.get("server")
    if isinstance(server, dict):
        hp, fp = server.get("http_port"), server.get("ftp_port")
        if isinstance(hp, int) and hp and hp == fp:
            doc.issue(doc.line(("server", "ftp_port")), ("server", "ftp_port"),
                      f"port {fp} is already the http_port (line "
                      f"{doc.line(('server', 'http_port'))})")
    slots = data.get("slots")
    if not isinstance(slots, list):
        return
    names: dict[str, int] = {}
    ports: dict[str, tuple[int, str]] = {}
    lines: dict[tuple[str, Any], tuple[Path, str]] = {}
    for i, slot in enumerate(slots):
        if not isinstance(slot, dict):
            continue
        here: Path = ("slots", i)
        name = slot.get("name")
        label = f"slot {name!r}" if isinstance(name, str) else f"slots[{i}]"
        if isinstance(name, str):
            if name in names:
                doc.issue(doc.line(here + ("name",)), here + ("name",),
                          f"duplicate slot name {name!r} (first at line {names[name]})")
            else:
                names[name] = doc.line(here + ("name",))
        virtual = slot.get("virtual")
        if virtual is not None and virtual is not False:
            for key in ("port", "gpio_chip", "lines", "baud"):
                if key in slot:
                    doc.issue(doc.key_line.get(here + (key,), doc.line(here)), here + (key,),
                              f"a virtual slot has no {key} (its module's ptys and lines "
                              "are made at run time); remove it, or remove virtual")
            if isinstance(virtual, dict):
                _check_virtual(doc, virtual, here + ("virtual",))
            continue
        port = slot.get("port")
        if "port" not in slot:
            doc.issue(doc.line(here), here + ("port",),
                      f"{label} is real (no `virtual: true`) and needs a serial port")
        elif isinstance(port, str):
            key = _port_key(port, base)
            if key in ports:
                first_line, first = ports[key]
                doc.issue(doc.line(here + ("port",)), here + ("port",),
                          f"port {port} is already used by {first} (line {first_line})")
            else:
                ports[key] = (doc.line(here + ("port",)), label)
        wired = slot.get("lines")
        if isinstance(wired, dict) and wired and "gpio_chip" not in slot:
            doc.issue(doc.key_line.get(here + ("lines",), doc.line(here)), here + ("gpio_chip",),
                      f"{label} wires lines ({', '.join(wired)}) but names no gpio_chip")
        chip = slot.get("gpio_chip")
        if isinstance(wired, dict) and isinstance(chip, str):
            for role, spec in wired.items():
                offset = spec.get("line") if isinstance(spec, dict) else spec
                if isinstance(offset, bool) or not isinstance(offset, (int, str)):
                    continue
                lpath = here + ("lines", role) + (("line",) if isinstance(spec, dict) else ())
                key2 = (_chip_key(chip), offset)
                if key2 in lines:
                    first_path, first_label = lines[key2]
                    doc.issue(doc.line(lpath), lpath,
                              f"line {offset} of {chip} is already used by {first_label} "
                              f"as {first_path[-2] if first_path[-1] == 'line' else first_path[-1]} "
                              f"(line {doc.line(first_path)})")
                else:
                    lines[key2] = (lpath, label)


def _check_virtual(doc: _Doc, virtual: dict[str, Any], here: Path) -> None:
    rate = virtual.get("link_rate")
    if isinstance(rate, str):
        try:
            parse_link_rate(rate)
        except ValueError as e:
            doc.issue(doc.line(here + ("link_rate",)), here + ("link_rate",), str(e))
    faults = virtual.get("faults")
    if isinstance(faults, list):
        for j, spec in enumerate(faults):
            if isinstance(spec, str) and spec:
                try:
                    parse_fault(spec)
                except ValueError as e:
                    doc.issue(doc.line(here + ("faults", j)), here + ("faults", j), str(e))


# --- building the spec -----------------------------------------------------------------

def _timeouts(raw: Optional[dict[str, Any]], base: Timeouts) -> Timeouts:
    if not raw:
        return base
    fields = {k: float(v) for k, v in raw.items()}
    return Timeouts(**{**vars(base), **fields})


def _line(raw: Any) -> LineSpec:
    if isinstance(raw, dict):
        return LineSpec(raw["line"], bool(raw.get("active_low", False)))
    return LineSpec(raw)


def _resolve(path: Optional[str], base: str) -> Optional[str]:
    return None if path is None else os.path.normpath(os.path.join(base, path))


def _build(data: dict[str, Any], file: Optional[str], base: str) -> StationSpec:
    timeouts = _timeouts(data.get("timeouts"), Timeouts())
    power_after = data.get("power_after", "on")
    slots = []
    for raw in data["slots"]:
        virtual: Optional[VirtualSpec] = None
        v = raw.get("virtual")
        if v is True or isinstance(v, dict):
            opts = v if isinstance(v, dict) else {}
            rate = opts.get("link_rate")
            virtual = VirtualSpec(
                app=_resolve(opts.get("app"), base),
                boot_timing=opts.get("boot_timing", "real"),
                link_rate=None if rate is None else parse_link_rate(rate),
                latency_ms=opts.get("latency_ms"),
                faults=tuple(opts.get("faults", ())),
                blank=bool(opts.get("blank", False)),
                wired=bool(opts.get("wired", True)))
        slots.append(SlotSpec(
            name=raw["name"],
            model=raw.get("model", "M66"),
            port=raw.get("port"),
            baud=raw.get("baud", 115200),
            gpio_chip=raw.get("gpio_chip"),
            lines={role: _line(raw["lines"][role]) for role in LINE_ROLES
                   if role in raw.get("lines", {})},
            virtual=virtual,
            power_after=raw.get("power_after", power_after),
            timeouts=_timeouts(raw["timeouts"], timeouts) if raw.get("timeouts") else None,
            protocol=raw.get("protocol")))
    srv = data.get("server", {})
    db = data.get("db")
    if isinstance(db, str) and "://" not in db:
        db = _resolve(db, base)
    return StationSpec(
        name=data["station"],
        slots=tuple(slots),
        server=ServerSpec(**srv),
        timeouts=timeouts,
        protocol=data.get("protocol", "http"),
        db=db,
        path=file)


def check_station(text: str, file: str = "<station>", *,
                  base: Optional[str] = None) -> tuple[Optional[StationSpec],
                                                       list[StationIssue]]:
    """Every issue of a station file's text (empty when it is good) and, when there is
    none, its StationSpec. ``base`` is where relative paths (app, db) start: the file's
    directory (default: the current one)."""
    doc = _Doc(file)
    base = base if base is not None else os.getcwd()
    data = _compose(text, doc)
    if data is _FAILED:
        return None, sorted(doc.issues, key=lambda i: i.line)
    # A value the YAML pass refused is None from here on: what the later passes say
    # about that field would only repeat it.
    found, doc.issues = doc.issues, []
    for err in _validator().iter_errors(data):
        found.extend(i for i in _schema_issues(doc, err) if i.field not in doc.refused)
    if isinstance(data, dict):
        _semantic(doc, data, base)
    found.extend(i for i in doc.issues if i.field not in doc.refused)
    unique = list(dict.fromkeys(found))     # jsonschema may report one place twice
    if unique:
        return None, sorted(unique, key=lambda i: (i.line, i.field))
    return _build(data, None if file.startswith("<") else file, base), []


def load_station_text(text: str, file: str = "<station>", *,
                      base: Optional[str] = None) -> StationSpec:
    """A StationSpec from YAML text; StationError with every issue otherwise."""
    spec, issues = check_station(text, file, base=base)
    if issues or spec is None:
        raise StationError(issues)
    return spec


def load_station(path: Union[str, "os.PathLike[str]"]) -> StationSpec:
    """Read and validate a station file (see docs/stations.md). Raises StationError
    (a ValueError) naming the file, line and field of every problem."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise StationError([StationIssue(name, 0, "", f"cannot read: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise StationError([StationIssue(name, line, "", "not UTF-8 text")]) from None
    return load_station_text(text, name, base=os.path.dirname(os.path.abspath(name)))
