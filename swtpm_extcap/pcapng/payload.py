"""What a TPM frame's payload holds, by the size fields of the TPM headers in it.

One record is one TCP segment (never merged, never split), so a segment may hold
part of a TPM message, the rest of one begun before, or several; such a frame
says so in its comment (``partial: 10 of 22 bytes of TPM command 0x0000017A``),
so a frame Wireshark decodes oddly carries the reason.
"""

from __future__ import annotations

#: TPM header tags: TPM 2.0 (no sessions, sessions), TPM 1.2 (request/response,
#: no auth, auth1, auth2)
TPM_TAGS = frozenset({0x8001, 0x8002, 0x00C1, 0x00C2, 0x00C3, 0x00C4, 0x00C5, 0x00C6})
#: a size field above this is no TPM header (swtpm's buffer is 4 KiB)
MAX_TPM_MESSAGE = 0x10000


class Messages:
    """A TPM message begun in an earlier segment, per direction (0: to the server)."""

    __slots__ = ("rest", "total", "what", "pending")

    def __init__(self) -> None:
        self.rest = [0, 0]  # bytes still to come
        self.total = [0, 0]  # its size
        self.what = ["", ""]  # what it is, for a comment
        self.pending = False  # either rest is not 0


def _tpm_what(header: bytes, command: bool) -> str:
    """A TPM message named by its header (tag, size, code)."""
    if len(header) < 10:
        return "a TPM command" if command else "a TPM response"
    code = int.from_bytes(header[6:10], "big")
    if not command:
        return f"TPM response (code 0x{code:08X})"
    from ..tpm.commands import tpm2_command_name  # rare: only a frame that needs a note

    name = tpm2_command_name(code)
    return f"TPM command 0x{code:08X}" + (f" ({name})" if name else "")


def message_note(conv: Messages, command: bool, data: bytes) -> str:
    """What ``data`` holds by the TPM headers' size fields when it is not exactly
    one TPM message: the rest of one begun before, part of one, several.
    Updates what ``conv`` expects next in that direction; "" for one whole message."""
    side = 0 if command else 1
    other = 1 - side
    conv.rest[other] = 0  # an answer (or the next command) ends what the other side began
    size = len(data)
    parts: list[str] = []
    pos = 0
    rest = conv.rest[side]
    if rest:
        conv.rest[side] = 0
        head = data[:10]
        if not (
            size >= 10
            and int.from_bytes(head[:2], "big") in TPM_TAGS
            and int.from_bytes(head[2:6], "big") == size
        ):  # not itself one whole message: the rest of the one begun before
            take = min(rest, size)
            total = conv.total[side]
            done = total - rest + take
            parts.append(f"continued: bytes {done - take + 1}-{done} of {total} of {conv.what[side]}")
            pos = take
            if take < rest:
                conv.rest[side] = rest - take
    whole = 0
    while pos < size and len(parts) < 4:
        head = data[pos : pos + 10]
        if len(head) < 6:
            parts.append(f"{len(head)} bytes, too few for a TPM header")
            break
        tag = int.from_bytes(head[:2], "big")
        length = int.from_bytes(head[2:6], "big")
        if tag not in TPM_TAGS or not 10 <= length <= MAX_TPM_MESSAGE:
            parts.append(f"{size - pos} bytes that do not start with a TPM header")
            break
        what = _tpm_what(head, command)
        if length > size - pos:
            parts.append(f"partial: {size - pos} of {length} bytes of {what}")
            conv.rest[side], conv.total[side], conv.what[side] = length - (size - pos), length, what
            break
        whole += 1
        parts.append(f"{what}, {length} bytes")
        pos += length
    else:
        if pos < size:
            parts.append(f"{size - pos} more bytes")
    conv.pending = bool(conv.rest[0] or conv.rest[1])
    if whole == 1 and len(parts) == 1:
        return ""  # one whole message (reached when its size field was not checked first)
    if whole > 1:
        parts.insert(0, f"holds {whole} TPM messages")
    return "TPM payload: " + "; ".join(parts)
