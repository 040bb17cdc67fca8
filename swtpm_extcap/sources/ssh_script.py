"""The POSIX sh reader that the SSH source runs on the remote host.

Nothing is installed on the host: the script travels on the SSH channel's
stdin (``sh -s -- ARGS``, every argument ``shlex.quote``'d, optionally through
``sudo -n``/``doas -n``) and uses only sh, ``stat``, ``dd``, ``tail``,
``head``, ``od``, ``tr``, ``sleep`` (GNU coreutils or BusyBox; Linux:
``/proc/self/fdinfo`` gives the read offset), and ``inotifywait`` where the
host has it (inotify-tools): an idle log then costs no CPU, and an append
wakes the reader at once; without it the reader polls, every 20 ms for a
while after the log changed, then every 200 ms.

It keeps the log open as fd 3 and, like :mod:`swtpm_extcap.sources.follow`,
re-checks the file on every round: a size below our offset is a truncation,
another inode at the path is a rotation (the old file is drained first) or a
re-creation (the old one was deleted). Its output (decoded and checked by
:mod:`.ssh_protocol`) starts with a hello line that carries the client's
token, then frames, each starting with one ASCII header line; log bytes only
ever travel inside a length-prefixed ``D`` frame, so nothing in a log can
look like a header:

==========================  ======================================================
``SWTPM-READER 2 token``    hello (what the login printed before it is skipped)
``O ino size off``          opened the log (inode, size now, reading from ``off``)
``D n`` + n bytes           then ``V k``: the first k of the n bytes are the log's
                            (k < n only when the file shrank during the read; the
                            rest is NUL padding, so a frame is always n bytes long)
``T``                       the same file was truncated: reading again from 0
``R ino size``              rotated: old file drained, the new one is read from 0
``C ino size``              re-created: the old file was deleted, a new one is read
``N ino size``              the log appeared (there was none): read from 0
``W``                       no log at the path yet (follow waits for it)
``H``                       heartbeat while idle (a dead channel is noticed)
``B size mtime``            mode ``stat``: size and modification time
``X``                       mode ``read``: reached the end
``Q i ino size``            resuming: the file read before was rotated away; it is
                            read on from the offset in ``<log>`` + ``ROTATED[i]``
``G off``                   resuming: the file read before is gone (no rotated copy
                            holds it): what it got after ``off`` may be missing
``E CODE text``             cannot go on (ENOENT, EACCES, EISDIR), then exit
==========================  ======================================================

Resuming after a dropped connection: the client passes the inode it was
reading, its offset and the hex of the last bytes before that offset (the
guard). The same file, not shorter, with the same guard bytes, is read on
from the offset. Otherwise the rotated copies (:data:`ROTATED`) are tried: one
that is that inode, or holds the same guard bytes at the offset (a copy made
by ``copytruncate``), is read on from the offset (``Q``), then the log itself
from 0 (``R``); with none, ``G`` says from where bytes may be missing, then
``T`` or ``C`` as above.
"""

from __future__ import annotations

from typing import Literal

#: a data frame has at most this many 1 MiB blocks (dd reads 1 MiB at a time; the
#: client hands on pieces as they arrive, so big frames only save remote rounds)
BLOCKS = 64
BLOCK = 1 << 20
#: the largest data frame the client accepts
MAX_FRAME = BLOCKS * BLOCK
#: bytes of the log before the offset that a resume compares (re-written file?)
GUARD_SIZE = 64
#: where logrotate leaves the file it rotated away (``Q i``: the i-th of these)
ROTATED = (".1", ".0", "-[0-9]*")

Mode = Literal["follow", "read", "stat"]
Wake = Literal["inotify", "poll"]

