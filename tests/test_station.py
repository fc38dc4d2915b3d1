"""Station files (docs/stations.md): the examples load, every kind of mistake is reported
with its exact line and field, all at once, the loader never raises anything but
StationError on any text, and the shipped JSON Schema is a valid Draft 2020-12 schema
that agrees with the dataclasses."""
from __future__ import annotations

import json
import os
import textwrap
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import fotabench
from fotabench.bench import station
from fotabench.bench.config import (LINE_ROLES, LineSpec, ServerSpec, SlotSpec, Timeouts,
                                    VirtualSpec)
from fotabench.bench.station import (MODELS, StationError, check_station, load_station,
                                     load_station_text, parse_fault, parse_link_rate, schema,
                                     schema_path)

ROOT = Path(__file__).resolve().parent.parent
STATIONS = ROOT / "bench" / "stations"

HEAD = "version: 1\nstation: t\n"


def issues(body: str, head: str = HEAD) -> list[str]:
    """The issue lines of a station text (file name st.yaml); [] when it loads."""
    text = head + textwrap.dedent(body)
    spec, found = check_station(text, "st.yaml", base="/base")
    assert (spec is None) == bool(found)
    return [str(i) for i in found]


# --- the example stations ----------------------------------------------------------------

def test_virtual_8_example_loads():
    spec = load_station(STATIONS / "virtual-8.yaml")
    assert spec.name == "virtual-8"
    assert spec.path == str(STATIONS / "virtual-8.yaml")
    assert [s.name for s in spec.slots] == [f"v{i}" for i in range(1, 9)]
    assert all(s.virtual is not None and s.port is None for s in spec.slots)
    assert {s.model for s in spec.slots} == set(MODELS)        # every model at least once
    assert spec.server == ServerSpec(bind="127.0.0.1", http_port=0, ftp_port=0)
    assert spec.timeouts == Timeouts(boot=30.0, download_inactivity=150.0)
    v2, v5, v6 = spec.slot("v2").virtual, spec.slot("v5").virtual, spec.slot("v6").virtual
    assert v2 == VirtualSpec(link_rate=50_000, latency_ms=300)
    assert v5 is not None and v5.link_rate == 20_000
    assert v5.faults == ("stall:at=30%,seconds=200",)
    assert v6 is not None and v6.faults == ("power_cut:at=40%",)
    kinds = {parse_fault(f).kind for s in spec.slots if s.virtual for f in s.virtual.faults}
    assert kinds == {"corrupt", "drop", "stall", "power_cut"}    # the demo's four faults
    assert [s.protocol for s in spec.slots].count("ftp") == 2
    assert spec.slot("v8").power_after == "off" and spec.slot("v1").power_after == "on"
    assert spec.slot("v8").virtual == VirtualSpec(link_rate="unlimited")


def test_real_4_example_loads():
    spec = load_station(STATIONS / "real-4.yaml")
    assert spec.name == "line-3-eol" and len(spec.slots) == 4
    assert spec.db == str(STATIONS / "results" / "line-3.sqlite")  # relative to the file
    assert spec.server == ServerSpec(bind="0.0.0.0", advertise="fota.lab.example",
                                     http_port=8080, ftp_port=2121, user="bench",
                                     password="fota-2024")
    for s in spec.slots:
        assert s.virtual is None
        assert s.port is not None and s.port.startswith("/dev/serial/by-id/")
        assert s.gpio_chip == "/dev/gpiochip2"
        assert set(s.lines) == set(LINE_ROLES)
        assert s.power_after == ("on" if s.name == "s4" else "off")
    s1 = spec.slot("s1")
    assert s1.lines == {"PWRKEY": LineSpec(0), "VBAT": LineSpec(1),
                        "RESET": LineSpec(2, active_low=True), "WDI": LineSpec(3)}
    assert spec.slot("s4").lines["PWRKEY"] == LineSpec("SLOT4_PWRKEY", active_low=True)
    # A slot's timeouts override only the phases it names.
    assert spec.slot("s3").timeouts == Timeouts(boot=45.0, attach=120.0)
    assert spec.slot("s1").timeouts is None and spec.timeouts.attach == 120.0


