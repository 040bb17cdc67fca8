#!/usr/bin/env python3
"""Benchmark: a 200 MB swtpm log backlog streamed through ``tshark -i`` (replay mode).

The log (default: a real one made by bench/gen_big_log.py, 200 MiB, Proxmox
prefix; or the LOG given) is put behind a settings-file glob as
``swtpm-big``, swtpm-extcap is installed into a temporary ``$HOME`` with the
real install.sh (or, with ``--checkout``, a launcher that runs this checkout),
and then, as a user would run it::

    tshark -i swtpm-big -o extcap.swtpm_big.mode:replay -w /dev/null

Reported: tshark's wall time (start to exit: Wireshark starts the extcap,
the extcap reads, parses and frames the whole log into the fifo, dumpcap
writes it), MB/s of log, packets captured, and the peak RSS of the extcap
process (the launcher's python: the highest VmHWM read from
/proc/<pid>/status, polled every 10 ms). JSON on stdout, a human line on
stderr.

usage: bench/bench_backlog.py [LOG] [--mb 200] [--workdir /tmp/swtpm-bench] [--checkout]
                              [--repeat 1] [--runs all|last]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import big_log  # noqa: E402

INTERFACE = "swtpm-big"


def install(home: Path, venv: Path, checkout: bool) -> Path:
    """The extcap launcher in ``home``'s Wireshark 4.0 personal extcap folder."""
    folder = home / ".config" / "wireshark" / "extcap"
    launcher = folder / "swtpm-extcap"
    if checkout:
        folder.mkdir(parents=True)
        launcher.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
            "from swtpm_extcap.cli import main\nsys.exit(main())\n"
        )
        launcher.chmod(0o755)
        return launcher
    env = dict(os.environ, HOME=str(home))
    for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "PYTHONPATH"):
        env.pop(key, None)
    subprocess.run(["bash", str(REPO / "install.sh"), "--personal", "--venv", str(venv)], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    if not launcher.is_file():
        raise SystemExit(f"install.sh wrote no launcher at {launcher}")
    return launcher


class PeakRss:
    """Polls the extcap's /proc/<pid>/status while it runs; keeps the highest VmHWM."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.pid: int | None = None
        self.peak_kib = 0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _find(self) -> int | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"--capture\0" in cmdline and self.marker in cmdline:
                return int(entry.name)
        return None

    def _run(self) -> None:
        while not self.done.is_set():
            if self.pid is None:
                self.pid = self._find()
            if self.pid is not None:
                try:
                    status = Path(f"/proc/{self.pid}/status").read_text()
                except OSError:
                    self.pid = None  # ended (or not yet exec'd): look again
                else:
                    m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
                    if m:
                        self.peak_kib = max(self.peak_kib, int(m.group(1)))
            self.done.wait(0.01)

    def stop(self) -> int:
        self.done.set()
        self._thread.join()
        return self.peak_kib


def run_once(env: dict[str, str], runs: str) -> dict[str, float | int]:
    pref = INTERFACE.replace("-", "_")
    cmd = ["tshark", "-i", INTERFACE, "-o", f"extcap.{pref}.mode:replay",
           "-o", f"extcap.{pref}.runs:{runs}", "-w", "/dev/null"]
    rss = PeakRss(f"{INTERFACE}\0".encode())
    began = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    peak = rss.stop()
    if proc.returncode != 0:
        raise SystemExit(f"tshark failed ({proc.returncode}): {proc.stderr}")
    m = re.search(r"(\d+) packets? captured", proc.stderr)
    return {"wall_s": round(wall, 2), "packets": int(m.group(1)) if m else -1,
            "extcap_peak_rss_kib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", type=Path, help="swtpm log (default: generate one)")
    ap.add_argument("--mb", type=int, default=200, help="size of the generated log (MiB)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/swtpm-bench"))
    ap.add_argument("--checkout", action="store_true",
                    help="launcher runs this checkout instead of an install.sh install")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--runs", choices=("all", "last"), default="all",
                    help="the extcap's Runs option (last: a first parse-only pass finds the last run)")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    log = args.log or big_log(args.workdir / f"big-{args.mb}.log", args.mb)
    log = log.resolve()
    size = log.stat().st_size
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        launcher = install(home, root / "venv", args.checkout)
        vm = root / "vms" / "big"
        vm.mkdir(parents=True)
        (vm / "swtpm.log").symlink_to(log)
        config = root / "config.toml"
        config.write_text(f'[local]\nglobs = ["{root}/vms/*/swtpm.log"]\n')
        env = dict(os.environ, HOME=str(home), SWTPM_EXTCAP_CONFIG=str(config))
        env.pop("PYTHONPATH", None)
        runs = [run_once(env, args.runs) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["wall_s"])
    result = {
        "benchmark": "backlog through tshark -i (replay)",
        "log": str(log),
        "log_bytes": size,
        "launcher": "checkout" if args.checkout else "install.sh",
        "runs_option": args.runs,
        "launcher_path": str(launcher),
        "runs": runs,
        "wall_s": best["wall_s"],
        "mb_per_s": round(size / 1e6 / float(best["wall_s"]), 1),
        "packets": best["packets"],
        "extcap_peak_rss_mb": round(max(int(r["extcap_peak_rss_kib"]) for r in runs) / 1024, 1),
    }
    print(json.dumps(result))
    print(
        f"{size / 1e6:.0f} MB backlog through tshark -i {INTERFACE} (replay, runs={args.runs}): "
        f"{result['wall_s']} s, {result['mb_per_s']} MB/s, {result['packets']} packets, "
        f"extcap peak RSS {result['extcap_peak_rss_mb']} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
