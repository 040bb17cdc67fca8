#!/usr/bin/env python3
"""Benchmark: what the ``policy:`` notes cost ``convert``, next to what the ``pcr:`` notes cost.

Three logs: the big generated one of bench_pcrs.py (one run, no policy session: the cost
of watching), the corpus' two-boot Proxmox log appended into many boots (each with a
trial session, a policy session, an Unseal), and the recorded policy sessions of
tests/data/policy appended again and again (every session explained or checked: the
worst case). Per log, alternating, ``--repeat`` times, each a child process: the
pipeline with no notes, with the ``pcr:`` notes only, and with both (what ``convert``
does); medians of CPU seconds, peak RSS.

usage: bench/bench_policy.py [--mb 200] [--boots-mb 50] [--policy-mb 20] [--repeat 3]
                             [--log BIG.log] [--workdir /tmp/swtpm-bench-pcrs]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_pcrs import default_gen, make_big_log, make_boots_log, measure  # noqa: E402

POLICY_LOGS = sorted((HERE.parent / "tests" / "data" / "policy").glob("*.log"))

CONVERT = """
import sys
from swtpm_extcap.pcapng.pipeline import Pipeline
pcr, policy = sys.argv[3] == "1", sys.argv[4] == "1"
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as out:
    pipe = Pipeline(out, name="x", description="x", ctrl=True, pcr_notes=pcr, policy_notes=policy)
    while chunk := src.read(1 << 20):
        pipe.feed(chunk)
    pipe.close()
"""


def make_policy_log(path: Path, mb: int) -> tuple[Path, int]:
    """The recorded policy sessions appended again and again, each copy a new run."""
    texts = [p.read_text("latin-1") for p in POLICY_LOGS]
    size = sum(len(t) for t in texts)
    copies = max(1, mb * (1 << 20) // size)
    if not (path.exists() and path.stat().st_size >= copies * size):
        with open(path, "w", encoding="latin-1") as out:
            for i in range(copies):
                for j, text in enumerate(texts):
                    epoch = text[4:14]
                    out.write(text.replace(f"[id={epoch}]", f"[id={1900000000 + 10 * i + j}]"))
    return path, copies * len(texts)


def bench(log: Path, repeat: int) -> dict[str, object]:
    out = log.with_suffix(".policy.pcapng")
    cases = {name: [sys.executable, "-c", CONVERT, str(log), str(out), pcr, policy]
             for name, pcr, policy in (("no_notes", "0", "0"), ("pcr_notes", "1", "0"),
                                       ("pcr_and_policy_notes", "1", "1"))}
    runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, cmd in cases.items():
            runs[name].append(measure(cmd))
    cpu = {k: statistics.median(v[1] for v in runs[k]) for k in runs}
    return {
        "log": str(log), "log_bytes": log.stat().st_size,
        **{k: {"cpu_s": round(cpu[k], 2), "peak_rss_mb": round(max(v[2] for v in runs[k]) / 1024, 1)}
           for k in runs},
        "pcr_notes_cost_cpu": f"{cpu['pcr_notes'] / cpu['no_notes'] - 1:+.1%}",
        "policy_notes_cost_cpu": f"{cpu['pcr_and_policy_notes'] / cpu['pcr_notes'] - 1:+.1%}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--boots-mb", type=int, default=50)
    ap.add_argument("--policy-mb", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--log", type=Path, help="use this big log instead of generating one")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/swtpm-bench-pcrs"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    big = args.log or make_big_log(default_gen(), args.workdir / f"big-{args.mb}.log", args.mb)
    boots, boot_runs = make_boots_log(args.workdir / f"boots-{args.boots_mb}.log", args.boots_mb)
    policy, policy_runs = make_policy_log(args.workdir / f"policy-{args.policy_mb}.log", args.policy_mb)
    print(json.dumps({
        "big": bench(big, args.repeat),
        "boots": {"runs": boot_runs, **bench(boots, args.repeat)},
        "policy": {"runs": policy_runs, **bench(policy, args.repeat)},
    }, indent=1))


if __name__ == "__main__":
    main()
