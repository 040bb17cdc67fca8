"""TPM 2.0 structure readers (Part 2): the command and response layout, authorization
areas, TPM2B, TPML_PCR_SELECTION, TPML_DIGEST, TPMT_PUBLIC, TPMS_NV_PUBLIC, and the Name
of an object or NV index. Pure: bytes in, frozen values out; a structure that does not
parse raises :class:`Malformed` (never an IndexError or struct.error)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .hashes import digest

TAG_NO_SESSIONS = 0x8001
TAG_SESSIONS = 0x8002
#: TPMA_SESSION bits
SESSION_CONTINUE = 0x01
SESSION_DECRYPT = 0x20
SESSION_ENCRYPT = 0x40
#: TPM_HT: the first byte of a handle
HT_PCR, HT_NV, HT_HMAC_SESSION, HT_POLICY_SESSION = 0x00, 0x01, 0x02, 0x03
HT_PERMANENT, HT_TRANSIENT, HT_PERSISTENT = 0x40, 0x80, 0x81
TPM_RS_PW = 0x40000009
#: TPMA_NV bits whose change changes an NV index's Name
NV_WRITELOCKED = 1 << 11
NV_READLOCKED = 1 << 28
NV_WRITTEN = 1 << 29
#: TPMA_OBJECT bits
OBJECT_USER_WITH_AUTH = 1 << 6
OBJECT_ADMIN_WITH_POLICY = 1 << 7
OBJECT_NO_DA = 1 << 10
NV_NO_DA = 1 << 25

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">HII")
#: TPMT_PUBLIC's type, nameAlg, objectAttributes and authPolicy's size
_PUBLIC_HEAD = struct.Struct(">HHIH")
#: a command's handles, by their number (at most 3)
_HANDLES = [struct.Struct(f">{n}I") for n in range(4)]
_BITS = [tuple(b for b in range(8) if n >> b & 1) for n in range(256)]


class Malformed(ValueError):
    """A TPM structure that does not parse (cut off, a size that does not fit)."""


class Reader:
    """Big-endian reads over ``data`` from ``pos``; :class:`Malformed` past the end."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else min(end, len(data))

    def take(self, n: int, what: str = "structure") -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise Malformed(f"{what} cut off")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    # the numbers read in place rather than through take(): a public area or a
    # StartAuthSession is a dozen of them, and a call less each is a third less work

    def u8(self, what: str = "byte") -> int:
        pos = self.pos
        if pos + 1 > self.end:
            raise Malformed(f"{what} cut off")
        self.pos = pos + 1
        return self.data[pos]

    def u16(self, what: str = "u16") -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise Malformed(f"{what} cut off")
        self.pos = pos + 2
        return int(_U16.unpack_from(self.data, pos)[0])

    def u32(self, what: str = "u32") -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise Malformed(f"{what} cut off")
        self.pos = pos + 4
        return int(_U32.unpack_from(self.data, pos)[0])

    def tpm2b(self, what: str = "TPM2B") -> bytes:
        return self.take(self.u16(what), what)

    @property
    def left(self) -> int:
        return self.end - self.pos


# ------------------------------------------------------- commands and responses


@dataclass(frozen=True, slots=True)
class AuthSession:
    """One session of an authorization area (TPMS_AUTH_COMMAND or _RESPONSE)."""

    handle: int
    nonce: bytes
    attributes: int
    hmac: bytes

    @property
    def decrypt(self) -> bool:
        return bool(self.attributes & SESSION_DECRYPT)

    @property
    def encrypt(self) -> bool:
        return bool(self.attributes & SESSION_ENCRYPT)

    @property
    def continues(self) -> bool:
        return bool(self.attributes & SESSION_CONTINUE)


