"""One ``connect()``: an SSH connection from :class:`~.ssh.SSHParams`, every failure one line.

``~/.ssh/config`` is read first (host aliases, ``User``, ``Port``,
``IdentityFile``, ``ProxyJump``, ``UserKnownHostsFile``), then what the params
set explicitly; the SSH agent is used (``$SSH_AUTH_SOCK``, Pageant or the
OpenSSH agent pipe on Windows). Host keys are checked by name
(:mod:`.host_keys`); ProxyJump hops are opened here, each checked the same
way. Every failure a user can cause (unknown or changed host key, wrong
password, an encrypted key no agent holds, connection refused, timeout) is a
:class:`~.ssh.ConnectError` with one line (:func:`connect_error`), never a secret.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .host_keys import DEFAULT_KNOWN_HOSTS, HostCheck
from .ssh import (
    DEFAULT_PORT,
    KEEPALIVE_COUNT,
    KEEPALIVE_INTERVAL,
    ConnectError,
    SSHParams,
    _log,
    quiet_asyncssh,
    require_asyncssh,
)
from .ssh_config import check_host_ip

if TYPE_CHECKING:
    import asyncssh


#: ProxyJump hops followed at most (a config whose jump host jumps through itself)
MAX_HOPS = 5


async def connect(params: SSHParams, *, _hops: int = 0) -> asyncssh.SSHClientConnection:
    """Open an SSH connection; :class:`UserError` with one line if that fails.

    The host key is checked by name (:mod:`.host_keys`); a ``ProxyJump`` of the
    config is followed here, hop by hop, so that each jump host's key is checked
    the same way."""
    require_asyncssh()
    import asyncssh

    quiet_asyncssh()
    bound_channel_window()
    try:
        check, tunnel = await _prepare(params, _hops)
    except ConnectError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise connect_error(params, exc) from None
    try:
        conn = await _connect(params, check, tunnel)
    except asyncssh.HostKeyNotVerifiable:
        if params.host_keys == "accept-new" and not check.known():
            return await _accept_new(params, check, tunnel)
        raise ConnectError(check.refusal()) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise connect_error(params, exc) from None
    if check.ip_mismatch(conn.get_server_host_key()):
        conn.abort()
        raise ConnectError(check.ip_refusal())
    return conn


async def _prepare(params: SSHParams, hops: int
                   ) -> tuple[HostCheck, asyncssh.SSHClientConnection | None]:
    """The host-key check for ``params`` (after ~/.ssh/config), and the ProxyJump tunnel."""
    import asyncssh

    # config=(): ~/.ssh/config, as asyncssh.connect reads it (construct's own default reads none)
    kwargs: dict[str, Any] = {"host": params.host, "config": (), **_where(params)}
    construct = getattr(asyncssh.SSHClientConnectionOptions, "construct", None)
    if construct is not None:  # asyncssh 2.15 and later: reads the files off the event loop
        options = await construct(**kwargs)
    else:  # pragma: no cover - asyncssh 2.14 (the oldest pyproject.toml allows)
        options = asyncssh.SSHClientConnectionOptions(**kwargs)
    name = str(getattr(options, "host_key_alias", None) or options.host or params.host)
    port = int(options.port or DEFAULT_PORT)
    if params.known_hosts:
        files: tuple[str, ...] = (os.path.expanduser(params.known_hosts),)
    elif isinstance(options.known_hosts, list) and options.known_hosts:
        files = tuple(os.path.expanduser(str(f)) for f in options.known_hosts)
    else:
        files = (os.path.expanduser(DEFAULT_KNOWN_HOSTS),)
    check = HostCheck(name, port, files, check_ip=check_host_ip(params.ssh_config, params.host),
                      given=params.host, config=params.ssh_config)
    tunnel = None
    jump = options.tunnel if isinstance(options.tunnel, str) else ""
    if jump and jump.lower() != "none" and not params.proxy_command:
        if hops >= MAX_HOPS:
            raise ConnectError(f"SSH to {params.where}: more than {MAX_HOPS} ProxyJump hops"
                               " (does the jump host's config entry jump through itself?)")
        for hop in jump.split(","):
            user, _, host = hop.rpartition("@")
            hop_port: int | None = None
            if host.count(":") == 1:
                host, _, port_text = host.partition(":")
                hop_port = int(port_text) if port_text.isdigit() else None
            hop_params = SSHParams(host=host, port=hop_port, user=user or None,
                                   host_keys=params.host_keys, known_hosts=params.known_hosts,
                                   ssh_config=params.ssh_config,
                                   connect_timeout=params.connect_timeout)
            tunnel = await _via(hop_params, tunnel, hops + 1)
    return check, tunnel


async def _via(params: SSHParams, tunnel: asyncssh.SSHClientConnection | None, hops: int
               ) -> asyncssh.SSHClientConnection:
    """One ProxyJump hop (through the previous one)."""
    if tunnel is None:
        return await connect(params, _hops=hops)
    return await connect(replace(params, tunnel=tunnel), _hops=hops)


async def _connect(params: SSHParams, check: HostCheck | None,
                   tunnel: asyncssh.SSHClientConnection | None) -> asyncssh.SSHClientConnection:
    import asyncssh

    kwargs: dict[str, Any] = {
        "connect_timeout": params.connect_timeout,
        "login_timeout": params.connect_timeout,
        "keepalive_interval": KEEPALIVE_INTERVAL,
        "keepalive_count_max": KEEPALIVE_COUNT,
        "known_hosts": check,  # None: no check (accept-new's first contact)
        **_where(params),
    }
    if params.identity:
        kwargs["client_keys"] = [os.path.expanduser(params.identity)]
    if params.passphrase:
        kwargs["passphrase"] = params.passphrase
    if params.password:
        kwargs["password"] = params.password
    if tunnel is not None:
        kwargs["tunnel"] = tunnel
    elif params.tunnel is not None:
        kwargs["tunnel"] = params.tunnel
    conn: asyncssh.SSHClientConnection = await asyncssh.connect(params.host, **kwargs)
    return conn


def _where(params: SSHParams) -> dict[str, Any]:
    """The options that say where and as whom (port, user, the ssh_config file, a
    ProxyCommand): the same for the host-key check and for the connection."""
    kwargs: dict[str, Any] = {}
    if params.port is not None:
        kwargs["port"] = params.port
    if params.user:
        kwargs["username"] = params.user
    if params.ssh_config:
        kwargs["config"] = [os.path.expanduser(params.ssh_config)]
    if params.proxy_command:
        kwargs["proxy_command"] = proxy_words(params.proxy_command, params)
    return kwargs


async def _accept_new(params: SSHParams, check: HostCheck,
                      tunnel: asyncssh.SSHClientConnection | None) -> asyncssh.SSHClientConnection:
    """Trust on first use: connect without checking, then record the key under the name."""
    try:
        conn = await _connect(params, None, tunnel)
    except Exception as exc:  # noqa: BLE001
        raise connect_error(params, exc) from None
    key = conn.get_server_host_key()
    if check.ip_mismatch(key):
        conn.abort()
        raise ConnectError(check.ip_refusal())
    check.remember(key, _log())
    return conn


def proxy_words(command: str, params: SSHParams) -> list[str]:
    """A ProxyCommand as argv (run without a shell), ``%h %p %r %%`` expanded as OpenSSH does."""
    out = []
    for word in shlex.split(command):
        expanded, i = "", 0
        while i < len(word):
            ch = word[i]
            if ch == "%" and i + 1 < len(word):
                token = word[i + 1]
                expanded += {"h": params.host, "p": str(params.port or DEFAULT_PORT),
                             "r": params.user or "", "%": "%"}.get(token, "%" + token)
                i += 2
                continue
            expanded += ch
            i += 1
        out.append(expanded)
    return out


def _encrypted_key(params: SSHParams) -> str | None:
    """The first key a login would try that is encrypted, when no agent can unlock it."""
    if os.environ.get("SSH_AUTH_SOCK") and not params.identity:
        return None  # the agent may hold the others
    import asyncssh

    from .ssh_config import identity_files

    home = os.path.expanduser("~/.ssh")
    candidates = ([os.path.expanduser(params.identity)] if params.identity else
                  identity_files(params.ssh_config, params.host)
                  + [os.path.join(home, n) for n in ("id_ed25519", "id_ecdsa", "id_rsa")])
    for path in candidates:
        if not os.path.isfile(path):
            continue
        try:
            asyncssh.read_private_key(path)
        except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError) as exc:
            if "assphrase" in str(exc) or isinstance(exc, asyncssh.KeyEncryptionError):
                return path
        except (OSError, ValueError):
            continue
    return None


def connect_error(params: SSHParams, exc: BaseException) -> ConnectError:
    """One line for a failed connection (never a secret: asyncssh's texts carry none)."""
    import asyncio

    import asyncssh

    where = params.where
    if isinstance(exc, ConnectError):
        return exc
    if isinstance(exc, UserError):
        return ConnectError(str(exc))
    if isinstance(exc, asyncssh.PermissionDenied):
        locked = None if params.password or params.passphrase else _encrypted_key(params)
        if locked is not None:
            how = (f"the key {locked} is encrypted and no ssh-agent holds it: load it into the"
                   f" agent (ssh-add {shlex.quote(locked)}) or give its passphrase"
                   " (--sshkey-passphrase with --sshkey)")
        elif params.password:
            how = "the password was wrong"
        else:
            how = ("no key was accepted: give the key file (--sshkey / IdentityFile in"
                   " ~/.ssh/config), load it into ssh-agent, or give a password")
        return ConnectError(f"SSH login to {where} refused: {how}")
    if isinstance(exc, (asyncssh.KeyImportError, asyncssh.KeyEncryptionError)):
        key = params.identity or "the key file"
        if "bcrypt" in str(exc):
            return ConnectError(f"cannot use the SSH key {key}: {exc} (pip install bcrypt into"
                             " swtpm-extcap's environment)")
        if params.passphrase:
            return ConnectError(f"cannot use the SSH key {key}: wrong passphrase, or not a private key")
        return ConnectError(f"cannot use the SSH key {key}: {exc} (an encrypted key needs its"
                         " passphrase: --sshkey-passphrase, or load it into ssh-agent)")
    if isinstance(exc, asyncssh.ConfigParseError):
        return ConnectError(f"cannot read the SSH client config: {exc}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ConnectError(f"SSH to {where}: no answer within {params.connect_timeout:g} s"
                         " (host down, or a firewall drops the connection?)", transient=True)
    if isinstance(exc, asyncssh.DisconnectError):
        return ConnectError(f"SSH to {where} failed: {exc.reason or type(exc).__name__}",
                            transient=True)
    if isinstance(exc, OSError):
        import socket

        if isinstance(exc, socket.gaierror):
            return ConnectError(f"SSH to {where}: unknown host {params.host!r} (not in DNS,"
                                " /etc/hosts or ~/.ssh/config)", transient=True)
        if (isinstance(exc, FileNotFoundError) and params.identity
                and not os.path.exists(os.path.expanduser(params.identity))):
            return ConnectError(f"SSH key file {params.identity} does not exist")
        if (isinstance(exc, FileNotFoundError) and params.ssh_config
                and not os.path.exists(os.path.expanduser(params.ssh_config))):
            return ConnectError(f"SSH config file {params.ssh_config} does not exist; give an"
                                " OpenSSH client config (ssh_config), or leave it out")
        import errno

        reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        if exc.errno == errno.ECONNREFUSED:
            reason += " (is sshd running there, on that port?)"
        return ConnectError(f"SSH to {where} failed: {reason or type(exc).__name__}",
                            transient=True)
    return ConnectError(f"SSH to {where} failed: {type(exc).__name__}: {exc}")


def bound_channel_window() -> None:
    """Make asyncssh's flow control hold: received data stays within the channel window.

    asyncssh 2.24 (not 2.14, which counts the window on delivery) re-opens a
    channel's whole receive window when it delivers one buffered packet after a
    pause, although the packets still buffered were counted against that
    window when they arrived: each pause and resume lets
    the sender send another window, so a host that sends faster than we read
    grows our memory without bound (192 MiB of buffered packets after 3 s,
    tests/test_ssh_hostile.py). Credited here is only what was delivered: the
    buffered bytes count as still in the window. Applied once; left alone if
    asyncssh's channel is not what this expects."""
    from asyncssh.channel import SSHChannel

    deliver = getattr(SSHChannel, "_deliver_data", None)
    if deliver is None or getattr(deliver, "_swtpm_bounded", False):
        return
    if not _counts_on_accept(SSHChannel):
        return  # asyncssh 2.14 counts the window on delivery: its flow control holds

    def _deliver_data(self: Any, data: Any, datatype: Any) -> None:
        pending = getattr(self, "_recv_buf", None)
        buffered = sum(len(item[0]) for item in pending) if pending else 0
        if not buffered or not isinstance(getattr(self, "_recv_window", None), int):
            deliver(self, data, datatype)
            return
        self._recv_window += buffered
        try:
            deliver(self, data, datatype)
        finally:
            self._recv_window -= buffered

    _deliver_data._swtpm_bounded = True  # type: ignore[attr-defined]
    SSHChannel._deliver_data = _deliver_data  # type: ignore[method-assign]


def _counts_on_accept(channel: Any) -> bool:
    """Does this asyncssh count received data against the window when it arrives (the
    versions whose resume re-opens the window too early), not when it is delivered?"""
    import inspect

    try:
        return "_recv_window -=" in inspect.getsource(channel._accept_data)
    except (OSError, TypeError, AttributeError):
        return False
