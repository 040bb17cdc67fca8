"""Host keys checked by the name the user gave, as OpenSSH does.

The key of a host is looked up in known_hosts under the name that the
connection resolves to: ``HostKeyAlias`` if the config sets one, else
``HostName`` (an alias of ``~/.ssh/config`` becomes its HostName), as
``[name]:port`` when the port is not 22. A key trusted for the host's IP
address does not make another name trusted (a name missing from known_hosts
is refused even when its address is in it): the address is looked at only
when the config asks for it (``CheckHostIP yes``), and then a key that differs
from the address's entry is refused as a changed key.

:class:`HostCheck` is what :func:`swtpm_extcap.remote.ssh.connect` hands to
asyncssh as its ``known_hosts`` (a callable), then asks for the outcome's one
line (:meth:`HostCheck.refusal`), or records a key trusted on first use
(:meth:`HostCheck.remember`).
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncssh

DEFAULT_PORT = 22
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


def entry_name(name: str, port: int) -> str:
    """How known_hosts names ``name`` on ``port``: ``name`` or ``[name]:port``."""
    return name if port == DEFAULT_PORT else f"[{name}]:{port}"


@dataclass
class HostCheck:
    """The host-key lookup of one connection (``name``: HostKeyAlias or HostName)."""

    name: str
    port: int
    files: tuple[str, ...]
    check_ip: bool = False
    #: the name the user gave (an alias, for the ``ssh`` hint) and the config it is in
    given: str = ""
    config: str | None = None
    #: the peer address, as asyncssh saw it (filled in by :meth:`__call__`)
    addr: str = ""
    _known: Any = field(default=None, repr=False)

    @property
    def entry(self) -> str:
        return entry_name(self.name, self.port)

    def _hosts(self) -> asyncssh.SSHKnownHosts:
        import asyncssh

        if self._known is None:
            lines: list[str] = []
            for path in self.files:
                try:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        lines += fh.read(4 << 20).splitlines()
                except OSError:
                    continue
            try:
                self._known = asyncssh.import_known_hosts("\n".join(lines) + "\n")
            except (ValueError, asyncssh.Error):  # skip the lines asyncssh cannot read
                good = []
                for line in lines:
                    try:
                        asyncssh.import_known_hosts(line + "\n")
                        good.append(line)
                    except (ValueError, asyncssh.Error):
                        continue
                self._known = asyncssh.import_known_hosts("\n".join(good) + "\n")
        return self._known  # type: ignore[no-any-return]

    def keys_for(self, entry: str) -> tuple[list[Any], list[Any], list[Any]]:
        """(trusted keys, CA keys, revoked keys) listed under exactly ``entry``."""
        found = self._hosts().match(entry, "", None)
        return list(found[0]), list(found[1]), list(found[2])

    def __call__(self, host: str, addr: str, port: int | None) -> tuple[list[Any], list[Any], list[Any]]:
        """asyncssh's ``known_hosts`` callable: the keys trusted for the name, never for the IP."""
        self.addr = addr
        return self.keys_for(self.entry)

    def known(self) -> bool:
        """Is any key listed for the name (then a mismatch is a *changed* key)?"""
        keys, cas, _ = self.keys_for(self.entry)
        return bool(keys or cas)

    def ip_mismatch(self, key: asyncssh.SSHKey | None) -> bool:
        """With CheckHostIP: the address has keys in known_hosts, and this is none of them."""
        if not self.check_ip or not self.addr or key is None:
            return False
        keys, _, _ = self.keys_for(entry_name(self.addr, self.port))
        want = key.export_public_key("openssh").split()[:2]
        return bool(keys) and all(k.export_public_key("openssh").split()[:2] != want for k in keys)

    # -- messages ------------------------------------------------------------

    @property
    def file(self) -> str:
        return self.files[0] if self.files else os.path.expanduser(DEFAULT_KNOWN_HOSTS)

    def _scan(self) -> str:
        port = "" if self.port == DEFAULT_PORT else f"-p {self.port} "
        return f"ssh-keyscan {port}{shlex.quote(self.name)} >> {shlex.quote(self.file)}"

    def _ssh(self) -> str:
        port = "" if self.port == DEFAULT_PORT or self.given != self.name else f"-p {self.port} "
        config = f"-F {shlex.quote(self.config)} " if self.config else ""
        return f"ssh {config}{port}{shlex.quote(self.given or self.name)}"

    def refusal(self) -> str:
        """The one line for a key that is not trusted: unknown, or changed."""
        where = self.entry if self.given in ("", self.name) else f"{self.given} ({self.entry})"
        if self.known():
            return (f"the SSH host key of {where} has CHANGED since it was trusted (or someone is"
                    " intercepting): refused. If the host was reinstalled, check its new key, then"
                    f" ssh-keygen -R {shlex.quote(self.entry)} -f {shlex.quote(self.file)} and"
                    f" trust it again: {self._scan()}")
        return (f"the SSH host key of {where} is unknown: refused (known_hosts is looked up by"
                f" that name, not by its address). Check and trust it once with `{self._ssh()}`"
                f" (answer yes), or {self._scan()}")

    def ip_refusal(self) -> str:
        entry = entry_name(self.addr, self.port)
        return (f"the SSH host key of {self.entry} differs from the key known_hosts has for its"
                f" address {entry} (CheckHostIP yes in the SSH config): refused. If the address"
                f" now belongs to this host, ssh-keygen -R {shlex.quote(entry)} -f"
                f" {shlex.quote(self.file)}")

    def remember(self, key: asyncssh.SSHKey | None, log: logging.Logger) -> None:
        """Trust on first use: add ``key`` under the name to the first known_hosts file."""
        if key is None:
            return
        path = Path(self.file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            line = f"{self.entry} {key.export_public_key('openssh').decode().strip()}\n"
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
            log.info("added the host key of %s to %s", self.entry, path)
        except OSError as err:
            log.warning("could not add the host key of %s to %s: %s", self.entry, path, err)
