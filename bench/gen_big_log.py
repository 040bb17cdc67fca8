#!/usr/bin/env python3
"""Make a big, real swtpm debug log: a real swtpm driven over TCP until its log has N MiB.

Starts ``swtpm socket --tpm2`` (TCP data and control ports on 127.0.0.1,
``--log file=LOG,level=20``, optionally with a Proxmox-style ``prefix=``) as a
child process, then sends it a seeded mix of TPM 2.0 commands (GetRandom,
PCR_Read, Hash, GetCapability, ReadClock, TestParms) with varied sizes over
one connection until the log reaches the size asked for; swtpm is stopped at
the end. The same seed gives the same command sequence.

usage: bench/gen_big_log.py --log /tmp/big.log --mb 200 [--prefix '[id=1732600000] ']
       [--seed 1] [--port 2621]
The last stdout line is a JSON summary (bytes, commands, seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
#: TPM 2.0 (Part 2): tags, handles, algorithms, command codes
TPM_ST_NO_SESSIONS = 0x8001
TPM_RH_NULL = 0x40000007
SHA1, SHA256, SHA384, SHA512 = 0x0004, 0x000B, 0x000C, 0x000D
CC_GET_CAPABILITY, CC_GET_RANDOM, CC_HASH, CC_PCR_READ = 0x17A, 0x17B, 0x17D, 0x17E
CC_READ_CLOCK, CC_TEST_PARMS = 0x181, 0x18A
ALG_RSA, ALG_ECC = 0x0001, 0x0023
#: GetCapability (capability, property, count) triples swtpm answers
CAPABILITIES = ((0, 0x0001, 64), (1, 0x80000000, 16), (1, 0x81000000, 32), (2, 0x011F, 256),
                (5, 0, 1), (6, 0x100, 48), (6, 0x200, 40), (7, 0, 32), (8, 0, 16))
#: commands per size check of the log
BATCH = 64


def command(code: int, body: bytes = b"") -> bytes:
    """A TPM 2.0 command without sessions: tag, size, code, body."""
    return struct.pack(">HII", TPM_ST_NO_SESSIONS, 10 + len(body), code) + body


def command_mix(rng: random.Random, count: int = 512) -> list[bytes]:
    """``count`` commands of the six kinds, with sizes from a few bytes to a kilobyte."""
    banks = (SHA1, SHA256, SHA384, SHA512)
    mix: list[bytes] = []
    for _ in range(count):
        kind = rng.randrange(6)
        if kind == 0:
            mix.append(command(CC_GET_RANDOM, struct.pack(">H", rng.choice((1, 8, 16, 20, 32, 48, 64)))))
        elif kind == 1:
            chosen = rng.sample(banks, rng.randint(1, 2))
            body = struct.pack(">I", len(chosen))
            for alg in chosen:
                bits = sum(1 << pcr for pcr in rng.sample(range(24), rng.randint(1, 8)))
                body += struct.pack(">HB", alg, 3) + bits.to_bytes(3, "little")
            mix.append(command(CC_PCR_READ, body))
        elif kind == 2:
            data = rng.randbytes(rng.choice((0, 1, 15, 16, 17, 64, 255, 512, 1000, 1024)))
            body = struct.pack(">H", len(data)) + data + struct.pack(">HI", rng.choice(banks), TPM_RH_NULL)
            mix.append(command(CC_HASH, body))
        elif kind == 3:
            mix.append(command(CC_GET_CAPABILITY, struct.pack(">III", *rng.choice(CAPABILITIES))))
        elif kind == 4:
            mix.append(command(CC_READ_CLOCK))
        else:
            alg = rng.choice((ALG_RSA, ALG_ECC))
            mix.append(command(CC_TEST_PARMS, struct.pack(">H", alg) + bytes(8)))
    return mix


def exchange(sock: socket.socket, cmd: bytes) -> bytes:
    """Send one command, return its whole response (its size is in its header)."""
    sock.sendall(cmd)
    head = _receive(sock, 10)
    return head + _receive(sock, struct.unpack(">I", head[2:6])[0] - 10)


def _receive(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise EOFError("swtpm closed the connection")
        data += part
    return bytes(data)


def _connect(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"swtpm exited with {proc.returncode} (port {port} in use?)")
        try:
            return socket.create_connection((HOST, port), timeout=5)
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"swtpm did not open {HOST}:{port}")


def generate(log: Path, mb: float, *, prefix: str | None, seed: int, port: int) -> dict[str, object]:
    """Write a log of at least ``mb`` MiB at ``log`` (replaced); returns a summary."""
    swtpm = shutil.which("swtpm")
    if swtpm is None:
        raise SystemExit("needs swtpm (Debian: apt install swtpm)")
    log = log.resolve()
    log.unlink(missing_ok=True)
    target = int(mb * (1 << 20))
    rng = random.Random(seed)
    mix = command_mix(rng)
    began = time.monotonic()
    sent = 0
    with tempfile.TemporaryDirectory(prefix="gen_big_log.") as state:
        logopt = f"file={log},level=20" + (f",prefix={prefix}" if prefix else "")
        proc = subprocess.Popen(
            [swtpm, "socket", "--tpm2", "--tpmstate", f"dir={state}",
             "--server", f"type=tcp,port={port},bindaddr={HOST}",
             "--ctrl", f"type=tcp,port={port + 1},bindaddr={HOST}",
             "--flags", "not-need-init,startup-clear", "--log", logopt],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            with _connect(port, proc) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while not log.exists() or log.stat().st_size < target:
                    for _ in range(BATCH):
                        exchange(sock, mix[rng.randrange(len(mix))])
                    sent += BATCH
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return {"log": str(log), "log_bytes": log.stat().st_size, "commands": sent,
            "prefix": prefix, "seed": seed, "seconds": round(time.monotonic() - began, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True, help="the log to write (replaced)")
    ap.add_argument("--mb", type=float, default=200, help="size to reach, MiB (default 200)")
    ap.add_argument("--prefix", help="swtpm's log prefix, e.g. '[id=1732600000] ' (Proxmox)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the command mix (default 1)")
    ap.add_argument("--port", type=int, default=2621, help="TCP data port; +1 is control (default 2621)")
    args = ap.parse_args()
    if args.prefix and "," in args.prefix:
        sys.exit("swtpm cannot take a ',' in the log prefix")
    print(json.dumps(generate(args.log, args.mb, prefix=args.prefix, seed=args.seed, port=args.port)))


if __name__ == "__main__":
    main()
