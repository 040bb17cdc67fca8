#!/usr/bin/env python3
"""Benchmark: ``swtpm-extcap pcrs`` beside ``convert`` on the same big logs, and what the
``pcr:`` frame comments cost ``convert``.

Two logs: a real swtpm log made by a generator (default 200 MiB, Proxmox prefix;
one run of GetRandom/PCR_Read/Hash/GetCapability, ~25% of the commands are
PCR_Read: the worst case for the read check), and a "many boots" log made by
appending the corpus' two-boot Proxmox log again and again with new
``[id=<epoch>]`` prefixes (thousands of runs, each with Startup, 6 extends in two
banks and PCR_Reads: memory must not grow with the number of runs or extends).

Per log, alternating, ``--repeat`` times: ``convert`` (with the PCR notes),
``convert`` without them (the same pipeline with the plain parser and framer:
what convert cost before), ``pcrs`` (text) and ``pcrs --json``, each a child
process with stdout to /dev/null; medians of wall and CPU seconds, peak RSS.

usage: bench/bench_pcrs.py [--mb 200] [--boots-mb 50] [--repeat 3] [--log BIG.log]
                           [--gen bench/gen_big_log.py] [--workdir /tmp/swtpm-bench-pcrs]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS_LOG = REPO / "tests" / "data" / "corpus" / "proxmox-103-swtpm.log"
SHARED_GEN = REPO.parent / "shared" / "corpus" / "gen-big-log.py"
PREFIX = "[id=1732600000] "

#: convert without the PCR notes: the pipeline with the plain parser and framer
PLAIN_CONVERT = """
import sys
from swtpm_extcap.pcapng.pipeline import Pipeline
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as out:
    pipe = Pipeline(out, name="x", description="x", ctrl=True, pcr_notes=False)
    while chunk := src.read(1 << 20):
        pipe.feed(chunk)
    pipe.close()
"""


def default_gen() -> Path:
    own = HERE / "gen_big_log.py"
    return own if own.exists() else SHARED_GEN


def make_big_log(gen: Path, path: Path, mb: int) -> Path:
    if path.exists() and path.stat().st_size >= mb * (1 << 20) * 0.95:
        return path
    cmd = [sys.executable, str(gen), "--log", str(path), "--mb", str(mb), "--seed", "1",
           "--prefix", PREFIX, "--port", "2921"]
    if gen.name == "gen-big-log.py":  # the shared corpus' generator: its ctrl port is not port+1
        cmd += ["--ctrl-port", "2922"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def make_boots_log(path: Path, mb: int) -> tuple[Path, int]:
    """The corpus' two-boot log appended again and again, each copy with new epochs."""
    text = CORPUS_LOG.read_text("latin-1")
    epochs = sorted({line[4:14] for line in text.splitlines() if line.startswith("[id=")})
    copies = max(1, mb * (1 << 20) // len(text))
    if not (path.exists() and path.stat().st_size >= copies * len(text)):
        with open(path, "w", encoding="latin-1") as out:
            for i in range(copies):
                chunk = text
                for j, epoch in enumerate(epochs):
                    chunk = chunk.replace(f"[id={epoch}]", f"[id={1800000000 + 10 * i + j}]")
                out.write(chunk)
    return path, copies * len(epochs)


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS KiB) of one child process, stdout to /dev/null."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def bench_log(log: Path, repeat: int) -> dict[str, object]:
    out = log.with_suffix(".pcapng")
    py = sys.executable
    cases = {
        "convert": [py, "-m", "swtpm_extcap", "convert", str(log), "-o", str(out)],
        "convert_without_pcr_notes": [py, "-c", PLAIN_CONVERT, str(log), str(out)],
        "pcrs": [py, "-m", "swtpm_extcap", "pcrs", str(log)],
        "pcrs_json": [py, "-m", "swtpm_extcap", "pcrs", "--json", str(log)],
    }
    runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, cmd in cases.items():
            runs[name].append(measure(cmd))
    size = log.stat().st_size
    result: dict[str, object] = {"log": str(log), "log_bytes": size}
    for name, values in runs.items():
        wall = statistics.median(v[0] for v in values)
        result[name] = {
            "wall_s": round(wall, 2),
            "cpu_s": round(statistics.median(v[1] for v in values), 2),
            "mb_per_s": round(size / wall / 1e6, 1),
            "peak_rss_mb": round(max(v[2] for v in values) / 1024, 1),
        }
    cpu = {name: statistics.median(v[1] for v in runs[name]) for name in runs}
    result["pcr_notes_cost_cpu"] = f"{cpu['convert'] / cpu['convert_without_pcr_notes'] - 1:+.1%}"
    result["pcrs_cpu_vs_convert"] = f"{cpu['pcrs'] / cpu['convert']:.2f}x"
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--boots-mb", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--log", type=Path, help="use this big log instead of generating one")
    ap.add_argument("--gen", type=Path, default=default_gen(), help="the big-log generator")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/swtpm-bench-pcrs"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    big = args.log or make_big_log(args.gen, args.workdir / f"big-{args.mb}.log", args.mb)
    boots, runs = make_boots_log(args.workdir / f"boots-{args.boots_mb}.log", args.boots_mb)
    results = {"big": bench_log(big, args.repeat), "boots": {"runs": runs, **bench_log(boots, args.repeat)}}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
