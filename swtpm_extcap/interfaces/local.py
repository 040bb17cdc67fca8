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

"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from ..names import HASH_DIGITS, PREFIX, VM_ID, glob_key, sanitize
from ..sources import LogLocation
from ..sources.regular import read_head
from ..swtpmlog.level import level_note, levels_from_log_values, log_values
from .demo import DEMO_DISPLAY, DEMO_NAME, demo_log_path
from .interface import Interface, Origin, safe_display
from .settings import Config

__all__ = ["discover"]

#: a VM's name is in the first lines of its Proxmox .conf: no more of it is read
MAX_CONF_BYTES = 64 * 1024
#: the listing stops a glob after this many matches in all, or after this long:
#: a pattern such as ``/*/*/*/*/*`` must not hang Wireshark's start-up
MAX_GLOB_MATCHES = 1000
MAX_GLOB_SECONDS = 2.0

_PROXMOX_LOG = re.compile(rf"({VM_ID.pattern})-swtpm\.log")  # ASCII digits only
_LIBVIRT_LOG = re.compile(r"(.+)-swtpm\.log", re.DOTALL)
_PVE_NAME = re.compile(r"name:\s*(\S.*?)\s*")


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


def _proxmox(folder: str, conf_dir: str, seen: set[tuple[int, int]]) -> Iterator[_Found]:
    for entry in _scan(folder):
        m = _PROXMOX_LOG.fullmatch(entry.name)
        if m is None or not _new_file(entry.path, seen):
            continue
        vmid = m.group(1)
        vm_name = _pve_name(os.path.join(conf_dir, f"{vmid}.conf"))
        display = f"SWTPM VM {vmid} ({vm_name})" if vm_name else f"SWTPM VM {vmid}"
        yield _Found(entry.path, "proxmox", vmid, vm_name, vmid, safe_display(display))


def _libvirt(folder: str, seen: set[tuple[int, int]]) -> Iterator[_Found]:
    for entry in _scan(folder):
        m = _LIBVIRT_LOG.fullmatch(entry.name)
        if m is None or not _new_file(entry.path, seen):
            continue
        domain = m.group(1)
        display = safe_display(f"SWTPM libvirt {domain}")
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
                display = safe_display(f"SWTPM {key} (glob)")
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
    """The ``name:`` of a Proxmox VM config, from its main section only.

    Read like the settings file (a regular file, opened without blocking, its
    first :data:`MAX_CONF_BYTES` only): a ``.conf`` that is a fifo or
    ``/dev/zero`` must not hang the listing nor fill the memory."""
    try:
        data, _ = read_head(conf, MAX_CONF_BYTES)
    except OSError:  # missing, unreadable, not a regular file: no name
        return None
    for line in data[:MAX_CONF_BYTES].decode("utf-8", errors="replace").splitlines():
        if line.startswith("["):  # snapshot and pending sections follow
            return None
        m = _PVE_NAME.fullmatch(line)
        if m:
            return m.group(1)
    return None


def running_levels(proc: str = "/proc") -> dict[str, int]:
    """Log path -> level of every swtpm running here (empty where /proc is not readable)."""
    values: list[str] = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "comm"), "rb") as fh:
                if fh.read().strip() != b"swtpm":
                    continue
            with open(os.path.join(proc, entry, "cmdline"), "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        values += log_values(a.decode("utf-8", "surrogateescape") for a in argv)
    return levels_from_log_values(values)
