"""Which SWTPM logs exist here, as capture interfaces; no log is opened or read.

Sources, in listing order (names are unique; the order is stable):

1. Proxmox VE: ``/run/qemu-server/<vmid>-swtpm.log`` is ``swtpm-<vmid>``, by
   numeric vmid, shown as ``SWTPM VM <vmid> (<name>)`` with the ``name:`` line
   of ``/etc/pve/qemu-server/<vmid>.conf`` when that file is readable.
2. libvirt: ``/var/log/swtpm/libvirt/qemu/<domain>-swtpm.log`` is
   ``swtpm-<domain>``, by domain name (characters outside ``A-Za-z0-9._-``
   become ``_``, as in step 4 below).
3. The ``[local] globs`` of the settings file, in file order, each pattern's
   matches sorted by path.
4. ``swtpm-demo``: the bundled demo log (:func:`demo_log_path`), always last.

A log the user may not read (say root-owned, mode 0600) is still listed, with
``readable=False``; its source's ``explain()`` says how to fix that.

Names of logs found by a glob
-----------------------------
Each file matched by a ``[local] globs`` pattern is named ``swtpm-<key>``:

1. Take the first component of the pattern that has a wildcard (``*``, ``?``
   or ``[``), or the file name if the pattern has none, and the component of
   the file's path in the same place.
2. Drop the literal text that the pattern component has before its first
   wildcard and after its last one: ``vm-*.log`` matching ``vm-web1.log``
   gives ``web1``; ``*`` matching the folder ``web1`` gives ``web1``. If
   nothing is left, keep the whole component.
3. Drop a trailing ``.log``, then a trailing ``-swtpm`` or ``_swtpm``
   (``web1-swtpm.log`` gives ``web1``).
4. Replace each run of characters other than ``A-Z a-z 0-9 . _ -`` by ``_``
   and strip ``.``, ``_`` and ``-`` from both ends; if nothing is left, the
   key is ``log``.
5. If several matches get the same key, or ``swtpm-<key>`` is already the name
   of a Proxmox, libvirt or the demo log, each of those matches is named
   ``swtpm-<key>-<hash>`` instead, ``<hash>`` being the first 8 hex digits of
   the SHA-1 of its absolute path. (libvirt names follow the same step when
   they clash with a Proxmox name or ``swtpm-demo``; Proxmox names never
   change.)

A file matched by several patterns, or already listed as a Proxmox or libvirt
log, is listed once, under its first name. A name depends only on the file's
path and on which other listed files share its key, so it stays the same from
one listing to the next.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from .config import Config
from .demo import DEMO_DISPLAY, DEMO_NAME, demo_log_path
from .errors import UserError, printable
from .sources import LogLocation

__all__ = ["DEMO_NAME", "Interface", "demo_log_path", "discover", "find_interface"]

PREFIX = "swtpm-"
HASH_DIGITS = 8
#: the listing stops a glob after this many matches in all, or after this long:
#: a pattern such as ``/*/*/*/*/*`` must not hang Wireshark's start-up
MAX_GLOB_MATCHES = 1000
MAX_GLOB_SECONDS = 2.0

#: where a log was found (not to be confused with logparse.Kind, a record's kind)
Origin = Literal["proxmox", "libvirt", "glob", "demo"]

_PROXMOX_LOG = re.compile(r"(\d+)-swtpm\.log")
_LIBVIRT_LOG = re.compile(r"(.+)-swtpm\.log", re.DOTALL)
_PVE_NAME = re.compile(r"name:\s*(\S.*?)\s*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_WILDCARD = re.compile(r"[*?[]")
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
    level: int | None = None  # its running swtpm's log level (loglevel.py); None: not known

    @property
    def path(self) -> Path:
        """The log's path on its host."""
        return Path(self.location.path)


@dataclass(frozen=True)
class _Found:
    path: str
    origin: Origin
    vm_id: str
    vm_name: str | None
    key: str  # sanitized, before the collision rule
    display: str


