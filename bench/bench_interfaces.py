#!/usr/bin/env python3
"""Benchmark: listing interfaces with 50 VMs, in-process and as Wireshark runs it.

A fake Proxmox host (``<vmid>-swtpm.log`` copies of a real corpus log and
``<vmid>.conf`` files with ``name:`` lines) is made in a temporary folder and
named by a settings file (``$SWTPM_EXTCAP_CONFIG``: ``[local] proxmox_dir``
etc.). Then:

* ``discover()`` in this process (no interpreter start-up);
* ``python -m swtpm_extcap --extcap-interfaces --extcap-version=4.0`` as a
  new process each time, interpreter start-up included (what Wireshark pays
  per extcap at start-up), for each ``--python`` given (default: this one),
  with a copy of the package on ``PYTHONPATH`` (so that its ``.pyc`` files,
  as an installed package has them, land in the temporary folder);
* the same through an installed launcher, with ``--launcher PATH`` (e.g.
  ``~/.config/wireshark/extcap/swtpm-extcap`` after install.sh);
* ``python -c pass``, the floor that start-up alone costs.

usage: bench/bench_interfaces.py [--vms 50] [--runs 30] [--python PY]... [--launcher PATH]
Human summary on stderr, JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from swtpm_extcap.interfaces.settings import load_config  # noqa: E402
from swtpm_extcap.interfaces.local import discover  # noqa: E402

LOG = REPO / "tests" / "data" / "corpus" / "proxmox-104-qemu-transport-swtpm.log"


def fake_host(root: Path, vms: int) -> Path:
    """``vms`` Proxmox VMs with real logs; returns the settings file that names them."""
    run, pve = root / "run/qemu-server", root / "etc/pve/qemu-server"
    run.mkdir(parents=True)
    pve.mkdir(parents=True)
    for vmid in range(100, 100 + vms):
        shutil.copyfile(LOG, run / f"{vmid}-swtpm.log")
        (run / f"{vmid}.pid").write_text("1\n")
        (pve / f"{vmid}.conf").write_text(
            f"boot: order=scsi0\ncores: 4\nmemory: 4096\nname: vm-{vmid}\n"
            f"tpmstate0: local-lvm:vm-{vmid}-disk-1,size=4M,version=v2.0\n"
            "\n[snap1]\nname: old-name\n"
        )
    config = root / "config.toml"
    config.write_text(
        f"[local]\nproxmox_dir = {json.dumps(str(run))}\npve_conf_dir = {json.dumps(str(pve))}\n"
        f"libvirt_dir = {json.dumps(str(root / 'no-libvirt'))}\n"
    )
    return config


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
        "runs": len(ordered),
    }


def run_child(argv: list[str], env: dict[str, str], expect: int | None) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd="/")
    if proc.returncode != 0 or proc.stderr:
        raise SystemExit(f"{argv} failed ({proc.returncode}): {proc.stderr.strip()}")
    if expect is not None:
        got = sum(line.startswith("interface ") for line in proc.stdout.splitlines())
        if got != expect:
            raise SystemExit(f"{argv} listed {got} interfaces, expected {expect}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vms", type=int, default=50)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--python", action="append", help="interpreter(s) to time (default: this one)")
    ap.add_argument("--launcher", help="an installed launcher to time as well")
    ns = ap.parse_args(argv)
    pythons = ns.python or [sys.executable]
    expect = ns.vms + 1  # + swtpm-demo
    results: dict[str, object] = {"vms": ns.vms}
    with tempfile.TemporaryDirectory(prefix="bench-interfaces-") as tmp:
        config_file = fake_host(Path(tmp), ns.vms)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["SWTPM_EXTCAP_CONFIG"] = str(config_file)

        config = load_config(config_file)
        found = discover(config)
        assert len(found) == expect, [i.name for i in found]
        results["discover"] = summary(timed(lambda: discover(load_config(config_file)), 200))

        pkg = Path(tmp) / "pkg"
        shutil.copytree(
            REPO / "swtpm_extcap",
            pkg / "swtpm_extcap",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        for python in pythons:
            child_env = dict(env, PYTHONPATH=str(pkg))
            floor = [python, "-c", "pass"]
            listing = [python, "-m", "swtpm_extcap", "--extcap-interfaces", "--extcap-version=4.0"]
            run_child(listing, child_env, expect)  # warm the page cache and .pyc files
            results[f"python -c pass [{python}]"] = summary(
                timed(lambda: run_child(floor, child_env, None), ns.runs)
            )
            results[f"python -m swtpm_extcap --extcap-interfaces [{python}]"] = summary(
                timed(lambda: run_child(listing, child_env, expect), ns.runs)
            )
        if ns.launcher:
            launcher = [ns.launcher, "--extcap-interfaces", "--extcap-version=4.0"]
            run_child(launcher, env, expect)
            results[f"launcher --extcap-interfaces [{ns.launcher}]"] = summary(
                timed(lambda: run_child(launcher, env, expect), ns.runs)
            )

    for name, value in results.items():
        if isinstance(value, dict):
            print(
                f"{name}: median {value['median_ms']} ms (min {value['min_ms']},"
                f" max {value['max_ms']}, {value['runs']} runs)",
                file=sys.stderr,
            )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
