"""A log named on the command line (a path, or ``-`` for stdin), read in chunks: the
input edge that ``pcrs`` and ``explain`` share (``convert`` streams its own), and their
common arguments."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import argparse

CHUNK = 1 << 20


@contextmanager
def log_chunks(log: str, stdin: BinaryIO) -> Iterator[tuple[str, Iterator[bytes]]]:
    """``(name, chunks)`` of the log: checked first (one line if it cannot be read),
    closed after (stdin stays open)."""
    from .convert import check_inputs

    check_inputs([log])
    src = stdin if log == "-" else open(log, "rb")
    try:
        yield ("stdin" if log == "-" else log), _chunks(src)
    finally:
        if src is not stdin:
            src.close()


def _chunks(src: BinaryIO) -> Iterator[bytes]:
    read = getattr(src, "read1", src.read)
    while chunk := read(CHUNK):
        yield chunk


def add_log_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str, description: str
) -> argparse.ArgumentParser:
    """A subcommand that reads one log and reports on it, as text or ``--json``."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("log", metavar="LOG", help="swtpm log file, or - for stdin")
    p.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    return p
