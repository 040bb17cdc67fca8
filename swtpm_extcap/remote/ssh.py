"""The SSH layer's vocabulary: connection parameters, the remote command line, one-line errors.

Built on asyncssh (imported lazily: the interface listing must not pay its
~0.4 s import when no remote host is configured, nor when the cache answers).
:class:`SSHParams` says where and how to log in (``None``: as ``~/.ssh/config``
says); :func:`swtpm_extcap.remote.connect.connect` opens the connection.

Host keys: an unknown or changed key is refused (``host_keys="strict"``, the
default) with one line that says how to trust it; ``"accept-new"`` adds an
unknown key to known_hosts (OpenSSH's ``StrictHostKeyChecking accept-new``)
and still refuses a changed one (:mod:`.host_keys`: by the name the user gave).

Secrets: a password or key passphrase lives only in :class:`SSHParams`
(left out of its ``repr``) and is handed to asyncssh in-process: never on a
command line, in a log, on stderr or in an exception message.

:class:`Runner` drives the async code from synchronous callers (the capture
engine is synchronous) on a private event loop, watching a stop Event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..errors import UserError

if TYPE_CHECKING:  # imported where they are used: a warm listing imports as little as it can
    import asyncio
    import logging
    import threading

Priv = Literal["none", "sudo", "doas"]
HostKeyPolicy = Literal["strict", "accept-new"]

PRIVS: tuple[Priv, ...] = ("none", "sudo", "doas")
HOST_KEY_POLICIES: tuple[HostKeyPolicy, ...] = ("strict", "accept-new")

DEFAULT_PORT = 22
#: seconds for TCP connect + SSH handshake + authentication
CONNECT_TIMEOUT = 10.0
#: keepalive: a connection that answers none of 3 probes 5 s apart is dead
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
#: how often a wait for the remote side looks at the stop Event
STOP_POLL_S = 0.05



def _log() -> logging.Logger:
    import logging

    return logging.getLogger("swtpm_extcap.remote.ssh")

T = TypeVar("T")


@dataclass(frozen=True)
class SSHParams:
    """Where and how to log in; ``None`` means "as ``~/.ssh/config`` or the default says"."""

    host: str
    port: int | None = None
    user: str | None = None
    #: a private key file (``--sshkey``); None: IdentityFile of the config, ~/.ssh/id_*, the agent
    identity: str | None = None
    password: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    #: run remote commands through ``sudo -n`` / ``doas -n`` (logs only root can read)
    priv: Priv = "none"
    host_keys: HostKeyPolicy = "strict"
    #: a known_hosts file instead of ~/.ssh/known_hosts (and the config's UserKnownHostsFile)
    known_hosts: str | None = None
    #: an OpenSSH client config instead of ~/.ssh/config
    ssh_config: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    #: run this to reach the host (sshdump's --proxycommand; %h %p as in OpenSSH)
    proxy_command: str | None = None
    #: an installed reader to run (through priv) instead of ``sh -s`` with the script:
    #: the fixed command a sudoers line allows (sources/ssh_script.installed_reader)
    reader: str | None = None
    #: an open connection to reach the host through (a ProxyJump hop; not a setting)
    tunnel: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise UserError(f"SSH host {self.host!r}: give a host name, an address or an alias"
                            " from ~/.ssh/config")
        if self.port is not None and not 0 < self.port < 65536:
            raise UserError(f"SSH port {self.port}: give a number from 1 to 65535")
        if self.priv not in PRIVS:
            raise UserError(f"priv {self.priv!r} is not one of: {', '.join(PRIVS)}")
        if self.proxy_command is not None:
            import shlex

            try:
                if not shlex.split(self.proxy_command):
                    raise ValueError("empty")
            except ValueError as exc:
                raise UserError(f"ProxyCommand {self.proxy_command!r}: {exc}; give a command"
                                " such as: nc %h %p") from None
        if self.reader is not None and (not self.reader.startswith("/")
                                        or any(c.isspace() for c in self.reader)):
            raise UserError(f"reader {self.reader!r}: give the absolute path of the installed"
                            " reader on the host, e.g. /usr/local/sbin/swtpm-extcap-reader")
        if self.host_keys not in HOST_KEY_POLICIES:
            raise UserError(
                f"host key policy {self.host_keys!r} is not one of: {', '.join(HOST_KEY_POLICIES)}")

    @property
    def where(self) -> str:
        """``user@host:port`` as given (for messages)."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


