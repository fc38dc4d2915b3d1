"""OpenCPU app images: the GFH FILE_INFO header in front of the code."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import _core
from .checks import Check, Checked, to_checks


class Model(NamedTuple):
    """A module profile: where its app region starts and how large it is."""

    name: str
    load_address: int
    region_size: int


def models() -> tuple[Model, ...]:
    """Known module profiles.

    >>> [m.name for m in models()]
    ['M66', 'MC60', 'MC60E', 'M26']
    """
    return tuple(Model(*m) for m in _core.models())


def _model_arg(model: str | Model | None) -> str | None:
    if isinstance(model, Model):
        return model.name
    return model


@dataclass(frozen=True)
class AppImage(Checked):
    """An app image file and what its header says.

    ``checks`` holds every check that ran; ``ok`` is True when all passed.
    ``model`` is the module model the image was checked against (detected from
    the load address unless one was given).
    """

    path: Path
    size: int
    load_address: int
    file_length: int
    model: str | None
    fields: dict[str, Any] = field(repr=False)
    checks: tuple[Check, ...] = field(repr=False)

    @classmethod
    def _from(cls, path, fields, checks) -> "AppImage":
        return cls(
            path=Path(path),
            size=fields["image_size"],
            load_address=fields["load_address"],
            file_length=fields["file_length"],
            model=fields["model"],
            fields=fields,
            checks=to_checks(checks),
        )

    @classmethod
    def open(cls, path: str | os.PathLike, model: str | Model | None = "auto") -> "AppImage":
        """Open and check an image; raises ImageError or ModelError on the first
        failed check, FileError when it cannot be read.

        >>> AppImage.open("APP.bin", model="M66").load_address == 0x102C7000
        True
        """
        fields, checks = _core.app_inspect(path, _model_arg(model), strict=True)
        return cls._from(path, fields, checks)

    @classmethod
    def inspect(cls, path: str | os.PathLike, model: str | Model | None = "auto") -> "AppImage":
        """Run every check without raising on failures (see ``ok``, ``failures``)."""
        fields, checks = _core.app_inspect(path, _model_arg(model), strict=False)
        return cls._from(path, fields, checks)

    @classmethod
    def wrap(cls, raw: str | os.PathLike, out: str | os.PathLike,
             model: str | Model) -> "AppImage":
        """Prepend a correct GFH header for ``model`` to a raw binary (what Quectel's
        Windows GFH generator does). ``out`` appears only when complete."""
        name = _model_arg(model)
        if name is None or name.lower() == "auto":
            raise _core.ArgumentError("wrapping needs an explicit model: M66, MC60, MC60E or M26")
        _core.app_wrap(raw, out, name)
        return cls.open(out, model)

    @staticmethod
    def header(load_address: int, file_length: int) -> bytes:
        """The 64-byte GFH header for an image of file_length bytes (header included)."""
        return _core.app_header(load_address, file_length)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "fields": dict(self.fields),
            "checks": [c.to_dict() for c in self.checks],
        }
