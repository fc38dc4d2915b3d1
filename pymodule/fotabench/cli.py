"""The `fotabench` command line.

Exit codes: 0 ok, 1 a check failed (or the operation did), 2 usage or input error
(a bad argument, an unusable input such as a closed standard input), 130 interrupted
(Ctrl-C), 128+N ended by signal N (SIGTERM 143, SIGHUP 129) after cleaning up.
Errors go to stderr as one line: ``fotabench: error: <what and what to do>``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from . import __version__, _core

TYPE_CHECKING = False  # not typing's: importing typing costs start-up (see __init__)
if TYPE_CHECKING:
    from typing import Sequence

    from .checks import Check
    from .url import ModuleUrl

# The Python layer is imported inside each command, so a command such as `md5` starts
# without it (start-up counts against `openssl dgst` in bench/perf/md5_throughput.py).
MODEL_NAMES = list(dict.fromkeys(m[0] for m in _core.models() if m[0]))
MODEL_CHOICES = MODEL_NAMES + ["auto"]


class CheckFailed(Exception):
    """Raised by a command whose checks failed after it printed its report."""


class InputError(Exception):
    """A usage or input problem found by a command (exit 2), with its one-line reason."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP while a file command runs: unwinds like Ctrl-C, so a build in
    progress removes its temporary file, then exits 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


# Commands that write files: a signal must not leave a temporary file behind.
FILE_COMMANDS = ("app", "package", "inspect", "md5")


def _model_type(value: str) -> str:
    for name in MODEL_CHOICES:
        if value.lower() == name.lower():
            return name
    raise argparse.ArgumentTypeError(
        f"unknown model {value!r} (choose from {', '.join(MODEL_CHOICES)})")


def _address(value: str) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address: {value!r} (e.g. 0x10270000)") from None
    if not 0 <= n <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{value}: a load address is 32 bits")
    return n


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
        elif isinstance(value, tuple):
            shown[key] = ", ".join(map(str, value)) or "none"
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
        shown = {"ok": "ok", "warning": "warning"}.get(c.level, "FAILED")
        print(f"  {shown:<7} {c.name:<18} {c.detail}")
    failed = [c for c in checks if not c.ok]
    warned = [c for c in checks if c.level == "warning"]
    summary = (f"{len(checks) - len(failed)} checks ok, {len(failed)} FAILED" if failed
               else f"all {len(checks)} checks ok")
    if warned:
        summary += f", {len(warned)} warning{'s' if len(warned) > 1 else ''}"
    print(summary)


def _model_shown(model: str | None, candidates: Sequence[str]) -> str:
    """The model, or every candidate when the load address names several."""
    if model:
        return model
    if candidates:
        return " or ".join(candidates) + " (name one with --model)"
    return "unknown model"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, bytes):
        return obj.decode("ascii", "backslashreplace")
    return obj


def cmd_app_wrap(args) -> None:
    from .image import AppImage
    if args.model == "auto":
        raise _core.ArgumentError("app wrap needs --model " + ", ".join(MODEL_NAMES))
    img = AppImage.wrap(args.raw, args.output, model=args.model,
                        load_address=args.load_address)
    print(f"{img.path}: {img.size} bytes, {img.model} app at 0x{img.load_address:08X}")


def cmd_app_inspect(args) -> None:
    from .image import AppImage
    img = AppImage.inspect(args.image, model=args.model)
    if args.json:
        _print_json(_jsonable(img.to_dict()))
    else:
        _print_report(f"app image {img.path}", img.fields, img.checks)
    if not img.ok:
        raise CheckFailed


def _default_package_name(app: str) -> str:
    from pathlib import Path
    # Quectel's package tool names its output <app>_Upgrade_Package.bin.
    p = Path(app)
    return str(p.with_name(p.stem + "_Upgrade_Package.bin"))