def discover(
    config: Config,
    *,
    proxmox_dir: str | os.PathLike[str] | None = None,
    pve_conf_dir: str | os.PathLike[str] | None = None,
    libvirt_dir: str | os.PathLike[str] | None = None,
    notes: list[str] | None = None,
) -> list[Interface]:
    """List the interfaces, Proxmox by vmid, then libvirt, then globs, then the demo.

    The globs stop after :data:`MAX_GLOB_MATCHES` matches or
    :data:`MAX_GLOB_SECONDS`; ``notes`` (if given) then gets one line that says so.

    The folders default to the settings (``config.proxmox_dir`` etc., whose
    defaults are ``/run/qemu-server``, ``/etc/pve/qemu-server`` and
    ``/var/log/swtpm/libvirt/qemu``). Never raises for a missing or unreadable
    folder, nor for a broken settings file (``config.error`` is left for the
    capture path to report).
    """
    proxmox_dir = config.proxmox_dir if proxmox_dir is None else proxmox_dir
    pve_conf_dir = config.pve_conf_dir if pve_conf_dir is None else pve_conf_dir
    libvirt_dir = config.libvirt_dir if libvirt_dir is None else libvirt_dir
    seen: set[tuple[int, int]] = set()
    taken = {DEMO_NAME}
    out: list[Interface] = []

    proxmox = sorted(
        _proxmox(os.fspath(proxmox_dir), os.fspath(pve_conf_dir), seen),
        key=lambda f: (int(f.vm_id), f.vm_id),
    )
    for found in proxmox:  # digits only: never "swtpm-demo"; "0103" and "103" stay apart
        taken.add(PREFIX + found.key)
        out.append(_interface(found, PREFIX + found.key))

    libvirt = sorted(_libvirt(os.fspath(libvirt_dir), seen), key=lambda f: f.vm_id)
    out.extend(_name_all(libvirt, taken))
    globbed = _Globbed(config.globs, seen)
    out.extend(_name_all(list(globbed), taken))
    if globbed.cut is not None and notes is not None:
        notes.append(globbed.cut + f"; narrow the [local] globs in {config.path}")
    if out:  # the level each running swtpm logs at, from its command line
        from .loglevel import level_note, running_levels

        levels = running_levels()
        for i, iface in enumerate(out):
            level = levels.get(os.path.normpath(iface.location.path))
            if level is not None:
                out[i] = replace(iface, level=level, display=iface.display + level_note(level))

    demo = demo_log_path()
    out.append(
        Interface(
            name=DEMO_NAME,
            display=DEMO_DISPLAY,
            location=LogLocation(str(demo)),
            origin="demo",
            vm_id="demo",
            vm_name=None,
            readable=os.access(demo, os.R_OK),
        )
    )
    return out


def find_interface(
    name: str,
    config: Config,
    *,
    proxmox_dir: str | os.PathLike[str] | None = None,
    pve_conf_dir: str | os.PathLike[str] | None = None,
    libvirt_dir: str | os.PathLike[str] | None = None,
) -> Interface:
    """The interface called ``name``; :class:`UserError` saying why if there is none."""
    proxmox_dir = config.proxmox_dir if proxmox_dir is None else proxmox_dir
    libvirt_dir = config.libvirt_dir if libvirt_dir is None else libvirt_dir
    interfaces = discover(
        config, proxmox_dir=proxmox_dir, pve_conf_dir=pve_conf_dir, libvirt_dir=libvirt_dir
    )
    for interface in interfaces:
        if interface.name == name:
            return interface
    from .ssh_interfaces import find_remote_interface

    remote = find_remote_interface(name, config)  # swtpm-<remote>-<vm> of a [[remote]] host
    if remote is not None:
        return remote
    listing = "refresh the interface list (Capture > Refresh Interfaces) to see the logs there are"
    vmid = re.fullmatch(r"swtpm-(\d+)", name)
    gone = _configured_path(name, config.globs)
    if gone is not None:
        msg = (
            f"no interface {name}: the configured log {gone} (a match of the [local] globs"
            f" in {config.path}) is missing: deleted or moved; {listing}"
        )
    elif vmid:
        log = Path(proxmox_dir) / f"{vmid.group(1)}-swtpm.log"
        msg = (
            f"no interface {name}: VM {vmid.group(1)} has no log at {log}; is the VM running,"
            " with a TPM, and its swtpm logging at level 20 (see `ps aux | grep swtpm`)?"
            f" {listing}"
        )
    elif name.startswith(PREFIX):
        log = Path(libvirt_dir) / f"{name[len(PREFIX):]}-swtpm.log"
        if config.globs:
            where = f"no match of the [local] globs in {config.path} has that name"
        else:
            where = "no [local] globs are configured"
        msg = f"no interface {name}: no libvirt log at {log}, and {where}; {listing}"
    else:
        msg = f"no interface {name}: interface names start with {PREFIX!r}; {listing}"
    if config.error is not None:
        msg += f"; also, the settings file was skipped: {config.error}"
    raise UserError(msg)


