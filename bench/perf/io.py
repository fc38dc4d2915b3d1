#!/usr/bin/env python3
"""Bench I/O figures: the C core's serial, AT engine and GPIO under load.

    .venv/bin/python bench/perf/io.py [--round-trips 2000] [--mb 64] [--ports 64]

Prints (figures, not pass/fail; the machine and its load decide them):
  1. AT round-trip latency p50/p99 through fotabench.Modem over a pseudo-terminal, the
     module played by a separate process answering each command at once;
  2. throughput of one port: a process writes --mb MB into a pty as fast as it can,
     SerialPort.read() takes them in Python, with a per-port log off and on;
  3. CPU used by the core per idle open port (reader threads waiting in poll);
  4. events lost with --ports ports and --ports watched GPIO lines at once: every port
     receives URC lines and every virtual line toggles, all at the same time; the
     target is 0 lost everywhere (URCs counted at the subscriber, edges by sequence
     number and queue).
Exit status 1 only when something fails outright (a count that cannot be right).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

import fotabench

# Peers are forked before the bench opens anything (no threads to inherit yet).
CTX = multiprocessing.get_context("fork")

# --- peers in child processes (forked before the bench opens anything) ------------------


def responder(master: int, stop_fd: int) -> None:
    """A module that answers every CR-terminated command with OK."""
    buf = b""
    while True:
        r, _, _ = select.select([master, stop_fd], [], [])
        if stop_fd in r:
            return
        try:
            buf += os.read(master, 65536)
        except OSError:
            continue
        while b"\r" in buf:
            cmd, buf = buf.split(b"\r", 1)
            os.write(master, b"+FBVER: \"1.0\",\"b\"\r\nOK\r\n" if cmd == b"AT+FBVER?"
                     else b"OK\r\n")


def flooder(master: int, total: int, go: int) -> None:
    os.read(go, 1)
    block = (bytes(range(256)) * 256)[:65536]
    sent = 0
    while sent < total:
        sent += os.write(master, block[:min(len(block), total - sent)])


def urc_sender(masters: list[int], lines: int, go: int) -> None:
    os.read(go, 1)
    for i in range(lines):
        for m in masters:
            msg = b"+FBSTATE: UP_GETTING_FILE,%d\r\n" % i
            view = memoryview(msg)
            while view:
                select.select([], [m], [])
                view = view[os.write(m, view):]


def board(path: str, n_lines: int, edges: int, go: int) -> None:
    """A gpio.sock board with lines L0..Ln-1 (module outputs) that toggles them all."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    conn, _ = srv.accept()
    f = conn.makefile("rwb", buffering=0)
    watching: set[str] = set()
    go_seen = False
    while not go_seen:
        r, _, _ = select.select([conn, go], [], [])
        if go in r:
            os.read(go, 1)
            go_seen = True
            break
        line = f.readline().decode().split()
        now = time.monotonic_ns()
        if not line:
            return
        if line[0] == "LINES":
            out = "".join(f"LINE L{i} out 0\n" for i in range(n_lines)) + f"OK {now}\n"
            conn.sendall(out.encode())
        elif line[0] == "WATCH":
            watching.add(line[1])
            conn.sendall(f"OK {now}\n".encode())
        else:
            conn.sendall(f"OK {now}\n".encode())
    for k in range(1, edges + 1):
        now = time.monotonic_ns()
        conn.sendall("".join(f"EDGE L{i} {k % 2} {now} {k}\n" for i in range(n_lines)
                             if f"L{i}" in watching).encode())
    conn.recv(1)  # until the bench closes


