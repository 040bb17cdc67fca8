"""pcapng writer: section header, one interface, enhanced packet blocks with comments."""

from __future__ import annotations

import struct
from typing import BinaryIO

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3

_EPB_HEAD = struct.Struct("<IIIIIII")
_U32 = struct.Struct("<I")
_OPT = struct.Struct("<HH")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_END_TOTAL = struct.Struct("<II").pack
#: an option's value holds at most this many bytes (its length field is 16 bits)
MAX_OPTION = 0xFFFF
_CUT_MARK = " [comment cut: too long for pcapng]".encode()


def fit_option(value: bytes) -> bytes:
    """An option value cut to MAX_OPTION bytes (at a UTF-8 character start), marked."""
    end = MAX_OPTION - len(_CUT_MARK)
    while end and (value[end] & 0xC0) == 0x80:  # not inside a UTF-8 character
        end -= 1
    return value[:end] + _CUT_MARK


def _option(code: int, value: bytes) -> bytes:
    if len(value) > MAX_OPTION:
        value = fit_option(value)
    return _OPT.pack(code, len(value)) + value + _PAD[len(value) & 3]


def _options(*opts: tuple[int, str]) -> bytes:
    body = b"".join(_option(code, text.encode()) for code, text in opts if text)
    return body + _OPT.pack(OPT_ENDOFOPT, 0) if body else b""


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return _U32.pack(block_type) + _U32.pack(total) + body + _U32.pack(total)


def section_header(application: str, comment: str = "") -> bytes:
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
    return _block(BLOCK_SHB, body + _options((OPT_COMMENT, comment), (SHB_USERAPPL, application)))


def interface_description(name: str, description: str) -> bytes:
    body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN)
    return _block(BLOCK_IDB, body + _options((IF_NAME, name), (IF_DESCRIPTION, description)))


def encode_packets(frames: list[tuple[int, bytes, str]]) -> bytearray:
    """Enhanced packet blocks on interface 0, one per ``(ts_us, packet, comment)``.

    The one encoder of packets (the per-frame loop of every conversion): ``ts_us``
    in microseconds since the epoch; an empty comment writes no option, one
    longer than pcapng allows is cut (the framer keeps its comments far shorter).
    """
    buf = bytearray()
    head = _EPB_HEAD.pack
    opt = _OPT.pack
    u32 = _U32.pack
    pad = _PAD
    for ts, pkt, comment in frames:
        size = len(pkt)
        text = comment.encode()
        clen = len(text)
        if clen > MAX_OPTION:
            text = fit_option(text)
            clen = len(text)
        if clen:
            total = 40 + size + (-size & 3) + clen + (-clen & 3)
            buf += head(BLOCK_EPB, total, 0, ts >> 32, ts & 0xFFFFFFFF, size, size)
            buf += pkt
            buf += pad[size & 3]
            buf += opt(OPT_COMMENT, clen)
            buf += text
            buf += pad[clen & 3]
            buf += _END_TOTAL(0, total)  # opt_endofopt, then the block length
        else:
            total = 32 + size + (-size & 3)
            buf += head(BLOCK_EPB, total, 0, ts >> 32, ts & 0xFFFFFFFF, size, size)
            buf += pkt
            buf += pad[size & 3]
            buf += u32(total)
    return buf


def enhanced_packet(ts_us: int, packet: bytes, comment: str = "") -> bytes:
    """One EPB on interface 0; ``ts_us`` in microseconds since the epoch."""
    return bytes(encode_packets([(ts_us, packet, comment)]))


class PcapngWriter:
    """Writes one section with one Ethernet interface to a binary file object.

    ``write(ts_us, packet, comment)`` appends a packet; with ``live=True`` the
    file is flushed after every call so a reader on a fifo sees it at once.
    """

    def __init__(
        self,
        out: BinaryIO,
        *,
        name: str,
        description: str,
        application: str,
        comment: str = "",
        live: bool = False,
    ) -> None:
        self._out = out
        self._live = live
        out.write(section_header(application, comment) + interface_description(name, description))
        if live:
            out.flush()

    def write(self, ts_us: int, packet: bytes, comment: str = "") -> None:
        self._out.write(enhanced_packet(ts_us, packet, comment))
        if self._live:
            self._out.flush()

    def write_many(self, frames: list[tuple[int, bytes, str]]) -> None:
        """Write a batch of frames with one write (and one flush when live)."""
        if not frames:
            return
        self.write_blocks(encode_packets(frames))

    def write_blocks(self, blocks: bytes | bytearray) -> None:
        """Write packet blocks made elsewhere (:meth:`.Framer.encode_events`)."""
        if not blocks:
            return
        self._out.write(blocks)
        if self._live:
            self._out.flush()

    def flush(self) -> None:
        self._out.flush()
