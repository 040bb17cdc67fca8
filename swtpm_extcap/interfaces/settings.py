"""The settings file: ``$SWTPM_EXTCAP_CONFIG``, else ``~/.config/swtpm-extcap/config.toml``.

Schema (TOML)::

    [local]
    globs = ["/srv/vms/*/swtpm.log"]   # extra logs to list; absolute, ~ allowed
    # where discovery looks (these are the defaults):
    proxmox_dir = "/run/qemu-server"          # <vmid>-swtpm.log
    pve_conf_dir = "/etc/pve/qemu-server"     # <vmid>.conf, for the VM names
    libvirt_dir = "/var/log/swtpm/libvirt/qemu"  # <domain>-swtpm.log

``[[remote]]`` entries (SSH hosts) are read by
:func:`swtpm_extcap.remote.settings.parse_remotes`, which documents their keys.
Other top-level tables are accepted and ignored, so an older swtpm-extcap
reads a newer file.  Inside
``[local]`` every key is checked: a wrong type or an unknown key is an error
that names the file, the key and what is expected.

A missing file is not an error (no extra logs).  A file that cannot be used
(unreadable, not a regular file, larger than :data:`MAX_CONFIG_BYTES`, TOML
that Python's parser rejects in any way, nesting too deep for it, bad types)
is *not* raised by :func:`load_config`: the message lands in
:attr:`Config.error`, so listing interfaces at Wireshark start-up never fails
because of it (the listing shows it as ``swtpm-config-error``); the capture
path reports it. Whatever the file holds, the message is one line of bounded
length (:func:`swtpm_extcap.errors.clip`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PROG, ConfigError, clip
from ..sources.regular import NotAFileError, read_head
from ..places import LIBVIRT_DIR, PROXMOX_DIR, PVE_CONF_DIR

if TYPE_CHECKING:
    from ..remote.settings import Remote

ENV_VAR = "SWTPM_EXTCAP_CONFIG"
APP_DIR = PROG  # ~/.config/swtpm-extcap
FILE_NAME = "config.toml"
EXAMPLE = '[local]\nglobs = ["/srv/vms/*/swtpm.log"]'

#: a settings file is a few lines; anything larger is not one (``/dev/zero``, a log)
MAX_CONFIG_BYTES = 1 << 20

_FOLDER = "an absolute folder path as a string, e.g. {} = {!r}"
_LOCAL_KEYS = {
    "globs": 'a list of absolute path patterns, e.g. globs = ["/srv/vms/*/swtpm.log"]',
    "proxmox_dir": _FOLDER.format("proxmox_dir", PROXMOX_DIR),
    "pve_conf_dir": _FOLDER.format("pve_conf_dir", PVE_CONF_DIR),
    "libvirt_dir": _FOLDER.format("libvirt_dir", LIBVIRT_DIR),
}


@dataclass(frozen=True)
class Config:
    """Settings, built once and passed down; ``error`` holds why the file was skipped."""

    path: Path | None = None
    globs: tuple[str, ...] = ()
    proxmox_dir: str = PROXMOX_DIR
    pve_conf_dir: str = PVE_CONF_DIR
    libvirt_dir: str = LIBVIRT_DIR
    #: the [[remote]] SSH hosts (swtpm_extcap/remote/discovery.py)
    remotes: tuple[Remote, ...] = ()
    error: str | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` if the file was skipped because it is broken."""
        if self.error is not None:
            raise ConfigError(self.error)


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the settings file is: ``$SWTPM_EXTCAP_CONFIG``, else the per-user default.

    The default is ``$XDG_CONFIG_HOME/swtpm-extcap/config.toml`` when
    ``XDG_CONFIG_HOME`` is an absolute path, else ``$HOME/.config/...``
    (``%APPDATA%\\swtpm-extcap\\config.toml`` on Windows).
    """
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_VAR, "")
    if explicit:
        return Path(explicit).expanduser()
    return _user_config_dir(env) / APP_DIR / FILE_NAME


def _user_config_dir(env: Mapping[str, str]) -> Path:
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"])
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec says: ignore a relative value
        return Path(xdg)
    return _home(env) / ".config"


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or env.get("USERPROFILE")
    return Path(home) if home else Path.home()


def load_config(
    path: Path | str | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the settings file; never raises for a problem with the file itself.

    ``path`` overrides :func:`config_path`.  A missing default file gives an
    empty :class:`Config`; a file named by ``$SWTPM_EXTCAP_CONFIG`` (or
    ``path``) that does not exist gives a Config whose ``error`` says so.
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or bool(env.get(ENV_VAR, ""))
    where = Path(path) if path is not None else config_path(env)
    try:
        data = _read_settings(where)
    except FileNotFoundError:
        if not explicit:
            return Config(path=None)
        return Config(path=where, error=f"config file {where} does not exist ({ENV_VAR})")
    except NotAFileError as exc:
        return Config(path=where, error=(
            f"config file {where} is {exc.kind}, not a regular file; point {ENV_VAR} at a"
            " TOML file"))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return Config(path=where, error=f"cannot read config file {where}: {reason}")
    except ConfigError as exc:
        return Config(path=where, error=str(exc))
    try:
        return parse_config(data, where, home=_home(env))
    except ConfigError as exc:  # its lines are clipped where they are shown
        return Config(path=where, error=str(exc))
    except RecursionError:  # while checking a value nested deep below the parser's limit
        return Config(path=where, error=f"config file {where} {_TOO_DEEP}")
    except Exception as exc:  # noqa: BLE001 - a listing must show a settings error, not nothing
        return Config(path=where, error=clip(
            f"config file {where} cannot be used: {type(exc).__name__}: {exc}"))


def _read_settings(where: Path) -> bytes:
    """The file's bytes: a regular file of at most :data:`MAX_CONFIG_BYTES`, opened
    without blocking and checked on the open descriptor
    (:func:`~swtpm_extcap.sources.regular.read_head`)."""
    data, size = read_head(where, MAX_CONFIG_BYTES)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {where} is {size} bytes, more than a settings file holds"
            f" ({MAX_CONFIG_BYTES} at most); point {ENV_VAR} at a TOML file"
        )
    if len(data) > MAX_CONFIG_BYTES:  # it grew after the check
        raise ConfigError(f"config file {where} is larger than {MAX_CONFIG_BYTES} bytes")
    return data


def parse_config(data: bytes | str, source: Path, *, home: Path | None = None) -> Config:
    """Parse and check TOML text (pure; ``source`` only names the file in errors).

    Raises :class:`ConfigError` naming ``source``, the key and what is expected.
    """
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    doc = _toml_loads(text, source)
    local = doc.get("local", {})
    if not isinstance(local, dict):
        raise ConfigError(
            f"config file {source}: 'local' must be a table ([local]), got {_kind(local)}"
        )
    for key in local:
        if key not in _LOCAL_KEYS:
            known = ", ".join(sorted(_LOCAL_KEYS))
            raise ConfigError(
                f"config file {source}: unknown key local.{clip(key, 80)} (known: {known})"
            )
    globs = _globs(local.get("globs", []), source, home)
    folders = {
        key: _folder(local[key], key, source, home)
        for key in ("proxmox_dir", "pve_conf_dir", "libvirt_dir")
        if key in local
    }
    remotes: tuple[Remote, ...] = ()
    if "remote" in doc:
        from ..remote.settings import parse_remotes

        remotes = parse_remotes(doc["remote"], source)
    return Config(path=source, globs=globs, remotes=remotes, **folders)


def _expand_home(text: str, home: Path | None) -> str:
    if text == "~" or text.startswith("~/"):
        return str((home if home is not None else Path.home()) / text[2:])
    return text


def _folder(value: Any, key: str, source: Path, home: Path | None) -> str:
    expected = _LOCAL_KEYS[key]
    if not isinstance(value, str) or not os.path.isabs(_expand_home(value, home)):
        got = repr(value) if isinstance(value, str) else _kind(value)
        raise ConfigError(f"config file {source}: local.{key} must be {expected}; got {got}")
    return _expand_home(value, home)


def _globs(value: Any, source: Path, home: Path | None) -> tuple[str, ...]:
    expected = _LOCAL_KEYS["globs"]
    if not isinstance(value, list):
        raise ConfigError(
            f"config file {source}: local.globs must be {expected}; got {_kind(value)}"
        )
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(
                f"config file {source}: local.globs[{i}] must be a non-empty string"
                f" (a path pattern); got {_kind(item)}"
            )
        pattern = _expand_home(item, home)
        if not os.path.isabs(pattern):
            raise ConfigError(
                f"config file {source}: local.globs[{i}] = {item!r} must be an absolute"
                " path pattern (start with / or ~/)"
            )
        out.append(pattern)
    return tuple(out)


def _kind(value: Any) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a float",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _toml_loads(text: str, source: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.9/3.10 only
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(
                f"config file {source}: reading it needs Python 3.11+ or the tomli package"
                " (pip install tomli into swtpm-extcap's environment)"
            ) from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"config file {source} {_TOO_DEEP}") from None
    except ValueError as exc:  # TOMLDecodeError, and what it lets through (a 5000-digit number)
        raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None


#: a file whose tables or arrays nest deeper than Python's TOML parser goes
_TOO_DEEP = (
    "nests its tables or arrays too deep for Python's TOML parser (a settings file needs"
    " two or three levels)"
)