def test_minimal_station_gets_the_defaults():
    spec = load_station_text(HEAD + "slots:\n  - name: a\n    virtual: true\n")
    assert spec.protocol == "http" and spec.db is None and spec.path is None
    assert spec.server == ServerSpec() and spec.timeouts == Timeouts()
    assert spec.slots == (SlotSpec(name="a", virtual=VirtualSpec()),)


def test_yaml_1_2_scalars_on_off_and_leading_zero():
    # PyYAML's YAML 1.1 would make `on`/`off` booleans and 010 octal 8.
    spec = load_station_text(HEAD + textwrap.dedent("""\
        power_after: off
        slots:
          - name: a
            port: /dev/ttyS0
            gpio_chip: gpiochip0
            lines: {PWRKEY: 010, WDI: 0x1f, RESET: yes}
            power_after: on
          - name: b
            virtual: {}
        """))
    assert spec.slot("a").power_after == "on" and spec.slot("b").power_after == "off"
    assert spec.slot("a").lines == {"PWRKEY": LineSpec(10), "WDI": LineSpec(31),
                                    "RESET": LineSpec("yes")}


def test_merge_keys_share_wiring():
    spec = load_station_text(HEAD + textwrap.dedent("""\
        slots:
          - &first
            name: a
            port: /dev/ttyS0
            gpio_chip: gpiochip0
            lines: {WDI: 1}
            timeouts: {boot: 5}
          - <<: *first
            name: b
            port: /dev/ttyS1
            lines: {WDI: 2}
        """))
    b = spec.slot("b")
    assert (b.port, b.gpio_chip, b.lines) == ("/dev/ttyS1", "gpiochip0", {"WDI": LineSpec(2)})
    assert b.timeouts == Timeouts(boot=5.0)


def test_relative_app_path_is_resolved_against_the_file(tmp_path):
    f = tmp_path / "st.yaml"
    f.write_text(HEAD + "db: postgresql://bench@db/fota\n"
                 "slots:\n  - name: a\n    virtual: {app: apps/v1.bin}\n")
    spec = load_station(f)
    assert spec.slot("a").virtual == VirtualSpec(app=str(tmp_path / "apps" / "v1.bin"))
    assert spec.db == "postgresql://bench@db/fota"


# --- every error class, with its line and field ------------------------------------------

REAL = "    port: /dev/ttyS0\n"

