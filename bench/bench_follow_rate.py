#!/usr/bin/env python3
"""Benchmark: follow() under a steady 5,000 records/s for N seconds: loss (must be 0) and lag.

An appender thread writes the records of a real swtpm log (header + hex
lines, cycling through the log) at ``--rate`` records per second, in one
``write()`` per 10 ms tick. A consumer thread runs ``follow()`` +
``LogParser`` and checks every Record against the one written at its place
(same kind, same bytes): lost, duplicated or changed records are counted.
Lag is, per record, the time from just before the ``write()`` that carried it
to the Record coming out of the parser.

Reported per mode (inotify, poll): records written and seen, lost, wrong,
lag p50 / p99 / max in ms, and the consumer thread's CPU use. JSON on stdout,
a human line per mode on stderr; exit status 1 if any record was lost.

usage: bench/bench_follow_rate.py [--seconds 60] [--rate 5000] [--mode both|inotify|poll]
                                  [--poll-interval 0.02] [--log LOG]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
from bench_latency import DEMO_LOG, load_records, percentile  # noqa: E402

from swtpm_extcap.logparse import LogParser, Record  # noqa: E402
from swtpm_extcap.sources.follow import POLL_INTERVAL, follow  # noqa: E402

TICK = 0.010  # seconds between writes


def measure(records: list[tuple[Record, bytes]], seconds: float, rate: float, use_inotify: bool,
            poll_interval: float) -> dict[str, Any]:
    n = len(records)
    want = [(r.kind, r.data) for r, _ in records]
    texts = [t for _, t in records]
    # batches: (index of the first record after this write, time just before it)
    batch_end: list[int] = []
    batch_t: list[float] = []
    seen = 0
    wrong = 0
    lags: list[float] = []
    events: list[str] = []
    cpu = [0.0]
    with tempfile.TemporaryDirectory(prefix="swtpm-bench-rate-") as tmp:
        path = Path(tmp) / "103-swtpm.log"
        path.touch()
        stop = threading.Event()

        def consume() -> None:
            nonlocal seen, wrong
            parser = LogParser()
            clock = time.perf_counter
            batch = 0
            cpu0 = time.thread_time()
            for chunk in follow(path, stop, use_inotify=use_inotify, poll_interval=poll_interval,
                                on_event=events.append):
                now = clock()
                for event in parser.feed(chunk):
                    if type(event) is not Record:
                        continue
                    if (event.kind, event.data) != want[seen % n]:
                        wrong += 1
                    while batch < len(batch_end) and seen >= batch_end[batch]:
                        batch += 1
                    if batch < len(batch_t):
                        lags.append(now - batch_t[batch])
                    seen += 1
            cpu[0] = time.thread_time() - cpu0

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        deadline = time.monotonic() + 5
        while not events and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.1)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        written = 0
        written_bytes = 0
        try:
            start = time.perf_counter()
            tick = 0
            while True:
                tick += 1
                due = start + tick * TICK
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elapsed = min(time.perf_counter() - start, seconds)
                target = int(elapsed * rate)
                if target > written:
                    data = b"".join(texts[i % n] for i in range(written, target))
                    batch_t.append(time.perf_counter())
                    batch_end.append(target)
                    os.write(fd, data)
                    written = target
                    written_bytes += len(data)
                if elapsed >= seconds:
                    break
            wall = time.perf_counter() - start
        finally:
            os.close(fd)
        deadline = time.monotonic() + 10
        while seen < written and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # anything extra (a duplicate) would show up now
        stop.set()
        consumer.join(10)
    lag_ms = [x * 1000 for x in lags]
    return {
        "mode": "inotify" if use_inotify and any(e.startswith("inotify:") for e in events) else "poll",
        "seconds": round(wall, 3),
        "records_written": written,
        "records_seen": seen,
        "lost": max(0, written - seen),
        "extra": max(0, seen - written),
        "wrong": wrong,
        "records_per_s": round(written / wall, 1),
        "bytes_per_s": round(written_bytes / wall),
        "lag_p50_ms": round(percentile(lag_ms, 50), 3) if lag_ms else -1,
        "lag_p99_ms": round(percentile(lag_ms, 99), 3) if lag_ms else -1,
        "lag_max_ms": round(max(lag_ms), 3) if lag_ms else -1,
        "consumer_cpu_percent": round(100 * cpu[0] / wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=5000.0, help="records per second")
    ap.add_argument("--mode", choices=["both", "inotify", "poll"], default="both")
    ap.add_argument("--poll-interval", type=float, default=POLL_INTERVAL)
    ap.add_argument("--log", type=Path, default=DEMO_LOG, help="real swtpm log to take records from")
    args = ap.parse_args(argv)
    records = load_records(args.log)
    modes = {"both": [True, False], "inotify": [True], "poll": [False]}[args.mode]
    results = []
    for use_inotify in modes:
        r = measure(records, args.seconds, args.rate, use_inotify, args.poll_interval)
        results.append(r)
        print(f"follow rate ({r['mode']}): {r['records_written']} records in {r['seconds']} s"
              f" ({r['records_per_s']}/s, {r['bytes_per_s'] / 1e6:.2f} MB/s):"
              f" lost {r['lost']}, extra {r['extra']}, wrong {r['wrong']};"
              f" lag p50 {r['lag_p50_ms']} ms, p99 {r['lag_p99_ms']} ms, max {r['lag_max_ms']} ms;"
              f" consumer CPU {r['consumer_cpu_percent']}%", file=sys.stderr)
    print(json.dumps({
        "benchmark": "follow_rate",
        "rate_records_per_s": args.rate,
        "poll_interval_s": args.poll_interval,
        "log": args.log.name,
        "results": results,
    }, indent=2))
    bad = any(r["lost"] or r["extra"] or r["wrong"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
