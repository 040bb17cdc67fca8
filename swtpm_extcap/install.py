"""``swtpm-extcap install``: put a launcher for this interpreter into Wireshark's extcap folder.

Which folder (the same rule as ``install.sh``):

* ``--dir DIR``: that folder.
* personal (default): the "Personal Extcap path" that ``tshark -G folders``
  reports (Wireshark 4.2 and later print it; 4.4 and later may name a
  per-application subfolder such as ``.../extcap/wireshark``). Without that
  line: Wireshark 4.2+ ``~/.local/lib/wireshark/extcap``; 4.0 and 4.1
  ``<Personal configuration>/extcap``, i.e. ``~/.config/wireshark/extcap``
  (``$XDG_CONFIG_HOME/wireshark/extcap`` when that is set). On Windows
  ``%APPDATA%\\Wireshark\\extcap``.
* ``--system``: the "Global Extcap path" (4.2+) or "Extcap path" (4.0) that
  ``tshark -G folders`` reports.

The launcher names the running interpreter by absolute path: on POSIX a
Python script ``swtpm-extcap`` (mode 0755) whose ``#!`` line is
``sys.executable``; on Windows ``swtpm-extcap.bat``:
``@"C:\\path\\to\\python.exe" -m swtpm_extcap %*`` (written, not tested here).
Wireshark ignores ``WIRESHARK_EXTCAP_DIR`` when run as root; the folders above
work for root too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

LAUNCHER = "swtpm-extcap"
# Everything after the #! line of extcap/swtpm-extcap (tests check they agree).
LAUNCHER_BODY = '''\
"""Wireshark extcap launcher for swtpm-extcap: SWTPM logs as capture interfaces.

Installed copies (install.sh, `python -m swtpm_extcap install`) start with a #!
line that names the interpreter of swtpm-extcap's environment by absolute path.
"""
import sys

from swtpm_extcap.cli import main

sys.exit(main())
'''
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


def add_install_parser(subparsers: _SubParsers) -> argparse.ArgumentParser:
    """Add the ``install`` command (options: ``--system``, ``--uninstall``, ``--dir``)."""
    parser = subparsers.add_parser(
        "install",
        help="add (or remove) the extcap launcher in Wireshark's extcap folder",
        description="Write a launcher for this Python into the extcap folder of the installed"
        " Wireshark, so that its interface list shows every VM's SWTPM log (swtpm-<vm>) and"
        " swtpm-demo. For a self-contained install with its own virtual environment, use"
        " install.sh from the source tree.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--system",
        action="store_true",
        help="use Wireshark's global extcap folder (needs root) instead of your personal one",
    )
    where.add_argument(
        "--dir", metavar="DIR", help="use this extcap folder (default: ask tshark -G folders)"
    )
    parser.add_argument(
        "--uninstall", action="store_true", help="remove the launcher instead of writing it"
    )
    return parser


def install_main(ns: argparse.Namespace) -> int:
    """Run ``install`` from parsed arguments; print what was done on stdout."""
    windows = sys.platform == "win32"
    if ns.dir:
        folder = Path(ns.dir).expanduser().absolute()
    else:
        ws = find_wireshark()
        print(f"Wireshark {ws.version[0]}.{ws.version[1]} ({ws.program})")
        folder = extcap_dir(ws, system=ns.system, environ=os.environ, windows=windows)
    target = folder / (LAUNCHER + (".bat" if windows else ""))
    if ns.uninstall:
        if uninstall_launcher(target):
            print(f"removed {target}")
        else:
            print(f"nothing to remove: no {target}")
        return 0
    python = os.path.abspath(sys.executable)
    check_importable(python)
    write_launcher(target, python, windows=windows)
    print(f"wrote {target} -> {python}")
    print("try it:\n  tshark -D | grep swtpm\n  tshark -i swtpm-demo -c 10")
    return 0


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
    folders = ws.folders
    if system:
        found = folders.get("Global Extcap path") or folders.get("Extcap path")
        if not found:
            raise UserError(
                f"{ws.program} does not report its global extcap folder; pass --dir DIR"
                " (Wireshark shows it under Help > About > Folders)"
            )
        return Path(found)
    if folders.get("Personal Extcap path"):
        return Path(folders["Personal Extcap path"])
    if windows:
        appdata = environ.get("APPDATA")
        if not appdata:
            raise UserError("APPDATA is not set; pass --dir DIR")
        return Path(appdata) / "Wireshark" / "extcap"
    home = Path(environ.get("HOME") or Path.home())
    if ws.version >= (4, 2):
        return home / ".local" / "lib" / "wireshark" / "extcap"
    if folders.get("Personal configuration"):
        return Path(folders["Personal configuration"]) / "extcap"
    xdg = environ.get("XDG_CONFIG_HOME", "")
    config = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return config / "wireshark" / "extcap"


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
    text = launcher_text(python, windows=windows)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except PermissionError as exc:
        raise UserError(
            f"cannot write {target}: {exc.strerror}; --system needs root (sudo),"
            " or pass --dir DIR"
        ) from None


def uninstall_launcher(target: Path) -> bool:
    """Remove the launcher; False if it was not there."""
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    except PermissionError as exc:
        raise UserError(f"cannot remove {target}: {exc.strerror}") from None
    return True


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


def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout
