"""The operator's screen at the HTTP level (docs/operator-screen.md): the API, the event
stream's snapshot-first rule, the token and CSRF guard, bad input, the CLI's refusals.
The browser's view is tests/test_screen_browser.py.
"""
from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():   # starlette 1.x suggests httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from fotabench.records import open_database
from fotabench.screen import (COOKIE, LANGUAGES, STATIC, Screen, ScreenError, check_code,
                              create_app, pick_language)

from records_helpers import imei_for
from screen_helpers import FakeBench, ServerThread, write_station

ACT = {"X-Fotabench-Action": "1"}
TIMEOUT = 60.0


@pytest.fixture
def bench(tmp_path: Path) -> FakeBench:
    return FakeBench(write_station(tmp_path), str(tmp_path / "results.sqlite"))


@pytest.fixture
def held(tmp_path: Path) -> FakeBench:
    return FakeBench(write_station(tmp_path), str(tmp_path / "results.sqlite"), hold=True)


def _screen(bench: FakeBench, **kw: Any) -> Screen:
    return Screen(bench, "agent_v2.bin", db=bench.db, **kw)


def _wait(cond: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _slot(screen: Screen, name: str) -> dict[str, Any]:
    return next(s for s in screen.snapshot()["slots"] if s["slot"] == name)


# --- the page and its languages ----------------------------------------------------

def test_page_is_english_by_default_german_by_header_or_query(bench: FakeBench) -> None:
    c = TestClient(create_app(_screen(bench)))
    en = c.get("/")
    assert en.status_code == 200 and 'lang="en"' in en.text and '"Start all"' in en.text
    de = c.get("/", headers={"Accept-Language": "fr-CH, de;q=0.9, en;q=0.8"})
    assert 'lang="de"' in de.text and '"Alle starten"' in de.text
    assert 'lang="de"' in c.get("/?lang=de").text
    assert 'lang="en"' in c.get("/?lang=xx", headers={"Accept-Language": "en"}).text
    assert c.get("/static/screen.js").status_code == 200
    assert c.get("/static/../__init__.py").status_code == 404


def test_every_language_file_has_every_english_key() -> None:
    i18n = STATIC.parent / "i18n"
    en = json.loads((i18n / "en.json").read_text())
    assert "de" in LANGUAGES and "en" in LANGUAGES
    for lang in LANGUAGES:
        other = json.loads((i18n / f"{lang}.json").read_text())
        assert set(other) == set(en), f"{lang}.json: keys differ from en.json"
    # Every key the page asks for exists (t("...") literals in screen.js).
    js = (STATIC / "screen.js").read_text()
    used = set(re.findall(r'\bt\("([a-z_.]+)"[,)]', js))
    assert used and used <= set(en), used - set(en)
    # Every phase the Upgrade publishes has its words.
    phases: set[str] = set()
    for src in (STATIC.parents[1] / "bench").glob("*.py"):
        phases |= set(re.findall(r'(?:_phase\(run, |phase=)"([a-z_]+)"', src.read_text()))
    assert "download" in phases and {f"phase.{p}" for p in phases} <= set(en), phases


def test_nothing_is_fetched_from_outside() -> None:
    for f in STATIC.iterdir():
        assert "://" not in f.read_text(), f"{f.name} names an outside address"  # data: is fine


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=20)), st.one_of(st.none(), st.text(max_size=80)))
def test_pick_language_never_fails(query: Any, accept: Any) -> None:
    assert pick_language(query, accept) in LANGUAGES


# --- scanned codes ------------------------------------------------------------------

def test_check_code() -> None:
    assert check_code("  " + imei_for(7) + "\n") == imei_for(7)
    assert check_code("MC60ECAR01A12-0042") == "MC60ECAR01A12-0042"
    bad_luhn = imei_for(7)[:-1] + str((int(imei_for(7)[-1]) + 1) % 10)
    with pytest.raises(ScreenError, match="check digit"):
        check_code(bad_luhn)
    for bad in ("", "a b", "<script>", "x" * 65, 12345, None, "../etc/passwd"):
        with pytest.raises(ScreenError):
            check_code(bad)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.integers(), st.none(), st.lists(st.integers())))
def test_check_code_accepts_only_label_text(code: Any) -> None:
    try:
        got = check_code(code)
    except ScreenError as e:
        assert e.status == 400
        return
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}", got)
    assert got == code.strip()


# --- actions --------------------------------------------------------------------------

def test_scan_starts_the_next_free_slot_and_the_result_reaches_the_database(
        bench: FakeBench) -> None:
    screen = _screen(bench)
    c = TestClient(create_app(screen))
    imei = imei_for(3)
    r = c.post("/api/scan", json={"code": imei}, headers=ACT)
    assert r.status_code == 200 and r.json() == {"slot": "s1", "serial": imei}
    r = c.post("/api/scan", json={"code": "SN-0002"}, headers=ACT)
    assert r.json()["slot"] == "s2"
    assert bench.started == [("s1", imei), ("s2", "SN-0002")]
    _wait(lambda: not _slot(screen, "s1")["running"] and not _slot(screen, "s2")["running"],
          "both slots to finish")
    s1 = _slot(screen, "s1")
    assert s1["outcome"] == "pass" and s1["serial"] == imei and s1["percent"] == 100
    assert s1["version_from"] == "1.0.0" and s1["version_to"] == "2.0.0"
    assert s1["gap_ms"] == pytest.approx(500.0)
    summary = c.get("/api/state").json()["summary"]
    assert summary["tested"] == 2 and summary["passed"] == 2
    assert {r["slot"] for r in summary["last"]} == {"s1", "s2"}
    with open_database(bench.db) as d:
        assert d.count() == 2


def test_fault_slot_fails_with_its_reason_and_the_result_stays(bench: FakeBench) -> None:
    screen = _screen(bench)
    c = TestClient(create_app(screen))
    assert c.post("/api/start", json={"slot": "s3"}, headers=ACT).status_code == 200
    _wait(lambda: not _slot(screen, "s3")["running"], "s3 to finish")
    s3 = _slot(screen, "s3")
    assert s3["outcome"] == "fail" and s3["reason"].startswith("download: ")
    assert "45 %" in s3["reason"]
    assert s3["percent"] == 45        # UP_UPGRADFAILED's 0 does not move the bar back
    # The result stays through later events of other slots ...
    c.post("/api/start", json={"slot": "s1"}, headers=ACT)
    _wait(lambda: not _slot(screen, "s1")["running"], "s1 to finish")
    assert _slot(screen, "s3")["outcome"] == "fail"
    # ... until the slot is started again.
    bench.hold = True
    c.post("/api/start", json={"slot": "s3"}, headers=ACT)
    assert _slot(screen, "s3")["outcome"] is None and _slot(screen, "s3")["reason"] == ""
    bench.release()
    _wait(lambda: not _slot(screen, "s3")["running"], "s3 to finish again")
    summary = screen.snapshot()["summary"]
    assert summary["fail"] == 2 and summary["pass"] == 1


def test_scan_while_every_slot_is_busy_is_refused_and_says_so(tmp_path: Path) -> None:
    # Held before the download: the fault slot too stays busy, however slow the machine.
    held = FakeBench(write_station(tmp_path), str(tmp_path / "results.sqlite"), hold=True,
                     hold_at=0)
    screen = _screen(held)
    c = TestClient(create_app(screen))
    assert c.post("/api/start", json={}, headers=ACT).json() == {
        "started": ["s1", "s2", "s3"], "busy": []}
    r = c.post("/api/scan", json={"code": "SN-9"}, headers=ACT)
    assert r.status_code == 409 and r.json()["code"] == "all_busy"
    assert "SN-9 not started" in r.json()["error"]
    assert len(held.started) == 3 and all(s != "SN-9" for _, s in held.started)
    # start all again: every slot busy, none started twice
    assert c.post("/api/start", json={}, headers=ACT).json() == {
        "started": [], "busy": ["s1", "s2", "s3"]}
    assert len(held.started) == 3
    # stop: every slot ends as an error "cancelled", and is free again
    assert c.post("/api/stop", json={}, headers=ACT).status_code == 200
    # Free again = the tiles show the end AND the bench's jobs are over: a job says its
    # outcome before it has written its record, and a scan in between is refused busy.
    _wait(lambda: all(not s["running"] for s in screen.snapshot()["slots"])
          and held.idle_slots() == ["s1", "s2", "s3"], "the stop")
    assert {(s["outcome"], s["reason"]) for s in screen.snapshot()["slots"]} == {
        ("error", "cancelled")}
    assert c.post("/api/scan", json={"code": "SN-9"}, headers=ACT).json()["slot"] == "s1"
    held.release()


