"""``swtpm-extcap install``: the launcher, the Lua plugin and the profile, into Wireshark's folders.

This is the one installer: ``install.sh`` prepares an environment (Debian
packages, a virtual environment, the package) and then runs this command with
that environment's Python. It puts three things into the folders of the
installed Wireshark (``uninstall`` removes them):

* the extcap launcher ``swtpm-extcap``: a Python script (mode 0755) whose
  ``#!`` line is this interpreter (``sys.executable``, absolute); on Windows
  ``swtpm-extcap.bat``: ``@"C:\\path\\to\\python.exe" -m swtpm_extcap %*``
  (written, not tested here);
* the Lua plugin ``swtpm.lua`` (control channel, TPM 1.2, request/response links);
* the configuration profile ``SWTPM`` (columns and coloring rules), a folder
  with a marker file ``.swtpm-extcap`` so that uninstall removes only ours.

Which folders: :mod:`swtpm_extcap.wireshark.folders` (one rule, asked of ``tshark -G
folders`` first). Whose: :mod:`swtpm_extcap.wireshark.scope`: root installs
system-wide (``--personal`` for root's own folders), one copy per Wireshark.

With ``--dir`` and no Wireshark found, only the launcher is written. Uninstall
without a Wireshark removes what it finds in every folder the rule can give.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from .folders import (  # the folder rule, also the installer's face for its users
    Wireshark,
    extcap_dir,
    find_wireshark,
    is_root,
    parse_folders,
    parse_version,
    plugin_dir,
    profiles_dir,
)
from .scope import (
    PLUGIN_PARTS,
    ROOT_NOTE,
    ROOT_UNINSTALL_NOTE,
    other_copy_note,
    present,
    remove_copy,
    remove_parts,
    wants_system,
)

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

LAUNCHER = "swtpm-extcap"
PLUGIN = "swtpm.lua"
# the plugin's parts: swtpm.lua loads them from the folder PLUGIN_PARTS next to it (scope)
PROFILE = "SWTPM"
#: the profile's files, shipped in swtpm_extcap/wireshark/profile/
PROFILE_FILES = ("preferences", "colorfilters")
#: written only into a profile that has none yet (Wireshark keeps its own column widths there)
PROFILE_DEFAULTS = ("recent",)
#: written into the profile folder: uninstall removes a SWTPM profile only when it has it
PROFILE_MARKER = ".swtpm-extcap"
#: everything after the launcher's #! line (the one copy: install.sh runs this module)
LAUNCHER_BODY = '''\
"""Wireshark extcap launcher for swtpm-extcap: SWTPM logs as capture interfaces.