def _configured_path(name: str, patterns: Iterable[str]) -> str | None:
    """The path that a ``[local] globs`` pattern would have named ``name``, when one
    pattern could have (the naming rule backwards): for a log that was listed and has
    gone. With a wildcard after the named component, the path is still a pattern."""
    if not name.startswith(PREFIX):
        return None
    import glob
    import hashlib

    key = name[len(PREFIX):]
    tries: list[tuple[str, str]] = []
    hashed = re.fullmatch(r"(.+)-([0-9a-f]{%d,40})" % HASH_DIGITS, key)
    if hashed:  # swtpm-<key>-<hash>: the hash says which path it was
        tries.append((hashed.group(1), hashed.group(2)))
    tries.append((key, ""))
    for k, digest in tries:
        for pattern in patterns:
            for path in _candidates(pattern, k):
                if glob_key(pattern, path) != k or glob.glob(path):
                    continue  # another name, or there after all (not a regular file)
                full = os.path.abspath(path).encode("utf-8", "surrogateescape")
                if hashlib.sha1(full).hexdigest().startswith(digest):
                    return path
    return None


def _candidates(pattern: str, key: str) -> Iterator[str]:
    """Paths that the pattern's named component (step 1) turns into ``key``: the
    component's literal head and tail around the key, with the suffixes step 3 drops."""
    parts = pattern.split("/")
    index = next((i for i, part in enumerate(parts) if _WILDCARD.search(part)), None)
    if index is None:  # a literal path: its own name
        yield pattern
        return
    pat = parts[index]
    first = _WILDCARD.search(pat)
    head = pat[: first.start()] if first else ""
    tail = pat[_last_wildcard_end(pat) :]
    for middle in (key, f"{key}-swtpm", f"{key}_swtpm"):
        for component in (head + middle + tail, head + middle + ".log" + tail):
            yield "/".join([*parts[:index], component, *parts[index + 1 :]])


def sanitize(text: str) -> str:
    """Step 4 of the naming rule: ``[A-Za-z0-9._-]`` only, never empty."""
    return _UNSAFE.sub("_", text).strip("._-") or "log"


