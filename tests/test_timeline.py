"""fotabench.Timeline: one clock, seq order, filters, JSON lines, threads, waits."""
from __future__ import annotations

import json
import threading
import time

import pytest

import fotabench
from fotabench import Timeline, now_ns


def test_now_ns_is_the_monotonic_clock():
    a = time.monotonic_ns()
    b = now_ns()
    c = time.monotonic_ns()
    assert a <= b <= c


def test_add_stamps_now_and_numbers_from_zero():
    tl = Timeline()
    before = time.monotonic_ns()
    e0 = tl.add("http", "request", path="/a.bin", status=200)
    e1 = tl.add("ftp", "request", path="/b.bin")
    after = time.monotonic_ns()
    assert (e0.seq, e1.seq) == (0, 1)
    assert before <= e0.t_ns <= e1.t_ns <= after
    assert len(tl) == 2
    got = tl.events()
    assert got == [e0, e1]
    assert got[0].data == {"path": "/a.bin", "status": 200}


def test_add_at_keeps_given_stamp_and_seq_order():
    tl = Timeline()
    tl.add("a", "x")
    e = tl.add_at(12345, "b", "y", n=1)
    assert e.t_ns == 12345 and e.seq == 1
    assert [x.seq for x in tl.events()] == [0, 1]
    with pytest.raises(ValueError):
        tl.add_at(0, "b", "y")


def test_filters_and_prefix():
    tl = Timeline()
    tl.add("uart1", "at.command", text="AT")
    tl.add("uart1", "at.result", text="OK")
    tl.add("uart2", "line", text="x")
    tl.add("gpio:WDI", "edge", value=1)
    assert [e.kind for e in tl.events(source="uart1")] == ["at.command", "at.result"]
    assert [e.source for e in tl.events(kind="at.*")] == ["uart1", "uart1"]
    assert [e.seq for e in tl.events(source="uart*")] == [0, 1, 2]
    assert [e.seq for e in tl.events(since=2)] == [2, 3]
    assert tl.events(since=99) == []


def test_bad_names_are_refused():
    tl = Timeline()
    with pytest.raises(fotabench.ArgumentError):
        tl.add("", "kind")
    with pytest.raises(fotabench.ArgumentError):
        tl.add("s" * 65, "kind")


def test_jsonl_export_round_trips(tmp_path):
    tl = Timeline()
    tl.add("uart1", "line", text='quote " backslash \\ newline \n tab \t ü')
    tl.add("test", "note", path=tmp_path, nested={"a": [1, 2]})
    out = tmp_path / "t.jsonl"
    tl.write_jsonl(out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    objs = [json.loads(x) for x in lines]
    assert [o["seq"] for o in objs] == [0, 1]
    assert objs[0]["data"]["text"] == 'quote " backslash \\ newline \n tab \t ü'
    assert objs[1]["data"] == {"path": str(tmp_path), "nested": {"a": [1, 2]}}
    assert set(objs[0]) == {"seq", "t_ns", "source", "kind", "data"}
    # The Python rendering and the C export decode to the same objects.
    assert [json.loads(x) for x in tl.jsonl().splitlines()] == objs
    tl.write_jsonl(out, since=1)
    assert [json.loads(x)["seq"] for x in out.read_text().splitlines()] == [1]


def test_export_to_missing_directory_says_where(tmp_path):
    tl = Timeline()
    tl.add("a", "b")
    with pytest.raises(fotabench.FileError) as ei:
        tl.write_jsonl(tmp_path / "no" / "such" / "t.jsonl")
    assert "t.jsonl" in str(ei.value)


def test_threads_add_concurrently_without_loss():
    tl = Timeline()
    n_threads, per = 8, 2000

    def work(i):
        for k in range(per):
            tl.add(f"t{i}", "n", k=k)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    evs = tl.events()
    assert len(evs) == n_threads * per
    assert [e.seq for e in evs] == list(range(n_threads * per))
    for i in range(n_threads):
        assert [e.data["k"] for e in tl.events(source=f"t{i}")] == list(range(per))


def test_wait_for_sees_an_event_from_another_thread():
    tl = Timeline()
    go = threading.Event()

    def later():
        go.wait(5)
        tl.add("uart1", "urc", text="+FBREADY")

    t = threading.Thread(target=later)
    t.start()
    go.set()
    ev = tl.wait_for(lambda e: e.kind == "urc", timeout=10)
    t.join()
    assert ev.data["text"] == "+FBREADY"


def test_wait_for_times_out_with_a_timeout_error():
    tl = Timeline()
    tl.add("a", "b")
    with pytest.raises(fotabench.BenchTimeoutError) as ei:
        tl.wait_for(lambda e: e.kind == "never", timeout=0.05)
    assert isinstance(ei.value, TimeoutError)