def wrap_priv(priv: Priv, argv: list[str]) -> str:
    """The remote command line for ``argv``, every word quoted, run through sudo/doas -n."""
    words = {"none": [], "sudo": ["sudo", "-n", "--"], "doas": ["doas", "-n", "--"]}[priv] + argv
    import shlex

    return " ".join(shlex.quote(w) for w in words)


def priv_refused(priv: Priv, stderr: str, where: str) -> UserError | None:
    """The one line for a ``sudo -n``/``doas -n`` that would not run our command, else None."""
    if priv == "none":
        return None
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    if not first:
        return None
    low = first.lower()
    tool = priv
    if f"{tool}: not found" in low or "command not found" in low and tool in low:
        return UserError(f"{where}: {tool} is not installed there; install it, or use priv = \"none\""
                         " and grant read access to the logs (setfacl -m u:USER:r LOG)")
    if low.startswith(f"{tool}:") or "sudoers" in low or "may not run sudo" in low:
        return UserError(
            f"{where}: {tool} -n refused to run the reader ({first}); allow it without a"
            " password: install the restricted reader and a sudoers line for it alone (remote.md:"
            " 'USER ALL=(root) NOPASSWD: /usr/local/sbin/swtpm-extcap-reader', reader = that"
            " path), or use priv = \"none\" and grant read access to the logs (setfacl -m u:USER:r LOG)"
        )
    return None


# ----------------------------------------------------------------- connecting


class ConnectError(UserError):
    """:func:`connect` failed; ``transient``: the host was away (worth retrying after a drop),
    not refusing us (host key, login, key file, config)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def quiet_asyncssh() -> None:
    """asyncssh logs go nowhere (stderr is Wireshark's error dialog)."""
    import logging

    logger = logging.getLogger("asyncssh")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logger.setLevel(logging.WARNING)


def require_asyncssh() -> None:
    """:class:`UserError` with the fix when asyncssh is not installed."""
    try:
        import asyncssh  # noqa: F401
    except ImportError:
        import sys

        raise UserError(
            "SSH needs the asyncssh package: "
            f"{sys.executable} -m pip install asyncssh bcrypt"
        ) from None


# ------------------------------------------------------ driving async from sync


class Stopped(Exception):
    """The stop Event was set while waiting for the remote side."""


class Runner:
    """A private event loop that synchronous code drives, one coroutine at a time."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._unhandled)

    @staticmethod
    def _unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        _log().debug("asyncio: %s", context.get("message"), exc_info=context.get("exception"))

    def run(self, coro: Coroutine[Any, Any, T], stop: threading.Event | None = None) -> T:
        """Run ``coro`` to its end; with ``stop``, cancel it and raise :class:`Stopped` once set."""
        if stop is None:
            return self.loop.run_until_complete(coro)
        return self.loop.run_until_complete(_until_stop(coro, stop))

    def close(self) -> None:
        import asyncio

        loop = self.loop
        if loop.is_closed():
            return
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _until_stop(coro: Awaitable[T], stop: threading.Event) -> T:
    import asyncio

    task = asyncio.ensure_future(coro)
    while True:
        done, _ = await asyncio.wait({task}, timeout=STOP_POLL_S)
        if done:
            return task.result()
        if stop.is_set():
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - whatever it ended with, we stop
                pass
            raise Stopped
