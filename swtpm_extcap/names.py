"""Interface names: the ``swtpm-`` prefix, and the naming rule of a log found by a glob
(shared by the local discovery and the remote one, and read backwards for a log that
has gone).

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

Proxmox VM IDs
--------------
A Proxmox VM ID is ASCII digits only (``[0-9]+``, :func:`is_vm_id`): Proxmox
itself allows nothing else, and ``str.isdigit`` or a regex ``\\d`` would also
take ``١٠٣`` (Arabic-Indic digits), which is no VM and no name Wireshark should
list. Local and remote discovery apply the same rule.

A file matched by several patterns, or already listed as a Proxmox or libvirt
log, is listed once, under its first name. A name depends only on the file's
path and on which other listed files share its key, so it stays the same from
one listing to the next.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

PREFIX = "swtpm-"
HASH_DIGITS = 8

#: a Proxmox VM ID: ASCII digits (a regex \d would take any script's digits)
VM_ID = re.compile(r"[0-9]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_WILDCARD = re.compile(r"[*?[]")


def is_vm_id(text: str) -> bool:
    """True for a Proxmox VM ID: one or more ASCII digits (``"103"``, not ``"١٠٣"``)."""
    return VM_ID.fullmatch(text) is not None


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


def configured_path(name: str, patterns: Iterable[str]) -> str | None:
    """The path that a ``[local] globs`` pattern would have named ``name``, when one
    pattern could have (the naming rule backwards): for a log that was listed and has
    gone, or holds no regular file any more (a directory, a device). With a wildcard
    after the named component, the path is still a pattern."""
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
                if glob_key(pattern, path) != k or any(map(os.path.isfile, glob.glob(path))):
                    continue  # another name, or there after all (listed under another)
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
