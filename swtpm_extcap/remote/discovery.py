"""Remote hosts of the settings file (``[[remote]]``) and the VM logs found on them.

Schema (TOML; ``name`` and ``host`` are required)::

    [[remote]]
    name = "pve1"            # interface names: swtpm-pve1-103
    host = "pve1.lan"        # or an alias from ~/.ssh/config
    port = 22                # default: ~/.ssh/config, else 22
    user = "root"            # default: ~/.ssh/config, else the local user
    priv = "sudo"            # none | sudo | doas: for logs only root can read
    key = "~/.ssh/id_pve"    # default: ~/.ssh/config, the agent, ~/.ssh/id_*
    host_keys = "strict"     # strict | accept-new (trust an unknown key on first use)
    globs = ["/srv/vms/*/swtpm.log"]   # extra logs on that host (~/ is the remote home)
    nodes = { pve2 = "10.0.0.2" }      # Proxmox cluster: node name -> host (default: the name)
    # where discovery looks on that host (these are the defaults):
    proxmox_dir = "/run/qemu-server"
    pve_dir = "/etc/pve"
    libvirt_dir = "/var/log/swtpm/libvirt/qemu"

Discovery on the host is one POSIX sh script (:data:`DISCOVER_SCRIPT`) that
finds what the local discovery finds: Proxmox logs with the VM names of their
``.conf``, on a cluster also the TPM VMs of the other nodes
(``/etc/pve/nodes/<node>/qemu-server/<vmid>.conf``: a capture connects to
that node), libvirt logs, the ``globs``; and the ``--log`` option of each
running swtpm, for its level.

Listing (:func:`list_remote_vms`) never fails and prints nothing: hosts are
asked in parallel, each for at most ``timeout`` seconds (2 s); the answer is
cached on disk (:func:`cache_dir`, :data:`CACHE_TTL_S`) so that Wireshark's
repeated ``--extcap-interfaces`` calls stay fast; a host that does not answer
keeps its last listing (its capture then says why it cannot connect).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UserError
from ..names import PREFIX, glob_key, sanitize
from ..swtpmlog.level import level_note, levels_from_log_values
from .settings import CAPTURE_TIMEOUT_S, Remote, RemoteVM
from .ssh import wrap_priv

#: seconds a cached listing of a host is used without asking it again
CACHE_TTL_S = 45.0
#: at most this long per host while listing (they are asked in parallel)
LIST_TIMEOUT_S = 2.0


# ---------------------------------------------------------------- discovery

DISCOVER_SCRIPT = r"""
main() {
pdir=$1 pve=$2 ldir=$3
shift 3
vmname() {
  sed -n '/^\[/q;s/^name:[[:space:]]*//p' "$1" 2>/dev/null | head -n 1
}
this=
if [ -L "$pve/local" ]; then l=$(readlink "$pve/local"); this=${l##*/}; fi
printf 'H\000%s\000' "$this"
for f in "$pdir"/*-swtpm.log; do
  [ -f "$f" ] || continue
  b=${f##*/}; id=${b%-swtpm.log}
  case $id in ''|*[!0-9]*) continue;; esac
  printf 'V\000proxmox\000%s\000%s\000%s\000\000' "$id" "$f" "$(vmname "$pve/qemu-server/$id.conf")"
done
if [ -d "$pve/nodes" ]; then
  for c in "$pve"/nodes/*/qemu-server/*.conf; do
    [ -f "$c" ] || continue
    node=${c%/qemu-server/*}; node=${node##*/}
    [ "$node" = "$this" ] && continue
    grep -q '^tpmstate0:' "$c" 2>/dev/null || continue
    id=${c##*/}; id=${id%.conf}
    printf 'V\000proxmox\000%s\000%s\000%s\000%s\000' "$id" "$pdir/$id-swtpm.log" "$(vmname "$c")" "$node"
  done
fi
for f in "$ldir"/*-swtpm.log; do
  [ -f "$f" ] || continue
  b=${f##*/}
  printf 'V\000libvirt\000%s\000%s\000\000\000' "${b%-swtpm.log}" "$f"
