"""A log file on this machine: the first :class:`~swtpm_extcap.sources.base.Source`."""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator

from ..errors import UserError, reason
from .base import Backlog, Chunk, Gap, Notice
from .follow import follow_chunks
from .regular import OPEN_FLAGS, NotAFileError, check_regular, file_kind, read_once


class LocalFile:
    """One local swtpm log, read and followed like ``tail -F`` (:mod:`.follow`).

    :meth:`backlog` remembers the size it saw: :meth:`follow` yields
    :data:`Notice.BACKLOG_DONE` right after that many bytes (or before an
    earlier switch of file), so backlog and live records part at the byte
    the capture started at."""

    def __init__(self, path: str, *, use_inotify: bool = True) -> None:
        self.path = path
        self.label = path
        self.use_inotify = use_inotify
        self._backlog_size = 0

    def backlog(self) -> Backlog:
        try:
            check_regular(self.path)  # a directory, /dev/zero, a fifo: never opened
            fd = os.open(self.path, OPEN_FLAGS)
        except FileNotFoundError:
            self._backlog_size = 0
            return Backlog(0, None)
        except OSError as exc:
            raise UserError(self.explain(exc)) from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the check and open()
            raise UserError(self.explain(NotAFileError(self.path, file_kind(st.st_mode))))
        self._backlog_size = st.st_size
        return Backlog(st.st_size, st.st_mtime)

    def read(self, stop: threading.Event, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return read_once(self.path, stop, start=start, end=end)

    def follow(self, stop: threading.Event, start: int = 0) -> Iterator[Chunk]:
        left = max(self._backlog_size - start, 0)
        log = logging.getLogger("swtpm_extcap.follow")  # the --log-file, never stderr
        chunks = follow_chunks(self.path, stop, start=start, on_event=log.debug,
                               use_inotify=self.use_inotify)
        try:
            if not left:
                yield Notice.BACKLOG_DONE
            for chunk in chunks:
                if not left or isinstance(chunk, Gap):
                    yield chunk
                elif isinstance(chunk, Notice):  # a switch before the backlog's end ends it
                    left = 0
                    yield Notice.BACKLOG_DONE
                    yield chunk
                elif len(chunk) < left:
                    left -= len(chunk)
                    yield chunk
                else:
                    head, rest = chunk[:left], chunk[left:]
                    left = 0
                    yield head
                    yield Notice.BACKLOG_DONE
                    if rest:
                        yield rest
        finally:
            chunks.close()

    def explain(self, exc: OSError) -> str:
        if isinstance(exc, PermissionError):
            return permission_hint(self.path)
        if isinstance(exc, FileNotFoundError):
            return f"{self.path} disappeared before it could be read"
        if isinstance(exc, NotAFileError):
            return not_a_file(self.path, exc.kind)
        if isinstance(exc, IsADirectoryError):
            return not_a_file(self.path, "a directory")
        return f"cannot read {self.path}: {reason(exc)}"


def not_a_file(path: str, kind: str) -> str:
    """One line: the path holds no log file (and where a symlink leads)."""
    target = os.path.realpath(path)
    via = f" (a symlink to {target})" if kind != "a symlink loop" and target != os.path.abspath(
        path) else ""
    return (
        f"{path} is {kind}{via}, not an swtpm log: a log is a regular file; point the"
        " settings file or the VM's swtpm --log at one"
    )


def permission_hint(path: str) -> str:
    """One line: why the log at ``path`` cannot be read and the ways to fix it."""
    try:
        st = os.stat(path)
        detail = f"{_user_name(st.st_uid)}, mode {st.st_mode & 0o7777:04o}"
    except OSError as exc:
        detail = reason(exc)
    from shlex import quote

    user = _user_name(os.geteuid()) if hasattr(os, "geteuid") else "$USER"
    return (
        f"cannot read {path} ({detail}): run Wireshark's capture as root,"
        f" grant read access (setfacl -m u:{user}:r {quote(path)};"
        " redo it whenever the file is created anew, e.g. after a host reboot),"
        f" or stream it as root: sudo tail -c +1 -F {quote(path)}"
        f" | {quote(sys.executable)} -m swtpm_extcap convert - -o - | wireshark -k -i -,"
        " or read it through passwordless sudo over SSH: interface swtpm-ssh with host"
        " localhost and 'Read the log as root' = sudo (or a [[remote]] entry, see the README)"
    )


def _user_name(uid: int) -> str:
    if sys.platform == "win32":  # no pwd there (mypy --platform win32)
        return str(uid)
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)
