"""Wireshark's extcap protocol: list interfaces, DLTs and options; capture into the fifo.

Wireshark runs the launcher four ways (see ``extcap/extcap-base.c``)::

    --extcap-interfaces [--extcap-version=4.0]     one "interface" line per SWTPM log
    --extcap-dlts --extcap-interface swtpm-103      the link type (Ethernet)
    --extcap-config --extcap-interface swtpm-103    the options dialog (OPTIONS below)
    --capture --extcap-interface swtpm-103 --fifo PATH [options]

plus ``--extcap-capture-filter F --extcap-interface X`` (without ``--capture``)
to check a capture filter: nothing on stdout means valid, else one line saying
what is wrong. Unknown arguments are ignored, so a newer Wireshark that adds
some does not break the listing.

stdout carries the protocol; stderr is what Wireshark shows the user in an
error dialog, so it gets one line on a capture error and nothing otherwise.
Debug messages go to ``--log-file`` only.

Capture: the log is read through :func:`swtpm_extcap.sources.follow` (mode
``follow``) or :func:`~swtpm_extcap.sources.read_once` (mode ``replay``),
parsed, framed and written as pcapng to the fifo, flushed after every batch.

Timestamps: the *backlog* is what the log held when the capture started, i.e.
its first ``st_size`` bytes at that moment (a truncation, rotation or
re-creation seen before reaching that size ends the backlog early: the new
file's bytes were written after the start). Backlog records get the synthetic
clock of :mod:`swtpm_extcap.frames` (a run starts at its ``[id=<epoch>]``, one
millisecond per frame); records appended after the backlog get the wall clock
of the moment they were read. A replay is all backlog. "Last run only" drops
the backlog's runs before its last one, found by a parse-only first pass.

Capture filter: a list of TPM command names or codes (:func:`parse_capture_filter`);
the capture keeps those commands and their responses. Anything else is rejected
with one line (BPF makes no sense here: every frame is synthetic).

Stop: SIGTERM or SIGINT (Wireshark's stop button) set an Event that the
follow loop checks at least every 50 ms; a reader that closes the fifo shows up
as ``BrokenPipeError`` on the next write. Both end the capture with exit 0 and
nothing on stderr.

Windows (not tested): Wireshark ends an extcap there with TerminateProcess, so
no handler runs and nothing can be flushed at the end; the fifo is a named pipe
(``\\\\.\\pipe\\wireshark_extcap_...``) that ``open(path, "wb")`` opens (the
O_NONBLOCK retry loop below is POSIX only), and the launcher is a ``.bat``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO, Callable, NoReturn

from . import __version__
from .cli import say, silence_stdout
from .errors import PROG, UsageError, UserError, error_line, printable, reason
from .fifo import Fifo
from .signals import GRACE_S, Stopped, StopSignals

if TYPE_CHECKING:  # the listing verbs must stay fast: import the capture parts lazily
    import logging

    from .discovery import Interface
    from .logparse import Event
    from .pipeline import Pipeline

DLT_LINE = "dlt {number=1}{name=EN10MB}{display=Ethernet (TPM over TCP 2321)}"
DEMO = "swtpm-demo"
#: the name of a listing line that is a note, not a log (e.g. a glob cut short)
LISTING_NOTE = "swtpm-listing-note"

# --------------------------------------------------------------- options as data


@dataclass(frozen=True)
class Choice:
    """One ``value`` line of a radio or selector option."""

    value: str
    display: str


@dataclass(frozen=True)
class Option:
    """One ``arg`` line of ``--extcap-config`` (Wireshark builds the dialog from it)."""

    call: str
    display: str
    type: str  # radio, selector, boolflag, unsigned, fileselect
    tooltip: str
    group: str
    default: str = ""  # a choice's value, "true"/"false" for a boolflag, a number
    choices: tuple[Choice, ...] = ()
    range: tuple[int, int] | None = None
    extra: str = ""  # further {key=value} fields, e.g. "{mustexist=false}"

    @property
    def dest(self) -> str:
        return self.call.lstrip("-").replace("-", "_")


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

OPTIONS: tuple[Option, ...] = (
    Option(
        "--start", "Start with", "radio",
        "What to show first: the records the log already holds (its backlog), then the new"
        " ones as swtpm writes them; or only records written after the capture starts",
        "Capture", "all",
        (Choice("all", "Whole log, then new records"), Choice("new", "Only new records")),
    ),
    Option(
        "--runs", "Runs", "radio",
        "A log holds one run per VM start (Proxmox appends). 'Last run only' leaves out the"
        " backlog's earlier runs; runs that start during the capture are always shown",
        "Capture", "all",
        (Choice("all", "All runs"), Choice("last", "Last run only")),
    ),
    Option(
        "--mode", "At the end of the log", "radio",
        "Follow: keep the capture open and show records as they are appended (tail -F)."
        " Replay: stop the capture at the end of the log",
        "Capture", "follow",
        (Choice("follow", "Follow (live)"), Choice("replay", "Stop at end of log (replay)")),
    ),
    Option(
        "--ctrl", "Include control-channel messages", "boolflag",
        "Show swtpm's control channel (CMD_INIT, SET_LOCALITY, ...) as TCP port 2323 from"
        " 127.0.0.2 next to the TPM traffic on port 2321",
        "Capture", "true",
    ),
    Option(
        "--pace-ms", "Delay per record (ms)", "unsigned",
        "Wait this long after each record of the backlog, so that a replay unfolds like a live"
        " capture (0: as fast as possible). Records appended later are never delayed",
        "Replay", "0", range=(0, 10000),
    ),
    Option(
        "--log-level", "Set the log level", "selector", "Set the log level", "Debug", "message",
        (
            Choice("message", "Message"),
            Choice("info", "Info"),
            Choice("debug", "Debug"),
            Choice("noisy", "Noisy"),
        ),
    ),
    Option(
        "--log-file", "Use a file for logging", "fileselect",
        "Set a file where log messages are written", "Debug", extra="{mustexist=false}",
    ),
)

#: the demo is a paced replay of a finished log, so that it looks alive and then ends
DEMO_DEFAULTS = {"--mode": "replay", "--pace-ms": "50"}


def options_for(interface: str) -> tuple[Option, ...]:
    """The options of ``interface``: :data:`OPTIONS`, with the demo's own defaults."""
    if interface != DEMO:
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
        head += f"{{tooltip={o.tooltip}}}"
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