ERRORS = [
    # YAML itself
    ("syntax", "slots: [\n", HEAD,
     ["st.yaml:4: not valid YAML: while parsing a flow node expected the node content, "
      "but found '<stream end>'"]),
    ("duplicate key", "station: u\nslots:\n  - {name: a, virtual: true}\n", HEAD,
     ["st.yaml:3: station: duplicate key (first at line 2)"]),
    ("recursive alias", "slots: &s\n  - name: a\n    virtual: true\n  - *s\n", HEAD,
     ["st.yaml:3: slots: recursive alias: this anchored node contains an alias to itself "
      "(at slots[1])"]),
    ("unsupported tag", "slots: !!set {a}\n", HEAD,
     ["st.yaml:3: slots: unsupported YAML tag tag:yaml.org,2002:set"]),
    ("key not a scalar", "[a]: 1\nslots:\n  - {name: a, virtual: true}\n", HEAD,
     ["st.yaml:3: a key must be a plain name, not a list or mapping"]),
    ("not finite", "timeouts: {boot: .inf}\nslots:\n  - {name: a, virtual: true}\n", HEAD,
     ["st.yaml:3: timeouts.boot: expected a finite number, got .inf"]),
    # the shape
    ("top level not a mapping", "- a\n", "",
     ["st.yaml:1: expected a mapping, got a list"]),
    ("missing keys", "slots:\n  - {name: a, virtual: true}\n", "version: 1\n",
     ["st.yaml:1: station: missing (required)"]),
    ("wrong version", "version: 2\nstation: t\nslots: [{name: a, virtual: true}]\n", "",
     ["st.yaml:1: version: this fotabench reads station files of version 1, got 2"]),
    ("unknown top-level key", "protocl: ftp\nslots: [{name: a, virtual: true}]\n", HEAD,
     ["st.yaml:3: protocl: unknown key; did you mean 'protocol'?"]),
    ("unknown nested key", "slots:\n  - name: a\n    virtual: true\n    modle: M66\n", HEAD,
     ["st.yaml:6: slots[0].modle: unknown key; did you mean 'model'?"]),
    ("line role in lower case", "slots:\n  - name: a\n" + REAL +
     "    gpio_chip: c\n    lines:\n      wdi: 3\n", HEAD,
     ["st.yaml:8: slots[0].lines.wdi: unknown key; did you mean 'WDI'?"]),
    ("line offset not a number or a name", "slots:\n  - name: a\n" + REAL +
     "    gpio_chip: c\n    lines:\n      PWRKEY: 1\n      WDI: {line: 2.5}\n", HEAD,
     ["st.yaml:9: slots[0].lines.WDI.line: expected an integer offset (0 or more) or a "
      "line name, got 2.5"]),
    ("negative offset", "slots:\n  - name: a\n" + REAL +
     "    gpio_chip: c\n    lines: {RESET: -1}\n", HEAD,
     ["st.yaml:7: slots[0].lines.RESET: expected an integer offset (0 or more), a line "
      "name, or a mapping {line, active_low}, got -1"]),
    ("quoted number as a line", "slots:\n  - name: a\n" + REAL +
     "    gpio_chip: c\n    lines: {RESET: '7'}\n", HEAD,
     ["st.yaml:7: slots[0].lines.RESET: expected an integer offset (0 or more), a line "
      "name, or a mapping {line, active_low}, got '7'"]),
    ("active_low not a boolean", "slots:\n  - name: a\n" + REAL +
     "    gpio_chip: c\n    lines:\n      PWRKEY: {line: 3, active_low: yes}\n", HEAD,
     ["st.yaml:8: slots[0].lines.PWRKEY.active_low: expected true or false, got 'yes'"]),
    ("line mapping without line", "slots:\n  - name: a\n" + REAL +
     "    gpio_chip: c\n    lines:\n      PWRKEY: {active_low: true}\n", HEAD,
     ["st.yaml:8: slots[0].lines.PWRKEY.line: missing (required)"]),
    ("unknown model", "slots:\n  - name: a\n    model: M95\n    virtual: true\n", HEAD,
     ["st.yaml:5: slots[0].model: expected one of M66, MC60, MC60E, M26, MC20, got 'M95'"]),
    ("odd baud", "slots:\n  - name: a\n" + REAL + "    baud: 115201\n", HEAD,
     ["st.yaml:6: slots[0].baud: expected a baud rate the module's UART supports: 4800, "
      "9600, 19200, 38400, 57600, 115200, 230400 or 460800, got 115201"]),
    ("bad slot name", "slots:\n  - name: a b\n    virtual: true\n", HEAD,
     ["st.yaml:4: slots[0].name: expected a slot name of 1-32 letters, digits, '-', '_' or "
      "'.', starting with a letter or digit, got 'a b'"]),
    ("port out of range", "server: {http_port: 65536, ftp_port: -1}\n"
     "slots: [{name: a, virtual: true}]\n", HEAD,
     ["st.yaml:3: server.ftp_port: expected a TCP port number 0-65535 (0: any free port), "
      "got -1",
      "st.yaml:3: server.http_port: expected a TCP port number 0-65535 (0: any free port), "
      "got 65536"]),
    ("timeout not positive", "slots:\n  - name: a\n    virtual: true\n"
     "    timeouts:\n      reboot: 0\n", HEAD,
     ["st.yaml:7: slots[0].timeouts.reboot: expected a number of seconds greater than 0, "
      "got 0"]),
    ("bad protocol", "protocol: https\nslots: [{name: a, virtual: true}]\n", HEAD,
     ["st.yaml:3: protocol: expected one of http, ftp, got 'https'"]),
    ("power_after", "slots:\n  - name: a\n    virtual: true\n    power_after: true\n", HEAD,
     ["st.yaml:6: slots[0].power_after: expected one of on, off, got true"]),
    ("no slots", "slots: []\n", HEAD,
     ["st.yaml:3: slots: expected a list of slots (at least one), got a list"]),
    ("virtual not true or a mapping", "slots:\n  - name: a\n    virtual: yes\n", HEAD,
     ["st.yaml:5: slots[0].virtual: expected true, false, or a mapping of virtual module "
      "options, got 'yes'"]),
    ("unknown virtual option", "slots:\n  - name: a\n    virtual:\n      boot: fast\n", HEAD,
     ["st.yaml:6: slots[0].virtual.boot: unknown key; did you mean 'boot_timing'?"]),
    # what the schema cannot say
    ("duplicate slot names", "slots:\n  - {name: a, virtual: true}\n"
     "  - {name: b, virtual: true}\n  - {name: a, virtual: true}\n", HEAD,
     ["st.yaml:6: slots[2].name: duplicate slot name 'a' (first at line 4)"]),
    ("two slots on one port", "slots:\n  - name: a\n" + REAL + "  - name: b\n" + REAL,
     HEAD, ["st.yaml:7: slots[1].port: port /dev/ttyS0 is already used by slot 'a' (line 5)"]),
    ("a line used twice on one chip", "slots:\n  - name: a\n" + REAL +
     "    gpio_chip: /dev/gpiochip0\n    lines: {PWRKEY: 4, WDI: 5}\n"
     "  - name: b\n    port: /dev/ttyS1\n    gpio_chip: gpiochip0\n"
     "    lines:\n      WDI: {line: 4}\n", HEAD,
     ["st.yaml:12: slots[1].lines.WDI.line: line 4 of gpiochip0 is already used by slot 'a' "
      "as PWRKEY (line 7)"]),
    ("a line used twice in one slot", "slots:\n  - name: a\n" + REAL +
     "    gpio_chip: c\n    lines: {PWRKEY: X, VBAT: X}\n", HEAD,
     ["st.yaml:7: slots[0].lines.VBAT: line X of c is already used by slot 'a' as PWRKEY "
      "(line 7)"]),
    ("real slot without a port", "slots:\n  - name: a\n    model: M26\n", HEAD,
     ["st.yaml:4: slots[0].port: slot 'a' is real (no `virtual: true`) and needs a serial "
      "port"]),
    ("lines without a chip", "slots:\n  - name: a\n" + REAL + "    lines: {WDI: 1}\n", HEAD,
     ["st.yaml:6: slots[0].gpio_chip: slot 'a' wires lines (WDI) but names no gpio_chip"]),
    ("virtual slot with a port", "slots:\n  - name: a\n    virtual: true\n" + REAL, HEAD,
     ["st.yaml:6: slots[0].port: a virtual slot has no port (its module's ptys and lines "
      "are made at run time); remove it, or remove virtual"]),
    ("http and ftp on one port", "server: {http_port: 21, ftp_port: 21}\n"
     "slots: [{name: a, virtual: true}]\n", HEAD,
     ["st.yaml:3: server.ftp_port: port 21 is already the http_port (line 3)"]),
    ("db of another kind", "db: mysql://x/y\nslots: [{name: a, virtual: true}]\n", HEAD,
     ["st.yaml:3: db: expected a SQLite file path or a postgresql:// DSN, got 'mysql://x/y'"]),
    ("link rate without a unit", "slots:\n  - name: a\n    virtual: {link_rate: '50'}\n",
     HEAD, ["st.yaml:5: slots[0].virtual.link_rate: expected bits/s (an integer, 100 or "
            "more), a rate with a unit such as 50kbit, or unlimited, got '50'"]),
    ("link rate too slow", "slots:\n  - name: a\n    virtual: {link_rate: 5bit}\n", HEAD,
     ["st.yaml:5: slots[0].virtual.link_rate: a link slower than 100 bit/s is not a link, "
      "got '5bit'"]),
    ("fault of an unknown kind", "slots:\n  - name: a\n    virtual:\n      faults:\n"
     "        - drop:at=10%\n        - powercut:at=5%\n", HEAD,
     ["st.yaml:8: slots[0].virtual.faults[1]: fault 'powercut:at=5%': unknown kind "
      "'powercut'; did you mean 'power_cut'?"]),
    ("server fault with a bad value", "slots:\n  - name: a\n    virtual:\n"
     "      faults: [\"drop:at=150%\"]\n", HEAD,
     ["st.yaml:6: slots[0].virtual.faults[0]: fault 'drop:at=150%': at_percent must be "
      "within 0..100"]),
    ("module fault with an unknown key", "slots:\n  - name: a\n    virtual:\n"
     "      faults: [\"power_cut:at=10%,seconds=3\"]\n", HEAD,
     ["st.yaml:6: slots[0].virtual.faults[0]: fault 'power_cut:at=10%,seconds=3': unknown "
      "key 'seconds' (power_cut takes at, times)"]),
    ("power cut without a place", "slots:\n  - name: a\n    virtual:\n"
     "      faults: [power-cut]\n", HEAD,
     ["st.yaml:6: slots[0].virtual.faults[0]: fault 'power-cut': power_cut needs at=N% (of "
      "the download) or at=BYTES"]),
]


