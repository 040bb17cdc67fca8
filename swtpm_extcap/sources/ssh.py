"""A log on an SSH host as a :class:`~swtpm_extcap.sources.base.Source`.

The remote side is the sh reader of :mod:`.ssh_script` (nothing installed on
the host), started by :mod:`.ssh_reader`; its output is checked item by item
(:mod:`.ssh_protocol`). This side keeps the follow state: the inode being
read, the byte offset in it, the last bytes before the offset (guard),
whether the backlog is done, whether the last byte yielded ended a line.

A dropped connection (sshd killed, network gone, a silent channel: no frame for
:data:`~.ssh_reader.DEAD_AFTER_S`) is followed by reconnects with backoff
(:data:`BACKOFF_S`, forever, until ``stop``); the reader restarts at the exact
offset of the last byte handed on, so no byte is lost or yielded twice. A
follow tells the capture (:class:`~swtpm_extcap.sources.base.Gap`) when the
link went down and when it came back, and what happened to the log meanwhile:
nothing lost, rotated (its rest read from the rotated copy, ``<log>.1``), or
rotated with no copy left (which bytes and log lines may be missing). What
cannot be retried (the host key changed, the login or sudo refused, the log
unreadable, a host that sends what the reader never sends) ends the follow
with one line.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..remote.ssh import Runner, SSHParams, Stopped
from .base import Backlog, Chunk, Gap, Notice
from .ssh_protocol import Header, Item, Zeros
from .ssh_reader import Dropped, Reader, log
from .ssh_script import GUARD_SIZE, ROTATED, Mode, Wake

#: waits before reconnect attempts 1, 2, ... (the last one repeats)
BACKOFF_S = (0.0, 0.2, 0.5, 1.0, 2.0, 5.0)
#: most NUL log bytes handed on at once
PIECE = 1 << 18
#: not from the host: the follow's own item for "the link just went down"
LINK_DOWN = Header("link-down")


class _Misbehaved(UserError):
    """A frame that contradicts what was asked (an offset, a length)."""


@dataclass
class _Down:
    """The link is down since ``since`` (wall clock), for ``reason``."""

    since: float
    reason: str
    offset: int
    lines: int


@dataclass
class _State:
    """Where the follow is; enough to resume on a new connection."""

    inode: str = ""
    offset: int = 0
    guard: bytes = b""
    backlog_end: int | None = None
    backlog_done: bool = False
    ended_nl: bool = True
    had_file: bool = False
    lines: int = 0  # log lines handed on (for the gap texts)
    down: _Down | None = None


class SSHSource:
    """One swtpm log on an SSH host; see :class:`~swtpm_extcap.sources.base.Source`."""

    def __init__(self, params: SSHParams, path: str, *, wake: Wake = "inotify",
                 backoff_s: tuple[float, ...] = BACKOFF_S) -> None:
        self.params = params
        self.path = path
        self.label = f"{params.where}:{path}"
        self.wake = wake
        self.backoff_s = backoff_s
        self.reconnects = 0  # dropped connections resumed (tests, benchmarks)
        self._runner: Runner | None = None
        self._reader: Reader | None = None
        #: the size backlog() saw: follow's BACKLOG_DONE comes right after it (as for a local file)
        self._backlog_size: int | None = None

    # -- the Source interface ------------------------------------------------

    def backlog(self) -> Backlog:
        """Size and mtime of the remote log; a log that does not exist is one line."""
        stop = threading.Event()
        try:
            for item in self._items("stat", stop, _State(), reconnect=False):
                if isinstance(item, Header) and item.kind == "B":
                    self._backlog_size = item.number(0)
                    return Backlog(self._backlog_size, float(item.number(1)))
        except OSError as exc:
            raise UserError(self.explain(exc)) from None
        raise UserError(f"{self.label}: the remote reader ended without an answer")

    def read(self, stop: threading.Event, start: int = 0, end: int | None = None
             ) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of the remote log, resuming after drops."""
        state = _State(offset=start)
        for item in self._items("read", stop, state, end=end):
            if isinstance(item, Header):
                if item.kind in ("X", "T", "R", "C", "G"):  # the end, or the file changed
                    return
                continue
            for data in _pieces(item):
                _advance(state, data)
                if end is not None and state.offset > end:
                    raise _Misbehaved(f"{self.label}: the remote reader sent more than was"
                                      f" asked for (bytes {start} to {end}): capture stopped")
                yield data

    def follow(self, stop: threading.Event, start: int = 0) -> Iterator[Chunk]:
        """``tail -F`` of the remote log from byte ``start``, across dropped connections."""
        state = _State(offset=start, backlog_end=self._backlog_size)
        for item in self._items("follow", stop, state):
            yield from _chunks(item, state, self)

    def explain(self, exc: OSError) -> str:
        where = self.params.where
        quoted = self.path
        if exc.errno == errno.EPERM:
            return (f"the reader {self.params.reader or ''} on {where} may not read {quoted}: it"
                    " reads only the logs its ALLOWED line names; add a pattern for it there")
        if isinstance(exc, PermissionError):
            if self.params.priv == "none":
                return (
                    f"cannot read {quoted} on {where}: permission denied; set priv = \"sudo\""
                    " (or --remote-priv sudo) for a login with passwordless sudo, or grant read"
                    f" access on the host: setfacl -m u:{self.params.user or 'USER'}:r {quoted}"
                )
            return f"cannot read {quoted} on {where}: permission denied even through {self.params.priv}"
        if isinstance(exc, FileNotFoundError):
            return (f"{quoted} does not exist on {where}: is the VM running, with a TPM, and its"
                    " swtpm logging (see `ps aux | grep swtpm` there)?")
        if isinstance(exc, IsADirectoryError):
            return f"{quoted} on {where} is a directory, not an swtpm log"
        return f"cannot read {quoted} on {where}: {exc.strerror or exc}"

    def close(self) -> None:
        """Close the connection and the private event loop (also done when a read ends)."""
        runner, self._runner = self._runner, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.drop()
        if runner is not None:
            runner.close()

    # -- items over (re)connections ------------------------------------------

    def _items(self, mode: Mode, stop: threading.Event, state: _State, *,
               end: int | None = None, reconnect: bool = True) -> Iterator[Item]:
        if self._runner is None:
            self._runner = Runner()
        runner = self._runner
        if self._reader is None:
            self._reader = Reader(self.params, self.path, self.label)
        reader = self._reader

        def start(first: bool) -> None:
            args = {"offset": state.offset, "inode": state.inode, "guard": state.guard,
                    "end": end}
            runner.run(reader.start(mode, args, first=first, wake=self.wake), stop)

        try:
            start(True)
            failures = 0
            while True:
                try:
                    items = runner.run(reader.items(), stop)
                except Dropped as exc:
                    if not reconnect:
                        raise UserError(f"{self.label}: the SSH connection dropped ({exc})") from None
                    log.info("%s: %s; reconnecting at offset %d", self.label, exc, state.offset)
                    reader.drop()
                    if mode == "follow" and state.down is None:
                        state.down = _Down(time.time(), str(exc), state.offset, state.lines)
                        yield LINK_DOWN
                    while True:
                        wait = self.backoff_s[min(failures, len(self.backoff_s) - 1)]
                        failures += 1
                        if wait and stop.wait(wait):
                            return
                        try:
                            start(False)
                            break
                        except Dropped as again:
                            log.info("%s: reconnect failed: %s", self.label, again)
                            reader.drop()
                    self.reconnects += 1
                    continue
                failures = 0
                for item in items:
                    if isinstance(item, Header):
                        if item.kind == "E":
                            raise _oserror(item.fields[0], item.fields[1], self.path)
                        if item.kind == "O" and item.number(2) != state.offset:
                            raise _Misbehaved(
                                f"{self.label}: the remote reader opened the log at byte"
                                f" {item.number(2)}, not at {state.offset} as asked: capture stopped")
                        yield item
                        if item.kind in ("X", "B"):
                            return
                    else:  # the consumer moves state.offset on as it hands the bytes on
                        yield item
                if stop.is_set():
                    return
        except Stopped:
            return
        finally:
            reader.close()
            if mode != "stat" or stop.is_set():
                self.close()