# ------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CaptureSettings:
    """Everything a capture needs, checked before any I/O."""

    interface: str
    fifo: str
    start: str = "all"  # "all" | "new"
    runs: str = "all"  # "all" | "last"
    mode: str = "follow"  # "follow" | "replay"
    ctrl: bool = True
    pace_ms: int = 0
    codes: frozenset[int] | None = None  # capture filter: TPM command codes to keep
    filter_text: str = ""


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
    log_level: str
    log_file: str
    values: dict[str, str | None]  # option call -> given value (None: not given)
    ctrl: bool


def parse_request(argv: Sequence[str]) -> Request:
    """Read Wireshark's arguments; unknown ones are ignored, never an error."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"bad extcap arguments: {message}")

    p = _Parser(prog=PROG, add_help=False, allow_abbrev=False)
    p.add_argument("--extcap-interfaces", action="store_true")
    p.add_argument("--extcap-version", nargs="?", const="")
    p.add_argument("--extcap-dlts", action="store_true")
    p.add_argument("--extcap-config", action="store_true")
    p.add_argument("--extcap-interface", default="")
    p.add_argument("--extcap-capture-filter")
    p.add_argument("--capture", action="store_true")
    p.add_argument("--fifo", default="")
    for o in OPTIONS:
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
    values = {o.call: getattr(ns, o.dest) for o in OPTIONS if o.type != "boolflag"}
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
        o = options[call]
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
    return CaptureSettings(
        interface=req.interface,
        fifo=req.fifo,
        start=chosen["--start"],
        runs=chosen["--runs"],
        mode=chosen["--mode"],
        ctrl=req.ctrl,
        pace_ms=pace,
        codes=codes,
        filter_text=(req.capture_filter or "").strip(),
    )


# -------------------------------------------------------------- capture filter

#: TPM 2.0 command codes (TPM 2.0 Library Part 2, TPM_CC), as Wireshark's TPM
#: dissector names them without the ``TPM2_CC_`` prefix
_TPM2_CC = """
11F NV_UndefineSpaceSpecial 120 EvictControl 121 HierarchyControl 122 NV_UndefineSpace
124 ChangeEPS 125 ChangePPS 126 Clear 127 ClearControl 128 ClockSet 129 HierarchyChangeAuth
12A NV_DefineSpace 12B PCR_Allocate 12C PCR_SetAuthPolicy 12D PP_Commands 12E SetPrimaryPolicy
12F FieldUpgradeStart 130 ClockRateAdjust 131 CreatePrimary 132 NV_GlobalWriteLock
133 GetCommandAuditDigest 134 NV_Increment 135 NV_SetBits 136 NV_Extend 137 NV_Write
138 NV_WriteLock 139 DictionaryAttackLockReset 13A DictionaryAttackParameters 13B NV_ChangeAuth
13C PCR_Event 13D PCR_Reset 13E SequenceComplete 13F SetAlgorithmSet
140 SetCommandCodeAuditStatus 141 FieldUpgradeData 142 IncrementalSelfTest 143 SelfTest
144 Startup 145 Shutdown 146 StirRandom 147 ActivateCredential 148 Certify 149 PolicyNV
14A CertifyCreation 14B Duplicate 14C GetTime 14D GetSessionAuditDigest 14E NV_Read
14F NV_ReadLock 150 ObjectChangeAuth 151 PolicySecret 152 Rewrap 153 Create 154 ECDH_ZGen
155 HMAC 156 Import 157 Load 158 Quote 159 RSA_Decrypt 15B HMAC_Start 15C SequenceUpdate
15D Sign 15E Unseal 160 PolicySigned 161 ContextLoad 162 ContextSave 163 ECDH_KeyGen
164 EncryptDecrypt 165 FlushContext 167 LoadExternal 168 MakeCredential 169 NV_ReadPublic
16A PolicyAuthorize 16B PolicyAuthValue 16C PolicyCommandCode 16D PolicyCounterTimer
16E PolicyCpHash 16F PolicyLocality 170 PolicyNameHash 171 PolicyOR 172 PolicyTicket
173 ReadPublic 174 RSA_Encrypt 176 StartAuthSession 177 VerifySignature 178 ECC_Parameters
179 FirmwareRead 17A GetCapability 17B GetRandom 17C GetTestResult 17D Hash 17E PCR_Read
17F PolicyPCR 180 PolicyRestart 181 ReadClock 182 PCR_Extend 183 PCR_SetAuthValue
184 NV_Certify 185 EventSequenceComplete 186 HashSequenceStart 187 PolicyPhysicalPresence
188 PolicyDuplicationSelect 189 PolicyGetDigest 18A TestParms 18B Commit 18C PolicyPassword
18D ZGen_2Phase 18E EC_Ephemeral 18F PolicyNvWritten 190 PolicyTemplate 191 CreateLoaded
192 PolicyAuthorizeNV 193 EncryptDecrypt2 194 AC_GetCapability 195 AC_Send
196 Policy_AC_SendSelect 197 CertifyX509 198 ACT_SetTimeout 199 ECC_Encrypt 19A ECC_Decrypt
"""

FILTER_HELP = (
    "a capture filter here is a list of TPM commands to keep, with their responses:"
    " names (Unseal, TPM2_CC_Unseal) or codes (0x15e), separated by commas"
)


def tpm2_command_codes() -> dict[str, int]:
    """Lower-case command name (no prefix) -> TPM 2.0 command code."""
    words = _TPM2_CC.split()
    return {name.lower(): int(code, 16) for code, name in zip(words[::2], words[1::2])}


def parse_capture_filter(text: str) -> frozenset[int] | None:
    """``"TPM2_CC_Unseal, 0x17e"`` -> ``{0x15E, 0x17E}``; empty -> ``None`` (keep all).

    Each item is a TPM 2.0 command name, with or without a ``TPM2_CC_``,
    ``TPM_CC_`` or ``TPM2_`` prefix and in any case, or a command code
    (``0x17e``, or decimal; TPM 1.2 ordinals too). Items are separated by
    commas or blanks. The capture keeps the TPM commands named and the
    response that follows each; everything else, control-channel messages
    included, is left out.
    """
    items = text.replace(",", " ").split()
    if not items:
        return None
    names = tpm2_command_codes()
    codes: set[int] = set()
    for item in items:
        low = item.lower()
        for prefix in ("tpm2_cc_", "tpm_cc_", "tpm2_"):
            if low.startswith(prefix):
                low = low[len(prefix):]
                break
        if low in names:
            codes.add(names[low])
            continue
        try:
            code = int(low, 0)
        except ValueError:
            raise UsageError(f"unknown TPM command {item!r} in the capture filter; {FILTER_HELP}") from None
        if not 0 <= code <= 0xFFFFFFFF:
            raise UsageError(f"TPM command code {item!r} is out of range; {FILTER_HELP}")
        codes.add(code)
    return frozenset(codes)


# ------------------------------------------------------------------ selection


class Selection:
    """Which parser events reach the framer.

    * ``first_run``: backlog events of runs before this one are dropped
      ("last run only": :func:`find_last_run` finds it in a first pass, so
      nothing has to be held in memory). Events after the backlog all pass.
    * ``codes``: keep only TPM commands with these codes, and the response that
      follows each (TPM traffic is strictly command, response); drop
      control-channel messages.
    """

    def __init__(self, *, first_run: int = 0, codes: frozenset[int] | None = None) -> None:
        self.first_run = first_run
        self.codes = codes
        self._run = -1
        self._want_response = False

    def backlog(self, events: list[Event]) -> list[Event]:
        first = self.first_run
        if first <= 0 or self._run >= first:
            return self._filter(events)
        from .logparse import RunStart

        for i, ev in enumerate(events):
            if type(ev) is RunStart:
                self._run = ev.run
                if ev.run >= first:
                    return self._filter(events[i:])
        return []

    def live(self, events: list[Event]) -> list[Event]:
        return self._filter(events)

    def _filter(self, events: list[Event]) -> list[Event]:
        codes = self.codes
        if codes is None or not events:
            return events
        from .logparse import Kind, Record

        out: list[Event] = []
        for rec in events:
            if not isinstance(rec, Record):
                out.append(rec)
                continue
            if rec.kind is Kind.TPM_COMMAND:
                data = rec.data
                keep = len(data) >= 10 and int.from_bytes(data[6:10], "big") in codes
                self._want_response = keep
                if keep:
                    out.append(rec)
            elif rec.kind is Kind.TPM_RESPONSE:
                if self._want_response:
                    out.append(rec)
                self._want_response = False
        return out


# -------------------------------------------------------------------- capture


def now_us() -> int:
    """The wall clock in microseconds: the timestamp of a live record."""
    return time.time_ns() // 1000


class Capture:
    """One capture: log chunks in, pcapng frames out; no signals, no argv.

    ``backlog_bytes`` is how many bytes of the input are backlog (synthetic
    clock, paced, ``first_run`` applies); ``None`` means all of it (replay).

    The selection works on parser events, between parser and framer, so this
    drives the Pipeline's parts itself (``parser.feed``, then ``Pipeline.emit``
    for the framer, writer and summary) instead of ``Pipeline.feed(bytes)``.
    """

    def __init__(
        self,
        pipe: Pipeline,
        settings: CaptureSettings,
        stop: threading.Event,
        *,
        backlog_bytes: int | None,
        first_run: int = 0,
        log: logging.Logger,
    ) -> None:
        self.pipe = pipe
        self.settings = settings
        self.stop = stop
        self.log = log
        self.remaining = backlog_bytes
        self.select = Selection(first_run=first_run, codes=settings.codes)
        self.pace_s = settings.pace_ms / 1000.0
        self.in_backlog = True
        self.switched = False  # follow() switched files: the rest is live
        self.backlog_frames = 0
        if backlog_bytes == 0:
            self.end_backlog()

    def on_follow_event(self, message: str) -> None:
        """``follow()``'s notes: a switch of file ends the backlog."""
        self.log.debug("follow: %s", message)
        if message.startswith(("truncated", "rotated", "re-created", "created")):
            self.switched = True

    def run(self, chunks: Iterator[bytes]) -> None:
        """Feed every chunk; returns at the end of the input or when ``stop`` is set."""
        feed = self.pipe.parser.feed
        for chunk in chunks:
            if self.in_backlog:
                chunk = self._backlog(chunk)
            if chunk:
                self.emit(self.select.live(feed(chunk)), now_us())
            if self.stop.is_set():
                return

    def _backlog(self, chunk: bytes) -> bytes:
        """Feed the backlog part of ``chunk``; returns the rest (live bytes)."""
        if self.switched:  # a new file: nothing more of the old backlog comes
            self.end_backlog()
            return chunk
        remaining = self.remaining
        head, rest = chunk, b""
        if remaining is not None:
            head, rest = chunk[:remaining], chunk[remaining:]
            self.remaining = remaining - len(head)
        self.emit(self.select.backlog(self.pipe.parser.feed(head)), None)
        if self.remaining == 0:
            self.end_backlog()
        return rest

    def end_backlog(self) -> None:
        if not self.in_backlog:
            return
        self.in_backlog = False
        self.backlog_frames = self.pipe.summary.frames
        self.log.info(
            "backlog read: %d frames from %d lines%s",
            self.backlog_frames, self.pipe.parser.lines,
            "" if self.settings.mode == "replay" else "; new records get the wall clock",
        )

    def emit(self, events: list[Event], now: int | None) -> None:
        """Frame and write ``events``; in the backlog, wait ``pace`` after each record."""
        if not events:
            return
        pipe = self.pipe
        if not (self.pace_s and self.in_backlog):
            pipe.emit(events, now)
            return
        from .logparse import Record

        wait = self.stop.wait
        pace = self.pace_s
        for ev in events:
            if pipe.emit([ev], now) and type(ev) is Record and wait(pace):
                return

    def finish(self, *, at_end: bool) -> None:
        """End the capture: at the end of a replay, flush what the parser holds back
        and close the TCP conversations; after a stop, only close them (a record
        swtpm is still writing is not cut off)."""
        pipe = self.pipe
        if self.in_backlog:
            if at_end:
                self.end_backlog()
            else:
                self.in_backlog = False
        now = None if self.settings.mode == "replay" else now_us()
        if at_end:
            pipe.emit(self.select.live(pipe.parser.close()), now)
        pipe.close_conversations(now)


