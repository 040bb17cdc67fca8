"""One start of the remote reader on an SSH connection: the process, its hello, its items.

:class:`Reader` starts ``sh -s`` (through ``sudo -n``/``doas -n`` when asked)
with the reader script of :mod:`.ssh_script` on its stdin, waits for the
reader's hello (:mod:`.ssh_protocol`: what the login prints before it is
skipped), then hands on checked items, one channel read at a time. Every wait
has a timeout: the hello within the connect timeout, then some frame (a
heartbeat at least) within :data:`DEAD_AFTER_S`. stderr is drained in the
background and only its start is kept (for sudo's refusal), so a host that
floods it costs no memory and cannot stall stdout.

Failures: the connection or the reader went away (:class:`Dropped`: the caller
reconnects), the host refused us (:class:`~swtpm_extcap.errors.UserError`,
one line), the host sent what the reader never sends (:class:`Misbehaved`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..errors import UserError
from ..remote.connect import connect, connect_error
from ..remote.ssh import ConnectError, SSHParams, priv_refused, wrap_priv
from .ssh_protocol import FrameDecoder, Item, ProtocolError, new_token
from .ssh_script import MAX_FRAME, SCRIPT, Mode, Wake, script_args

if TYPE_CHECKING:
    import asyncssh

log = logging.getLogger("swtpm_extcap.remote.ssh")

#: the reader sends a heartbeat every HEARTBEAT_S when idle; silence this long = dead
HEARTBEAT_S = 2
DEAD_AFTER_S = 10.0
#: bytes asked of the channel at once
READ_SIZE = 1 << 16
#: bytes of the reader's stderr kept (the rest is read and dropped)
STDERR_KEEP = 4096
#: how to silence a login that prints (said when its text hides the reader)
QUIET_LOGIN = ("make the login quiet for commands: print in ~/.bashrc or ~/.profile only when"
               " interactive (case $- in *i*) ...;; esac), and no output from a ForceCommand")


class Dropped(Exception):
    """The connection or the remote reader went away: reconnect and resume."""


class Misbehaved(UserError):
    """The host sent something the reader never sends: stop, with one line."""


class Reader:
    """One remote reader process; :meth:`start` it, then :meth:`items` until it ends."""

    def __init__(self, params: SSHParams, path: str, label: str) -> None:
        self.params = params
        self.path = path
        self.label = label
        self.conn: asyncssh.SSHClientConnection | None = None
        self.proc: asyncssh.SSHClientProcess[bytes] | None = None
        self.decoder: FrameDecoder | None = None
        self.stderr = b""
        self._err_task: asyncio.Task[None] | None = None
        self._pending: list[Item] = []

    async def connection(self, first: bool) -> asyncssh.SSHClientConnection:
        """The open connection, or a new one (a transient failure after the first is a drop)."""
        if self.conn is not None and not _closed(self.conn):
            return self.conn
        self.conn = None
        try:
            self.conn = await connect(self.params)
        except ConnectError as exc:
            if first or not exc.transient:
                raise
            raise Dropped(str(exc)) from None
        return self.conn

    async def start(self, mode: Mode, args: dict[str, object], *, first: bool,
                    wake: Wake) -> None:
        """Start the reader; returns once its hello came (the items after it are kept)."""
        import asyncssh

        params = self.params
        conn = await self.connection(first)
        token = new_token()
        words = script_args(mode, self.path, token, heartbeat_s=HEARTBEAT_S, wake=wake,
                            **args)  # type: ignore[arg-type]
        if params.reader:  # an installed reader (sudoers allows only it): no script to send
            command = wrap_priv(params.priv, [params.reader, *words])
        else:
            command = wrap_priv(params.priv, ["sh", "-s", "--", *words])
        try:
            proc = await asyncio.wait_for(conn.create_process(command, encoding=None),
                                          params.connect_timeout)
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            if first:
                raise connect_error(params, exc) from None
            raise Dropped(f"cannot start the reader: {exc or type(exc).__name__}") from None
        self.proc = proc
        self.stderr = b""
        self._err_task = asyncio.ensure_future(self._drain_stderr(proc))
        self.decoder = decoder = FrameDecoder(token, max_frame=MAX_FRAME)
        if not params.reader:
            proc.stdin.write(SCRIPT.encode())
        proc.stdin.write_eof()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.connect_timeout
        while not decoder.greeted:
            left = deadline - loop.time()
            try:
                chunk = await asyncio.wait_for(proc.stdout.read(READ_SIZE), max(0.0, left))
            except asyncio.TimeoutError:
                raise self._silent(first, decoder.chatter, timed_out=True) from None
            except (asyncssh.Error, OSError) as exc:
                raise Dropped(f"the reader went away: {exc or type(exc).__name__}") from None
            if not chunk:
                raise await self._ended(first, decoder.chatter)
            try:
                self._pending = decoder.feed(chunk)
            except ProtocolError as exc:
                raise (self._misbehaved(exc) if decoder.greeted else self._chatter(str(exc))) from None
        if decoder.preamble:
            log.info("%s: skipped %d bytes the login printed before the reader",
                     self.label, len(decoder.preamble))

    async def items(self) -> list[Item]:
        """The next checked items (at least one); :class:`Dropped` when the reader is gone."""
        import asyncssh

        if self._pending:
            out, self._pending = self._pending, []
            return out
        proc, decoder = self.proc, self.decoder
        if proc is None or decoder is None:
            raise Dropped("no reader")
        while True:
            try:
                chunk = await asyncio.wait_for(proc.stdout.read(READ_SIZE), DEAD_AFTER_S)
            except asyncio.TimeoutError:
                raise Dropped(f"no frame for {DEAD_AFTER_S:g} s") from None
            except (asyncssh.Error, OSError) as exc:
                raise Dropped(str(exc) or type(exc).__name__) from None
            if not chunk:
                raise Dropped("the connection closed inside a frame" if decoder.in_frame
                              else "the connection closed")
            try:
                out = decoder.feed(chunk)
            except ProtocolError as exc:
                raise self._misbehaved(exc) from None
            if out:
                return out

    async def _drain_stderr(self, proc: asyncssh.SSHClientProcess[bytes]) -> None:
        try:
            while True:
                chunk = await proc.stderr.read(READ_SIZE)
                if not chunk:
                    return
                if len(self.stderr) < STDERR_KEEP:
                    self.stderr = (self.stderr + chunk)[:STDERR_KEEP]
        except Exception:  # noqa: BLE001 - the channel went away: nothing more to keep
            return

    async def _ended(self, first: bool, preamble: bytes) -> Exception:
        """The reader's stdout ended before its hello: sudo refused, no sh, a ForceCommand."""
        if self._err_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._err_task), 2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - keep what came
                pass
        text = self.stderr.decode("utf-8", "replace")
        refused = priv_refused(self.params.priv, text, self.params.where)
        if refused is not None:
            return refused
        if not preamble and not text.strip() and not first:
            return Dropped("the reader ended before it started")
        return self._silent(first, preamble, timed_out=False, stderr=text)

    def _silent(self, first: bool, preamble: bytes, *, timed_out: bool,
                stderr: str = "") -> Exception:
        said = _first_line(preamble.decode("utf-8", "replace"))
        err = _first_line(stderr)
        if timed_out and not said and not first:
            return Dropped(f"no answer from the reader within {self.params.connect_timeout:g} s")
        if said:
            return UserError(
                f"{self.label}: the login printed {said!r} and the reader did not start"
                f"{' within ' + format(self.params.connect_timeout, 'g') + ' s' if timed_out else ''}"
                f"{' (' + err + ')' if err else ''}; {QUIET_LOGIN}")
        reader = self.params.reader
        if reader:
            return UserError(
                f"{self.label}: the installed reader {reader} did not start"
                f"{': ' + err if err else ''}; is it there, executable, and of this version?"
                " Install it again: python3 -m swtpm_extcap.sources.ssh_script > swtpm-extcap-reader"
                " (remote.md)")
        if timed_out:
            return UserError(f"{self.label}: the remote reader did not answer within"
                             f" {self.params.connect_timeout:g} s")
        return UserError(
            f"{self.label}: the remote reader could not start{': ' + err if err else ''}"
            " (the host needs a POSIX sh with stat, dd, tail, head: Linux with GNU coreutils"
            " or BusyBox)")

    def _misbehaved(self, exc: ProtocolError) -> Misbehaved:
        return Misbehaved(f"{self.label}: the remote reader sent {exc}; the host runs something"
                          " else than this version's reader (a ForceCommand?), or misbehaves:"
                          " capture stopped")

    def _chatter(self, detail: str) -> UserError:
        return UserError(f"{self.label}: the login prints too much before the reader starts"
                         f" ({detail}); {QUIET_LOGIN}")

    def close(self) -> None:
        """End the reader process (the connection stays for the next start)."""
        task, self._err_task = self._err_task, None
        if task is not None:
            task.cancel()
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(Exception):  # the channel may be gone already
                proc.close()

    def drop(self) -> None:
        """Abort the connection (after a drop: the next start connects anew)."""
        self.close()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()


def _closed(conn: asyncssh.SSHClientConnection) -> bool:
    """Is the connection closed? (asyncssh 2.14 has no is_closed: then a start on a
    closed one fails, and the drop that follows connects anew)."""
    is_closed = getattr(conn, "is_closed", None)
    return bool(is_closed()) if is_closed is not None else False


def _first_line(text: str) -> str:
    """The first non-empty line, printable, at most 80 characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line[:77] + "..." if len(line) > 80 else line
