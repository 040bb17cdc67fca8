"""A log on an SSH host as a :class:`~swtpm_extcap.sources.base.Source`.

The remote side is the sh reader of :mod:`.ssh_script` (nothing installed on
the host); this side parses its frames and keeps the follow state: the inode
being read, the byte offset in it, the last bytes before the offset (guard),
whether the backlog is done, whether the last byte yielded ended a line.

A dropped connection (sshd killed, network gone, a silent channel: no frame for
:data:`DEAD_AFTER_S`) is followed by reconnects with backoff
(:data:`BACKOFF_S`, forever, until ``stop``); the reader restarts at the exact
offset of the last *complete* frame, so no byte is lost or yielded twice. A
data frame is yielded only once its trailer arrived. What cannot be retried
(the host key changed, the login or sudo refused, the log unreadable) ends the
follow with one line.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..remote.ssh import (
    ConnectError,
    Runner,
    SSHParams,
    Stopped,
    connect,
    connect_error,
    priv_refused,
    wrap_priv,
)
from .base import Backlog, Chunk, Notice
from .ssh_script import GUARD_SIZE, PROTOCOL, SCRIPT, Frame, Mode, parse_header, script_args

if TYPE_CHECKING:
    import asyncssh

log = logging.getLogger("swtpm_extcap.remote.ssh")

#: waits before reconnect attempts 1, 2, ... (the last one repeats)
BACKOFF_S = (0.0, 0.2, 0.5, 1.0, 2.0, 5.0)
#: the reader sends a heartbeat every HEARTBEAT_S when idle; silence this long = dead
HEARTBEAT_S = 2.0
DEAD_AFTER_S = 10.0
#: how often the remote reader looks at an idle log
POLL_S = 0.1
#: most bytes of a data frame handed on at once
PIECE = 1 << 20


class _Dropped(Exception):
    """The connection or the remote reader went away: reconnect and resume."""


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
    pending: list[Chunk] = field(default_factory=list)


class SSHSource:
    """One swtpm log on an SSH host; see :class:`~swtpm_extcap.sources.base.Source`."""

    def __init__(self, params: SSHParams, path: str, *, poll_s: float = POLL_S,
                 backoff_s: tuple[float, ...] = BACKOFF_S) -> None:
        self.params = params
        self.path = path
        self.label = f"{params.where}:{path}"
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.reconnects = 0  # dropped connections resumed (tests, benchmarks)
        self._runner: Runner | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        #: the size backlog() saw: follow's BACKLOG_DONE comes right after it (as for a local file)
        self._backlog_size: int | None = None

    # -- the Source interface ------------------------------------------------

    def backlog(self) -> Backlog:
        """Size and mtime of the remote log (0, None if it does not exist yet)."""
        stop = threading.Event()
        try:
            frames = self._frames("stat", stop, _State(), reconnect=False)
            for frame in frames:
                if frame.kind == "B":
                    self._backlog_size = int(frame.fields[0])
                    return Backlog(self._backlog_size, float(frame.fields[1]))
        except FileNotFoundError:
            self._backlog_size = 0
            return Backlog(0, None)
        except OSError as exc:
            raise UserError(self.explain(exc)) from None
        raise UserError(f"{self.label}: the remote reader ended without an answer")

    def read(self, stop: threading.Event, start: int = 0, end: int | None = None
             ) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of the remote log, resuming after drops."""
        state = _State(offset=start)
        for frame in self._frames("read", stop, state, end=end):
            if frame.kind == "D" and frame.data:
                yield frame.data
            elif frame.kind in ("X", "T", "R", "C"):  # the end, or the file changed under us
                return

    def follow(self, stop: threading.Event, start: int = 0) -> Iterator[Chunk]:
        """``tail -F`` of the remote log from byte ``start``, across dropped connections."""
        state = _State(offset=start, backlog_end=self._backlog_size)
        for frame in self._frames("follow", stop, state):
            yield from _chunks(frame, state)

    def explain(self, exc: OSError) -> str:
        where = self.params.where
        quoted = self.path
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
        if runner is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
        runner.close()

    # -- frames over (re)connections -----------------------------------------

    def _frames(self, mode: Mode, stop: threading.Event, state: _State, *,
                end: int | None = None, reconnect: bool = True) -> Iterator[Frame]:
        if self._runner is None:
            self._runner = Runner()
        runner = self._runner
        reader = _Reader(self, mode, state, end)
        try:
            runner.run(reader.start(first=True), stop)
            failures = 0
            while True:
                try:
                    frame = runner.run(reader.next_frame(), stop)
                except _Dropped as exc:
                    if not reconnect:
                        raise UserError(f"{self.label}: the SSH connection dropped ({exc})") from None
                    log.info("%s: %s; reconnecting at offset %d", self.label, exc, state.offset)
                    self._drop()
                    reader.close()
                    while True:
                        wait = self.backoff_s[min(failures, len(self.backoff_s) - 1)]
                        failures += 1
                        if wait and stop.wait(wait):
                            return
                        try:
                            runner.run(reader.start(first=False), stop)
                            break
                        except _Dropped as again:
                            log.info("%s: reconnect failed: %s", self.label, again)
                            self._drop()
                    self.reconnects += 1
                    continue
                failures = 0
                yield frame
                if frame.kind in ("X", "B"):
                    return
                if stop.is_set():
                    return
        except Stopped:
            return
        finally:
            reader.close()
            if mode != "stat" or stop.is_set():
                self.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()

    async def connection(self, first: bool) -> asyncssh.SSHClientConnection:
        import asyncssh

        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        try:
            conn = await connect(self.params)
        except ConnectError as exc:
            if first or not exc.transient:
                raise
            raise _Dropped(str(exc)) from None
        except asyncssh.Error as exc:  # pragma: no cover - connect maps these
            raise connect_error(self.params, exc) from None
        self._conn = conn
        return conn


