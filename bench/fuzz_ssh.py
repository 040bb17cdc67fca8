#!/usr/bin/env python3
"""Fuzz the remote reader's frame decoder (swtpm_extcap.sources.ssh_protocol) in process.

Each case is a stream a host could send: a real reader's output over a real log
(hello, O, D frames of log bytes, V trailers, T, R, H, ...) with random mutations
(bytes flipped, runs inserted or deleted, a header's number replaced by a hostile
one such as ``-1``, ``nan``, ``1e999``, ``99999999999999999999``), or random bytes
after the hello. It is decoded whole and in random chunkings. Counted: cases that
decode, cases refused with ProtocolError, crashes (any other exception), chunking
differences (the same stream decoding differently when cut differently), and the
largest number of bytes the decoder held at once. ``--cases 100000`` takes a few
minutes on the build machine.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from swtpm_extcap.sources.ssh_protocol import (  # noqa: E402
    FrameDecoder,
    Header,
    ProtocolError,
    Zeros,
)

TOKEN = "f" * 32
HELLO = f"SWTPM-READER 2 {TOKEN}\n".encode()
MAX_FRAME = 1 << 16
HOSTILE = [b"-1", b"nan", b"1e999", b"99999999999999999999", b"", b"0x10", b"\xff", b" 1",
           b"18446744073709551616", b"65537"]


def real_stream(rng: random.Random, log: bytes) -> bytes:
    out = [HELLO, b"O 123456 %d 0\n" % len(log)]
    at = 0
    while at < len(log):
        n = min(len(log) - at, rng.randint(1, MAX_FRAME))
        pad = rng.choice([0, 0, 0, rng.randint(1, 50)])
        body = log[at : at + n]
        out.append(b"D %d\n" % (n + pad) + body + bytes(pad) + b"V %d\n" % n)
        at += n
        out.append(rng.choice([b"", b"", b"H\n", b"T\n", b"R 9 0\n", b"C 8 1\n", b"W\n"]))
    return b"".join(out)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        at = rng.randrange(len(buf) + 1)
        if kind == 0 and buf:
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        elif kind == 1:
            buf[at:at] = rng.randbytes(rng.randint(1, 20))
        elif kind == 2:
            del buf[at : at + rng.randint(1, 20)]
        else:  # a header number replaced by a hostile one
            headers = [i for i in range(len(buf) - 2) if buf[i : i + 2] in (b"D ", b"V ", b"O ", b"B ")]
            if headers:
                h = rng.choice(headers) + 2
                end = buf.find(b"\n", h)
                if end > 0:
                    buf[h:end] = rng.choice(HOSTILE)
    return bytes(buf)


def decode(data: bytes, cuts: list[int]) -> tuple[str, list[object], int]:
    dec = FrameDecoder(TOKEN, max_frame=MAX_FRAME)
    items: list[object] = []
    held = 0
    try:
        for a, b in zip([0, *cuts], [*cuts, len(data)]):
            for item in dec.feed(data[a:b]):
                if isinstance(item, Zeros):
                    item = bytes(item.count)
                if isinstance(item, bytes) and items and isinstance(items[-1], bytes):
                    items[-1] += item
                else:
                    items.append(item)
            held = max(held, len(dec._buf) + len(dec.preamble))
    except ProtocolError:
        return "refused", [], held
    return "ok", items, held


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    logs = [p.read_bytes()[:200_000] for p in sorted((REPO / "tests/data/corpus").glob("*.log"))]
    counts = {"ok": 0, "refused": 0, "crash": 0, "chunking differences": 0}
    held_max = 0
    t0 = time.monotonic()
    for case in range(args.cases):
        if case % 5 == 4:
            data = HELLO + rng.randbytes(rng.randint(0, 400))
        else:
            data = mutate(rng, real_stream(rng, rng.choice(logs)[: rng.randint(0, 20000)]))
        cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.randint(0, 8))}) if len(data) > 1 else []
        try:
            whole = decode(data, [])
            parts = decode(data, cuts)
        except Exception:  # noqa: BLE001 - what this counts
            counts["crash"] += 1
            if counts["crash"] <= 3:
                traceback.print_exc()
            continue
        counts[whole[0]] += 1
        if whole[:2] != parts[:2]:
            counts["chunking differences"] += 1
        held_max = max(held_max, whole[2], parts[2])
    secs = time.monotonic() - t0
    print(f"{args.cases} cases in {secs:.0f} s: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"; at most {held_max} bytes held by the decoder")
    assert Header("H") == Header("H")
    return 1 if counts["crash"] or counts["chunking differences"] else 0


if __name__ == "__main__":
    sys.exit(main())
