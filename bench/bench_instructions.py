#!/usr/bin/env python3
"""Benchmark: instructions instead of seconds (``valgrind --tool=callgrind``): `convert` against the floor, and a live batch.

This machine's speed swings by 2x within a minute (seven runs of the floor in a
row: 0.71 s to 1.67 s), so wall-clock ratios of two programs scatter from 0.6x
to 1.9x; an instruction count is the same on every run. Both measures are in
docs/performance.md: bench_convert.py and bench_follow_rate.py for what a user
waits, this for what a change saves.

* ``convert``: bench/floor.py and ``python -m swtpm_extcap convert LOG -o OUT`` as
  whole processes (start-up included), bytecode cached as an installed package
  has it (a first run compiles it), ``PYTHONHASHSEED=0`` (counts repeat exactly).
  Reported: both counts and their ratio (issue 16's target: 1.1x).
* ``--live``: the live capture's work on one tick of the 5,000 records/s benchmark
  (bench_follow_rate.py writes 50 records every 10 ms): the demo log's records,
  cycled 20 times, in batches of 50 through the capture's Pipeline (parse, PCR and
  policy replay, frame, pcapng) into /dev/null, minus the same process that only
  sets up; reported per batch and per record.

usage: bench/bench_instructions.py [--log LOG ...] [--live] [--workdir /tmp/swtpm-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FLOOR  # noqa: E402

REPO = FLOOR.parent.parent
BATCH = 50
CYCLES = 20


def instructions(argv: list[str], env: dict[str, str]) -> int:
    """Instructions callgrind counts for the whole process ``argv``."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        env=env, cwd=REPO, capture_output=True, text=True, check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"callgrind counted nothing for {argv[0]} (a wrapper script, not the interpreter?)")
    return int(found.group(1))


def live_batches(mode: str) -> None:
    """The child of ``--live``: ``setup`` only, or ``run`` the batches too."""
    sys.path.insert(0, str(REPO))
    from bench_latency import DEMO_LOG, load_records

    from swtpm_extcap.pcapng.pipeline import Pipeline

    texts = [text for _, text in load_records(DEMO_LOG)]
    stream = [texts[i % len(texts)] for i in range(len(texts) * CYCLES)]
    batches = [b"".join(stream[i : i + BATCH]) for i in range(0, len(stream) - BATCH + 1, BATCH)]
    with open(os.devnull, "wb") as out:
        pipe = Pipeline(out, name="bench", description="bench", start_us=1_700_000_000_000_000,
                        ctrl=True, live=True)
        pipe.write(pipe.parse(batches[0]), None)  # the backlog: caches and code warm
        if mode == "run":
            now = 1_800_000_000_000_000
            for batch in batches[1:]:
                now += 10_000
                pipe.write(pipe.parse(batch), now)
    print(len(batches) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, action="append", default=[], help="convert this log (repeatable)")
    ap.add_argument("--live", action="store_true", help="count one live batch of 50 records")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/swtpm-bench"))
    ap.add_argument("--child", choices=["setup", "run"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        live_batches(args.child)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    python = os.path.realpath(sys.executable)
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPYCACHEPREFIX=str(args.workdir / "pycache"),
               PYTHONPATH=str(REPO))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    results: dict[str, dict[str, float]] = {}
    for log in args.log:
        out = args.workdir / (log.stem + ".pcapng")
        conv = [python, "-m", "swtpm_extcap", "convert", str(log), "-o", str(out)]
        subprocess.run(conv, env=env, cwd=REPO, capture_output=True, check=True)  # compile the bytecode
        floor = instructions([python, str(FLOOR), str(log)], env)
        converted = instructions(conv, env)
        results[log.name] = {"floor": floor, "convert": converted, "ratio": round(converted / floor, 3)}
        print(f"{log.name}: floor {floor / 1e6:,.0f} M, convert {converted / 1e6:,.0f} M instructions"
              f" = {converted / floor:.3f}x", file=sys.stderr)
    if args.live:
        me = [python, str(Path(__file__).resolve()), "--child"]
        batches = int(subprocess.run([*me, "setup"], env=env, capture_output=True, text=True,
                                     check=True).stdout)
        work = instructions([*me, "run"], env) - instructions([*me, "setup"], env)
        results["live"] = {"batches": batches, "per_batch": work // batches,
                           "per_record": work // (batches * BATCH)}
        print(f"live: {work / batches / 1e6:.2f} M instructions a batch of {BATCH} records"
              f" ({work // (batches * BATCH):,} a record), {batches} batches", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
