"""One capture interface: what the listing shows and a capture starts from, local or remote."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import printable
from ..sources import LogLocation

#: where a log was found (not to be confused with swtpmlog's Kind, a record's kind)
Origin = Literal["proxmox", "libvirt", "glob", "demo"]

#: a display name holds no "/": Wireshark cuts its temporary file's name at the last one
_DISPLAY_UNSAFE = re.compile(r"[\x00-\x1f\x7f{}/]")


@dataclass(frozen=True)
class Interface:
    """One capture interface: a log that may or may not be readable by us."""

    name: str  # "swtpm-103": what tshark -i takes
    display: str  # "SWTPM VM 103 (web01)": what Wireshark shows (short, no "/")
    location: LogLocation  # where the log is: a local path (a remote one later)
    origin: Origin
    vm_id: str  # Proxmox vmid, libvirt domain, glob key, or "demo"
    vm_name: str | None  # Proxmox name: line, libvirt domain, else None
    readable: bool
    level: int | None = None  # its running swtpm's log level (swtpmlog.level); None: not known

    @property
    def path(self) -> Path:
        """The log's path on its host."""
        return Path(self.location.path)


def safe_display(text: str) -> str:
    """No braces or control characters: the extcap list format uses ``{...}``;
    a file name's bytes that are not UTF-8 shown as ``\\xff``."""
    return _DISPLAY_UNSAFE.sub("?", printable(text))