@dataclass(frozen=True, slots=True)
class Command:
    """A TPM 2.0 command split by its layout: handles, sessions, parameters."""

    code: int
    handles: tuple[int, ...]
    sessions: tuple[AuthSession, ...]
    params: int  # offset of the parameters in ``data``
    data: bytes

    @property
    def encrypted(self) -> bool:
        """The first parameter (a TPM2B's buffer) is encrypted by a session."""
        return any(s.decrypt for s in self.sessions)

    def reader(self) -> Reader:
        return Reader(self.data, self.params)


def parse_command(data: bytes, handles: int) -> Command:
    """A command with ``handles`` handles (from its code: :mod:`.shapes`)."""
    end = 10 + 4 * handles
    if len(data) < end:
        raise Malformed("command cut off in its header or handles")
    tag, size, code = _HEADER.unpack_from(data)
    if tag not in (TAG_NO_SESSIONS, TAG_SESSIONS):
        raise Malformed(f"command tag 0x{tag:04x}")
    if size != len(data):
        raise Malformed(f"command size field {size}, {len(data)} bytes logged")
    hs: tuple[int, ...] = _HANDLES[handles].unpack_from(data, 10) if handles else ()
    r = Reader(data, end)
    sessions: tuple[AuthSession, ...] = ()
    if tag == TAG_SESSIONS:
        area = r.u32("authorization size")
        sessions = _auth_area(Reader(data, r.pos, r.pos + area), command=True)
        r.take(area, "authorization area")
    return Command(code, hs, sessions, r.pos, data)


def plain(command: bytes, response: bytes) -> bool:
    """A command and its success answer, both without sessions and whole by their size
    fields: the usual shape in a tpm2-tools session, where the handles and parameters
    are at fixed offsets (10 on) and need no :func:`parse_command` (which takes the same
    commands: this is its fast path, not another reading)."""
    if len(command) < 10 or len(response) < 10:
        return False
    tag, size, _ = _HEADER.unpack_from(command)
    answer_tag, answer_size, rc = _HEADER.unpack_from(response)
    return bool(tag == answer_tag == TAG_NO_SESSIONS and rc == 0 and size == len(command)
                and answer_size == len(response))


def _auth_area(r: Reader, *, command: bool) -> tuple[AuthSession, ...]:
    out = []
    while r.left:
        handle = r.u32("session") if command else 0
        nonce = r.tpm2b("session nonce")
        attributes = r.u8("session attributes")
        hmac = r.tpm2b("session hmac")
        out.append(AuthSession(handle, nonce, attributes, hmac))
    if len(out) > 3:
        raise Malformed(f"{len(out)} sessions (at most 3)")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Response:
    """A TPM 2.0 response: its code, its handle (when it has one), its parameters."""

    rc: int
    handle: int | None
    params: int
    end: int  # end of the parameters
    data: bytes

    def reader(self) -> Reader:
        return Reader(self.data, self.params, self.end)


def parse_response(data: bytes, has_handle: bool) -> Response:
    if len(data) < 10:
        raise Malformed("response cut off in its header")
    tag, size, rc = _HEADER.unpack_from(data)
    r = Reader(data, 10)
    if size != len(data):
        raise Malformed(f"response size field {size}, {len(data)} bytes logged")
    if rc != 0:
        return Response(rc, None, r.pos, r.pos, data)
    handle = r.u32("response handle") if has_handle else None
    if tag == TAG_SESSIONS:
        size = r.u32("parameter size")
        if size > r.left:
            raise Malformed("response parameters cut off")
        return Response(rc, handle, r.pos, r.pos + size, data)
    if tag != TAG_NO_SESSIONS:
        raise Malformed(f"response tag 0x{tag:04x}")
    return Response(rc, handle, r.pos, len(data), data)


# ----------------------------------------------------------------- structures


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """A TPML_PCR_SELECTION: per bank (TPM_ALG_ID) the PCRs in order; ``raw`` as marshaled."""

    banks: tuple[tuple[int, tuple[int, ...]], ...]
    raw: bytes

    def pcrs(self) -> list[tuple[int, int]]:
        """(bank, PCR) in the order the TPM hashes them (PCRComputeCurrentDigest)."""
        return [(alg, pcr) for alg, pcrs in self.banks for pcr in pcrs]


