"""At which level each running swtpm logs, from its command line (``--log file=...,level=N``).

swtpm writes the TPM command and response dumps only at level 2 and up;
Proxmox VE starts it with ``level=1`` and libvirt before 10.6 with no level
(which logs no TPM traffic either). A VM whose log is at level 1 is told apart
in its interface's display (:func:`level_note`) and a capture of it explains
how to raise the level (:func:`level_hint`). Used by the local discovery
(:func:`swtpm_extcap.interfaces.local.running_levels` reads ``/proc``) and by the
remote one (which sends the ``--log`` values back; :func:`parse_log_option` reads them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

#: the lowest level at which swtpm logs TPM traffic
TRAFFIC_LEVEL = 2
#: swtpm's level when ``--log`` has none (it logs no TPM traffic)
DEFAULT_LEVEL = 1


def parse_log_option(value: str) -> tuple[str | None, int]:
    """``"file=/run/x.log,level=20,prefix=[id=1] "`` -> ``("/run/x.log", 20)``.

    No ``file=`` (``fd=``): path None. No or an unreadable ``level=``: level 1.
    """
    path: str | None = None
    level = DEFAULT_LEVEL
    for part in value.split(","):
        key, _, val = part.partition("=")
        if key == "file" and val:
            path = val
        elif key == "level":
            try:
                level = int(val)
            except ValueError:
                level = DEFAULT_LEVEL
    return path, level


def log_values(argv: Iterable[str]) -> list[str]:
    """The values of every ``--log`` in a command line (``--log V`` or ``--log=V``)."""
    out: list[str] = []
    take = False
    for arg in argv:
        if take:
            out.append(arg)
            take = False
        elif arg == "--log":
            take = True
        elif arg.startswith("--log="):
            out.append(arg[len("--log="):])
    return out


def levels_from_log_values(values: Iterable[str]) -> dict[str, int]:
    """Log path -> level, from ``--log`` values (the highest if a path appears twice)."""
    levels: dict[str, int] = {}
    for value in values:
        path, level = parse_log_option(value)
        if path is not None:
            levels[os.path.normpath(path)] = max(level, levels.get(os.path.normpath(path), level))
    return levels


def level_note(level: int | None) -> str:
    """What an interface's display adds: ``" (level 1: no TPM traffic logged)"`` or ``""``."""
    if level is None or level >= TRAFFIC_LEVEL:
        return ""
    return f" (level {level}: no TPM traffic logged)"


def level_hint(kind: str, level: int, where: str = "") -> str:
    """One line: this swtpm logs no TPM traffic, and how to raise its level."""
    host = f" on {where}" if where else ""
    head = f"swtpm{host} logs at level {level}, which has no TPM traffic: raise it to 2 or more"
    tail = " (level 2 is enough; 5 and up adds libtpms debug noise), then restart the VM"
    if kind == "proxmox":
        how = (": in /usr/share/perl5/PVE/QemuServer.pm change level=1 to level=20 in the swtpm"
               " --log option, systemctl restart pvedaemon pveproxy")
    elif kind == "libvirt":
        how = (": libvirt 10.6+ takes <backend type='emulator' version='2.0' debug='20'/> inside"
               " <tpm> (virsh edit DOMAIN)")
    else:
        how = ": add level=20 to swtpm's --log option (--log file=PATH,level=20)"
    return head + how + tail
