"""The ``[[remote]]`` entries of the settings file: which hypervisors to reach over SSH.

``parse_remotes`` checks each entry key by key (one :class:`ConfigError` line
that says which key is wrong and what it takes); a :class:`Remote` knows how to
reach its host (:meth:`Remote.params`), or a node of its Proxmox cluster.
:class:`RemoteVM` is one log found there (see :mod:`swtpm_extcap.remote.discovery`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UserError
from ..places import LIBVIRT_DIR, PROXMOX_DIR, PVE_DIR
from .ssh import HOST_KEY_POLICIES, PRIVS, HostKeyPolicy, Priv, SSHParams

#: connecting for a capture may take longer
CAPTURE_TIMEOUT_S = 10.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_KEYS = {
    "name": "a short name for interface names, e.g. name = \"pve1\" ([A-Za-z0-9._-])",
    "host": "a host name, address or ~/.ssh/config alias, e.g. host = \"pve1.lan\"",
    "port": "a port number, e.g. port = 22",
    "user": "a login name, e.g. user = \"root\"",
    "priv": f"one of {', '.join(PRIVS)}, e.g. priv = \"sudo\"",
    "key": "a private key file, e.g. key = \"~/.ssh/id_ed25519\"",
    "host_keys": f"one of {', '.join(HOST_KEY_POLICIES)}",
    "globs": "a list of absolute path patterns on that host, e.g. globs = [\"/srv/vms/*/swtpm.log\"]",
    "nodes": "a table of Proxmox node name -> host, e.g. nodes = { pve2 = \"10.0.0.2\" }",
    "proxmox_dir": f"an absolute folder on that host, e.g. proxmox_dir = {PROXMOX_DIR!r}",
    "pve_dir": f"an absolute folder on that host, e.g. pve_dir = {PVE_DIR!r}",
    "libvirt_dir": f"an absolute folder on that host, e.g. libvirt_dir = {LIBVIRT_DIR!r}",
}


@dataclass(frozen=True)
class Remote:
    """One ``[[remote]]`` entry."""

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    priv: Priv = "none"
    key: str | None = None
    host_keys: HostKeyPolicy = "strict"
    globs: tuple[str, ...] = ()
    nodes: tuple[tuple[str, str], ...] = ()
    proxmox_dir: str = PROXMOX_DIR
    pve_dir: str = PVE_DIR
    libvirt_dir: str = LIBVIRT_DIR

    def params(self, node: str | None = None, *, timeout: float = CAPTURE_TIMEOUT_S) -> SSHParams:
        """How to reach this host, or one of its cluster's nodes."""
        host = self.host if node is None else dict(self.nodes).get(node, node)
        return SSHParams(host=host, port=self.port, user=self.user, identity=self.key,
                         priv=self.priv, host_keys=self.host_keys, connect_timeout=timeout)


@dataclass(frozen=True)
class RemoteVM:
    """One log on a remote host, as an interface ``swtpm-<remote>-<key>``."""

    interface: str
    display: str
    remote: str  # the entry's name
    kind: str  # proxmox | libvirt | glob
    vm_id: str
    vm_name: str | None
    path: str
    node: str | None  # a Proxmox node other than the entry's host; None: the host itself
    level: int | None  # the running swtpm's log level; None: not running, or unknown


# ------------------------------------------------------------------ settings


def parse_remotes(value: Any, source: Path | str) -> tuple[Remote, ...]:
    """The ``remote`` array of tables of the settings file; :class:`ConfigError` names the key."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"config file {source}: 'remote' must be an array of tables"
                          " ([[remote]]), one per host")
    out: list[Remote] = []
    names: set[str] = set()
    for i, entry in enumerate(value):
        where = f"config file {source}: remote[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table ([[remote]])")
        for key in entry:
            if key not in _KEYS:
                raise ConfigError(f"{where}: unknown key {key} (known: {', '.join(sorted(_KEYS))})")
        remote = _remote(entry, where)
        if remote.name in names:
            raise ConfigError(f"{where}: name {remote.name!r} is used twice; names must be unique")
        names.add(remote.name)
        out.append(remote)
    return tuple(out)


def _remote(entry: Mapping[str, Any], where: str) -> Remote:
    def text(key: str, required: bool = False) -> str | None:
        val = entry.get(key)
        if val is None and not required:
            return None
        if not isinstance(val, str) or not val:
            raise ConfigError(f"{where}: {key} must be {_KEYS[key]}")
        return val

    name = text("name", required=True)
    assert name is not None
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} must be {_KEYS['name']}")
    host = text("host", required=True)
    assert host is not None
    port = entry.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)
                             or not 0 < port < 65536):
        raise ConfigError(f"{where}: port must be {_KEYS['port']} (1-65535)")
    priv = entry.get("priv", "none")
    if priv not in PRIVS:
        raise ConfigError(f"{where}: priv must be {_KEYS['priv']}; got {priv!r}")
    host_keys = entry.get("host_keys", "strict")
    if host_keys not in HOST_KEY_POLICIES:
        raise ConfigError(f"{where}: host_keys must be {_KEYS['host_keys']}; got {host_keys!r}")
    globs = entry.get("globs", [])
    if not isinstance(globs, list) or not all(
        isinstance(g, str) and (g.startswith("/") or g.startswith("~/")) for g in globs
    ):
        raise ConfigError(f"{where}: globs must be {_KEYS['globs']}")
    nodes = entry.get("nodes", {})
    if not isinstance(nodes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in nodes.items()
    ):
        raise ConfigError(f"{where}: nodes must be {_KEYS['nodes']}")
    folders = {}
    for key in ("proxmox_dir", "pve_dir", "libvirt_dir"):
        val = text(key)
        if val is not None:
            if not val.startswith("/"):
                raise ConfigError(f"{where}: {key} must be {_KEYS[key]}")
            folders[key] = val
    try:
        remote = Remote(name=name, host=host, port=port, user=text("user"), priv=priv,
                        key=text("key"), host_keys=host_keys, globs=tuple(globs),
                        nodes=tuple(sorted(nodes.items())), **folders)
        remote.params()  # the host and port checks of SSHParams
    except UserError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return remote


def load_remotes(path: Path | None) -> tuple[Remote, ...]:
    """The ``[[remote]]`` entries of the settings file at ``path`` (none if there is no file)."""
    if path is None:
        return ()
    try:
        data = path.read_bytes()
    except OSError:
        return ()
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        try:
            import tomli as tomllib
        except ImportError:
            return ()
    try:
        doc = tomllib.loads(data.decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return parse_remotes(doc.get("remote"), path)
