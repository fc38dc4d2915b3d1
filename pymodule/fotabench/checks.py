"""Named checks, as the C core reports them for images and packages."""
from __future__ import annotations

from typing import NamedTuple


class Check(NamedTuple):
    """One check: ``name`` (stable id), ``ok``, ``code`` (the error a failure maps
    to, e.g. ``'FB_ERR_CHECKSUM'``; ``'FB_OK'`` when passed) and ``detail``."""

    name: str
    ok: bool
    code: str
    detail: str

    def to_dict(self) -> dict:
        return self._asdict()


class Checked:
    """``ok`` and ``failures`` of anything that holds ``checks`` (images, packages)."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)


def to_checks(raw) -> tuple[Check, ...]:
    return tuple(Check(*c) for c in raw)
