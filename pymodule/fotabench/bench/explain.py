"""What a failed upgrade looked like, for a person reading a test failure: the outcome
and why, the state sequence seen against the grammar expected (where they part), the
watchdog's longest gap, the server's transfers, the bench's power moves, and the tail
of the slot's UART log with its path. ``UpgradeResult.explain()`` and
``UpgradeResult.assert_pass()`` use it; the pytest plugin shows it under a failed test.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .grammar import Grammar
    from .upgrade import Attempt, UpgradeResult

__all__ = ["UpgradeFailed", "explain", "uart_tail"]

#: How many lines of the UART log a failure shows.
UART_TAIL_LINES = 20


class UpgradeFailed(AssertionError):
    """An upgrade that was asserted to pass did not: ``str()`` is :func:`explain`."""

    def __init__(self, result: "UpgradeResult", text: str) -> None:
        super().__init__(text)
        self.result = result


def uart_tail(path: Optional[str], lines: int = UART_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a port log (``t_ns <|> bytes`` per chunk), or []."""
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            tail = deque(f, maxlen=lines)
    except OSError:
        return []
    return [b.rstrip(b"\r\n").decode("utf-8", "replace") for b in tail]


def _grammar_text(result: "UpgradeResult", att: "Attempt",
                  grammar: Optional["Grammar"]) -> list[str]:
    g = att.grammar
    if not att.states and g is None:
        return ["states: none reported"]
    if grammar is None and g is not None and result.dialect == "fotabench-agent":
        from .grammar import grammar_for
        grammar = grammar_for(g["protocol"], g["host_is_ip"])
    if grammar is not None:
        # The StateCheck's own text: seen, the point where it parts, expected, grammar.
        return str(grammar.check([(s.state, s.percent) for s in att.states])).splitlines()
    out = ["states seen (no grammar for this dialect):"]
    out += [f"  {i + 1:3d}. {s.state} {s.percent}" for i, s in enumerate(att.states)]
    return out


def _watchdog_text(att: "Attempt") -> str:
    w = att.watchdog
    if not w:
        return "watchdog: not watched (no WDI line, or the upgrade stopped before the trigger)"
    gap, timeout = w["longest_gap_ns"] / 1e6, w["timeout_ns"] / 1e6
    verdict = ("OVER the chip's timeout" if w.get("over_timeout") else
               "over 2/3 of the chip's timeout" if w.get("over_two_thirds") else "ok")
    lost = f", {w['lost']} edges lost" if w.get("lost") else ""
    return (f"watchdog: longest WDI gap {gap:.0f} ms (limit {timeout * 2 / 3:.0f} ms = 2/3 of "
            f"{timeout:.0f} ms): {verdict}; {w.get('edges', 0)} edges{lost}")


def _transfer_text(t: dict[str, Any]) -> str:
    faults = f" [{', '.join(t['faults'])}]" if t.get("faults") else ""
    detail = f" ({t['detail']})" if t.get("detail") else ""
    return (f"  {t.get('protocol', '?')} {t.get('path') or t.get('file') or ''}: "
            f"{t.get('outcome')}{faults}, {t.get('bytes_sent', 0)} of {t.get('size', 0)} B"
            f"{detail}")


def explain(result: "UpgradeResult", *, grammar: Optional["Grammar"] = None,
            uart_lines: int = UART_TAIL_LINES) -> str:
    """A failure report of ``result`` (its last attempt in full, the others in a line
    each). ``grammar``: the dialect's grammar when it is not the bench agent's."""
    r = result
    att = r.attempts[-1] if r.attempts else None
    what = {"pass": "PASS", "fail": f"FAIL [{r.check}]", "error": f"ERROR [{r.cause}]"}
    out = [f"upgrade of slot {r.slot} ({r.model or '?'}, IMEI {r.imei or '?'}): "
           f"{what.get(r.outcome, r.outcome)} after {len(r.attempts)} attempt(s), "
           f"{r.duration:.1f} s",
           f"package: {r.package} ({r.package_size if r.package_size is not None else '?'} B,"
           f" md5 {r.package_md5 or '?'}) over {r.protocol}"
           + (f": {r.url}" if r.url else ""),
           f"versions: {r.version_before or '?'} -> {r.version_after or '?'}"
           + (f" (expected {r.expected_version})" if r.expected_version else "")]
    if r.outcome != "pass":
        reason = r.reason.splitlines() or [""]
        # A grammar reason is the StateCheck's whole text: shown once, below.
        out.append(f"reason: {reason[0]}")
        if r.check != "grammar":
            out += [f"  {ln}" for ln in reason[1:]]
    if len(r.attempts) > 1:
        out.append("attempts:")
        for a in r.attempts:
            why = a.check or a.cause or ""
            first = a.reason.splitlines()[0] if a.reason and a.outcome != "pass" else ""
            out.append(f"  {a.number}. {a.outcome}" + (f" [{why}]" if why else "")
                       + (f": {first}" if first else ""))
    if att is not None:
        out += _grammar_text(r, att, grammar)
        out.append(_watchdog_text(att))
        if att.transfers:
            out.append("transfers (the package server's record):")
            out += [_transfer_text(t) for t in att.transfers]
        if att.power_events:
            out.append("power moves by the bench: " + ", ".join(
                f"{p['what']}" + (f" ({p['detail']})" if p.get("detail") else "")
                for p in att.power_events))
    uart = r.logs.get("uart1")
    if uart:
        tail = uart_tail(uart, uart_lines)
        out.append(f"UART log {uart} (last {len(tail)} lines):")
        out += [f"  {ln}" for ln in tail] or ["  (empty)"]
    else:
        out.append("UART log: none kept (open the Dut with log_dir=)")
    if r.logs.get("timeline"):
        out.append(f"timeline: {r.logs['timeline']}")
    return "\n".join(out)


def assert_pass(result: "UpgradeResult", grammar: Optional["Grammar"] = None) -> None:
    if result.outcome != "pass":
        raise UpgradeFailed(result, explain(result, grammar=grammar))