SCRIPT = r"""
main() {
mode=$1 path=$2 off=$3 ino=$4 guard=$5 end=$6 hb=$7 blocks=$8 token=$9
shift 9
wake=$1
block=1048576
NL='
'
have=0 old=0 p=0 size=0 cur='' fino='' two='' idle=0 waited=0
wdir='' wfor='' wpid='' tpid='' main=$$
cleanup() {
  if [ -n "$wpid" ]; then kill "$wpid" 2>/dev/null; fi
  if [ -n "$tpid" ]; then kill "$tpid" 2>/dev/null; fi
  if [ -n "$wdir" ]; then rm -rf "$wdir"; fi
}
trap cleanup EXIT
trap 'exit 0' HUP PIPE TERM INT
printf 'SWTPM-READER 2 %s\n' "$token"
if [ -n "${ALLOWED-}" ]; then
  ok=0
  case $path in
    */../*|*/./*|*/..|*/.) ;;
    *) for pat in $ALLOWED; do
         case $path in $pat) ok=1;; esac
       done;;
  esac
  if [ "$ok" = 0 ]; then printf 'E EPERM not a log this reader may read\n'; exit 0; fi
fi
pos() {
  p=0
  while read -r k v; do
    if [ "$k" = pos: ]; then p=$v; return 0; fi
  done </proc/$$/fdinfo/3
}
fail() {
  dir=${path%/*}
  if [ -d "$path" ]; then printf 'E EISDIR is a directory\n'
  elif [ -e "$path" ] || { [ -n "$dir" ] && [ -d "$dir" ] && ! [ -x "$dir" ]; }; then
    printf 'E EACCES permission denied\n'
  else printf 'E ENOENT no such file\n'
  fi
  exit 0
}
openf() {
  if [ -d "$path" ]; then fail; fi
  if ! [ -e "$path" ]; then
    dir=${path%/*}
    if [ -n "$dir" ] && [ -d "$dir" ] && ! [ -x "$dir" ]; then fail; fi
    return 1
  fi
  if ! [ -r "$path" ]; then fail; fi
  command exec 3<"$path" || return 1
  st=$(stat -L -c '%s %i' /dev/fd/3) || fail
  size=${st% *} cur=${st#* } have=1
  return 0
}
guard_ok() {
  [ -z "$guard" ] && return 0
  n=$(( ${#guard} / 2 ))
  [ "$off" -lt "$n" ] && return 1
  got=$(tail -c +$((off - n + 1)) "$1" | head -c "$n" | od -An -v -tx1 | tr -d ' \n')
  [ "$got" = "$guard" ]
}
rotated() {
  i=0
  for c in "$path.1" "$path.0" "$path"-[0-9]*; do
    if [ "$i" -lt 2 ]; then k=$i; else k=2; fi
    i=$((i + 1))
    if ! [ -f "$c" ] || ! [ -r "$c" ]; then continue; fi
    st=$(stat -L -c '%s %i' "$c" 2>/dev/null) || continue
    csize=${st% *} cino=${st#* }
    [ "$csize" -ge "$off" ] || continue
    if [ "$cino" = "$ino" ] || { [ -n "$guard" ] && guard_ok "$c"; }; then
      command exec 3<"$c" || continue
      have=1 old=1 cur=$cino size=$csize
      printf 'Q %s %s %s\n' "$k" "$cino" "$csize"
      return 0
    fi
  done
  return 1
}
startw() {
  if [ -n "$wpid" ]; then kill "$wpid" 2>/dev/null; fi
  inotifywait -m --format x -e modify -e attrib -e move_self -e delete_self /dev/fd/3 >&5 2>&5 &
  wpid=$!
  echo "$wpid" >"$wdir/pid"
  wfor=$fino
}
snooze() {
  if [ -n "$wdir" ] && [ "$have" = 1 ] && [ "$old" = 0 ] && [ "$two" = "$fino" ]; then
    if [ "$wfor" != "$fino" ]; then startw; fi
    got=$(dd bs=4096 count=1 <&5 2>/dev/null)
    case $got in *t*) printf 'H\n';; esac
    return 0
  fi
  idle=$((idle + 1))
  if [ "$idle" -le 25 ]; then nap=20; sleep 0.02; else nap=200; sleep 0.2; fi
  waited=$((waited + nap))
  if [ "$waited" -ge $((hb * 1000)) ]; then printf 'H\n'; waited=0; fi
}
if [ "$mode" = follow ] && [ "$wake" = inotify ] && command -v inotifywait >/dev/null 2>&1; then
  if wdir=$(mktemp -d 2>/dev/null) && mkfifo "$wdir/w" 2>/dev/null && exec 5<>"$wdir/w"; then
    (
      trap '' PIPE HUP
      while sleep "$hb"; do
        kill -0 "$main" 2>/dev/null || break
        echo t >&5
      done
      if [ -f "$wdir/pid" ]; then kill "$(cat "$wdir/pid")" 2>/dev/null; fi
      rm -rf "$wdir"
    ) </dev/null >/dev/null 2>&1 &
    tpid=$!
  else
    wdir=
  fi
fi
if openf; then
  if [ "$mode" = stat ]; then
    printf 'B %s %s\n' "$size" "$(stat -L -c %Y /dev/fd/3)"
    exit 0
  fi
  if [ -n "$ino" ] && { [ "$cur" != "$ino" ] || [ "$size" -lt "$off" ] || ! guard_ok /dev/fd/3; }; then
    if [ "$off" -gt 0 ] && rotated; then
      :
    else
      if [ "$off" -gt 0 ]; then printf 'G %s\n' "$off"; fi
      command exec 3<"$path" || fail
      st=$(stat -L -c '%s %i' /dev/fd/3) || fail
      size=${st% *} cur=${st#* }
      if [ "$cur" = "$ino" ]; then printf 'T\n'; else printf 'C %s %s\n' "$cur" "$size"; fi
      off=0
    fi
  elif [ "$off" -gt "$size" ]; then
    printf 'T\n'; off=0
  fi
  if [ "$off" -gt 0 ]; then dd bs=1 skip="$off" count=0 <&3 2>/dev/null; fi
  if [ "$old" = 0 ]; then printf 'O %s %s %s\n' "$cur" "$size" "$off"; fi
else
  if [ "$mode" != follow ]; then fail; fi
  if [ -n "$ino" ] && [ "$off" -gt 0 ]; then rotated || printf 'G %s\n' "$off"; fi
  if [ "$old" = 1 ]; then dd bs=1 skip="$off" count=0 <&3 2>/dev/null; else printf 'W\n'; fi
fi
while :; do
  if [ "$have" = 1 ]; then
    st=$(stat -L -c '%s %h %i' /dev/fd/3 "$path" 2>/dev/null)
    one=${st%%"$NL"*}
    two=${st#"$one"}; two=${two#"$NL"}; two=${two##* }
    size=${one%% *}; rest=${one#* }; links=${rest%% *}; fino=${rest#* }
    pos
    if [ "$mode" = read ] && [ -n "$end" ] && [ "$p" -ge "$end" ]; then printf 'X\n'; exit 0; fi
    if [ "$size" -lt "$p" ]; then
      printf 'T\n'
      command exec 4</dev/fd/3 3<&- 3<&4 4<&-
      continue
    fi
    if [ "$size" -gt "$p" ]; then
      n=$((size - p))
      if [ "$mode" = read ] && [ -n "$end" ] && [ "$n" -gt $((end - p)) ]; then n=$((end - p)); fi
      if [ "$n" -ge "$block" ]; then
        b=$block cnt=$((n / block))
        if [ "$cnt" -gt "$blocks" ]; then cnt=$blocks; fi
      else
        b=$n cnt=1
      fi
      n=$((b * cnt))
      printf 'D %s\n' "$n"
      { dd bs="$b" count="$cnt" iflag=fullblock <&3 2>/dev/null; head -c "$n" /dev/zero; } | head -c "$n"
      q=$p
      pos
      printf 'V %s\n' $((p - q))
      idle=0 waited=0
      continue
    fi
    if [ "$mode" = read ]; then printf 'X\n'; exit 0; fi
    if [ "$old" = 1 ]; then
      old=0 have=0
      command exec 3<&-
      if openf; then printf 'R %s %s\n' "$cur" "$size"; else printf 'W\n'; fi
      continue
    fi
    if [ -n "$two" ] && [ "$two" != "$fino" ]; then
      if [ "$links" -gt 0 ]; then kind=R; else kind=C; fi
      command exec 3<&-
      have=0
      if openf; then printf '%s %s %s\n' "$kind" "$cur" "$size"; else printf 'W\n'; fi
      continue
    fi
  elif openf; then
    printf 'N %s %s\n' "$cur" "$size"
    continue
  fi
  snooze
done
}
main "$@" </dev/null
"""