def read_pcr_selection(r: Reader) -> PcrSelection:
    start = r.pos
    banks = []
    for _ in range(r.u32("PCR selection")):
        alg = r.u16("PCR selection")
        bits = r.take(r.u8("PCR selection"), "PCR selection")
        banks.append((alg, tuple(8 * j + b for j, byte in enumerate(bits) for b in _BITS[byte])))
    return PcrSelection(tuple(banks), r.data[start : r.pos])


def read_digest_list(r: Reader) -> tuple[bytes, ...]:
    """A TPML_DIGEST (PolicyOR's pHashList)."""
    count = r.u32("digest list")
    if count > 8:
        raise Malformed(f"digest list of {count} (at most 8)")
    return tuple(r.tpm2b("digest list") for _ in range(count))


@dataclass(frozen=True, slots=True)
class Public:
    """An object's public area (TPMT_PUBLIC, ``raw`` as marshaled): what policy needs of it."""

    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    raw: bytes

    @property
    def name(self) -> bytes | None:
        """nameAlg || H_nameAlg(TPMT_PUBLIC); None when this Python cannot compute it."""
        h = digest(self.name_alg, self.raw)
        return None if h is None else _U16.pack(self.name_alg) + h


def read_public(r: Reader) -> Public:
    """A TPM2B_PUBLIC: its TPMT_PUBLIC's head (the rest is kept whole in ``raw``): type,
    nameAlg, objectAttributes, authPolicy, read in one unpack (every ReadPublic has one)."""
    raw = r.tpm2b("public area")
    if len(raw) < 8:
        raise Malformed("public area cut off")
    if len(raw) < 10:
        raise Malformed("authPolicy cut off")
    type_, name_alg, attributes, size = _PUBLIC_HEAD.unpack_from(raw)
    if 10 + size > len(raw):
        raise Malformed("authPolicy cut off")
    return Public(type_, name_alg, attributes, raw[10 : 10 + size], raw)


@dataclass(frozen=True, slots=True)
class NvPublic:
    """An NV index's public area (TPMS_NV_PUBLIC)."""

    index: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    size: int

    @property
    def raw(self) -> bytes:
        return (_U32.pack(self.index) + _U16.pack(self.name_alg) + _U32.pack(self.attributes)
                + _U16.pack(len(self.auth_policy)) + self.auth_policy + _U16.pack(self.size))

    @property
    def name(self) -> bytes | None:
        h = digest(self.name_alg, self.raw)
        return None if h is None else _U16.pack(self.name_alg) + h

    def with_attributes(self, set_bits: int) -> NvPublic:
        return NvPublic(self.index, self.name_alg, self.attributes | set_bits, self.auth_policy,
                        self.size)


def read_nv_public(r: Reader) -> NvPublic:
    """A TPM2B_NV_PUBLIC."""
    inner = Reader(r.tpm2b("NV public area"))
    return NvPublic(inner.u32("NV public"), inner.u16("NV public"), inner.u32("NV public"),
                    inner.tpm2b("NV authPolicy"), inner.u16("NV public"))


def read_sym_def(r: Reader) -> int:
    """A TPMT_SYM_DEF (StartAuthSession's symmetric): its algorithm."""
    alg = r.u16("symmetric")
    if alg == 0x0010:  # TPM_ALG_NULL
        return alg
    r.u16("symmetric key bits")  # XOR: its hash
    if alg != 0x000A:  # not XOR: a mode
        r.u16("symmetric mode")
    return alg


def handle_name(handle: int) -> bytes | None:
    """The Name of an entity that is its handle (PCR, session, permanent); None for
    an object or NV index (whose Name is a hash of its public area)."""
    if handle >> 24 in (HT_TRANSIENT, HT_PERSISTENT, HT_NV):
        return None
    return _U32.pack(handle)
