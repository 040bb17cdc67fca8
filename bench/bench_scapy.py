#!/usr/bin/env python3
"""Benchmark: building the TPM frames with scapy vs swtpm-extcap's own framer.

The owner named scapy; this measures whether it serves on the conversion hot
path. Both build the same Ethernet/IPv4/TCP frames (valid checksums) for the
TPM records of a real corpus log; the bytes are compared, then each is timed.

usage: bench/bench_scapy.py [LOG]   (default: the corpus' proxmox-103 log)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

from swtpm_extcap.pcapng.frames import CLIENT_PORT_BASE, TPM_PORT, build_frame  # noqa: E402
from swtpm_extcap.swtpmlog.parser import Kind, Record, parse_bytes  # noqa: E402



def scapy_frame(sport: int, dport: int, seq: int, ack: int, payload: bytes) -> bytes:
    pkt = (
        Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00")
        / IP(src="127.0.0.1", dst="127.0.0.1", tos=0x10, id=0, flags="DF", ttl=64)
        / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags="PA", window=0xFFFF)
        / payload
    )
    return bytes(pkt)


def main() -> None:
    log = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "data" / "corpus" / "proxmox-103-swtpm.log"
    records = [e for e in parse_bytes(log.read_bytes()) if isinstance(e, Record) and e.kind.is_tpm]
    jobs = []
    cseq, sseq = 1000, 5000
    for rec in records:
        if rec.kind is Kind.TPM_COMMAND:
            jobs.append((CLIENT_PORT_BASE, TPM_PORT, cseq, sseq, rec.data))
            cseq += len(rec.data)
        else:
            jobs.append((TPM_PORT, CLIENT_PORT_BASE, sseq, cseq, rec.data))
            sseq += len(rec.data)
    ours = [build_frame(s, d, q, a, 0x18, p) for s, d, q, a, p in jobs]
    theirs = [scapy_frame(*job) for job in jobs]
    assert ours == theirs, "scapy and the framer disagree"
    timings = {}
    for name, fn in (("framer", lambda j: build_frame(j[0], j[1], j[2], j[3], 0x18, j[4])),
                     ("scapy", lambda j: scapy_frame(*j))):
        start = time.perf_counter()
        for job in jobs:
            fn(job)
        timings[name] = (time.perf_counter() - start) / len(jobs) * 1e6
    result = {
        "frames": len(jobs),
        "identical_bytes": True,
        "framer_us_per_frame": round(timings["framer"], 2),
        "scapy_us_per_frame": round(timings["scapy"], 1),
        "scapy_seconds_for_200MB_log": round(timings["scapy"] * 456_192 / 1e6, 1),
    }
    print(
        f"{len(jobs)} frames, byte-identical; framer {result['framer_us_per_frame']} us/frame,"
        f" scapy {result['scapy_us_per_frame']} us/frame"
        f" (a 200 MB log's 456,192 frames: {result['scapy_seconds_for_200MB_log']} s in scapy alone)",
        file=sys.stderr,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
