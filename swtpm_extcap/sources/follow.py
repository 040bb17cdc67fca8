"""Follow one local log file like ``tail -F``: yield its bytes as they are appended.

:func:`follow` yields raw chunks (a partial last line included: the parser
holds it back) and survives what happens to swtpm logs on a host:

* the file does not exist yet: wait for it (VM not started);
* truncation (``logrotate copytruncate``, ``: > log``): read again from offset 0;
* rotation (rename away, new file at the path): first drain the old file to
  its end through the still open descriptor, then read the new one from 0;
* deletion: keep reading the old descriptor (a running swtpm still writes to
  the deleted file) and switch as soon as a file appears at the path again
  (VM restart: swtpm creates the file or appends to it);
* something at the path that is no regular file (a directory, a symlink to
  ``/dev/zero`` or ``/dev/urandom``, a fifo, a symlink loop): never opened
  nor read (``/dev/zero`` would feed the parser forever); as for deletion,
  the old file is still read and the path waited on until a regular file is
  there again, with one ``on_event`` line that says what is there instead.

When the followed file is switched (rotation, truncation, re-creation) and what
was yielded so far does not end with a newline, ``b"\\n"`` is yielded first, so
that the parser ends that line instead of gluing the next file's first line
onto it.

:func:`follow_chunks` yields the same bytes with a typed :class:`Notice` at
each switch (after that ``b"\\n"``, before the new file's bytes): what
:class:`~swtpm_extcap.sources.local.LocalFile` hands the capture engine.

On Linux the file's *directory* is watched with inotify (through ctypes, no
third-party module), so a write is seen within a millisecond; elsewhere, or if
inotify fails, the file is polled every ``poll_interval`` seconds. In both modes
every wake-up re-checks the file with ``fstat``/``stat``: inotify is only a hint.

Errors: a :class:`PermissionError` (file or directory not readable) propagates
from the first ``next()`` that meets it, so the caller can print one line;
the rule that only regular files are read is :mod:`swtpm_extcap.sources.regular`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from collections.abc import Callable, Generator, Iterator

from .base import Chunk, Notice
from .inotify import DirWatch
from .regular import CHUNK_SIZE, OPEN_FLAGS, file_kind, read_once  # noqa: F401 (read_once: here too)

#: default polling interval (seconds) when inotify is not used
POLL_INTERVAL = 0.02
#: longest single block while waiting with inotify, so that ``stop`` is seen promptly
MAX_BLOCK = 0.05
#: bytes just before our offset that are re-read to notice a file that was
#: truncated and grew past our offset again between two looks
GUARD_SIZE = 256

EventSink = Callable[[str], None]


def follow(
    path: str | os.PathLike[str],
    stop: threading.Event,
    *,
    from_start: bool = True,
    poll_interval: float = POLL_INTERVAL,
    on_event: EventSink | None = None,
    use_inotify: bool = True,
) -> Generator[bytes, None, None]:
    """Yield chunks of the log at ``path`` as they are appended, until ``stop`` is set.

    ``from_start``: begin with the existing content (the default), or at the
    current end of the file (only new records; the rest of a partial last
    line is skipped too). A file that does not exist yet is always read from
    its start once it appears.

    ``poll_interval``: seconds between looks at the file without inotify
    (at most 0.05 s is advised: new data should reach Wireshark in < 100 ms).

    ``on_event``: gets one short line per noteworthy change, for a debug log
    (never stderr). Its first word(s) are stable, callers may test them:
    ``inotify:`` / ``inotify unavailable`` / ``polling`` (how changes are
    seen), ``waiting for`` (no file yet), ``opened`` (first open of an
    existing file), ``created`` (first open of a file that appeared later),
    ``truncated`` (same file, read again from 0), ``deleted`` / ``moved away``
    (path gone, the old file is still read), ``rotated`` / ``re-created``
    (a new file at the path, read from 0 after the old one was drained),
    ``not a regular file`` (the path holds a directory, a device, ...: waited on
    like a missing file, never read).

    ``use_inotify``: False forces polling (tests, benchmarks).

    The generator ends within about ``min(poll_interval, 0.05)`` seconds of
    ``stop`` being set, also while waiting (with polling: at once); ``close()``
    on it releases the file and the inotify descriptor at once.
    Raises :class:`PermissionError` (and other :class:`OSError`) when the file
    or its directory cannot be read.
    """
    for chunk in follow_chunks(
        path, stop, start=0 if from_start else None, poll_interval=poll_interval,
        on_event=on_event, use_inotify=use_inotify,
    ):
        if type(chunk) is bytes:
            yield chunk


def follow_chunks(
    path: str | os.PathLike[str],
    stop: threading.Event,
    *,
    start: int | None = 0,
    poll_interval: float = POLL_INTERVAL,
    on_event: EventSink | None = None,
    use_inotify: bool = True,
) -> Generator[Chunk, None, None]:
    """:func:`follow`, with a :class:`Notice` at each switch of file.

    ``start``: the offset in the file open at the start to begin at (0: its
    start; None: its end; past its end: its end); when that is inside a line,
    the rest of the line is skipped. A file that appears later is read from 0.
    Notices: :data:`Notice.TRUNCATED` (same file, read again from 0),
    :data:`Notice.ROTATED` (a new file at the path, the old one drained),
    :data:`Notice.RECREATED` (the path had no file, and now has one again,
    also when the follow began without a file).
    """
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be > 0, not {poll_interval!r}")
    follower = _Follower(os.fspath(path), stop, start, poll_interval, on_event, use_inotify)
    try:
        yield from follower.chunks()
    finally:
        follower.close()


class _Follower:
    """The state of one :func:`follow`: the open file, our offset in it, the watch."""

    def __init__(
        self,
        path: str,
        stop: threading.Event,
        start: int | None,
        poll_interval: float,
        on_event: EventSink | None,
        use_inotify: bool,
    ) -> None:
        self.path = path
        self.stop = stop
        self.start = start  # where to begin in the file open at the start (None: its end)
        self.poll_interval = poll_interval
        self.on_event = on_event
        self.use_inotify = use_inotify
        self.fd: int | None = None
        self.ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the open file
        self.offset = 0  # bytes of the open file consumed (read, yielded or skipped)
        self.consumed = 0  # bytes read from all files so far: tells whether a round did anything
        self.guard = b""  # the file's last GUARD_SIZE bytes before offset
        self.ended_nl = True  # nothing yielded since the last switch, or it ended with b"\n"
        self.skip_partial = False  # drop bytes up to the first b"\n" (start inside a line)
        self.opened_before = False
        self.path_state = "unknown"  # "present", or why there is no file: for on_event
        self.unusable = "missing"  # why the last stat_path() found no regular file
        self.watch: DirWatch | None = None

    def note(self, message: str) -> None:
        """A line for the debug log (``on_event``)."""
        if self.on_event is not None:
            self.on_event(message)

    # -- the loop --------------------------------------------------------------

    def chunks(self) -> Iterator[Chunk]:
        if self.use_inotify:
            directory, name = os.path.split(os.path.abspath(self.path))
            try:
                self.watch = DirWatch(directory, name)
            except OSError as exc:
                self.note(f"inotify unavailable ({exc}): polling every {self.poll_interval:g} s")
            else:
                self.note(f"inotify: watching directory {directory}")
        else:
            self.note(f"polling every {self.poll_interval:g} s")
        stop = self.stop
        while not stop.is_set():
            before = self.consumed
            if self.fd is not None:
                for chunk in self.read_available():
                    yield chunk
                    if stop.is_set():
                        return
            busy = self.consumed != before
            st = self.stat_path()
            if st is None:
                if self.path_state != self.unusable:
                    self.path_state = self.unusable
                    if self.unusable != "missing":
                        self.note(f"not a regular file: {self.path} is {self.unusable};"
                                  " waiting for a regular file there" + (
                                      " (still reading the old one)" if self.fd is not None
                                      else ""))
                    elif self.fd is None:
                        self.note(f"waiting for {self.path} to be created")
                    else:
                        gone = "deleted" if os.fstat(self.fd).st_nlink == 0 else "moved away"
                        self.note(f"{gone}: {self.path} is gone; still reading the old file"
                                  " until a new one appears")
            elif self.fd is None or (st.st_dev, st.st_ino) != self.ident:
                # a (new) file at the path: drain the old one, then switch to it
                if self.fd is None:
                    how = "re-created" if self.opened_before else (
                        "opened" if self.path_state == "unknown" else "created")
                else:
                    how = "re-created" if os.fstat(self.fd).st_nlink == 0 else "rotated"
                    for chunk in self.drain():
                        yield chunk
                        if stop.is_set():
                            return
                yield from self.end_line()
                if self.open(how):
                    busy = True
                    if how != "opened":
                        yield Notice.ROTATED if how == "rotated" else Notice.RECREATED
            else:
                self.path_state = "present"
            if not busy:
                self.wait()

    def wait(self) -> None:
        watch = self.watch
        if watch is None:
            self.stop.wait(self.poll_interval)
        else:
            # while the path is not our open file, the old file may be written
            # under another name in the directory: then every change wakes us
            watch.wait(min(self.poll_interval, MAX_BLOCK), any_name=self.path_state != "present")

    def stat_path(self) -> os.stat_result | None:
        """The regular file at the path; None when there is none (``unusable`` says why:
        ``missing``, or what is there instead: a directory, a device, a symlink loop)."""
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            self.unusable = "missing"
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            self.unusable = "a symlink loop"
            return None
        if not stat.S_ISREG(st.st_mode):
            self.unusable = file_kind(st.st_mode)
            return None
        return st

    # -- switching files -------------------------------------------------------

    def open(self, how: str) -> bool:
        """Open the file at the path; False if it vanished in between.

        ``how`` names the switch for ``on_event``: opened, created, rotated, re-created.
        """
        try:
            fd = os.open(self.path, OPEN_FLAGS)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return False
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped after stat_path() looked: not ours to read
            os.close(fd)
            return False
        first = not self.opened_before
        self.fd = fd
        self.ident = (st.st_dev, st.st_ino)
        self.offset = 0
        self.guard = b""
        self.skip_partial = False
        self.path_state = "present"
        self.opened_before = True
        start = st.st_size if self.start is None else min(self.start, st.st_size)
        if first and how == "opened" and start > 0:
            # start there; if that is inside a line, skip the rest of it
            self.offset = start
            self.guard = _pread(fd, max(0, start - GUARD_SIZE), start)
            self.skip_partial = not self.guard.endswith(b"\n")
            os.lseek(fd, self.offset, os.SEEK_SET)
            self.note(f"opened {self.path} (inode {st.st_ino}) at offset {self.offset}")
        elif how == "rotated":
            self.note(f"rotated: new file at {self.path} (inode {st.st_ino}),"
                      " old one drained; reading from offset 0")
        else:
            self.note(f"{how}: {self.path} (inode {st.st_ino}), reading from offset 0")
        return True

    def drain(self) -> Iterator[Chunk]:
        """Read the open (old) file to its end, then close it."""
        while self.fd is not None:
            before = self.consumed
            yield from self.read_available()
            if self.consumed == before:
                break
        self.close_file()

    def end_line(self) -> Iterator[bytes]:
        """Yield b"\\n" if what was yielded so far ends inside a line."""
        if not self.ended_nl:
            self.ended_nl = True
            yield b"\n"

    def restart(self, why: str) -> Iterator[Chunk]:
        """The same file was truncated or rewritten: read it again from offset 0."""
        assert self.fd is not None
        self.note(f"truncated: {self.path} {why}; reading it again from offset 0")
        yield from self.end_line()
        yield Notice.TRUNCATED
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.offset = 0
        self.guard = b""
        self.skip_partial = False

    # -- reading -----------------------------------------------------------

    def read_available(self) -> Iterator[Chunk]:
        """Yield what the open file holds beyond our offset (as of one fstat)."""
        fd = self.fd
        assert fd is not None  # a regular file: open() takes nothing else
        size = os.fstat(fd).st_size
        if size < self.offset:
            yield from self.restart(f"shrank to {size} bytes (we had read {self.offset})")
        elif size > self.offset and self.guard:
            start = self.offset - len(self.guard)
            if _pread(fd, start, self.offset) != self.guard:
                yield from self.restart(f"was rewritten (bytes before offset {self.offset} changed)")
        while self.offset < size:
            before = self.offset
            yield from self.read_some(fd, min(size - self.offset, CHUNK_SIZE))
            if self.offset == before:
                # read() gave nothing although fstat promised more: the file
                # shrank meanwhile; the next round sees it
                return

    def read_some(self, fd: int, n: int) -> Iterator[bytes]:
        """One read(); yields the data (minus a skipped partial line), if any."""
        try:
            data = os.read(fd, n)
        except BlockingIOError:
            return
        if not data:
            return
        self.offset += len(data)
        self.consumed += len(data)
        self.guard = data[-GUARD_SIZE:] if len(data) >= GUARD_SIZE else (self.guard + data)[-GUARD_SIZE:]
        if self.skip_partial:
            cut = data.find(b"\n")
            if cut < 0:
                return
            self.skip_partial = False
            data = data[cut + 1 :]
            if not data:
                return
        self.ended_nl = data.endswith(b"\n")
        yield data

    def close_file(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self.close_file()
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.close()


def _pread(fd: int, start: int, end: int) -> bytes:
    """Bytes [start, end) of the file; leaves the file position at ``end`` where
    there is no ``os.pread``."""
    if sys.platform != "win32":  # os.pread: POSIX (mypy --platform win32 knows this form)
        return os.pread(fd, end - start, start)
    os.lseek(fd, start, os.SEEK_SET)
    return os.read(fd, end - start)