Written by `python -m swtpm_extcap install` (which install.sh runs): the #! line
names the interpreter of swtpm-extcap's environment by absolute path.
"""
import sys

from swtpm_extcap.cli import main

sys.exit(main())
'''
@dataclass(frozen=True)
class Targets:
    """Where install puts its three files (``None``: not installed there)."""

    launcher: Path
    plugin: Path | None
    profile: Path | None
    version: tuple[int, int] = (0, 0)
    #: the Wireshark they were found for (None: none found)
    wireshark: Wireshark | None = None


def add_install_parser(subparsers: _SubParsers) -> argparse.ArgumentParser:
    """Add the ``install`` command (``--system`` or ``--personal``, ``--dir``, ``--uninstall``)."""
    parser = subparsers.add_parser(
        "install",
        help="add (or remove) the extcap launcher, the Lua plugin and the SWTPM profile",
        description="Write a launcher for this Python into the extcap folder of the installed"
        " Wireshark, so that its interface list shows every VM's SWTPM log (swtpm-<vm>) and"
        " swtpm-demo; the Lua plugin (control channel, TPM 1.2, request/response links) into"
        " its Lua plugin folder; the configuration profile SWTPM into its profiles folder."
        " For a self-contained install with its own virtual environment, use install.sh"
        " from the source tree (it runs this command at its end).",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--system",
        action="store_true",
        help="use Wireshark's global folders (needs root) instead of your personal ones;"
        " the default when run as root",
    )
    where.add_argument(
        "--personal",
        action="store_true",
        help="use your personal folders, also as root (Wireshark 4.2+ run as root loads"
        " no personal Lua plugin)",
    )
    parser.add_argument(
        "--dir", metavar="DIR", help="use this extcap folder for the launcher (default: ask"
        " tshark -G folders); the plugin and profile still follow --system/--personal"
    )
    parser.add_argument(
        "--uninstall",
        action="store_true",
        help="remove the launcher, the plugin and the profile instead of writing them",
    )
    return parser


def install_main(ns: argparse.Namespace) -> int:
    """Run ``install`` from parsed arguments; print what was done on stdout."""
    windows = sys.platform == "win32"
    system = wants_system(system=ns.system, personal=ns.personal)
    if system and not ns.system:
        print(ROOT_UNINSTALL_NOTE if ns.uninstall else ROOT_NOTE)
    found = find_targets(
        dir_=ns.dir, system=system, environ=os.environ, windows=windows, uninstall=ns.uninstall
    )
    # one copy per Wireshark: a system-wide install takes root's personal copies away
    others = other_copies(found[0], system=system, windows=windows, launcher=ns.dir is None)
    if ns.uninstall:
        for what, path, removed in uninstall(found):
            print(f"removed the {what} {path}" if removed else f"nothing to remove: no {what} {path}")
        if system and not ns.system:
            for what, path in others:
                remove_copy(what, path)
                print(f"removed root's personal {what} {path}")
        return 0
    targets = found[0]
    python = os.path.abspath(sys.executable)
    check_importable(python)
    write_launcher(targets.launcher, python, windows=windows)
    print(f"wrote the launcher {targets.launcher} (runs {python})")
    if targets.plugin is not None:
        write_plugin(targets.plugin)
        print(f"wrote the Lua plugin {targets.plugin}")
    if targets.profile is not None:
        write_profile(targets.profile)
        print(f"wrote the profile {targets.profile}")
    if targets.plugin is None:
        print("Wireshark not found: the Lua plugin and the SWTPM profile were not installed")
    elif not system and is_root() and targets.version >= (4, 2):
        print(
            "note: Wireshark 4.2 and later load no personal Lua plugin when run as root;"
            " for captures as root, install without --personal"
        )
    if system:
        for what, path in others:
            remove_copy(what, path)
            print(f"removed the personal {what} {path}: the system-wide one replaces it")
    elif others:
        print(other_copy_note(others))
    print(
        "try it:\n  tshark -D | grep swtpm\n  tshark -i swtpm-demo -c 10\n"
        "(Wireshark reads its folders when it starts: restart it to see the interfaces;"
        " columns and colors: Edit > Configuration Profiles > SWTPM)"
    )
    return 0


def find_targets(
    *,
    dir_: str | None,
    system: bool,
    environ: Mapping[str, str],
    windows: bool = False,
    uninstall: bool = False,
) -> list[Targets]:
    """Where the three files go: ``--dir`` for the launcher, else the folder rule.

    One entry, except for an uninstall without Wireshark: then every place the
    rule can give (Wireshark 4.0 and 4.2+).
    """
    name = LAUNCHER + (".bat" if windows else "")
    folder = Path(dir_).expanduser().absolute() if dir_ else None
    try:
        ws = find_wireshark()
    except UserError:
        if folder is not None:
            return [Targets(folder / name, None, None)]
        if not uninstall:
            raise
        guesses = [Wireshark("wireshark", version, {}) for version in ((4, 0), (4, 2))]
        return [_targets(guess, None, name, system, environ, windows) for guess in guesses]
    print(f"Wireshark {ws.version[0]}.{ws.version[1]} ({ws.program})")
    return [_targets(ws, folder, name, system, environ, windows)]


def other_copies(
    targets: Targets, *, system: bool, windows: bool, launcher: bool = True
) -> list[tuple[str, Path]]:
    """Our files in the other scope's folders (personal ones for a system install, and
    back) of the same Wireshark; ``launcher`` False leaves the launcher out (``--dir``)."""
    ws = targets.wireshark
    if ws is None:
        return []
    try:
        other = _targets(ws, None, targets.launcher.name, not system, os.environ, windows)
    except UserError:  # no global folders reported: nothing to compare with
        return []
    mine = {targets.launcher, targets.plugin, targets.profile}
    places: list[tuple[str, Path | None]] = [("Lua plugin", other.plugin), ("profile", other.profile)]
    if launcher:
        places.insert(0, ("launcher", other.launcher))
    return [(what, path) for what, path in present(places) if path not in mine]


def _targets(
    ws: Wireshark,
    folder: Path | None,
    name: str,
    system: bool,
    environ: Mapping[str, str],
    windows: bool,
) -> Targets:
    extcap = folder or extcap_dir(ws, system=system, environ=environ, windows=windows)
    plugins = plugin_dir(ws, system=system, environ=environ, windows=windows)
    profiles = profiles_dir(ws, system=system, environ=environ, windows=windows)
    return Targets(extcap / name, plugins / PLUGIN, profiles / PROFILE, ws.version, ws)


def launcher_text(python: str, *, windows: bool = False) -> str:
    """The launcher for interpreter ``python`` (absolute path)."""
    if windows:
        return f'@"{python}" -m swtpm_extcap %*\r\n'
    if any(c.isspace() for c in python):
        raise UserError(
            f"the interpreter path {python!r} has whitespace, which a #! line cannot hold;"
            " use a Python (or virtual environment) whose path has none"
        )
    return f"#!{python}\n{LAUNCHER_BODY}"


def write_launcher(target: Path, python: str, *, windows: bool = False) -> None:
    """Write (or replace) the launcher atomically, mode 0755; creates the folder."""
    _write_atomic(target, launcher_text(python, windows=windows).encode(), 0o755)


def shipped(name: str) -> bytes:
    """A file of ``swtpm_extcap/wireshark/`` (the plugin, ``profile/<file>``)."""
    path = resources.files("swtpm_extcap") / "wireshark"
    for part in name.split("/"):
        path = path / part
    return path.read_bytes()


def plugin_parts() -> list[str]:
    """The file names in ``swtpm_extcap/wireshark/swtpm/`` (the plugin's parts)."""
    folder = resources.files("swtpm_extcap") / "wireshark" / PLUGIN_PARTS
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".lua"))


