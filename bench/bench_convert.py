#!/usr/bin/env python3
"""Benchmark: ``swtpm-extcap convert`` against the speed floor on the same big log.

Runs bench/floor.py and ``python -m swtpm_extcap convert`` alternately on a
real swtpm log made by bench/gen_big_log.py (default 200 MiB, with a Proxmox prefix
and without one, as libvirt writes it), and
reports MB/s, the time ratio to the floor (target <= 1.5) and the peak RSS of
the converter (target <= 64 MB whatever the log size). A smaller log is
converted too, to show that memory does not grow with the log.

``--log LOG`` (repeatable) measures those logs instead (issue 16: the 50 MB and
210 MB Proxmox logs of ``gen_big_log.py --mb 48`` and ``--mb 200``), with line
comments on (``convert``'s default) and, with ``--no-line-comments``, off too.

Both programs run from compiled bytecode, as an installed package does: the
runs share a bytecode cache in the work folder (``PYTHONPYCACHEPREFIX``), so a
machine with ``PYTHONDONTWRITEBYTECODE`` set does not compile the converter's
modules again on every run (the floor is one small file). The load average of
the machine before and after is printed with the figures.

usage: bench/bench_convert.py [--mb 200] [--repeat 3] [--workdir /tmp/swtpm-bench]
                              [--log LOG ...] [--no-line-comments]
"""

from __future__ import annotations

import argparse
import json
import os
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
    ap.add_argument("--log", type=Path, action="append", help="measure this log (repeatable)")
    ap.add_argument("--no-line-comments", action="store_true",
                    help="also measure convert --no-line-comments")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(args.workdir / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    results = {}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    if args.log:
        cases = [(log.name, log, None) for log in args.log]
    else:
        # Proxmox-style logs ([id=<epoch>] on every line) at two sizes (memory must
        # not grow with the log), and a libvirt-style log (no prefix) at full size
        cases = []
        for key, mb, prefix in [(f"{mb}", mb, PREFIX) for mb in sorted({max(1, args.mb // 10), args.mb})] + [
            (f"{args.mb}-noprefix", args.mb, None)
        ]:
            name = f"big-{mb}.log" if prefix else f"big-{mb}-noprefix.log"
            cases.append((key, big_log(args.workdir / name, mb, prefix=prefix, port=2621 if prefix else 2631),
                          prefix))
    variants = [("", [])] + ([("-no-line-comments", ["--no-line-comments"])] if args.no_line_comments else [])
    for (key, log, prefix), (suffix, extra) in [(c, v) for c in cases for v in variants]:
        key += suffix
        size = log.stat().st_size
        out = args.workdir / (log.stem + ".pcapng")
        floor_t, conv_t, rss = [], [], []
        for _ in range(args.repeat):
            secs, _, _ = run_measured([sys.executable, str(FLOOR), str(log)], env=env)
            floor_t.append(secs)
            secs, peak, _ = run_measured(
                [sys.executable, "-m", "swtpm_extcap", "convert", str(log), "-o", str(out), *extra],
                stderr=open("/dev/null", "w"), env=env, cwd=str(FLOOR.parent.parent),
            )
            conv_t.append(secs)
            rss.append(peak)
        f, c = statistics.median(floor_t), statistics.median(conv_t)
        results[key] = {
            "prefix": prefix,
            "ratios": [round(b / a, 3) for a, b in zip(floor_t, conv_t)],
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
            f"{key}: {size / 1e6:.0f} MB log: floor {f:.2f} s ({r['floor_mb_per_s']} MB/s), convert {c:.2f} s"
            f" ({r['convert_mb_per_s']} MB/s) = {r['ratio_to_floor']}x floor,"
            f" peak RSS {r['convert_peak_rss_mb']} MB (median of {args.repeat})",
            file=sys.stderr,
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
