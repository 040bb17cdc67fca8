"""Shared helpers for the benchmarks: the big log, timing a child process with its peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
#: the project's own big-log generator and speed floor: nothing outside the checkout is read
GEN = BENCH / "gen_big_log.py"
FLOOR = BENCH / "floor.py"
#: the real swtpm logs of the test suite
CORPUS = BENCH.parent / "tests" / "data" / "corpus"
PREFIX = "[id=1732600000] "


def big_log(path: Path, mb: int, *, prefix: str | None = PREFIX, port: int = 2621) -> Path:
    """A real swtpm log of ``mb`` MiB made by gen_big_log.py (reused when already there)."""
    if path.exists() and path.stat().st_size >= mb * (1 << 20):
        return path
    cmd = [sys.executable, str(GEN), "--log", str(path), "--mb", str(mb), "--seed", "1",
           "--port", str(port)]
    if prefix:
        cmd += ["--prefix", prefix]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def run_measured(cmd: list[str], **kwargs: object) -> tuple[float, int, bytes]:
    """Run ``cmd``; return (wall seconds, peak RSS in KiB of that process, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return secs, usage.ru_maxrss, out