done
for pat in "$@"; do
  case $pat in "~/"*) pat=$HOME/${pat#"~/"};; esac
  old=$IFS; IFS=
  for f in $pat; do
    [ -f "$f" ] && printf 'V\000glob\000%s\000%s\000\000\000' "$pat" "$f"
  done
  IFS=$old
done
for d in /proc/[0-9]*; do
  comm=
  read -r comm 2>/dev/null <"$d/comm" || continue
  [ "$comm" = swtpm ] || continue
  tr '\000' '\n' 2>/dev/null <"$d/cmdline" | {
    next=0
    while IFS= read -r a; do
      if [ "$next" = 1 ]; then printf 'L\000%s\000' "$a"; next=0; fi
      case $a in --log) next=1;; --log=*) printf 'L\000%s\000' "${a#--log=}";; esac
    done
  }
done
printf 'X\000'
}
main "$@" </dev/null
"""


def parse_discovery(remote: Remote, out: bytes) -> list[RemoteVM]:
    """The script's NUL-separated records -> interfaces (named, levels attached)."""
    fields = out.decode("utf-8", "replace").split("\0")
    if "X" not in fields:
        raise ValueError("discovery output ended early")
    found: list[tuple[str, str, str, str, str | None]] = []  # kind, id, path, name, node
    log_values: list[str] = []
    i = 0
    while i < len(fields):
        tag = fields[i]
        if tag == "V" and i + 5 < len(fields):
            tag_kind, tag_id, tag_path, tag_name, tag_node = fields[i + 1 : i + 6]
            found.append((tag_kind, tag_id, tag_path, tag_name, tag_node or None))
            i += 6
        elif tag in ("L", "H") and i + 1 < len(fields):
            if tag == "L":
                log_values.append(fields[i + 1])
            i += 2
        else:
            i += 1
    levels = levels_from_log_values(log_values)
    vms: list[RemoteVM] = []
    taken: set[str] = set()
    seen_paths: set[tuple[str | None, str]] = set()
    for kind, ident, path, name, node in found:
        if (node, path) in seen_paths:
            continue
        seen_paths.add((node, path))
        vm_name: str | None
        if kind == "proxmox":
            key, vm_name = ident, name or None
            display = f"SWTPM {remote.name} VM {ident}" + (f" ({name})" if name else "")
            if node:
                display += f" on node {node}"
        elif kind == "libvirt":
            key, vm_name = sanitize(ident), ident
            display = f"SWTPM {remote.name} libvirt {ident}"
        else:
            key, vm_name = glob_key(ident, path), None
            display = f"SWTPM {remote.name} {key} ({path})"
        interface = f"{PREFIX}{remote.name}-{key}"
        if interface in taken:
            digest = hashlib.sha1(f"{node}:{path}".encode("utf-8", "surrogateescape")).hexdigest()
            interface = f"{interface}-{digest[:8]}"
        taken.add(interface)
        level = None if node else levels.get(os.path.normpath(path))
        display = _safe(display + level_note(level))
        vms.append(RemoteVM(interface, display, remote.name, kind, ident if kind != "glob" else key,
                            vm_name, path, node, level))
    return vms


def _safe(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f{}]", "?", text)


async def discover_remote(remote: Remote, timeout: float) -> list[RemoteVM]:
    """Run the discovery script on the host; :class:`UserError` if that fails."""
    from .ssh import connect, priv_refused

    params = remote.params(timeout=timeout)
    conn = await connect(params)
    try:
        argv = ["sh", "-s", "--", remote.proxmox_dir, remote.pve_dir, remote.libvirt_dir,
                *remote.globs]
        result = await conn.run(wrap_priv(remote.priv, argv), input=DISCOVER_SCRIPT.encode(),
                                encoding=None)
    finally:
        conn.abort()
    out = result.stdout if isinstance(result.stdout, bytes) else b""
    err = result.stderr if isinstance(result.stderr, bytes) else b""
    if b"X\0" not in out:
        refused = priv_refused(remote.priv, err.decode("utf-8", "replace"), params.where)
        if refused is not None:
            raise refused
        first = err.decode("utf-8", "replace").strip().splitlines()[:1]
        raise UserError(f"discovery on {params.where} failed: {first[0] if first else 'no answer'}")
    return parse_discovery(remote, out)


