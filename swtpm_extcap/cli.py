"""Command line: ``swtpm-extcap convert ...``, ``install``, and Wireshark's extcap calls."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import UserError

PROG = "swtpm-extcap"


def _start_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; give seconds since the epoch, e.g. 1732600000"
        ) from None


def build_parser(*, with_install: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Turn SWTPM debug logs into pcapng that Wireshark's TPM dissector decodes."
        " Run by Wireshark as an extcap (see --extcap-interfaces), or use the commands below.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    conv = sub.add_parser(
        "convert",
        help="convert swtpm logs to pcapng files",
        description="Convert swtpm logs (written with --log file=...,level=20) to pcapng."
        " With several logs and -o, each log becomes its own pcapng section in OUT.",
    )
    conv.add_argument("logs", nargs="+", metavar="LOG", help="swtpm log file, or - for stdin")
    conv.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output file, or - for stdout (default: the log's name with .pcapng)",
    )
    conv.add_argument(
        "--no-ctrl", dest="ctrl", action="store_false", help="leave control-channel messages out"
    )
    conv.add_argument(
        "--start-time",
        type=_start_time,
        metavar="EPOCH",
        help="clock start for logs without an [id=<epoch>] prefix (default: the log's mtime)",
    )
    conv.add_argument(
        "--strict", action="store_true", help="exit with status 3 when the log has defects"
    )
    if with_install:  # its module costs ~10 ms of imports: not for `convert`
        from .install import add_install_parser

        add_install_parser(sub)
        from .pcrs import add_pcrs_parser

        add_pcrs_parser(sub)
    return parser


def _is_extcap_call(argv: Sequence[str]) -> bool:
    return any(a.startswith("--extcap-") or a in ("--capture", "--fifo") for a in argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if _is_extcap_call(args):
        from .extcap import extcap_main

        return extcap_main(args)
    parser = build_parser(with_install=args[:1] != ["convert"])
    ns = parser.parse_args(args)
    try:
        if ns.command == "convert":
            from .convert import ConvertSettings, convert_main

            return convert_main(
                ConvertSettings(
                    logs=tuple(ns.logs),
                    output=ns.output,
                    ctrl=ns.ctrl,
                    start_time=ns.start_time,
                    strict=ns.strict,
                )
            )
        if ns.command == "install":
            from .install import install_main

            return install_main(ns)
        if ns.command == "pcrs":
            from .pcrs import pcrs_main, settings_from

            return pcrs_main(settings_from(ns))
        parser.print_help()
        return 2
    except UserError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
