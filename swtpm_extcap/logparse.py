"""Pure, incremental parser for swtpm debug logs (``--log file=...,level=20``).

Bytes go in (any chunking: whole files, ``tail -F`` appends, an SSH stream),
events come out. The parser does no I/O and never looks at a clock.

A record in the log looks like this (``PREFIX`` is swtpm's ``--log prefix=``,
Proxmox uses ``[id=<epoch>] ``)::

    PREFIX SWTPM_IO_Read: length 12
    PREFIX 80 01 00 00 00 0C 00 00 01 44 00 00

Everything else (libtpms traces, ``IsEnEnabled(...)``, ``Tested: ...``,
swtpm_setup output, blank lines) is skipped. Damage inside a record is
reported as a :class:`Defect` with its line number, carried in that record's
``defects``; the record is still emitted with the bytes that are there.
Damage outside any record is a :class:`Defect` event of its own.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

#: a partial line longer than this is taken as a line of its own (swtpm's are < 100)
MAX_LINE = 1 << 20
#: control channel command that (re)initialises the TPM: CMD_INIT
CTRL_CMD_INIT = b"\x00\x00\x00\x02"

_PROXMOX_EPOCH = re.compile(r"\[id=(\d{1,12})\]")
_HEADER = re.compile(
    r"^(?P<prefix>.*?) (?P<label>SWTPM_IO_Read|SWTPM_IO_Write|Ctrl Cmd|Ctrl Rsp Continued|Ctrl Rsp):"
    r" (?:length (?P<length>\S+)|(?P<null>null))\s*$"
)


class Kind(enum.Enum):
    """What a record is: direction and channel."""

    TPM_COMMAND = "SWTPM_IO_Read"
    TPM_RESPONSE = "SWTPM_IO_Write"
    CTRL_COMMAND = "Ctrl Cmd"
    CTRL_RESPONSE = "Ctrl Rsp"
    CTRL_CONTINUED = "Ctrl Rsp Continued"

    # members are singletons: identity hashing is correct and, unlike Enum's
    # own __hash__ (Python code), costs nothing in the per-record dict lookups
    __hash__ = object.__hash__

    @property
    def is_tpm(self) -> bool:
        return self is Kind.TPM_COMMAND or self is Kind.TPM_RESPONSE

    @property
    def to_server(self) -> bool:
        """True for client -> swtpm (commands), False for swtpm -> client."""
        return self is Kind.TPM_COMMAND or self is Kind.CTRL_COMMAND


_LABELS = {kind.value: kind for kind in Kind}


class DefectKind(str, enum.Enum):
    """The kinds of damage the parser reports."""

    SHORT = "short"  # fewer bytes than the header says, then another line
    LONG = "long"  # more bytes than the header says
    CUT = "cut"  # the input ended inside a record
    JUNK = "junk"  # a line inside a record that is not hex
    STRAY = "stray"  # hex data outside any record
    BAD_HEADER = "bad-header"  # a record header with an unreadable length


@dataclass(frozen=True, slots=True)
class Defect:
    """One piece of damage, at a 1-based line of the log."""

    line: int
    kind: DefectKind
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind.value}: {self.detail}"


@dataclass(frozen=True, slots=True)
class RunStart:
    """A new swtpm run (process start or TPM power-on) begins here."""

    run: int
    line: int
    prefix: str | None
    epoch: int | None
    reason: str


class Record(NamedTuple):
    """One ``read()`` or ``write()`` by swtpm, exactly as logged.

    A NamedTuple rather than a frozen dataclass: a 200 MB log has ~500,000
    records, and a frozen dataclass costs four times as much to build.
    """

    kind: Kind
    data: bytes
    line: int
    run: int
    declared: int
    defects: tuple[Defect, ...] = ()
    last_line: int = 0

    @property
    def intact(self) -> bool:
        """The logged bytes are all there: as many as the header says."""
        return len(self.data) == self.declared and not any(
            d.kind in _DAMAGE for d in self.defects
        )


# Record((...)) without the generated __new__: half the cost, same object
_new_record = functools.partial(tuple.__new__, Record)

_DAMAGE = frozenset({DefectKind.SHORT, DefectKind.LONG, DefectKind.CUT, DefectKind.STRAY})

Event = RunStart | Record | Defect


@dataclass(slots=True)
class _Open:
    kind: Kind
    line: int
    declared: int
    chunks: list[bytes] = field(default_factory=list)
    got: int = 0
    defects: list[Defect] = field(default_factory=list)
    last_line: int = 0


class LogParser:
    """Incremental swtpm log parser.

    ``feed(data)`` takes any chunk of the log (a partial last line is held back
    until its newline arrives); ``close()`` ends the input. Both return the
    events completed so far, in log order.

    Runs: a change of the log prefix starts a new run (Proxmox writes a new
    ``[id=<epoch>] `` at each VM start). A log without a prefix has no such
    marker; there a control-channel CMD_INIT that follows TPM traffic starts a
    new run (the TPM was powered on again).
    """

    def __init__(self) -> None:
        self._tail = b""
        self._overlong = False
        self._lineno = 0
        self._prefix = ""
        self._run = -1
        self._run_has_tpm = False
        self._open: _Open | None = None
        self._stray: _Open | None = None
        self._last_kind = Kind.TPM_COMMAND
        self.skipped_lines = 0
        self.null_records = 0
        self._rx: Callable[[str, int], re.Match[str] | None] | None = None
        self._rx_prefix = ""
        self._rx_careful = False

    @property
    def lines(self) -> int:
        """Number of complete lines consumed so far."""
        return self._lineno

    @property
    def pending(self) -> bool:
        """True while a partial line or an unfinished record is held back."""
        return bool(self._tail) or self._open is not None

    def feed(self, data: bytes) -> list[Event]:
        if not data:
            return []
        events: list[Event] = []
        if self._overlong:  # the rest of a line already taken: drop it
            end = data.find(b"\n")
            if end < 0:
                return events
            self._overlong = False
            data = data[end + 1 :]
        buf = self._tail + data if self._tail else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > MAX_LINE:
                # no swtpm line is this long: take it as one (junk) line, so
                # memory stays bounded whatever the input
                self._tail = b""
                self._overlong = True
                return self._lines([buf[:MAX_LINE].decode("latin-1")])
            self._tail = buf
            return events
        self._tail = buf[cut + 1 :]
        # latin-1 maps every byte to one character: never fails, keeps offsets
        return self._text(buf[: cut + 1].decode("latin-1"))

    def feed_lines(self, lines: Iterable[str]) -> list[Event]:
        """Feed complete lines (without or with their line ending)."""
        return self._lines([line.rstrip("\n") for line in lines])

    def close(self) -> list[Event]:
        events: list[Event] = []
        if self._tail:
            tail, self._tail = self._tail, b""
            events += self._lines([tail.decode("latin-1")])
        if self._open is not None:
            rec, self._open = self._open, None
            if rec.declared >= 0:
                rec.defects.append(
                    Defect(
                        rec.line,
                        DefectKind.CUT,
                        f"{rec.kind.value} record cut off at end of log:"
                        f" {rec.got} of {rec.declared} bytes",
                    )
                )
            events += self._finish(rec)
        events += self._end_stray()
        return events

    # -- the fast path: whole intact records, one regex match each -------------

    def _text(self, text: str) -> list[Event]:
        """Parse complete lines (``text`` ends with a newline).

        Intact records are taken whole: the header by one regex match, the hex
        block by arithmetic (swtpm writes 16 bytes a line, ``" XX"`` each, so
        the block's length follows from the header), decoded by
        ``bytes.fromhex`` and checked against its canonical rendering. Anything
        else (run changes, damage, other lines) goes line by line through
        :meth:`_lines`, the reference behaviour; both give the same events.
        """
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        events: list[Event] = []
        append = events.append
        fromhex = bytes.fromhex
        labels = _LABELS
        tpm_kinds = (Kind.TPM_COMMAND, Kind.TPM_RESPONSE)
        new_record = _new_record
        pos = 0
        end = len(text)
        while pos < end:
            if self._open is None and self._stray is None and self._run >= 0:
                prefix = self._prefix
                plen = len(prefix)
                header = self._header_rx()
                # a prefix made only of hex digits and spaces could hide in hex
                careful = self._rx_careful
                run = self._run
                m = header(text, pos)
                while m is not None:
                    label, length = m.groups()
                    declared = int(length)
                    start = m.end()
                    nlines = (declared + 15) >> 4
                    size = 2 * nlines + 3 * declared  # " XX" per byte, " \n" per line
                    stop = start + size + plen * nlines
                    block = text[start:stop]
                    if plen:
                        if careful and (
                            block.count(prefix) != nlines
                            or block.count("\n" + prefix) != nlines - 1
                        ):
                            break
                        block = block.replace(prefix, "")
                        if len(block) != size:
                            break
                    try:
                        data = fromhex(block)
                    except ValueError:
                        break
                    # exactly swtpm's layout, so exactly what _lines takes intact.
                    # fromhex gave N bytes: 2N hex digits, in pairs that no
                    # whitespace splits, and no other characters. The newline
                    # grid fixes every line's length (50, the last 3r+2). A line
                    # with s spaces, none doubled, and d digits needs a pair in
                    # each of its s-1 gaps: d >= 2(s-1), so s <= 17 (full line),
                    # s <= r+1 (last line). The block has nlines + N spaces, the
                    # sum of those maxima: every line has its maximum, i.e. it is
                    # " XX XX ... XX " and its newline, nothing else.
                    if len(data) != declared or (
                        declared
                        and (
                            block[49:-1:50] != "\n" * (nlines - 1)
                            or block[-1] != "\n"
                            or block.count(" ") != nlines + declared
                            or "  " in block
                        )
                    ):
                        break
                    line = self._lineno + 1
                    self._lineno = last = line + nlines
                    kind = labels[label]
                    if kind in tpm_kinds:
                        self._run_has_tpm = True
                        self._last_kind = kind
                        append(new_record((kind, data, line, run, declared, (), last)))
                    else:
                        self._emit(events, kind, data, line, declared, (), last)
                        run = self._run
                    pos = stop
                    m = header(text, pos)
                if pos >= end:
                    break
            nl = text.find("\n", pos)
            events += self._lines([text[pos:nl]])
            pos = nl + 1
        return events

    def _header_rx(self) -> Callable[[str, int], re.Match[str] | None]:
        if self._rx is None or self._rx_prefix != self._prefix:
            self._rx = re.compile(
                f"{re.escape(self._prefix)} "
                "(SWTPM_IO_Read|SWTPM_IO_Write|Ctrl Cmd|Ctrl Rsp Continued|Ctrl Rsp):"
                " length ([0-9]{1,9})\n"
            ).match
            self._rx_prefix = self._prefix
            self._rx_careful = not set(self._prefix) - set("0123456789ABCDEFabcdef \t")
        return self._rx

    # -- the hot loop ---------------------------------------------------------

    def _lines(self, lines: list[str]) -> list[Event]:
        events: list[Event] = []
        fromhex = bytes.fromhex
        n = self._lineno
        prefix = self._prefix
        plen = len(prefix)
        rec = self._open
        for line in lines:
            n += 1
            if rec is not None:
                # inside a record: expect "PREFIX XX XX ... " hex lines
                if (
                    line.startswith(prefix)
                    and line[plen : plen + 1] == " "
                    and line[plen + 1 : plen + 2] != " "
                ):
                    try:
                        chunk = fromhex(line[plen:])
                    except ValueError:
                        pass
                    else:
                        rec.chunks.append(chunk)
                        rec.got += len(chunk)
                        rec.last_line = n
                        if rec.got >= rec.declared >= 0:
                            if rec.got > rec.declared:
                                rec.defects.append(
                                    Defect(
                                        n,
                                        DefectKind.LONG,
                                        f"{rec.kind.value} record of line {rec.line} has"
                                        f" {rec.got} bytes, its header says {rec.declared}",
                                    )
                                )
                            self._lineno = n
                            events += self._finish(rec)
                            rec = None
                        continue
                if rec.declared < 0:
                    # a header without a readable length: its hex ends here
                    events += self._finish(rec)
                    rec = None
                # not a hex line: a new header ends the record short
                elif _HEADER.match(line) is None:
                    if line.strip():
                        rec.defects.append(
                            Defect(n, DefectKind.JUNK, f"not hex inside a record: {_show(line)}")
                        )
                    continue
                else:
                    rec.defects.append(
                        Defect(
                            rec.line,
                            DefectKind.SHORT,
                            f"{rec.kind.value} record has {rec.got} of {rec.declared} bytes"
                            f" (line {n} starts the next record)",
                        )
                    )
                    events += self._finish(rec)
                    rec = None
            # outside a record: a header, stray hex, or a line to skip
            self._lineno = n
            if line.startswith(prefix) and line[plen : plen + 1] == " ":
                label, sep, rest = line[plen + 1 :].partition(": ")
                kind = _LABELS.get(label)
                if kind is not None and rest[:7] == "length ":
                    try:
                        declared = int(rest[7:])
                    except ValueError:
                        pass
                    else:
                        if declared >= 0:
                            events += self._end_stray()
                            rec = self._start(kind, declared, n, events)
                            continue
            m = _HEADER.match(line)
            if m is not None:
                events += self._end_stray()
                rec = self._header(m, n, events)
                prefix = self._prefix
                plen = len(prefix)
                continue
            if self._maybe_stray(line, n, prefix, plen):
                continue
            if self._stray is not None and line.strip():
                events += self._end_stray()
            self.skipped_lines += 1
        self._lineno = n
        self._open = rec
        return events

    # -- the slow paths -------------------------------------------------------

    def _header(self, m: re.Match[str], n: int, events: list[Event]) -> _Open | None:
        prefix = m["prefix"]
        if prefix != self._prefix:
            self._prefix = prefix
            if self._run >= 0 or prefix:
                self._new_run(n, events, f"log prefix {prefix!r}" if prefix else "log prefix removed")
        kind = _LABELS[m["label"]]
        if m["null"] is not None:
            self.null_records += 1
            return None
        try:
            declared = int(m["length"])
        except ValueError:
            declared = -1
        if declared < 0:
            # keep the kind the header names; the hex lines that follow are its bytes
            rec = self._start(kind, 0, n, events, open_empty=True)
            assert rec is not None
            rec.declared = -1
            rec.defects.append(
                Defect(
                    n,
                    DefectKind.BAD_HEADER,
                    f"unreadable length in {_show(m.group(0))}; the hex lines that follow"
                    " are kept as its bytes",
                )
            )
            return rec
        return self._start(kind, declared, n, events)

    def _start(
        self, kind: Kind, declared: int, n: int, events: list[Event], *, open_empty: bool = False
    ) -> _Open | None:
        if self._run < 0:
            self._new_run(n, events, "start of log")
        rec = _Open(kind, n, declared, last_line=n)
        if declared == 0 and not open_empty:
            events += self._finish(rec)
            return None
        return rec

    def _new_run(self, n: int, events: list[Event], reason: str) -> None:
        self._run += 1
        self._run_has_tpm = False
        m = _PROXMOX_EPOCH.search(self._prefix)
        events.append(
            RunStart(
                self._run,
                n,
                self._prefix or None,
                int(m.group(1)) if m else None,
                reason,
            )
        )

    def _finish(self, rec: _Open) -> list[Event]:
        events: list[Event] = []
        data = rec.chunks[0] if len(rec.chunks) == 1 else b"".join(rec.chunks)
        self._emit(events, rec.kind, data, rec.line, rec.declared, tuple(rec.defects), rec.last_line)
        return events

    def _emit(
        self,
        events: list[Event],
        kind: Kind,
        data: bytes,
        line: int,
        declared: int,
        defects: tuple[Defect, ...],
        last_line: int,
    ) -> None:
        if kind is Kind.CTRL_COMMAND:
            if not self._prefix and self._run_has_tpm and data[:4] == CTRL_CMD_INIT:
                self._new_run(line, events, "CMD_INIT after TPM traffic (log has no prefix)")
        elif kind is Kind.TPM_COMMAND or kind is Kind.TPM_RESPONSE:
            self._run_has_tpm = True
        self._last_kind = kind
        events.append(_new_record((kind, data, line, self._run, declared, defects, last_line)))

    def _maybe_stray(self, line: str, n: int, prefix: str, plen: int) -> bool:
        """Hex lines outside any record: kept as a flagged record of their own."""
        if not (
            line.startswith(prefix)
            and line[plen : plen + 1] == " "
            and line[plen + 1 : plen + 2] not in (" ", "")
        ):
            return False
        try:
            chunk = bytes.fromhex(line[plen:])
        except ValueError:
            return False
        if not chunk:
            return False
        stray = self._stray
        if stray is None:
            stray = self._stray = _Open(self._last_kind, n, 0, last_line=n)
        stray.chunks.append(chunk)
        stray.got += len(chunk)
        stray.last_line = n
        return True

    def _end_stray(self) -> list[Event]:
        stray, self._stray = self._stray, None
        if stray is None:
            return []
        events: list[Event] = []
        if self._run < 0:
            self._new_run(stray.line, events, "start of log")
        stray.defects.append(
            Defect(
                stray.line,
                DefectKind.STRAY,
                f"{stray.got} bytes of hex outside any record (lines {stray.line}-{stray.last_line});"
                f" kept as a {stray.kind.value} fragment",
            )
        )
        return events + self._finish(stray)


def _show(line: str, width: int = 60) -> str:
    text = line.strip()
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def parse_bytes(data: bytes) -> list[Event]:
    """Parse a whole log held in memory (tests, small files)."""
    parser = LogParser()
    return parser.feed(data) + parser.close()
