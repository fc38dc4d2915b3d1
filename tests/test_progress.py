"""The terminal progress (fotabench.bench.progress): synthetic BenchEvents, published from
one or many threads, rendered as plain lines (exactly) or as rich tables (recorded), and
a publisher that is never held up by a slow output."""
from __future__ import annotations

import io
import re
import threading

import pytest
from rich.console import Console

from fotabench.bench.config import SlotSpec
from fotabench.bench.events import BenchEvent, EventBus
from fotabench.bench.progress import (Progress, SummaryRow, print_summary, summary_lines,
                                      summary_table)

ESC = re.compile(r"\x1b|\r")


def ev(t_s: float, slot: str, kind: str, **kw) -> BenchEvent:
    return BenchEvent(int(round(t_s * 1e9)), slot, kind, **kw)


def http_pass(slot: str, t0: float = 0.0, gaps=(400.0, 1100.0, 1700.0)) -> list[BenchEvent]:
    """One HTTP upgrade that passes, with the events the upgrade publishes (spec §2:
    percentages at multiples of 5; served bytes after each; WDI gaps growing)."""
    t = t0
    out = [ev(t, slot, "attempt", attempt=1), ev(t, slot, "phase", phase="power"),
           ev(t + 1.2, slot, "power", detail="PWRKEY held low 1.2 s"),
           ev(t + 1.2, slot, "phase", phase="boot"),
           ev(t + 4.0, slot, "phase", phase="identify",
              extra={"model": "M66", "imei": "866425031234567", "version": "1.0.0"}),
           ev(t + 4.5, slot, "phase", phase="attach"),
           ev(t + 10.0, slot, "phase", phase="download"),
           ev(t + 10.5, slot, "state", state="UP_START", percent=0),
           ev(t + 10.6, slot, "state", state="UP_CONNECTED", percent=0)]
    gap_at = dict(zip((10, 50, 90), gaps))
    for i, p in enumerate(range(0, 101, 5)):
        ts = t + 11 + i
        out.append(ev(ts, slot, "state", state="UP_GETTING_FILE", percent=p))
        out.append(ev(ts, slot, "state", state="UP_GETTING_FILE", percent=p))  # duplicates
        out.append(ev(ts, slot, "served", bytes_served=p * 2000))
        if p in gap_at:
            out.append(ev(ts, slot, "watchdog", gap_ms=gap_at[p]))
    out += [ev(t + 33.0, slot, "state", state="UP_SYSTEM_REBOOT", percent=100),
            ev(t + 33.0, slot, "phase", phase="reboot"),
            ev(t + 40.0, slot, "phase", phase="verify", extra={"version": "2.0.0"}),
            ev(t + 40.5, slot, "outcome", outcome="pass")]
    return out


def ftp_fail(slot: str) -> list[BenchEvent]:
    return [ev(0, slot, "attempt", attempt=1), ev(2, slot, "phase", phase="download",
                                                  extra={"version": "1.0.0"}),
            ev(3, slot, "state", state="UP_GETTING_FILE", percent=0),
            ev(9, slot, "state", state="UP_GET_FILE_OK", percent=100),
            ev(9, slot, "served", bytes_served=40000),
            ev(9.5, slot, "state", state="UP_UPGRADFAILED", percent=0),
            ev(9.5, slot, "outcome", outcome="fail",
               detail="UP_UPGRADFAILED after UP_GET_FILE_OK: package MD5 refused")]


PLAIN_A = """\
     0.0 a  attempt 1
     0.0 a  phase power
     1.2 a  power PWRKEY held low 1.2 s
     1.2 a  phase boot
     4.0 a  model M66, IMEI 866425031234567, version 1.0.0
     4.0 a  phase identify
     4.5 a  phase attach
    10.0 a  phase download
    10.5 a  UP_START 0%
    10.6 a  UP_CONNECTED 0%
    11.0 a  UP_GETTING_FILE 0%
    13.0 a  UP_GETTING_FILE 10%
    15.0 a  UP_GETTING_FILE 20%
    17.0 a  UP_GETTING_FILE 30%
    19.0 a  UP_GETTING_FILE 40%
    21.0 a  UP_GETTING_FILE 50%
    21.0 a  watchdog gap 1100 ms (over 2/3 of the chip's 1600 ms)
    23.0 a  UP_GETTING_FILE 60%
    25.0 a  UP_GETTING_FILE 70%
    27.0 a  UP_GETTING_FILE 80%
    29.0 a  UP_GETTING_FILE 90%
    29.0 a  watchdog gap 1700 ms (over the chip's 1600 ms)
    31.0 a  UP_GETTING_FILE 100%
    33.0 a  UP_SYSTEM_REBOOT 100%
    33.0 a  phase reboot
    40.0 a  version 2.0.0
    40.0 a  phase verify
    40.5 a  PASS (40.5 s, 1.0.0 -> 2.0.0, served 200000 B, longest WDI gap 1700 ms)
"""

