#!/usr/bin/env python3
"""Benchmark: ``swtpm-extcap convert`` against the speed floor on the same big log.

Runs bench/floor.py and ``python -m swtpm_extcap convert`` alternately on a
real swtpm log made by bench/gen_big_log.py (default 200 MiB, with a Proxmox prefix
and without one, as libvirt writes it), and
reports MB/s, the time ratio to the floor (target <= 1.5) and the peak RSS of
the converter (target <= 64 MB whatever the log size). A smaller log is
converted too, to show that memory does not grow with the log.

usage: bench/bench_convert.py [--mb 200] [--repeat 3] [--workdir /tmp/swtpm-bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FLOOR, PREFIX, big_log, run_measured  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/swtpm-bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    # Proxmox-style logs ([id=<epoch>] on every line) at two sizes (memory must
    # not grow with the log), and a libvirt-style log (no prefix) at full size
    cases = [(f"{mb}", mb, PREFIX) for mb in sorted({max(1, args.mb // 10), args.mb})]
    cases.append((f"{args.mb}-noprefix", args.mb, None))
    for key, mb, prefix in cases:
        name = f"big-{mb}.log" if prefix else f"big-{mb}-noprefix.log"
        log = big_log(args.workdir / name, mb, prefix=prefix, port=2621 if prefix else 2631)
        size = log.stat().st_size
        out = log.with_suffix(".pcapng")
        floor_t, conv_t, rss = [], [], []
        for _ in range(args.repeat):
            secs, _, _ = run_measured([sys.executable, str(FLOOR), str(log)])
            floor_t.append(secs)
            secs, peak, _ = run_measured(
                [sys.executable, "-m", "swtpm_extcap", "convert", str(log), "-o", str(out)],
                stderr=open("/dev/null", "w"),
            )
            conv_t.append(secs)
            rss.append(peak)
        f, c = statistics.median(floor_t), statistics.median(conv_t)
        results[key] = {
            "prefix": prefix,
            "log_bytes": size,
            "floor_seconds": round(f, 3),
            "convert_seconds": round(c, 3),
            "ratio_to_floor": round(c / f, 3),
            "floor_mb_per_s": round(size / f / 1e6, 1),
            "convert_mb_per_s": round(size / c / 1e6, 1),
            "convert_peak_rss_mb": round(max(rss) / 1024, 1),
            "pcapng_bytes": out.stat().st_size,
        }
        r = results[key]
        print(
            f"{size / 1e6:.0f} MB log ({'prefix ' + repr(prefix) if prefix else 'no prefix'}): floor {f:.2f} s ({r['floor_mb_per_s']} MB/s), convert {c:.2f} s"
            f" ({r['convert_mb_per_s']} MB/s) = {r['ratio_to_floor']}x floor,"
            f" peak RSS {r['convert_peak_rss_mb']} MB (median of {args.repeat})",
            file=sys.stderr,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
