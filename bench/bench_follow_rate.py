#!/usr/bin/env python3
"""Benchmark: a steady 5,000 records/s appended for N seconds: loss (must be 0) and lag, end to end by default.

End to end (the default): the real extcap runs as a subprocess, as Wireshark
runs it (``python -m swtpm_extcap --capture --extcap-interface swtpm-benchvm
--fifo FIFO --mode follow --ctrl``, the log named by a temporary
``$SWTPM_EXTCAP_CONFIG``, this checkout on ``PYTHONPATH``; see
``bench/_extcap_run.py``). This process appends the records of a real swtpm
log (header + hex lines, cycling through the log) at ``--rate`` records per
second, in one ``write()`` per 10 ms tick, and a thread of it reads the fifo
and parses the pcapng stream (``bench/_pcapng_reader.py``). Each data frame's
Ethernet source address (``02:00:`` + N) names its record's header line, which the
appender knows (it counts the lines it writes); its TCP payload is checked
against the record written there. Lag per record = ``time.perf_counter()``
right after the fifo ``read()`` that completed its frame - ``perf_counter()``
just before the ``write()`` that carried the record. Reported: records
appended, frames received, lost (records with no frame), duplicated, wrong,
lag p50 / p99 / max, the extcap's CPU use over the run (utime + stime from
``/proc/<pid>/stat``) and that it exits 0 with nothing on stderr after
SIGTERM. The extcap has no switch to force polling, so end to end measures
what it does by itself (inotify on Linux; the run says which).

In-process (``--inprocess``): a consumer thread runs ``follow()`` +
``LogParser`` on the log and checks every Record against the one written at
its place (same kind, same bytes); lag is up to the Record coming out of the
parser; per mode (inotify, poll), with the consumer thread's CPU use.

JSON on stdout, a human line per mode on stderr; exit status 1 if any record
was lost, duplicated or wrong, or the extcap did not stop cleanly.

usage: bench/bench_follow_rate.py [--seconds 60] [--rate 5000] [--log LOG]
                                  [--inprocess [--mode both|inotify|poll] [--poll-interval 0.02]]
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
from _extcap_run import ExtcapRun  # noqa: E402
from bench_latency import DEMO_LOG, clean_stop, load_records, match_arrivals, percentile  # noqa: E402
from bench_latency import stopped_text  # noqa: E402

from swtpm_extcap.swtpmlog.parser import LogParser, Record  # noqa: E402
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


def measure_e2e(records: list[tuple[Record, bytes]], seconds: float, rate: float) -> dict[str, Any]:
    """Append at ``rate`` records/s for ``seconds`` to a log the real extcap follows; match its frames."""
    n = len(records)
    texts = [t if t.endswith(b"\n") else t + b"\n" for _, t in records]
    n_lines = [t.count(b"\n") for t in texts]
    datas = [r.data for r, _ in records]
    want: dict[int, tuple[int, bytes]] = {}  # header line -> (batch index, record data)
    batch_t: list[float] = []  # time just before each write()
    with tempfile.TemporaryDirectory(prefix="swtpm-bench-rate-e2e-") as tmp:
        run = ExtcapRun(Path(tmp))
        try:
            run.start()
            reader = run.reader
            assert reader is not None
            cpu0 = run.cpu_seconds()
            fd = os.open(run.log, os.O_WRONLY | os.O_APPEND)
            written = 0
            written_bytes = 0
            lines = 0
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
                        batch = len(batch_t)
                        for j in range(written, target):
                            k = j % n
                            want[lines + 1] = (batch, datas[k])
                            lines += n_lines[k]
                        data = b"".join(texts[j % n] for j in range(written, target))
                        batch_t.append(time.perf_counter())
                        os.write(fd, data)
                        written = target
                        written_bytes += len(data)
                    if elapsed >= seconds:
                        break
                wall = time.perf_counter() - start
            finally:
                os.close(fd)
            cpu, at, rss, stopped = run.drain(written, cpu0)
            run_wall = at - start
        finally:
            run.kill()
    first, dup, wrong, unexpected = match_arrivals(reader.arrivals, want)
    lag_ms = sorted((t - batch_t[want[line][0]]) * 1000 for line, t in first.items())
    return {
        "mode": run.watch,
        "path": "append -> frame read from the extcap's fifo (extcap subprocess)",
        "seconds": round(wall, 3),
        "records_appended": written,
        "frames_received": len(reader.arrivals),
        "lost": written - len(first),
        "duplicated": dup,
        "wrong": wrong,
        "unexpected": unexpected + reader.unlabelled,
        "records_per_s": round(written / wall, 1),
        "bytes_per_s": round(written_bytes / wall),
        "fifo_bytes": reader.bytes,
        "lag_p50_ms": round(percentile(lag_ms, 50), 3) if lag_ms else -1,
        "lag_p99_ms": round(percentile(lag_ms, 99), 3) if lag_ms else -1,
        "lag_max_ms": round(lag_ms[-1], 3) if lag_ms else -1,
        "lag_over_100ms": sum(1 for x in lag_ms if x > 100),
        "extcap_cpu_s": round(cpu, 2),
        "extcap_cpu_percent": round(100 * cpu / run_wall, 1),
        "extcap_peak_rss_kib": rss,
        **stopped,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=5000.0, help="records per second")
    ap.add_argument("--inprocess", action="store_true",
                    help="measure follow() + LogParser in this process instead of the extcap")
    ap.add_argument("--mode", choices=["both", "inotify", "poll"], default=None,
                    help="--inprocess only (default both); end to end is always the extcap's own")
    ap.add_argument("--poll-interval", type=float, default=None, help="--inprocess only")
    ap.add_argument("--log", type=Path, default=DEMO_LOG, help="real swtpm log to take records from")
    args = ap.parse_args(argv)
    records = load_records(args.log)
    if not args.inprocess:
        if args.mode not in (None, "inotify") or args.poll_interval is not None:
            ap.error("the extcap has no option to force polling: --mode poll/both and"
                     " --poll-interval need --inprocess")
        r = measure_e2e(records, args.seconds, args.rate)
        print(f"extcap rate end to end ({r['mode']}): {r['records_appended']} records appended in"
              f" {r['seconds']} s ({r['records_per_s']}/s, {r['bytes_per_s'] / 1e6:.2f} MB/s),"
              f" {r['frames_received']} frames received: lost {r['lost']},"
              f" duplicated {r['duplicated']}, wrong {r['wrong']}, unexpected {r['unexpected']};"
              f" lag p50 {r['lag_p50_ms']} ms, p99 {r['lag_p99_ms']} ms, max {r['lag_max_ms']} ms;"
              f" extcap CPU {r['extcap_cpu_s']} s ({r['extcap_cpu_percent']}%);"
              f" {stopped_text(r)}", file=sys.stderr)
        print(json.dumps({
            "benchmark": "extcap_rate",
            "rate_records_per_s": args.rate,
            "log": args.log.name,
            "results": [r],
        }, indent=2))
        bad = r["lost"] or r["duplicated"] or r["wrong"] or r["unexpected"] or not clean_stop(r)
        return 1 if bad else 0
    poll_interval = POLL_INTERVAL if args.poll_interval is None else args.poll_interval
    modes = {"both": [True, False], "inotify": [True], "poll": [False]}[args.mode or "both"]
    results = []
    for use_inotify in modes:
        r = measure(records, args.seconds, args.rate, use_inotify, poll_interval)
        results.append(r)
        print(f"follow rate ({r['mode']}): {r['records_written']} records in {r['seconds']} s"
              f" ({r['records_per_s']}/s, {r['bytes_per_s'] / 1e6:.2f} MB/s):"
              f" lost {r['lost']}, extra {r['extra']}, wrong {r['wrong']};"
              f" lag p50 {r['lag_p50_ms']} ms, p99 {r['lag_p99_ms']} ms, max {r['lag_max_ms']} ms;"
              f" consumer CPU {r['consumer_cpu_percent']}%", file=sys.stderr)
    print(json.dumps({
        "benchmark": "follow_rate",
        "rate_records_per_s": args.rate,
        "poll_interval_s": poll_interval,
        "log": args.log.name,
        "results": results,
    }, indent=2))
    bad = any(r["lost"] or r["extra"] or r["wrong"] for r in results)
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