def test_a_double_click_on_start_runs_once(held: FakeBench) -> None:
    screen = _screen(held)
    c = TestClient(create_app(screen))
    codes: list[int] = []
    barrier = threading.Barrier(4)

    def click() -> None:
        barrier.wait()
        codes.append(c.post("/api/start", json={"slot": "s2"}, headers=ACT).status_code)
    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert sorted(codes) == [200, 409, 409, 409]
    assert held.started == [("s2", None)]
    r = c.post("/api/start", json={"slot": "s2"}, headers=ACT)
    assert r.status_code == 409 and r.json()["code"] == "busy"
    held.release()
    _wait(lambda: not _slot(screen, "s2")["running"], "s2 to finish")
    assert held.started == [("s2", None)]


def test_bad_requests(bench: FakeBench) -> None:
    c = TestClient(create_app(_screen(bench)))
    for body, status in ((b"{", 400), (b"[1]", 400), (b"x" * 5000, 413)):
        r = c.post("/api/start", content=body, headers=ACT)
        assert r.status_code == status, body[:10]
        assert "error" in r.json()
    assert c.post("/api/start", json={"slot": "nope"}, headers=ACT).status_code == 404
    assert c.post("/api/start", json={"slot": ["s1"]}, headers=ACT).status_code == 400
    assert c.post("/api/scan", json={"code": "a b"}, headers=ACT).json()["code"] == "bad_code"
    # Only what the page offers: no package, path or command can be given.
    r = c.post("/api/start", json={"slot": "s1", "package": "/etc/passwd"}, headers=ACT)
    assert r.status_code == 200
    _wait(lambda: not bench.busy("s1"), "s1 to finish")
    assert bench.started == [("s1", None)]
    assert c.get("/api/start").status_code == 405


def test_no_package_refuses_a_start(bench: FakeBench) -> None:
    c = TestClient(create_app(Screen(bench, None, db=bench.db)))
    r = c.post("/api/start", json={"slot": "s1"}, headers=ACT)
    assert r.status_code == 409 and r.json()["code"] == "no_package"
    assert bench.started == []


# --- the guard: CSRF and the token --------------------------------------------------