@pytest.mark.parametrize("name,body,head,expected", ERRORS, ids=[e[0] for e in ERRORS])
def test_error_names_file_line_and_field(name, body, head, expected):
    assert issues(body, head) == expected


def test_every_error_is_reported_at_once():
    found = issues("""\
        protocl: ftp
        slots:
          - name: a
            model: M67
          - name: a
            virtual: {faults: [nope]}
        """)
    assert found == [
        "st.yaml:3: protocl: unknown key; did you mean 'protocol'?",
        "st.yaml:5: slots[0].port: slot 'a' is real (no `virtual: true`) and needs a serial port",
        "st.yaml:6: slots[0].model: expected one of M66, MC60, MC60E, M26, MC20, got 'M67'",
        "st.yaml:7: slots[1].name: duplicate slot name 'a' (first at line 5)",
        "st.yaml:8: slots[1].virtual.faults[0]: fault 'nope': unknown kind 'nope'; one of "
        "attach_fail, chunked, corrupt, drop, line_fault, login_fail, pdp_fail, power_cut, redirect, "
        "refuse, size_lie, slow_accept, stall, status, throttle, truncate, wrong_length",
    ]


def test_two_by_id_links_to_one_adapter_are_one_port(tmp_path):
    tty = tmp_path / "ttyUSB0"
    tty.write_text("")
    for n in ("usb-A-port0", "usb-A-if00"):
        (tmp_path / n).symlink_to(tty)
    found = issues(f"slots:\n  - name: a\n    port: {tmp_path}/usb-A-port0\n"
                   f"  - name: b\n    port: {tmp_path}/usb-A-if00\n")
    assert found == [f"st.yaml:7: slots[1].port: port {tmp_path}/usb-A-if00 is already used "
                     "by slot 'a' (line 5)"]


