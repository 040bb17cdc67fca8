"""Command line: ``swtpm-extcap convert ...``, ``install``, and Wireshark's extcap calls.

:func:`main` is the one error funnel of the commands: a :class:`UserError`
becomes one line on stderr and its exit code here, and nowhere else (the
extcap calls have theirs in :func:`swtpm_extcap.extcap.protocol.extcap_main`).
Only ``sys`` and the tiny modules below are imported before a capture has
its stop handlers (see :mod:`swtpm_extcap.extcap.signals`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .errors import (
    PROG,
    UsageError,
    UserError,
    error_line,
    reason,
    route_warnings,
    say,
    silence_stdout,
)

if TYPE_CHECKING:
    import argparse

#: the widest --start-time: 9999-12-31 23:59:59 UTC (pcapng holds microseconds in 64 bits)
MAX_START_TIME = 253402300799.0


def _start_time(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_START_TIME):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; give seconds since the epoch (0 to"
            f" {MAX_START_TIME:.0f}), e.g. 1732600000"
        )
    return value


def build_parser(*, with_install: bool = True) -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse whose errors are one :class:`UsageError` line, like every other."""

        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{message} (see {self.prog} --help)")

    parser = Parser(
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
        "--no-line-comments", dest="line_comments", action="store_false",
        help="no 'swtpm log line N: ...' comment on every frame (the swtpm Wireshark plugin"
        " shows the line and run as fields); defects, run starts and pcr: notes stay comments",
    )
    conv.add_argument(
        "--start-time",
        type=_start_time,
        metavar="EPOCH",
        help="clock start for logs without an [id=<epoch>] prefix (default: the log ends at its"
        " modification time; README, Timestamps)",
    )
    conv.add_argument(
        "--strict", action="store_true", help="exit with status 3 when the log has defects"
    )
    if with_install:  # its module costs ~10 ms of imports: not for `convert`
        from .wireshark.install import add_install_parser

        add_install_parser(sub)  # type: ignore[arg-type]  # a subclass of ArgumentParser
        from .commands.pcrs import add_pcrs_parser

        add_pcrs_parser(sub)  # type: ignore[arg-type]
        from .commands.explain import add_explain_parser

        add_explain_parser(sub)  # type: ignore[arg-type]
    return parser


def is_extcap_call(argv: Sequence[str]) -> bool:
    return any(a.startswith("--extcap-") or a in ("--capture", "--fifo") for a in argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    route_warnings()  # stderr carries our one error line and nothing else
    if is_extcap_call(args):
        stop = None
        if "--capture" in args:  # before any other import: a stop at once is a clean stop
            from .extcap.signals import StopSignals

            stop = StopSignals().install()
        from .extcap.protocol import extcap_main

        return extcap_main(args, stop)
    try:
        return _command(args)
    except UserError as exc:
        say(error_line(exc))
        return exc.exit_code
    except BrokenPipeError:  # the reader of stdout went away: a clean stop
        silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # one the commands did not name: still one line
        say(f"{PROG}: {getattr(exc, 'filename', None) or 'error'}: {reason(exc)}\n")
        return 1


def _command(args: list[str]) -> int:
    parser = build_parser(with_install=args[:1] != ["convert"])
    ns = parser.parse_args(args)
    if ns.command == "convert":
        from .commands.convert import ConvertSettings, convert_main

        return convert_main(
            ConvertSettings(
                logs=tuple(ns.logs),
                output=ns.output,
                ctrl=ns.ctrl,
                start_time=ns.start_time,
                strict=ns.strict,
                line_comments=ns.line_comments,
            )
        )
    if ns.command == "install":
        from .wireshark.install import install_main

        return install_main(ns)
    if ns.command == "pcrs":
        from .commands.pcrs import pcrs_main, settings_from

        return pcrs_main(settings_from(ns))
    if ns.command == "explain":
        from .commands.explain import explain_main, settings_from as explain_settings

        return explain_main(explain_settings(ns))
    if sys.stdout is not None:
        parser.print_help()
    return 2
