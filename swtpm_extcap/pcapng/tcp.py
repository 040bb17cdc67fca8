"""Ethernet/IPv4/TCP segments of the simulated connections, with valid checksums.

Pure: :class:`Conversation` keeps one connection's sequence numbers and what
TPM message it is in the middle of (:class:`~.payload.Messages`);
:class:`Direction` holds the constant part of every frame one way on it, so a
frame is one ``struct.pack`` and one big-integer checksum (:func:`words`).
"""

from __future__ import annotations

import struct

from .payload import Messages

SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10
WINDOW = 0xFFFF
LOOPBACK = b"\x7f\x00\x00\x01"
#: the control channel's address: Wireshark's LBMSRS heuristic claims any TCP
#: payload from 127.0.0.1 by default, so control messages use 127.0.0.2
CTRL_ADDR = b"\x7f\x00\x00\x02"
STRAY_ADDR = b"\x7f\x00\x00\x03"

# 14 bytes Ethernet (IPv4), 20 bytes IPv4, 20 bytes TCP, in one pack:
# destination MAC (run) + source MAC's first 2 bytes | log line (source MAC's last 4) |
# ethertype + version/TOS | total length | id, DF, TTL, proto | IP checksum |
# addresses + ports | seq | ack | offset, flags, window | TCP checksum + urgent
HEADERS = struct.Struct("!8sI4sH6sH12sII4sH2s")
#: Ethernet + IPv4 + TCP header bytes before a frame's payload
HEADERS_SIZE = HEADERS.size
#: the same, with the 26 bytes from the Ethernet type to the ports as one (:mod:`.blocks`)
HEADERS_BY_PARTS = struct.Struct("!8sI26sII4sH2x")
MAC_PREFIX = b"\x02\x00"  # locally administered unicast: 02:00 + a big-endian u32
ETH_TYPE_IP = b"\x08\x00" + b"\x45\x10"
IP_MID = b"\x00\x00\x40\x00\x40\x06"  # id 0, DF, TTL 64, TCP
IP_CONST = 0x4510 + 0x4000 + (64 << 8 | 6)
NO_URG = b"\0\0"


def words(data: bytes) -> int:
    """Sum of the 16-bit big-endian words of ``data``, modulo 0xFFFF.

    2**16 == 1 (mod 0xFFFF), so the whole buffer read as one big integer is
    congruent to the sum of its words: the ones' complement sum, in C.
    """
    value = int.from_bytes(data, "big")
    return (value << 8 if len(data) & 1 else value) % 0xFFFF


class Direction:
    """The constant part of every frame one way on one connection."""

    __slots__ = ("macs", "addr_ports", "flags", "ip_const", "tcp_const", "mids")

    def __init__(
        self, addr: bytes, sport: int, dport: int, flags: int, run: int | None = None
    ) -> None:
        # no run: zero MAC addresses (and line 0), as swtpm's own --pcap
        if run is None:
            self.macs = bytes(8)
        else:
            self.macs = MAC_PREFIX + struct.pack("!I", run + 1) + MAC_PREFIX
        self.addr_ports = addr + addr + struct.pack("!HH", sport, dport)
        self.flags = struct.pack("!BBH", 0x50, flags, WINDOW)
        self.ip_const = IP_CONST + words(addr + addr)
        self.tcp_const = words(addr + addr) + 6 + 20 + sport + dport + (0x5000 | flags) + WINDOW
        #: payload size -> the bytes from the Ethernet type to the ports (:func:`.blocks.middle`)
        self.mids: dict[int, bytes] = {}

    def frame(self, seq: int, ack: int, payload: bytes, line: int = 0) -> bytes:
        """One Ethernet/IPv4/TCP frame with valid IP and TCP checksums (``line``: source MAC)."""
        size = len(payload)
        value = int.from_bytes(payload, "big")
        if size & 1:
            value <<= 8
        tcp_sum = 0xFFFF - ((self.tcp_const + size + seq + ack + value) % 0xFFFF or 0xFFFF)
        ip_sum = 0xFFFF - ((self.ip_const + 40 + size) % 0xFFFF or 0xFFFF)
        return HEADERS.pack(
            self.macs, line & 0xFFFFFFFF, ETH_TYPE_IP, 40 + size, IP_MID, ip_sum, self.addr_ports, seq, ack, self.flags, tcp_sum, NO_URG
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
    return Direction(addr, sport, dport, flags, run).frame(seq, ack, payload, line)


class Conversation(Messages):
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
        self.up = Direction(addr, client, server, PSH | ACK, run)
        self.down = Direction(addr, server, client, PSH | ACK, run)
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