#: the logs the installed (restricted) reader may read: Proxmox's and libvirt's
ALLOWED = "/run/qemu-server/*-swtpm.log /var/log/swtpm/libvirt/qemu/*-swtpm.log"
#: where the documentation installs it
READER_PATH = "/usr/local/sbin/swtpm-extcap-reader"


def installed_reader(allowed: str = ALLOWED) -> str:
    """The reader as a file to install on the host, for a sudoers line that allows only it.

    Run as root through ``sudo -n``, it reads nothing but logs that match one of the
    ``ALLOWED`` patterns (a path with ``.`` or ``..`` components never): a login allowed
    to run it can read the swtpm logs and nothing else. ``python3 -m
    swtpm_extcap.sources.ssh_script`` prints it."""
    return ("#!/bin/sh\n"
            "# swtpm-extcap's remote reader, protocol 2: reads swtpm logs for the extcap\n"
            "# (remote.md). Install: root-owned, mode 755, e.g. as " + READER_PATH + ",\n"
            "# and allow it in sudoers: USER ALL=(root) NOPASSWD: " + READER_PATH + "\n"
            "# The logs it may read (shell patterns, separated by blanks):\n"
            f"ALLOWED='{allowed}'\n" + SCRIPT.lstrip("\n"))


def script_args(
    mode: Mode,
    path: str,
    token: str,
    *,
    offset: int = 0,
    inode: str = "",
    guard: bytes = b"",
    end: int | None = None,
    heartbeat_s: int = 2,
    wake: Wake = "inotify",
) -> list[str]:
    """The argument words after ``sh -s --`` (each quoted by the caller)."""
    return [mode, path, str(offset), inode, guard.hex(), "" if end is None else str(end),
            str(max(1, heartbeat_s)), str(BLOCKS), token, wake]


if __name__ == "__main__":  # python3 -m swtpm_extcap.sources.ssh_script > swtpm-extcap-reader
    import sys

    sys.stdout.write(installed_reader())
