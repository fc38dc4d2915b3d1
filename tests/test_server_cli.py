"""`fotabench serve`: the ready line, module URLs, faults from the command line, one
line per request, a timeline file, a clean exit on SIGTERM, and usage errors."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys

import pytest

from fotabench import ModuleUrl
from server_helpers import curl, curl_ftp_url, needs_curl


class Serve:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "fotabench", "serve", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""

    def line(self, timeout: float = 10.0) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            r, _, _ = select.select([fd], [], [], timeout)
            assert r, f"no line from fotabench serve within {timeout} s"
            b = os.read(fd, 65536)
            assert b, f"fotabench serve ended: {self.proc.stderr.read().decode()}"
            self.buf += b
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            for s in (self.proc.stdout, self.proc.stderr):
                if s:
                    s.close()
        return rc


@pytest.fixture
def pkg(tmp_path):
    data = os.urandom(20_000)
    p = tmp_path / "APP.bin"
    p.write_bytes(data)
    return p, data


@needs_curl
def test_serve_json_ready_requests_timeline_sigterm(pkg, tmp_path):
    tl = tmp_path / "timeline.jsonl"
    s = Serve(str(pkg[0]), "--module", "dut1", "--json", "--timeline", str(tl),
              "--fault", "drop:at=100,times=1,protocol=http")
    try:
        ready = json.loads(s.line())
        assert ready["event"] == "ready" and ready["bind"] == "127.0.0.1"
        assert ready["http"] > 0 and ready["ftp"] > 0
        urls = ready["modules"]["dut1"]["APP.bin"]
        assert urls["http"] == f"http://127.0.0.1:{ready['http']}/m/dut1/APP.bin"
        ftp = ModuleUrl.parse(urls["ftp"])                 # what the module decodes
        assert (ftp.port, ftp.path, ftp.file) == (ready["ftp"], "/m/dut1", "APP.bin")
        assert ready["faults"] == ["drop at=100 protocol=http times=1"]
        f = curl(urls["http"], tmp_path / "o")
        assert f.rc == 18 and f.data == pkg[1][:100]
        r1 = json.loads(s.line())
        f = curl(urls["http"], tmp_path / "o")
        assert f.rc == 0 and f.data == pkg[1]
        r2 = json.loads(s.line())
        f = curl(curl_ftp_url(ftp), tmp_path / "o")
        assert f.rc == 0 and f.data == pkg[1]
        r3 = json.loads(s.line())
    finally:
        rc = s.stop()
    assert rc == 0
    assert (r1["event"], r1["outcome"], r1["bytes_sent"], r1["module"]) == (
        "request", "fault_injected", 100, "dut1")
    assert (r2["outcome"], r2["bytes_sent"], r3["protocol"], r3["outcome"]) == (
        "complete", len(pkg[1]), "ftp", "complete")
    events = [json.loads(line) for line in tl.read_text().splitlines()]
    assert [(e["source"], e["kind"]) for e in events] == [
        ("http", "request"), ("http", "request"), ("ftp", "request")]
    assert [e["seq"] for e in events] == [0, 1, 2]
    assert events[1]["data"]["start_ns"] == r2["start_ns"]


@needs_curl
def test_serve_text_http_only(pkg, tmp_path):
    s = Serve(str(pkg[0]), "--http", "0")
    try:
        ready = json.loads(s.line())
        assert ready["ftp"] is None and set(ready["urls"]["APP.bin"]) == {"http"}
        assert s.line() == f"serving APP.bin over http: {ready['urls']['APP.bin']['http']}"
        f = curl(ready["urls"]["APP.bin"]["http"], tmp_path / "o")
        assert f.rc == 0 and f.data == pkg[1]
        line = s.line()
        assert line.startswith("http 127.0.0.1 GET /APP.bin 200 20000/20000 B")
        assert line.endswith("complete")
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize("args, code, message", [
    (["--fault", "explode"], 2, "unknown fault kind"),
    (["--fault", "drop:at=x"], 2, "fault 'drop:at=x'"),
    (["--http", "70000"], 2, "outside 0..65535"),
    (["--bind", "0.0.0.0"], 1, "pass host="),
])
def test_serve_usage_errors(pkg, args, code, message):
    r = subprocess.run([sys.executable, "-m", "fotabench", "serve", str(pkg[0]), *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == code
    assert message in r.stderr


def test_serve_missing_package(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fotabench", "serve", str(tmp_path / "no.bin")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("fotabench: error: serve: no such package file")


def test_serve_port_in_use(pkg):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "fotabench", "serve", str(pkg[0]),
                            "--http", str(port)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "fotabench: error: serve:" in r.stderr