PLAIN_B = """\
     0.0 b  attempt 1
     2.0 b  version 1.0.0
     2.0 b  phase download
     3.0 b  UP_GETTING_FILE 0%
     9.0 b  UP_GET_FILE_OK 100%
     9.5 b  UP_UPGRADFAILED 0%
     9.5 b  FAIL: UP_UPGRADFAILED after UP_GET_FILE_OK: package MD5 refused (9.5 s, 1.0.0, served 40000 B)
"""


def plain_progress(**kw) -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=100)        # a StringIO is not a terminal
    return Progress(console=console, t0_ns=0, **kw), out


def test_plain_lines_exactly():
    bus = EventBus()
    p, out = plain_progress(bus=bus, slots=["a", "b"])
    assert p.live is False
    with p:
        for e in http_pass("a"):
            bus.publish(e)
        for e in ftp_fail("b"):
            bus.publish(e)
    assert out.getvalue() == PLAIN_A + PLAIN_B
    assert not ESC.search(out.getvalue())
    assert bus.errors == []


def test_plain_lines_throttle_percent_to_every_10():
    p, out = plain_progress(percent_step=10)
    with p:
        for pct in (0, 5, 10, 15, 35, 40, 45, 95, 100, 100):
            p(ev(pct, "s", "state", state="UP_GETTING_FILE", percent=pct))
    assert [line.split()[-1] for line in out.getvalue().splitlines()] == [
        "0%", "10%", "35%", "40%", "95%", "100%"]


def test_a_new_attempt_starts_a_row_again():
    p, out = plain_progress()
    with p:
        for e in (ev(0, "s", "attempt", attempt=1),
                  ev(1, "s", "state", state="UP_GETTING_FILE", percent=40),
                  ev(2, "s", "outcome", outcome="error", detail="server dropped the link"),
                  ev(3, "s", "attempt", attempt=2),
                  ev(4, "s", "state", state="UP_GETTING_FILE", percent=40)):
            p(e)
        row = p.rows()[0]
    assert (row.attempt, row.outcome, row.reason, row.percent) == (2, None, "", 40)
    assert out.getvalue().splitlines()[-2:] == ["     3.0 s  attempt 2",
                                                "     4.0 s  UP_GETTING_FILE 40%"]


