"""Pure framer: parser events -> Ethernet/IPv4/TCP frames, one TCP conversation per run.

The encapsulation follows swtpm's own ``--pcap``: Ethernet, IPv4 127.0.0.1 -> 127.0.0.1, TCP to the TPM server port 2321 from a
client port above it (so Wireshark's TPM dissector takes client -> 2321 as a
request). The control channel goes to :data:`CTRL_PORT`, and hex found outside
any record (:attr:`Kind.STRAY`) to :data:`STRAY_PORT`; no Wireshark dissector
claims either, so neither can show up as a TPM frame.

A TPM frame whose payload is not exactly one TPM message by the size field
of the TPM header (part of one, the rest of one, or several) says so in its
comment (``partial: 10 of 22 bytes of TPM command 0x0000017A``), so a frame
Wireshark decodes oddly carries the reason.

Time is passed in: ``frames(event, now_us)`` stamps a frame with ``now_us``
(live capture) or, with ``None``, with a synthetic clock that starts a run at
its ``[id=<epoch>]`` (or at ``start_us`` when the log has no epoch) and
advances :data:`STEP_US` per frame. Timestamps always strictly increase.

The Ethernet addresses carry where a frame comes from, for the Wireshark plugin
(no per-frame comment needed, frame sizes unchanged): destination
``02:00:RR:RR:RR:RR`` = the run (1-based), source ``02:00:LL:LL:LL:LL`` = the
log line (both big-endian u32; ``02`` = locally administered, unicast).

Comments: with ``line_comments`` (the default) every frame names its log line
(``swtpm log line 1234: SWTPM_IO_Read length 12``). Without, only frames with
something to say carry a comment: a run's start (the first SYN of each of its
connections), a defect, a note on the TPM payload or an oversized record; the
plain line comment, the handshake's and the FIN's are left out.
"""

from __future__ import annotations

import struct

from ..swtpmlog.parser import Event, Kind, Record, RunStart
from .payload import message_note
from .tcp import ACK as ACK
from .tcp import CTRL_ADDR as CTRL_ADDR
from .tcp import FIN as FIN
from .tcp import HEADERS_SIZE as HEADERS_SIZE
from .tcp import LOOPBACK as LOOPBACK
from .tcp import PSH as PSH
from .tcp import STRAY_ADDR as STRAY_ADDR
from .tcp import SYN as SYN
from .tcp import ETH_TYPE_IP, HEADERS, IP_MID, NO_URG, Conversation
from .tcp import build_frame as build_frame
from .blocks import Tail, block_end, middle, tail
from .tcp import HEADERS_BY_PARTS
from .writer import BLOCK_EPB, encode_packets

TPM_PORT = 2321
CTRL_PORT = 2323
#: hex lines outside any record: their own stream, never decoded as TPM
STRAY_PORT = 2324
CLIENT_PORT_BASE = 50000
STEP_US = 1000
#: the largest TCP payload in one IPv4 packet (65535 - 20 - 20)
MAX_SEGMENT = 65495

#: notes (defects outside records, empty records) kept for one frame's comment
MAX_NOTES = 16
#: the pcapng comment option holds at most this many bytes (its length is 16 bits)
MAX_COMMENT = 0xFFFF

Frame = tuple[int, bytes, str]
"""(timestamp in microseconds, Ethernet frame, pcapng comment)"""


_TPM_KINDS = (Kind.TPM_COMMAND, Kind.TPM_RESPONSE)
_TO_SERVER = tuple(kind for kind in Kind if kind.to_server)
_LABEL_OF = {kind: kind.value for kind in Kind}


class _SizeFields(dict[int, bytes]):
    """A TPM header's size field for a payload size, made on first use."""

    def __missing__(self, size: int) -> bytes:
        field = self[size] = size.to_bytes(4, "big")
        return field


_SIZE_FIELDS = _SizeFields()
#: a record's line comment, by kind: "swtpm log line %d: <label> length %d"
_COMMENT_HEADS = {kind: b"swtpm log line %d: " + kind.value.encode() + b" length %d" for kind in Kind}
_EPB_HEAD = struct.Struct("<IIIIIII")
_NO_TAILS: dict[int, Tail] = {}


def _length(declared: int | None) -> str:
    return "length unknown" if declared is None else f"length {declared}"


