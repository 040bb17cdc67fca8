#!/usr/bin/env python3
"""Live lag over SSH: append -> the record's bytes out of the source, at a steady exchange rate.

A writer appends swtpm records (one TPM command and its response per exchange, the
corpus's own lines) to a log at ``--rate`` exchanges per second, flushing each
record; a follow of the same log, (a) local (:class:`LocalFile`), (b) over SSH with
the reader waiting on inotifywait, (c) over SSH with the reader polling, yields
the bytes. The lag of an exchange is the time from the write of its last byte to
the moment the follow has yielded it. Reported: p50, p99, max per source, and
the SSH figures as ratios to the local ones measured in the same run. Also the
remote reader's CPU time while the log is idle (inotify vs poll), from
/proc of the reader's processes.

Real sshd (tests/sshd.py) on 127.0.0.1, root with a key. Run as root:
``python3 bench/bench_ssh_lag.py [--rate 200] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from sshd import root_login  # noqa: E402

from swtpm_extcap.remote.ssh import SSHParams  # noqa: E402
from swtpm_extcap.sources.local import LocalFile  # noqa: E402
from swtpm_extcap.sources.ssh import SSHSource  # noqa: E402

CORPUS = REPO / "tests" / "data" / "corpus" / "proxmox-103-swtpm.log"


def exchanges() -> list[bytes]:
    """The corpus cut into TPM exchanges (a command's lines and its response's)."""
    out, cur = [], b""
    for line in CORPUS.read_bytes().splitlines(keepends=True):
        if b"SWTPM_IO_Read" in line and cur:
            out.append(cur)
            cur = b""
        cur += line
    if cur:
        out.append(cur)
    return [e for e in out if b"SWTPM_IO_Write" in e] or out


def measure(source: object, log: Path, rate: float, seconds: float) -> list[float]:
    """Lag of every exchange (seconds)."""
    data = exchanges()
    stop = threading.Event()
    ends: list[tuple[int, float]] = []  # (byte offset after the exchange, write time)
    lags: list[float] = []
    lock = threading.Lock()
    got = 0
    ready = threading.Event()

    def follow() -> None:
        nonlocal got
        j = 0
        for item in source.follow(stop):  # type: ignore[attr-defined]
            if not isinstance(item, bytes):
                ready.set()
                continue
            got += len(item)
            now = time.perf_counter()
            with lock:
                while j < len(ends) and ends[j][0] <= got:
                    lags.append(now - ends[j][1])
                    j += 1

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    ready.wait(30)
    time.sleep(0.5)
    offset = log.stat().st_size
    step = 1.0 / rate
    t_next = time.perf_counter()
    n = int(rate * seconds)
    with open(log, "ab", buffering=0) as fh:
        for i in range(n):
            ex = data[i % len(data)]
            cut = ex.find(b"SWTPM_IO_Write")
            head, tail = (ex[:cut], ex[cut:]) if cut > 0 else (ex, b"")
            fh.write(head)  # the command's record, then the response's, as swtpm writes them
            if tail:
                fh.write(tail)
            offset += len(ex)
            with lock:
                ends.append((offset, time.perf_counter()))
            t_next += step
            pause = t_next - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(lags) < n:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    close = getattr(source, "close", None)
    if close is not None:
        close()
    return lags


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def idle_cpu(params: SSHParams, log: Path, wake: str, seconds: float) -> float:
    """CPU seconds per minute that the remote reader's processes use on an idle log."""
    source = SSHSource(params, str(log), wake=wake)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [None for _ in source.follow(stop)], daemon=True)
    thread.start()
    time.sleep(2)

    def reader_ticks() -> int:
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if str(log).encode() in cmd and cmd.startswith(b"sh\0-s"):
                fields = stat.rsplit(")", 1)[1].split()
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        return total

    t0, c0 = time.monotonic(), reader_ticks()
    time.sleep(seconds)
    t1, c1 = time.monotonic(), reader_ticks()
    stop.set()
    thread.join(10)
    source.close()
    return (c1 - c0) / os.sysconf("SC_CLK_TCK") * 60 / (t1 - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_ssh_lag: run as root (sshd with its own config, root key login)", file=sys.stderr)
        return 2
    with root_login("bench-ssh-lag-") as (_sshd, params, work):
        print(f"load average before: {os.getloadavg()[0]:.2f}; {args.rate:g} exchanges/s for"
              f" {args.seconds:g} s each")
        results = {}
        for label, make in (
            ("local", lambda log: LocalFile(str(log))),
            ("ssh inotify", lambda log: SSHSource(params, str(log), wake="inotify")),
            ("ssh poll", lambda log: SSHSource(params, str(log), wake="poll")),
        ):
            log = work / f"{label.replace(' ', '-')}.log"
            log.write_bytes(b"")
            lags = measure(make(log), log, args.rate, args.seconds)
            results[label] = lags
            print(f"  {label:12s} {len(lags)} exchanges: p50 {pct(lags, 50) * 1000:6.1f} ms,"
                  f" p99 {pct(lags, 99) * 1000:6.1f} ms, max {max(lags) * 1000:6.1f} ms")
        base = results["local"]
        for label in ("ssh inotify", "ssh poll"):
            lags = results[label]
            print(f"  {label} / local: p50 {statistics.median(lags) / statistics.median(base):.0f}x,"
                  f" p99 {pct(lags, 99) / pct(base, 99):.0f}x")
        idle = work / "idle.log"
        idle.write_bytes(b"idle\n")
        for wake in ("inotify", "poll"):
            cpu = idle_cpu(params, idle, wake, args.idle_seconds)
            print(f"  idle log, reader {wake}: {cpu:.2f} CPU s per minute on the host")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
