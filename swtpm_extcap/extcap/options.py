"""The capture options as data: one declaration drives argparse, ``--extcap-config``
and the defaults; :func:`build_settings` checks a capture call before any I/O.

Each :class:`Option` is one ``arg`` line of Wireshark's options dialog (and its
``value`` lines); :func:`parse_request` reads Wireshark's arguments with the
same declarations, and :func:`build_settings` turns them into the frozen
:class:`CaptureSettings` that the capture engine gets, or one
:class:`~swtpm_extcap.errors.UsageError` line that says what to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, NoReturn, cast

from ..errors import PROG, UsageError
from ..interfaces.demo import DEMO_NAME
from ..interfaces.remote import SSH_INTERFACE
from .capture_filter import parse_capture_filter
from .dialog import Choice, Option, tooltip_text

if TYPE_CHECKING:
    from ..remote.ssh import SSHParams

Start = Literal["all", "new"]  # whole log then follow / only records written after the start
Runs = Literal["all", "last"]  # every run / only the backlog's last run
Mode = Literal["follow", "replay"]  # tail -F / stop at the end of the log


LOG_LEVELS = {
    # Wireshark's level names (ws_log_set_level_str) -> Python logging levels
    "noisy": 5,
    "debug": 10,
    "info": 20,
    "message": 25,
    "warning": 30,
    "critical": 50,
    "error": 40,
}

#: the options dialog's tabs: what is captured; how the capture ends and how fast the
#: backlog comes; where debug messages go
CAPTURE, FOLLOW_OR_REPLAY, DEBUG = "Capture", "Follow or replay", "Debug"

OPTIONS: tuple[Option, ...] = (
    Option(
        "--start", "Start with", "radio",
        "What to show first: the records the log already holds (its backlog), then the new"
        " ones as swtpm writes them; or only records written after the capture starts",
        CAPTURE, "all",
        (Choice("all", "Whole log, then new records"), Choice("new", "Only new records")),
    ),
    Option(
        "--runs", "Runs", "radio",
        "A log holds one run per VM start (Proxmox appends). 'Last run only' leaves out the"
        " backlog's earlier runs; runs that start during the capture are always shown",
        CAPTURE, "all",
        (Choice("all", "All runs"), Choice("last", "Last run only")),
    ),
    Option(
        "--ctrl", "Include control-channel messages", "boolflag",
        "Show swtpm's control channel (CMD_INIT, SET_LOCALITY, ...) as TCP port 2323 from"
        " 127.0.0.2 next to the TPM traffic on port 2321",
        CAPTURE, "true",
    ),
    Option(
        "--line-comments", "Log line comment on every frame", "boolflag",
        "Write 'swtpm log line N: ...' as a packet comment on every frame. The swtpm"
        " plugin shows the log line and run as fields (swtpm.line, swtpm.run) without it;"
        " turn this on for a Wireshark without the plugin. Defects, run starts and pcr:"
        " notes are always comments",
        CAPTURE, "false",
    ),
    Option(
        "--mode", "At the end of the log", "radio",
        "Follow: keep the capture open and show records as they are appended (tail -F)."
        " Replay: stop the capture at the end of the log",
        FOLLOW_OR_REPLAY, "follow",
        (Choice("follow", "Follow (live)"), Choice("replay", "Stop at end of log (replay)")),
    ),
    Option(
        "--pace-ms", "Delay per record (ms)", "unsigned",
        "Wait this long after each record of the backlog, so that a replay unfolds like a live"
        " capture (0: as fast as possible). Records appended later are never delayed",
        FOLLOW_OR_REPLAY, "0", range=(0, 10000),
    ),
    Option(
        "--log-level", "Set the log level", "selector", "Set the log level", DEBUG, "message",
        (
            Choice("message", "Message"),
            Choice("info", "Info"),
            Choice("debug", "Debug"),
            Choice("noisy", "Noisy"),
        ),
    ),
    Option(
        "--log-file", "Use a file for logging", "fileselect",
        "Set a file where log messages are written", DEBUG, extra="{mustexist=false}",
    ),
)

#: the demo is a paced replay of a finished log, so that it looks alive and then ends
DEMO_DEFAULTS = {"--mode": "replay", "--pace-ms": "50"}


def options_for(interface: str) -> tuple[Option, ...]:
    """The options of ``interface``: :data:`OPTIONS`, with the demo's own defaults
    (``swtpm-ssh``: sshdump's server and login options first)."""
    from .ssh_options import SSH_OPTIONS

    if interface == SSH_INTERFACE:
        return SSH_OPTIONS + OPTIONS
    if interface != DEMO_NAME:
        return OPTIONS
    return tuple(
        replace(o, default=DEMO_DEFAULTS[o.call]) if o.call in DEMO_DEFAULTS else o
        for o in OPTIONS
    )


def config_lines(interface: str) -> list[str]:
    """The ``--extcap-config`` answer: ``arg`` lines, each followed by its ``value`` lines."""
    lines: list[str] = []
    for number, o in enumerate(options_for(interface)):
        head = f"arg {{number={number}}}{{call={o.call}}}{{display={o.display}}}{{type={o.type}}}"
        head += f"{{tooltip={tooltip_text(o.tooltip)}}}"
        if o.range is not None:
            head += f"{{range={o.range[0]},{o.range[1]}}}"
        if o.type in ("boolflag", "unsigned") and o.default:
            head += f"{{default={o.default}}}"
        head += f"{{required=false}}{o.extra}{{group={o.group}}}"
        lines.append(head)
        for c in o.choices:
            default = "{default=true}" if c.value == o.default else ""
            lines.append(f"value {{arg={number}}}{{value={c.value}}}{{display={c.display}}}{default}")
    return lines


@dataclass(frozen=True)
class CaptureSettings:
    """Everything a capture needs, checked before any I/O."""

    interface: str
    fifo: str
    start: Start = "all"
    runs: Runs = "all"
    mode: Mode = "follow"
    ctrl: bool = True
    pace_ms: int = 0
    line_comments: bool = False  # "swtpm log line N: ..." on every frame
    codes: frozenset[int] | None = None  # capture filter: TPM command codes to keep
    filter_text: str = ""
    #: swtpm-ssh: how to log in and the log's path there (its options; the password is
    #: left out of the repr, so logging the settings shows no secret)
    ssh: SSHParams | None = None
    ssh_log: str = ""


@dataclass(frozen=True)
class Request:
    """One parsed extcap call: the verb flags and the raw option values."""

    interfaces: bool
    dlts: bool
    config: bool
    capture: bool
    reload_option: str | None
    version: str | None
    interface: str
    fifo: str
    capture_filter: str | None
    log_level: str  # checked by build_settings: one of LOG_LEVELS
    log_file: str
    values: dict[str, str | None]  # option call -> given value (None: not given)
    ctrl: bool
    line_comments: bool = False


def parse_request(argv: Sequence[str]) -> Request:
    """Read Wireshark's arguments; unknown ones are ignored, never an error."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"bad extcap arguments: {message}")

    p = _Parser(prog=PROG, add_help=False, allow_abbrev=False)
    # the verbs: Wireshark's own arguments
    p.add_argument("--extcap-interfaces", action="store_true")
    p.add_argument("--extcap-version", nargs="?", const="")
    p.add_argument("--extcap-dlts", action="store_true")
    p.add_argument("--extcap-config", action="store_true")
    p.add_argument("--extcap-interface", default="")
    p.add_argument("--extcap-capture-filter")
    p.add_argument("--capture", action="store_true")
    p.add_argument("--fifo", default="")
    from .ssh_options import SSH_OPTIONS

    for o in OPTIONS + SSH_OPTIONS:
        if o.type == "boolflag":
            p.add_argument(o.call, action="store_true")
        else:
            p.add_argument(o.call)
    args = list(argv)
    reload_option = None
    if "--extcap-reload-option" in args:  # its value is an option's call: "--mode"
        at = args.index("--extcap-reload-option")
        reload_option = args[at + 1] if at + 1 < len(args) else ""
        del args[at : at + 2]
    ns, _unknown = p.parse_known_args(args)
    values = {o.call: getattr(ns, o.dest) for o in OPTIONS + SSH_OPTIONS if o.type != "boolflag"}
    return Request(
        interfaces=ns.extcap_interfaces,
        dlts=ns.extcap_dlts,
        config=ns.extcap_config,
        capture=ns.capture,
        reload_option=reload_option,
        version=ns.extcap_version,
        interface=ns.extcap_interface,
        fifo=ns.fifo,
        capture_filter=ns.extcap_capture_filter,
        log_level=ns.log_level or "message",
        log_file=ns.log_file or "",
        values=values,
        ctrl=ns.ctrl,
        line_comments=ns.line_comments,
    )


def build_settings(req: Request) -> CaptureSettings:
    """Check every option of a capture call; :class:`UsageError` says what to change."""
    if not req.interface:
        raise UsageError("--capture needs --extcap-interface NAME (see --extcap-interfaces)")
    if not req.fifo:
        raise UsageError("--capture needs --fifo PATH (the pipe Wireshark reads)")
    options = {o.call: o for o in options_for(req.interface)}
    chosen: dict[str, str] = {}
    for call, given in req.values.items():
        o = options.get(call)
        if o is None:  # another interface's option (swtpm-ssh's server fields)
            continue
        value = o.default if given is None else given
        if o.choices and value not in {c.value for c in o.choices}:
            allowed = ", ".join(c.value for c in o.choices)
            raise UsageError(f"{call} {value!r} is not one of: {allowed}")
        chosen[call] = value
    pace_text = chosen["--pace-ms"]
    try:
        pace = int(pace_text)
    except ValueError:
        pace = -1
    low, high = options["--pace-ms"].range or (0, 0)
    if not low <= pace <= high:
        raise UsageError(f"--pace-ms {pace_text!r}: give whole milliseconds from {low} to {high}")
    if chosen["--start"] == "new" and chosen["--mode"] == "replay":
        raise UsageError(
            "--start new with --mode replay would show nothing: choose 'Whole log' to replay"
            " the log, or 'Follow' to wait for new records"
        )
    codes = parse_capture_filter(req.capture_filter or "")
    if req.log_level not in LOG_LEVELS:
        raise UsageError(
            f"--log-level {req.log_level!r} is not one of: {', '.join(LOG_LEVELS)}"
        )
    from .ssh_options import ssh_target

    ssh, ssh_log = ssh_target(req.values) if req.interface == SSH_INTERFACE else (None, "")
    return CaptureSettings(
        interface=req.interface,
        fifo=req.fifo,
        start=cast(Start, chosen["--start"]),
        runs=cast(Runs, chosen["--runs"]),
        mode=cast(Mode, chosen["--mode"]),
        ctrl=req.ctrl,
        pace_ms=pace,
        line_comments=req.line_comments,
        codes=codes,
        filter_text=(req.capture_filter or "").strip(),
        ssh=ssh,
        ssh_log=ssh_log,
    )
