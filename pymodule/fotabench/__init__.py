"""fotabench: bench harness for Quectel OpenCPU FOTA upgrades.

Packaging pipeline (this release)::

    >>> import fotabench
    >>> app = fotabench.AppImage.wrap("app_raw.bin", "APP.bin", model="M66")
    >>> pkg = fotabench.Package.build("APP.bin", "APP_Upgrade_Package.bin")
    >>> pkg.md5
    '...'
    >>> str(fotabench.ModuleUrl.http("192.168.1.10", "/fota/APP_Upgrade_Package.bin"))
    'http://192.168.1.10/fota/APP_Upgrade_Package.bin'

Every error is a :class:`FotabenchError` carrying the C core's ``code``,
``code_name`` and ``message``.
"""
from ._core import (
    ArgumentError,
    ChecksumError,
    CryptoError,
    FileError,
    FotabenchError,
    ImageError,
    ModelError,
    PackageError,
    UnsupportedError,
    UrlError,
    library_versions,
)
from .checks import Check
from .checksum import md5_file
from .image import AppImage, Model, models
from .package import Package, Special
from .url import ModuleUrl

__version__ = "0.1.0"

__all__ = [
    "AppImage",
    "ArgumentError",
    "Check",
    "ChecksumError",
    "CryptoError",
    "FileError",
    "FotabenchError",
    "ImageError",
    "Model",
    "ModelError",
    "ModuleUrl",
    "Package",
    "PackageError",
    "Special",
    "UnsupportedError",
    "UrlError",
    "library_versions",
    "md5_file",
    "models",
]