# -------------------------------------------------------------------- cache


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/swtpm-extcap``, else ``~/.cache/swtpm-extcap`` (Windows: %LOCALAPPDATA%)."""
    env = os.environ if environ is None else environ
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "swtpm-extcap" / "cache"
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "swtpm-extcap"
    home = env.get("HOME") or env.get("USERPROFILE")
    return (Path(home) if home else Path.home()) / ".cache" / "swtpm-extcap"


def _cache_key(remote: Remote) -> str:
    return hashlib.sha1(repr(remote).encode()).hexdigest()


@dataclass
class _Cached:
    time: float
    ok: bool
    vms: list[RemoteVM] = field(default_factory=list)


def _read_cache(folder: Path, remote: Remote) -> _Cached | None:
    try:
        doc = json.loads((folder / f"remote-{remote.name}.json").read_text())
        if doc.get("key") != _cache_key(remote):
            return None
        return _Cached(float(doc["time"]), bool(doc["ok"]), [RemoteVM(**v) for v in doc["vms"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(folder: Path, remote: Remote, cached: _Cached) -> None:
    doc = {"key": _cache_key(remote), "time": cached.time, "ok": cached.ok,
           "vms": [asdict(v) for v in cached.vms]}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".remote-{remote.name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, folder / f"remote-{remote.name}.json")
    except OSError:
        pass


# ------------------------------------------------------------------ listing


def list_remote_vms(
    remotes: Sequence[Remote],
    *,
    timeout: float = LIST_TIMEOUT_S,
    ttl: float = CACHE_TTL_S,
    cache: Path | None = None,
    now: float | None = None,
) -> list[RemoteVM]:
    """Every remote host's interfaces, from the cache or asked in parallel; never raises."""
    if not remotes:
        return []
    folder = cache_dir() if cache is None else cache
    clock = time.time() if now is None else now
    cached = {r.name: _read_cache(folder, r) for r in remotes}
    stale = [r for r in remotes if (c := cached[r.name]) is None or not 0 <= clock - c.time < ttl]
    if stale:
        fresh = _ask_all(stale, timeout)
        for remote in stale:
            answer = fresh.get(remote.name)
            old = cached[remote.name]
            if answer is not None:
                entry = _Cached(clock, True, answer)
            else:  # keep the last listing; ask again after ttl
                entry = _Cached(clock, False, old.vms if old is not None else [])
            cached[remote.name] = entry
            _write_cache(folder, remote, entry)
    out: list[RemoteVM] = []
    for remote in remotes:
        listed = cached[remote.name]
        if listed is not None:
            out.extend(listed.vms)
    return out


def _ask_all(remotes: Sequence[Remote], timeout: float) -> dict[str, list[RemoteVM] | None]:
    try:
        from .ssh import quiet_asyncssh, require_asyncssh

        require_asyncssh()
        quiet_asyncssh()
    except UserError:
        return {}

    import asyncio

    async def one(remote: Remote) -> list[RemoteVM] | None:
        try:
            return await asyncio.wait_for(discover_remote(remote, timeout), timeout)
        except BaseException:  # noqa: BLE001 - a listing never fails because of one host
            return None

    async def every() -> list[list[RemoteVM] | None]:
        return await asyncio.gather(*(one(r) for r in remotes))

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)
    try:
        answers = loop.run_until_complete(every())
    finally:
        loop.close()
    return {r.name: a for r, a in zip(remotes, answers)}


def find_remote_vm(
    interface: str, remotes: Sequence[Remote], *, cache: Path | None = None
) -> tuple[Remote, RemoteVM] | None:
    """The remote interface called ``interface`` (asking its host if the cache lacks it).

    None when no ``[[remote]]`` name matches; :class:`UserError` when one does
    but its host cannot be asked or has no such log.
    """
    owners = [r for r in remotes if interface.startswith(f"{PREFIX}{r.name}-")]
    if not owners:
        return None
    owners.sort(key=lambda r: -len(r.name))  # "pve1-a" before "pve1"
    for vm in list_remote_vms(owners, cache=cache, timeout=LIST_TIMEOUT_S):
        if vm.interface == interface:
            return next(r for r in owners if r.name == vm.remote), vm
    remote = owners[0]
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        vms = loop.run_until_complete(discover_remote(remote, CAPTURE_TIMEOUT_S))
    finally:
        loop.close()
    _write_cache(cache_dir() if cache is None else cache, remote, _Cached(time.time(), True, vms))
    for vm in vms:
        if vm.interface == interface:
            return remote, vm
    raise UserError(
        f"no interface {interface}: {remote.params().where} has no such VM log (is the VM"
        " running, with a TPM?); `tshark -D | grep swtpm` lists the interfaces that exist"
    )