def find_last_run(path: str | os.PathLike[str], size: int, stop: threading.Event) -> int:
    """The number of the last run that starts in the first ``size`` bytes of the log.

    "Last run only" reads the backlog twice: this first pass only parses (no
    framing, nothing kept), so memory stays flat however long the run is.
    """
    from .logparse import LogParser, RunStart

    parser = LogParser()
    last = 0
    left = size
    with open(path, "rb") as fh:
        while left > 0 and not stop.is_set():
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
            for ev in parser.feed(chunk):
                if type(ev) is RunStart:
                    last = ev.run
    return last


# ----------------------------------------------------------------- the verbs


def list_interfaces() -> list[str]:
    """The ``--extcap-interfaces`` answer: version line, one line per log, the demo last."""
    lines = [f"extcap {{version={__version__}}}{_help_field()}"]
    notes: list[str] = []
    try:
        from .config import load_config
        from .discovery import discover

        interfaces = [(i.name, i.display) for i in discover(load_config(), notes=notes)]
    except Exception:  # noqa: BLE001 - the listing must never break Wireshark's start-up
        interfaces = []  # (no log file at listing time: Wireshark passes none)
    if not any(name == DEMO for name, _ in interfaces):
        interfaces.append((DEMO, "SWTPM demo (bundled real log, replayed)"))
    for name, display in interfaces:
        lines.append(f"interface {{value={_field(name)}}}{{display={_field(display)}}}")
    for note in notes:  # e.g. a glob cut short: said where the user looks, not on stderr
        lines.append(f"interface {{value={LISTING_NOTE}}}{{display={_field(note)}}}")
    return lines


