"""Personal or system-wide: whose Wireshark an install serves, and one copy per Wireshark.

Root's Wireshark 4.2 and later loads no personal Lua plugin (4.0 still did),
and root is who captures on a hypervisor. So ``install`` run as root writes
into Wireshark's *global* folders (launcher, plugin and profile, as
``--system``), saying so, unless ``--personal`` asks for root's own folders.

One copy per Wireshark. Wireshark loads every ``swtpm.lua`` it finds, the
global folder's first; the plugin itself registers only once (a guard at its
top), so a second copy is dead weight that shadows updates. For extcaps it
keeps the personal launcher and prints a warning about the global one at every
start. Hence:

* a system-wide install removes the installing user's (root's) personal
  copies, when they are ours (:func:`is_ours`);
* a personal install beside a system-wide one writes what was asked and says
  which copy Wireshark uses.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from ..errors import UserError
from .folders import is_root

#: what an install run as root says before it writes
ROOT_NOTE = (
    "running as root: installing into Wireshark's global folders, which root's Wireshark"
    " reads (Wireshark 4.2 and later load no personal Lua plugin as root);"
    " --personal installs into root's own folders instead"
)
#: what an uninstall run as root says
ROOT_UNINSTALL_NOTE = (
    "running as root: removing swtpm-extcap from Wireshark's global folders and root's"
    " own ones (--personal: root's own folders only)"
)
#: a Lua plugin file of ours begins with this
PLUGIN_HEAD = b"-- swtpm.lua"
#: a launcher of ours runs this
LAUNCHER_MARK = b"swtpm_extcap"
#: the profile folder's marker (install.PROFILE_MARKER)
PROFILE_MARKER = ".swtpm-extcap"
#: the folder next to swtpm.lua that holds the plugin's parts (install.PLUGIN_PARTS)
PLUGIN_PARTS = "swtpm"
#: a part of ours (swtpm/<name>.lua) begins with this
PART_HEAD = b"-- swtpm/"


def wants_system(*, system: bool, personal: bool) -> bool:
    """Global folders: asked for, or the installer is root and did not ask otherwise."""
    return system or (not personal and is_root())


def is_ours(what: str, path: Path) -> bool:
    """``path`` holds swtpm-extcap's ``what`` (launcher, Lua plugin, profile), not a
    file of that name someone else put there."""
    try:
        if what == "profile":
            return (path / PROFILE_MARKER).is_file()
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if what == "Lua plugin":
        return head.startswith(PLUGIN_HEAD)
    return LAUNCHER_MARK in head


def present(places: Iterable[tuple[str, Path | None]]) -> list[tuple[str, Path]]:
    """The ``(what, path)`` of ``places`` that hold a copy of ours."""
    return [(what, path) for what, path in places if path is not None and is_ours(what, path)]


def remove_parts(plugin: Path) -> None:
    """The parts of ours next to the Lua plugin ``plugin`` (``swtpm/*.lua`` that begin as
    ours do, whichever version wrote them), and their folder once it is empty."""
    parts = plugin.parent / PLUGIN_PARTS
    try:
        names = sorted(p for p in parts.iterdir() if p.suffix == ".lua")
    except OSError:
        return
    for part in names:
        try:
            with open(part, "rb") as fh:
                if fh.read(len(PART_HEAD)) == PART_HEAD:
                    part.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise UserError(f"cannot remove {part}: {exc.strerror or exc}") from None
    try:
        parts.rmdir()
    except OSError:
        pass  # something else is left in it


def remove_copy(what: str, path: Path) -> None:
    """Remove a copy of ours (checked again: never a file someone else put there)."""
    if not is_ours(what, path):
        return
    try:
        if what == "profile":
            shutil.rmtree(path)
        else:
            if what == "Lua plugin":
                remove_parts(path)
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UserError(f"cannot remove {path}: {exc.strerror or exc}") from None


def other_copy_note(copies: list[tuple[str, Path]]) -> str:
    """What a personal install says when a system-wide one is there too."""
    listed = ", ".join(f"{what} {path}" for what, path in copies)
    return (
        f"note: swtpm-extcap is also installed system-wide ({listed}): Wireshark loads the"
        " global plugin first and skips this copy (the plugin registers once), and takes"
        " this launcher instead of the global one with a warning; to use only one,"
        " remove the other (as root: python -m swtpm_extcap install --system --uninstall)"
    )
