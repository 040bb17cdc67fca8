"""A small incremental pcapng reader for the benchmarks: bytes in (any split), blocks out.

Independent of :mod:`swtpm_extcap.pcapng.writer` on purpose (it checks the writer,
it does not reuse it). Knows the blocks a live capture holds: Section Header
(its byte-order magic sets the endianness of the section), Interface
Description and Enhanced Packet blocks, each with its options parsed
(``opt_comment`` decoded as ``comment``). Other block types are returned as
:class:`OtherBlock` and otherwise skipped.

    reader = PcapngStreamReader()
    for block in reader.feed(chunk):   # only complete blocks; the rest is kept
        if type(block) is EnhancedPacket: ...

Also :func:`tcp_payload` (Ethernet/IPv4/TCP frame -> TCP payload) and
:func:`log_line` (``swtpm log line N: ...`` comment -> N).
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple, Union

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_EPB = 0x00000006
MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT = 0
OPT_COMMENT = 1

Options = list[tuple[int, bytes]]


class PcapngError(ValueError):
    """The stream is not valid pcapng."""


class SectionHeader(NamedTuple):
    byte_order: str  # "<" or ">"
    version: tuple[int, int]
    options: Options
    comment: str | None


class InterfaceDescription(NamedTuple):
    linktype: int
    snaplen: int
    options: Options
    comment: str | None


class EnhancedPacket(NamedTuple):
    interface: int
    ts: int  # in the interface's units (microseconds without if_tsresol)
    packet: bytes
    original_length: int
    options: Options
    comment: str | None


class OtherBlock(NamedTuple):
    block_type: int
    body: bytes


Block = Union[SectionHeader, InterfaceDescription, EnhancedPacket, OtherBlock]


def parse_options(data: bytes | bytearray, offset: int, end: int, order: str) -> Options:
    """The options from ``offset`` to ``end`` (``opt_endofopt`` or the end stops)."""
    head = struct.Struct(order + "HH")
    out: Options = []
    while offset + 4 <= end:
        code, length = head.unpack_from(data, offset)
        offset += 4
        if code == OPT_ENDOFOPT:
            break
        if offset + length > end:
            raise PcapngError(f"option {code} of {length} bytes runs past its block")
        out.append((code, bytes(data[offset : offset + length])))
        offset += length + (-length & 3)
    return out


def _comment(options: Options) -> str | None:
    for code, value in options:
        if code == OPT_COMMENT:
            return value.decode("utf-8", "replace")
    return None


class PcapngStreamReader:
    """Feed it the bytes of a pcapng stream in chunks of any size; it returns whole blocks."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._order: str | None = None  # set by the first SHB
        self.blocks = 0
        self.bytes = 0

    def feed(self, data: bytes) -> list[Block]:
        buf = self._buf
        buf += data
        self.bytes += len(data)
        out: list[Block] = []
        pos = 0
        size = len(buf)
        while size - pos >= 12:
            raw_type = bytes(buf[pos : pos + 4])
            if raw_type == b"\x0a\x0d\x0d\x0a":  # SHB: same bytes in either byte order
                magic = bytes(buf[pos + 8 : pos + 12])
                if magic == b"\x4d\x3c\x2b\x1a":
                    self._order = "<"
                elif magic == b"\x1a\x2b\x3c\x4d":
                    self._order = ">"
                else:
                    raise PcapngError(f"bad byte-order magic {magic.hex()} at byte {self.bytes - size + pos}")
            order = self._order
            if order is None:
                raise PcapngError("the stream does not start with a Section Header Block")
            block_type, total = struct.unpack_from(order + "II", buf, pos)
            if total < 12 or total % 4:
                raise PcapngError(f"bad block length {total} (type {block_type:#x})")
            if size - pos < total:
                break
            (trailer,) = struct.unpack_from(order + "I", buf, pos + total - 4)
            if trailer != total:
                raise PcapngError(f"block length {total} != trailing length {trailer}")
            out.append(self._block(block_type, buf, pos + 8, pos + total - 4, order))
            pos += total
        if pos:
            del buf[:pos]
        self.blocks += len(out)
        return out

    @property
    def pending(self) -> int:
        """Bytes held back: the start of a block not complete yet."""
        return len(self._buf)

    @staticmethod
    def _block(block_type: int, buf: bytearray, start: int, end: int, order: str) -> Block:
        if block_type == BLOCK_EPB:
            iface, ts_hi, ts_lo, caplen, origlen = struct.unpack_from(order + "IIIII", buf, start)
            pkt_start = start + 20
            pkt_end = pkt_start + caplen
            if pkt_end > end:
                raise PcapngError(f"EPB captured length {caplen} runs past its block")
            opts = parse_options(buf, pkt_end + (-caplen & 3), end, order)
            return EnhancedPacket(
                iface, (ts_hi << 32) | ts_lo, bytes(buf[pkt_start:pkt_end]), origlen, opts, _comment(opts)
            )
        if block_type == BLOCK_SHB:
            _magic, major, minor, _length = struct.unpack_from(order + "IHHq", buf, start)
            opts = parse_options(buf, start + 16, end, order)
            return SectionHeader(order, (major, minor), opts, _comment(opts))
        if block_type == BLOCK_IDB:
            linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, start)
            opts = parse_options(buf, start + 8, end, order)
            return InterfaceDescription(linktype, snaplen, opts, _comment(opts))
        return OtherBlock(block_type, bytes(buf[start:end]))


def tcp_payload(frame: bytes) -> bytes | None:
    """The TCP payload of an Ethernet/IPv4/TCP frame; ``None`` if it is not one."""
    if len(frame) < 14 + 20 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = 14
    if frame[ip] >> 4 != 4 or frame[ip + 9] != 6:
        return None
    ihl = (frame[ip] & 0x0F) * 4
    ip_total = int.from_bytes(frame[ip + 2 : ip + 4], "big")
    tcp = ip + ihl
    doff = (frame[tcp + 12] >> 4) * 4
    return frame[tcp + doff : ip + ip_total]


_LINE = re.compile(r"swtpm log line (\d+): ")


def log_line(comment: str | None) -> int | None:
    """N of a comment that starts with ``swtpm log line N: ``, else ``None``."""
    if not comment:
        return None
    m = _LINE.match(comment)
    return int(m.group(1)) if m else None


def mac_line(frame: bytes) -> int | None:
    """The log line a frame carries in its Ethernet source address
    (``02:00:LL:LL:LL:LL``, big-endian), else ``None``: with or without comments."""
    if len(frame) < 12 or frame[6:8] != b"\x02\x00":
        return None
    return int.from_bytes(frame[8:12], "big")