def _help_field() -> str:
    """``{help=file://.../README.md}`` when the README sits next to the package."""
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    if os.path.isfile(readme):
        from pathlib import Path

        return f"{{help={Path(readme).as_uri()}}}"
    return ""


def _field(text: str) -> str:
    """A value inside ``{...}``: no braces, no line breaks, valid UTF-8."""
    return "".join("?" if ch in "{}" or ord(ch) < 32 else ch for ch in printable(text))


def check_filter(text: str) -> str:
    """Wireshark's filter check: "" when ``text`` is valid, else one line saying why."""
    try:
        parse_capture_filter(text)
    except UserError as exc:
        return str(exc)
    return ""


def extcap_main(argv: Sequence[str], stop: StopSignals | None = None) -> int:
    """Answer one extcap call; returns the exit status.

    The one error funnel of the extcap calls: a :class:`UserError` is one line
    on stderr and its exit code (a capture then releases Wireshark's fifo);
    a reader that went away or a stop signal is a clean exit 0; anything else
    is a bug, said in one line (the traceback goes to ``--log-file``)."""
    fifo = Fifo(_fifo_arg(argv) if "--capture" in argv else "")
    signals = stop if stop is not None else StopSignals()
    try:
        return _answer(argv, fifo, signals.event)
    except UserError as exc:
        say(error_line(exc))
        fifo.release_after_error(signals.event)
        return exc.exit_code
    except BrokenPipeError:  # Wireshark closed stdout or the fifo: it no longer listens
        silence_stdout()
        return 0
    except Stopped:  # still busy (a write the reader never takes) after a stop signal
        fifo.abandon()
        return 0
    except Exception as exc:  # a bug: one line for the dialog, the traceback to --log-file
        import logging

        logging.getLogger("swtpm_extcap").exception("internal error")
        say(error_line(UserError(
            f"internal error: {type(exc).__name__}: {exc} (please report it; with --log-file"
            " set, the log has the traceback)"
        )))
        fifo.release_after_error(signals.event)
        return 1
    finally:
        fifo.close()
        signals.restore()


