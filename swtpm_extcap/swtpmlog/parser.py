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
Damage outside any record is a :class:`Defect` event of its own, except hex
lines outside any record: they come out as a :class:`Record` of kind
:attr:`Kind.STRAY` (never a TPM message), flagged.

Lines end at LF, CRLF or a lone CR. Whatever the input, memory is bounded:
a line is read up to :data:`MAX_LINE` characters, a record keeps up to
:data:`MAX_RECORD` bytes, a record carries up to :data:`MAX_DEFECTS` defects
of its lines and one that counts the rest. Each of these cuts is a defect.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from .events import LABELS as LABELS
from .events import Defect as Defect
from .events import DefectKind as DefectKind
from .events import Event as Event
from .events import Kind as Kind
from .events import Record as Record
from .events import RunStart as RunStart
from .layout import (
    _LAYOUTS,
    DIGITS,
    HeaderMatch,
    any_header,
    layout_of,
    line_ends,
    prefixed_header,
    show,
)
from .record import MAX_DEFECTS as MAX_DEFECTS
from .record import MAX_RECORD as MAX_RECORD
from .record import OpenRecord

#: a line longer than this is read up to here, the rest skipped (swtpm's are < 100)
MAX_LINE = 1 << 20
#: longest prefix the fast path handles (a real one is ~20 characters)
MAX_FAST_PREFIX = 1024
#: control channel command that (re)initialises the TPM: CMD_INIT
CTRL_CMD_INIT = b"\x00\x00\x00\x02"

_PROXMOX_EPOCH = re.compile(r"\[id=(\d{1,12})\]")


_HEADER = any_header(LABELS)
#: the record labels as the fast path matches them, in the log's bytes
BYTE_LABELS = {label.encode("latin-1"): kind for label, kind in LABELS.items()}

# Record((...)) without the generated __new__: half the cost, same object
_new_record = functools.partial(tuple.__new__, Record)