def cmd_package(args) -> None:
    from .package import Package
    out = args.output or _default_package_name(args.app)
    pkg = Package.build(args.app, out, model=args.model, special=args.special,
                        image_type=args.type)
    app_len = pkg.app["file_length"] if pkg.app else "?"
    print(f"{pkg.path}: {pkg.size} bytes, {_model_shown(pkg.model, pkg.candidates)} app of "
          f"{app_len} bytes, special {args.special}, md5 {pkg.md5}")
    for c in pkg.warnings:
        print(f"fotabench: warning: {c.name}: {c.detail}", file=sys.stderr)


def cmd_inspect(args) -> None:
    from .package import Package
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


def _stdin_fd() -> int:
    # `fotabench md5 - <&-`: Python then has no sys.stdin at all.
    if sys.stdin is None:
        raise InputError("standard input is closed: nothing to read for '-'")
    return sys.stdin.fileno()


def cmd_md5(args) -> None:
    failed = False
    for name in args.files:
        try:
            if name == "-":
                digest = _core.md5_fd(_stdin_fd()).hex()
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
    from .url import ModuleUrl
    _print_url(ModuleUrl.http(args.host, args.path, port=args.port), args.json)


def cmd_url_ftp(args) -> None:
    from .url import ModuleUrl
    _print_url(ModuleUrl.ftp(args.host, args.path, port=args.port, user=args.user,
                             password=args.password), args.json)


