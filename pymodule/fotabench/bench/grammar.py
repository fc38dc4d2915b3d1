"""The real grammar of FOTA callback states (spec opencpu-fota.md section 2), as data.

A bench that expects the documented "ideal" sequence fails real modules; a bench that
accepts anything misses a broken one. The grammars below are what the SDK actually
reports, written once, here, per protocol; :func:`check_states` walks a sequence seen
on the UART against one and returns a :class:`StateCheck` whose ``str()`` shows the
sequence seen, the grammar expected and the point where they part::

    >>> from fotabench.bench.grammar import check_states
    >>> r = check_states("http", [("UP_START", 0), ("UP_CONNECTED", 0),
    ...                           ("UP_GETTING_FILE", 0), ("UP_GET_FILE_OK", 100)],
    ...                  host_is_ip=False)
    >>> r.ok, r.index, r.seen[r.index]
    (False, 3, ('UP_GET_FILE_OK', 100))

A grammar is a list of :class:`Step` (a state, the percentages it may carry, how many
times it may repeat) for the successful path, plus failure :class:`Ending` s that may
cut in after given steps. The walk is greedy: the steps of one grammar never accept the
same (state, percent), so there is nothing to backtrack.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

__all__ = ["STATES", "Step", "Ending", "Grammar", "StateCheck", "grammar_for",
           "check_states", "host_is_ip_literal"]

#: Upgrade_State, in enum order 0..9 (spec section 2).
STATES = ("UP_FOTAINITFAIL", "UP_START", "UP_URLDECODEFAIL", "UP_CONNECTING",
          "UP_CONNECTED", "UP_GETTING_FILE", "UP_GET_FILE_OK", "UP_SYSTEM_REBOOT",
          "UP_UPGRADFAILED", "FOTA_STATE_END")

State = tuple[str, int]

ZERO = frozenset({0})
HUNDRED = frozenset({100})
PROGRESS = frozenset(range(5, 100, 5))  # 5..95: multiples of 5 strictly between


@dataclass(frozen=True)
class Step:
    """One step: ``state`` carrying one of ``percents``, seen between ``min`` and
    ``max`` times in a row (``max`` None: any number; duplicates are real).
    ``rising``: the percentages within the step never decrease."""

    state: str
    percents: frozenset[int] = ZERO
    min: int = 1
    max: Optional[int] = 1
    rising: bool = False
    note: str = ""

    def accepts(self, st: State) -> bool:
        return st[0] == self.state and st[1] in self.percents

    def __str__(self) -> str:
        if self.percents == PROGRESS:
            pct = "5..95 (multiples of 5" + (", never decreasing)" if self.rising else ")")
        elif len(self.percents) > 2 and max(self.percents) - min(self.percents) + 1 == len(
                self.percents):
            pct = f"{min(self.percents)}..{max(self.percents)}" + (
                " (never decreasing)" if self.rising else "")
        else:
            pct = ",".join(str(p) for p in sorted(self.percents))
        if self.max == 0:
            return f"{self.state} {pct} (never here)"
        reps = {(1, 1): "", (0, 1): " (optional)", (1, None): " (1 or more)",
                (0, None): " (0 or more)"}.get((self.min, self.max),
                                              f" ({self.min}..{self.max or 'n'} times)")
        return f"{self.state} {pct}{reps}"


@dataclass(frozen=True)
class Ending:
    """A failure ending: ``steps`` that may follow the successful path's step
    ``after`` (indices into ``Grammar.steps``; the step must have been seen at least
    once), ending the sequence. An empty ``steps`` means: the sequence may simply
    stop there (no callback at all, e.g. FTP's five failed connections)."""

    name: str
    after: frozenset[int]
    steps: tuple[Step, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Grammar:
    """What one protocol's callback sequence may look like."""

    protocol: str
    host_is_ip: Optional[bool]
    steps: tuple[Step, ...]
    endings: tuple[Ending, ...] = ()
    never: tuple[str, ...] = ()   # states this protocol never reports
    vocabulary: Optional[tuple[str, ...]] = None  # every state name there is (None: any)
    notes: tuple[str, ...] = field(default=())

    @property
    def success_state(self) -> str:
        return self.steps[-1].state

    def describe(self) -> str:
        """The grammar as lines a person reads in a failure message."""
        host = {None: "host kind unknown", True: "host is an IP literal",
                False: "host is a name"}[self.host_is_ip]
        out = [f"{self.protocol.upper()} ({host}):"]
        for i, s in enumerate(self.steps):
            out.append(f"  {i + 1}. {s}" + (f"  -- {s.note}" if s.note else ""))
        for e in self.endings:
            after = ", ".join(str(i + 1) for i in sorted(e.after) if i >= 0)
            where = f"after step {after}" if after else "from the start"
            if -1 in e.after and after:
                where = f"from the start or after step {after}"
            what = " then ".join(str(s) for s in e.steps) or "no further callback"
            out.append(f"  or, {where}: {what} [{e.name}]"
                       + (f"  -- {e.note}" if e.note else ""))
        if self.never:
            out.append(f"  never: {', '.join(self.never)}")
        out.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(out)

    def check(self, seen: Iterable[State], *, complete: bool = True) -> "StateCheck":
        return _walk(self, tuple((str(s), int(p)) for s, p in seen), complete)


def host_is_ip_literal(host: Optional[str]) -> Optional[bool]:
    """True for an IP literal, False for a name, None when unknown."""
    if not host:
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


# ---- the grammars -------------------------------------------------------------------

_FAILED = Step("UP_UPGRADFAILED", ZERO, 1, 2, note="any failure; sometimes reported twice")


def _http(host_is_ip: Optional[bool]) -> Grammar:
    connecting = Step("UP_CONNECTING", ZERO,
                      min={True: 1, False: 0, None: 0}[host_is_ip],
                      max={True: 1, False: 0, None: 1}[host_is_ip],
                      note="only when the host is an IP literal, never for a name")
    steps = (
        Step("UP_START"),
        connecting,
        Step("UP_CONNECTED"),
        Step("UP_GETTING_FILE", ZERO, 1, None),
        Step("UP_GETTING_FILE", PROGRESS, 0, None, rising=True,
             note="duplicates likely, small files may skip steps"),
        Step("UP_GETTING_FILE", HUNDRED, 1, None),
        Step("UP_SYSTEM_REBOOT", HUNDRED),
    )
    return Grammar(
        "http", host_is_ip, steps,
        endings=(
            Ending("failed", frozenset(range(0, 6)), (_FAILED,)),
            Ending("url decode failed", frozenset({0}),
                   (Step("UP_URLDECODEFAIL"), Step("UP_UPGRADFAILED", ZERO, 0, 2)),
                   note="the SDK carries on after the decode failure and normally "
                        "ends in UP_UPGRADFAILED"),
        ),
        never=("UP_GET_FILE_OK", "UP_FOTAINITFAIL"), vocabulary=STATES,
        notes=("UP_GET_FILE_OK is never reported over HTTP",))


def _ftp(host_is_ip: Optional[bool]) -> Grammar:
    steps = (
        Step("UP_START"),
        Step("UP_CONNECTING"),
        Step("UP_CONNECTED"),
        Step("UP_GETTING_FILE", ZERO, note="no intermediate percentages: the core "
                                           "fetches the whole file into RAM first"),
        Step("UP_GET_FILE_OK", HUNDRED),
        Step("UP_SYSTEM_REBOOT", HUNDRED),
    )
    return Grammar(
        "ftp", host_is_ip, steps,
        endings=(
            Ending("url decode failed", frozenset({-1}), (Step("UP_URLDECODEFAIL"),),
                   note="UP_URLDECODEFAIL 0 alone; StartUpgrade returns -1"),
            Ending("connection failed", frozenset({1}), (),
                   note="5 tries 2 s apart, then NO callback: only a reset request "
                        "to the app (+FBRESETREQ from the bench agent)"),
            Ending("failed", frozenset(range(0, 5)), (_FAILED,)),
        ),
        never=("UP_FOTAINITFAIL",), vocabulary=STATES,
        notes=("no percentages between 0 and 100",))


def grammar_for(protocol: str, host_is_ip: Optional[bool] = None) -> Grammar:
    """The grammar of ``protocol`` ("http" or "ftp") for a URL whose host is (True) or
    is not (False) an IP literal; None when unknown (UP_CONNECTING then optional)."""
    if protocol == "http":
        return _http(host_is_ip)
    if protocol == "ftp":
        return _ftp(host_is_ip)
    raise ValueError(f"no state grammar for protocol {protocol!r} (http or ftp)")


# ---- the check ------------------------------------------------------------------------

@dataclass(frozen=True)
class StateCheck:
    """The verdict on one sequence. ``ok``: it follows the grammar (and, when checked
    as complete, reached an end). ``ending``: "success", a failure ending's name, or
    None. ``index``: where the sequence parts from the grammar (len(seen) when it
    stopped too early); ``expected``: what the grammar allowed there."""

    grammar: Grammar
    seen: tuple[State, ...]
    ok: bool
    ending: Optional[str]
    index: Optional[int] = None
    expected: tuple[str, ...] = ()
    reason: str = ""

    @property
    def succeeded(self) -> bool:
        return self.ok and self.ending == "success"

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        head = (f"{self.grammar.protocol.upper()} states follow the grammar"
                f" (ending: {self.ending})" if self.ok else
                f"{self.grammar.protocol.upper()} states part from the grammar: {self.reason}")
        items = [f"{s} {p}" for s, p in self.seen] or ["(no state)"]
        lines = [head, "seen:"]
        for i, it in enumerate(items):
            mark = "   <-- parts here" if (not self.ok and self.index == i) else ""
            lines.append(f"  {i + 1:3d}. {it}{mark}")
        if not self.ok and self.index is not None and self.index >= len(self.seen):
            lines.append(f"  {len(self.seen) + 1:3d}. (nothing more)   <-- parts here")
        if not self.ok and self.expected:
            lines.append("expected there: " + " | ".join(self.expected))
        lines.append("grammar: " + self.grammar.describe())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"protocol": self.grammar.protocol, "host_is_ip": self.grammar.host_is_ip,
                "ok": self.ok, "ending": self.ending, "index": self.index,
                "expected": list(self.expected), "reason": self.reason,
                "seen": [list(s) for s in self.seen]}


def _run(steps: Sequence[Step], seen: tuple[State, ...], i: int,
         start: int = 0) -> tuple[int, int, list[int]]:
    """Greedy walk of ``steps`` from seen[i]. Returns (next index into seen, index of
    the first step not satisfied (len(steps) when all are), counts per step)."""
    counts = [0] * len(steps)
    k = start
    last_pct = -1
    while k < len(steps):
        st = steps[k]
        if i < len(seen) and st.accepts(seen[i]) and (st.max is None or counts[k] < st.max):
            if st.rising and seen[i][1] < last_pct:
                return i, k, counts   # a decrease inside a rising step
            last_pct = seen[i][1]
            counts[k] += 1
            i += 1
            continue
        if counts[k] < st.min:
            return i, k, counts
        k += 1
        last_pct = -1
    return i, k, counts


def _walk(g: Grammar, seen: tuple[State, ...], complete: bool) -> StateCheck:
    n = len(seen)
    i, k, counts = _run(g.steps, seen, 0)
    if k == len(g.steps) and i == n:
        return StateCheck(g, seen, True, "success")
    # Which steps were reached (seen at least once, or optional and passed)?
    reached = {j for j in range(len(g.steps)) if counts[j] > 0}
    # Try each failure ending where the success path stopped.
    best: Optional[tuple[int, Ending]] = None
    for e in g.endings:
        last = max(reached) if reached else -1
        if last not in e.after:
            continue
        j, m, _ = _run(e.steps, seen, i)
        if m == len(e.steps) and j == n:
            return StateCheck(g, seen, True, e.name)
        if j > i and (best is None or j > best[0]):
            best = (j, e)
    if best is not None and best[0] < n:
        # Into a failure ending, and then something more: part there.
        j, e = best
        return StateCheck(g, seen, False, None, j, ("no further state",),
                          f"{seen[j][0]} {seen[j][1]} after the sequence ended "
                          f"[{e.name}]")
    # It parts: say where and what was allowed there.
    expected: list[str] = []
    if k < len(g.steps):
        for kk in range(k, len(g.steps)):
            expected.append(str(g.steps[kk]))
            if g.steps[kk].min > 0 and not (kk == k and counts[kk] >= g.steps[kk].min):
                break
    last = max(reached) if reached else -1
    for e in g.endings:
        if last in e.after:
            expected.append((str(e.steps[0]) if e.steps else "no further callback")
                            + f" [{e.name}]")
    if i < n:
        st = seen[i]
        if st[0] in g.never:
            reason = f"{st[0]} is never reported over {g.protocol.upper()}"
        elif g.vocabulary is not None and st[0] not in g.vocabulary:
            reason = f"{st[0]} is not a state of this protocol"
        elif (k < len(g.steps) and g.steps[k].rising and g.steps[k].accepts(st)) or (
                i > 0 and seen[i - 1][0] == st[0] and st[1] < seen[i - 1][1]
                and any(s2.rising and s2.state == st[0] for s2 in g.steps)):
            reason = f"percentage went down: {seen[i - 1][1]} then {st[1]}"
        elif st[0] == "UP_GETTING_FILE" and st[1] % 5:
            reason = f"percentage {st[1]} is not a multiple of 5"  # HTTP's rule
        elif st[0] == "UP_CONNECTING" and g.host_is_ip is False:
            reason = "UP_CONNECTING for a host name (only an IP literal host gets it)"
        elif (k < len(g.steps) and counts[k] < g.steps[k].min
              and any(s2.accepts(st) for s2 in g.steps[k + 1:])):
            reason = f"{g.steps[k].state} missing before {st[0]} {st[1]}"
            if g.steps[k].state == "UP_CONNECTING" and g.host_is_ip:
                reason = "UP_CONNECTING missing for an IP literal host"
        else:
            reason = f"{st[0]} {st[1]} not allowed after " + (
                f"{seen[i - 1][0]} {seen[i - 1][1]}" if i else "the start")
        return StateCheck(g, seen, False, None, i, tuple(expected), reason)
    if not complete:
        return StateCheck(g, seen, True, None)
    missing = g.steps[k] if k < len(g.steps) else None
    reason = (f"the sequence stopped before {missing.state}" if missing
              else "the sequence stopped early")
    if missing is not None and missing.state == "UP_CONNECTING" and g.host_is_ip:
        reason = "UP_CONNECTING missing for an IP literal host"
    return StateCheck(g, seen, False, None, i, tuple(expected), reason)


def check_states(protocol: str, seen: Iterable[State], *, host_is_ip: Optional[bool] = None,
                 complete: bool = True) -> StateCheck:
    """Check ``seen`` ((state, percent) pairs) against the protocol's grammar.
    ``complete=False`` accepts a sequence that is a valid beginning (for live checks)."""
    return grammar_for(protocol, host_is_ip).check(seen, complete=complete)
