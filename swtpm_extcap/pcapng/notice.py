"""A frame of its own for what the capture must tell between records (pure).

An SSH link that went down and came back, a log rotated meanwhile: the
source says so (:class:`~swtpm_extcap.sources.base.Gap`) and the capture writes
one frame that carries the text twice, as its pcapng comment and as the
payload of a UDP datagram 127.0.0.4:2325 -> 127.0.0.4:2325 that no dissector
claims (so it never passes for TPM traffic). Display filter:
``udp.port == 2325``, or ``frame.comment contains "swtpm-extcap:"``.
"""

from __future__ import annotations

import struct

NOTICE_PORT = 2325
NOTICE_ADDR = b"\x7f\x00\x00\x04"
#: at most this many bytes of the text in the payload (the comment has all of it)
MAX_PAYLOAD = 1400
_ETH = b"\x02\x00\x00\x00\x00\x00" * 2 + b"\x08\x00"


def _checksum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF - total


def notice_frame(text: str) -> bytes:
    """Ethernet/IPv4/UDP with ``text`` (UTF-8) as payload, valid checksums."""
    payload = text.encode("utf-8", "replace")[:MAX_PAYLOAD]
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0,
                     NOTICE_ADDR, NOTICE_ADDR)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    pseudo = NOTICE_ADDR + NOTICE_ADDR + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", NOTICE_PORT, NOTICE_PORT, udp_len, 0) + payload
    udp_sum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    return _ETH + ip + udp
