"""The `fotabench` command line.

Exit codes: 0 ok, 1 a check failed (or the operation did), 2 usage error.
Errors go to stderr as one line: ``fotabench: error: <what and what to do>``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from . import __version__, _core
from .checks import Check
from .image import AppImage, models
from .package import Package, Special
from .url import ModuleUrl

MODEL_NAMES = [m.name for m in models()]
MODEL_CHOICES = MODEL_NAMES + ["auto"]


class CheckFailed(Exception):
    """Raised by a command whose checks failed after it printed its report."""


def _model_type(value: str) -> str:
    for name in MODEL_CHOICES:
        if value.lower() == name.lower():
            return name
    raise argparse.ArgumentTypeError(
        f"unknown model {value!r} (choose from {', '.join(MODEL_CHOICES)})")


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _hexify(fields: dict) -> dict:
    """Addresses and sizes read best in hex for humans; JSON keeps ints."""
    shown = {}
    for key, value in fields.items():
        if isinstance(value, int) and not isinstance(value, bool) and key in (
                "load_address", "max_size", "content_offset", "jump_offset", "file_type",
                "header_crc", "header_crc_computed", "special"):
            shown[key] = f"0x{value:X}"
        elif isinstance(value, bytes):
            shown[key] = value.decode("ascii", "backslashreplace")
        else:
            shown[key] = value
    return shown


def _print_report(title: str, fields: dict, checks: Sequence[Check]) -> None:
    print(title)
    nested = {k: v for k, v in fields.items() if isinstance(v, dict)}
    for key, value in _hexify(fields).items():
        if key not in nested:
            print(f"  {key:<20} {value}")
    for key, sub in nested.items():
        print(f"  {key}:")
        for k, v in _hexify(sub).items():
            print(f"    {k:<18} {v}")
    print("checks")
    for c in checks:
        print(f"  {'ok' if c.ok else 'FAILED':<7} {c.name:<18} {c.detail}")
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} checks ok, {len(failed)} FAILED" if failed
          else f"all {len(checks)} checks ok")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, bytes):
        return obj.decode("ascii", "backslashreplace")
    return obj


def cmd_app_wrap(args) -> None:
    if args.model == "auto":
        raise _core.ArgumentError("app wrap needs --model M66, MC60, MC60E or M26")
    img = AppImage.wrap(args.raw, args.output, model=args.model)
    print(f"{img.path}: {img.size} bytes, {img.model} app at 0x{img.load_address:08X}")


def cmd_app_inspect(args) -> None:
    img = AppImage.inspect(args.image, model=args.model)
    if args.json:
        _print_json(_jsonable(img.to_dict()))
    else:
        _print_report(f"app image {img.path}", img.fields, img.checks)
    if not img.ok:
        raise CheckFailed


def _default_package_name(app: str) -> str:
    # Quectel's package tool names its output <app>_Upgrade_Package.bin.
    p = Path(app)
    return str(p.with_name(p.stem + "_Upgrade_Package.bin"))


def cmd_package(args) -> None:
    out = args.output or _default_package_name(args.app)
    pkg = Package.build(args.app, out, model=args.model, special=args.special,
                        image_type=args.type)
    app_len = pkg.app["file_length"] if pkg.app else "?"
    print(f"{pkg.path}: {pkg.size} bytes, {pkg.model} app of {app_len} bytes, "
          f"special {args.special}, md5 {pkg.md5}")


def cmd_inspect(args) -> None:
    pkg = Package.inspect(args.package, model=args.model)
    if args.json:
        _print_json(_jsonable(pkg.to_dict()))
    else:
        _print_report(f"package {pkg.path}", pkg.fields, pkg.checks)
    if not pkg.ok:
        raise CheckFailed


def _md5sum_name(name: str) -> tuple[str, str]:
    # GNU md5sum escapes '\\' and newlines and then starts the line with '\\'.
    if "\\" in name or "\n" in name or "\r" in name:
        return "\\", name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "", name


def cmd_md5(args) -> None:
    failed = False
    for name in args.files:
        try:
            if name == "-":
                digest = _core.md5_fd(sys.stdin.buffer.fileno()).hex()
            else:
                digest = _core.md5_file(name).hex()
        except _core.FotabenchError as e:
            print(f"fotabench: {e.message}", file=sys.stderr)
            failed = True
            continue
        prefix, shown = _md5sum_name(name)
        print(f"{prefix}{digest}  {shown}")
    sys.stdout.flush()
    if failed:
        raise CheckFailed


def _print_url(u: ModuleUrl, as_json: bool) -> None:
    if as_json:
        _print_json(u.to_dict())
    else:
        print(u.url)


def cmd_url_http(args) -> None:
    _print_url(ModuleUrl.http(args.host, args.path, port=args.port), args.json)


def cmd_url_ftp(args) -> None:
    _print_url(ModuleUrl.ftp(args.host, args.path, port=args.port, user=args.user,
                             password=args.password), args.json)


def cmd_url_check(args) -> None:
    try:
        u = ModuleUrl.parse(args.url)
    except _core.UrlError as e:
        if args.json:
            _print_json({"url": args.url, "ok": False, "error": e.message})
        else:
            print(f"refused: {e.message}")
        raise CheckFailed from None
    if args.json:
        _print_json({"ok": True, **u.to_dict()})
        return
    print(f"ok: the module decodes {u.url}")
    for key, value in u.to_dict().items():
        if key != "url" and (u.scheme == "ftp" or key not in ("user", "password")):
            print(f"  {key:<11} {value}")


def cmd_models(args) -> None:
    rows = [m._asdict() for m in models()]
    if args.json:
        _print_json(rows)
        return
    for m in models():
        print(f"{m.name:<6} load 0x{m.load_address:08X}  region {m.region_size} bytes "
              f"({m.region_size // 1024} KiB)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fotabench",
        description="Bench harness for Quectel OpenCPU FOTA: package app images, check "
                    "packages and module URLs.")
    p.add_argument("--version", action="version", version=f"fotabench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    app = sub.add_parser("app", help="app images: wrap a raw binary, inspect an image")
    app_sub = app.add_subparsers(dest="app_command", required=True, metavar="ACTION")
    w = app_sub.add_parser("wrap", help="prepend a GFH header to a raw binary")
    w.add_argument("raw", help="raw application binary")
    w.add_argument("--model", type=_model_type, required=True, help="M66, MC60, MC60E, M26")
    w.add_argument("-o", "--output", required=True, help="app image to write")
    w.set_defaults(func=cmd_app_wrap)
    i = app_sub.add_parser("inspect", help="decode and check an app image")
    i.add_argument("image")
    i.add_argument("--model", type=_model_type, default="auto")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_app_inspect)

    pk = sub.add_parser("package", help="build a FOTA package from an app image")
    pk.add_argument("app", help="app image (with its GFH header)")
    pk.add_argument("-o", "--output", help="package to write (default: "
                    "<app>_Upgrade_Package.bin beside the app)")
    pk.add_argument("--model", type=_model_type, default="auto")
    pk.add_argument("--special", choices=["none", "clear-nvram", "format-fs"], default="none")
    pk.add_argument("--type", choices=["app", "core"], default="app",
                    help="image type; only app is accepted by OpenCPU FOTA")
    pk.set_defaults(func=cmd_package)

    ins = sub.add_parser("inspect", help="decode and verify a FOTA package")
    ins.add_argument("package")
    ins.add_argument("--model", type=_model_type, default="auto")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.set_defaults(func=cmd_inspect)

    m = sub.add_parser("md5", help="MD5 of files (md5sum-compatible output; - is stdin)")
    m.add_argument("files", nargs="+", metavar="FILE")
    m.set_defaults(func=cmd_md5)

    u = sub.add_parser("url", help="build or check a URL under the module's rules")
    u_sub = u.add_subparsers(dest="url_command", required=True, metavar="ACTION")
    h = u_sub.add_parser("http", help="http://host[:port]/path")
    h.add_argument("host")
    h.add_argument("path", help="path of the package on the server, e.g. /fota/APP.bin")
    h.add_argument("--port", type=int, default=80)
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=cmd_url_http)
    f = u_sub.add_parser("ftp", help="ftp://host/dir/file:port@user:password")
    f.add_argument("host")
    f.add_argument("path", help="path of the package on the server, e.g. /fota/APP.bin")
    f.add_argument("--port", type=int, default=21)
    f.add_argument("--user", default="anonymous")
    f.add_argument("--password", default="fotabench")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_url_ftp)
    c = u_sub.add_parser("check", help="what the module decodes from a URL, or why it fails")
    c.add_argument("url")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_url_check)

    ml = sub.add_parser("models", help="list the module profiles")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_models)
    __import__(f"{__package__}.cli_serve", fromlist=["add_parser"]).add_parser(sub)
    __import__(f"{__package__}.cli_sim", fromlist=["add_parser"]).add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except CheckFailed:
        return 1
    except _core.FotabenchError as e:
        print(f"fotabench: error: {e.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `fotabench md5 ... | head`: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