class Framer:
    """Turns parser events into frames; one TCP conversation per run and channel."""

    def __init__(
        self, *, start_us: int = 0, ctrl: bool = True, step_us: int = STEP_US,
        line_comments: bool = True,
    ) -> None:
        self.ctrl = ctrl
        self.line_comments = line_comments
        self._step = step_us
        self._start = start_us
        self._next = start_us
        self._last = -1
        self._run = -1
        self._run_note = ""
        self._tpm: Conversation | None = None
        self._ctl: Conversation | None = None
        self._odd: Conversation | None = None  # stray hex
        self._notes: list[str] = []
        self._notes_left_out = 0
        #: record kind -> size -> the constant end of its pcapng block (:func:`.blocks.tail`)
        self._tails: dict[Kind, dict[int, Tail]] = {}

    # -- clock ----------------------------------------------------------------

    def _stamp(self, now_us: int | None) -> int:
        ts = self._next if now_us is None else now_us
        if ts <= self._last:
            ts = self._last + 1
        self._last = ts
        self._next = ts + self._step
        return ts

    # -- events ---------------------------------------------------------------

    def frames(self, event: Event, now_us: int | None = None) -> list[Frame]:
        """Frames for one event."""
        return self.frame_events([event], now_us)

    def frame_events(self, events: list[Event], now_us: int | None = None) -> list[Frame]:
        """Frames for a batch of events, in order (the fast path for whole logs)."""
        out: list[Frame] = []
        append = out.append
        tpm_kinds = _TPM_KINDS
        to_server = _TO_SERVER
        labels = _LABEL_OF
        stray = Kind.STRAY
        sizes = _SIZE_FIELDS
        plain = self.line_comments
        for event in events:
            if type(event) is not Record:
                if type(event) is RunStart:
                    out += self._run_start(event, now_us)
                else:
                    self._note(f"swtpm log defect: {event}")
                continue
            kind, data, line, run, declared, defects, last_line = event
            if run != self._run:  # a stream that starts without a RunStart
                self._run_start(RunStart(run, line, None, None, "first record"), now_us)
            tpm = kind in tpm_kinds
            if tpm:
                conv = self._tpm
            elif kind is stray:
                conv = self._odd
            elif self.ctrl:
                conv = self._ctl
            else:
                continue
            assert conv is not None
            if not data:
                note = f"empty record at swtpm log line {line}: {kind.value}"
                self._note(note + "".join(f"; swtpm log defect: {d}" for d in defects))
                continue
            if len(data) > MAX_SEGMENT:
                out += self._oversized(conv, event, now_us)
                continue
            if not conv.open:
                out += self._handshake(conv, now_us, line)
            conv.last_line = last_line or line
            up = kind in to_server
            if tpm and (conv.pending or data[2:6] != sizes[len(data)]):
                note = message_note(conv, up, data)
            else:
                note = ""
            pkt = conv.data(up, data, line)
            if not (plain or note or defects or self._notes):
                comment = ""
            elif declared is None:
                comment = f"swtpm log line {line}: {labels[kind]}, {_length(declared)}"
            else:
                comment = f"swtpm log line {line}: {labels[kind]} length {declared}"
            if note:
                comment += "\n" + note
            if defects:
                comment += "".join(f"\nswtpm log defect: {d}" for d in defects)
            if self._notes:
                comment = self._with_notes(comment)
            # the clock, inlined: this loop runs once per record
            ts = self._next if now_us is None else now_us
            if ts <= self._last:
                ts = self._last + 1
            self._last = ts
            self._next = ts + self._step
            append((ts, pkt, comment))
        return out

    def encode_events(
        self, events: list[Event], now_us: int | None = None, notes: dict[int, list[str]] | None = None
    ) -> tuple[bytes, int]:
        """The pcapng packet blocks of ``events`` and how many frames they hold:
        ``encode_packets(frame_events(events, now_us))``, with ``notes`` (log line
        -> comment lines, as :func:`annotate` places them) on the frames of their
        records, made in one pass.

        The fast path of whole logs: a record without damage on an open
        connection (one whole TPM message, or a control message) is framed and
        encoded at once, from the parts :mod:`.blocks` keeps; any other event goes
        through :meth:`frame_events`, the reference, one at a time.
        ``tests/fuzzlog.py`` holds both to the same bytes.
        """
        parts: list[bytes | bytearray] = []
        add = parts.append
        count = 0
        plain = self.line_comments
        ctrl = self.ctrl
        step = self._step
        sizes = _SIZE_FIELDS
        heads = _COMMENT_HEADS
        tails = self._tails
        epb = _EPB_HEAD.pack
        headers = HEADERS_BY_PARTS.pack
        record = Record
        tpm_command, tpm_response = Kind.TPM_COMMAND, Kind.TPM_RESPONSE
        ctrl_command = Kind.CTRL_COMMAND
        stray = Kind.STRAY
        run_now = self._run
        tpm_conv, ctl_conv = self._tpm, self._ctl
        last, nxt = self._last, self._next
        held = self._notes
        for ev in events:
            if type(ev) is record:
                kind, data, line, run, declared, defects, last_line = ev
                size = len(data)
                if run == run_now and not defects and not held and 0 < size <= MAX_SEGMENT:
                    if kind is tpm_command or kind is tpm_response:
                        conv = tpm_conv
                        if conv is not None and (conv.pending or data[2:6] != sizes[size]):
                            conv = None  # not one whole TPM message: its comment says so
                    else:
                        conv = ctl_conv if ctrl and kind is not stray else None
                    if conv is not None and conv.open:
                        if kind is tpm_command or kind is ctrl_command:
                            way = conv.up
                            seq = conv.cseq
                            ack = conv.sseq
                            conv.cseq = (seq + size) & 0xFFFFFFFF
                        else:
                            way = conv.down
                            seq = conv.sseq
                            ack = conv.cseq
                            conv.sseq = (seq + size) & 0xFFFFFFFF
                        conv.last_line = last_line or line
                        # the TCP checksum: the payload's words (mod 0xFFFF) with the rest
                        value = int.from_bytes(data, "big") % 0xFFFF
                        if size & 1:
                            value <<= 8
                        tcp_sum = 0xFFFF - ((way.tcp_const + size + seq + ack + value) % 0xFFFF or 0xFFFF)
                        ts = nxt if now_us is None else now_us
                        if ts <= last:
                            ts = last + 1
                        last = ts
                        nxt = ts + step
                        mid = way.mids.get(size) or middle(way, size)
                        if notes and line in notes or declared != size:
                            text = heads[kind] % (line, declared) if plain else b""
                            if notes and line in notes:
                                lines = "\n".join(notes.pop(line)).encode()
                                text = text + b"\n" + lines if text else lines
                            after, total, plen = block_end(text, size)
                            parts += (
                                epb(BLOCK_EPB, total, 0, ts >> 32, ts & 0xFFFFFFFF, plen, plen),
                                headers(way.macs, line & 0xFFFFFFFF, mid, seq, ack, way.flags, tcp_sum),
                                data,
                                after,
                            )
                        else:
                            low, high, fmt, total, plen = tails.get(kind, _NO_TAILS).get(size) or tail(
                                tails, kind, size, line, plain)
                            if not low <= line < high:
                                low, high, fmt, total, plen = tail(tails, kind, size, line, plain)
                            parts += (
                                epb(BLOCK_EPB, total, 0, ts >> 32, ts & 0xFFFFFFFF, plen, plen),
                                headers(way.macs, line & 0xFFFFFFFF, mid, seq, ack, way.flags, tcp_sum),
                                data,
                                fmt % line if plain else fmt,
                            )
                        count += 1
                        continue
            # anything else: the reference path, for this one event
            self._last, self._next = last, nxt
            frames = Framer.frame_events(self, [ev], now_us)
            if notes:
                annotate(frames, [ev], notes, ctrl)
            add(encode_packets(frames))
            count += len(frames)
            run_now = self._run
            tpm_conv, ctl_conv = self._tpm, self._ctl
            last, nxt = self._last, self._next
            held = self._notes
        self._last, self._next = last, nxt
        return b"".join(parts), count

    def _oversized(self, conv: Conversation, rec: Record, now_us: int | None) -> list[Frame]:
        """Data no IPv4 packet can hold (only a damaged log has it): several segments."""
        out = self._handshake(conv, now_us, rec.line) if not conv.open else []
        parts = range(0, len(rec.data), MAX_SEGMENT)
        for number, offset in enumerate(parts, 1):
            piece = rec.data[offset : offset + MAX_SEGMENT]
            pkt = conv.data(rec.kind in _TO_SERVER, piece, rec.line)
            comment = (
                f"swtpm log line {rec.line}: {rec.kind.value} {_length(rec.declared)},"
                f" part {number} of {len(parts)} ({len(rec.data)} bytes do not fit one IPv4 packet)"
            )
            if number == 1:
                comment += "".join(f"\nswtpm log defect: {d}" for d in rec.defects)
                comment = self._with_notes(comment)
            out.append((self._stamp(now_us), pkt, comment))
        conv.last_line = rec.last_line or rec.line
        return out

    def close(self, now_us: int | None = None, line: int = 0) -> list[Frame]:
        """End of capture: close the open conversations with a FIN exchange."""
        out: list[Frame] = []
        for conv in (self._tpm, self._ctl, self._odd):
            if conv is not None and conv.open:
                out += self._fin(conv, now_us, line or conv.last_line)
        return out

    def _run_start(self, event: RunStart, now_us: int | None) -> list[Frame]:
        out = self.close(now_us, event.line)
        self._run = event.run
        if now_us is None:
            base = event.epoch * 1_000_000 if event.epoch is not None else self._start
            self._next = base if self._last < 0 else max(base, self._last + self._step)
        port = CLIENT_PORT_BASE + event.run % (65536 - CLIENT_PORT_BASE)
        isn = (event.run + 1) * 0x01000000 & 0xFFFFFFFF
        self._tpm = Conversation(port, TPM_PORT, LOOPBACK, isn, event.run)
        self._ctl = Conversation(port, CTRL_PORT, CTRL_ADDR, isn, event.run)
        self._odd = Conversation(port, STRAY_PORT, STRAY_ADDR, isn, event.run)
        self._run_note = f"swtpm run {event.run + 1} from log line {event.line} ({event.reason})"
        return out

    def _note(self, note: str) -> None:
        """A note for the next frame's comment: the first MAX_NOTES kept, the rest counted."""
        if len(self._notes) < MAX_NOTES:
            self._notes.append(note)
        else:
            self._notes_left_out += 1

    def _with_notes(self, comment: str) -> str:
        if not self._notes:
            return comment
        notes, self._notes = self._notes, []
        if self._notes_left_out:
            notes.append(f"swtpm log: {self._notes_left_out} more defects before this frame left out")
            self._notes_left_out = 0
        return "\n".join([comment, *notes] if comment else notes)

    def _handshake(self, conv: Conversation, now_us: int | None, line: int) -> list[Frame]:
        conv.open = True
        what = {TPM_PORT: "TPM", CTRL_PORT: "control channel"}.get(conv.server, "stray hex")
        note = f"{self._run_note}; {what} connection opened for log line {line}"
        syn = conv.control(True, SYN, conv.cseq, 0, line)
        conv.cseq = (conv.cseq + 1) & 0xFFFFFFFF
        synack = conv.control(False, SYN | ACK, conv.sseq, conv.cseq, line)
        conv.sseq = (conv.sseq + 1) & 0xFFFFFFFF
        ack = conv.control(True, ACK, conv.cseq, conv.sseq, line)
        plain = f"swtpm log line {line}: handshake" if self.line_comments else ""
        return [
            (self._stamp(now_us), syn, note),
            (self._stamp(now_us), synack, plain),
            (self._stamp(now_us), ack, plain),
        ]

    def _fin(self, conv: Conversation, now_us: int | None, line: int) -> list[Frame]:
        conv.open = False
        note = f"swtpm log line {line}: end of run {self._run + 1}"
        first = self._with_notes(note if self.line_comments or self._notes else "")
        if not self.line_comments:
            note = ""
        fin = conv.control(True, FIN | ACK, conv.cseq, conv.sseq, line)
        conv.cseq = (conv.cseq + 1) & 0xFFFFFFFF
        finack = conv.control(False, FIN | ACK, conv.sseq, conv.cseq, line)
        conv.sseq = (conv.sseq + 1) & 0xFFFFFFFF
        ack = conv.control(True, ACK, conv.cseq, conv.sseq, line)
        return [
            (self._stamp(now_us), fin, first),
            (self._stamp(now_us), finack, note),
            (self._stamp(now_us), ack, note),
        ]


def annotate(frames: list[Frame], events: list[Event], notes: dict[int, list[str]], ctrl: bool) -> None:
    """Append ``notes`` (log line -> comment lines) to the comments of the frames
    of their records, in place, taking each from ``notes`` as it is placed."""
    at = 0
    for ev in events:
        if type(ev) is not Record or ev[2] not in notes:
            continue
        lines = notes.pop(ev[2])
        if not ev[1] or not (ctrl or ev[0].is_tpm):
            continue
        # the record's own frame: it carries data and its log line in the source MAC
        # (a handshake for the same line has no payload; comments may be off)
        line = (ev[2] & 0xFFFFFFFF).to_bytes(4, "big")
        while at < len(frames) and not (
            len(frames[at][1]) > HEADERS_SIZE and frames[at][1][8:12] == line
        ):
            at += 1
        if at == len(frames):  # not framed in this call (cannot happen; never fail for a note)
            return
        ts, pkt, comment = frames[at]
        frames[at] = (ts, pkt, "\n".join([comment, *lines] if comment else lines))
        at += 1
        if not notes:
            return