#: one piece of NULs handed on again and again (a run of NULs allocates nothing)
_ZEROS = bytes(PIECE)


def _pieces(item: bytes | Zeros) -> Iterator[bytes]:
    if isinstance(item, Zeros):
        left = item.count
        while left:
            n = min(left, PIECE)
            yield _ZEROS if n == PIECE else _ZEROS[:n]
            left -= n
    elif item:
        yield item


def _advance(state: _State, data: bytes) -> None:
    state.offset += len(data)
    state.lines += data.count(b"\n")
    if len(data) >= GUARD_SIZE:
        state.guard = data[-GUARD_SIZE:]
    else:
        state.guard = (state.guard + data)[-GUARD_SIZE:]


def _oserror(code: str, text: str, path: str) -> OSError:
    kinds: dict[str, Any] = {"ENOENT": FileNotFoundError, "EACCES": PermissionError,
                             "EISDIR": IsADirectoryError, "EPERM": OSError}
    number = getattr(errno, code, errno.EIO)
    return kinds.get(code, OSError)(number, text, path)  # type: ignore[no-any-return]


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _gap_back(state: _State, source: SSHSource, how: str) -> Gap:
    """The link is back: how long it was down, and what the reader found."""
    down = state.down
    assert down is not None
    state.down = None
    now = time.time()
    return Gap(f"swtpm-extcap: the SSH link to {source.params.where} is back at {_clock(now)},"
               f" down {now - down.since:.0f} s since {_clock(down.since)}: {how}")


