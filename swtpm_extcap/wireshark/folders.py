"""The folders of the installed Wireshark: what ``tshark -G folders`` says, else its rule.

The one folder rule of the installer (:mod:`swtpm_extcap.wireshark.install`).
``tshark -G folders`` reports the folders for the ``$HOME`` it runs under, so
it is asked first:

* extcap: ``--dir DIR`` if given. Personal (default): the "Personal Extcap path"
  (Wireshark 4.2 and later print it; 4.4 and later may name a per-application
  subfolder such as ``.../extcap/wireshark``); without that line Wireshark 4.2+
  ``~/.local/lib/wireshark/extcap``; 4.0 and 4.1 ``<Personal configuration>/extcap``,
  i.e. ``~/.config/wireshark/extcap`` (``$XDG_CONFIG_HOME/wireshark/extcap`` when
  that is set). System-wide: the "Global Extcap path" (4.2+) or "Extcap path" (4.0).
* Lua plugin: the "Personal Lua Plugins" folder (4.0 and 4.4 both print it:
  ``~/.local/lib/wireshark/plugins``), that folder as the fallback;
  system-wide: "Global Lua Plugins".
* profile: ``<Personal configuration>/profiles/SWTPM`` (``~/.config/wireshark``,
  or ``$XDG_CONFIG_HOME/wireshark``); system-wide: ``<Global configuration>/profiles/SWTPM``.
* Windows: ``%APPDATA%\\Wireshark\\{extcap,plugins,profiles}`` unless tshark says otherwise.

Wireshark ignores ``WIRESHARK_EXTCAP_DIR`` and ``WIRESHARK_PLUGIN_DIR`` when run
as root; the folders above work for root too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

APT_HINT = (
    "install it, e.g. `sudo apt install tshark` (Debian/Ubuntu),"
    " or from https://www.wireshark.org/download.html"
)
_VERSION = re.compile(r"(\d+)\.(\d+)\.\d+")
_WINDOWS_TSHARK = r"C:\Program Files\Wireshark\tshark.exe"


@dataclass(frozen=True)
class Wireshark:
    """What the installed Wireshark says about itself."""

    program: str
    version: tuple[int, int]
    folders: Mapping[str, str]


def find_wireshark() -> Wireshark:
    """Ask tshark (or wireshark) for its version and folders; UserError if neither exists."""
    candidates = [shutil.which("tshark"), shutil.which("wireshark")]
    if sys.platform == "win32" and os.path.exists(_WINDOWS_TSHARK):
        candidates.append(_WINDOWS_TSHARK)
    for program in candidates:
        if program is None:
            continue
        version = parse_version(_run([program, "--version"]))
        if version is None:
            continue
        folders: Mapping[str, str] = {}
        if "tshark" in os.path.basename(program).lower():
            folders = parse_folders(_run([program, "-G", "folders"]))
        return Wireshark(program=program, version=version, folders=folders)
    raise UserError(f"Wireshark (tshark or wireshark) not found on PATH: {APT_HINT}")


def parse_version(text: str) -> tuple[int, int] | None:
    """Major and minor from the first line of ``tshark --version``/``wireshark --version``."""
    first = text.splitlines()[0] if text else ""
    m = _VERSION.search(first)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_folders(text: str) -> dict[str, str]:
    """``tshark -G folders`` lines (``Name:<tab>path``) as a dict; the first of a name wins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("\t")
        name = name.strip().rstrip(":")
        if sep and name and value.strip():
            out.setdefault(name, value.strip())
    return out


def extcap_dir(
    ws: Wireshark, *, system: bool, environ: Mapping[str, str], windows: bool = False
) -> Path:
    """The extcap folder to use (the rule in the module docstring)."""
    if system:
        return _reported(ws, ("Global Extcap path", "Extcap path"), "global extcap folder", "pass --dir DIR")
    if ws.folders.get("Personal Extcap path"):
        return Path(ws.folders["Personal Extcap path"])
    if windows:
        return _appdata(environ) / "Wireshark" / "extcap"
    if ws.version >= (4, 2):
        return _home(environ) / ".local" / "lib" / "wireshark" / "extcap"
    return _personal_config(ws, environ) / "extcap"


def plugin_dir(
    ws: Wireshark, *, system: bool, environ: Mapping[str, str], windows: bool = False
) -> Path:
    """The Lua plugin folder (the rule in the module docstring)."""
    if system:
        return _reported(
            ws, ("Global Lua Plugins", "Global Plugins"), "global Lua plugin folder",
            "install without --system",
        )
    if ws.folders.get("Personal Lua Plugins"):
        return Path(ws.folders["Personal Lua Plugins"])
    if windows:
        return _appdata(environ) / "Wireshark" / "plugins"
    return _home(environ) / ".local" / "lib" / "wireshark" / "plugins"


def _reported(ws: Wireshark, names: tuple[str, ...], what: str, instead: str) -> Path:
    """The first folder of ``names`` that ``tshark -G folders`` reported; else one line."""
    for name in names:
        if ws.folders.get(name):
            return Path(ws.folders[name])
    raise UserError(
        f"{ws.program} does not report its {what} (Wireshark shows it under"
        f" Help > About > Folders); {instead}"
    )


def profiles_dir(
    ws: Wireshark, *, system: bool, environ: Mapping[str, str], windows: bool = False
) -> Path:
    """The configuration profiles folder (the rule in the module docstring)."""
    if system:
        return _reported(
            ws, ("Global configuration",), "global configuration folder", "install without --system"
        ) / "profiles"
    if windows and not ws.folders.get("Personal configuration"):
        return _appdata(environ) / "Wireshark" / "profiles"
    return _personal_config(ws, environ) / "profiles"


def is_root() -> bool:
    """True when running as root (never on Windows)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def _appdata(environ: Mapping[str, str]) -> Path:
    appdata = environ.get("APPDATA")
    if not appdata:
        raise UserError("APPDATA is not set; pass --dir DIR")
    return Path(appdata)


def _personal_config(ws: Wireshark, environ: Mapping[str, str]) -> Path:
    """``<Personal configuration>``: what tshark says, else Wireshark's XDG rule."""
    if ws.folders.get("Personal configuration"):
        return Path(ws.folders["Personal configuration"])
    xdg = environ.get("XDG_CONFIG_HOME", "")
    config = Path(xdg) if xdg and os.path.isabs(xdg) else _home(environ) / ".config"
    return config / "wireshark"


def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout
