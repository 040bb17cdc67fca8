"""swtpm's log layout: line ends, record header patterns, and the hex-block check of the fast path.

Pure helpers for :mod:`swtpm_extcap.swtpmlog.parser`, kept out of its hot loops so that
the argument why the fast path takes exactly what the line path takes is read
in one place (:func:`hex_bytes`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

#: a header regex bound to one prefix: ``match(buf, pos)`` -> (label, length), as bytes
HeaderMatch = Callable[[bytes, int], "re.Match[bytes] | None"]


def label_pattern(labels: Iterable[str]) -> str:
    """A regex alternation of record labels, longest first (``Ctrl Rsp Continued``
    must be tried before ``Ctrl Rsp``)."""
    return "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))


def any_header(labels: Iterable[str]) -> re.Pattern[str]:
    """A header with any prefix and any length text: ``PREFIX LABEL: length N``
    or ``PREFIX LABEL: null`` (groups ``prefix``, ``label``, ``length``, ``null``)."""
    return re.compile(
        rf"^(?P<prefix>.*?) (?P<label>{label_pattern(labels)}):"
        r" (?:length (?P<length>\S+)|(?P<null>null))\s*$"
    )


def prefixed_header(prefix: bytes, labels: Iterable[str]) -> HeaderMatch:
    """The fast path's header: ``PREFIX LABEL: length DIGITS`` and its newline, at a line
    start, in the log's bytes (the prefix and labels as latin-1, as the parser decodes)."""
    return re.compile(
        re.escape(prefix) + b" (" + label_pattern(labels).encode("latin-1") + rb"): length ([0-9]{1,9})\n"
    ).match


#: hex digits -> NUL, NUL -> 0x01, every other byte itself: a hex block's bytes become
#: its layout (:func:`layout_of`)
DIGITS = bytes.maketrans(b"0123456789abcdefABCDEF\0", b"\0" * 22 + b"\1")
#: layouts kept (for blocks of at most MAX_KEPT_SIZE bytes)
MAX_KEPT = 1024
MAX_KEPT_SIZE = 4096
_LAYOUTS: dict[int, bytes] = {}
_FULL_LINE = b" \0\0" * 16 + b" \n"


def layout_of(declared: int) -> bytes:
    """swtpm's hex block of ``declared`` bytes as :data:`DIGITS` maps it, from the
    newline that ends its header on, without the prefixes: a newline, then 16 bytes
    a line, ``" XX"`` each, a space and a newline after the last of a line.

    The fast path takes a record whose block, translated, is exactly this (and whose
    every line had the prefix: see :func:`hex_bytes`). Each line of it is a hex line
    to the line-by-line parser (the prefix, a space, a digit; ``fromhex`` of the
    rest gives its bytes), the bytes add up to ``declared`` at its last line and not
    before: the same record, whole.
    """
    layout = _LAYOUTS.get(declared)
    if layout is None:
        full, rest = divmod(declared, 16)
        layout = b"\n" + _FULL_LINE * full + (b" \0\0" * rest + b" \n" if rest else b"")
        if declared <= MAX_KEPT_SIZE:
            if len(_LAYOUTS) >= MAX_KEPT:
                _LAYOUTS.clear()
            _LAYOUTS[declared] = layout
    return layout


def hex_bytes(buf: bytes, start: int, declared: int, nl_prefix: bytes) -> bytes | None:
    """The ``declared`` bytes of the hex block at ``buf[start:]``, or None unless it
    is exactly swtpm's layout (:func:`layout_of`) with the prefix on every line.

    ``buf`` holds complete lines; ``buf[start - 1]`` is the newline that ends the
    record's header; ``nl_prefix`` is a newline and the log prefix. The block ``B``
    runs from that newline to the end of its ``nlines`` lines as their length says,
    and must end with a newline (else it ends inside another line, or past the
    end of ``buf``); ``S`` is ``B`` with every ``nl_prefix`` replaced by a newline.
    If ``S``, translated by :data:`DIGITS`, is the layout, ``S`` has the layout's
    length, ``nlines`` prefixes shorter than ``B``: ``nlines`` replacements. Every
    newline of ``S`` is one the layout has (a digit position holds a hex digit,
    every other one the layout's byte), so ``B`` has ``nlines + 1`` newlines; the
    last ends ``B`` and has no room after it for a prefix; so each of the other
    ``nlines`` (the header's, each hex line's but the last) was followed by the
    prefix: every hex line starts with it.

    (The parser's fast path inlines this; it is kept here, whole, for its tests.)
    """
    nlines = (declared + 15) >> 4
    stop = start + (len(nl_prefix) + 1) * nlines + 3 * declared
    if buf[stop - 1 : stop] != b"\n":
        return None
    block = buf[start - 1 : stop]
    if len(nl_prefix) > 1:
        block = block.replace(nl_prefix, b"\n")
    if block.translate(DIGITS) != layout_of(declared):
        return None
    return bytes.fromhex(block.decode("latin-1"))


def line_ends(buf: bytes) -> bytes:
    """CRLF and a lone CR become LF; a CR at the very end is kept (an LF may follow)."""
    held = buf.endswith(b"\r")
    if held:
        buf = buf[:-1]
    buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return buf + b"\r" if held else buf


def show(line: str, width: int = 60) -> str:
    """A log line (or part of one) for a message: stripped, cut to ``width``, quoted."""
    text = line.strip()
    return repr(text if len(text) <= width else text[: width - 3] + "...")
