"""Only regular files are read as logs: the rule, its one error, and a read of a byte range.

A log path may come to hold something else: a directory, a fifo, a symlink to
``/dev/zero`` or ``/dev/urandom`` (which never end: the parser would be fed
forever at 100% CPU), a symlink loop. Such a path is never read: it is checked
with ``stat`` before ``open`` (opening some devices has effects of its own) and
the open descriptor once more with ``fstat`` (it may have been swapped in
between). :func:`read_once` raises :class:`NotAFileError`; the follow
(:mod:`swtpm_extcap.sources.follow`) waits for a regular file instead.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Generator

#: most bytes yielded by one chunk: a big backlog streams in constant memory
CHUNK_SIZE = 1 << 20
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
# never block in open() on a FIFO at the path (stop could not interrupt it)
OPEN_FLAGS |= getattr(os, "O_NONBLOCK", 0)


class NotAFileError(OSError):
    """The path holds something else than a regular file (``kind`` says what)."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.path = path
        self.kind = kind


def file_kind(mode: int) -> str:
    """What ``stat``'s mode says is there, for a message: ``a directory``, ``a fifo``, ..."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a fifo"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "not a file"


def read_once(
    path: str | os.PathLike[str],
    stop: threading.Event,
    *,
    start: int = 0,
    end: int | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Generator[bytes, None, None]:
    """Yield bytes ``[start, end)`` of the file (``end`` None: to its end) in chunks
    of at most ``chunk_size`` bytes, then end.

    For "stop at end of log" (replay) mode and the last-run pass. Ends early
    when ``stop`` is set. :class:`FileNotFoundError` and
    :class:`PermissionError` propagate from the first ``next()``.
    """
    name = os.fspath(path)
    check_regular(name)  # before open(): opening some devices has effects of its own
    fd = os.open(name, OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped in between
            raise NotAFileError(name, file_kind(st.st_mode))
        if start:
            os.lseek(fd, start, os.SEEK_SET)
        left = -1 if end is None else end - start
        while left and not stop.is_set():
            try:
                data = os.read(fd, chunk_size if left < 0 else min(left, chunk_size))
            except BlockingIOError:
                return
            if not data:
                return
            if left > 0:
                left -= len(data)
            yield data
    finally:
        os.close(fd)


def read_head(path: str | os.PathLike[str], limit: int) -> tuple[bytes, int]:
    """The first ``limit`` + 1 bytes at most of a small regular file, and its size.

    For the files read while Wireshark lists interfaces (the settings file, a
    Proxmox VM's ``.conf``): opened without blocking, so that a fifo at the
    path cannot hang the listing; checked on the open descriptor
    (:class:`NotAFileError` for ``/dev/zero``, a directory, a fifo); read no
    further than one byte past ``limit`` (a caller tells a file that grew).
    Other :class:`OSError` propagate."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    name = os.fspath(path)
    fd = os.open(name, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAFileError(name, file_kind(st.st_mode))
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            data = os.read(fd, min(left, 1 << 16))
            if not data:
                break
            chunks.append(data)
            left -= len(data)
    finally:
        os.close(fd)
    return b"".join(chunks), st.st_size


def not_regular(path: str) -> str | None:
    """What ``path`` holds instead of a regular file (``a directory``, ``a symlink
    loop``, ...); None for a regular file or nothing at all."""
    try:
        check_regular(path)
    except NotAFileError as exc:
        return exc.kind
    return None


def check_regular(path: str) -> None:
    """:class:`NotAFileError` unless ``path`` (symlinks followed) is a regular file
    or nothing at all (then ``open()`` says FileNotFoundError)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAFileError(path, "a symlink loop") from None
        return  # open() reports it
    if not stat.S_ISREG(st.st_mode):
        raise NotAFileError(path, file_kind(st.st_mode))


