"""Pure framer: parser events -> Ethernet/IPv4/TCP frames, one TCP conversation per run.

The encapsulation follows swtpm's own ``--pcap``: Ethernet with zero MAC
addresses, IPv4 127.0.0.1 -> 127.0.0.1, TCP to the TPM server port 2321 from a
client port above it (so Wireshark's TPM dissector takes client -> 2321 as a
request). The control channel goes to :data:`CTRL_PORT`, which no Wireshark
dissector claims, so a control message can never show up as a TPM frame.

Time is passed in: ``frames(event, now_us)`` stamps a frame with ``now_us``
(live capture) or, with ``None``, with a synthetic clock that starts a run at
its ``[id=<epoch>]`` (or at ``start_us`` when the log has no epoch) and
advances :data:`STEP_US` per frame. Timestamps always strictly increase.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .logparse import Defect, Event, Kind, Record, RunStart

TPM_PORT = 2321
CTRL_PORT = 2323
CLIENT_PORT_BASE = 50000
STEP_US = 1000

SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10
WINDOW = 0xFFFF
LOOPBACK = b"\x7f\x00\x00\x01"
#: the control channel's address: Wireshark's LBMSRS heuristic claims any TCP
#: payload from 127.0.0.1 by default, so control messages use 127.0.0.2
CTRL_ADDR = b"\x7f\x00\x00\x02"

# 14 bytes Ethernet (zero MACs, IPv4), 20 bytes IPv4, 20 bytes TCP
_HEADERS = struct.Struct("!12sH BBHHHBBH4s4s HHIIHHHH")
_ETH_ADDRS = bytes(12)
_ETHERTYPE_IPV4 = 0x0800
# ones' complement sums of the constant header words
_IP_CONST = 0x4510 + 0x4000 + (64 << 8 | 6)
_TCP_CONST = 6 + WINDOW

Frame = tuple[int, bytes, str]
"""(timestamp in microseconds, Ethernet frame, pcapng comment)"""


def _fold(total: int) -> int:
    """Ones' complement checksum of a sum of 16-bit words (non-zero data)."""
    rem = total % 0xFFFF
    return 0xFFFF - (rem or 0xFFFF)


def _addr_words(addr: bytes) -> int:
    """Sum of the 16-bit words of source and destination (both ``addr``)."""
    return 2 * (int.from_bytes(addr[:2], "big") + int.from_bytes(addr[2:], "big"))


def build_frame(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    addr: bytes = LOOPBACK,
) -> bytes:
    """One Ethernet/IPv4/TCP frame from ``addr`` to ``addr`` with valid checksums."""
    size = len(payload)
    ip_len = 40 + size
    addr_words = _addr_words(addr)
    ip_sum = _fold(_IP_CONST + addr_words + ip_len)
    words = int.from_bytes(payload, "big")
    if size & 1:
        words <<= 8
    tcp_sum = _fold(
        _TCP_CONST
        + addr_words
        + 20
        + size
        + sport
        + dport
        + (seq >> 16)
        + (seq & 0xFFFF)
        + (ack >> 16)
        + (ack & 0xFFFF)
        + (0x5000 | flags)
        + words % 0xFFFF
    )
    head = _HEADERS.pack(
        _ETH_ADDRS,
        _ETHERTYPE_IPV4,
        0x45,
        0x10,
        ip_len,
        0,
        0x4000,
        64,
        6,
        ip_sum,
        addr,
        addr,
        sport,
        dport,
        seq,
        ack,
        0x5000 | flags,
        WINDOW,
        tcp_sum,
        0,
    )
    return head + payload if size else head


@dataclass(slots=True)
class _Conversation:
    """One simulated TCP connection: client port -> server port."""

    client: int
    server: int
    addr: bytes
    cseq: int
    sseq: int
    open: bool = False
    last_line: int = 0