def _answer(argv: Sequence[str], fifo: Fifo, stop: threading.Event) -> int:
    req = parse_request(argv)
    if req.capture:
        return capture_main(req, fifo, stop)
    if req.interfaces:
        return _reply(list_interfaces())
    if req.dlts or req.config or req.capture_filter is not None or req.reload_option is not None:
        if not req.interface:
            raise UsageError("this call needs --extcap-interface NAME")
        if req.dlts:
            return _reply([DLT_LINE])
        if req.config:
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


# --------------------------------------------------------------- capture verb


def capture_main(req: Request, fifo: Fifo, stop: threading.Event) -> int:
    """``--capture``: check options, resolve the log, stream it into the fifo."""
    import logging

    log = logging.getLogger("swtpm_extcap.capture")
    settings = build_settings(req)
    handler = _setup_logging(req.log_level, req.log_file)
    try:
        return _run(settings, stop, log, fifo)
    finally:
        if handler is not None:
            logging.getLogger("swtpm_extcap").removeHandler(handler)
            handler.close()


def _run(
    settings: CaptureSettings, stop: threading.Event, log: logging.Logger, fifo: Fifo
) -> int:
    from .config import load_config
    from .discovery import find_interface, permission_hint

    log.info("%s %s: capture %s", PROG, __version__, settings)
    iface = find_interface(settings.interface, load_config())
    replay = settings.mode == "replay"
    backlog_bytes, start_us = _check_log(iface, settings, permission_hint)
    out = fifo.open(stop)
    if out is None:  # stopped before Wireshark opened the fifo
        return 0
    from .pipeline import Pipeline
    from .sources import follow, read_once

    try:
        pipe = Pipeline(
            out,
            name=iface.name,
            description=printable(
                iface.display if str(iface.path) in iface.display else f"{iface.display}: {iface.path}"
            ),
            start_us=start_us,
            ctrl=settings.ctrl,
            live=True,
            comment=printable(_section_comment(iface, settings)),
        )
        first_run = 0
        if settings.runs == "last" and backlog_bytes:
            try:
                first_run = find_last_run(iface.path, backlog_bytes, stop)
            except OSError as exc:
                raise UserError(f"cannot read {iface.path}: {reason(exc)}") from None
            log.info("last run only: the backlog's last run is run %d", first_run + 1)
        cap = Capture(
            pipe, settings, stop, backlog_bytes=None if replay else backlog_bytes,
            first_run=first_run, log=log,
        )
        if replay:
            chunks = read_once(iface.path, stop)
        else:
            chunks = follow(
                iface.path, stop, from_start=settings.start == "all", on_event=cap.on_follow_event
            )
        try:
            cap.run(_mapped(chunks, iface, permission_hint))
        finally:
            chunks.close()
        cap.finish(at_end=not stop.is_set())
        for line in pipe.summary.report(iface.name):
            log.info("%s", line)
    except BrokenPipeError:
        log.info("the reader closed the fifo: stopping")
    except OSError as exc:  # reading is mapped by _mapped: this is a write to the fifo
        raise UserError(f"cannot write to the fifo {fifo.path}: {reason(exc)}; the capture"
                        " is cut short") from None
    except Stopped:
        log.info("stop signal: a write to the fifo was still blocked after %.1f s", GRACE_S)
        fifo.abandon()
        return 0
    return 0