def _undecodable(text: str) -> str | None:
    """Why a command-line string holds bytes that are not UTF-8 (Python keeps them as
    surrogates), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raw = text[e.start:e.end].encode("utf-8", "surrogateescape")
        return f"byte 0x{raw[0]:02x} at position {e.start} is not valid UTF-8"
    return None


def cmd_url_check(args) -> None:
    from .url import ModuleUrl
    bad = _undecodable(args.url)
    try:
        if bad:
            # Before the parser: it takes text. The module's URL is ASCII anyway.
            raise _core.UrlError(f"{bad}: a module URL is ASCII")
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
    from .image import models
    rows = models()
    if args.json:
        _print_json([m._asdict() for m in rows])
        return
    print("model  load address  app region              evidence")
    for m in rows:
        region = (f"0x{m.region_size:05X} ({m.region_size // 1024} KiB)" if m.region_size
                  else "unknown")
        print(f"{m.name or '?':<6} 0x{m.load_address:08X}    {region:<23} {m.evidence}: "
              f"{m.source}")
    print("An address may name several models and a model may have several addresses; "
          "name the model with --model where it matters.")


_MODEL_HELP = (f"{', '.join(MODEL_NAMES)} or auto (default: every model the load address "
               "names; an address may name several)")


def _add_app(sub: argparse._SubParsersAction) -> None:
    app = sub.add_parser("app", help="app images: wrap a raw binary, inspect an image")
    app_sub = app.add_subparsers(dest="app_command", required=True, metavar="ACTION")
    w = app_sub.add_parser("wrap", help="prepend a GFH header to a raw binary")
    w.add_argument("raw", help="raw application binary")
    w.add_argument("--model", type=_model_type, required=True, help=", ".join(MODEL_NAMES))
    w.add_argument("--load-address", type=_address, default=None,
                   help="another app address of the model (e.g. 0x10270000 for an M26 "
                        "variant); default: its usual one (see `fotabench models`)")
    w.add_argument("-o", "--output", required=True, help="app image to write")
    w.set_defaults(func=cmd_app_wrap)
    i = app_sub.add_parser("inspect", help="decode and check an app image")
    i.add_argument("image")
    i.add_argument("--model", type=_model_type, default="auto", help=_MODEL_HELP)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_app_inspect)


def _add_package(sub: argparse._SubParsersAction) -> None:
    pk = sub.add_parser("package", help="build a FOTA package from an app image")
    pk.add_argument("app", help="app image (with its GFH header)")
    pk.add_argument("-o", "--output", help="package to write (default: "
                    "<app>_Upgrade_Package.bin beside the app)")
    pk.add_argument("--model", type=_model_type, default="auto", help=_MODEL_HELP)
    pk.add_argument("--special", choices=["none", "clear-nvram", "format-fs"], default="none")
    pk.add_argument("--type", choices=["app", "core"], default="app",
                    help="image type; only app is accepted by OpenCPU FOTA")
    pk.set_defaults(func=cmd_package)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    ins = sub.add_parser("inspect", help="decode and verify a FOTA package")
    ins.add_argument("package")
    ins.add_argument("--model", type=_model_type, default="auto", help=_MODEL_HELP)
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.set_defaults(func=cmd_inspect)


def _add_md5(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("md5", help="MD5 of files (md5sum-compatible output; - is stdin)")
    m.add_argument("files", nargs="+", metavar="FILE")
    m.set_defaults(func=cmd_md5)


def _add_url(sub: argparse._SubParsersAction) -> None:
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


def _add_models(sub: argparse._SubParsersAction) -> None:
    ml = sub.add_parser("models", help="list the module profiles")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_models)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from .cli_serve import add_parser
    add_parser(sub)


def _add_sim(sub: argparse._SubParsersAction) -> None:
    from .cli_sim import add_parser
    add_parser(sub)


def _add_station(sub: argparse._SubParsersAction) -> None:
    from .cli_station import add_parser
    add_parser(sub)


def _add_runs(sub: argparse._SubParsersAction) -> None:
    from .cli_records import add_runs
    add_runs(sub)


def _add_record(sub: argparse._SubParsersAction) -> None:
    from .cli_records import add_record
    add_record(sub)


def _add_report(sub: argparse._SubParsersAction) -> None:
    from .cli_records import add_report
    add_report(sub)


def _add_flash(sub: argparse._SubParsersAction) -> None:
    from .cli_flash import add_parser
    add_parser(sub)


def _add_upgrade(sub: argparse._SubParsersAction) -> None:
    from .cli_bench import add_parsers
    add_parsers(sub, "upgrade")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from .cli_bench import add_parsers
    add_parsers(sub, "demo")


COMMANDS = {"app": _add_app, "package": _add_package, "inspect": _add_inspect, "md5": _add_md5,
            "url": _add_url, "models": _add_models, "serve": _add_serve, "sim": _add_sim,
            "station": _add_station, "runs": _add_runs, "record": _add_record,
            "report": _add_report, "flash": _add_flash, "upgrade": _add_upgrade,
            "demo": _add_demo}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or only ``command``'s part of it: a command line that names its
    command parses without building the others (start-up time of station scripts
    that call the CLI in a loop); help and errors otherwise come from the whole one."""
    p = argparse.ArgumentParser(
        prog="fotabench",
        description="Bench harness for Quectel OpenCPU FOTA: app images, packages, module "
                    "URLs, package servers, virtual modules, records and reports.")
    p.add_argument("--version", action="version", version=f"fotabench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in COMMANDS.items():
        if command is None or name == command:
            add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args = parser.parse_args(words)
    if args.command in FILE_COMMANDS and argv is None:
        import signal
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _raise_terminated)
    try:
        rc = args.func(args)   # a command may return its own exit code (station check: 2)
        sys.stdout.flush()  # a full disk or closed pipe shows here, not at exit
    except CheckFailed:
        return 1
    except InputError as e:
        print(f"fotabench: error: {e}", file=sys.stderr)
        return 2
    except _core.ArgumentError as e:
        print(f"fotabench: error: {e.message}", file=sys.stderr)
        return 2
    except _core.FotabenchError as e:
        print(f"fotabench: error: {e.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `fotabench md5 ... | head`: not an error of ours.
        _stdout_to_devnull()
        return 1
    except OSError as e:
        if e.filename is not None:
            print(f"fotabench: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 1
        # Writing the output failed (`> /dev/full`): say so in one line.
        _stdout_to_devnull()
        print(f"fotabench: error: writing the output failed: {e.strerror or e}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fotabench: interrupted", file=sys.stderr)
        return 130
    except Terminated as t:
        print(f"fotabench: stopped by signal {t.signum}", file=sys.stderr)
        return 128 + t.signum
    return rc if isinstance(rc, int) else 0


def _stdout_to_devnull() -> None:
    """So that the interpreter's own flush at exit does not fail (and print) again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
