"""swtpm's log layout: line ends, record header patterns, and the hex-block check of the fast path.

Pure helpers for :mod:`swtpm_extcap.swtpmlog.parser`, kept out of its hot loops so that
the argument why the fast path takes exactly what the line path takes is read
in one place (:func:`hex_block`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

#: a header regex bound to one prefix: ``match(text, pos)`` -> (label, length)
HeaderMatch = Callable[[str, int], "re.Match[str] | None"]


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


def prefixed_header(prefix: str, labels: Iterable[str]) -> HeaderMatch:
    """The fast path's header: ``PREFIX LABEL: length DIGITS`` and its newline, at a line start."""
    return re.compile(
        f"{re.escape(prefix)} ({label_pattern(labels)}): length ([0-9]{{1,9}})\n"
    ).match


def hex_block(text: str, start: int, declared: int, nl_prefix: str) -> bytes | None:
    """The ``declared`` bytes of the hex block at ``text[start:]``, or None unless
    it is exactly swtpm's layout (what the line-by-line parser takes as an intact
    record, line by line, with nothing else in between).

    ``text[start - 1]`` is the newline that ends the record's header;
    ``nl_prefix`` is a newline and the log prefix. swtpm writes ``PREFIX`` +
    ``" XX"`` per byte + ``" "`` + newline per line, 16 bytes a line:
    ``nlines`` lines, ``2 * nlines + 3 * declared`` characters without the
    prefixes.

    Why the checks below suffice. ``B`` is the block as logged, from the
    header's newline on; ``S`` is ``B`` with ``nl_prefix`` replaced by a newline
    wherever it occurs.

    * ``B`` ends with a newline, and ``S`` has exactly the length of the block
      without its ``nlines`` prefixes (and the header's newline): so exactly
      ``nlines`` of ``B``'s newlines were followed by the prefix (each
      replacement consumes its own newline). The checks on ``S`` below leave it
      exactly ``nlines + 1`` newlines, hence ``B`` too; the last ends ``B``, so
      the other ``nlines`` (the header's and every line's but the last) were
      all followed by the prefix: every line of the block starts with
      ``PREFIX`` and its rest is a line of ``S``. (A prefix lost on one line
      leaves ``B`` ending inside the next line's prefix: refused.)
    * ``bytes.fromhex(S)`` gave ``N = declared`` bytes: 2N hex digits in pairs
      that no whitespace splits, and no character but digits and whitespace.
      The newline grid fixes every line's length (50, the last ``3r + 2``). A
      line with ``s`` spaces, none doubled, and ``d`` digits needs a pair in
      each of its ``s - 1`` gaps: ``d >= 2(s - 1)``, so ``s <= 17`` (full line),
      ``s <= r + 1`` (last line). ``S`` has ``nlines + N`` spaces, the sum of
      those maxima, and its length leaves no room for other whitespace: every
      line is ``" XX XX ... XX "`` and its newline, nothing else.

    Each such line is a hex line to the line parser (prefix, one space, a digit,
    ``fromhex`` of the rest), the bytes add up to ``declared`` at the last one
    and not before: the same record, whole.
    """
    if not declared:
        return b""
    nlines = (declared + 15) >> 4
    size = 2 * nlines + 3 * declared
    stop = start + size + (len(nl_prefix) - 1) * nlines
    if text[stop - 1 : stop] != "\n":
        return None
    block = text[start - 1 : stop]
    if len(nl_prefix) > 1:
        block = block.replace(nl_prefix, "\n")
    if len(block) != size + 1:
        return None
    try:
        data = bytes.fromhex(block)
    except ValueError:
        return None
    if (
        len(data) != declared
        or block[50:-1:50] != "\n" * (nlines - 1)
        or block.count(" ") != nlines + declared
        or "  " in block
    ):
        return None
    return data


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