def write_plugin(target: Path) -> None:
    """Write (or replace) the Lua plugin: its parts first, then swtpm.lua, which loads them."""
    for name in plugin_parts():
        _write_atomic(target.parent / PLUGIN_PARTS / name, shipped(f"{PLUGIN_PARTS}/{name}"), 0o644)
    _write_atomic(target, shipped(PLUGIN), 0o644)


def _remove_plugin(target: Path) -> bool:
    """Remove swtpm.lua and its parts (the folder too, when nothing else is left in it)."""
    remove_parts(target)
    return _remove(target)


def write_profile(folder: Path) -> None:
    """Write (or update) the SWTPM profile's files and its marker; other files stay."""
    for name in PROFILE_FILES:
        _write_atomic(folder / name, shipped(f"profile/{name}"), 0o644)
    for name in PROFILE_DEFAULTS:
        if not (folder / name).exists():
            _write_atomic(folder / name, shipped(f"profile/{name}"), 0o644)
    marker = "installed by swtpm-extcap; `python -m swtpm_extcap install --uninstall` removes it\n"
    _write_atomic(folder / PROFILE_MARKER, marker.encode(), 0o644)


def uninstall(found: list[Targets]) -> list[tuple[str, Path, bool]]:
    """Remove launcher, plugin and profile: ``(what, path, removed)`` for each place."""
    out: list[tuple[str, Path, bool]] = []
    seen: set[Path] = set()
    for targets in found:
        for what, path in (
            ("launcher", targets.launcher),
            ("Lua plugin", targets.plugin),
            ("profile", targets.profile),
        ):
            if path is None or path in seen:
                continue
            seen.add(path)
            remove = {"profile": _remove_profile, "Lua plugin": _remove_plugin}.get(what, _remove)
            out.append((what, path, remove(path)))
    return out


def _remove(target: Path) -> bool:
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    except PermissionError as exc:
        raise UserError(f"cannot remove {target}: {exc.strerror}") from None
    return True


def _remove_profile(folder: Path) -> bool:
    """Remove the profile folder (with what Wireshark wrote into it) if it is ours."""
    if not (folder / PROFILE_MARKER).is_file():
        if folder.exists():
            print(f"left {folder} alone: a profile of that name not made by swtpm-extcap")
        return False
    try:
        shutil.rmtree(folder)
    except PermissionError as exc:
        raise UserError(f"cannot remove {folder}: {exc.strerror}") from None
    return True


def _write_atomic(target: Path, data: bytes, mode: int) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except PermissionError as exc:
        raise UserError(
            f"cannot write {target}: {exc.strerror}; --system needs root (sudo),"
            " or pass --dir DIR"
        ) from None


def check_importable(python: str) -> None:
    """UserError unless ``python`` imports swtpm_extcap without our working folder's help."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [python, "-c", "import swtpm_extcap.cli"],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(
            f"{python} cannot import swtpm_extcap outside this folder: install the package"
            " first (pip install <source folder>), or use install.sh, which makes its own"
            " virtual environment"
        )
