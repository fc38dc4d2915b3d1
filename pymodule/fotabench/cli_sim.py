"""`fotabench sim`: run one virtual module (the board program of firmware/sim)."""
from __future__ import annotations

import os
import sys


def cmd_sim(args) -> None:
    from .sim import SimError, agent_image, board_args, sim_binary, _child_env  # only for `sim`

    binary = sim_binary()
    if not binary.exists():
        print(f"fotabench: error: {binary} not found: build it with `make build` (in a "
              f"checkout), or set FOTABENCH_SIM", file=sys.stderr)
        raise SystemExit(1)
    app = args.app
    if args.agent:
        if app:
            print("fotabench: error: give --app or --agent, not both", file=sys.stderr)
            raise SystemExit(2)
        try:
            app = os.fspath(agent_image(args.agent, args.model or "M66"))  # the module's model
        except SimError as exc:
            print(f"fotabench: error: {exc}", file=sys.stderr)
            raise SystemExit(1)
    argv = [os.fspath(binary)] + board_args(
        app, args.state, boot_timing=args.boot_timing, link_rate=args.link_rate,
        latency_ms=args.latency_ms, attach_fail=args.attach_fail, pdp_fail=args.pdp_fail,
        wdt_timeout=args.wdt_timeout, http_timeout=args.http_timeout,
        ftp_retry_ms=args.ftp_retry_ms, flash_rate=args.flash_rate,
        power=None if args.power is None else args.power == "on", reflash=args.reflash,
        model=args.model, package_check=args.package_check, ftp_short_url=args.ftp_short_url,
        blank=args.blank, download=args.download, line_fault=args.line_fault,
        imei=args.imei)
    sys.stdout.flush()
    # The board prints the JSON line and runs until SIGTERM/SIGINT: become it.
    os.execve(argv[0], argv, _child_env())


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sim", help="run a virtual module (prints one JSON line, runs until SIGTERM)",
        description="Power on a virtual module (M66, MC60, MC60E, M26 or MC20) running the "
                    "bench agent. Prints one JSON line (uart1, uart2, gpio, pid, state, model, "
                    "chip, imei), then runs until SIGTERM or SIGINT. "
                    "The state directory keeps the module's flash between runs.")
    p.add_argument("--app", help="app image (flashed when the state's app area is empty)")
    p.add_argument("--agent", metavar="VERSION",
                   help="flash fotabench's bench agent of this version (for --model) instead "
                        "of --app (an installed package carries 1.0.0 and 2.0.0 of every "
                        "model; a checkout builds any)")
    p.add_argument("--state", required=True, help="state directory (the module's flash)")
    p.add_argument("--boot-timing", choices=["real", "fast"], default=None,
                   help="core delays as on a module (default) or divided by 100")
    p.add_argument("--link-rate", default=None,
                   help="downlink bits/s or 'unlimited' (default 50000)")
    p.add_argument("--latency-ms", type=int, default=None,
                   help="added before each connection set-up (default 420)")
    p.add_argument("--attach-fail", action="store_true", help="GPRS never attaches")
    p.add_argument("--pdp-fail", action="store_true", help="PDP activation fails")
    p.add_argument("--wdt-timeout", type=float, default=None,
                   help="external watchdog timeout in s, 0 = no chip (default 1.6)")
    p.add_argument("--http-timeout", type=int, default=None,
                   help="HTTP seconds without data before failure (default 120)")
    p.add_argument("--ftp-retry-ms", type=int, default=None,
                   help="pause between FTP connection tries (default 2000)")
    p.add_argument("--flash-rate", type=float, default=None,
                   help="boot loader copy speed, bytes/s (0 = instant)")
    p.add_argument("--power", choices=["on", "off"], default=None,
                   help="power the module on at start (default on)")
    p.add_argument("--reflash", action="store_true",
                   help="write --app into the app area even if one is there")
    p.add_argument("--model", type=str.upper, default=None,
                   choices=["M66", "MC60", "MC60E", "M26", "MC20"],
                   help="module model: app region and chip (default M66)")
    p.add_argument("--package-check", choices=["md5", "full"], default=None,
                   help="what Ql_FOTA_Finish checks: the MD5 trailer (default), or also the "
                        "header and the app against the model")
    p.add_argument("--ftp-short-url", choices=["refuse", "accept"], default=None,
                   help="FTP URL without :port or @user:password: a decode failure "
                        "(default) or the note's defaults")
    p.add_argument("--imei", default=None,
                   help="the module's IMEI for AT+GSN (15 digits, Luhn; default: kept in "
                        "the state directory)")
    p.add_argument("--blank", action="store_true",
                   help="erase the app area first (a module to flash over UART)")
    p.add_argument("--download", choices=["pwrkey", "always"], default=None,
                   help="BootROM handshake window at power-up with PWRKEY held low (default) "
                        "or at every power-up")
    p.add_argument("--line-fault", default=None, metavar="flip|drop:FIRST:COUNT",
                   help="UART1 corrupts the download agent's write packets FIRST.. (COUNT)")
    p.set_defaults(func=cmd_sim)
