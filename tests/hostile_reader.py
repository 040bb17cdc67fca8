"""A hostile SSH host for tests: sshd's ForceCommand runs this instead of the reader.

It reads the client's command from $SSH_ORIGINAL_COMMAND (so it knows the token of the
reader's hello, as a host that misbehaves on purpose would), then sends what the file
named by its argument says: one case name of :data:`CASES`.
"""

from __future__ import annotations

import os
import shlex
import sys
import time


def _token() -> str:
    words = shlex.split(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    if "--" in words:
        args = words[words.index("--") + 1 :]
        if len(args) >= 9 and args[0] in ("follow", "read", "stat"):
            return args[8]  # the reader's token
        if len(args) >= 4:
            return args[3]  # discovery's token
    return ""


def main() -> None:
    case = open(sys.argv[1]).read().strip()
    out = sys.stdout.buffer
    token = _token()
    hello = f"SWTPM-READER 2 {token}\n".encode()
    sys.stdin.buffer.read()  # the script the client sends
    if case == "hang":
        time.sleep(60)
        return
    if case == "banner-only":
        out.write(b"This account is restricted.\n")
        return
    if case == "flood-preamble":
        while True:
            out.write(b"x" * 65536)
    if case == "nul-frames":  # an endless log of NUL bytes, in the largest frames asked for
        out.write(hello + b"B 0 1700000000\n" if "stat" in os.environ["SSH_ORIGINAL_COMMAND"]
                  else hello + b"O 1 0 0\n")
        out.flush()
        if "stat" in os.environ["SSH_ORIGINAL_COMMAND"]:
            return
        block = bytes(1 << 20)
        for _ in range(int(os.environ.get("HOSTILE_FRAMES", "4"))):
            out.write(b"D %d\n" % (64 << 20))
            for _ in range(64):
                out.write(block)
            out.write(b"V %d\n" % (64 << 20))
        out.flush()
        time.sleep(60)
        return
    if case == "discovery-ids":
        out.write(f"SWTPM-DISCOVER {token}\n".encode())
        for ident in ("../../x y", "{1}", "103", "٣", "12345678901234567890"):
            out.write(b"V\0proxmox\0%s\0/run/%s-swtpm.log\0\0\0" % (ident.encode(), ident.encode()))
        out.write(b"V\0libvirt\0a{b}/../c\0/x/a-swtpm.log\0\0\0X\0")
        return
    if case == "discovery-stream":
        out.write(f"SWTPM-DISCOVER {token}\n".encode())
        while True:
            out.write(b"L\0" + b"y" * 65534 + b"\0")
    frames = {"D abc": b"D abc\n", "B nan": b"B 10 nan\n", "B 1e999": b"B 10 1e999\n",
              "bare E": b"E\n", "D -1": b"D -1\n", "huge D": b"D 99999999999\n",
              "O elsewhere": b"O 1 100 50\n"}
    out.write(hello + frames[case])
    out.flush()
    time.sleep(5)


if __name__ == "__main__":
    main()
