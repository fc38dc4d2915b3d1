"""OpenCPU app images: the GFH FILE_INFO header in front of the code."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import _core
from .checks import Check, Checked, to_checks


class Model(NamedTuple):
    """One app region a module model was seen to use (opencpu-fota.md §6): a model may
    have several rows (the M26 loads at 0x1021B000 or 0x10270000), an address may have
    several models (MC60 and MC20 share 0x102DB000).

    ``name`` is None for an address seen in a single source that does not record the
    model; ``region_size`` is 0 where no linker script says it; ``evidence`` is
    ``'linker-scripts'`` (the SDKs' linker scripts) or ``'seen-once'``; ``source`` says
    where the row comes from."""

    name: str | None
    load_address: int
    region_size: int
    evidence: str = "linker-scripts"
    source: str = ""


def models() -> tuple[Model, ...]:
    """Every known (model, app address) row, from the C core's table.

    >>> sorted({m.name for m in models() if m.name})
    ['M26', 'M66', 'MC20', 'MC60', 'MC60E']
    """
    return tuple(Model(*m) for m in _core.models())


def model_names() -> tuple[str, ...]:
    """The names ``model=`` accepts (besides ``'auto'``), in table order."""
    seen: dict[str, None] = {}
    for m in _core.models():
        if m[0]:
            seen.setdefault(m[0])
    return tuple(seen)


def _model_arg(model: str | Model | None) -> str | None:
    if isinstance(model, Model):
        if model.name is None:
            raise _core.ArgumentError(
                f"the row at 0x{model.load_address:08X} names no model: pass a model name")
        return model.name
    return model


@dataclass(frozen=True)
class AppImage(Checked):
    """An app image file and what its header says.

    ``checks`` holds every check that ran; ``ok`` is True when none failed
    (``warnings`` may still say something). ``model`` is the module model the image was
    checked against: the one given, or the only one its load address names; None when
    the address names several (``candidates``, e.g. ``('MC60', 'MC20')``: pass
    ``model=`` to choose) or none.

    >>> AppImage.inspect("APP.bin")                    # doctest: +SKIP
    <AppImage APP.bin ok model=M66 load_address=0x102c7000 file_length=0x1e4 size=484>
    """

    path: Path
    size: int
    load_address: int
    file_length: int
    model: str | None
    candidates: tuple[str, ...]
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
            candidates=tuple(fields["candidates"]),
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
             model: str | Model, load_address: int | None = None) -> "AppImage":
        """Prepend a correct GFH header for ``model`` to a raw binary (what Quectel's
        Windows GFH generator does). The header gets the model's usual load address,
        or ``load_address`` (another address of that model, e.g. the M26's
        0x10270000; a ``Model`` row brings its own). ``out`` appears only when
        complete."""
        name = _model_arg(model)
        if name is None or name.lower() == "auto":
            raise _core.ArgumentError(
                "wrapping needs an explicit model: " + ", ".join(model_names()))
        if load_address is None and isinstance(model, Model):
            load_address = model.load_address
        # The check of what this call wrote, not a re-read of out (another writer may
        # have replaced it since).
        fields, checks = _core.app_wrap(raw, out, name, load_address)
        return cls._from(out, fields, checks)

    @staticmethod
    def header(load_address: int, file_length: int) -> bytes:
        """The 64-byte GFH header for an image of file_length bytes (header included)."""
        return _core.app_header(load_address, file_length)

    def __repr__(self) -> str:
        verdict = "ok" if self.ok else "FAILED " + ",".join(c.name for c in self.failures)
        if self.warnings:
            verdict += " warnings=" + ",".join(c.name for c in self.warnings)
        return (f"<AppImage {self.path} {verdict} model={self.model} "
                f"load_address={self.load_address:#x} file_length={self.file_length:#x} "
                f"size={self.size}>")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "fields": dict(self.fields),
            "checks": [c.to_dict() for c in self.checks],
        }