def make_pty() -> tuple[int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


# --- measurements -----------------------------------------------------------------------


def round_trips(n: int) -> None:
    master, path = make_pty()
    stop_r, stop_w = os.pipe()
    p = CTX.Process(target=responder, args=(master, stop_r), daemon=True)
    p.start()
    lat = []
    with fotabench.Modem(path) as m:
        for _ in range(50):
            m.command("AT", timeout=5)
        for _ in range(n):
            t = time.perf_counter_ns()
            r = m.command("AT+FBVER?", timeout=5)
            lat.append(time.perf_counter_ns() - t)
            assert r.lines == ['+FBVER: "1.0","b"'], r
    os.write(stop_w, b"x")
    p.join(5)
    lat.sort()
    p50 = lat[len(lat) // 2] / 1e3
    p99 = lat[int(len(lat) * 0.99)] / 1e3
    print(f"AT round trip (Modem.command, pty, {n} commands): p50 {p50:.0f} us, "
          f"p99 {p99:.0f} us, max {lat[-1] / 1e3:.0f} us")


def throughput(mb: int, log_dir: Path | None) -> float:
    total = mb << 20
    master, path = make_pty()
    go_r, go_w = os.pipe()
    p = CTX.Process(target=flooder, args=(master, total, go_r), daemon=True)
    p.start()
    log = None if log_dir is None else log_dir / "flood.log"
    got = 0
    with fotabench.SerialPort(path, log=log, ring_size=16 << 20) as port:
        t0 = time.perf_counter()
        os.write(go_w, b"x")
        while got < total:
            chunk = port.read(1 << 20, timeout=10)
            if not chunk:
                break
            got += len(chunk)
        dt = time.perf_counter() - t0
        dropped = port.stats()["dropped_bytes"]
    p.join(10)
    rate = got / dt / 1e6
    what = "with per-port log" if log else "no log"
    print(f"throughput of one port ({what}): {rate:.1f} MB/s ({got >> 20} MiB in {dt:.2f} s, "
          f"dropped {dropped})")
    if got != total:
        print(f"  ERROR: received {got} of {total} bytes")
        raise SystemExit(1)
    return rate


def idle_cpu(n: int, seconds: float = 3.0) -> None:
    ptys = [make_pty() for _ in range(n)]
    ports = [fotabench.SerialPort(path) for _, path in ptys]
    time.sleep(0.2)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    time.sleep(seconds)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    dt = time.perf_counter() - t0
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    for p in ports:
        p.close()
    for m, _ in ptys:
        os.close(m)
    print(f"CPU of the core per idle port ({n} ports open, {seconds:.0f} s): "
          f"{cpu / dt / n * 100:.4f} % of a core ({cpu * 1e3:.1f} ms total)")


def lost_under_load(n: int, lines_per_port: int, edges_per_line: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="fb-io-"))
    sock = str(tmp / "gpio.sock")
    ptys = [make_pty() for _ in range(n)]
    go_r, go_w = os.pipe()
    gb_r, gb_w = os.pipe()
    sender = CTX.Process(target=urc_sender, args=([m for m, _ in ptys], lines_per_port, go_r),
                        daemon=True)
    brd = CTX.Process(target=board, args=(sock, n, edges_per_line, gb_r), daemon=True)
    sender.start()
    brd.start()
    while not os.path.exists(sock):
        time.sleep(0.01)
    tl = fotabench.Timeline()
    counts = [0] * n
    done = threading.Event()
    remaining = [n]
    lock = threading.Lock()

    def make_cb(i: int):
        def cb(u: fotabench.Urc) -> None:
            counts[i] += 1
            if counts[i] == lines_per_port:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
        return cb

    modems = []
    for i, (_, path) in enumerate(ptys):
        m = fotabench.Modem(path, name=f"uart{i}", timeline=tl, queue_max=lines_per_port + 16)
        m.on_urc("+FBSTATE:", make_cb(i))
        modems.append(m)
    chip = fotabench.GpioChip.virtual(sock, timeline=tl)
    lines = [chip.request_input(f"L{i}", queue_max=edges_per_line + 16) for i in range(n)]
    t0 = time.perf_counter()
    os.write(go_w, b"x")
    os.write(gb_w, b"x")
    ok = done.wait(120)
    deadline = time.monotonic() + 60
    while any(ln.stats()["edges"] < edges_per_line for ln in lines) and time.monotonic() < deadline:
        time.sleep(0.02)
    dt = time.perf_counter() - t0
    urcs = sum(counts)
    urc_lost = n * lines_per_port - urcs
    queue_lost = 0
    for m in modems:
        while True:
            try:
                if m.next_line(0) is None:
                    break
            except fotabench.DataLostError:
                queue_lost += 1
    edge_stats = [ln.stats() for ln in lines]
    edges = sum(s["edges"] for s in edge_stats)
    seq_lost = sum(s["lost"] for s in edge_stats)
    dropped = sum(s["dropped"] for s in edge_stats)
    missing = n * edges_per_line - edges
    for m in modems:
        m.close()
    chip.close()
    sender.join(5)
    brd.join(5)
    for mfd, _ in ptys:
        os.close(mfd)
    print(f"{n} ports + {n} watched lines at once ({dt:.2f} s, {len(tl)} timeline events):")
    print(f"  URCs: {urcs} of {n * lines_per_port} delivered to subscribers, lost "
          f"{urc_lost}{'' if ok else ' (timed out)'}; unsolicited-queue overflows {queue_lost}")
    print(f"  GPIO edges: {edges} of {n * edges_per_line} delivered, lost by sequence "
          f"{seq_lost}, dropped from queues {dropped}, missing {missing}")
    total_lost = urc_lost + queue_lost + seq_lost + dropped + missing
    print(f"  events lost: {total_lost} (target 0)")
    return total_lost


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--round-trips", type=int, default=2000)
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--ports", type=int, default=64)
    ap.add_argument("--lines-per-port", type=int, default=1000)
    ap.add_argument("--edges-per-line", type=int, default=1000)
    args = ap.parse_args()
    versions = fotabench.library_versions()
    print(f"fotabench bench I/O: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"libserialport {versions['libserialport']}, libgpiod {versions['libgpiod']}")
    round_trips(args.round_trips)
    throughput(args.mb, None)
    with tempfile.TemporaryDirectory() as d:
        throughput(args.mb, Path(d))
    idle_cpu(args.ports)
    lost_under_load(args.ports, args.lines_per_port, args.edges_per_line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
