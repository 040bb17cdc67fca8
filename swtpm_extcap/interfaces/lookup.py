"""One interface by its name, for a capture: the local discovery first, then the
``[[remote]]`` hosts (their module is imported only when the settings name one),
else one line that says why there is no such interface and what to do."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UserError
from ..names import PREFIX, VM_ID, configured_path
from ..sources.local import not_a_file
from ..sources.regular import not_regular
from .interface import Interface
from .local import discover
from .settings import Config


def find_interface(
    name: str,
    config: Config,
    *,
    proxmox_dir: str | os.PathLike[str] | None = None,
    pve_conf_dir: str | os.PathLike[str] | None = None,
    libvirt_dir: str | os.PathLike[str] | None = None,
) -> Interface:
    """The interface called ``name``; :class:`UserError` saying why if there is none."""
    proxmox_dir = config.proxmox_dir if proxmox_dir is None else proxmox_dir
    libvirt_dir = config.libvirt_dir if libvirt_dir is None else libvirt_dir
    interfaces = discover(
        config, proxmox_dir=proxmox_dir, pve_conf_dir=pve_conf_dir, libvirt_dir=libvirt_dir
    )
    for interface in interfaces:
        if interface.name == name:
            return interface
    if config.remotes:
        from .remote import find_remote_interface

        remote = find_remote_interface(name, config)
    else:
        remote = None  # swtpm-<remote>-<vm> of a [[remote]] host
    if remote is not None:
        return remote
    listing = "refresh the interface list (Capture > Refresh Interfaces) to see the logs there are"
    vmid = re.fullmatch(rf"{PREFIX}({VM_ID.pattern})", name)
    gone = configured_path(name, config.globs)
    at = _expected_path(name, gone, proxmox_dir, libvirt_dir)
    kind = not_regular(at) if at is not None else None
    if at is not None and kind is not None:  # a directory, /dev/zero, a loop: no log
        msg = f"no interface {name}: {not_a_file(at, kind)}"
    elif gone is not None:
        msg = (
            f"no interface {name}: the configured log {gone} (a match of the [local] globs"
            f" in {config.path}) is missing: deleted or moved; {listing}"
        )
    elif vmid:
        log = Path(proxmox_dir) / f"{vmid.group(1)}-swtpm.log"
        msg = (
            f"no interface {name}: VM {vmid.group(1)} has no log at {log}; is the VM running,"
            " with a TPM, and its swtpm logging at level 20 (see `ps aux | grep swtpm`)?"
            f" {listing}"
        )
    elif name.startswith(PREFIX):
        log = Path(libvirt_dir) / f"{name[len(PREFIX):]}-swtpm.log"
        if config.globs:
            where = f"no match of the [local] globs in {config.path} has that name"
        else:
            where = "no [local] globs are configured"
        msg = f"no interface {name}: no libvirt log at {log}, and {where}; {listing}"
    else:
        msg = f"no interface {name}: interface names start with {PREFIX!r}; {listing}"
    if config.error is not None:
        msg += f"; also, the settings file was skipped: {config.error}"
    raise UserError(msg)


def _expected_path(
    name: str, configured: str | None, proxmox_dir: str | os.PathLike[str],
    libvirt_dir: str | os.PathLike[str],
) -> str | None:
    """Where the log of ``name`` would be: a configured glob's path, a Proxmox VM's,
    a libvirt domain's (the first that exists), or None."""
    vmid = re.fullmatch(rf"{PREFIX}({VM_ID.pattern})", name)
    candidates = [configured] if configured is not None else []
    if vmid:
        candidates.append(os.path.join(proxmox_dir, f"{vmid.group(1)}-swtpm.log"))
    elif name.startswith(PREFIX):
        candidates.append(os.path.join(libvirt_dir, f"{name[len(PREFIX):]}-swtpm.log"))
    return next((c for c in candidates if os.path.lexists(c)), None)
