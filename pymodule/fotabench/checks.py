"""Named checks, as the C core reports them for images and packages."""
from __future__ import annotations

from typing import NamedTuple


class Check(NamedTuple):
    """One check: ``name`` (stable id), ``ok``, ``code`` (the error a failure maps
    to, e.g. ``'FB_ERR_CHECKSUM'``; ``'FB_OK'`` when passed), ``detail`` and ``level``:
    ``'ok'``, ``'warning'`` (passed, but not what Quectel's tools write, or not
    checkable: ``ok`` is True) or ``'failed'``."""

    name: str
    ok: bool
    code: str
    detail: str
    level: str = "ok"

    @property
    def warning(self) -> bool:
        return self.level == "warning"

    def to_dict(self) -> dict:
        return self._asdict()


class Checked:
    """``ok``, ``failures`` and ``warnings`` of anything that holds ``checks``."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings do not fail)."""
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.warning)


def to_checks(raw) -> tuple[Check, ...]:
    return tuple(Check(*c) for c in raw)
