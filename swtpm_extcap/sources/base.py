"""The one interface between a log's bytes and the capture engine: :class:`Source`.

A source is where one swtpm log lives (a local file, a file on an SSH host).
The capture engine knows nothing else about it: it asks for the backlog (size
and modification time), reads a byte range of it (replay, the last-run pass),
or follows it from a byte offset like ``tail -F``. What the source sees on the
way (truncation, rotation, re-creation, the end of the backlog) reaches the
engine as a typed :class:`Notice` among the chunks, never as free text.

A source's own failures (no such file, permission denied, unknown host key)
are :class:`~swtpm_extcap.errors.UserError` with one line that says how to fix
them, in the source's own terms (``setfacl`` for a local file, ``priv = "sudo"``
for a remote one): :meth:`Source.explain` turns an :class:`OSError` of the
source into that line.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, Union


class Notice(enum.Enum):
    """Something a follow saw besides bytes, in the order it happened."""

    #: the bytes that were in the log when the follow began have all been yielded
    BACKLOG_DONE = "backlog done"
    #: the same file was cut short (copytruncate, ``: > log``): reading again from 0
    TRUNCATED = "truncated"
    #: the file was renamed away and a new one is at the path: old one drained, new read from 0
    ROTATED = "rotated"
    #: the file was deleted and a new one appeared at the path (a VM restart): read from 0
    RECREATED = "recreated"


@dataclass(frozen=True)
class Gap:
    """The source could not see the log for a while (an SSH link down, back, a log
    rotated meanwhile): ``text`` says what happened and which records may be missing,
    for the capture to show where the user looks (a frame of its own)."""

    text: str


Chunk = Union[bytes, Notice, Gap]


@dataclass(frozen=True)
class Backlog:
    """What the log holds when a capture starts."""

    #: bytes in the log now (0 when it does not exist yet)
    size: int
    #: its modification time, seconds since the epoch (None: no file yet)
    mtime: float | None


class Source(Protocol):
    """One swtpm log, wherever it is."""

    #: how messages name the log: a path, or ``host:path``
    label: str

    def backlog(self) -> Backlog:
        """Size and mtime now; raises ``UserError`` when the log cannot be read."""
        ...

    def read(self, stop: threading.Event, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end)`` (``end`` None: to the end of the log), then stop."""
        ...

    def follow(self, stop: threading.Event, start: int = 0) -> Iterator[Chunk]:
        """The bytes from offset ``start`` on, then whatever is appended, until ``stop`` is set.

        Yields :data:`Notice.BACKLOG_DONE` once the bytes present at the start
        have been yielded, and a notice before each switch to a new file (with a
        ``b"\\n"`` first when the old file ended inside a line); a :class:`Gap`
        when it lost sight of the log for a while."""
        ...

    def explain(self, exc: OSError) -> str:
        """One line for the user: what went wrong with this log and how to fix it."""
        ...
