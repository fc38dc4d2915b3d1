"""The operator's screen in a real browser (headless Chromium over tests/cdp.py): scan an
IMEI into the field + Enter, watch the tile go through the phases to PASS, a fault slot
to FAIL with its reason; a double click runs once, a scan with every slot busy is
refused on the page, a reopened page shows the run in progress, a station that goes
away shows disconnected and comes back by itself. Screenshots go to the test's tmp dir
and build/screenshots/ (for people).
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from cdp import Chromium, chromium_binary
from records_helpers import imei_for
from screen_helpers import FakeBench, ServerThread, write_station

from fotabench.screen import Screen

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90.0


@pytest.fixture
def binary() -> str:
    b = chromium_binary()
    if b is None:
        pytest.skip("chromium is not installed (apt-get install chromium; make test-deps)")
    return b


def _until(c: Chromium, expr: str, what: str, timeout: float = TIMEOUT) -> Any:
    """Evaluate ``expr`` in the page until it is truthy (the test watching the page; the
    page itself never polls)."""
    deadline = time.monotonic() + timeout
    while True:
        v = c.evaluate(expr)
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; page says: "
                                 f"{c.evaluate('document.body.innerText')!r}")
        time.sleep(0.05)


def _tile(slot: str, part: str) -> str:
    return f"document.querySelector('#tile-{slot} .{part}').textContent"


def _scan(c: Chromium, code: str) -> None:
    """What a barcode scanner does: type the code into the focused field, press Enter."""
    c.evaluate("document.getElementById('scan').focus()")
    c.send("Input.insertText", {"text": code})
    for kind in ("keyDown", "keyUp"):
        c.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                          "windowsVirtualKeyCode": 13, "text": "\r"})


def _type_keys(c: Chromium, code: str) -> None:
    """A scanner as a keyboard: a key event per character, then Enter, wherever the
    focus is."""
    for ch in code:
        c.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": ch, "text": ch})
        c.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": ch})
    for kind in ("keyDown", "keyUp"):
        c.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                          "windowsVirtualKeyCode": 13, "text": "\r"})


def _click(c: Chromium, selector: str, clicks: int = 1) -> None:
    """A real mouse click (``clicks`` 2: a double click) on the element's centre. The
    layout can move between measuring and pressing (the notice banner shown or hidden
    above the tiles, a tile row growing as a neighbour's upgrade shows its bar): the
    element's own click event says whether the press landed; if it did not, measure
    again and press again (the page disables a start button on its first click, so a
    landed click is never repeated)."""
    el = f"document.querySelector({selector!r})"
    c.evaluate(f"""(() => {{ const e = {el};
        if (!e.__clicks_seen) {{ e.__clicks_seen = true; e.__clicks = 0;
                                 e.addEventListener('click', () => {{ e.__clicks += 1; }}); }}
    }})()""")
    before = c.evaluate(f"{el}.__clicks")
    for _ in range(10):
        box = c.evaluate(f"(() => {{ const r = {el}.getBoundingClientRect(); "
                         "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        x, y = box
        for n in range(1, clicks + 1):   # a double click: press/release twice, clickCount 1, 2
            for kind in ("mousePressed", "mouseReleased"):
                c.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                    "button": "left", "clickCount": n})
        # Input.dispatchMouseEvent answers once the page has handled the event; a short
        # look more in case the click's handlers run just after.
        deadline = time.monotonic() + 0.5
        while True:
            if c.evaluate(f"{el}.__clicks") > before:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    raise AssertionError(f"{selector}: no click landed in 10 tries (disabled? covered?)")


def _keep(shot: Path, name: str) -> None:
    keep = ROOT / "build" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / name)


#: The phases as the page words them, in the order an upgrade goes through them.
PHASES = ["Opening the slot", "Packaging", "Power", "Booting", "Identifying", "Attaching",
          "Serving", "Triggering", "Downloading", "Rebooting", "Verifying"]


def _record_states(c: Chromium, slot: str) -> None:
    """Every text the slot's status line takes, kept by the page (a MutationObserver),
    so no short phase is missed between two looks."""
    c.evaluate(f"""(() => {{
        const el = document.querySelector('#tile-{slot} .status');
        const seen = window.__seen_{slot} = [];
        const note = () => {{ const t = el.textContent;
                              if (t && seen[seen.length - 1] !== t) seen.push(t); }};
        new MutationObserver(note).observe(el, {{childList: true, characterData: true,
                                                 subtree: true}});
        note();
    }})()""")


def _states(c: Chromium, slot: str) -> list[str]:
    return list(c.evaluate(f"window.__seen_{slot}"))


def _in_order(seen: list[str]) -> list[str]:
    phases = [s for s in seen if s in PHASES]
    assert phases == sorted(phases, key=PHASES.index), seen
    return phases


def test_scan_start_pass_and_a_fault_slot_fails(binary: str, tmp_path: Path) -> None:
    bench = FakeBench(write_station(tmp_path), str(tmp_path / "results.sqlite"), step_s=0.12)
    screen = Screen(bench, "agent_v2.bin", db=bench.db)
    srv = ServerThread(screen).start()
    imei = imei_for(11)
    try:
        with Chromium(binary) as c:
            c.open(srv.url + "/", width=1600, height=1000)
            _until(c, "document.body.dataset.connected === '1'", "the page to connect")
            assert c.evaluate("document.querySelectorAll('.tile').length") == 3
            assert c.evaluate(_tile("s1", "status")) == "Ready"
            _record_states(c, "s1")
            _scan(c, imei)
            _until(c, "document.getElementById('tile-s1').dataset.running === '1'",
                   "s1 to start from the scan")
            assert c.evaluate("document.getElementById('scan').value") == ""
            # The notice comes with the scan's answer, which may arrive after the slot's
            # first push: wait for it, not assume it.
            _until(c, f"document.getElementById('notice').textContent.includes('{imei}')",
                   "the notice that the scan started s1")
            _click(c, "#tile-s3 .start")
            running_shot = tmp_path / "screen-running.png"
            _until(c, "document.getElementById('tile-s1').querySelector('.bar-text')"
                      ".textContent.includes('%')", "s1's download")
            c.screenshot(running_shot)
            _until(c, "document.getElementById('tile-s1').dataset.outcome", "s1's result")
            # The tile went through the upgrade's phases, in order.
            phases = _in_order(_states(c, "s1"))
            assert {"Identifying", "Downloading", "Verifying"} <= set(phases), phases
            assert c.evaluate("document.getElementById('tile-s1').dataset.outcome") == "pass"
            assert c.evaluate(_tile("s1", "result")) == "PASS"
            assert imei in c.evaluate(_tile("s1", "ident"))
            assert "1.0.0 → 2.0.0" in c.evaluate(_tile("s1", "ident"))
            _until(c, "document.getElementById('tile-s3').dataset.outcome", "s3's result")
            assert c.evaluate("document.getElementById('tile-s3').dataset.outcome") == "fail"
            assert c.evaluate(_tile("s3", "result")) == "FAIL"
            assert "45 %" in c.evaluate(_tile("s3", "reason"))
            assert c.evaluate(_tile("s2", "status")) == "Ready"
            _until(c, "document.getElementById('y-tested').textContent === '2'", "the yield")
            assert c.evaluate("document.getElementById('y-passed').textContent") == "1"
            assert c.evaluate("document.getElementById('y-yield').textContent") == "50.0 %"
            assert c.evaluate("document.querySelectorAll('#last tbody tr').length") == 2
            # Big enough to read from two metres: the verdict's type is large.
            px = c.evaluate("parseFloat(getComputedStyle(document.querySelector("
                            "'#tile-s1 .result')).fontSize)")
            assert px >= 64
            shot = tmp_path / "screen-results.png"
            c.screenshot(shot)
            # A label scanned for one module, another module in the slot: said on the tile
            # (s1 is the first free slot again: a finished slot is free).
            assert c.evaluate("document.querySelector('#tile-s1 .mismatch').hidden") is True
            bench.wrong_module = True
            # The focus elsewhere (someone clicked the page): the scanner's keys still land
            # in the scan field.
            c.evaluate("document.activeElement.blur()")
            assert c.evaluate("document.activeElement.id") != "scan"
            _type_keys(c, imei_for(12))
            _until(c, "!document.querySelector('#tile-s1 .mismatch').hidden",
                   "the IMEI mismatch warning")
            assert imei_for(12) in c.evaluate(_tile("s1", "mismatch"))
            _until(c, "document.getElementById('tile-s1').dataset.outcome", "s1's result")
            c.screenshot(tmp_path / "screen-mismatch.png")
            assert c.console_errors() == []
            assert all(u.startswith(srv.url) for u in c.requested_urls()), c.requested_urls()
        assert bench.started == [("s1", imei), ("s3", None), ("s1", imei_for(12))]
        _keep(shot, "screen.png")
        _keep(tmp_path / "screen-running.png", "screen-running.png")
    finally:
        srv.stop()


def test_busy_double_click_reopen_and_the_station_going_away(binary: str,
                                                             tmp_path: Path) -> None:
    # Held before the download: every slot, the fault slot too, stays busy until
    # released, however slow the machine.
    bench = FakeBench(write_station(tmp_path), str(tmp_path / "results.sqlite"),
                      step_s=0.03, hold=True, hold_at=0)
    screen = Screen(bench, "agent_v2.bin", db=bench.db)
    srv = ServerThread(screen).start()
    try:
        with Chromium(binary) as c:
            c.open(srv.url + "/?lang=de", width=1600, height=1000)
            _until(c, "document.body.dataset.connected === '1'", "the page to connect")
            assert c.evaluate("document.documentElement.lang") == "de"
            # A double click on start: one run.
            _click(c, "#tile-s1 .start", clicks=2)
            _until(c, "document.getElementById('tile-s1').dataset.running === '1'",
                   "s1 to run")
            assert [s for s, _ in bench.started] == ["s1"]
            _click(c, "#start-all")
            _until(c, "document.querySelectorAll('.tile.running').length === 3",
                   "every slot to run")
            assert sorted(s for s, _ in bench.started) == ["s1", "s2", "s3"]
            # A scan with every slot busy: refused, and the page says so.
            _scan(c, "SN-0077")
            _until(c, "!document.getElementById('notice').hidden && document.getElementById"
                      "('notice').textContent.includes('NICHT')", "the refusal")
            assert "SN-0077" in c.evaluate("document.getElementById('notice').textContent")
            assert len(bench.started) == 3
            c.screenshot(tmp_path / "screen-refused.png")
            _until(c, "document.querySelector('#tile-s1 .status').textContent === "
                      "'Herunterladen'", "s1 held in its download")
        # The browser closed and opened again mid-run: the tiles show the present.
        with Chromium(binary) as c:
            c.open(srv.url + "/", width=1600, height=1000)
            _until(c, "document.body.dataset.connected === '1'", "the reopened page")
            assert c.evaluate("document.querySelectorAll('.tile.running').length") == 3
            assert c.evaluate(_tile("s1", "status")) == "Downloading"
            assert "SN-0077" not in c.evaluate("document.body.innerText")
            assert c.evaluate("document.getElementById('tile-s1').querySelector('.start')"
                              ".disabled") is True
            # The station goes away: the page says disconnected ...
            srv.stop()
            _until(c, "!document.getElementById('disconnected').hidden",
                   "the disconnected banner")
            assert c.evaluate("document.body.dataset.connected") == ""
            c.screenshot(tmp_path / "screen-disconnected.png")
            # ... and comes back by itself when the station is back; the run finished
            # meanwhile shows its result.
            bench.release()
            deadline = time.monotonic() + TIMEOUT
            while any(bench.busy(s) for s in ("s1", "s2", "s3")):
                assert time.monotonic() < deadline, "the held runs did not finish"
                time.sleep(0.05)
            srv.start()
            _until(c, "document.body.dataset.connected === '1'", "the page to reconnect")
            assert c.evaluate("document.getElementById('disconnected').hidden") is True
            _until(c, "document.querySelectorAll('.tile.pass').length === 2 && "
                      "document.querySelectorAll('.tile.fail').length === 1",
                   "the results after the reconnect")
            # The only errors: the reconnects refused while the station was away.
            assert all("ERR_CONNECTION_REFUSED" in e for e in c.console_errors()), \
                c.console_errors()
        _keep(tmp_path / "screen-refused.png", "screen-refused.png")
        _keep(tmp_path / "screen-disconnected.png", "screen-disconnected.png")
    finally:
        bench.release()
        srv.stop()


REAL_STATION = """\
version: 1
station: screen-real
server: {bind: 127.0.0.1, http_port: 0, ftp_port: 0}
timeouts: {boot: 30, attach: 30, command: 10, download_inactivity: 40,
           download_total: 180, reboot: 40}
slots:
  - name: ok
    model: M66
    virtual: {boot_timing: fast}
  - name: bad
    model: M66
    virtual:
      boot_timing: fast
      faults: ["corrupt:at=1000"]   # one byte inverted in flight: error [server]
"""


def test_a_real_bench_of_virtual_modules(binary: str, tmp_path: Path) -> None:
    """The same screen on fotabench.Bench with two virtual modules (fast timing): a scan
    starts the good slot, which goes through the phases to PASS on version 2.0.0; the
    slot whose package is corrupted in flight ends ERROR (the server's doing) with its
    reason; both records in the database and today's yield on the page."""
    from fotabench.bench import run
    from fotabench.bench.dut import bundled_agent
    from fotabench.records import open_database
    from fotabench.sim import sim_binary
    if not sim_binary().exists():
        pytest.skip("board program not built (make build)")
    st_file = tmp_path / "station.yaml"
    st_file.write_text(REAL_STATION)
    db = str(tmp_path / "results.sqlite")
    package = bundled_agent("2.0.0", "M66")
    with run.Bench(str(st_file), out_dir=tmp_path / "runs", db=db) as bench:
        screen = Screen(bench, str(package), db=db)
        srv = ServerThread(screen).start()
        try:
            with Chromium(binary) as c:
                c.open(srv.url + "/", width=1400, height=1000)
                _until(c, "document.body.dataset.connected === '1'", "the page to connect")
                _record_states(c, "ok")
                _scan(c, "SN-LINE1-0001")
                _until(c, "document.getElementById('tile-ok').dataset.running === '1'",
                       "the scan to start slot ok")
                # The page disables start buttons while a start is being answered: a
                # click then is lost (it was, under the ASan pass's slowness).
                _until(c, "!document.querySelector('#tile-bad .start').disabled",
                       "slot bad's start button")
                _click(c, "#tile-bad .start")
                _until(c, "document.getElementById('tile-bad').dataset.running === '1' || "
                          "document.getElementById('tile-bad').dataset.outcome",
                       "the click to start slot bad")
                _until(c, "document.getElementById('tile-ok').dataset.outcome",
                       "slot ok's result")
                phases = _in_order(_states(c, "ok"))
                assert {"Downloading", "Rebooting", "Verifying"} <= set(phases), phases
                assert c.evaluate("document.getElementById('tile-ok').dataset.outcome") == \
                    "pass", c.evaluate(_tile("ok", "reason"))
                ident = c.evaluate(_tile("ok", "ident"))
                assert "SN-LINE1-0001" in ident and "→ 2.0.0" in ident
                assert re.search(r"IMEI \d{15}", ident)
                _until(c, "document.getElementById('tile-bad').dataset.outcome",
                       "the bad slot's result")
                # A byte corrupted in flight is the server's doing: ERROR, not FAIL
                # (docs/bench.md, pass/fail/error by evidence), and the tile says why.
                assert c.evaluate("document.getElementById('tile-bad').dataset.outcome") \
                    == "error", c.evaluate(_tile("bad", "reason"))
                assert c.evaluate(_tile("bad", "result")) == "ERROR"
                assert "corrupt" in c.evaluate(_tile("bad", "reason"))
                _until(c, "document.getElementById('y-tested').textContent === '2'",
                       "today's yield")
                assert c.evaluate("document.getElementById('y-passed').textContent") == "1"
                shot = tmp_path / "screen-real.png"
                c.screenshot(shot)
                assert c.console_errors() == []
            _keep(shot, "screen-real.png")
        finally:
            srv.stop()
            screen.close()
    with open_database(db) as d:
        got = {(r["slot"], r["outcome"]) for r in d.find()}
    assert got == {("ok", "pass"), ("bad", "error")}


def test_with_a_token_the_page_works_after_opening_it_once(binary: str,
                                                           tmp_path: Path) -> None:
    """The token in the address once: the cookie carries it for the page, its event
    stream and its POSTs; without it the server says 401."""
    bench = FakeBench(write_station(tmp_path), str(tmp_path / "results.sqlite"), step_s=0.01)
    token = "line1-token-8c1f"
    screen = Screen(bench, "agent_v2.bin", db=bench.db, token=token)
    srv = ServerThread(screen).start()
    try:
        with Chromium(binary) as c:
            c.open(srv.url + "/", width=1200, height=800)
            statuses = [e["params"]["response"]["status"] for e in c.events
                        if e.get("method") == "Network.responseReceived"
                        and e["params"]["response"]["url"] == srv.url + "/"]
            assert statuses == [401]
            c.send("Page.navigate", {"url": f"{srv.url}/?token={token}&lang=de"})
            _until(c, "document.body.dataset && document.body.dataset.connected === '1'",
                   "the page to connect with its cookie")
            assert "token" not in c.evaluate("location.href")
            assert c.evaluate("document.documentElement.lang") == "de"
            _click(c, "#tile-s2 .start")
            _until(c, "document.getElementById('tile-s2').dataset.outcome === 'pass'",
                   "s2 to pass")
        assert bench.started == [("s2", None)]
    finally:
        srv.stop()
