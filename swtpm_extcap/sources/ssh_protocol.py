"""The remote reader's output, decoded as untrusted input: bytes in, checked items out.

Pure and incremental (no I/O): :meth:`FrameDecoder.feed` takes whatever the
SSH channel delivered, in any chunking, and returns :class:`Header` items,
log bytes and :class:`Zeros` (a run of NUL log bytes, kept as a count), in
order. Everything the host sends is checked before it is believed:

* Text the login prints before the reader starts (a banner, a ``.bashrc``
  that echoes) is skipped up to the reader's hello line, which carries a
  random token the client made for this start (:func:`new_token`): neither
  the log nor the login can forge it. At most :data:`MAX_PREAMBLE` bytes are
  skipped; more is :class:`ProtocolError` (a login that prints a lot).
* A header line is at most :data:`MAX_HEADER` bytes, of a known kind, with
  exactly its fields, each matching its pattern (digits of bounded length,
  an error code of capital letters).
* A data frame's length is 1 to ``max_frame`` (what the client asked for);
  its trailer ``V k`` follows right after its bytes, with ``k`` at most the
  frame's length.

Memory stays bounded whatever the host sends: a partial header, the
preamble and one channel read are held, never a data frame (its bytes are
handed on as they come; trailing NULs, which may be padding until the
trailer says, are only counted).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Union

#: the protocol the reader speaks (its hello: ``SWTPM-READER 2 <token>``)
VERSION = 2
HELLO = b"SWTPM-READER %d " % VERSION
#: bytes of login chatter skipped before the hello at most
MAX_PREAMBLE = 64 * 1024
#: the longest header line, newline included
MAX_HEADER = 160
#: the longest error text of an ``E`` frame
MAX_ERROR_TEXT = 120

_INT = rb"(0|[1-9][0-9]{0,18})"  # 0 to 10**19 - 1: fits 64 bits
_INO = rb"([0-9]{1,20})"
_FIELDS: dict[bytes, re.Pattern[bytes]] = {
    kind: re.compile(pattern)
    for kind, pattern in {
        b"O": rb"O %s %s %s" % (_INO, _INT, _INT),  # opened: inode, size, reading from offset
        b"D": rb"D %s" % _INT,  # data: n bytes follow, then V
        b"V": rb"V %s" % _INT,  # trailer: the first k of them are the log's
        b"T": rb"T",  # truncated: reading again from 0
        b"R": rb"R %s %s" % (_INO, _INT),  # rotated: the new file, its size
        b"C": rb"C %s %s" % (_INO, _INT),  # re-created
        b"N": rb"N %s %s" % (_INO, _INT),  # a log appeared at the path
        b"W": rb"W",  # no log at the path yet
        b"H": rb"H",  # heartbeat
        b"B": rb"B %s (-?[0-9]{1,19})" % _INT,  # stat: size, mtime
        b"X": rb"X",  # read: the end
        b"Q": rb"Q ([0-2]) %s %s" % (_INO, _INT),  # resumed in a rotated copy: ssh_script.ROTATED[i], inode, size
        b"G": rb"G %s" % _INT,  # the old file is gone: bytes after this offset may be lost
        b"E": rb"E ([A-Z]{2,12}) ([ -~]{0,%d})" % MAX_ERROR_TEXT,  # cannot go on
    }.items()
}


class ProtocolError(ValueError):
    """The host sent something the reader never sends; the message says what, briefly."""


@dataclass(frozen=True)
class Header:
    """One checked header: its kind letter and its fields (``E``: code, text)."""

    kind: str
    fields: tuple[str, ...] = ()

    def number(self, i: int) -> int:
        return int(self.fields[i])


@dataclass(frozen=True)
class Zeros:
    """``count`` NUL bytes of the log (a data frame's trailing NULs, once its trailer came)."""

    count: int


Item = Union[Header, bytes, Zeros]


def new_token() -> str:
    """A fresh token for one reader start (128 random bits, hex)."""
    return secrets.token_hex(16)


def _sample(data: bytes) -> str:
    """A short, printable view of bytes for a message (never more than 40 characters)."""
    text = data[:40].decode("ascii", "replace")
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


class FrameDecoder:
    """Decodes one reader's output; see the module docstring."""

    def __init__(self, token: str, *, max_frame: int) -> None:
        self.hello = HELLO + token.encode("ascii") + b"\n"
        self.max_frame = max_frame
        self.greeted = False
        #: bytes the login printed before the hello (kept up to MAX_PREAMBLE, for the message)
        self.preamble = b""
        self._buf = b""  # a partial header, or the preamble not yet searched
        self._left = 0  # bytes of the current data frame still to come
        self._size = 0  # its length
        self._handed = 0  # its bytes handed on
        self._zeros = 0  # its trailing NULs held back (only counted)
        self._trailer = False  # the frame's bytes are all here: its V line is next

    @property
    def chatter(self) -> bytes:
        """What came before the hello (all of it, while there was no hello yet)."""
        return self.preamble if self.greeted else self.preamble + self._buf

    @property
    def in_frame(self) -> bool:
        """Inside a data frame (its bytes or its trailer still to come)."""
        return self._left > 0 or self._trailer

    def feed(self, data: bytes) -> list[Item]:
        """Decode the next bytes; :class:`ProtocolError` on the first thing that is wrong."""
        out: list[Item] = []
        if not self.greeted:
            data = self._find_hello(self._buf + data)
            if not self.greeted:
                return out
            self._buf = b""
        pos = 0
        end = len(data)
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                self._data(data[pos : pos + take], out)
                pos += take
                self._left -= take
                if not self._left:
                    self._trailer = True
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._buf += data[pos:]
                if len(self._buf) >= MAX_HEADER:
                    raise ProtocolError(f"a header line longer than {MAX_HEADER} bytes:"
                                        f" {_sample(self._buf)!r}")
                break
            line = self._buf + data[pos:nl]
            self._buf = b""
            pos = nl + 1
            if len(line) >= MAX_HEADER:
                raise ProtocolError(f"a header line longer than {MAX_HEADER} bytes:"
                                    f" {_sample(line)!r}")
            self._header(line, out)
        return out

    def _find_hello(self, data: bytes) -> bytes:
        """Skip login chatter up to the hello (anywhere: a ``.bashrc`` may print no
        newline); returns what follows it."""
        hit = data.find(self.hello)
        if hit >= 0:
            self.greeted = True
            self.preamble = (self.preamble + data[:hit])[:MAX_PREAMBLE]
            return data[hit + len(self.hello) :]
        # keep a tail that may be the start of the hello; the rest is chatter
        cut = max(0, len(data) - len(self.hello))
        if len(self.preamble) + cut > MAX_PREAMBLE:
            raise ProtocolError(f"more than {MAX_PREAMBLE // 1024} KiB before the reader's"
                                f" hello: {_sample(self.preamble or data)!r}")
        self.preamble += data[:cut]
        self._buf = data[cut:]
        return b""

    def _data(self, piece: bytes, out: list[Item]) -> None:
        """A piece of a data frame: hand it on, counting (not keeping) trailing NULs."""
        body = piece if piece[-1:] != b"\0" else piece.rstrip(b"\0")
        if body:
            if self._zeros:  # the NULs held back were inside the data after all
                out.append(Zeros(self._zeros))
                self._handed += self._zeros
                self._zeros = 0
            out.append(body)
            self._handed += len(body)
        self._zeros += len(piece) - len(body)

    def _header(self, line: bytes, out: list[Item]) -> None:
        kind = line[:1]
        pattern = _FIELDS.get(kind)
        match = pattern.fullmatch(line) if pattern is not None else None
        if match is None:
            raise ProtocolError(f"not a frame header: {_sample(line)!r}")
        fields = tuple(g.decode("ascii") for g in match.groups())
        if self._trailer:
            if kind != b"V":
                raise ProtocolError(f"a data frame without its trailer: {_sample(line)!r}")
            valid = int(fields[0])
            if not self._handed <= valid <= self._size:
                raise ProtocolError(f"a trailer of {valid} bytes for a frame of {self._size}"
                                    f" with {self._handed} bytes of the log")
            # only trailing NULs can be padding: the log's share of them comes now
            zeros = max(0, min(self._zeros, valid - self._handed))
            if zeros:
                out.append(Zeros(zeros))
            self._trailer = False
            self._zeros = 0
            return
        if kind == b"V":
            raise ProtocolError("a trailer without a data frame")
        if kind == b"D":
            size = int(fields[0])
            if not 0 < size <= self.max_frame:
                raise ProtocolError(f"a data frame of {size} bytes (1 to {self.max_frame} asked for)")
            self._left = self._size = size
            self._handed = self._zeros = 0
            return
        out.append(Header(kind.decode("ascii"), fields))
