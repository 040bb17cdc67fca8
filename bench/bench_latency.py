#!/usr/bin/env python3
"""Benchmark: latency from a log append to the frame on the extcap's fifo (default), or to the parsed Record.

End to end (the default): the real extcap runs as a subprocess, as Wireshark
runs it (``python -m swtpm_extcap --capture --extcap-interface swtpm-benchvm
--fifo FIFO --mode follow --ctrl``, the log named by a temporary
``$SWTPM_EXTCAP_CONFIG``, this checkout on ``PYTHONPATH``; see
``bench/_extcap_run.py``). This process appends one real TPM exchange at a
time (the command and response records of the real swtpm log, header and hex
lines, one ``write()``) at a steady rate, and a thread of it reads the fifo and
parses the pcapng stream (``bench/_pcapng_reader.py``). Every data frame's
Ethernet source address (``02:00:`` + N) names the log line N of its record's header,
which the appender knows (it counts the lines it writes). Latency per record =
``time.perf_counter()`` right after the fifo ``read()`` that completed its
frame - ``time.perf_counter()`` just before the ``write()`` that appended it,
both in this process. Also reported: records lost (no frame), duplicated,
wrong (payload differs from the record), the extcap's CPU use
(``/proc/<pid>/stat``), and that it exits 0 with nothing on stderr after
SIGTERM. The extcap has no switch to force polling, so end to end measures
what it does by itself (inotify on Linux; the run says which, from
``/proc/<pid>/fd``).

In-process (``--inprocess``): an appender thread writes as above; a consumer
thread runs ``follow()`` + ``LogParser`` on that log. For every Record the
latency is the time from just before the ``write()`` (``time.perf_counter``)
to the Record coming out of the parser; with inotify and with polling.

Reported: p50 / p99 / max / mean in milliseconds over ``--records`` records.
JSON on stdout, a human line per mode on stderr; exit status 1 if a record was
lost, duplicated or wrong, or the extcap did not stop cleanly (end to end).

usage: bench/bench_latency.py [--records 2000] [--rate 200] [--log LOG]
                              [--inprocess [--mode both|inotify|poll] [--poll-interval 0.02]]
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
from swtpm_extcap.swtpmlog.parser import Kind, LogParser, Record, parse_bytes  # noqa: E402
from swtpm_extcap.sources.follow import POLL_INTERVAL, follow  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from _extcap_run import ExtcapRun  # noqa: E402

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


Exchange = tuple[bytes, list[tuple[int, bytes]], int]
"""(text of the command and response records, [(header line - 1 within text, data)], lines)"""


def tpm_exchange_records(log: Path) -> list[Exchange]:
    """The TPM command + response pairs of a log, each with where its two headers are."""
    records = load_records(log)
    out: list[Exchange] = []
    for (a, ta), (b, tb) in zip(records, records[1:]):
        if a.kind is Kind.TPM_COMMAND and b.kind is Kind.TPM_RESPONSE:
            ta = ta if ta.endswith(b"\n") else ta + b"\n"
            tb = tb if tb.endswith(b"\n") else tb + b"\n"
            na = ta.count(b"\n")
            out.append((ta + tb, [(0, a.data), (na, b.data)], na + tb.count(b"\n")))
    if not out:
        raise SystemExit(f"{log}: no TPM command/response pairs")
    return out


def match_arrivals(
    arrivals: list[tuple[float, int | None, bytes]], want: dict[int, tuple[int, bytes]]
) -> tuple[dict[int, float], int, int, int]:
    """First arrival time per expected header line; (times, duplicated, wrong, unexpected)."""
    first: dict[int, float] = {}
    dup = wrong = unexpected = 0
    for t, line, payload in arrivals:
        w = want.get(line) if line is not None else None
        if w is None or line is None:
            unexpected += 1
        elif line in first:
            dup += 1
        else:
            first[line] = t
            if payload != w[1]:
                wrong += 1
    return first, dup, wrong, unexpected


def measure_e2e(exchanges: list[Exchange], n_writes: int, rate: float) -> dict[str, Any]:
    """Append ``n_writes`` exchanges to a log the real extcap follows; time each frame on the fifo."""
    want: dict[int, tuple[int, bytes]] = {}  # header line -> (write index, record data)
    t_in: list[float] = []
    with tempfile.TemporaryDirectory(prefix="swtpm-bench-latency-e2e-") as tmp:
        run = ExtcapRun(Path(tmp))
        try:
            run.start()
            reader = run.reader
            assert reader is not None
            cpu0 = run.cpu_seconds()
            w0 = time.perf_counter()
            fd = os.open(run.log, os.O_WRONLY | os.O_APPEND)
            lines = 0
            try:
                period = 1.0 / rate
                start = time.perf_counter()
                for i in range(n_writes):
                    text, heads, n_lines = exchanges[i % len(exchanges)]
                    for offset, data in heads:
                        want[lines + offset + 1] = (i, data)
                    lines += n_lines
                    due = start + i * period
                    delay = due - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    t_in.append(time.perf_counter())
                    os.write(fd, text)
            finally:
                os.close(fd)
            cpu, at, rss, stopped = run.drain(len(want), cpu0)
            wall = at - w0
        finally:
            run.kill()
    first, dup, wrong, unexpected = match_arrivals(reader.arrivals, want)
    lat = [(t - t_in[want[line][0]]) * 1000 for line, t in first.items()]
    return {
        "mode": run.watch,
        "path": "append -> frame read from the extcap's fifo (extcap subprocess)",
        "records": len(want),
        "frames_received": len(reader.arrivals),
        "lost": len(want) - len(first),
        "duplicated": dup,
        "wrong": wrong,
        "unexpected": unexpected + reader.unlabelled,
        "p50_ms": round(percentile(lat, 50), 3) if lat else -1,
        "p99_ms": round(percentile(lat, 99), 3) if lat else -1,
        "max_ms": round(max(lat), 3) if lat else -1,
        "mean_ms": round(statistics.fmean(lat), 3) if lat else -1,
        "extcap_cpu_s": round(cpu, 2),
        "extcap_cpu_percent": round(100 * cpu / wall, 1),
        "extcap_peak_rss_kib": rss,
        **stopped,
    }


def stopped_text(r: dict[str, Any]) -> str:
    err = r["extcap_stderr"]
    return (f"SIGTERM -> exit {r['extcap_exit_code']} in {r['extcap_stop_ms']} ms,"
            f" stderr {'empty' if not err else repr(err)}")


def clean_stop(r: dict[str, Any]) -> bool:
    return r["extcap_exit_code"] == 0 and not r["extcap_stderr"] and r["fifo_eof"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--records", type=int, default=2000, help="records to measure (2 per write)")
    ap.add_argument("--rate", type=float, default=200.0, help="TPM exchanges (writes) per second")
    ap.add_argument("--inprocess", action="store_true",
                    help="measure follow() + LogParser in this process instead of the extcap")
    ap.add_argument("--mode", choices=["both", "inotify", "poll"], default=None,
                    help="--inprocess only (default both); end to end is always the extcap's own")
    ap.add_argument("--poll-interval", type=float, default=None, help="--inprocess only")
    ap.add_argument("--log", type=Path, default=DEMO_LOG, help="real swtpm log to take records from")
    args = ap.parse_args(argv)
    n_writes = max(1, args.records // 2)
    if not args.inprocess:
        if args.mode not in (None, "inotify") or args.poll_interval is not None:
            ap.error("the extcap has no option to force polling: --mode poll/both and"
                     " --poll-interval need --inprocess")
        r = measure_e2e(tpm_exchange_records(args.log), n_writes, args.rate)
        print(f"extcap latency end to end ({r['mode']}): p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms,"
              f" max {r['max_ms']} ms, mean {r['mean_ms']} ms over {r['records']} records"
              f" ({args.rate:g} exchanges/s); frames {r['frames_received']}, lost {r['lost']},"
              f" duplicated {r['duplicated']}, wrong {r['wrong']}, unexpected {r['unexpected']};"
              f" extcap CPU {r['extcap_cpu_s']} s ({r['extcap_cpu_percent']}%);"
              f" {stopped_text(r)}", file=sys.stderr)
        print(json.dumps({
            "benchmark": "extcap_latency",
            "rate_exchanges_per_s": args.rate,
            "log": args.log.name,
            "results": [r],
        }, indent=2))
        bad = r["lost"] or r["duplicated"] or r["wrong"] or r["unexpected"] or not clean_stop(r)
        return 1 if bad else 0
    poll_interval = POLL_INTERVAL if args.poll_interval is None else args.poll_interval
    exchanges = tpm_exchanges(args.log)
    modes = {"both": [True, False], "inotify": [True], "poll": [False]}[args.mode or "both"]
    results = []
    for use_inotify in modes:
        r = measure(exchanges, n_writes, args.rate, use_inotify, poll_interval)
        results.append(r)
        print(f"follow latency ({r['mode']}): p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms,"
              f" max {r['max_ms']} ms, mean {r['mean_ms']} ms over {r['records']} records"
              f" ({args.rate:g} exchanges/s, poll interval {poll_interval:g} s)",
              file=sys.stderr)
    print(json.dumps({
        "benchmark": "follow_latency",
        "rate_exchanges_per_s": args.rate,
        "poll_interval_s": poll_interval,
        "log": args.log.name,
        "results": results,
    }, indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