class Framer:
    """Turns parser events into frames; one TCP conversation per run and channel."""

    def __init__(self, *, start_us: int = 0, ctrl: bool = True, step_us: int = STEP_US) -> None:
        self.ctrl = ctrl
        self._step = step_us
        self._start = start_us
        self._next = start_us
        self._last = -1
        self._run = -1
        self._run_note = ""
        self._tpm: _Conversation | None = None
        self._ctl: _Conversation | None = None
        self._notes: list[str] = []

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
        if isinstance(event, Record):
            return self._record(event, now_us)
        if isinstance(event, RunStart):
            return self._run_start(event, now_us)
        self._notes.append(f"swtpm log defect: {event}")
        return []

    def close(self, now_us: int | None = None, line: int = 0) -> list[Frame]:
        """End of capture: close the open conversations with a FIN exchange."""
        out: list[Frame] = []
        for conv in (self._tpm, self._ctl):
            if conv is not None and conv.open:
                out += self._fin(conv, now_us, line or conv.last_line)
        return out

    def _run_start(self, event: RunStart, now_us: int | None) -> list[Frame]:
        out = self.close(now_us, event.line)
        self._run = event.run
        if now_us is None:
            base = event.epoch * 1_000_000 if event.epoch is not None else self._start
            self._next = max(base, self._last + self._step)
        port = CLIENT_PORT_BASE + event.run % (65536 - CLIENT_PORT_BASE)
        isn = (event.run + 1) * 0x01000000 & 0xFFFFFFFF
        self._tpm = _Conversation(port, TPM_PORT, LOOPBACK, isn, isn ^ 0x80000000)
        self._ctl = _Conversation(port, CTRL_PORT, CTRL_ADDR, isn, isn ^ 0x80000000)
        self._run_note = f"swtpm run {event.run + 1} from log line {event.line} ({event.reason})"
        return out

    def _record(self, rec: Record, now_us: int | None) -> list[Frame]:
        if rec.run != self._run:  # a stream that starts without a RunStart
            self._run_start(RunStart(rec.run, rec.line, None, None, "first record"), now_us)
        conv = self._tpm if rec.kind.is_tpm else self._ctl
        assert conv is not None
        if not rec.kind.is_tpm and not self.ctrl:
            return []
        comment = f"swtpm log line {rec.line}: {rec.kind.value} length {rec.declared}"
        if rec.defects:
            comment += "".join(f"\nswtpm log defect: {d}" for d in rec.defects)
        if not rec.data:
            self._notes.append(f"empty record at swtpm log line {rec.line}: {rec.kind.value}")
            return []
        out: list[Frame] = []
        if not conv.open:
            out += self._handshake(conv, now_us, rec.line)
        conv.last_line = rec.last_line or rec.line
        size = len(rec.data)
        if rec.kind.to_server:
            pkt = build_frame(conv.client, conv.server, conv.cseq, conv.sseq, PSH | ACK, rec.data, conv.addr)
            conv.cseq = (conv.cseq + size) & 0xFFFFFFFF
        else:
            pkt = build_frame(conv.server, conv.client, conv.sseq, conv.cseq, PSH | ACK, rec.data, conv.addr)
            conv.sseq = (conv.sseq + size) & 0xFFFFFFFF
        out.append((self._stamp(now_us), pkt, self._with_notes(comment)))
        return out

    def _with_notes(self, comment: str) -> str:
        if not self._notes:
            return comment
        notes, self._notes = self._notes, []
        return "\n".join([comment, *notes])

    def _handshake(self, conv: _Conversation, now_us: int | None, line: int) -> list[Frame]:
        conv.open = True
        c, s = conv.client, conv.server
        what = "TPM" if s == TPM_PORT else "control channel"
        note = f"{self._run_note}; {what} connection opened for log line {line}"
        syn = build_frame(c, s, conv.cseq, 0, SYN, b"", conv.addr)
        conv.cseq = (conv.cseq + 1) & 0xFFFFFFFF
        synack = build_frame(s, c, conv.sseq, conv.cseq, SYN | ACK, b"", conv.addr)
        conv.sseq = (conv.sseq + 1) & 0xFFFFFFFF
        ack = build_frame(c, s, conv.cseq, conv.sseq, ACK, b"", conv.addr)
        return [
            (self._stamp(now_us), syn, note),
            (self._stamp(now_us), synack, f"swtpm log line {line}: handshake"),
            (self._stamp(now_us), ack, f"swtpm log line {line}: handshake"),
        ]

    def _fin(self, conv: _Conversation, now_us: int | None, line: int) -> list[Frame]:
        conv.open = False
        c, s = conv.client, conv.server
        note = f"swtpm log line {line}: end of run {self._run + 1}"
        fin = build_frame(c, s, conv.cseq, conv.sseq, FIN | ACK, b"", conv.addr)
        conv.cseq = (conv.cseq + 1) & 0xFFFFFFFF
        finack = build_frame(s, c, conv.sseq, conv.cseq, FIN | ACK, b"", conv.addr)
        conv.sseq = (conv.sseq + 1) & 0xFFFFFFFF
        ack = build_frame(c, s, conv.cseq, conv.sseq, ACK, b"", conv.addr)
        return [
            (self._stamp(now_us), fin, self._with_notes(note)),
            (self._stamp(now_us), finack, note),
            (self._stamp(now_us), ack, note),
        ]
