#!/usr/bin/env python3
"""Benchmark: the edges of issue 16, each beside its ordinary counterpart in the same run.

* Wireshark's death: a shell starts the extcap on a quiet log (the fifo's reader
  stays, as dumpcap does) and is killed with SIGKILL; the time until the extcap
  has ended, beside the time a SIGTERM takes to end the same capture.
* The fifo's reader goes away on a quiet log (no signal): time until exit.
* A log path that becomes a symlink to ``/dev/zero`` during a capture: the
  extcap's CPU time and RSS over 2 s, beside the same capture of a quiet regular log.
* ``--extcap-interfaces`` (whole process) with a 6 KB deeply nested settings file,
  a 1 MB unknown key, a Proxmox ``.conf`` that is ``/dev/zero`` or a fifo, beside
  a plain settings file: wall time, peak RSS, longest output line.

usage: bench/bench_edges.py [--runs 10]     human summary on stderr, JSON on stdout
Runs are interleaved (case A, case B, A, B, ...); medians and maxima are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "swtpm_extcap" / "data" / "demo-swtpm.log"


def env_for(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SWTPM_"))}
    env["PYTHONPATH"] = str(REPO)
    env["SWTPM_EXTCAP_CONFIG"] = str(config)
    return env


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        f = fh.read().rpartition(b")")[2].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) / 1024


class Vm:
    """A quiet log behind a settings glob, a fifo and a reader that stays (dumpcap)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "vm").mkdir(parents=True, exist_ok=True)
        self.log = root / "vm" / "swtpm.log"
        self.log.write_bytes(DEMO.read_bytes()[:60_000].rpartition(b"\n")[0] + b"\n")
        self.config = root / "config.toml"
        self.config.write_text(f'[local]\nglobs = ["{root}/*/swtpm.log"]\n')

    def start(self, *, parent_shell: bool) -> tuple[subprocess.Popen[bytes], int, list[bytes], Path]:
        fifo = self.root / f"fifo-{time.monotonic_ns()}"
        os.mkfifo(fifo)
        got: list[bytes] = []

        def read() -> None:
            with open(fifo, "rb", buffering=0) as fh:
                while chunk := fh.read(65536):
                    got.append(chunk)

        threading.Thread(target=read, daemon=True).start()
        args = [sys.executable, "-m", "swtpm_extcap", "--capture", "--extcap-interface",
                "swtpm-vm", "--fifo", str(fifo)]
        if parent_shell:
            proc = subprocess.Popen(["sh", "-c", '"$@" & echo $!; wait', "sh", *args],
                                    env=env_for(self.config), stdout=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
            assert proc.stdout is not None
            pid = int(proc.stdout.readline())
        else:
            proc = subprocess.Popen(args, env=env_for(self.config), stdin=subprocess.DEVNULL)
            pid = proc.pid
        deadline = time.monotonic() + 20
        while sum(map(len, got)) < 10_000:
            assert time.monotonic() < deadline, "the capture never started"
            time.sleep(0.01)
        time.sleep(0.3)  # the backlog is through; the log stays quiet
        return proc, pid, got, fifo


def until_gone(pid: int, since: float) -> float:
    while not gone(pid):
        if time.monotonic() - since > 20:
            return float("inf")
        time.sleep(0.002)
    return time.monotonic() - since


def death_vs_sigterm(vm: Vm, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"parent SIGKILLed": [], "SIGTERM": []}
    for _ in range(runs):
        proc, pid, _, _ = vm.start(parent_shell=True)
        t0 = time.monotonic()
        proc.kill()
        proc.wait()
        out["parent SIGKILLed"].append(until_gone(pid, t0))
        proc, pid, _, _ = vm.start(parent_shell=False)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        out["SIGTERM"].append(time.monotonic() - t0)
    return out


def reader_gone(vm: Vm, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        fifo = vm.root / f"fifo-{time.monotonic_ns()}"
        os.mkfifo(fifo)
        proc = subprocess.Popen([sys.executable, "-m", "swtpm_extcap", "--capture",
                                 "--extcap-interface", "swtpm-vm", "--fifo", str(fifo)],
                                env=env_for(vm.config), stdin=subprocess.DEVNULL)
        with open(fifo, "rb", buffering=0) as fh:
            total = 0
            while total < 10_000:
                total += len(fh.read(65536))
            time.sleep(0.3)  # the rest of the backlog waits in the pipe; then quiet
        t0 = time.monotonic()
        proc.wait()
        out.append(time.monotonic() - t0)
    return out


def device_vs_quiet(root: Path, runs: int) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {"quiet regular log": [], "log -> /dev/zero": []}
    for i in range(runs):
        for case in out:
            vm = Vm(root / f"dev{i}-{len(out[case])}-{case[:3]}")
            proc, pid, _, _ = vm.start(parent_shell=False)
            if case != "quiet regular log":
                vm.log.unlink()
                vm.log.symlink_to("/dev/zero")
            c0 = cpu_s(pid)
            time.sleep(2.0)
            out[case].append((cpu_s(pid) - c0, rss_mb(pid)))
            proc.terminate()
            proc.wait()
    return out


def listing_cases(root: Path) -> dict[str, Callable[[], Path]]:
    def plain() -> Path:
        cfg = root / "plain.toml"
        cfg.write_text('[local]\nglobs = ["/nonexistent/*.log"]\n')
        return cfg

    def nested() -> Path:
        cfg = root / "nested.toml"
        cfg.write_text("[local]\nglobs = " + "[" * 3000 + "]" * 3000 + "\n")
        return cfg

    def big_key() -> Path:
        cfg = root / "key.toml"
        cfg.write_text("[local]\n" + "k" * ((1 << 20) - 100) + " = 1\n")
        return cfg

    def conf(kind: str) -> Callable[[], Path]:
        def make() -> Path:
            run, pve = root / f"run-{kind}", root / f"pve-{kind}"
            run.mkdir(exist_ok=True)
            pve.mkdir(exist_ok=True)
            (run / "103-swtpm.log").write_bytes(DEMO.read_bytes()[:5000])
            c = pve / "103.conf"
            if not os.path.lexists(c):
                c.symlink_to("/dev/zero") if kind == "zero" else os.mkfifo(c)
            cfg = root / f"conf-{kind}.toml"
            cfg.write_text(f'[local]\nproxmox_dir = "{run}"\npve_conf_dir = "{pve}"\n')
            return cfg
        return make

    return {"plain settings": plain, "6 KB nested arrays": nested, "1 MB unknown key": big_key,
            ".conf -> /dev/zero": conf("zero"), ".conf is a fifo": conf("fifo")}


def listing(root: Path, runs: int) -> dict[str, list[tuple[float, float, int]]]:
    cases = {name: make() for name, make in listing_cases(root).items()}
    out: dict[str, list[tuple[float, float, int]]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, cfg in cases.items():
            t0 = time.monotonic()
            proc = subprocess.run(
                ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "swtpm_extcap",
                 "--extcap-interfaces"], env=env_for(cfg), capture_output=True, text=True,
                timeout=60)
            wall = time.monotonic() - t0
            peak = int(proc.stderr.strip().splitlines()[-1]) / 1024
            longest = max(len(line) for line in proc.stdout.splitlines())
            out[name].append((wall, peak, longest))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    load = os.getloadavg()
    result: dict[str, object] = {"load_average": load, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="bench-edges-") as tmp:
        root = Path(tmp)
        vm = Vm(root / "a")
        death = death_vs_sigterm(vm, args.runs)
        gone_reader = reader_gone(vm, args.runs)
        device = device_vs_quiet(root, max(1, args.runs // 3))
        lists = listing(root, args.runs)
    say = lambda text: print(text, file=sys.stderr)  # noqa: E731
    say(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    for name, times in death.items():
        say(f"  {name:>18}: exit after median {statistics.median(times) * 1000:.0f} ms,"
            f" max {max(times) * 1000:.0f} ms")
    say(f"  {'reader gone':>18}: exit after median {statistics.median(gone_reader) * 1000:.0f} ms,"
        f" max {max(gone_reader) * 1000:.0f} ms")
    for name, samples in device.items():
        say(f"  {name:>18}: CPU {statistics.median(c for c, _ in samples) * 1000:.0f} ms in 2 s,"
            f" RSS {max(r for _, r in samples):.1f} MB")
    for name, samples in lists.items():
        say(f"  listing, {name:>18}: median {statistics.median(w for w, _, _ in samples) * 1000:.0f} ms,"
            f" peak RSS {max(p for _, p, _ in samples):.1f} MB,"
            f" longest line {max(n for _, _, n in samples)} characters")
    result.update(death=death, reader_gone=gone_reader, device=device, listing=lists)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