def _chunks(item: Item, state: _State, source: SSHSource) -> Iterator[Chunk]:
    """One follow item as chunks, notices and gaps, in order (the offset already moved)."""
    if not isinstance(item, Header):
        for data in _pieces(item):
            yield from _data(data, state)
        return
    kind = item.kind
    if item is LINK_DOWN:
        down = state.down
        assert down is not None
        yield Gap(f"swtpm-extcap: the SSH link to {source.params.where} went down at"
                  f" {_clock(down.since)} ({down.reason}); reconnecting. The capture goes on"
                  f" after byte {down.offset} of the log (line {down.lines}) when it is back")
        return
    if state.down is not None:
        path = source.path
        if kind == "O":
            yield _gap_back(state, source, f"resumed at byte {state.offset} of the same log;"
                            " nothing lost")
        elif kind == "Q":
            yield _gap_back(state, source, f"the log was rotated meanwhile; the rest of the"
                            f" old file is read from {path}{ROTATED[item.number(0)]} from byte"
                            f" {state.offset}; nothing lost")
        elif kind == "G":
            copies = ", ".join(path + s for s in ROTATED)
            yield _gap_back(state, source, f"the log was rotated or truncated meanwhile and no"
                            f" rotated copy holds it ({copies}): what swtpm wrote to the old file"
                            f" after byte {item.number(0)} (after log line {state.lines}),"
                            f" from {_clock(state.down.since)} until the switch, may be missing")
        elif kind in ("W", "C", "T", "N"):
            yield _gap_back(state, source, {"W": f"{path} is gone; waiting for it",
                                            "C": "the log was re-created meanwhile",
                                            "T": "the log was truncated meanwhile",
                                            "N": "the log appeared meanwhile"}[kind])
    if kind == "O":
        state.inode, size = item.fields[0], item.number(1)
        state.had_file = True
        if state.backlog_end is None:
            state.backlog_end = size
        if not state.backlog_done and state.offset >= state.backlog_end:
            state.backlog_done = True
            yield Notice.BACKLOG_DONE
        return
    if kind == "Q":
        state.inode = item.fields[1]
        state.had_file = True
        return
    if kind == "W":
        if not state.backlog_done:
            state.backlog_done = True
            yield Notice.BACKLOG_DONE
        return
    if kind in ("T", "R", "C", "N"):
        if not state.ended_nl:
            state.ended_nl = True
            yield b"\n"
        if not state.backlog_done:
            state.backlog_done = True
            yield Notice.BACKLOG_DONE
        state.offset = 0
        state.guard = b""
        if kind == "T":
            yield Notice.TRUNCATED
            return
        notice = {"R": Notice.ROTATED, "C": Notice.RECREATED, "N": Notice.RECREATED}[kind]
        if kind != "N" or state.had_file:
            yield notice
        state.inode = item.fields[0]
        state.had_file = True


def _data(data: bytes, state: _State) -> Iterator[Chunk]:
    """Log bytes, with BACKLOG_DONE right where the backlog ends."""
    before = state.offset
    _advance(state, data)
    if not state.backlog_done and state.backlog_end is not None:
        cut = state.backlog_end - before
        if cut <= 0:
            state.backlog_done = True
            yield Notice.BACKLOG_DONE
        elif cut < len(data):
            yield data[:cut]
            state.backlog_done = True
            yield Notice.BACKLOG_DONE
            data = data[cut:]
    state.ended_nl = data.endswith(b"\n")
    yield data
    if not state.backlog_done and state.backlog_end is not None and state.offset >= state.backlog_end:
        state.backlog_done = True
        yield Notice.BACKLOG_DONE
