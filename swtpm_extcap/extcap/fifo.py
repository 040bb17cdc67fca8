"""Wireshark's fifo: opened for writing without blocking a stop, never truncated by a failure.

Wireshark passes ``--fifo PATH`` and opens its reading end when it is ready.
A plain blocking ``open()`` on a fifo cannot be interrupted by the stop
Event, so it is opened with O_NONBLOCK (ENXIO while there is no reader) and
retried; once open, the descriptor is switched back to blocking writes.

A regular file as ``--fifo`` (running the extcap by hand) is opened without
O_TRUNC and cut to zero only when the capture starts writing: a capture that
fails before that leaves the file as it was. A path that did not exist when
the extcap started is created as a file; one that vanished since (a dead
Wireshark cleaned up its fifo) is not: nothing is left behind. A failed
capture opens and closes a real fifo, so that Wireshark's reader sees the end;
it never touches anything else.

:meth:`Fifo.reader_gone` tells, without writing, that nobody reads the fifo any
more (poll's POLLERR on its writing end): the stop watch
(:mod:`swtpm_extcap.extcap.signals`) ends a capture on a quiet log with it.

Windows (not tested): the fifo is a named pipe (``\\\\.\\pipe\\wireshark_extcap_...``)
that ``open(path, "wb")`` opens; the O_NONBLOCK retry loop is POSIX only.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import sys
import threading
import time
from typing import BinaryIO

from ..errors import UserError, reason

#: open a fifo without blocking, retrying until the reader opens its end
RETRY_S = 0.02
#: how long a failed capture waits for the reader before giving up on the fifo
ERROR_WAIT_S = 10.0


class Fifo:
    """The ``--fifo`` of one capture; once opened, an error only closes it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.out: BinaryIO | None = None
        self.opened = False
        #: create the path only if it was not there at the start (run by hand)
        self.create = bool(path) and not os.path.lexists(path)

    def open(self, stop: threading.Event) -> BinaryIO | None:
        """Open for the capture, waiting for the reader; ``None`` if stopped first."""
        out = _open(self.path, stop, timeout=None, create=self.create)
        if out is not None:
            self.opened = True
            self.out = out
            if stat.S_ISREG(os.fstat(out.fileno()).st_mode):
                os.ftruncate(out.fileno(), 0)  # a file by hand: the capture starts now
        return out

    def reader_gone(self) -> bool:
        """True once a fifo we opened has no reader left (any thread may ask)."""
        out = self.out
        if out is None or sys.platform == "win32":  # no poll() there (mypy --platform win32)
            return False
        try:
            fd = out.fileno()
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return False
            poller = select.poll()
            poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
            events = poller.poll(0)
        except (OSError, ValueError, AttributeError):  # closed meanwhile; no poll()
            return False
        return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)

    def close(self) -> None:
        """Close it; a reader that is gone is no error (the buffer is dropped)."""
        out, self.out = self.out, None
        if out is not None:
            try:
                out.close()
            except OSError:
                pass

    def abandon(self) -> None:
        """Drop what is buffered: close the descriptor under a blocked writer."""
        out, self.out = self.out, None
        if out is not None:
            try:
                os.close(out.fileno())
            except (OSError, ValueError):
                pass

    def release_after_error(self, stop: threading.Event) -> None:
        """After a failure before the capture began: open and close a real fifo,
        so that Wireshark's reader ends; leave anything else alone."""
        if self.opened or not self.path:
            self.close()
            return
        try:
            if not stat.S_ISFIFO(os.stat(self.path).st_mode):
                return
            out = _open(self.path, stop, timeout=ERROR_WAIT_S, create=False)
        except (OSError, UserError):
            return
        if out is not None:
            try:
                out.close()
            except OSError:
                pass


def _open(path: str, stop: threading.Event, *, timeout: float | None, create: bool) -> BinaryIO | None:
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | (os.O_CREAT if create else 0)
    nonblock = getattr(os, "O_NONBLOCK", 0)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, flags | nonblock, 0o644)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise UserError(f"cannot open the fifo {path}: {reason(exc)}") from None
        if deadline is not None and time.monotonic() >= deadline:
            return None
        if stop.wait(RETRY_S):
            return None
    if nonblock and sys.platform != "win32":  # O_NONBLOCK is POSIX (mypy --platform win32)
        os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")