def _mapped(
    chunks: Iterator[bytes], iface: Interface, permission_hint: Callable[[Interface], str]
) -> Iterator[bytes]:
    """The log's chunks; a failure to read it is one :class:`UserError` line."""
    try:
        yield from chunks
    except PermissionError:
        raise UserError(permission_hint(iface)) from None
    except FileNotFoundError:
        raise UserError(f"{iface.path} disappeared before it could be read") from None
    except OSError as exc:
        raise UserError(f"cannot read {iface.path}: {reason(exc)}") from None


def _check_log(
    iface: Interface, settings: CaptureSettings, permission_hint: Callable[[Interface], str]
) -> tuple[int, int]:
    """Can the log be read? Returns (backlog size in bytes, clock start in µs).

    The clock start matters for a log without ``[id=<epoch>]`` prefixes only:
    its backlog is laid out to end no later than the file's mtime, counting
    back one millisecond for every 32 bytes of log (more than it can hold in
    frames), so that live records, stamped with the wall clock, come after it.
    """
    try:
        with open(iface.path, "rb") as fh:
            st = os.fstat(fh.fileno())
    except PermissionError:
        raise UserError(permission_hint(iface)) from None
    except FileNotFoundError:
        if settings.mode == "replay":
            raise UserError(
                f"{iface.path} does not exist (yet): start the VM, or choose 'Follow' to wait"
                " for its log"
            ) from None
        return 0, now_us()
    except IsADirectoryError:
        raise UserError(f"{iface.path} is a directory, not an swtpm log") from None
    except OSError as exc:
        raise UserError(f"cannot read {iface.path}: {reason(exc)}") from None
    if settings.start == "new":
        return 0, now_us()
    size = st.st_size
    return size, int(st.st_mtime * 1_000_000) - (size // 32) * 1000


def _section_comment(iface: Interface, settings: CaptureSettings) -> str:
    parts = [
        f"{PROG} {__version__} capture of {iface.path}",
        f"start={settings.start} runs={settings.runs} mode={settings.mode}"
        f" ctrl={'on' if settings.ctrl else 'off'} pace-ms={settings.pace_ms}",
    ]
    if settings.filter_text:
        parts.append(f"capture filter: {settings.filter_text}")
    if settings.start == "new":
        parts.append("log line and run numbers count from where the capture began")
    return "\n".join(parts)


def _setup_logging(level: str, path: str) -> logging.Handler | None:
    """Debug messages go to ``--log-file`` only (stderr is the user's error dialog)."""
    import logging

    logger = logging.getLogger("swtpm_extcap")
    if not logger.handlers:  # no "last resort" output on stderr without a log file
        logger.addHandler(logging.NullHandler())
    if not path:
        return None
    try:
        handler: logging.Handler = _quiet_file_handler(path)
    except OSError as exc:
        raise UsageError(f"cannot write the log file {path}: {reason(exc)}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(LOG_LEVELS.get(level, 25))
    return handler


def _quiet_file_handler(path: str) -> logging.Handler:
    """A ``--log-file`` handler that a full disk silences instead of flooding stderr
    ("--- Logging error ---") or failing the capture: the log is only a debug aid."""
    import logging

    class QuietFileHandler(logging.FileHandler):
        broken = False

        def emit(self, record: logging.LogRecord) -> None:
            if not self.broken:
                super().emit(record)

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
            self.broken = True  # stop writing; the capture goes on

        def flush(self) -> None:
            try:
                super().flush()
            except OSError:
                self.broken = True

        def close(self) -> None:
            try:
                super().close()
            except OSError:
                pass

    return QuietFileHandler(path, mode="w", encoding="utf-8", errors="backslashreplace")
