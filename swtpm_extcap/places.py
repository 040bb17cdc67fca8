"""Where Proxmox VE and libvirt keep swtpm logs and VM settings: the defaults of the local
and the remote discovery (and of ``swtpm-ssh``'s log field)."""

from __future__ import annotations

#: Proxmox VE: ``<vmid>-swtpm.log`` (swtpm's ``--log file=``; a tmpfs)
PROXMOX_DIR = "/run/qemu-server"
#: Proxmox VE's cluster file system (``nodes/<node>/qemu-server/<vmid>.conf``)
PVE_DIR = "/etc/pve"
#: this node's VM settings: ``<vmid>.conf``, whose ``name:`` names the VM
PVE_CONF_DIR = "/etc/pve/qemu-server"
#: libvirt: ``<domain>-swtpm.log``
LIBVIRT_DIR = "/var/log/swtpm/libvirt/qemu"
