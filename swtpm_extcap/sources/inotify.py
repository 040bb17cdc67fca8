"""Linux inotify through ctypes: a watch on one directory, used as a wake-up hint.

The follower never trusts inotify for correctness (it re-checks the file with
``fstat``/``stat`` on every wake-up and after every timeout); inotify only
makes it wake within a millisecond of a write instead of at the next poll.
The watch is on the file's *directory*, so that creation, rename and deletion
of the file are seen as well as writes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import sys
from typing import Any

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000

#: what the directory watch asks for
WATCH_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO
    | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)
#: events about the watched directory itself: the watch is gone or misleading
_LOST = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED

_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (+ name)
_READ_SIZE = 64 * 1024


class _Libc:
    """The three libc calls, typed; ``None`` where libc has no inotify."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int


_libc: _Libc | None = None


def _load() -> _Libc:
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux"):
            raise OSError(errno.ENOSYS, f"inotify is Linux only (this is {sys.platform})")
        try:
            _libc = _Libc()
        except (OSError, AttributeError) as exc:
            raise OSError(errno.ENOSYS, f"libc has no inotify: {exc}") from exc
    return _libc


def _error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


class DirWatch:
    """An inotify watch on ``directory`` that wakes :meth:`wait` on changes to ``name``.

    Raises :class:`OSError` when inotify is unavailable (not Linux, no libc
    support, ``fs.inotify.max_user_instances`` reached). A missing directory
    is not an error: the watch is (re)added on each :meth:`wait` until the
    directory exists, and re-added when the directory is deleted or moved.
    """

    # declared here too: mypy --platform win32 skips __init__ after its platform check
    _libc: _Libc
    _dir: bytes
    _name: bytes
    _poller: Any

    def __init__(self, directory: str, name: str) -> None:
        if sys.platform == "win32":  # (mypy --platform win32: the rest is Linux's)
            raise OSError("inotify is Linux only")
        self._libc = _load()
        fd = self._libc.init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _error("inotify_init1")
        self._fd: int | None = fd
        self._dir = os.fsencode(directory)
        self._name = os.fsencode(name)
        self._wd: int | None = None
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)
        self._add()

    @property
    def watching(self) -> bool:
        """True while the directory watch is in place."""
        return self._wd is not None

    def _add(self) -> None:
        if self._fd is None:
            return
        wd = self._libc.add_watch(self._fd, self._dir, WATCH_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                self._wd = None  # not there (yet): try again on the next wait
                return
            raise _error("inotify_add_watch")
        self._wd = wd

    def wait(self, timeout: float, *, any_name: bool = False) -> bool:
        """Block up to ``timeout`` seconds for a change; True if one came.

        Only events for ``name`` (or about the directory itself, or a queue
        overflow) count, unless ``any_name``: then every change in the
        directory wakes us (used while the followed file has been renamed to
        some other name there and may still be written).
        """
        if self._fd is None:
            return False
        if self._wd is None:
            self._add()
        if not self._poller.poll(max(0, int(timeout * 1000))):
            return False
        return self._drain(any_name)

    def _drain(self, any_name: bool) -> bool:
        assert self._fd is not None
        woke = False
        while True:
            try:
                buf = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return woke
            if not buf:
                return woke
            pos = 0
            while pos + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, pos)
                name = buf[pos + _EVENT.size : pos + _EVENT.size + length].rstrip(b"\0")
                pos += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    woke = True
                elif wd == self._wd and mask & _LOST:
                    # the directory went away or moved: the watch no longer
                    # describes our path; drop it and add it again later
                    if not mask & IN_IGNORED:
                        self._libc.rm_watch(self._fd, wd)
                    self._wd = None
                    woke = True
                elif wd == self._wd and (any_name or name == self._name):
                    woke = True

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._poller.unregister(fd)
            os.close(fd)
