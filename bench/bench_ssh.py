#!/usr/bin/env python3
"""The SSH source over loopback: throughput beside the local file, reconnect time, listing time.

Starts a real sshd (tests/sshd.py) on 127.0.0.1 and logs in as root with a key.

1. Throughput: the same big log read (a) as bytes only and (b) through the
   Pipeline into pcapng (written to a null sink), from the local file and
   through the SSH source, alternating, median of ``--rounds``.
2. Reconnect: a live follow; the connection is killed (sshd's processes
   SIGKILLed), a record is appended at once; time until that record arrives
   (reconnect + resume + one poll), ``--kills`` times.
3. Listing: ``list_remotes`` for one reachable and one unreachable host
   (127.0.0.77, nothing listens there), with an empty cache and a warm one.

Big log: ``python3 bench/gen_big_log.py`` (see its --help) or, as measured for the README,
``gen-big-log.py --log /tmp/ssh-big.log --mb 200 --seed 1 --prefix '[id=1732600000] '
--port 3021 --ctrl-port 3022``. Both sources are :class:`~swtpm_extcap.sources.base.Source`
implementations read the same way (``read(stop)``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from sshd import HOST, root_login  # noqa: E402

from swtpm_extcap.pcapng.pipeline import Pipeline  # noqa: E402
from swtpm_extcap.sources.base import Notice  # noqa: E402
from swtpm_extcap.sources.local import LocalFile  # noqa: E402
from swtpm_extcap.sources.ssh import SSHSource  # noqa: E402
from swtpm_extcap.remote.ssh import SSHParams  # noqa: E402
from swtpm_extcap.remote.listing import list_remotes  # noqa: E402
from swtpm_extcap.remote.settings import Remote  # noqa: E402


class NullSink:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def through_pipeline(chunks: Iterable[bytes]) -> int:
    pipe = Pipeline(NullSink(), name="bench", description="bench",  # type: ignore[arg-type]
                    start_us=1_700_000_000_000_000)
    for chunk in chunks:
        pipe.feed(chunk)
    return pipe.close().frames


def bytes_only(chunks: Iterable[bytes]) -> int:
    return sum(len(c) for c in chunks)


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


def throughput(params: SSHParams, log: Path, rounds: int) -> None:
    size = log.stat().st_size
    print(f"log: {log} ({size / 1e6:.1f} MB)")
    results: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for _ in range(rounds):
        for label, fn in (
            ("local bytes", lambda: bytes_only(LocalFile(str(log)).read(threading.Event()))),
            ("ssh bytes", lambda: bytes_only(SSHSource(params, str(log)).read(threading.Event()))),
            ("local pcapng", lambda: through_pipeline(LocalFile(str(log)).read(threading.Event()))),
            ("ssh pcapng", lambda: through_pipeline(SSHSource(params, str(log)).read(threading.Event()))),
        ):
            secs, n = timed(fn)
            results.setdefault(label, []).append(secs)
            counts[label] = n
    for label, times in results.items():
        med = statistics.median(times)
        print(f"  {label:13s} median {med:6.2f} s  {size / med / 1e6:7.1f} MB/s  ({counts[label]}"
              f" {'bytes' if 'bytes' in label else 'frames'}; runs {', '.join(f'{t:.2f}' for t in times)})")
    for kind in ("bytes", "pcapng"):
        ratio = statistics.median(results[f"local {kind}"]) / statistics.median(results[f"ssh {kind}"])
        print(f"  ssh/local throughput, {kind}: {ratio:.2f} (target >= 0.5 for pcapng)")
    assert counts["ssh pcapng"] == counts["local pcapng"], "different frame counts"


def reconnect(params: SSHParams, sshd_kill: Callable[[], int], folder: Path, kills: int) -> None:
    log = folder / "live.log"
    log.write_bytes(b"start\n")
    source = SSHSource(params, str(log))
    stop = threading.Event()
    got: list[bytes] = []
    seen = threading.Condition()

    def run() -> None:
        for item in source.follow(stop):
            if isinstance(item, bytes):
                with seen:
                    got.append(item)
                    seen.notify_all()
            elif item is Notice.BACKLOG_DONE:
                with seen:
                    seen.notify_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    with seen:
        seen.wait_for(lambda: b"".join(got).endswith(b"start\n"), 30)
    times = []
    for k in range(kills):
        time.sleep(0.3)
        marker = f"marker {k}\n".encode()
        t0 = time.perf_counter()
        sshd_kill()
        with open(log, "ab") as fh:
            fh.write(marker)
        with seen:
            ok = seen.wait_for(lambda: b"".join(got).endswith(marker), 30)
        assert ok, f"record {k} did not arrive"
        times.append(time.perf_counter() - t0)
    stop.set()
    thread.join(5)
    data = b"".join(got)
    assert data == log.read_bytes(), "lost or duplicated bytes"
    times.sort()
    print(f"reconnect after a killed connection ({kills} kills):"
          f" kill -> next record p50 {statistics.median(times) * 1000:.0f} ms,"
          f" max {times[-1] * 1000:.0f} ms; {source.reconnects} reconnects, 0 lost, 0 duplicated")


def listing(home: Path, port: int, key: Path, known: str, rounds: int) -> None:
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    (ssh / "config").write_text(f"Host benchhost\n  HostName {HOST}\n  Port {port}\n  User root\n"
                                f"  IdentityFile {key}\n")
    (ssh / "known_hosts").write_text(known)
    os.environ["HOME"] = str(home)
    run = home / "run"  # a Proxmox node's /run/qemu-server with three VMs
    run.mkdir()
    os.chmod(home, 0o755)
    for vmid in (100, 101, 102):
        (run / f"{vmid}-swtpm.log").write_bytes(b"")
    remotes = [Remote(name="bench", host="benchhost", proxmox_dir=str(run)),
               Remote(name="down", host="127.0.0.77", port=9)]
    cold, warm = [], []
    for i in range(rounds):
        cache = home / f"cache{i}"
        secs, n = timed(lambda: len(list_remotes(remotes, cache=cache).vms))
        cold.append(secs)
        secs, _ = timed(lambda: len(list_remotes(remotes, cache=cache).vms))
        warm.append(secs)
    print(f"listing, one reachable + one unreachable host (127.0.0.77, refused): cold cache"
          f" median {statistics.median(cold) * 1000:.0f} ms (max {max(cold) * 1000:.0f} ms),"
          f" warm cache median {statistics.median(warm) * 1000:.1f} ms")
    # the whole extcap process, as Wireshark runs it
    import subprocess

    config = home / "config.toml"
    config.write_text(f'[[remote]]\nname = "bench"\nhost = "benchhost"\nproxmox_dir = "{run}"\n\n'
                      '[[remote]]\nname = "down"\nhost = "127.0.0.77"\nport = 9\n')
    empty = home / "empty.toml"
    empty.write_text("")
    argv = [sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"]
    # bytecode cached as in an install (this machine sets PYTHONDONTWRITEBYTECODE: every
    # run would compile the modules it imports), in a folder outside the checkout
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base_env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for i in range(-1, max(rounds * 5, 20)):  # round -1 writes the bytecode and is not counted
        for label, cfg, cache in (("no [[remote]]", empty, "none"),
                                  ("cold cache", config, f"cold{i}"),
                                  ("warm cache", config, f"cold{i}")):
            env = dict(base_env, HOME=str(home), SWTPM_EXTCAP_CONFIG=str(cfg),
                       XDG_CACHE_HOME=str(home / "xdg" / cache))
            import resource

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, timeout=60)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            assert proc.stderr == b""
            assert (b"swtpm-bench-100" in proc.stdout) == (label != "no [[remote]]"), proc.stdout
            if i >= 0:
                times.setdefault(label, []).append(wall)
                cpu.setdefault(label, []).append(after.ru_utime + after.ru_stime
                                                 - before.ru_utime - before.ru_stime)
    print(f"--extcap-interfaces, whole process, medians of {len(times['warm cache'])} interleaved"
          f" runs (load average {os.getloadavg()[0]:.1f}): " + ", ".join(
              f"{label} {statistics.median(t) * 1000:.0f} ms wall, "
              f"{statistics.median(cpu[label]) * 1000:.1f} ms CPU" for label, t in times.items()))
    warm, none = times["warm cache"], times["no [[remote]]"]
    print(f"  warm cache - no [[remote]]: {(statistics.median(warm) - statistics.median(none)) * 1000:+.1f}"
          f" ms wall, {(statistics.median(cpu['warm cache']) - statistics.median(cpu['no [[remote]]'])) * 1000:+.1f}"
          " ms CPU (target: within 10 ms)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=Path("/tmp/ssh-big.log"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_ssh: run as root (sshd with its own config, root key login)", file=sys.stderr)
        return 2
    with root_login("bench-ssh-") as (sshd, params, work):
        if not args.skip_throughput:
            if not args.log.is_file():
                print(f"bench_ssh: no big log at {args.log} (see --help)", file=sys.stderr)
                return 2
            throughput(params, args.log, args.rounds)
        reconnect(params, sshd.kill_connections, work, args.kills)
        listing(work / "home", sshd.port, Path(params.identity or ""), sshd.known_hosts_line, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
