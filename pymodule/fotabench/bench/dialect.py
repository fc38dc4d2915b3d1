"""How a module's app speaks about an upgrade: the UART lines that are states, the
boot line, the version query and the trigger. fotabench's bench agent is the default
(:data:`AGENT`); an app with its own protocol plugs in a :class:`Dialect` of its own::

    mine = Dialect(
        "myapp",
        states=(StatePattern(r"^dl (?P<percent>\\d+)%$", "DOWNLOADING"),
                StatePattern(r"^rebooting", "REBOOT", 100),
                StatePattern(r"^dl error", "FAILED")),
        ready=r"^\\*\\*\\* myapp (?P<version>\\S+) up",
        version_command="ver", version_pattern=r"^ver (?P<version>\\S+)",
        command_end="done",
        trigger="fetch {url} {md5}", trigger_ok=r"^accepted",
        success=("REBOOT",), failure=("FAILED",))
    Upgrade(dut, "fw.bin", dialect=mine).run()

A trigger is a command template (``{url}``, ``{md5}``, ``{size}``, ``{protocol}``,
``{name}``) or a callable ``trigger(dut, info) -> None`` that raises
:class:`TriggerRefused` when the module refuses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from .grammar import Grammar, grammar_for

__all__ = ["Dialect", "StatePattern", "TriggerInfo", "TriggerRefused", "AGENT"]


class TriggerRefused(Exception):
    """The module answered the trigger with a refusal (a failure of the module, not of
    the bench): the message says what it answered."""


@dataclass(frozen=True)
class TriggerInfo:
    """What a trigger gets: the URL to fetch and the package it points at."""

    url: str
    protocol: str
    md5: Optional[str]
    size: int
    name: str

    def format(self, template: str) -> str:
        return template.format(url=self.url, protocol=self.protocol, md5=self.md5 or "",
                               size=self.size, name=self.name)


@dataclass(frozen=True)
class StatePattern:
    """A UART line that is a state: ``regex`` (searched in the line); the state is
    ``state``, or the regex's group ``state`` when ``state`` is None; the percentage
    the group ``percent``, else ``percent``."""

    regex: str
    state: Optional[str] = None
    percent: int = 0

    def __post_init__(self) -> None:
        rx = re.compile(self.regex)
        if self.state is None and "state" not in rx.groupindex:
            raise ValueError(f"state pattern {self.regex!r}: give a state name or a "
                             "(?P<state>...) group")


GrammarFactory = Callable[[str, Optional[bool]], Grammar]
Trigger = Union[str, Callable[[Any, TriggerInfo], None]]


@dataclass(frozen=True)
class Dialect:
    """A line protocol for upgrades (see the module docstring).

    ``ready``: the boot announcement, a regex with a ``version`` group (and optionally
    ``build``). ``version_command``/``version_pattern``: how to ask the running
    version (None: only the boot line tells it). ``command_end``: the line that ends
    a command's answer (None: AT final results: OK, ERROR, +CME ERROR...).
    ``trigger_ok``: a regex an answer line must match for the trigger to count as
    accepted (None: the AT result OK); ``trigger_refused``: a regex of an answer line
    that means "refused" even with OK (the agent's ``+FBUPG: <ret>``).
    ``success``/``failure``: states that end the download; ``end_lines``: regexes of
    lines that end it with no state (the agent's ``+FBRESETREQ``).
    ``grammar``: (protocol, host_is_ip) -> Grammar, or None for no sequence check.
    ``urc_prefixes``: line starts the AT engine must never take as a command's answer.
    ``at``: the module answers AT commands (``AT`` liveness, ``AT+CGATT?`` attach,
    ``AT+GSN``/``AT+CGMM`` identity). ``packaging``: "fota" (a FOTA package; an app
    image is packaged first) or "raw" (the file is served as given)."""

    name: str
    states: tuple[StatePattern, ...]
    ready: str
    trigger: Trigger
    version_command: Optional[str] = None
    version_pattern: Optional[str] = None
    command_end: Optional[str] = None
    trigger_ok: Optional[str] = None
    trigger_refused: Optional[str] = None
    success: tuple[str, ...] = ("UP_SYSTEM_REBOOT",)
    failure: tuple[str, ...] = ("UP_UPGRADFAILED",)
    end_lines: tuple[str, ...] = ()
    grammar: Optional[GrammarFactory] = None
    urc_prefixes: tuple[str, ...] = ()
    at: bool = False
    packaging: str = "raw"
    liveness_command: Optional[str] = None
    _compiled: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.packaging not in ("fota", "raw"):
            raise ValueError(f"packaging must be 'fota' or 'raw', got {self.packaging!r}")
        rx_ready = re.compile(self.ready)
        if "version" not in rx_ready.groupindex:
            raise ValueError(f"ready pattern {self.ready!r} needs a (?P<version>...) group")
        if self.version_command and not self.version_pattern:
            raise ValueError("version_command needs a version_pattern")
        object.__setattr__(self, "_compiled", (
            tuple((re.compile(p.regex), p) for p in self.states), rx_ready,
            tuple(re.compile(e) for e in self.end_lines)))

    # -- reading lines ------------------------------------------------------------------
    def parse_state(self, line: str) -> Optional[tuple[str, int]]:
        """(state, percent) when ``line`` is a state line, else None."""
        for rx, p in self._compiled[0]:
            m = rx.search(line)
            if m:
                st = p.state if p.state is not None else m.group("state")
                pct = int(m.group("percent")) if "percent" in rx.groupindex else p.percent
                return st, pct
        return None

    def parse_ready(self, line: str) -> Optional[tuple[str, str]]:
        """(version, build) when ``line`` is the boot announcement."""
        m = self._compiled[1].search(line)
        if not m:
            return None
        build = m.group("build") if "build" in m.re.groupindex else ""
        return m.group("version"), build or ""

    def is_end_line(self, line: str) -> bool:
        return any(rx.search(line) for rx in self._compiled[2])

    def grammar_for(self, protocol: str, host_is_ip: Optional[bool]) -> Optional[Grammar]:
        return None if self.grammar is None else self.grammar(protocol, host_is_ip)


#: fotabench's bench agent (spec bench-agent.md): the default dialect.
AGENT = Dialect(
    "fotabench-agent",
    states=(StatePattern(r"^\+FBSTATE: (?P<state>\w+),(?P<percent>-?\d+)"),),
    ready=r'^\+FBREADY: "(?P<version>[^"]*)","(?P<build>[^"]*)"',
    version_command="AT+FBVER?",
    version_pattern=r'^\+FBVER: "(?P<version>[^"]*)","(?P<build>[^"]*)"',
    trigger='AT+FBUPG="{url}"',
    trigger_refused=r"^\+FBUPG: (?P<ret>-?\d+)",
    end_lines=(r"^\+FBRESETREQ",),
    grammar=grammar_for,
    urc_prefixes=("+FBSTATE:", "+FBREADY:", "+FBRESETREQ"),
    at=True,
    packaging="fota",
    liveness_command="AT",
)
