"""JUnit XML of a run: one test case per slot and attempt, as CI tools read it.

Layout (the de-facto format Jenkins, GitLab and pytest share): ``<testsuites>`` with one
``<testsuite>`` per run; each ``<testcase>`` has ``classname`` ``fotabench.<station>.<slot>``,
``name`` ``upgrade <slot> attempt <n>``, ``time`` in seconds and ``<properties>`` imei,
slot, attempt, package_md5, model, record_id (so a CI page shows which module failed).
A fail is a ``<failure type="<check>">``, an error an ``<error type="<cause>">``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Mapping, NamedTuple, Sequence

from .record import Record

__all__ = ["junit_xml", "junit_case", "junit_document", "JunitCase"]


def _time(ns: int) -> str:
    return f"{max(0, ns) / 1e9:.3f}"


def _junit_stamp(utc: str) -> str:
    # JUnit's XSD wants xs:dateTime without a zone suffix (Jenkins reads both).
    return utc.rstrip("Z").split(".")[0]


class JunitCase(NamedTuple):
    """One record's ``<testcase>``, rendered once (a run's junit.xml is rewritten as
    records come: the cases are not rendered again)."""
    key: tuple[str, int, int]          # (slot, attempt, start_ns): the order in the suite
    outcome: str
    duration_ns: int
    xml: str


def junit_case(r: Record, station: str) -> JunitCase:
    case = ET.Element("testcase", classname=f"fotabench.{station}.{r.slot}",
                      name=f"{r.kind} {r.slot} attempt {r.attempt}",
                      time=_time(r.end_ns - r.start_ns))
    cprops = ET.SubElement(case, "properties")
    for key, value in (("imei", r.module.imei), ("slot", r.slot),
                       ("attempt", r.attempt), ("package_md5", r.package.md5),
                       ("model", r.module.model), ("record_id", r.id)):
        ET.SubElement(cprops, "property", name=key, value="" if value is None else str(value))
    if r.outcome == "fail":
        el = ET.SubElement(case, "failure", message=r.reason, type=str(r.check))
        el.text = _case_text(r)
    elif r.outcome == "error":
        el = ET.SubElement(case, "error", message=r.reason, type=str(r.cause))
        el.text = _case_text(r)
    out = ET.SubElement(case, "system-out")
    if r.kind == "flash" and r.flash:   # a flash has phases, not module states
        out.text = " ".join(str(p["phase"]) for p in r.flash.get("phases", ())) or None
    else:
        out.text = "\n".join(f"{s.state}({s.percent})" for s in r.states) or None
    ET.indent(case, level=2)
    return JunitCase((r.slot, r.attempt, r.start_ns), r.outcome, r.end_ns - r.start_ns,
                     ET.tostring(case, encoding="unicode"))


def junit_document(meta: Mapping[str, Any], cases: Sequence[JunitCase]) -> bytes:
    """The junit.xml of a run from its cases (:func:`junit_case`)."""
    station = str(meta.get("station", "station"))
    fails = sum(c.outcome == "fail" for c in cases)
    errors = sum(c.outcome == "error" for c in cases)
    total_ns = sum(c.duration_ns for c in cases)
    root = ET.Element("testsuites", name="fotabench", tests=str(len(cases)),
                      failures=str(fails), errors=str(errors), time=_time(total_ns))
    suite = ET.SubElement(root, "testsuite", name=f"fotabench.{station}",
                          tests=str(len(cases)), failures=str(fails), errors=str(errors),
                          skipped="0", time=_time(total_ns),
                          timestamp=_junit_stamp(str(meta.get("started_utc") or "")),
                          hostname=str(meta.get("host", "")), id="0", package="fotabench")
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "station", "operator", "fotabench_version"):
        if meta.get(key) is not None:
            ET.SubElement(props, "property", name=key, value=str(meta[key]))
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode")
    # The cases go after the suite's properties, before its closing tag (attribute
    # values are escaped: this text occurs only as that tag).
    at = text.rindex("\n  </testsuite>")
    body = "".join(f"\n    {c.xml}" for c in sorted(cases, key=lambda c: c.key))
    text = "<?xml version='1.0' encoding='utf-8'?>\n" + text[:at] + body + text[at:]
    return text.encode("utf-8") + b"\n"


def junit_xml(meta: Mapping[str, Any], records: Sequence[Record]) -> bytes:
    station = str(meta.get("station", "station"))
    return junit_document(meta, [junit_case(r, station) for r in records])


def _case_text(r: Record) -> str:
    lines = [r.reason, f"IMEI {r.module.imei or '?'}, slot {r.slot}, attempt {r.attempt}, "
                       f"package {r.package.path} (md5 {r.package.md5})"]
    if r.logs:
        lines.append("logs: " + ", ".join(f"{k}={v}" for k, v in sorted(r.logs.items())))
    return "\n".join(lines)
