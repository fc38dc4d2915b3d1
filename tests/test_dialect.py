"""Upgrade with a dialect that is not the bench agent's: a small fake module on a
pseudo-terminal pair speaks its own line protocol, downloads the package over a real
socket from the PackageServer (urllib), checks the MD5 it was given and "reboots"
announcing the version written in the first line of the file it fetched."""
from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import urllib.request

import pytest

from fotabench import Dialect, Dut, EventBus, Fault, PackageServer, StatePattern, Upgrade
from fotabench.bench.config import SlotSpec, Timeouts
from fotabench.bench.grammar import Grammar, Step
from fotabench.modem import Modem

# The fake app's protocol (lines end with LF only, unlike AT):
#   ver                  -> "ver <version>", "done"
#   fetch <url> <md5>    -> "accepted", "done"; then "dl connecting", "dl <p>%" ...,
#                           "dl verified", "rebooting", "*** fakeapp <new> up"
#                           or "dl error <why>"
#   anything else        -> "error unknown command", "done"


class FakeModule:
    """A thread on the module side of a pty. ``mode``: "good"; "same" (reboots into the
    old version); "backwards" (its percentages go down)."""

    def __init__(self, version="1.0.0", mode="good"):
        self.version = version
        self.mode = mode
        self.fd, bench = os.openpty()
        self.path = os.ttyname(bench)
        self._bench = bench          # kept open so the pty stays up until close()
        self.fetched: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _say(self, text):
        os.write(self.fd, text.encode() + b"\n")

    def _run(self):
        buf = b""
        while not self._stop.is_set():
            try:
                import select
                if not select.select([self.fd], [], [], 0.1)[0]:
                    continue
                buf += os.read(self.fd, 4096)
            except OSError:
                return
            while re.search(rb"[\r\n]", buf):
                raw, buf = re.split(rb"\r\n|\r|\n", buf, maxsplit=1)
                self._command(raw.decode().strip())

    def _command(self, line):
        if not line:
            return
        words = line.split()
        if words == ["ver"]:
            self._say(f"ver {self.version}")
        elif words[0] == "fetch" and len(words) == 3:
            self._say("accepted")
            threading.Thread(target=self._download, args=(words[1], words[2]),
                             daemon=True).start()
        else:
            self._say("error unknown command")
        self._say("done")

    def _download(self, url, md5):
        time.sleep(0.05)  # after "done" has gone out
        self._say("dl connecting")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                size = int(resp.headers["Content-Length"])
                data = b""
                step = 0
                while chunk := resp.read(4096):
                    data += chunk
                    pct = len(data) * 100 // size // 25 * 25
                    if pct > step:
                        step = pct
                        self._say(f"dl {pct if self.mode != 'backwards' else 100 - pct}%")
        except Exception as e:  # noqa: BLE001 - the fake reports it as a module would
            self._say(f"dl error {type(e).__name__}")
            return
        self.fetched.append(url)
        if hashlib.md5(data).hexdigest() != md5:
            self._say("dl error md5 mismatch")
            return
        self._say("dl verified")
        self._say("rebooting")
        time.sleep(0.2)
        if self.mode != "same":
            self.version = data.split(b"\n", 1)[0].split()[1].decode()
        self._say(f"*** fakeapp {self.version} up")

    def close(self):
        self._stop.set()
        self._thread.join(2)
        os.close(self.fd)
        os.close(self._bench)


PCT = frozenset(range(0, 101))
FAKE_GRAMMAR = Grammar("http", None, (
    Step("CONNECTING"),
    Step("DOWNLOADING", PCT, 0, None, rising=True),
    Step("VERIFIED", frozenset({100})),
    Step("REBOOT", frozenset({100})),
))

FAKE = Dialect(
    "fakeapp",
    states=(StatePattern(r"^dl connecting", "CONNECTING"),
            StatePattern(r"^dl (?P<percent>\d+)%", "DOWNLOADING"),
            StatePattern(r"^dl verified", "VERIFIED", 100),
            StatePattern(r"^rebooting", "REBOOT", 100),
            StatePattern(r"^dl error", "FAILED")),
    ready=r"^\*\*\* fakeapp (?P<version>\S+) up",
    version_command="ver", version_pattern=r"^ver (?P<version>\S+)",
    command_end="done",
    trigger="fetch {url} {md5}", trigger_ok=r"^accepted",
    success=("REBOOT",), failure=("FAILED",),
    grammar=lambda protocol, host_is_ip: FAKE_GRAMMAR,
)

T = Timeouts(boot=5, attach=5, command=5, download_inactivity=10, download_total=30,
             reboot=10)