class LogParser:
    """Incremental swtpm log parser.

    ``feed(data)`` takes any chunk of the log (a partial last line is held back
    until its line end arrives); ``close()`` ends the input. Both return the
    events completed so far, in log order. The events do not depend on how
    the input is cut into chunks.

    Runs: a change of the log prefix starts a new run (Proxmox writes a new
    ``[id=<epoch>] `` at each VM start). A log without a prefix has no such
    marker; there a control-channel CMD_INIT that follows TPM traffic starts a
    new run (the TPM was powered on again).

    A record takes the hex lines under its header until it has its declared
    length; one that passes it (its last line has too many bytes) takes every
    hex line that follows, up to the next line that is not one, as one
    record flagged ``long``. Hex lines outside any record are one
    :attr:`Kind.STRAY` record per run of them.
    """

    def __init__(self) -> None:
        self._tail = b""
        self._overlong = False  # skipping the rest of a line longer than MAX_LINE
        self._lineno = 0
        self._prefix = ""
        self._run = -1
        self._run_has_tpm = False
        self._open: OpenRecord | None = None
        self._stray: OpenRecord | None = None
        #: lines that are neither records nor damage (libtpms traces, blank lines, ...)
        self.skipped_lines = 0
        self._rx: HeaderMatch | None = None
        self._rx_prefix = ""
        self._nl_prefix = b"\n"

    @property
    def lines(self) -> int:
        """Number of lines consumed so far."""
        return self._lineno

    @property
    def pending(self) -> bool:
        """True while a partial line, an unfinished record or a run of stray hex is held back."""
        return bool(self._tail) or self._open is not None or self._stray is not None

    def feed(self, data: bytes) -> list[Event]:
        if not data:
            return []
        buf = self._tail + data if self._tail else data
        self._tail = b""
        if b"\r" in buf:
            buf = line_ends(buf)
        events: list[Event] = []
        if self._overlong:  # the rest of a line already taken: drop it
            end = buf.find(b"\n")
            if end < 0:
                self._tail = b"\r" if buf.endswith(b"\r") else b""
                return events
            self._overlong = False
            buf = buf[end + 1 :]
        cut = buf.rfind(b"\n") + 1
        if cut:
            events = self._text(buf[:cut])
            buf = buf[cut:]
        if len(buf) - buf.endswith(b"\r") > MAX_LINE:
            # no swtpm line is this long: read its start, skip the rest, so
            # memory stays bounded whatever the input
            self._overlong = True
            self._tail = b"\r" if buf.endswith(b"\r") else b""
            events += self._long_line(buf[:MAX_LINE].decode("latin-1"))
        else:
            self._tail = buf
        return events

    def feed_lines(self, lines: Iterable[str]) -> list[Event]:
        """Feed complete lines (without or with their line ending), line by line:
        the reference behaviour the fast path of :meth:`feed` must equal."""
        events: list[Event] = []
        batch: list[str] = []
        for line in lines:
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
            parts = line.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            for part in parts:
                if len(part) > MAX_LINE:
                    events += self._lines(batch)
                    batch = []
                    events += self._long_line(part[:MAX_LINE])
                else:
                    batch.append(part)
        return events + self._lines(batch)

    def close(self) -> list[Event]:
        events: list[Event] = []
        tail, self._tail = self._tail, b""
        overlong, self._overlong = self._overlong, False
        if tail.endswith(b"\r"):  # a line end (an LF did not follow)
            if not overlong:
                events += self._lines([tail[:-1].decode("latin-1")])
        elif tail:  # the last line, without its end
            events += self._lines([tail.decode("latin-1")])
        if self._open is not None:
            rec, self._open = self._open, None
            if rec.declared is not None and not rec.over:
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

    def _text(self, buf: bytes) -> list[Event]:
        """Parse complete lines (``buf`` ends with a newline).

        Intact records are taken whole: the header by one regex match, the hex
        block by arithmetic (swtpm writes 16 bytes a line, ``" XX"`` each, so
        the block's length follows from the header), checked byte for byte
        against swtpm's layout and decoded as
        :func:`~swtpm_extcap.swtpmlog.layout.hex_bytes` says why (inlined here).
        Anything else (run changes, damage, other lines) goes line by line through
        :meth:`_lines`, the reference behaviour, as text (latin-1 maps every byte
        to one character: it never fails and keeps offsets); both give the same
        events.
        """
        events: list[Event] = []
        append = events.append
        digits = DIGITS
        layouts = _LAYOUTS
        fromhex = bytes.fromhex
        labels = BYTE_LABELS
        tpm_command, tpm_response = Kind.TPM_COMMAND, Kind.TPM_RESPONSE
        new_record = _new_record
        newline = b"\n"
        pos = 0
        end = len(buf)
        while pos < end:
            if (
                self._open is None
                and self._stray is None
                and self._run >= 0
                and len(self._prefix) <= MAX_FAST_PREFIX
            ):
                header = self._header_rx()
                nl_prefix = self._nl_prefix
                prefixed = len(nl_prefix) > 1
                step = 1 + len(nl_prefix)
                run = self._run
                lineno = self._lineno  # kept in locals while records come whole
                has_tpm = False
                m = header(buf, pos)
                while m is not None:
                    label, length = m.groups()
                    declared = int(length)
                    if declared > MAX_RECORD:
                        break
                    start = m.end()
                    nlines = (declared + 15) >> 4
                    stop = start + step * nlines + 3 * declared
                    if buf[stop - 1 : stop] != newline:
                        break
                    block = buf[start - 1 : stop]
                    if prefixed:
                        block = block.replace(nl_prefix, b"\n")
                    if block.translate(digits) != (layouts.get(declared) or layout_of(declared)):
                        break
                    data = fromhex(block.decode("latin-1"))
                    line = lineno + 1
                    lineno = last = line + nlines
                    kind = labels[label]
                    if kind is tpm_command or kind is tpm_response:
                        has_tpm = True
                        append(new_record((kind, data, line, run, declared, (), last)))
                    else:
                        self._lineno = lineno
                        if has_tpm:
                            self._run_has_tpm = True
                            has_tpm = False  # (a run start it makes clears the attribute)
                        self._emit(events, kind, data, line, declared, (), last)
                        run = self._run
                    pos = stop
                    m = header(buf, pos)
                self._lineno = lineno
                if has_tpm:
                    self._run_has_tpm = True
                if pos >= end:
                    break
            # the line path: one line, then the fast path again; inside a
            # damaged record or stray hex (no fast path there) a batch of lines
            batch: list[str] = []
            rec = self._open
            if rec is None and self._stray is None:
                most = 1
            elif rec is not None and rec.declared is not None and not rec.over and not rec.defects:
                # the lines it still lacks (then the fast path again), at most 64
                most = min(64, max(1, (rec.declared - rec.got + 15) >> 4))
            else:
                most = 64
            while pos < end and len(batch) < most:
                nl = buf.find(b"\n", pos)
                if nl - pos > MAX_LINE:
                    events += self._lines(batch)
                    batch = []
                    events += self._long_line(buf[pos : pos + MAX_LINE].decode("latin-1"))
                else:
                    batch.append(buf[pos:nl].decode("latin-1"))
                pos = nl + 1
            events += self._lines(batch)
        return events

    def _header_rx(self) -> HeaderMatch:
        if self._rx is None or self._rx_prefix != self._prefix:
            prefix = self._prefix.encode("latin-1")
            self._rx = prefixed_header(prefix, LABELS)
            self._nl_prefix = b"\n" + prefix
            self._rx_prefix = self._prefix
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
                        rec.add(chunk, n)
                        declared = rec.declared
                        if declared is not None and rec.got >= declared and not rec.over:
                            if rec.got == declared:
                                self._lineno = n
                                events += self._finish(rec)
                                rec = None
                            else:  # passed its length: takes the hex lines that follow too
                                rec.over = n
                        continue
                if rec.declared is None or rec.over:
                    # its hex has ended (no length to reach, or passed it)
                    events += self._finish(rec)
                    rec = None
                # not a hex line: a new header ends the record short
                elif _HEADER.match(line) is None:
                    if line.strip():
                        if len(rec.defects) < MAX_DEFECTS:
                            rec.flag(n, DefectKind.JUNK, f"not hex inside a record: {show(line)}")
                        else:
                            rec.omitted += 1
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
                kind = LABELS.get(label)
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
            # (a hex line is never a header: look for the cheaper one first)
            if self._maybe_stray(line, n, prefix, plen):
                continue
            m = _HEADER.match(line)
            if m is not None:
                events += self._end_stray()
                rec = self._header(m, n, events)
                prefix = self._prefix
                plen = len(prefix)
                continue
            # (a run of stray hex goes on over other lines: a run of junk is one
            # record, one defect, however its hex and other lines alternate)
            self.skipped_lines += 1
        self._lineno = n
        self._open = rec
        return events

    # -- the slow paths -------------------------------------------------------

    def _long_line(self, line: str) -> list[Event]:
        """A line longer than MAX_LINE: its first MAX_LINE characters, then a defect."""
        events = self._lines([line])
        n = self._lineno
        detail = f"line longer than {MAX_LINE} bytes: only its first {MAX_LINE} are read"
        holder = self._open or self._stray
        if holder is not None:
            holder.flag(n, DefectKind.LONG_LINE, detail)
        else:
            events.append(Defect(n, DefectKind.LONG_LINE, detail))
        return events

    def _header(self, m: re.Match[str], n: int, events: list[Event]) -> OpenRecord | None:
        prefix = m["prefix"]
        if prefix != self._prefix:
            self._prefix = prefix
            if self._run >= 0 or prefix:
                shown = repr(prefix if len(prefix) <= 80 else prefix[:77] + "...")
                self._new_run(n, events, f"log prefix {shown}" if prefix else "log prefix removed")
        kind = LABELS[m["label"]]
        if m["null"] is not None:
            return None
        try:
            declared = int(m["length"])
        except ValueError:  # not a number, or 5,000 digits
            declared = -1
        if declared < 0:
            # keep the kind the header names; the hex lines that follow are its bytes
            rec = self._start(kind, None, n, events)
            assert rec is not None
            rec.defects.append(
                Defect(
                    n,
                    DefectKind.BAD_HEADER,
                    f"unreadable length in {show(m.group(0))}; the hex lines that follow"
                    " are kept as its bytes",
                )
            )
            return rec
        return self._start(kind, declared, n, events)

    def _start(self, kind: Kind, declared: int | None, n: int, events: list[Event]) -> OpenRecord | None:
        if self._run < 0:
            self._new_run(n, events, "start of log")
        rec = OpenRecord(kind, n, declared, last_line=n)
        if declared == 0:
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

    def _finish(self, rec: OpenRecord) -> list[Event]:
        events: list[Event] = []
        defects = rec.closing_defects()
        self._emit(events, rec.kind, bytes(rec.buf), rec.line, rec.declared, defects, rec.last_line)
        return events

    def _emit(
        self,
        events: list[Event],
        kind: Kind,
        data: bytes,
        line: int,
        declared: int | None,
        defects: tuple[Defect, ...],
        last_line: int,
    ) -> None:
        if kind is Kind.CTRL_COMMAND:
            if not self._prefix and self._run_has_tpm and data[:4] == CTRL_CMD_INIT:
                self._new_run(line, events, "CMD_INIT after TPM traffic (log has no prefix)")
        elif kind is Kind.TPM_COMMAND or kind is Kind.TPM_RESPONSE:
            self._run_has_tpm = True
        events.append(_new_record((kind, data, line, self._run, declared, defects, last_line)))

    def _maybe_stray(self, line: str, n: int, prefix: str, plen: int) -> bool:
        """Hex lines outside any record: kept as a flagged STRAY record of their own."""
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
            stray = self._stray = OpenRecord(Kind.STRAY, n, None, last_line=n)
        stray.add(chunk, n)
        return True

    def _end_stray(self) -> list[Event]:
        stray, self._stray = self._stray, None
        if stray is None:
            return []
        events: list[Event] = []
        if self._run < 0:
            self._new_run(stray.line, events, "start of log")
        stray.defects.insert(0, stray.stray_defect())
        return events + self._finish(stray)


def parse_bytes(data: bytes) -> list[Event]:
    """Parse a whole log held in memory (tests, small files)."""
    parser = LogParser()
    return parser.feed(data) + parser.close()