def test_file_errors(tmp_path):
    with pytest.raises(StationError) as e:
        load_station(tmp_path / "none.yaml")
    assert str(e.value) == f"{tmp_path}/none.yaml: cannot read: No such file or directory"
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"version: 1\nstation: \xff\n")
    with pytest.raises(StationError) as e:
        load_station(bad)
    assert str(e.value) == f"{bad}:2: not UTF-8 text"
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(StationError) as e:
        load_station(empty)
    assert str(e.value) == f"{empty}:1: empty file: a station file needs version, station and slots"
    assert isinstance(e.value, ValueError)


def test_alias_bomb_is_refused_not_expanded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    found = issues("\n".join(lines) + "\n", head="")
    assert len(found) == 1 and "too large: aliases expand to more than 100000 values" in found[0]


def test_fault_and_rate_parsers():
    assert parse_fault("power-cut:at=40%").params == {"at_percent": 40.0}
    assert parse_fault("power_cut:at=1000,times=2").params == {"at": 1000, "times": 2}
    f = parse_fault("drop:at=50%,times=1")
    assert (f.where, f.kind, f.server_fault.at_percent, f.server_fault.times) == (
        "server", "drop", 50.0, 1)
    assert parse_fault("attach_fail").where == "module"
    assert parse_link_rate(57600) == 57600
    assert parse_link_rate("50kbit/s") == 50_000 and parse_link_rate("10kB") == 80_000
    assert parse_link_rate("Unlimited") == "unlimited"
    for bad in ("50", "fast", True, 99):
        with pytest.raises(ValueError):
            parse_link_rate(bad)