def test_posts_need_the_page_header_and_the_same_origin(bench: FakeBench) -> None:
    c = TestClient(create_app(_screen(bench)))
    assert c.post("/api/start", json={"slot": "s1"}).status_code == 403
    r = c.post("/api/start", json={"slot": "s1"},
               headers={**ACT, "Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["code"] == "csrf"
    assert bench.started == []
    ok = c.post("/api/start", json={"slot": "s1"},
                headers={**ACT, "Origin": "http://testserver"})
    assert ok.status_code == 200 and bench.started == [("s1", None)]


def test_token_in_the_url_once_then_a_cookie_or_basic_auth(bench: FakeBench) -> None:
    token = "s3cret-token-42"
    c = TestClient(create_app(_screen(bench, token=token)))
    for path in ("/", "/api/state", "/events", "/static/screen.js"):
        assert c.get(path).status_code == 401, path
    assert c.post("/api/start", json={"slot": "s1"}, headers=ACT).status_code == 401
    assert c.get("/?token=wrong").status_code == 401
    r = c.get(f"/?lang=de&token={token}", follow_redirects=False)
    assert r.status_code == 303 and "token" not in r.headers["location"]
    assert r.headers["location"].endswith("/?lang=de")
    assert "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.cookies.get(COOKIE) == token
    assert c.get("/api/state").status_code == 200
    assert c.post("/api/start", json={"slot": "s1"}, headers=ACT).status_code == 200
    basic = TestClient(create_app(_screen(bench, token=token)))
    auth = {"Authorization": "Basic " + base64.b64encode(f"op:{token}".encode()).decode()}
    assert basic.get("/api/state", headers=auth).status_code == 200
    bad = {"Authorization": "Basic " + base64.b64encode(b"op:nope").decode()}
    assert basic.get("/api/state", headers=bad).status_code == 401
    garbage = {"Authorization": "Basic !!!"}
    assert basic.get("/api/state", headers=garbage).status_code == 401


# --- the event stream ------------------------------------------------------------------

def _sse(url: str, need: Any, timeout: float = TIMEOUT) -> list[tuple[str, Any]]:
    """Read server-sent events until ``need(events)`` is true; returns them."""
    got: list[tuple[str, Any]] = []
    with httpx.Client(timeout=timeout) as client:
        with client.stream("GET", url) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            deadline = time.monotonic() + timeout
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    got.append((str(kind), json.loads(line[6:])))
                    if need(got):
                        return got
                if time.monotonic() > deadline:
                    break
    raise AssertionError(f"the stream ended or timed out; got {[k for k, _ in got]}")


def test_a_page_that_connects_mid_run_gets_the_present_state_first(held: FakeBench) -> None:
    screen = _screen(held)
    srv = ServerThread(screen).start()
    try:
        c = httpx.Client(base_url=srv.url, timeout=TIMEOUT)
        assert c.post("/api/scan", json={"code": "SN-1"}, headers=ACT).status_code == 200
        _wait(lambda: (_slot(screen, "s1")["percent"] or 0) >= 45, "s1 in its download")
        # A browser opened now (or reopened): the first event is the snapshot, mid-run.
        got = _sse(srv.url + "/events", lambda g: len(g) >= 1)
        kind, snap = got[0]
        assert kind == "snapshot"
        s1 = next(s for s in snap["slots"] if s["slot"] == "s1")
        assert s1["running"] and s1["serial"] == "SN-1" and s1["phase"] == "download"
        assert s1["percent"] == 45 and s1["imei"]
        # Then pushes: released, the slot runs to PASS and the yield follows.
        def done(g: list[tuple[str, Any]]) -> bool:
            return any(k == "summary" and d["passed"] == 1 for k, d in g)
        t = threading.Timer(0.3, held.release)
        t.start()
        got = _sse(srv.url + "/events", done)
        slot_pushes = [d for k, d in got if k == "slot" and d["slot"] == "s1"]
        assert slot_pushes[-1]["outcome"] == "pass" and not slot_pushes[-1]["running"]
        seqs = [d["seq"] for d in slot_pushes]
        assert seqs == sorted(seqs)
    finally:
        held.release()
        srv.stop()


def test_closing_the_screen_ends_the_streams(bench: FakeBench) -> None:
    screen = _screen(bench)
    srv = ServerThread(screen).start()
    try:
        ended = threading.Event()

        def read() -> None:
            with httpx.Client(timeout=TIMEOUT) as client:
                with client.stream("GET", srv.url + "/events") as r:
                    for _ in r.iter_lines():
                        pass
            ended.set()
        t = threading.Thread(target=read, daemon=True)
        t.start()
        _wait(lambda: len(screen._clients) == 1, "the page to connect")
        screen.close()
        assert ended.wait(TIMEOUT), "the stream did not end when the screen closed"
        assert screen._clients == []
    finally:
        srv.stop()


# --- the command line ------------------------------------------------------------------

def _cli(*args: str, env: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fotabench", "station", "serve", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_cli_refuses_the_network_without_allow_remote_and_a_token(tmp_path: Path) -> None:
    st_file = str(write_station(tmp_path))
    r = _cli(st_file, "--bind", "0.0.0.0")
    assert r.returncode == 2 and "--allow-remote" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = _cli(st_file, "--bind", "0.0.0.0", "--allow-remote",
             env={"FOTABENCH_SCREEN_TOKEN": ""})
    assert r.returncode == 2 and "needs a token" in r.stderr
    r = _cli(st_file, "--bind", "0.0.0.0", "--allow-remote", "--token", "short")
    assert r.returncode == 2 and "too short" in r.stderr
    r = _cli(st_file, "--package", str(tmp_path / "missing.bin"))
    assert r.returncode == 2 and "missing.bin" in r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        r = _cli(st_file, "--port", str(taken.getsockname()[1]))
    assert r.returncode == 2 and "cannot listen" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "bad.yaml").write_text("name: x\nslots: []\n")
    r = _cli(str(tmp_path / "bad.yaml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "bad.yaml" in r.stderr


def test_a_start_the_bench_refuses_is_said_and_leaves_the_tile_as_it_was(
        bench: FakeBench, monkeypatch: pytest.MonkeyPatch) -> None:
    screen = _screen(bench)
    c = TestClient(create_app(screen))
    c.post("/api/start", json={"slot": "s3"}, headers=ACT)
    _wait(lambda: not _slot(screen, "s3")["running"], "s3 to finish")
    assert _slot(screen, "s3")["outcome"] == "fail"

    def refuse(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("no such package or app image: gone.bin\nsecond line")
    monkeypatch.setattr(bench, "start_slot", refuse)
    r = c.post("/api/start", json={"slot": "s3"}, headers=ACT)
    assert r.status_code == 409 and r.json()["code"] == "start_failed"
    assert r.json()["error"] == "slot s3: no such package or app image: gone.bin"
    s3 = _slot(screen, "s3")
    assert not s3["running"] and s3["outcome"] == "fail"   # the last result still shown


def test_cli_serves_a_real_station_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`fotabench station serve` end to end on fotabench.Bench: a virtual module started
    by a scan over HTTP passes, its record is in the database, SIGTERM ends the server
    (and the open event stream) with exit 0."""
    import fotabench.bench.run  # noqa: F401 - the real Bench, not the stand-in
    from fotabench.bench.dut import bundled_agent
    from fotabench.sim import sim_binary
    if not sim_binary().exists():
        pytest.skip("board program not built (make build)")
    (tmp_path / "st.yaml").write_text(
        "version: 1\nstation: cli-screen\nslots:\n"
        "  - name: v1\n    model: M66\n    virtual: {boot_timing: fast}\n")
    db = tmp_path / "r.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fotabench", "station", "serve", str(tmp_path / "st.yaml"),
         "--port", "0", "--package", str(bundled_agent("2.0.0", "M66")), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert m, line + (proc.stderr.read() if proc.poll() is not None else "")
        url = m.group(1)
        c = httpx.Client(base_url=url, timeout=TIMEOUT)
        r = c.post("/api/scan", json={"code": "SN-CLI-1"}, headers=ACT)
        assert r.status_code == 200 and r.json()["slot"] == "v1", r.text
        deadline = time.monotonic() + 120
        while True:
            v1 = c.get("/api/state").json()["slots"][0]
            if not v1["running"]:
                break
            assert time.monotonic() < deadline, v1
            time.sleep(0.2)
        assert v1["outcome"] == "pass" and v1["version_to"] == "2.0.0", v1
        with open_database(str(db)) as d:
            assert [(r["slot"], r["outcome"]) for r in d.find()] == [("v1", "pass")]
        streamed = threading.Event()

        def listen_events() -> None:
            with httpx.Client(timeout=TIMEOUT) as client:
                with client.stream("GET", url + "events") as resp:
                    for _ in resp.iter_lines():
                        streamed.set()
        t = threading.Thread(target=listen_events, daemon=True)
        t.start()
        assert streamed.wait(TIMEOUT)
        proc.terminate()
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
        t.join(TIMEOUT)
        assert not t.is_alive(), "the event stream did not end with the server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_coalescing_keeps_every_phase_and_the_last_view() -> None:
    from fotabench.screen import _coalesce

    def view(slot: str, phase: str, pct: Any, seq: int, outcome: Any = None) -> Any:
        return ("slot", {"slot": slot, "phase": phase, "running": outcome is None,
                         "outcome": outcome, "attempt": 1, "percent": pct, "seq": seq})
    batch = [view("a", "identify", None, 1), view("a", "download", 1, 2),
             view("b", "download", 5, 1), view("a", "download", 2, 3),
             ("summary", {"tested": 1}), view("a", "download", 3, 4),
             view("a", "download", 3, 5, "pass"), ("summary", {"tested": 2})]
    out = _coalesce(batch)   # type: ignore[arg-type]
    a = [(d["phase"], d["seq"]) for k, d in out if k == "slot" and d["slot"] == "a"]
    assert a == [("identify", 1), ("download", 4), ("download", 5)]
    assert [d for k, d in out if k == "summary"] == [{"tested": 2}]
    assert len([1 for k, d in out if k == "slot" and d["slot"] == "b"]) == 1


def test_a_page_that_does_not_read_is_resynchronised_not_buffered_forever(
        bench: FakeBench) -> None:
    import asyncio

    from fotabench.screen import _MAX_PENDING
    screen = _screen(bench)

    async def main() -> list[Any]:
        q, unsubscribe, _ = screen.subscribe()
        for i in range(_MAX_PENDING + 500):
            screen._broadcast(("slot", {"slot": "s1", "seq": i}))
        await asyncio.sleep(0.1)         # the loop runs the queued puts
        items = []
        while not q.empty():
            items.append(q.get_nowait())
        unsubscribe()
        return items
    items = asyncio.run(main())
    assert len(items) < _MAX_PENDING
    assert ("resync", {}) in items
    assert items[-1] == ("slot", {"slot": "s1", "seq": _MAX_PENDING + 499})


def test_a_database_that_cannot_be_read_is_said_and_the_tiles_go_on(
        bench: FakeBench, tmp_path: Path) -> None:
    from fotabench.screen import summary_from_db
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    s = summary_from_db(str(bad), "line1-st2")
    assert s["db_error"] and s["tested"] == 0
    screen = Screen(bench, "agent_v2.bin", db=str(bad))
    assert screen.snapshot()["summary"]["db_error"]
    screen.start("s1")
    _wait(lambda: not _slot(screen, "s1")["running"], "s1 to finish despite the database")
    assert _slot(screen, "s1")["outcome"] == "pass"
