"""Wireshark's extcap protocol: the verbs, and the one error funnel of an extcap call.

Wireshark runs the launcher four ways (see ``extcap/extcap-base.c``)::

    --extcap-interfaces [--extcap-version=4.0]     one "interface" line per SWTPM log
    --extcap-dlts --extcap-interface swtpm-103      the link type (Ethernet)
    --extcap-config --extcap-interface swtpm-103    the options dialog (swtpm_extcap.extcap.options)
    --capture --extcap-interface swtpm-103 --fifo PATH [options]

plus ``--extcap-capture-filter F --extcap-interface X`` (without ``--capture``)
to check a capture filter: nothing on stdout means valid, else one line saying
what is wrong. Unknown arguments are ignored, so a newer Wireshark that adds
some does not break the listing.

stdout carries the protocol; stderr is what Wireshark shows the user in an
error dialog, so it gets one line on an error and nothing otherwise. Debug
messages go to ``--log-file`` only (:mod:`swtpm_extcap.extcap.debuglog`).

``--capture`` resolves the interface to its log's location, opens its source
(:func:`swtpm_extcap.sources.open_source`) and hands both, with the fifo
(:mod:`swtpm_extcap.extcap.fifo`), to the capture engine (:mod:`swtpm_extcap.extcap.capture`).
Stop: SIGTERM or SIGINT, Wireshark's death (:mod:`swtpm_extcap.extcap.signals`), or a
reader that closes the fifo end the capture with exit 0 and nothing on stderr.

Windows (not tested): Wireshark ends an extcap there with TerminateProcess, so
no handler runs and nothing can be flushed at the end; the launcher is a ``.bat``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import (
    PROG,
    Stopped,
    UsageError,
    UserError,
    clip,
    error_line,
    printable,
    reason,
    say,
    silence_stdout,
)
from ..interfaces.demo import DEMO_DISPLAY, DEMO_NAME
from .capture_filter import check_filter
from .options import Request, build_settings, config_lines, parse_request

if TYPE_CHECKING:  # the listing verbs must stay fast: the capture parts are imported lazily
    import logging
    import threading

    from ..interfaces.settings import Config
    from .fifo import Fifo
    from .options import CaptureSettings
    from .signals import StopSignals

DLT_LINE = "dlt {number=1}{name=EN10MB}{display=Ethernet (TPM over TCP 2321)}"
#: the name of a listing line that is a note, not a log (e.g. a glob cut short)
LISTING_NOTE = "swtpm-listing-note"
#: the listing line that says why the settings file was skipped: a Wireshark user
#: never sees the listing's stderr, so the list itself says it
CONFIG_ERROR = "swtpm-config-error"
#: where to look again after a change (Wireshark's menu; tshark lists afresh each run)
REFRESH = "refresh the interface list (Capture > Refresh Interfaces)"
#: the longest display text of a listing line (a note quotes the settings file: bounded)
MAX_DISPLAY = 500
#: the project's help page, shipped in the package: the options dialog's Help button
HELP_PAGE = ("data", "help.html")


def extcap_main(argv: Sequence[str], stop: StopSignals | None = None) -> int:
    """Answer one extcap call; returns the exit status.

    The one error funnel of the extcap calls: a :class:`UserError` is one line
    on stderr and its exit code (a capture then releases Wireshark's fifo);
    a reader that went away or a stop signal is a clean exit 0; anything else
    is a bug, said in one line (the traceback goes to ``--log-file``).
    ``stop``: the capture's stop handlers, installed by the caller as early as
    it can (:func:`swtpm_extcap.cli.main`); the listing verbs need none, and
    import neither the fifo nor the signal parts."""
    fifo: Fifo | None = None
    if "--capture" in argv:
        from .fifo import Fifo
        from .signals import StopSignals

        fifo = Fifo(_fifo_arg(argv))
        stop = stop if stop is not None else StopSignals()
    try:
        return _answer(argv, fifo, stop)
    except UserError as exc:
        say(error_line(exc))
        _release(fifo, stop)
        return exc.exit_code
    except BrokenPipeError:  # Wireshark closed stdout or the fifo: it no longer listens
        silence_stdout()
        return 0
    except Stopped:  # still busy (a write the reader never takes) after a stop signal
        _log().info("stop signal: a write to the fifo was still blocked after the grace time")
        if fifo is not None:
            fifo.abandon()
        return 0
    except Exception as exc:  # a bug: one line for the dialog, the traceback to --log-file
        _log().exception("internal error")
        say(error_line(UserError(
            f"internal error: {type(exc).__name__}: {exc} (please report it; with --log-file"
            " set, the log has the traceback)"
        )))
        _release(fifo, stop)
        return 1
    finally:
        if fifo is not None:
            fifo.close()
        if stop is not None:
            stop.restore()


def _release(fifo: Fifo | None, stop: StopSignals | None) -> None:
    """After a failed capture: let Wireshark's reader of the fifo see the end."""
    if fifo is not None and stop is not None:
        fifo.release_after_error(stop.event)


def _answer(argv: Sequence[str], fifo: Fifo | None, stop: StopSignals | None) -> int:
    req = parse_request(argv)
    if req.capture:
        assert fifo is not None and stop is not None  # extcap_main saw --capture
        return _capture(req, fifo, stop)
    if req.interfaces:
        return _reply(list_interfaces())
    if req.dlts or req.config or req.capture_filter is not None or req.reload_option is not None:
        if not req.interface:
            raise UsageError("this call needs --extcap-interface NAME")
        if req.dlts:
            return _reply([DLT_LINE])
        if req.config:
            if req.interface in (CONFIG_ERROR, LISTING_NOTE):
                return _reply([])  # a message, not a log: nothing to set
            return _reply(config_lines(req.interface))
        if req.reload_option is not None:
            return _reply([])  # no option uses {reload=true}: nothing to reload
        problem = check_filter(req.capture_filter or "")
        return _reply([problem] if problem else [])
    if req.version is not None:
        return _reply([f"extcap {{version={__version__}}}{_help_field()}"])
    raise UsageError(
        "no extcap call; Wireshark runs this with --extcap-interfaces,"
        " --extcap-dlts, --extcap-config or --capture"
    )


def _reply(lines: list[str]) -> int:
    """Write the answer to stdout; a stdout that is closed or full is one line."""
    out = sys.stdout
    if out is None:
        raise UserError("stdout is closed: nothing can carry the answer to Wireshark")
    try:
        out.write("".join(line + "\n" for line in lines))
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        silence_stdout()
        raise UserError(f"cannot write the answer to stdout: {reason(exc)}") from None
    return 0


def _fifo_arg(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--fifo" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--fifo="):
            return arg[len("--fifo="):]
    return ""


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("swtpm_extcap.extcap.capture")


# ------------------------------------------------------------------ listing


def list_interfaces() -> list[str]:
    """The ``--extcap-interfaces`` answer: version line, one line per log, the demo last."""
    lines = [f"extcap {{version={__version__}}}{_help_field()}"]
    notes: list[str] = []
    try:
        from ..interfaces.local import discover
        from ..interfaces.remote import remote_interface_lines
        from ..interfaces.settings import load_config

        config = load_config()
        broken = settings_error(config)
        if broken is not None:
            notes.insert(0, broken)  # listed as CONFIG_ERROR, below
        interfaces = [(i.name, i.display) for i in discover(config, notes=notes)]
        # the [[remote]] hosts' VMs and swtpm-ssh, before the demo (always last)
        demo = [n for n, (name, _) in enumerate(interfaces) if name == DEMO_NAME][:1]
        at = demo[0] if demo else len(interfaces)
        interfaces[at:at] = remote_interface_lines(config, notes)
    except Exception as exc:  # noqa: BLE001 - the listing must never break Wireshark's start-up
        interfaces = []  # (no log file at listing time: Wireshark passes none): said in the list
        notes.append(f"SWTPM listing failed: {type(exc).__name__}: {exc} (please report it)")
    if not any(name == DEMO_NAME for name, _ in interfaces):
        interfaces.append((DEMO_NAME, DEMO_DISPLAY))
    for name, display in interfaces:
        lines.append(f"interface {{value={_field(name)}}}{{display={_field(clip(display, MAX_DISPLAY))}}}")
    for note in notes:  # e.g. a glob cut short: said where the user looks, not on stderr
        name = CONFIG_ERROR if note.startswith(SETTINGS_ERROR) else LISTING_NOTE
        lines.append(f"interface {{value={name}}}{{display={_field(clip(note, MAX_DISPLAY))}}}")
    return lines


#: how the listing line of a broken settings file begins
SETTINGS_ERROR = "SWTPM settings error: "


def settings_error(config: Config) -> str | None:
    """The listing's line for a settings file that was skipped, None if it was not:
    ``SWTPM settings error: <file> is not valid TOML: ...`` (one line)."""
    if config.error is None:
        return None
    text = " ".join(config.error.split())  # one line, whatever the TOML parser said
    if config.path is not None:  # "config file /x.toml: ..." -> "/x.toml: ..."
        text = text.replace(f"config file {config.path}", str(config.path), 1)
    return SETTINGS_ERROR + text


def _message_interface(name: str) -> UserError:
    """Capturing a listing line that is a message: the message, and what to do."""
    from ..interfaces.settings import load_config

    if name == CONFIG_ERROR:
        broken = settings_error(load_config())
        if broken is not None:
            return UserError(f"{broken}; fix the file, then {REFRESH}")
        return UserError(f"the settings file is fine now; {REFRESH}")
    return UserError(
        f"{name} is a note of the interface list, not a log; {REFRESH} to see the logs"
    )


def _help_field() -> str:
    """``{help=file://.../swtpm_extcap/data/help.html}``: the project's help page, which
    the Help button of Wireshark's options dialog opens (when the file is there)."""
    page = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *HELP_PAGE)
    if os.path.isfile(page):
        from pathlib import Path

        return f"{{help={Path(page).as_uri()}}}"
    return ""