def test_many_threads_plain_lines_keep_each_slot_in_order():
    bus = EventBus()
    names = [f"s{i}" for i in range(8)]
    p, out = plain_progress(bus=bus, slots=names)
    start = threading.Barrier(len(names))

    def run(slot: str) -> None:
        start.wait()
        for e in http_pass(slot):
            bus.publish(e)

    with p:
        threads = [threading.Thread(target=run, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
    lines = out.getvalue().splitlines()
    expected = PLAIN_A.splitlines()
    assert len(lines) == len(expected) * len(names)
    for n in names:
        mine = [line for line in lines if line[9:].startswith(f"{n}  ")]
        assert [m.replace(f" {n}  ", " a  ") for m in mine] == expected
    assert bus.errors == []


def test_many_threads_table_rows():
    bus = EventBus()
    names = [f"slot-{i}" for i in range(6)]
    # Table mode, subscribed without start(): rows only, rendered by the test itself.
    p = Progress(console=Console(file=io.StringIO()), live=True, slots=names, title="bench-6")
    bus.subscribe(p)

    def run(i: int) -> None:
        events = http_pass(names[i], gaps=(300.0, 500.0 + 200 * i, 800.0 + 200 * i))
        if i == 5:
            events = events[:-1] + [ev(40.5, names[i], "outcome", outcome="error",
                                       detail="port lost: /dev/ttyUSB5 vanished")]
        for e in events:
            bus.publish(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    p.stop()
    rec = Console(record=True, width=200, file=io.StringIO())
    rec.print(p.render())
    text = rec.export_text()
    assert "bench-6: 6 slots: 0 running, 5 pass, 0 fail, 1 error" in text
    for i, n in enumerate(names):
        row = next(line for line in text.splitlines() if f" {n} " in line)
        assert "M66" in row and "866425031234567" in row and "verify" in row
        assert "100%" in row and "200.0 kB" in row
        assert f"{800 + 200 * i} ms" in row
        assert ("ERROR port lost: /dev/ttyUSB5 vanished" if i == 5 else "PASS") in row
    # Colours: the longest gap against the chip's 1600 ms (warn at 2/3), the outcomes.
    table = p.render()
    cols = {c.header: list(c.cells) for c in table.columns}
    assert [c.style for c in cols["WDI gap"]] == ["green", "green", "yellow", "yellow",
                                                  "bold red", "bold red"]
    assert [c.style for c in cols["outcome"]] == ["bold green"] * 5 + ["bold yellow"]


def test_live_table_on_a_terminal():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=180, color_system="truecolor")
    bus = EventBus()
    with Progress(bus, console=console, slots=[SlotSpec("a", model="MC60"), "b"],
                  refresh_per_second=20) as p:
        assert p.live is True
        assert [r.model for r in p.rows()] == ["MC60", ""]     # from the station file
        for e in http_pass("a") + ftp_fail("b"):
            bus.publish(e)
    rendered = out.getvalue()
    assert "\x1b[" in rendered                         # a terminal gets colours
    # Live's last frame, drawn at stop(), is the final state of both rows.
    last = rendered[rendered.rindex("2 slots:"):]
    assert "PASS" in last and "FAIL" in last
    final = Console(record=True, width=180, file=io.StringIO())
    final.print(p.render())
    text = final.export_text()
    assert "2 slots: 0 running, 1 pass, 1 fail, 0 error" in text
    assert "FAIL UP_UPGRADFAILED after UP_GET_FILE_OK" in text
    assert p.rows()[0].model == "M66"                   # what the module said it is


class BlockingFile(io.StringIO):
    """A pipe nobody reads: write() waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.blocked = threading.Event()

    def write(self, s: str) -> int:
        self.blocked.set()
        assert self.release.wait(60)
        return super().write(s)


def test_a_blocked_output_never_blocks_the_publisher():
    f = BlockingFile()
    bus = EventBus()
    p = Progress(bus, console=Console(file=f), t0_ns=0)
    p.start()
    done = threading.Event()

    def publish() -> None:
        for i in range(50):
            for e in http_pass(f"s{i}"):
                bus.publish(e)
        done.set()

    t = threading.Thread(target=publish)
    t.start()
    assert f.blocked.wait(30)                  # the writer is stuck in write() ...
    assert done.wait(30)                       # ... and every event was still published
    f.release.set()
    p.stop()
    t.join(30)
    assert len(f.getvalue().splitlines()) == 50 * len(PLAIN_A.splitlines())


def test_stop_leaves_no_thread():
    before = {t.ident for t in threading.enumerate()}
    p, _ = plain_progress()
    with p:
        p(ev(0, "s", "attempt", attempt=1))
    assert {t.ident for t in threading.enumerate()} == before


SUMMARY = [SummaryRow("v1", "pass", "", "1.0.0", "2.0.0", 41.25, 812.0),
           SummaryRow("v2", "fail", "package MD5 refused", "1.0.0", "1.0.0", 75.0, 1150.0),
           SummaryRow("v3", "error", "server dropped the connection", "1.0.0", "", 9.5, None),
           SummaryRow("v4", None)]


def test_summary_lines_exactly():
    assert summary_lines(SUMMARY) == [
        "slot  outcome     cause                          versions            duration  longest WDI gap",
        "v1    PASS                                       1.0.0 -> 2.0.0        41.2 s           812 ms",
        "v2    FAIL        package MD5 refused            1.0.0 -> 1.0.0  1 min 15.0 s          1150 ms",
        "v3    ERROR       server dropped the connection  1.0.0                  9.5 s",
        "v4    unfinished",
        "1 pass, 1 fail, 1 error",
    ]


def test_print_summary_plain_and_table():
    out = io.StringIO()
    print_summary(SUMMARY, console=Console(file=out), title="virtual-8")
    assert out.getvalue() == "virtual-8\n" + "\n".join(summary_lines(SUMMARY)) + "\n"
    rec = Console(record=True, width=120, file=io.StringIO(), force_terminal=True)
    print_summary(SUMMARY, console=rec, title="virtual-8")
    text = rec.export_text()
    assert "virtual-8: 1 pass, 1 fail, 1 error" in text
    assert re.search(r"v2 .* FAIL .* package MD5 refused .* 1\.0\.0 -> 1\.0\.0 .* 1 min 15\.0 s"
                     r" .* 1150 ms", text)
    cols = {c.header: list(c.cells) for c in summary_table(SUMMARY).columns}
    assert [c.style for c in cols["outcome"]] == ["bold green", "bold red", "bold yellow", "dim"]
    assert [c.style for c in cols["longest WDI gap"]][:2] == ["green", "yellow"]


def test_summary_from_the_progress_rows():
    p, _ = plain_progress()
    with p:
        for e in http_pass("a") + ftp_fail("b"):
            p(e)
    assert p.summary_rows() == [
        SummaryRow("a", "pass", "", "1.0.0", "2.0.0", 40.5, 1700.0),
        SummaryRow("b", "fail", "UP_UPGRADFAILED after UP_GET_FILE_OK: package MD5 refused",
                   "1.0.0", "", 9.5, None)]


@pytest.mark.parametrize("gap,style", [(0.0, "green"), (1066.0, "green"), (1067.0, "yellow"),
                                       (1599.0, "yellow"), (1600.0, "bold red")])
def test_gap_colour_thresholds(gap, style):
    cols = {c.header: list(c.cells) for c in summary_table([SummaryRow("a", "pass",
                                                                      gap_ms=gap)]).columns}
    assert cols["longest WDI gap"][0].style == style


def test_snapshot_example_draws_the_pictures(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root / "bench/examples/progress_snapshot.py"),
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    svg = (tmp_path / "progress-midrun.svg").read_text()
    assert "virtual-8:&#160;8&#160;slots:&#160;6&#160;running" in svg
    assert "UP_GETTING_FILE" in svg and "1720&#160;ms" in svg
    assert (tmp_path / "progress-summary.svg").stat().st_size > 0