@pytest.fixture
def firmware(tmp_path):
    p = tmp_path / "fake_fw.bin"
    p.write_bytes(b"FAKEAPP 2.0.0\n" + os.urandom(60_000))
    return p


def fake_dut(fake, from_slot=False):
    if from_slot:   # the real-slot path: a serial port by path, no GPIO lines
        return Dut.from_slot(SlotSpec("fake1", model=None, port=fake.path))
    return Dut(Modem(fake.path, name="fake1"), name="fake1", model=None)


def test_second_dialect_passes(firmware):
    fake = FakeModule()
    ev = EventBus()
    seen = []
    ev.subscribe(seen.append)
    try:
        with fake_dut(fake, from_slot=True) as dut:
            assert dut.kind == "real" and dut.lines == {} and fake.path in repr(dut)
            r = Upgrade(dut, firmware, dialect=FAKE, timeouts=T, events=ev).run()
    finally:
        fake.close()
    assert r.outcome == "pass", r.reason
    assert (r.version_before, r.version_after, r.dialect) == ("1.0.0", "2.0.0", "fakeapp")
    assert r.state_names[0] == "CONNECTING" and r.state_names[-1] == "REBOOT"
    assert [s.percent for s in r.states if s.state == "DOWNLOADING"] == [25, 50, 75, 100]
    assert r.grammar["ok"]
    # the fake fetched over a real socket from the bench's server, and all of it
    assert fake.fetched == [r.url] and r.url.startswith("http://127.0.0.1:")
    assert r.transfers[0]["outcome"] == "complete"
    assert r.transfers[0]["bytes_sent"] == firmware.stat().st_size == r.package_size
    assert r.package_md5 == hashlib.md5(firmware.read_bytes()).hexdigest()
    assert r.watchdog is None and "watchdog not watched" in repr(r)   # no WDI wired
    assert [e.state for e in seen if e.kind == "state"] == r.state_names


def test_second_dialect_wrong_version_and_bad_grammar_fail(firmware):
    for mode, check in (("same", "version"), ("backwards", "grammar")):
        fake = FakeModule(mode=mode)
        try:
            with fake_dut(fake) as dut:
                r = Upgrade(dut, firmware, dialect=FAKE, timeouts=T, events=EventBus()).run()
        finally:
            fake.close()
        assert r.outcome == "fail" and r.check == check, (mode, r.reason)
        if check == "grammar":
            assert "part from the grammar" in r.reason and "went down" in r.reason
            assert "<-- parts here" in r.reason


def test_second_dialect_injected_corruption_is_a_server_error(firmware):
    fake = FakeModule()
    try:
        with fake_dut(fake) as dut, PackageServer(ftp=None) as srv:
            srv.add_fault(Fault(kind="corrupt", at=1000, count=8))
            r = Upgrade(dut, firmware, dialect=FAKE, server=srv, timeouts=T,
                        events=EventBus()).run()
    finally:
        fake.close()
    assert r.outcome == "error" and r.cause == "server", r.reason
    assert r.states[-1].line == "dl error md5 mismatch"
    assert r.transfers[0]["faults"] == ["corrupt"]


def test_callable_trigger(firmware):
    fake = FakeModule()
    calls = []

    def trigger(dut, info):
        calls.append(info)
        r = dut.modem.command(f"fetch {info.url} {info.md5}", 5, terminator="done")
        assert "accepted" in r.lines

    try:
        with fake_dut(fake) as dut:
            dia = Dialect(**{**{f: getattr(FAKE, f) for f in (
                "name", "states", "ready", "version_command", "version_pattern",
                "command_end", "success", "failure", "grammar")}, "trigger": trigger})
            r = Upgrade(dut, firmware, dialect=dia, timeouts=T, events=EventBus()).run()
    finally:
        fake.close()
    assert r.outcome == "pass", r.reason
    assert len(calls) == 1 and calls[0].size == firmware.stat().st_size


# --- the agent dialect's line parsing, on any input ------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fotabench.bench.dialect import AGENT  # noqa: E402


@given(st.text(max_size=300))
@settings(max_examples=500, deadline=None)
def test_agent_dialect_parses_any_line(line):
    got = AGENT.parse_state(line)
    assert got is None or (line.startswith("+FBSTATE: ") and isinstance(got[1], int))
    ready = AGENT.parse_ready(line)
    assert ready is None or line.startswith('+FBREADY: "')


@given(st.sampled_from(["UP_START", "UP_GETTING_FILE", "UP_UPGRADFAILED"]),
       st.integers(-1000, 1000))
def test_agent_dialect_state_lines(state, pct):
    assert AGENT.parse_state(f"+FBSTATE: {state},{pct}") == (state, pct)
