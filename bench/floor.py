#!/usr/bin/env python3
"""The speed floor of a conversion: read a log's lines and hex-decode its payload lines, nothing else.

No record framing, no pcapng: a converter in pure Python cannot reasonably do
less. bench_convert.py reports convert's time as a ratio to this, measured on
the same file in the same run.

usage: bench/floor.py LOG      prints: <bytes decoded> <seconds> <MB/s>
"""

from __future__ import annotations

import sys
import time


def floor(path: str) -> tuple[int, int]:
    """(bytes decoded, bytes read) of the log at ``path``."""
    decoded = size = 0
    with open(path, "rb") as fh:
        for line in fh:
            size += len(line)
            body = line[line.find(b"]") + 1:]  # after an [id=...] prefix, if any
            if b"length" in body:  # a record's header line
                continue
            try:
                decoded += len(bytes.fromhex(body.decode("ascii")))
            except ValueError:  # not a hex line
                pass
    return decoded, size


def main() -> None:
    began = time.perf_counter()
    decoded, size = floor(sys.argv[1])
    secs = time.perf_counter() - began
    print(decoded, f"{secs:.3f}", f"{size / secs / 1e6:.1f}")


if __name__ == "__main__":
    main()
