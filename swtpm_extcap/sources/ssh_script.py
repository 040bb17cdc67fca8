"""The POSIX sh reader that the SSH source runs on the remote host, and its framing.

Nothing is installed on the host: the script travels on the SSH channel's
stdin (``sh -s -- ARGS``, every argument ``shlex.quote``'d, optionally through
``sudo -n``/``doas -n``) and uses only sh, ``stat``, ``dd``, ``tail``,
``head``, ``od``, ``tr`` and ``sleep`` (GNU coreutils or BusyBox; Linux:
``/proc/self/fdinfo`` gives the read offset).

It keeps the log open as fd 3 and, like :mod:`swtpm_extcap.sources.follow`,
re-checks the file on every round: a size below our offset is a truncation,
another inode at the path is a rotation (the old file is drained first) or a
re-creation (the old one was deleted). Its output is a sequence of frames, each
starting with one ASCII header line; log bytes only ever travel inside a
length-prefixed ``D`` frame, so nothing in a log can look like a marker:

=====================  =========================================================
``S 1``                hello, protocol 1 (anything before it is sudo/doas failing)
``O ino size off``     opened the log (inode, size now, reading from ``off``)
``D n`` + n bytes      then ``V k``: the first k of the n bytes are the log's
                       (k < n only when the file shrank during the read; the rest
                       is NUL padding, so a frame is always n bytes long)
``T``                  the same file was truncated: reading again from 0
``R ino size``         rotated: old file drained, the new one is read from 0
``C ino size``         re-created: the old file was deleted, a new one is read from 0
``N ino size``         the log appeared (there was none): read from 0
``W``                  no log at the path yet (follow waits for it)
``H``                  heartbeat while idle (a dead channel is noticed)
``B size mtime``       mode ``stat``: size and modification time
``X``                  mode ``read``: reached the end
``E CODE text``        cannot go on (ENOENT, EACCES, EISDIR), then exit
=====================  =========================================================

Resuming after a dropped connection: the client passes the inode it was
reading, its offset and the hex of the last bytes before that offset (the
guard); the same file, not shorter, with the same guard bytes, is read on from
the offset; a shorter or rewritten one gives ``T``, another file ``C``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PROTOCOL = b"S 1\n"
#: a data frame has at most this many 1 MiB blocks (dd reads 1 MiB at a time; the
#: client yields 1 MiB pieces as they arrive, so big frames only save remote rounds)
BLOCKS = 64
#: bytes of the log before the offset that a resume compares (re-written file?)
GUARD_SIZE = 64

Mode = Literal["follow", "read", "stat"]

SCRIPT = r"""
main() {
mode=$1 path=$2 off=$3 ino=$4 guard=$5 end=$6 poll=$7 hb=$8 blocks=$9
block=1048576
NL='
'
have=0 p=0 size=0 cur= idle=0
printf 'S 1\n'
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
  got=$(tail -c +$((off - n + 1)) /dev/fd/3 | head -c "$n" | od -An -v -tx1 | tr -d ' \n')
  [ "$got" = "$guard" ]
}
if openf; then
  if [ "$mode" = stat ]; then
    printf 'B %s %s\n' "$size" "$(stat -L -c %Y /dev/fd/3)"
    exit 0
  fi
  if [ -n "$ino" ] && [ "$cur" = "$ino" ]; then
    if [ "$size" -lt "$off" ] || ! guard_ok; then printf 'T\n'; off=0; fi
  elif [ -n "$ino" ]; then
    printf 'C %s %s\n' "$cur" "$size"; off=0
  elif [ "$off" -gt "$size" ]; then
    printf 'T\n'; off=0
  fi
  if [ "$off" -gt 0 ]; then dd bs=1 skip="$off" count=0 <&3 2>/dev/null; fi
  printf 'O %s %s %s\n' "$cur" "$size" "$off"
else
  if [ "$mode" != follow ]; then fail; fi
  printf 'W\n'
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
      idle=0
      continue
    fi
    if [ "$mode" = read ]; then printf 'X\n'; exit 0; fi
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
  idle=$((idle + 1))
  if [ "$idle" -ge "$hb" ]; then printf 'H\n'; idle=0; fi
  sleep "$poll"
done
}
main "$@" </dev/null
"""


@dataclass(frozen=True)
class Frame:
    """One parsed frame: ``kind`` is the header's letter; ``data`` the log bytes of a ``D``."""

    kind: str
    fields: tuple[str, ...] = ()
    data: bytes = b""


def script_args(
    mode: Mode,
    path: str,
    *,
    offset: int = 0,
    inode: str = "",
    guard: bytes = b"",
    end: int | None = None,
    poll: float = 0.1,
    heartbeat_s: float = 2.0,
) -> list[str]:
    """The argument words after ``sh -s --`` (each quoted by the caller)."""
    beats = max(1, round(heartbeat_s / poll))
    return [mode, path, str(offset), inode, guard.hex(), "" if end is None else str(end),
            f"{poll:g}", str(beats), str(BLOCKS)]


def parse_header(line: bytes) -> tuple[str, tuple[str, ...]]:
    """``b"D 42\\n"`` -> ``("D", ("42",))``; ValueError for anything that is no header."""
    if not line.endswith(b"\n"):
        raise ValueError(f"incomplete frame header {line[:80]!r}")
    words = line[:-1].decode("ascii").split(" ")
    kind = words[0]
    if kind == "E":
        return kind, tuple(words[1:2]) + (" ".join(words[2:]),)
    if kind not in _ARITY or len(words) - 1 != _ARITY[kind]:
        raise ValueError(f"unknown frame header {line[:80]!r}")
    return kind, tuple(words[1:])


_ARITY = {"S": 1, "O": 3, "D": 1, "V": 1, "T": 0, "R": 2, "C": 2, "N": 2, "W": 0, "H": 0,
          "B": 2, "X": 0}
