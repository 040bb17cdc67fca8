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
from .payload import Messages, message_note

TPM_PORT = 2321
CTRL_PORT = 2323
#: hex lines outside any record: their own stream, never decoded as TPM
STRAY_PORT = 2324
CLIENT_PORT_BASE = 50000
STEP_US = 1000
#: the largest TCP payload in one IPv4 packet (65535 - 20 - 20)
MAX_SEGMENT = 65495

SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10
WINDOW = 0xFFFF
LOOPBACK = b"\x7f\x00\x00\x01"
#: the control channel's address: Wireshark's LBMSRS heuristic claims any TCP
#: payload from 127.0.0.1 by default, so control messages use 127.0.0.2
CTRL_ADDR = b"\x7f\x00\x00\x02"
STRAY_ADDR = b"\x7f\x00\x00\x03"
#: notes (defects outside records, empty records) kept for one frame's comment
MAX_NOTES = 16
#: the pcapng comment option holds at most this many bytes (its length is 16 bits)
MAX_COMMENT = 0xFFFF

# 14 bytes Ethernet (IPv4), 20 bytes IPv4, 20 bytes TCP, in one pack:
# destination MAC (run) + source MAC's first 2 bytes | log line (source MAC's last 4) |
# ethertype + version/TOS | total length | id, DF, TTL, proto | IP checksum |
# addresses + ports | seq | ack | offset, flags, window | TCP checksum + urgent
_HEADERS = struct.Struct("!8sI4sH6sH12sII4sH2s")
#: Ethernet + IPv4 + TCP header bytes before a frame's payload
HEADERS_SIZE = _HEADERS.size
_MAC_PREFIX = b"\x02\x00"  # locally administered unicast: 02:00 + a big-endian u32
_ETH_TYPE_IP = b"\x08\x00" + b"\x45\x10"
_IP_MID = b"\x00\x00\x40\x00\x40\x06"  # id 0, DF, TTL 64, TCP
_IP_CONST = 0x4510 + 0x4000 + (64 << 8 | 6)
_NO_URG = b"\0\0"

Frame = tuple[int, bytes, str]
"""(timestamp in microseconds, Ethernet frame, pcapng comment)"""


def _words(data: bytes) -> int:
    """Sum of the 16-bit big-endian words of ``data``, modulo 0xFFFF.

    2**16 == 1 (mod 0xFFFF), so the whole buffer read as one big integer is
    congruent to the sum of its words: the ones' complement sum, in C.
    """
    value = int.from_bytes(data, "big")
    return (value << 8 if len(data) & 1 else value) % 0xFFFF


def _fold(total: int) -> int:
    """Ones' complement checksum from a word sum (of data that is not all zero)."""
    return 0xFFFF - (total % 0xFFFF or 0xFFFF)


class _Direction:
    """The constant part of every frame one way on one connection."""

    __slots__ = ("macs", "addr_ports", "flags", "ip_const", "tcp_const")

    def __init__(
        self, addr: bytes, sport: int, dport: int, flags: int, run: int | None = None
    ) -> None:
        # no run: zero MAC addresses (and line 0), as swtpm's own --pcap
        if run is None:
            self.macs = bytes(8)
        else:
            self.macs = _MAC_PREFIX + struct.pack("!I", run + 1) + _MAC_PREFIX
        self.addr_ports = addr + addr + struct.pack("!HH", sport, dport)
        self.flags = struct.pack("!BBH", 0x50, flags, WINDOW)
        self.ip_const = _IP_CONST + _words(addr + addr)
        self.tcp_const = _words(addr + addr) + 6 + 20 + sport + dport + (0x5000 | flags) + WINDOW

    def frame(self, seq: int, ack: int, payload: bytes, line: int = 0) -> bytes:
        """One Ethernet/IPv4/TCP frame with valid IP and TCP checksums (``line``: source MAC)."""
        size = len(payload)
        value = int.from_bytes(payload, "big")
        if size & 1:
            value <<= 8
        tcp_sum = 0xFFFF - ((self.tcp_const + size + seq + ack + value) % 0xFFFF or 0xFFFF)
        ip_sum = 0xFFFF - ((self.ip_const + 40 + size) % 0xFFFF or 0xFFFF)
        return _HEADERS.pack(
            self.macs, line & 0xFFFFFFFF, _ETH_TYPE_IP, 40 + size, _IP_MID, ip_sum, self.addr_ports, seq, ack, self.flags, tcp_sum, _NO_URG
        ) + payload


def build_frame(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    addr: bytes = LOOPBACK,
    run: int | None = None,
    line: int = 0,
) -> bytes:
    """One Ethernet/IPv4/TCP frame from ``addr`` to ``addr`` with valid checksums."""
    return _Direction(addr, sport, dport, flags, run).frame(seq, ack, payload, line)


class _Conversation(Messages):
    """One simulated TCP connection: client port -> server port."""

    __slots__ = ("client", "server", "addr", "run", "cseq", "sseq", "open", "last_line", "up", "down")

    def __init__(self, client: int, server: int, addr: bytes, isn: int, run: int) -> None:
        self.client = client
        self.server = server
        self.addr = addr
        self.run = run
        self.cseq = isn
        self.sseq = isn ^ 0x80000000
        self.open = False
        self.last_line = 0
        self.up = _Direction(addr, client, server, PSH | ACK, run)
        self.down = _Direction(addr, server, client, PSH | ACK, run)
        super().__init__()

    def data(self, to_server: bool, payload: bytes, line: int) -> bytes:
        """A PSH|ACK segment carrying ``payload``; advances that side's sequence number."""
        if to_server:
            pkt = self.up.frame(self.cseq, self.sseq, payload, line)
            self.cseq = (self.cseq + len(payload)) & 0xFFFFFFFF
        else:
            pkt = self.down.frame(self.sseq, self.cseq, payload, line)
            self.sseq = (self.sseq + len(payload)) & 0xFFFFFFFF
        return pkt

    def control(self, to_server: bool, flags: int, seq: int, ack: int, line: int) -> bytes:
        """A segment without payload (handshake, FIN)."""
        if to_server:
            sport, dport = self.client, self.server
        else:
            sport, dport = self.server, self.client
        return build_frame(sport, dport, seq, ack, flags, b"", self.addr, self.run, line)


_TPM_KINDS = (Kind.TPM_COMMAND, Kind.TPM_RESPONSE)
_TO_SERVER = tuple(kind for kind in Kind if kind.to_server)
_LABEL_OF = {kind: kind.value for kind in Kind}


class _SizeFields(dict[int, bytes]):
    """A TPM header's size field for a payload size, made on first use."""

    def __missing__(self, size: int) -> bytes:
        field = self[size] = size.to_bytes(4, "big")
        return field


_SIZE_FIELDS = _SizeFields()


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
        self._tpm: _Conversation | None = None
        self._ctl: _Conversation | None = None
        self._odd: _Conversation | None = None  # stray hex
        self._notes: list[str] = []
        self._notes_left_out = 0

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

    def _oversized(self, conv: _Conversation, rec: Record, now_us: int | None) -> list[Frame]:
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
        self._tpm = _Conversation(port, TPM_PORT, LOOPBACK, isn, event.run)
        self._ctl = _Conversation(port, CTRL_PORT, CTRL_ADDR, isn, event.run)
        self._odd = _Conversation(port, STRAY_PORT, STRAY_ADDR, isn, event.run)
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

    def _handshake(self, conv: _Conversation, now_us: int | None, line: int) -> list[Frame]:
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

    def _fin(self, conv: _Conversation, now_us: int | None, line: int) -> list[Frame]:
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
