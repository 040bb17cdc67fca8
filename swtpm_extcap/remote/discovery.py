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
running swtpm, for its level. Its answer is untrusted input: it starts after
a hello with a per-run token (what the login prints before it is skipped), is
read up to :data:`MAX_ANSWER` bytes within the timeout, and every ID is
checked (a Proxmox VM id is ASCII digits) or sanitized (:func:`names.sanitize`)
before it becomes part of an interface name.

Names: a Proxmox VM is ``swtpm-<remote>-<vmid>`` on the node that runs it
(whose ``/etc/pve/nodes/<node>`` holds its ``.conf``); a log of that VM left
behind on the entry's host after a migration is ``swtpm-<remote>-<vmid>-leftover``,
so a name never depends on what other nodes left behind. Listing and its cache:
:mod:`.listing`.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING

from ..errors import UserError
from ..names import PREFIX, glob_key, sanitize
from ..swtpmlog.level import level_note, levels_from_log_values
from .settings import Remote, RemoteVM
from .ssh import wrap_priv

if TYPE_CHECKING:
    import asyncssh

#: the most bytes of a host's discovery answer read (a host that streams output is cut here)
MAX_ANSWER = 4 << 20
#: a Proxmox VM id
_VMID = re.compile(r"[0-9]{1,12}")
#: the key of a Proxmox VM log left behind on the entry's host, the VM running elsewhere
LEFTOVER = "leftover"


# ---------------------------------------------------------------- discovery

DISCOVER_SCRIPT = r"""
main() {
pdir=$1 pve=$2 ldir=$3 token=$4
shift 4
printf 'SWTPM-DISCOVER %s\n' "$token"
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
    """The script's NUL-separated records -> interfaces (IDs checked, named, levels attached)."""
    fields = out.decode("utf-8", "replace").split("\0")
    if "X" not in fields:
        raise ValueError("discovery output ended early")
    found: list[tuple[str, str, str, str, str | None]] = []  # kind, id, path, name, node
    log_values: list[str] = []
    i = 0
    while i < len(fields):
        tag = fields[i]
        if tag == "V" and i + 5 < len(fields):
            v_kind, v_id, v_path, v_name, v_node = fields[i + 1 : i + 6]
            i += 6
            if v_kind not in ("proxmox", "libvirt", "glob") or not v_path.startswith("/"):
                continue
            if v_kind == "proxmox" and not _VMID.fullmatch(v_id):
                continue  # not a Proxmox VM id: never part of a name
            if v_node and v_node != sanitize(v_node):
                continue
            found.append((v_kind, v_id, v_path, v_name, v_node or None))
        elif tag in ("L", "H") and i + 1 < len(fields):
            if tag == "L":
                log_values.append(fields[i + 1])
            i += 2
        else:
            i += 1
    levels = levels_from_log_values(log_values)
    elsewhere: dict[str, str] = {f[1]: f[4] for f in found if f[0] == "proxmox" and f[4]}
    vms: list[RemoteVM] = []
    taken: set[str] = set()
    seen_paths: set[tuple[str | None, str]] = set()
    # the VMs that run where they are found first, so that their names never move
    order = sorted(found, key=lambda f: (f[0] != "proxmox", f[0] == "proxmox" and
                                         f[4] is None and f[1] in elsewhere))
    for kind, ident, path, name, node in order:
        if (node, path) in seen_paths:
            continue
        seen_paths.add((node, path))
        vm_name: str | None
        if kind == "proxmox":
            vm_name = name or None
            label = f" ({name})" if name else ""
            if node is None and ident in elsewhere:
                key = f"{ident}-{LEFTOVER}"
                display = (f"SWTPM {remote.name} VM {ident}{label} leftover log (the VM runs on"
                           f" node {elsewhere[ident]})")
            else:
                key = ident
                display = f"SWTPM {remote.name} VM {ident}{label}"
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
        vms.append(RemoteVM(interface, display, remote.name, kind, key if kind == "glob" else ident,
                            vm_name, path, node, level))
    return vms


def _safe(text: str) -> str:
    """No braces, control characters or "/" in a display name (see interfaces.interface)."""
    return re.sub(r"[\x00-\x1f\x7f{}/]", "?", text)


async def discover_remote(remote: Remote, timeout: float) -> list[RemoteVM]:
    """Run the discovery script on the host within ``timeout`` seconds in all (connecting
    included); :class:`UserError` with one line if that fails."""
    import asyncio

    try:
        return await asyncio.wait_for(_discover(remote, timeout), timeout)
    except asyncio.TimeoutError:
        raise UserError(f"discovery on {remote.params().where}: no answer within {timeout:g} s"
                        " (host down, or a firewall drops the connection?)") from None


async def _discover(remote: Remote, timeout: float) -> list[RemoteVM]:
    import secrets

    from .connect import connect
    from .ssh import priv_refused

    params = remote.params(timeout=timeout)
    conn = await connect(params)
    token = secrets.token_hex(16)
    try:
        argv = ["sh", "-s", "--", remote.proxmox_dir, remote.pve_dir, remote.libvirt_dir, token,
                *remote.globs]
        # with an installed reader, sudo runs nothing else: discovery runs as the login
        priv = "none" if remote.reader else remote.priv
        proc = await conn.create_process(wrap_priv(priv, argv), encoding=None)
        proc.stdin.write(DISCOVER_SCRIPT.encode())
        proc.stdin.write_eof()
        out, err = await _bounded(proc)
    finally:
        conn.abort()
    hello = f"SWTPM-DISCOVER {token}\n".encode()
    at = out.find(hello)
    body = out[at + len(hello) :] if at >= 0 else b""
    if not body.endswith(b"X\0"):
        text = err.decode("utf-8", "replace")
        refused = priv_refused(remote.priv, text, params.where)
        if refused is not None:
            raise refused
        if len(out) >= MAX_ANSWER:
            raise UserError(f"discovery on {params.where}: more than {MAX_ANSWER >> 20} MiB of"
                            " answer; the host sends something else than the discovery script's")
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        said = next((ln.strip() for ln in out.decode("utf-8", "replace").splitlines()
                     if ln.strip()), "")
        why = first or (f"the login printed {said[:60]!r} and the script did not run" if said
                        else "no answer")
        raise UserError(f"discovery on {params.where} failed: {why[:160]}")
    return parse_discovery(remote, body)


async def _bounded(proc: asyncssh.SSHClientProcess[bytes]) -> tuple[bytes, bytes]:
    """stdout up to MAX_ANSWER bytes and the start of stderr, until the script's end."""
    import asyncio

    async def take(stream: asyncssh.SSHReader[bytes], limit: int, drain: bool) -> bytes:
        got = b""
        while True:
            chunk = await stream.read(1 << 16)
            if not chunk:
                return got
            if len(got) < limit:
                got = (got + chunk)[:limit]
            elif not drain:  # enough: the caller gives up on this host
                return got

    errors = asyncio.ensure_future(take(proc.stderr, 4096, True))
    out = await take(proc.stdout, MAX_ANSWER, False)
    if len(out) >= MAX_ANSWER:
        proc.close()
    try:
        err = await asyncio.wait_for(errors, 2.0)
    except asyncio.TimeoutError:
        err = b""
    return out, err
