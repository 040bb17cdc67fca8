"""Wireshark's global folders made private: installs as root without touching this machine.

A system-wide install writes into Wireshark's global folders and ``/opt``; on a
shared machine (or a developer's) a test must not. :class:`PrivateGlobals` runs
commands in a mount namespace of their own (``unshare -m``) where each of those
folders is an overlay: the machine's files show through, and what a command
writes lands in a temporary upper folder. The upper folders live as long as
the object, so several commands see one private machine (install, then tshark,
then uninstall); the real folders never change.

Root only (mount namespaces, overlayfs); :func:`unavailable` says why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

#: the folders of ``tshark -G folders`` that a system-wide install writes into
GLOBAL_NAMES = ("Global Lua Plugins", "Global Extcap path", "Extcap path", "Global configuration")
#: install.sh's system-wide virtual environment lives here
OPT = "/opt"

_MOUNT = """
set -e
while [ "$1" != -- ]; do
    mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$1"
    shift 3
done
shift
exec "$@"
"""


def global_folders() -> list[str]:
    """The global folders the installed tshark reports, and /opt (existing ones)."""
    out = subprocess.run(
        ["tshark", "-G", "folders"], capture_output=True, text=True, timeout=60
    ).stdout
    found: list[str] = []
    for line in out.splitlines():
        name, _, value = line.partition("\t")
        value = value.strip()
        if name.strip().rstrip(":") in GLOBAL_NAMES and value and value not in found:
            found.append(value)
    found.append(OPT)
    return [f for f in found if os.path.isdir(f)]


def unavailable() -> str | None:
    """Why a private namespace cannot be made here (None: it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (a mount namespace with overlays)"
    for tool in ("unshare", "mount", "tshark"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"unshare -m is not allowed here: {probe.stderr.strip()}"
    return None


class PrivateGlobals:
    """Overlays over Wireshark's global folders and /opt, upper folders in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders = global_folders()
        self.args: list[str] = []
        for i, folder in enumerate(self.folders):
            upper, work = root / f"upper{i}", root / f"work{i}"
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            self.args += [folder, str(upper), str(work)]

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` wrapped: run in a namespace that sees the private folders."""
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", _MOUNT, "sh",
                *self.args, "--", *command]

    def run(
        self, command: Sequence[str], env: Mapping[str, str], *, timeout: float = 600,
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command), env=dict(env), capture_output=True, text=True, timeout=timeout,
            cwd=cwd,
        )

    def written(self, folder: str) -> Path:
        """Where what was written into ``folder`` (one of :attr:`folders`) lands."""
        return self.root / f"upper{self.folders.index(folder)}"
