"""The constant parts of a clean record's pcapng block, made once and kept.

:meth:`.Framer.encode_events` writes a record without damage on an open connection
straight into its enhanced packet block. What such a block holds besides its
timestamp, log line, sequence numbers, TCP checksum and payload depends only on
the direction of the frame and the record's kind and size (and on how many digits
the log line has), so it is made here once per such combination:

* :func:`middle`: the 26 header bytes from the Ethernet type to the TCP ports
  (IPv4 total length and checksum included), per direction and payload size;
* :func:`tail`: everything after the payload (its padding, the comment option
  with ``swtpm log line %d: <label> length <size>`` as a ``%`` format for the
  line, the end of options and the block length), with the block length and
  the captured length, per kind, size and digits of the log line.

Both caches are bounded (a hostile log may have every size).
"""

from __future__ import annotations

import struct

from ..swtpmlog.parser import Kind
from .tcp import ETH_TYPE_IP, HEADERS_SIZE, IP_MID, Direction
from .writer import MAX_OPTION, OPT_COMMENT, fit_option

#: entries a cache keeps before it starts again
MAX_KEPT = 4096
_OPT = struct.Struct("<HH")
_TRAILER = struct.Struct("<II")
_U32 = struct.Struct("<I")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_SIZE_AND_SUM = struct.Struct("!H6sH")

#: a tail: (lines from, lines below, the tail's bytes or % format, block length, captured length)
Tail = tuple[int, int, bytes, int, int]


def middle(way: Direction, size: int) -> bytes:
    """Ethernet type to TCP ports of a frame one way with ``size`` payload bytes."""
    mids = way.mids
    if len(mids) >= MAX_KEPT:
        mids.clear()
    ip_sum = 0xFFFF - ((way.ip_const + 40 + size) % 0xFFFF or 0xFFFF)
    mid = mids[size] = ETH_TYPE_IP + _SIZE_AND_SUM.pack(40 + size, IP_MID, ip_sum) + way.addr_ports
    return mid


def tail(tails: dict[Kind, dict[int, Tail]], kind: Kind, size: int, line: int, plain: bool) -> Tail:
    """The tail of a block of a ``kind`` record of ``size`` bytes at log ``line``
    (declared = size); with ``plain`` its line comment, as a format for the line."""
    by_size = tails.setdefault(kind, {})
    if len(by_size) >= MAX_KEPT:
        by_size.clear()
    digits = len(str(line))
    low, high = (10 ** (digits - 1) if digits > 1 else 0), 10**digits
    plen = HEADERS_SIZE + size
    pad = _PAD[plen & 3]
    if plain:
        head = b"swtpm log line "
        rest = f": {kind.value} length {size}".encode()
        clen = len(head) + digits + len(rest)
        total = 40 + plen + (-plen & 3) + clen + (-clen & 3)
        before = pad + _OPT.pack(OPT_COMMENT, clen)
        after = _PAD[clen & 3] + _TRAILER.pack(0, total)
        text = (
            before.replace(b"%", b"%%") + head + b"%d" + rest.replace(b"%", b"%%")
            + after.replace(b"%", b"%%")
        )
    else:  # no line comment: any line
        low, high = 0, 1 << 64
        total = 32 + plen + (-plen & 3)
        text = pad + _U32.pack(total)
    entry = by_size[size] = (low, high, text, total, plen)
    return entry


def block_end(text: bytes, size: int) -> tuple[bytes, int, int]:
    """What follows a ``size``-byte payload in its block when its comment is ``text``
    (cut to fit pcapng, as :func:`.writer.encode_packets` cuts it), the block
    length and the captured length."""
    plen = HEADERS_SIZE + size
    pad = _PAD[plen & 3]
    if not text:
        total = 32 + plen + (-plen & 3)
        return pad + _U32.pack(total), total, plen
    if len(text) > MAX_OPTION:
        text = fit_option(text)
    clen = len(text)
    total = 40 + plen + (-plen & 3) + clen + (-clen & 3)
    return pad + _OPT.pack(OPT_COMMENT, clen) + text + _PAD[clen & 3] + _TRAILER.pack(0, total), total, plen
