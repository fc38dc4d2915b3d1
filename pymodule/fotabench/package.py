"""OpenCPU FOTA upgrade packages: header + app image + padding + MD5."""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _core
from .checks import Check, Checked, to_checks
from .image import Model, _model_arg


class Special(enum.IntFlag):
    """The package's special option (what the core does after the upgrade)."""

    NONE = 0
    CLEAR_NVRAM = 1
    FORMAT_FS = 2

    @classmethod
    def parse(cls, value: "str | int | Special") -> "Special":
        """Accepts a Special, an int, or 'none' / 'clear-nvram' / 'format-fs'."""
        if isinstance(value, str):
            names = {"none": cls.NONE, "clear-nvram": cls.CLEAR_NVRAM,
                     "format-fs": cls.FORMAT_FS}
            try:
                return names[value.lower()]
            except KeyError:
                raise _core.ArgumentError(
                    f"unknown special option {value!r}: use none, clear-nvram or format-fs"
                ) from None
        return cls(int(value))


IMAGE_TYPES = {"app": 0, "core": 1, "core-delta": 2}


@dataclass(frozen=True)
class Package(Checked):
    """A FOTA package file and everything checked about it.

    ``md5`` is the digest stored in the trailer (hex); ``app`` the embedded app
    image's header fields; ``checks`` every check that ran (``ok`` when none failed;
    ``warnings`` lists what passed but is worth knowing, such as a checksum type 0).
    ``model`` and ``candidates`` are the embedded app's, as in ``AppImage``.

    >>> Package.inspect("v2.bin")                       # doctest: +SKIP
    <Package v2.bin FAILED md5 model=M66 size=... md5=...>
    """

    path: Path
    size: int
    payload_length: int
    special: Special
    md5: str | None
    model: str | None
    candidates: tuple[str, ...]
    fields: dict[str, Any] = field(repr=False)
    checks: tuple[Check, ...] = field(repr=False)

    @property
    def app(self) -> dict[str, Any] | None:
        return self.fields["app"]

    @classmethod
    def _from(cls, path, fields, checks) -> "Package":
        app = fields["app"]
        special = fields["special"]
        return cls(
            path=Path(path),
            size=fields["file_size"],
            payload_length=fields["payload_length"],
            special=Special(special) if (special & ~3) == 0 else special,
            md5=fields["md5"],
            model=app["model"] if app else None,
            candidates=tuple(app["candidates"]) if app else (),
            fields=fields,
            checks=to_checks(checks),
        )

    @classmethod
    def build(cls, app: str | os.PathLike, out: str | os.PathLike,
              model: str | Model | None = "auto", special: "str | int | Special" = "none",
              image_type: str = "app") -> "Package":
        """Package an app image. The image is checked first (against ``model``, or the
        model its load address names); the package is written to a temporary file,
        verified, then renamed to ``out``, so a failure never leaves a partial file.
        Only ``image_type='app'`` is accepted: OpenCPU FOTA cannot upgrade the Core."""
        try:
            type_code = IMAGE_TYPES[image_type]
        except KeyError:
            raise _core.ArgumentError(
                f"unknown image type {image_type!r}: use app (core and core-delta are "
                "refused by OpenCPU FOTA)") from None
        # The verification of what this call wrote, before the rename: re-opening out
        # could report another writer's package.
        fields, checks = _core.package_build(app, out, _model_arg(model),
                                             int(Special.parse(special)), type_code)
        return cls._from(out, fields, checks)

    @classmethod
    def open(cls, path: str | os.PathLike, model: str | Model | None = "auto") -> "Package":
        """Open and verify a package; raises the first failed check's error
        (ChecksumError, PackageError, ImageError, ModelError, UnsupportedError)."""
        fields, checks = _core.package_inspect(path, _model_arg(model), strict=True)
        return cls._from(path, fields, checks)

    @classmethod
    def inspect(cls, path: str | os.PathLike, model: str | Model | None = "auto") -> "Package":
        """Run every check without raising on failures (see ``ok``, ``failures``)."""
        fields, checks = _core.package_inspect(path, _model_arg(model), strict=False)
        return cls._from(path, fields, checks)

    def verify(self) -> "Package":
        """Check the file again as it is now (it may have changed on disk); raises on
        the first failure, returns the fresh result otherwise."""
        return Package.open(self.path, self.model or "auto")

    def __repr__(self) -> str:
        # A damaged package must not look like a good one: the verdict comes first.
        verdict = "ok" if self.ok else "FAILED " + ",".join(c.name for c in self.failures)
        if self.warnings:
            verdict += " warnings=" + ",".join(c.name for c in self.warnings)
        return (f"<Package {self.path} {verdict} model={self.model} size={self.size} "
                f"md5={self.md5}>")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "fields": dict(self.fields),
            "checks": [c.to_dict() for c in self.checks],
        }
