"""The SSH side of the interface list: ``[[remote]]`` VMs and ``swtpm-ssh``, for the extcap.

:func:`remote_interface_lines` is what the listing adds (never raises, prints
nothing); :func:`find_remote_interface` resolves a ``swtpm-<remote>-<vm>``
name for a capture (asking the host when the cache does not know it);
:func:`check_level` refuses a VM whose swtpm logs no TPM traffic (local or
remote) with the one line that says how to raise its level;
:func:`ssh_interface` is ``swtpm-ssh``'s log, from its options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..remote.ssh import SSHParams
    from .interface import Interface
    from .settings import Config

#: the generic remote interface, set up in its options dialog (swtpm_extcap.extcap.ssh_options)
SSH_INTERFACE = "swtpm-ssh"
SSH_DISPLAY = "SWTPM log over SSH (host and log set in the interface options)"

__all__ = ["SSH_INTERFACE", "check_level", "find_remote_interface", "remote_interface_lines",
           "ssh_interface"]


def remote_interface_lines(config: Config, notes: list[str] | None = None) -> list[tuple[str, str]]:
    """(name, display) of every remote VM (cached listing), one entry per failing host
    (``swtpm-<name>--error``: its display says why), then ``swtpm-ssh``.

    With a warm cache nothing of asyncssh is imported. ``notes`` is kept for the
    caller's signature: a remote host's trouble is an entry of its own."""
    out: list[tuple[str, str]] = []
    if config.remotes:
        try:
            from ..remote.listing import list_remotes

            listing = list_remotes(config.remotes)
            out = [(vm.interface, vm.display) for vm in listing.vms]
            out += [(f.interface, f.display) for f in listing.failures]
        except Exception:  # noqa: BLE001 - a listing never fails because of a remote host
            out = []
    out.append((SSH_INTERFACE, SSH_DISPLAY))
    return out


def find_remote_interface(name: str, config: Config) -> Interface | None:
    """The remote interface ``name``, or None when no ``[[remote]]`` entry owns the name."""
    if not config.remotes:
        return None
    from ..remote.listing import find_remote_vm
    from ..sources import LogLocation
    from .interface import Interface

    found = find_remote_vm(name, config.remotes)
    if found is None:
        return None
    remote, vm = found
    params = remote.params(vm.node)
    origin = vm.kind if vm.kind in ("proxmox", "libvirt") else "glob"
    return Interface(
        name=vm.interface,
        display=vm.display,
        location=LogLocation(vm.path, host=params.where, ssh=params),
        origin=origin,  # type: ignore[arg-type]
        vm_id=vm.vm_id,
        vm_name=vm.vm_name,
        readable=True,
        level=vm.level,
    )


def check_level(iface: Interface) -> None:
    """A VM whose swtpm logs no TPM traffic: :class:`UserError` saying how to raise the level."""
    from ..swtpmlog.level import TRAFFIC_LEVEL, level_hint

    if iface.level is not None and iface.level < TRAFFIC_LEVEL:
        raise UserError(level_hint(iface.origin, iface.level, iface.location.host or ""))


def ssh_interface(params: SSHParams, path: str) -> Interface:
    """``swtpm-ssh``'s log, as its options name it."""
    from ..sources import LogLocation
    from .interface import Interface

    return Interface(
        name=SSH_INTERFACE,
        display=f"SWTPM {params.where}:{path}",
        location=LogLocation(path, host=params.where, ssh=params),
        origin="glob",
        vm_id=path,
        vm_name=None,
        readable=True,
    )
