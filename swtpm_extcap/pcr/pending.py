"""TPM commands as the replay holds them until their response: whole, or in the
pieces swtpm read them in.

swtpm logs every ``read()``: a client that writes a command in parts (QEMU's
chardev may) gives several ``SWTPM_IO_Read`` records for one command, the first
possibly shorter than a TPM header (10 bytes). The replay joins them by the size
field of the TPM header, and never beyond it or :data:`MAX_TPM_MESSAGE`: a
header that claims more than any TPM message (a damaged or hostile log,
``0xFFFFFFF0``) is not waited for, so it cannot swallow the commands after it;
a record that is a whole command of its own is never taken as the rest of
another. What stays incomplete makes its target unknown (see the Replayer).
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import (
    _U32, CC_EVENT_SEQUENCE_COMPLETE, CC_GET_CAPABILITY, CC_PCR_ALLOCATE, CC_PCR_EVENT,
    CC_PCR_EXTEND, CC_PCR_READ, CC_PCR_RESET, CC_STARTUP, MAX_TPM_MESSAGE, TAG_NO_SESSIONS,
    TAG_SESSIONS, TPM_CAP_PCRS,
)

#: the command codes (as logged, big-endian) whose commands the replay keeps
WATCHED = frozenset(
    _U32.pack(c)
    for c in (
        CC_STARTUP,
        CC_PCR_EXTEND,
        CC_PCR_EVENT,
        CC_PCR_RESET,
        CC_EVENT_SEQUENCE_COMPLETE,
        CC_PCR_READ,
        CC_PCR_ALLOCATE,
    )
)
#: GetCapability(TPM_CAP_PCRS) (without sessions): the PCR allocation
GET_PCR_ALLOCATION = _U32.pack(CC_GET_CAPABILITY) + _U32.pack(TPM_CAP_PCRS)


@dataclass(slots=True)
class Pending:
    """A command waiting for its response (or, while ``rest``, for its other pieces)."""

    data: bytes
    line: int
    intact: bool
    #: bytes still to come of a command swtpm read in pieces (-1: its size field
    #: is not there yet); 0 for a whole command
    rest: int = 0
    #: why its logged bytes cannot be what the TPM ran ("": they can)
    bad: str = ""
    #: the pieces so far, while ``rest`` (joined into ``data`` by :meth:`whole`)
    pieces: bytearray | None = None

    def add(self, piece: bytes, intact: bool) -> None:
        """The next piece of a command swtpm read in pieces (bounded: see :func:`takes`)."""
        if self.pieces is None:
            self.pieces = bytearray(self.data)
        pieces = self.pieces
        pieces += piece
        self.intact = self.intact and intact
        size = len(pieces)
        self.rest = int.from_bytes(pieces[2:6], "big") - size if size >= 6 else -1

    def whole(self) -> bytes:
        """Its bytes so far, as one (the pieces joined)."""
        if self.pieces is not None:
            self.data = bytes(self.pieces)
            self.pieces = None
        return self.data

    def head(self) -> bytes:
        """Its first bytes, up to 6 (tag and size field)."""
        return bytes(self.pieces[:6]) if self.pieces is not None else self.data[:6]

    def __len__(self) -> int:
        return len(self.pieces) if self.pieces is not None else len(self.data)


def size_field(command: bytes) -> int:
    """The size field of a TPM header (at least 6 bytes)."""
    return int.from_bytes(command[2:6], "big")


class _SizeFields(dict[int, bytes]):
    """A TPM header's size field for a record length, made on first use."""

    def __missing__(self, size: int) -> bytes:
        field = self[size] = size.to_bytes(4, "big")
        return field


SIZE_FIELDS = _SizeFields()
#: the tags a TPM command may have (TPM 2.0, TPM 1.2)
_TAGS = frozenset(tag.to_bytes(2, "big") for tag in (TAG_NO_SESSIONS, TAG_SESSIONS, 0x00C1, 0x00C2, 0x00C3))


def first_piece(data: bytes, line: int, intact: bool) -> Pending | None:
    """A command record that is not one whole command by its size field: the first
    piece of one swtpm read in pieces (kept until the rest comes), or bytes whose
    size field lies (kept only when they name a command the replay watches)."""
    size = len(data)
    if size < 2 or (data[:2] in _TAGS and (size < 6 or size < size_field(data) <= MAX_TPM_MESSAGE)):
        pending = Pending(data, line, intact)
        pending.add(b"", True)  # sets rest
        return pending
    if data[6:10] in WATCHED or data[6:14] == GET_PCR_ALLOCATION or not intact:
        claimed = size_field(data) if size >= 6 else 0
        why = f"its header says {claimed} bytes, the log has {size}"
        return Pending(data, line, intact, bad=why)
    return None


def takes(cmd: Pending, piece: bytes) -> bool:
    """Whether ``piece`` is (part of) the rest of ``cmd``, a command still missing bytes.

    Not a piece that is a whole command of its own, nor more than the command's
    header says it lacks, nor beyond :data:`MAX_TPM_MESSAGE`: a command whose
    header claims more bytes than any TPM takes never swallows what follows."""
    size = len(piece)
    if size >= 10 and piece[:2] in _TAGS and piece[2:6] == SIZE_FIELDS[size]:
        return False
    if cmd.rest > 0:
        return size <= cmd.rest
    head = (cmd.head() + piece[:6])[:6]
    if len(head) < 6:
        return True
    claimed = size_field(head)
    return head[:2] in _TAGS and len(cmd) + size <= claimed <= MAX_TPM_MESSAGE


def kept(cmd: Pending) -> Pending | None:
    """A command whose pieces are all there: kept if the replay watches it."""
    data = cmd.data
    if data[6:10] in WATCHED or data[6:14] == GET_PCR_ALLOCATION or not cmd.intact:
        return cmd
    return None
