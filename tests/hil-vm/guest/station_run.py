"""The qemu lane's station phase, run INSIDE the guest by the host's own Python and
fotabench (the host's root mounted read-only over 9p, guest/init.sh chroots into it).

    station_run.py STATION.yaml PACKAGE OUT_DIR

Runs ``fotabench.Bench(STATION).run(PACKAGE)`` on every slot of the station
(real-kind slots: /dev/ttyS1 through libserialport, lines on the gpio-sim chip through
libgpiod) and writes OUT_DIR/result.json: each slot's UpgradeResult, the bench's
events, the GPIO part of the timeline, the run directory. Prints ``STATION RESULT
<slot> <outcome> <cause>`` lines and exits with the run's exit code. The host
(tests/hil-vm/lane.py) judges; this only runs and reports.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def main() -> int:
    station, package, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    t0 = time.monotonic()
    report: dict = {"python": sys.version.split()[0], "executable": sys.executable,
                    "uname": " ".join(os.uname())}
    try:
        import fotabench
        from fotabench import Bench, EventBus, Timeline
        report["fotabench"] = fotabench.__file__
        report["import_s"] = round(time.monotonic() - t0, 2)
        print(f"STATION IMPORTED {report['import_s']} s {fotabench.__file__}", flush=True)
        events: list[dict] = []
        bus = EventBus()
        fields = ("phase", "state", "percent", "bytes_served", "gap_ms", "outcome", "detail")
        bus.subscribe(lambda e: events.append(
            {"t_ns": e.t_ns, "slot": e.slot, "kind": e.kind,
             **{k: getattr(e, k) for k in fields}}))
        tl = Timeline()
        t_run = time.monotonic()
        with Bench(station, events=bus, out_dir=out / "runs",
                   operator="qemu-guest", timeline=tl) as bench:
            run = bench.run(package, progress=False)
            report["run_dir"] = str(run.run_dir)
            report["exit_code"] = run.exit_code
            report["run_s"] = round(time.monotonic() - t_run, 2)
            report["results"] = {slot: r.to_dict() for slot, r in run.results.items()}
        report["events"] = events
        report["gpio_timeline"] = [
            {"t_ns": e.t_ns, "source": e.source, "kind": e.kind, "data": e.data}
            for e in tl.events() if e.source.startswith(("gpio", "watchdog", "power"))
            and e.kind != "edge"]
        report["wdi_edges_seen"] = len(tl.events(kind="edge"))
        for slot, r in report["results"].items():
            print(f"STATION RESULT {slot} {r['outcome']} {r['cause'] or '-'} "
                  f"{r['version_before']}->{r['version_after']} "
                  f"{(r['reason'] or '').splitlines()[0] if r['reason'] else ''}", flush=True)
        code = run.exit_code
    except Exception as e:  # reported to the host, which fails the check with it
        report["error"] = f"{type(e).__name__}: {e}"
        report["traceback"] = traceback.format_exc()
        print(f"STATION ERROR {report['error']}", flush=True)
        code = 3
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