class _Reader:
    """One remote reader process on the current connection; restarted after a drop."""

    def __init__(self, source: SSHSource, mode: Mode, state: _State, end: int | None) -> None:
        self.source = source
        self.mode = mode
        self.state = state
        self.end = end
        self.proc: asyncssh.SSHClientProcess[bytes] | None = None
        # the data frame being read: bytes still to come, its size, bytes handed on, held back
        self.left = 0
        self.size = 0
        self.handed = 0
        self.held = b""

    async def start(self, *, first: bool) -> None:
        import asyncssh

        source = self.source
        params = source.params
        state = self.state
        conn = await source.connection(first)
        args = script_args(
            self.mode, source.path, offset=state.offset, inode=state.inode, guard=state.guard,
            end=self.end, poll=source.poll_s, heartbeat_s=HEARTBEAT_S,
        )
        command = wrap_priv(params.priv, ["sh", "-s", "--", *args])
        try:
            proc = await conn.create_process(command, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            if first:
                raise connect_error(params, exc) from None
            raise _Dropped(f"cannot start the reader: {exc}") from None
        self.proc = proc
        self.left = 0
        proc.stdin.write(SCRIPT.encode())
        proc.stdin.write_eof()
        try:
            hello = await asyncio.wait_for(proc.stdout.readline(), DEAD_AFTER_S)
        except (asyncio.TimeoutError, asyncssh.Error, OSError) as exc:
            raise _Dropped(f"no answer from the reader: {exc or type(exc).__name__}") from None
        if hello == PROTOCOL:
            return
        # sudo/doas (or the shell) refused before the script ran
        try:
            err = await asyncio.wait_for(proc.stderr.read(), 2.0)
        except (asyncio.TimeoutError, asyncssh.Error, OSError):
            err = b""
        text = err.decode("utf-8", "replace")
        refused = priv_refused(params.priv, text, params.where)
        if refused is not None:
            raise refused
        if not hello and not text and not first:
            raise _Dropped("the reader ended before it started")
        first_line = next((ln.strip() for ln in text.splitlines() if ln.strip()), repr(hello[:60]))
        raise UserError(f"{source.label}: the remote reader could not start: {first_line}"
                        " (the host needs a POSIX sh with stat, dd, tail, head: Linux with"
                        " GNU coreutils or BusyBox)")

    async def next_frame(self) -> Frame:
        """The next frame; a data frame comes in pieces of at most :data:`PIECE` bytes.

        A piece holds back its trailing NUL bytes: only they can be padding
        (the file shrank during the read), which the frame's ``V`` trailer
        tells. So every byte handed on is the log's, and a drop inside a frame
        resumes right after the last byte handed on."""
        import asyncssh

        proc = self.proc
        if proc is None:
            raise _Dropped("no reader")
        try:
            if self.left:
                return await self._piece(proc)
            line = await asyncio.wait_for(proc.stdout.readline(), DEAD_AFTER_S)
            if not line:
                raise _Dropped("the connection closed")
            try:
                kind, fields = parse_header(line)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _Dropped(f"garbled frame: {exc}") from None
            if kind == "D":
                self.left = self.size = int(fields[0])
                self.handed = 0
                self.held = b""
                return await self._piece(proc)
        except asyncio.IncompleteReadError:
            raise _Dropped("the connection closed inside a frame") from None
        except asyncio.TimeoutError:
            raise _Dropped(f"no frame for {DEAD_AFTER_S:g} s") from None
        except (asyncssh.Error, OSError) as exc:
            raise _Dropped(str(exc) or type(exc).__name__) from None
        if kind == "E":
            raise _oserror(fields[0], fields[1], self.source.path)
        return Frame(kind, fields)

    async def _piece(self, proc: asyncssh.SSHClientProcess[bytes]) -> Frame:
        want = min(self.left, PIECE)
        piece = await asyncio.wait_for(proc.stdout.readexactly(want), DEAD_AFTER_S)
        self.left -= want
        data = self.held + piece
        if self.left:
            keep = len(data.rstrip(b"\0"))
            data, self.held = data[:keep], data[keep:]
        else:  # the trailer says how much of the frame is the log's
            self.held = b""
            trailer = await asyncio.wait_for(proc.stdout.readline(), DEAD_AFTER_S)
            try:
                tkind, tfields = parse_header(trailer)
            except (ValueError, UnicodeDecodeError):
                tkind, tfields = "", ()
            if tkind != "V":
                raise _Dropped(f"data frame without its trailer: {trailer[:40]!r}")
            data = data[: max(0, int(tfields[0]) - self.handed)]
        self.handed += len(data)
        _advance(self.state, data)
        return Frame("D", (), data)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.close()
            except Exception:  # noqa: BLE001 - the channel may be gone already
                pass


def _advance(state: _State, data: bytes) -> None:
    state.offset += len(data)
    if len(data) >= GUARD_SIZE:
        state.guard = data[-GUARD_SIZE:]
    else:
        state.guard = (state.guard + data)[-GUARD_SIZE:]


def _oserror(code: str, text: str, path: str) -> OSError:
    kinds: dict[str, Any] = {"ENOENT": FileNotFoundError, "EACCES": PermissionError,
                             "EISDIR": IsADirectoryError}
    number = getattr(errno, code, errno.EIO)
    return kinds.get(code, OSError)(number, text, path)  # type: ignore[no-any-return]


def _chunks(frame: Frame, state: _State) -> Iterator[Chunk]:
    """A follow frame as chunks and notices, in order (the state's offset already moved)."""
    kind = frame.kind
    if kind == "D":
        data = frame.data
        if not data:
            return
        if not state.backlog_done and state.backlog_end is not None:
            before = state.offset - len(data)
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
        return
    if kind == "O":
        state.inode, size, offset = frame.fields[0], int(frame.fields[1]), int(frame.fields[2])
        state.had_file = True
        if state.offset != offset:
            state.guard = b""
        state.offset = offset
        if state.backlog_end is None:
            state.backlog_end = size
        if not state.backlog_done and state.offset >= state.backlog_end:
            state.backlog_done = True
            yield Notice.BACKLOG_DONE
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
        state.inode = frame.fields[0]
        state.had_file = True