def glob_key(pattern: str, path: str) -> str:
    """Steps 1 to 4 of the naming rule: the key of ``path``, a match of ``pattern``."""
    pparts = pattern.split("/")
    mparts = path.split("/")
    index = next((i for i, part in enumerate(pparts) if _WILDCARD.search(part)), None)
    if index is None or len(pparts) != len(mparts):
        component = mparts[-1]
    else:
        pat, component = pparts[index], mparts[index]
        first = _WILDCARD.search(pat)
        head = pat[: first.start()] if first else ""
        tail = pat[_last_wildcard_end(pat) :]
        if (
            len(component) > len(head) + len(tail)
            and component.startswith(head)
            and component.endswith(tail)
        ):
            component = component[len(head) : len(component) - len(tail)]
    key = component
    if key.endswith(".log"):
        key = key[: -len(".log")]
    for suffix in ("-swtpm", "_swtpm"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
            break
    return sanitize(key)


def _last_wildcard_end(pat: str) -> int:
    end = max(pat.rfind("*"), pat.rfind("?")) + 1
    close = pat.rfind("]")
    if close >= 0 and "[" in pat[:close]:
        end = max(end, close + 1)
    return end


def _proxmox(folder: str, conf_dir: str, seen: set[tuple[int, int]]) -> Iterator[_Found]:
    for entry in _scan(folder):
        m = _PROXMOX_LOG.fullmatch(entry.name)
        if m is None or not _new_file(entry.path, seen):
            continue
        vmid = m.group(1)
        vm_name = _pve_name(os.path.join(conf_dir, f"{vmid}.conf"))
        display = f"SWTPM VM {vmid} ({vm_name})" if vm_name else f"SWTPM VM {vmid}"
        yield _Found(entry.path, "proxmox", vmid, vm_name, vmid, _safe_display(display))


def _libvirt(folder: str, seen: set[tuple[int, int]]) -> Iterator[_Found]:
    for entry in _scan(folder):
        m = _LIBVIRT_LOG.fullmatch(entry.name)
        if m is None or not _new_file(entry.path, seen):
            continue
        domain = m.group(1)
        display = _safe_display(f"SWTPM libvirt {domain}")
        yield _Found(entry.path, "libvirt", domain, domain, sanitize(domain), display)


class _Globbed:
    """The matches of the ``[local] globs``, bounded in number and time; ``cut``
    says why the listing stopped early (None: it did not).

    The patterns are expanded in a daemon thread, so that the time bound holds
    even while a pattern walks a large tree without a match; a thread left
    behind stops at its next match."""

    def __init__(self, patterns: Iterable[str], seen: set[tuple[int, int]]) -> None:
        self.patterns = tuple(patterns)
        self.seen = seen
        self.cut: str | None = None

    def __iter__(self) -> Iterator[_Found]:
        matches = self._expand()
        for pattern, paths in matches:
            for path in sorted(paths):
                if not _new_file(path, self.seen):
                    continue
                key = glob_key(pattern, path)
                path = os.path.abspath(path)
                display = _safe_display(f"SWTPM {key} (glob)")
                yield _Found(path, "glob", key, None, key, display)

    def _expand(self) -> list[tuple[str, list[str]]]:
        if not self.patterns:
            return []
        import glob
        import threading

        found: list[tuple[str, list[str]]] = [(p, []) for p in self.patterns]
        enough = threading.Event()  # set by either side: stop expanding
        done = threading.Event()
        over: list[bool] = []

        def expand() -> None:
            left = MAX_GLOB_MATCHES
            try:
                for pattern, paths in found:
                    for path in glob.iglob(pattern):
                        if enough.is_set():
                            return
                        if left <= 0:
                            over.append(True)
                            return
                        paths.append(path)
                        left -= 1
            finally:
                done.set()

        threading.Thread(target=expand, name="glob", daemon=True).start()
        finished = done.wait(MAX_GLOB_SECONDS)
        enough.set()
        if over or not finished:
            count = sum(len(paths) for _, paths in found)
            self.cut = (
                f"SWTPM listing cut at {count} glob matches"
                f" ({MAX_GLOB_MATCHES} at most, {MAX_GLOB_SECONDS:g} s at most)"
            )
        return [(pattern, list(paths)) for pattern, paths in found]


def _name_all(found: list[_Found], taken: set[str]) -> Iterator[Interface]:
    """Step 5 of the naming rule, over one source's matches."""
    counts: dict[str, int] = {}
    for f in found:
        counts[f.key] = counts.get(f.key, 0) + 1
    clashing = {key for key, n in counts.items() if n > 1 or PREFIX + key in taken}
    names = [_hashed(f, taken) if f.key in clashing else PREFIX + f.key for f in found]
    for f, name in zip(found, names):
        taken.add(name)
        yield _interface(f, name)


def _hashed(found: _Found, taken: set[str]) -> str:
    import hashlib

    digest = hashlib.sha1(os.path.abspath(found.path).encode("utf-8", "surrogateescape"))
    hexdigits = digest.hexdigest()
    for width in range(HASH_DIGITS, len(hexdigits) + 1):
        name = f"{PREFIX}{found.key}-{hexdigits[:width]}"
        if name not in taken:
            return name
    raise AssertionError(f"two listed files share the path {found.path}")  # pragma: no cover


def _interface(found: _Found, name: str) -> Interface:
    return Interface(
        name=name,
        display=found.display,
        location=LogLocation(found.path),
        origin=found.origin,
        vm_id=found.vm_id,
        vm_name=found.vm_name,
        readable=os.access(found.path, os.R_OK),
    )


def _scan(folder: str) -> list[os.DirEntry[str]]:
    """The folder's entries by name (so that which of two hard links wins is stable)."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda entry: entry.name)
    except OSError:  # missing, not a folder, or not ours to list
        return []


def _new_file(path: str, seen: set[tuple[int, int]]) -> bool:
    """True for a regular file (symlinks followed) not listed yet."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if (st.st_mode & 0o170000) != 0o100000:  # not S_ISREG
        return False
    ident = (st.st_dev, st.st_ino)
    if ident in seen:
        return False
    seen.add(ident)
    return True


def _pve_name(conf: str) -> str | None:
    """The ``name:`` of a Proxmox VM config, from its main section only."""
    try:
        with open(conf, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("["):  # snapshot and pending sections follow
                    return None
                m = _PVE_NAME.fullmatch(line)
                if m:
                    return m.group(1)
    except OSError:
        return None
    return None


def _safe_display(text: str) -> str:
    """No braces or control characters: the extcap list format uses ``{...}``;
    a file name's bytes that are not UTF-8 shown as ``\\xff``."""
    return _DISPLAY_UNSAFE.sub("?", printable(text))
