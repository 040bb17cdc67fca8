#!/usr/bin/env python3
"""Benchmark: latency from a log append to the parsed Record, with inotify and with polling.

An appender thread writes one real TPM exchange at a time (the command and
response records of the real swtpm log, header and hex lines, one ``write()``)
to a log at a steady rate. A consumer thread runs ``follow()`` + ``LogParser``
on that log. For every Record the latency is the time from just before the
``write()`` (``time.perf_counter``) to the Record coming out of the parser.

Reported per mode (inotify, poll): p50 / p99 / max / mean in milliseconds over
``--records`` records. JSON on stdout, a human line per mode on stderr.

usage: bench/bench_latency.py [--records 2000] [--rate 200] [--mode both|inotify|poll]
                              [--poll-interval 0.02] [--log LOG]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from swtpm_extcap.logparse import Kind, LogParser, Record, parse_bytes  # noqa: E402
from swtpm_extcap.sources.follow import POLL_INTERVAL, follow  # noqa: E402

DEMO_LOG = REPO / "swtpm_extcap" / "data" / "demo-swtpm.log"


def load_records(log: Path) -> list[tuple[Record, bytes]]:
    """Every record of a real swtpm log with its exact text (header + hex lines)."""
    data = log.read_bytes()
    lines = data.splitlines(keepends=True)
    return [
        (e, b"".join(lines[e.line - 1 : e.last_line]))
        for e in parse_bytes(data)
        if isinstance(e, Record) and e.intact
    ]


def tpm_exchanges(log: Path) -> list[bytes]:
    """The TPM command + response pairs of a log, each as the text of its two records."""
    records = load_records(log)
    out = []
    for (a, ta), (b, tb) in zip(records, records[1:]):
        if a.kind is Kind.TPM_COMMAND and b.kind is Kind.TPM_RESPONSE:
            out.append(ta + tb)
    if not out:
        raise SystemExit(f"{log}: no TPM command/response pairs")
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(exchanges: list[bytes], n_writes: int, rate: float, use_inotify: bool,
            poll_interval: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="swtpm-bench-latency-") as tmp:
        path = Path(tmp) / "103-swtpm.log"
        path.touch()
        stop = threading.Event()
        t_in: list[float] = []
        t_out: list[float] = []
        events: list[str] = []

        def consume() -> None:
            parser = LogParser()
            clock = time.perf_counter
            for chunk in follow(path, stop, use_inotify=use_inotify, poll_interval=poll_interval,
                                on_event=events.append):
                for event in parser.feed(chunk):
                    if type(event) is Record:
                        t_out.append(clock())

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        deadline = time.monotonic() + 5
        while not events and time.monotonic() < deadline:
            time.sleep(0.001)  # follow() has opened the log
        time.sleep(0.1)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            period = 1.0 / rate
            start = time.perf_counter()
            for i in range(n_writes):
                due = start + i * period
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t_in.append(time.perf_counter())
                os.write(fd, exchanges[i % len(exchanges)])
        finally:
            os.close(fd)
        deadline = time.monotonic() + 5
        while len(t_out) < 2 * n_writes and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        consumer.join(5)
    got = len(t_out)
    if got != 2 * n_writes:
        raise SystemExit(f"{'inotify' if use_inotify else 'poll'}: {got} records out of {2 * n_writes}")
    lat = [(t_out[j] - t_in[j // 2]) * 1000 for j in range(got)]
    return {
        "mode": "inotify" if use_inotify and any(e.startswith("inotify:") for e in events) else "poll",
        "records": got,
        "p50_ms": round(percentile(lat, 50), 3),
        "p99_ms": round(percentile(lat, 99), 3),
        "max_ms": round(max(lat), 3),
        "mean_ms": round(statistics.fmean(lat), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000, help="records to measure (2 per write)")
    ap.add_argument("--rate", type=float, default=200.0, help="TPM exchanges (writes) per second")
    ap.add_argument("--mode", choices=["both", "inotify", "poll"], default="both")
    ap.add_argument("--poll-interval", type=float, default=POLL_INTERVAL)
    ap.add_argument("--log", type=Path, default=DEMO_LOG, help="real swtpm log to take records from")
    args = ap.parse_args(argv)
    exchanges = tpm_exchanges(args.log)
    n_writes = max(1, args.records // 2)
    modes = {"both": [True, False], "inotify": [True], "poll": [False]}[args.mode]
    results = []
    for use_inotify in modes:
        r = measure(exchanges, n_writes, args.rate, use_inotify, args.poll_interval)
        results.append(r)
        print(f"follow latency ({r['mode']}): p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms,"
              f" max {r['max_ms']} ms, mean {r['mean_ms']} ms over {r['records']} records"
              f" ({args.rate:g} exchanges/s, poll interval {args.poll_interval:g} s)",
              file=sys.stderr)
    print(json.dumps({
        "benchmark": "follow_latency",
        "rate_exchanges_per_s": args.rate,
        "poll_interval_s": args.poll_interval,
        "log": args.log.name,
        "results": results,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