def _field(text: str) -> str:
    """A value inside ``{...}``: no braces, no line breaks, valid UTF-8."""
    return "".join("?" if ch in "{}" or ord(ch) < 32 else ch for ch in printable(text))


# ------------------------------------------------------------------ capture


def _capture(req: Request, fifo: Fifo, stop: StopSignals) -> int:
    """``--capture``: check options, find the log, stream it into the fifo; Wireshark's
    death (parent or fifo reader gone) stops it like a signal."""
    from .debuglog import close_debug_log, open_debug_log

    settings = build_settings(req)
    handler = open_debug_log(req.log_level, req.log_file)
    stop.watch(fifo.reader_gone, _log())
    try:
        _capture_interface(settings, fifo, stop.event)
    finally:
        close_debug_log(handler)
    return 0


def _capture_interface(settings: CaptureSettings, fifo: Fifo, stop: threading.Event) -> None:
    from ..interfaces.lookup import find_interface
    from ..interfaces.settings import load_config
    from ..sources import open_source
    from .capture import run_capture

    log = _log()
    log.info("%s %s: capture %s", PROG, __version__, settings)
    if settings.interface in (CONFIG_ERROR, LISTING_NOTE):
        raise _message_interface(settings.interface)
    if settings.ssh is not None:  # swtpm-ssh: the host and log come from its options
        from ..interfaces.remote import ssh_interface

        iface = ssh_interface(settings.ssh, settings.ssh_log)
    else:
        from ..interfaces.remote import check_level

        iface = find_interface(settings.interface, load_config())
        check_level(iface)  # a swtpm at level 1 logs no TPM traffic: say how to raise it
    label = str(iface.location)
    description = iface.display if label in iface.display else f"{iface.display}: {label}"
    try:
        run_capture(
            open_source(iface.location), settings, stop, lambda: fifo.open(stop),
            name=iface.name, description=printable(description), log=log,
        )
    except BrokenPipeError:
        raise
    except OSError as exc:  # the source's own errors are UserErrors: this is a write
        raise UserError(
            f"cannot write to the fifo {fifo.path}: {reason(exc)}; the capture is cut short"
        ) from None
