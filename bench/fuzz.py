#!/usr/bin/env python3
"""The long fuzz run of issue 6: N mutated real logs (default 100,000), counted.

Each case is ``tests/fuzzlog.py``'s: a window of a real corpus log with one to
five mutations, parsed whole, line by line, through the line-by-line
reference and in random chunks (the events must be equal), then converted to
pcapng and walked block by block, and its ``pcrs`` reports (text, JSON,
``--diff``) written. Mutations include issue 16's: TPM size fields that lie
under PCR commands, PCR commands logged as several reads, runs of junk. Every ``--tshark-every``-th pcapng goes to
tshark, batched into multi-section files (checksums, packet count).

    bench/fuzz.py                      # 100,000 cases from seed 0
    bench/fuzz.py --cases 2000 --seed 500000 --jobs 2
    bench/fuzz.py --minutes 30         # as many as fit

Prints one line per 1,000 cases and a summary: cases, crashes (exceptions),
chunking differences, tshark-checked packets. Failing cases are written to
``--failures`` (seed and bytes) for replay with ``--seed S --cases 1``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import fuzzlog  # noqa: E402

CORPUS = REPO / "tests" / "data" / "corpus"


def _logs() -> list[tuple[str, list[bytes]]]:
    out = []
    for path in sorted(CORPUS.glob("*.log")):
        data = path.read_bytes()
        lines = data.split(b"\n")
        out.append((path.name, lines[:-1] if data.endswith(b"\n") else lines))
    return out


def _tshark_check(pcaps: list[bytes], folder: Path, index: int) -> tuple[int, str]:
    """(packets tshark read, "" or what was wrong) for one multi-section file."""
    path = folder / f"batch{index}.pcapng"
    path.write_bytes(b"".join(pcaps))
    expected = sum(fuzzlog.check_pcapng(p) for p in pcaps)
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
         "-T", "fields", "-e", "ip.checksum.status", "-e", "tcp.checksum.status"],
        capture_output=True, text=True, timeout=600,
    )
    rows = proc.stdout.splitlines()
    if proc.returncode != 0:
        return len(rows), f"tshark exit {proc.returncode}: {proc.stderr.strip()[:200]}"
    if len(rows) != expected:
        return len(rows), f"tshark read {len(rows)} of {expected} packets"
    bad = [r for r in rows if r.split("\t") != ["1", "1"]]
    if bad:
        return len(rows), f"{len(bad)} packets with bad checksums"
    path.unlink()
    return len(rows), ""


def _worker(args: tuple[int, int, int, str, str]) -> dict[str, object]:
    first, count, every, failures, tmp = args
    logs = _logs()
    crashes = mismatches = checked = 0
    problems: list[str] = []
    sample: list[bytes] = []
    batch = 0
    for seed in range(first, first + count):
        case = fuzzlog.make_case(seed, logs)
        try:
            pcap = fuzzlog.check(case)
        except fuzzlog.Mismatch as exc:
            mismatches += 1
            problems.append(f"seed {seed}: chunking: {str(exc)[:300]}")
            Path(failures, f"{seed}.log").write_bytes(case.data)
            continue
        except Exception:  # noqa: BLE001 - counted and recorded: that is the point
            crashes += 1
            problems.append(f"seed {seed}: {case}: {traceback.format_exc(limit=3)[-600:]}")
            Path(failures, f"{seed}.log").write_bytes(case.data)
            continue
        if every and seed % every == 0:
            sample.append(pcap)
            if len(sample) >= 50:
                n, wrong = _tshark_check(sample, Path(tmp), first + batch)
                checked += n
                batch += 1
                sample = []
                if wrong:
                    problems.append(f"tshark, seeds up to {seed}: {wrong}")
    if sample:
        n, wrong = _tshark_check(sample, Path(tmp), first + batch)
        checked += n
        if wrong:
            problems.append(f"tshark, last batch: {wrong}")
    return {"cases": count, "crashes": crashes, "mismatches": mismatches, "tshark_packets": checked,
            "problems": problems}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0, help="first seed (cases are seeds seed..seed+cases-1)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=0, help="stop starting new blocks after this long")
    ap.add_argument("--tshark-every", type=int, default=200, help="0: no tshark")
    ap.add_argument("--failures", default="fuzz-failures")
    args = ap.parse_args(argv)
    if args.tshark_every and shutil.which("tshark") is None:
        print("tshark not on PATH: use --tshark-every 0", file=sys.stderr)
        return 2
    os.makedirs(args.failures, exist_ok=True)
    block = 1000
    blocks = [(s, min(block, args.seed + args.cases - s)) for s in range(args.seed, args.seed + args.cases, block)]
    totals = {"cases": 0, "crashes": 0, "mismatches": 0, "tshark_packets": 0}
    problems: list[str] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="swtpm-fuzz-") as tmp, multiprocessing.Pool(args.jobs) as pool:
        work = [(s, n, args.tshark_every, args.failures, tmp) for s, n in blocks]
        for result in pool.imap(_worker, work):
            for key in totals:
                totals[key] += int(result[key])  # type: ignore[call-overload]
            problems += result["problems"]  # type: ignore[arg-type]
            secs = time.monotonic() - began
            print(f"{totals['cases']:>7} cases {secs:7.0f} s: {totals['crashes']} crashes,"
                  f" {totals['mismatches']} chunking differences, {totals['tshark_packets']} packets"
                  f" through tshark, {len(problems)} problems", flush=True)
            if args.minutes and secs > args.minutes * 60:
                pool.terminate()
                break
    for p in problems[:50]:
        print(p)
    print(f"fuzz: {totals['cases']} cases from seed {args.seed}: {totals['crashes']} crashes,"
          f" {totals['mismatches']} chunking differences, {totals['tshark_packets']} packets read back"
          f" by tshark, {len(problems)} problems, {time.monotonic() - began:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
