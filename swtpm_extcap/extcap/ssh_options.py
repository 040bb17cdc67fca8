"""``swtpm-ssh``: the generic remote interface, set up in Wireshark's options dialog like sshdump.

The option names and types are sshdump's (``extcap/sshdump.c``), so a user of
Wireshark's own SSH capture finds the same fields: ``--remote-host``,
``--remote-port``, ``--proxycommand``, ``--remote-username``, ``--remote-password``
(type password), ``--sshkey`` (a file), ``--sshkey-passphrase`` (password),
``--remote-priv`` (none, sudo, doas); plus ``--remote-reader`` (an installed
restricted reader for sudo) and ``--remote-log``: a Proxmox VM id
(``103``: ``/run/qemu-server/103-swtpm.log``), a libvirt domain name
(``/var/log/swtpm/libvirt/qemu/<domain>-swtpm.log``) or an absolute path.

Empty fields fall back to ``~/.ssh/config`` (an alias in the host field works,
with its User, Port, IdentityFile and ProxyJump), then to the defaults.
:func:`ssh_target` checks every value before any connection is opened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import UsageError, UserError
from ..interfaces.remote import SSH_INTERFACE as INTERFACE
from ..places import LIBVIRT_DIR, PROXMOX_DIR
from .dialog import Choice, Option

if TYPE_CHECKING:  # the listing reads the declarations only: swtpm_extcap.remote.ssh waits for a capture
    from ..remote.ssh import Priv, SSHParams


SSH_OPTIONS: tuple[Option, ...] = (
    Option(
        "--remote-host", "Remote SSH server address", "string",
        "The remote SSH host: an IP address, a host name or an alias from ~/.ssh/config",
        "Server",
    ),
    Option(
        "--remote-port", "Remote SSH server port", "unsigned",
        "The remote SSH host port (1-65535); 0: as ~/.ssh/config says, else 22",
        "Server", "0", range=(0, 65535),
    ),
    Option(
        "--proxycommand", "ProxyCommand", "string",
        "A command that connects to the SSH server on its stdin and stdout, e.g. nc %h %p"
        " (%h: the host, %p: the port); empty: as ~/.ssh/config says", "Server",
    ),
    Option(
        "--remote-username", "Remote SSH server username", "string",
        "The remote SSH username. If not provided, ~/.ssh/config's User or the current user",
        "Authentication",
    ),
    Option(
        "--remote-password", "Remote SSH server password", "password",
        "The SSH password, used when other methods (SSH agent or key files) are unavailable",
        "Authentication",
    ),
    Option(
        "--sshkey", "Path to SSH private key", "fileselect",
        "The path on the local filesystem of the private SSH key (OpenSSH format)",
        "Authentication", extra="{mustexist=true}",
    ),
    Option(
        "--sshkey-passphrase", "SSH key passphrase", "password",
        "Passphrase to unlock the SSH private key", "Authentication",
    ),
    Option(
        "--remote-priv", "Read the log as root", "radio",
        "Run the remote reader through sudo -n or doas -n (logs only root can read, as on"
        " Proxmox); needs passwordless sudo/doas for the login", "Capture", "none",
        (Choice("none", "none"), Choice("sudo", "sudo"), Choice("doas", "doas")),
    ),
    Option(
        "--remote-reader", "Installed reader", "string",
        "The absolute path of the restricted reader installed on the host"
        " (/usr/local/sbin/swtpm-extcap-reader): sudo then runs only it, not a shell;"
        " empty: the reader travels as a script to sh", "Capture",
    ),
    Option(
        "--remote-log", "Remote swtpm log", "string",
        "A Proxmox VM id (103), a libvirt domain name, or the absolute path of an swtpm log"
        " on the remote host", "Capture",
    ),
)

_VMID = re.compile(r"[0-9]+")


def remote_log_path(text: str) -> str:
    """``103`` -> the Proxmox log, ``/x`` -> itself, ``web1`` -> the libvirt log."""
    if _VMID.fullmatch(text):
        return f"{PROXMOX_DIR}/{text}-swtpm.log"
    if text.startswith("/"):
        return text
    if "/" in text or text in (".", ".."):
        raise UsageError(f"--remote-log {text!r}: give a Proxmox VM id, a libvirt domain name or"
                         " an absolute path")
    return f"{LIBVIRT_DIR}/{text}-swtpm.log"


def ssh_target(values: Mapping[str, str | None]) -> tuple[SSHParams, str]:
    """The checked options of a ``swtpm-ssh`` capture: how to connect, which log."""
    def get(call: str) -> str:
        return (values.get(call) or "").strip() if call != "--remote-password" else (
            values.get(call) or "")

    host = get("--remote-host")
    if not host:
        raise UsageError(f"{INTERFACE} needs the remote host: set 'Remote SSH server address' in"
                         " the interface's options (--remote-host)")
    log = get("--remote-log")
    if not log:
        raise UsageError(f"{INTERFACE} needs the log: set 'Remote swtpm log' in the interface's"
                         " options (--remote-log: a VM id, a libvirt domain or a path)")
    port_text = get("--remote-port") or "0"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UsageError(f"--remote-port {port_text!r}: give a port number from 1 to 65535")
    priv = get("--remote-priv") or "none"
    privs = [c.value for o in SSH_OPTIONS if o.call == "--remote-priv" for c in o.choices]
    if priv not in privs:
        raise UsageError(f"--remote-priv {priv!r} is not one of: {', '.join(privs)}")
    sshkey = get("--sshkey")
    from ..remote.ssh import SSHParams

    try:
        params = SSHParams(
            host=host,
            port=port or None,
            user=get("--remote-username") or None,
            identity=sshkey or None,
            password=get("--remote-password") or None,
            passphrase=values.get("--sshkey-passphrase") or None,
            priv=_priv(priv),
            proxy_command=get("--proxycommand") or None,
            reader=get("--remote-reader") or None,
        )
    except UserError as exc:
        raise UsageError(str(exc)) from None
    return params, remote_log_path(log)


def _priv(text: str) -> Priv:
    return "sudo" if text == "sudo" else "doas" if text == "doas" else "none"
