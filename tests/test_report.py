"""The HTML report: content, self-containedness, size at 1000 modules, and a render in
headless Chromium (tests/cdp.py) with a screenshot, no console errors and the run's counts
on the page."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cdp import Chromium, chromium_binary
from fotabench.records import Run, open_database, push_run
from fotabench.records.report import log_excerpt, render_report
from records_helpers import make_record, outcome_for, write_run

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fotabench", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("report") / "run"
    write_run(d, 40)
    return d


def _counts(run_dir):
    recs = Run.open(run_dir).records
    return {o: sum(r.outcome == o for r in recs) for o in ("pass", "fail", "error")}, recs


def _no_outside_references(text: str) -> None:
    assert "<script" not in text.lower()
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text):
        assert attr.startswith("#"), f"reference out of the file: {attr}"
    assert "@import" not in text and not re.search(r"url\(\s*['\"]?(?!#)", text)


def test_report_summary_failures_first_and_timelines(run_dir, tmp_path):
    out = tmp_path / "r.html"
    r = _cli("report", str(run_dir), "-o", str(out))
    assert r.returncode == 0, r.stderr
    counts, recs = _counts(run_dir)
    assert f"{len(recs)} record(s)" in r.stdout
    text = out.read_text()
    _no_outside_references(text)
    for outcome, n in counts.items():
        assert re.search(rf'id="count-{outcome}">{n}<', text)
    modules = {r.module.imei or r.slot for r in recs}
    passed_last = {}
    for rec in sorted(recs, key=lambda r: (r.start_ns, r.attempt)):
        passed_last[rec.module.imei or rec.slot] = rec.outcome == "pass"
    yield_pct = 100 * sum(passed_last.values()) / len(modules)
    assert f'id="yield">{yield_pct:.1f} %' in text
    # Failures come first, each with its reason and the log line that shows it.
    first_fail = text.index('class="failure')
    assert first_fail < text.index('id="modules"')
    bad = [r for r in recs if r.outcome != "pass"]
    assert text.count('class="failure ') == len(bad)
    for rec in bad:
        block = text[text.index(f'id="f-{rec.id}"'):]
        block = block[:block.index("</div>\n  </div>") if "</div>\n  </div>" in block else 4000]
        assert rec.detail.split(":")[0].replace("'", "&#39;") in block
    assert "<b>[   5.100] ERROR: http recv: connection closed by peer" in text
    assert "<b>[   0.300] serial: read failed: EIO" in text
    # One SVG timeline per attempt, failures first in the module list too.
    assert text.count('<svg class="tl"') == len(recs)
    module_order = re.findall(r'<article class="module" id="m-([0-9a-f]{32})"', text)
    outcomes = [next(r.outcome for r in recs if r.id == i) for i in module_order]
    assert outcomes == sorted(outcomes, key=["fail", "error", "pass"].index)
    # The timeline draws what the record holds.
    fail = next(r for r in recs if r.outcome == "fail")
    art = text[text.index(f'id="m-{fail.id}"'):]
    art = art[:art.index("</article>")]
    assert 'class="s-bad"' in art and "FAILED" in art           # UP_UPGRADFAILED band
    assert 'class="t-bad"' in art and "fault_injected (drop)" in art
    assert "45 %" in art and 'class="tmo"' in art and 'class="prog"' in art
    assert art.count('class="pwr"') == len(fail.power)


def test_log_excerpt_marks_the_line_that_shows_the_fault():
    lines, mark = log_excerpt("a\nb\nc\nd\nERROR: x\ne\nf\n", before=2, after=1)
    assert lines == ["c", "d", "ERROR: x", "e"] and lines[mark] == "ERROR: x"
    lines, mark = log_excerpt("\n".join(f"l{i}" for i in range(20)))
    assert mark is None and lines == [f"l{i}" for i in range(12, 20)]
    assert log_excerpt(None) == ([], None)


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium; make test-deps)")
    out = tmp_path / "report.html"
    assert _cli("report", str(run_dir), "-o", str(out)).returncode == 0
    counts, recs = _counts(run_dir)
    shot = tmp_path / "report.png"
    with Chromium(binary) as c:
        c.open(out.as_uri())
        for outcome, n in counts.items():
            assert c.evaluate(f"document.getElementById('count-{outcome}').innerText") == str(n)
        assert c.evaluate("document.querySelectorAll('svg.tl').length") == len(recs)
        body = c.evaluate("document.body.innerText")
        assert f"Failures and errors ({counts['fail'] + counts['error']})" in body
        # Nothing drawn outside its box: every timeline has its width on the page.
        widths = c.evaluate("[...document.querySelectorAll('svg.tl')].map(s => "
                            "s.getBoundingClientRect().width)")
        assert min(widths) > 600
        c.screenshot(shot)
        assert c.console_errors() == []
        assert c.requested_urls() == [out.as_uri()]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    assert w >= 1200 and h >= 2000       # 1280 less a scrollbar; the top 2400 px
    keep = ROOT / "build" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "report.png")


def test_the_chromium_check_sees_console_errors_and_fetches(tmp_path):
    """The checks above can fail: a page with a console error and a fetch shows both."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "bad.html"
    page.write_text('<p>x</p><script>console.error("marker-123")</script>'
                    '<img src="http://127.0.0.1:9/a.png">')
    with Chromium(binary) as c:
        c.open(page.as_uri())
        errors = c.console_errors()
        assert "marker-123" in errors
        assert "http://127.0.0.1:9/a.png" in c.requested_urls()


def test_1000_module_report_stays_small(tmp_path):
    recs = [make_record(n, outcome=outcome_for(n, 1000), protocol="ftp" if n % 5 == 4
                        else "http", t0_ns=(10 + 7 * n) * 10**9) for n in range(1000)]
    text = render_report(recs, {"run_id": "big", "station": "line3"})
    size = len(text.encode())
    assert size < 10 * 1024 * 1024, f"{size} bytes"
    assert text.count('<svg class="tl"') == 1000
    _no_outside_references(text)
    # Many failures: a compact table of them first, one row each, linking to the details.
    bad = [r for r in recs if r.outcome != "pass"]
    table = text[text.index('<table class="ftable">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == len(bad) + 1
    assert all(f'href="#f-{r.id}"' in table for r in bad)
    assert text.count("no log excerpt: the record names no log") == len(bad)


def test_report_from_the_database(run_dir, tmp_path):
    db = tmp_path / "f.sqlite"
    push_run(run_dir, open_database(db))
    run = Run.open(run_dir)
    out = tmp_path / "db.html"
    r = _cli("report", "--db", str(db), "--run", run.run_id, "--logs", str(run_dir),
             "-o", str(out))
    assert r.returncode == 0, r.stderr
    counts, _ = _counts(run_dir)
    text = out.read_text()
    for outcome, n in counts.items():
        assert f'id="count-{outcome}">{n}<' in text
    assert "from the database" in text and "serial: read failed: EIO" in text


def test_report_bad_input_is_one_line(tmp_path):
    r = _cli("report", str(tmp_path))
    assert r.returncode == 1 and r.stderr.startswith("fotabench: error:")
    assert "no run.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("report", "--db", str(tmp_path / "nope.sqlite"), "--run", "x")
    assert r.returncode == 1 and "no database at" in r.stderr
    r = _cli("report")
    assert r.returncode == 1 and "give a run directory" in r.stderr
