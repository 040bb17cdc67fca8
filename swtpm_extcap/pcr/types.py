"""The vocabulary of the PCR replay (:mod:`swtpm_extcap.pcr.replay`): TPM 2.0 and
control-channel numbers, the TPM structures it reads (digest lists, PCR
selections), the banks it can compute, and the outcomes it reports."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

# the hash algorithms are TPM vocabulary (swtpm_extcap.tpm.hashes); the replay's names for them
from ..tpm.hashes import ALGORITHMS as ALGORITHMS
from ..tpm.hashes import HASHES as HASHES
from ..tpm.hashes import HASHLIB_NAME as HASHLIB_NAME
from ..tpm.hashes import alg_name

PCR_COUNT = 24
#: PCRs only locality 4 may reset (PC client profile, libtpms ``s_initAttributes``)
DRTM_PCRS = range(17, 23)
DRTM_PCR = 17
HCRTM_PCR = 0
#: PCRs that TPM2_Shutdown(STATE) saves and TPM2_Startup(STATE) restores
STATE_SAVED_PCRS = range(0, 16)

TAG_NO_SESSIONS = 0x8001
TAG_SESSIONS = 0x8002
TPM_RH_NULL = 0x40000007
SU_CLEAR = 0x0000
SU_STATE = 0x0001
TPM_CAP_PCRS = 0x00000005
YES = 1
#: the largest TPM message the replay takes (swtpm's buffer is 4 KiB): a command
#: whose header claims more is not waited for
MAX_TPM_MESSAGE = 0x10000

CC_PCR_ALLOCATE = 0x0000012B
CC_PCR_EVENT = 0x0000013C
CC_PCR_RESET = 0x0000013D
CC_STARTUP = 0x00000144
CC_GET_CAPABILITY = 0x0000017A
CC_PCR_READ = 0x0000017E
CC_PCR_EXTEND = 0x00000182
CC_EVENT_SEQUENCE_COMPLETE = 0x00000185

CMD_INIT = 2
CMD_SET_LOCALITY = 5
CMD_HASH_START = 6
CMD_HASH_DATA = 7
CMD_HASH_END = 8

#: the banks libtpms implements: a run starts with these
STANDARD_BANKS = (0x0004, 0x000B, 0x000C, 0x000D)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">HII")


#: a bank is named by its hash algorithm: ``sha256``
bank_name = alg_name


class Malformed(ValueError):
    """A TPM structure that does not parse."""


# ------------------------------------------------------------------ results


class Step(NamedTuple):
    """One change of one PCR in one bank.

    ``what``: ``extend`` (PCR_Extend, PCR_Event, EventSequenceComplete, DRTM
    hash end: ``number`` is the extend's number in its run, from 1; one
    command extending several banks is one number), ``reset`` (PCR_Reset, the
    DRTM reset of 17-22), ``startup`` (Startup's initial value), ``unknown``
    (the value can no longer be known; ``why`` says why).
    ``line`` is the command's log line, ``answer`` the response's (0 when the
    change has no response of its own, e.g. a run start).
    """

    run: int
    line: int
    answer: int
    what: str
    pcr: int
    alg: int
    value: bytes | None
    digest: bytes | None = None
    number: int = 0
    command: str = ""
    why: str = ""

    @property
    def bank(self) -> str:
        return bank_name(self.alg)


class Check(NamedTuple):
    """One PCR value returned by a PCR_Read, against the replay.

    ``status``: ``match``, ``mismatch``, or ``learned`` (the replay did not
    know the value; from now on it is the value read). ``since`` is the line
    of the replayed value's last change (0 when unknown).
    """

    run: int
    line: int
    answer: int
    pcr: int
    alg: int
    read: bytes
    replay: bytes | None
    since: int
    status: str
    why: str = ""

    @property
    def bank(self) -> str:
        return bank_name(self.alg)


class Startup(NamedTuple):
    """A TPM2_Startup that succeeded (``kind``: ``clear`` or ``state``)."""

    run: int
    line: int
    answer: int
    kind: str


class Read(NamedTuple):
    """One PCR_Read response: how many values it returned, how many the replay
    had the same. Each value that did not match (or was unknown) is also a
    :class:`Check` (every value is, with ``Replayer(detail=True)``)."""

    run: int
    line: int
    answer: int
    values: int
    matched: int


Outcome = Step | Check | Startup | Read


# -------------------------------------------------------------------- state


@dataclass(slots=True)
class Slot:
    """One PCR in one bank: its value (None = unknown), when and why it changed.

    Replaced, never changed in place: PCRs that took the same value at once (a
    Startup, a run start) share one Slot."""

    value: bytes | None
    line: int
    why: str = ""


@dataclass(slots=True)
class _Fill:
    """What a bank that appears later gets for one PCR: a fill byte (and last
    byte), or unknown."""

    byte: int | None
    last: int | None
    line: int
    why: str

    def value(self, size: int) -> bytes | None:
        if self.byte is None:
            return None
        head = bytes([self.byte]) * (size - 1)
        return head + bytes([self.byte if self.last is None else self.last])


@dataclass(slots=True)
class RunState:
    """The PCR banks of one run."""

    run: int
    banks: dict[int, list[Slot]] = field(default_factory=dict)
    fills: list[_Fill] = field(default_factory=list)
    extends: int = 0
    started: bool = False
    #: banks this run extended, reset to a value, or read (what `pcrs` shows)
    seen: set[int] = field(default_factory=set)

    def bank(self, alg: int) -> list[Slot]:
        slots = self.banks.get(alg)
        if slots is None:
            size = ALGORITHMS[alg][1] if alg in ALGORITHMS else 0
            slots = []
            fill: _Fill | None = None
            for f in self.fills:  # mostly runs of one fill: one Slot each
                if f is not fill:
                    fill, slot = f, _slot(f, size, alg)
                slots.append(slot)
            self.banks[alg] = slots
        return slots


def _slot(fill: _Fill, size: int, alg: int) -> Slot:
    """What ``fill`` gives a PCR of a bank of ``size`` bytes (0: an algorithm this Python
    does not know)."""
    if not size:
        return Slot(None, fill.line, fill.why or f"unknown algorithm 0x{alg:04x}")
    return Slot(fill.value(size), fill.line, fill.why if fill.byte is None else "")


def _unknown_fills(line: int, why: str) -> list[_Fill]:
    return [_Fill(None, None, line, why)] * PCR_COUNT  # replaced, never changed in place


# ------------------------------------------------------------------ parsing


def _command_params(data: bytes, handles: int) -> tuple[int, list[int], int]:
    """(command code, handles, offset of the parameters) of a TPM 2.0 command."""
    if len(data) < 10:
        raise Malformed("command shorter than its header")
    tag, _size, code = _HEADER.unpack_from(data)
    pos = 10
    hs = []
    for _ in range(handles):
        if pos + 4 > len(data):
            raise Malformed("command cut inside its handles")
        hs.append(_U32.unpack_from(data, pos)[0])
        pos += 4
    if tag == TAG_SESSIONS:
        if pos + 4 > len(data):
            raise Malformed("command cut before its authorization size")
        pos += 4 + _U32.unpack_from(data, pos)[0]
    elif tag != TAG_NO_SESSIONS:
        raise Malformed(f"command tag 0x{tag:04x}")
    if pos > len(data):
        raise Malformed("authorization area longer than the command")
    return code, hs, pos


def _response_params(data: bytes) -> int:
    """Offset of a successful response's parameters (no response handles)."""
    tag = _U16.unpack_from(data)[0]
    return 14 if tag == TAG_SESSIONS else 10


def _list_count(data: bytes, pos: int) -> int:
    """The u32 count that starts a TPML list of digests."""
    try:
        return int(_U32.unpack_from(data, pos)[0])
    except struct.error:
        raise Malformed("digest list cut off") from None


def parse_digest_values(data: bytes, pos: int) -> list[tuple[int, bytes]]:
    """A TPML_DIGEST_VALUES at ``pos``: [(TPM_ALG_ID, digest)]."""
    return _sized_items(data, pos, _digest_size)


def _digest_size(alg: int) -> int:
    known = ALGORITHMS.get(alg)
    if known is None:
        raise Malformed(f"digest of unknown algorithm 0x{alg:04x}")
    return known[1]


def _sized_items(data: bytes, pos: int, size_of: Callable[[int], int]) -> list[tuple[int, bytes]]:
    """A TPML list at ``pos``: a u32 count, then per item a u16 and ``size_of(u16)``
    bytes (TPML_DIGEST_VALUES: algorithm + digest; TPML_DIGEST: size + digest)."""
    count = _list_count(data, pos)
    pos += 4
    out = []
    for _ in range(count):
        if pos + 2 > len(data):
            raise Malformed("digest list cut off")
        (tag,) = _U16.unpack_from(data, pos)
        size = size_of(tag)
        item = data[pos + 2 : pos + 2 + size]
        if len(item) != size:
            raise Malformed("digest cut off")
        out.append((tag, item))
        pos += 2 + size
    return out


_BITS = [tuple(b for b in range(8) if n >> b & 1) for n in range(256)]


def parse_pcr_selection(data: bytes, pos: int) -> tuple[list[tuple[int, list[int]]], int]:
    """A TPML_PCR_SELECTION at ``pos``: ([(TPM_ALG_ID, [PCR, ...])], end offset)."""
    try:
        (count,) = _U32.unpack_from(data, pos)
        pos += 4
        out = []
        for _ in range(count):
            alg, size = struct.unpack_from(">HB", data, pos)
            bits = data[pos + 3 : pos + 3 + size]
            if len(bits) != size:
                raise Malformed("PCR selection cut off")
            pos += 3 + size
            out.append((alg, [8 * j + b for j, byte in enumerate(bits) for b in _BITS[byte]]))
    except struct.error:
        raise Malformed("PCR selection cut off") from None
    return out, pos


def parse_pcr_read(response: bytes) -> list[tuple[int, int, bytes]]:
    """The values of a successful PCR_Read response: [(PCR, TPM_ALG_ID, value)]."""
    pos = _response_params(response) + 4  # pcrUpdateCounter
    selection, pos = parse_pcr_selection(response, pos)
    values = [digest for _, digest in _sized_items(response, pos, int)]
    pairs = [(pcr, alg) for alg, pcrs in selection for pcr in pcrs]
    if len(pairs) != len(values) or any(
        len(v) != ALGORITHMS.get(alg, (None, len(v)))[1] for (_, alg), v in zip(pairs, values)
    ):
        raise Malformed("PCR_Read: the digests do not fit the selection")
    return [(pcr, alg, value) for (pcr, alg), value in zip(pairs, values) if pcr < PCR_COUNT]