# --- fuzzing: any text, any YAML: a StationSpec or a StationError, nothing else ----------

def _assert_loader_contract(text: str) -> None:
    try:
        spec = load_station_text(text, "f.yaml")
    except StationError as e:
        assert e.issues, "a StationError names at least one issue"
        for i in e.issues:
            assert i.file == "f.yaml" and i.line >= 0
            assert "\n" not in str(i)
    else:
        assert spec.slots and all(isinstance(s, SlotSpec) for s in spec.slots)


@given(st.text(max_size=400))
def test_fuzz_any_text(text):
    _assert_loader_contract(text)


YAML_ATOMS = st.sampled_from([
    "version", "station", "slots", "name", "model", "port", "baud", "gpio_chip", "lines",
    "PWRKEY", "WDI", "line", "active_low", "virtual", "faults", "link_rate", "server",
    "http_port", "timeouts", "boot", "power_after", "protocol", "db", "drop:at=50%",
    "power_cut:at=40%", "M66", "on", "off", "&a", "*a", "<<", "!!str", "- ", ": ", "{", "}",
    "[", "]", ",", "\n", "\n  ", "\n    ", "'", '"', "#", "1", "-1", "1.5", "true", "null",
    "/dev/ttyS0", "0x10", "~", "|", ">"])


@given(st.lists(YAML_ATOMS, max_size=60).map("".join))
def test_fuzz_yaml_like_text(text):
    _assert_loader_contract(text)


def _values() -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.sampled_from(["M66", "MC20", "on", "off", "http", "x", "abc",
                                         "/dev/ttyS0", "gpiochip0", "drop:at=5%", "50kbit",
                                         "unlimited", "power_cut:at=10%"]))
    keys = st.sampled_from(["name", "model", "port", "baud", "gpio_chip", "lines", "PWRKEY",
                            "RESET", "VBAT", "WDI", "line", "active_low", "virtual", "faults",
                            "link_rate", "latency_ms", "app", "boot_timing", "timeouts",
                            "boot", "power_after", "protocol", "bind", "http_port", "typo"])
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


@given(st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 2, "1"]), "station": st.sampled_from(["s", "", 3]),
     "slots": st.lists(_values(), max_size=4)},
    optional={"server": _values(), "timeouts": _values(), "db": _values(),
              "protocol": _values(), "power_after": _values()}))
def test_fuzz_station_shaped_documents(doc):
    _assert_loader_contract(yaml.safe_dump(doc))


# --- the schema --------------------------------------------------------------------------

