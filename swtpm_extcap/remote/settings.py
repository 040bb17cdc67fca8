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
from typing import Any, NamedTuple

from ..errors import ConfigError, UserError
from ..places import LIBVIRT_DIR, PROXMOX_DIR, PVE_DIR
from .ssh import HOST_KEY_POLICIES, PRIVS, HostKeyPolicy, Priv, SSHParams

#: connecting for a capture may take longer (``connect_timeout`` sets it)
CAPTURE_TIMEOUT_S = 10.0
#: the longest connect_timeout a [[remote]] entry may set
MAX_CONNECT_TIMEOUT_S = 300.0

#: no trailing "-": swtpm-<name>--error (a failing host's entry) is no VM of another entry
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9._])?")
_KEYS = {
    "name": "a short name for interface names, e.g. name = \"pve1\" ([A-Za-z0-9._-], not"
            " ending in -)",
    "host": "a host name, address or ~/.ssh/config alias, e.g. host = \"pve1.lan\"",
    "port": "a port number, e.g. port = 22",
    "user": "a login name, e.g. user = \"root\"",
    "priv": f"one of {', '.join(PRIVS)}, e.g. priv = \"sudo\"",
    "key": "a private key file, e.g. key = \"~/.ssh/id_ed25519\"",
    "host_keys": f"one of {', '.join(HOST_KEY_POLICIES)}",
    "globs": "a list of absolute path patterns on that host, e.g. globs = [\"/srv/vms/*/swtpm.log\"]",
    "nodes": "a table of Proxmox node name -> host or a table of host, port, user, key, e.g."
             " nodes = { pve2 = \"10.0.0.2\", pve3 = { host = \"pve3.lan\", port = 2222 } }",
    "ssh_config": "an OpenSSH client config file instead of ~/.ssh/config,"
                  " e.g. ssh_config = \"~/.ssh/config.pve\"",
    "known_hosts": "a known_hosts file instead of ~/.ssh/known_hosts,"
                   " e.g. known_hosts = \"~/.ssh/known_hosts.pve\"",
    "reader": "the absolute path of the installed restricted reader on that host, for a sudoers"
              " line that allows only it, e.g. reader = \"/usr/local/sbin/swtpm-extcap-reader\"",
    "connect_timeout": f"seconds to wait for the host when capturing (1 to {MAX_CONNECT_TIMEOUT_S:g}),"
                       " e.g. connect_timeout = 20",
    "proxmox_dir": f"an absolute folder on that host, e.g. proxmox_dir = {PROXMOX_DIR!r}",
    "pve_dir": f"an absolute folder on that host, e.g. pve_dir = {PVE_DIR!r}",
    "libvirt_dir": f"an absolute folder on that host, e.g. libvirt_dir = {LIBVIRT_DIR!r}",
}


class Node(NamedTuple):
    """How to reach one node of a Proxmox cluster; None: as ``~/.ssh/config`` says for it
    (the user and key fall back to the entry's). (A NamedTuple, as RemoteVM: immutable,
    and cheaper to define than a dataclass on the listing's warm path, bench_ssh.py.)"""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    key: str | None = None


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
    nodes: tuple[tuple[str, Node], ...] = ()
    proxmox_dir: str = PROXMOX_DIR
    pve_dir: str = PVE_DIR
    libvirt_dir: str = LIBVIRT_DIR
    ssh_config: str | None = None
    known_hosts: str | None = None
    connect_timeout: float = CAPTURE_TIMEOUT_S
    reader: str | None = None

    def params(self, node: str | None = None, *, timeout: float | None = None) -> SSHParams:
        """How to reach this host, or one of its cluster's nodes: a node's own host, port,
        user and key (``nodes``), else what ~/.ssh/config says for the node's name; never
        the entry's port, which is the entry host's."""
        wait = self.connect_timeout if timeout is None else timeout
        if node is None:
            host, port, user, key = self.host, self.port, self.user, self.key
        else:
            how = dict(self.nodes).get(node, Node())
            host, port = how.host or node, how.port
            user, key = how.user or self.user, how.key or self.key
        return SSHParams(host=host, port=port, user=user, identity=key, priv=self.priv,
                         host_keys=self.host_keys, known_hosts=self.known_hosts,
                         ssh_config=self.ssh_config, connect_timeout=wait, reader=self.reader)


class RemoteVM(NamedTuple):
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
    nodes = _nodes(entry.get("nodes", {}), where)
    timeout = entry.get("connect_timeout", CAPTURE_TIMEOUT_S)
    if (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
            or not 1 <= timeout <= MAX_CONNECT_TIMEOUT_S):
        raise ConfigError(f"{where}: connect_timeout must be {_KEYS['connect_timeout']}")
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
                        nodes=nodes, ssh_config=text("ssh_config"),
                        known_hosts=text("known_hosts"), connect_timeout=float(timeout),
                        reader=text("reader"),
                        **folders)
        remote.params()  # the host and port checks of SSHParams
        for node, _ in nodes:
            remote.params(node)
    except UserError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return remote


def _nodes(value: Any, where: str) -> tuple[tuple[str, Node], ...]:
    """``nodes = { pve2 = "10.0.0.2", pve3 = { host = "pve3.lan", port = 2222 } }``."""
    wrong = ConfigError(f"{where}: nodes must be {_KEYS['nodes']}")
    if not isinstance(value, dict):
        raise wrong
    out = []
    for name, how in value.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: node name {name!r} must be [A-Za-z0-9._-]")
        if isinstance(how, str) and how:
            out.append((name, Node(host=how)))
            continue
        if not isinstance(how, dict) or not set(how) <= {"host", "port", "user", "key"}:
            raise wrong
        port = how.get("port")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool)
                                 or not 0 < port < 65536):
            raise ConfigError(f"{where}: nodes.{name}.port must be a port number (1-65535)")
        texts = {k: how.get(k) for k in ("host", "user", "key")}
        if not all(v is None or (isinstance(v, str) and v) for v in texts.values()):
            raise ConfigError(f"{where}: nodes.{name}: host, user and key must be strings")
        out.append((name, Node(host=texts["host"], port=port, user=texts["user"],
                               key=texts["key"])))
    return tuple(sorted(out, key=lambda item: item[0]))


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