def test_schema_is_a_valid_draft_2020_12_schema():
    with open(schema_path(), encoding="utf-8") as f:
        shipped = json.load(f)
    assert shipped["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(shipped)   # against the metaschema
    assert shipped == schema()


def test_schema_agrees_with_the_dataclasses():
    s = schema()
    defs = s["$defs"]
    assert set(defs["timeouts"]["properties"]) == {f.name for f in fields(Timeouts)}
    assert set(defs["server"]["properties"]) == {f.name for f in fields(ServerSpec)}
    assert set(defs["slot"]["properties"]["lines"]["properties"]) == set(LINE_ROLES)
    slot_fields = {f.name for f in fields(SlotSpec)}
    assert set(defs["slot"]["properties"]) == slot_fields
    virtual = next(b for b in defs["virtual"]["anyOf"] if b["type"] == "object")
    assert set(virtual["properties"]) == {f.name for f in fields(VirtualSpec)}
    assert tuple(defs["slot"]["properties"]["model"]["enum"]) == MODELS
    # Every model the core has a profile for may be named in a station.
    # every named model of the C core (unnamed rows are addresses seen once)
    assert {m.name for m in fotabench.models() if m.name} <= set(MODELS)


def test_examples_validate_against_the_schema_alone():
    # What an editor with only the schema sees: no error in the shipped examples.
    validator = jsonschema.Draft202012Validator(schema())
    for f in ("virtual-8.yaml", "real-4.yaml"):
        data = yaml.load((STATIONS / f).read_text(), Loader=station._Loader)  # YAML 1.2
        assert list(validator.iter_errors(data)) == [], f


def test_schema_ships_with_the_package():
    assert Path(schema_path()).is_file()
    assert Path(schema_path()).parent.name == "schemas"


# --- the CLI -------------------------------------------------------------------------------

def test_cli_check_ok(cli):
    p = cli("station", "check", STATIONS / "virtual-8.yaml")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == (f"{STATIONS / 'virtual-8.yaml'}: station 'virtual-8': 8 slots "
                        "(0 real, 8 virtual), protocol http, server 127.0.0.1 (http any, ftp any)")
    assert lines[6] == "  v6  M26    virtual, real timing, faults power_cut:at=40%"
    assert len(lines) == 9 and p.stderr == ""


def test_cli_check_notes_unstable_port_names(cli, tmp_path):
    f = tmp_path / "st.yaml"
    f.write_text(HEAD + "slots:\n  - {name: a, port: /dev/ttyUSB0}\n")
    p = cli("station", "check", f)
    assert p.returncode == 0
    assert p.stdout.splitlines()[-1].startswith("note: slot 'a': /dev/ttyUSB0 may name "
                                                "another adapter")


def test_cli_check_errors_exit_2_with_every_line(cli, tmp_path):
    f = tmp_path / "station.yaml"
    f.write_text(HEAD + "slots:\n  - name: a\n    modle: M66\n  - name: a\n    virtual: true\n")
    p = cli("station", "check", f)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == [
        f"{f}:4: slots[0].port: slot 'a' is real (no `virtual: true`) and needs a serial port",
        f"{f}:5: slots[0].modle: unknown key; did you mean 'model'?",
        f"{f}:6: slots[1].name: duplicate slot name 'a' (first at line 4)",
        f"fotabench: {f}: 3 errors",
    ]


def test_cli_check_json(cli, tmp_path):
    p = cli("station", "check", "--json", STATIONS / "real-4.yaml")
    assert p.returncode == 0
    out = json.loads(p.stdout)
    assert out["ok"] is True and out["station"]["name"] == "line-3-eol"
    assert out["station"]["slots"][0]["lines"]["RESET"] == {"line": 2, "active_low": True}
    f = tmp_path / "st.yaml"
    f.write_text(HEAD + "slots: 3\n")
    p = cli("station", "check", "--json", f)
    assert p.returncode == 2
    assert json.loads(p.stdout) == {"ok": False, "file": str(f), "errors": [
        {"file": str(f), "line": 3, "field": "slots",
         "message": "expected a list of slots (at least one), got 3"}]}


def test_cli_check_missing_file(cli, tmp_path):
    p = cli("station", "check", tmp_path / "nope.yaml")
    assert p.returncode == 2
    assert p.stderr.splitlines()[0] == (f"{tmp_path}/nope.yaml: cannot read: "
                                        "No such file or directory")


def test_cli_schema(cli):
    p = cli("station", "schema", "--path")
    assert p.returncode == 0 and os.path.samefile(p.stdout.strip(), schema_path())
    p = cli("station", "schema")
    assert json.loads(p.stdout) == schema()


def test_merged_keys_report_explicit_lines_first():
    # The explicit key given before the merge keeps its own line in an error; x- keys
    # at the top are a place for anchors, anything else unknown is an error.
    found = issues("""\
        x-defaults: &d
          model: M66
          baud: 9600
        defaults: 1
        slots:
          - baud: 115201
            <<: *d
            name: a
            port: /dev/ttyS0
        """)
    assert found == [
        "st.yaml:6: defaults: unknown key; expected one of: version, station, protocol, db, "
        "power_after, server, timeouts, slots",
        "st.yaml:8: slots[0].baud: expected a baud rate the module's UART supports: 4800, "
        "9600, 19200, 38400, 57600, 115200, 230400 or 460800, got 115201"]
