#!/usr/bin/env python3
"""Benchmark: ``swtpm-extcap convert`` on logs that are nothing but damage.

Two logs made from the real corpus (tests/data/corpus), each at a tenth of
its size and at full size, so a reader sees whether memory grows with damage:

* ``defects``: every record of a real Proxmox log damaged in turn (its last
  hex line lost, an unreadable length, its header lost so its hex is stray, a
  junk line inside, a hex line without its ``[id=]`` prefix, a header with no
  hex and TPM 1.2 trace lines after it), repeated to ``--defects-mb`` (20 MB);
* ``headerless``: the hex lines of a real libvirt log without any header,
  repeated to ``--hex-mb`` (150 MB): one run of stray hex.

Issue 16's hostile logs, generated:

* ``junk``: ``' AB \\nx\\n'`` repeated to 2 and ``--junk-mb`` (20) MB: a hex line
  outside any record, a line that is nothing (it made 41 times its size of
  pcapng, 195 MB RSS, 0.4 MB/s);
* ``lying``: a real PCR_Extend whose header claims ``0xFFFFFFF0`` bytes, then
  ``--lying-records`` (200,000) real commands without responses (the PCR replay
  appended every one to it: 121 s), through ``convert`` and ``pcrs``.

Reports per log: seconds, MB/s, peak RSS of the converter (target <= 64 MB,
flat), output size and its ratio to the log, defects counted (from the summary
line). Prints JSON.

usage: bench/bench_damage.py [--defects-mb 20] [--hex-mb 150] [--junk-mb 20]
                             [--lying-records 200000] [--only junk,lying,...]
                             [--workdir /tmp/swtpm-damage]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"
HEADER = re.compile(rb"^(.*?) (SWTPM_IO_Read|SWTPM_IO_Write|Ctrl Cmd|Ctrl Rsp Continued|Ctrl Rsp): length (\d+)$")


def _lines(name: str) -> list[bytes]:
    return (CORPUS / name).read_bytes().split(b"\n")[:-1]


def _records(lines: list[bytes]) -> list[tuple[bytes, list[bytes]]]:
    """(header, hex lines) of every record of a real log."""
    out = []
    for i, line in enumerate(lines):
        m = HEADER.match(line)
        if m:
            n = (int(m.group(3)) + 15) // 16
            out.append((line, lines[i + 1 : i + 1 + n]))
    return out


def defects_log(path: Path, mb: int) -> Path:
    """Every record damaged, one way after another, to ``mb`` MiB."""
    recs = _records(_lines("proxmox-103-swtpm.log"))
    traces = [line for line in _lines("tpm12-swtpm.log") if line.startswith(b"     ")][:6]
    block: list[bytes] = []
    for k, (head, body) in enumerate(recs):
        way = k % 6
        prefix = HEADER.match(head).group(1)  # type: ignore[union-attr]
        if way == 0 and len(body) > 1:
            block += [head, *body[:-1]]  # short: last hex line lost
        elif way == 1:
            block += [head[: head.rindex(b"length ")] + b"length 0x" + b"9" * 40, *body]  # bad length
        elif way == 2:
            block += body  # header lost: stray hex
        elif way == 3:
            block += [head, b"libtpms/tpm2: Entering failure mode; code: 3", *body]  # junk inside
        elif way == 4:
            block += [head, *(line[len(prefix) :] for line in body)]  # every hex line lost its prefix
        else:
            block += [head, *traces]  # a header with no hex, trace lines after it
    data = b"\n".join(block) + b"\n"
    with open(path, "wb") as f:
        for _ in range(-(-mb * (1 << 20) // len(data))):
            f.write(data)
    return path


def headerless_log(path: Path, mb: int) -> Path:
    hexlines = [line for line in _lines("libvirt-fedora39-swtpm.log") if re.fullmatch(rb" (?:[0-9A-F]{2} )+", line)]
    data = b"\n".join(hexlines) + b"\n"
    with open(path, "wb") as f:
        for _ in range(-(-mb * (1 << 20) // len(data))):
            f.write(data)
    return path


def junk_log(path: Path, mb: int) -> Path:
    """Issue 16's junk: a hex line outside any record, then a line that is nothing."""
    unit = b" AB \nx\n" * 4096
    with open(path, "wb") as f:
        for _ in range(-(-mb * (1 << 20) // len(unit))):
            f.write(unit)
    return path


def lying_log(path: Path, records: int) -> Path:
    """A real PCR_Extend whose TPM header claims 0xFFFFFFF0 bytes, then ``records``
    real commands (copies of the log's first ones), no response among them."""
    lines = _lines("proxmox-103-swtpm.log")
    recs = _records(lines)
    extend = next((h, b) for h, b in recs if b"SWTPM_IO_Read" in h and b"00 00 01 82" in b" ".join(b))
    head, body = extend
    prefix = HEADER.match(head).group(1)  # type: ignore[union-attr]
    data = bytes.fromhex(b"".join(line[len(prefix):] for line in body).decode())
    data = data[:2] + (0xFFFFFFF0).to_bytes(4, "big") + data[6:]
    lying = [head] + [prefix + b" " + data[k : k + 16].hex(" ").upper().encode() + b" "
                      for k in range(0, len(data), 16)]
    commands = [b"\n".join([h, *b]) for h, b in recs if b"SWTPM_IO_Read" in h][:50]
    with open(path, "wb") as f:
        f.write(b"\n".join(lines[: lines.index(head)]) + b"\n")  # Startup and what comes first
        f.write(b"\n".join(lying) + b"\n")
        for k in range(records):
            f.write(commands[k % len(commands)] + b"\n")
    return path


def pcrs(log: Path) -> dict[str, object]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "swtpm_extcap", "pcrs", str(log)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    return {"seconds": round(time.perf_counter() - start, 2), "exit": os.waitstatus_to_exitcode(status),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stderr": err.decode(errors="replace")[:200]}


def convert(log: Path) -> dict[str, object]:
    out = log.with_suffix(".pcapng")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swtpm_extcap", "convert", str(log), "-o", str(out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    summary = err.decode(errors="replace").splitlines()[0] if err else ""
    m = re.search(r"(\d+) defects?", summary)
    result = {
        "log_mb": round(log.stat().st_size / 1e6, 1),
        "exit": code,
        "seconds": round(secs, 2),
        "mb_per_s": round(log.stat().st_size / secs / 1e6, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "output_mb": round(out.stat().st_size / 1e6, 2),
        "output_to_log": round(out.stat().st_size / log.stat().st_size, 3),
        "defects": int(m.group(1)) if m else None,
        "stderr_lines": len(err.splitlines()),
        "summary": summary,
    }
    out.unlink()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defects-mb", type=int, default=20)
    ap.add_argument("--hex-mb", type=int, default=150)
    ap.add_argument("--junk-mb", type=int, default=20)
    ap.add_argument("--lying-records", type=int, default=200_000)
    ap.add_argument("--only", default="defects,headerless,junk,lying", help="which logs, comma-separated")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/swtpm-damage"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    results: dict[str, dict[str, object]] = {}
    # each kind at a tenth of its size and at its size: memory must not grow with the log
    for kind, make, size in (("defects", defects_log, args.defects_mb),
                             ("headerless", headerless_log, args.hex_mb),
                             ("junk", junk_log, args.junk_mb)):
        if kind not in only:
            continue
        for mb in sorted({max(1, size // 10), size}):
            log = make(args.workdir / f"{kind}-{mb}.log", mb)
            results[f"{kind}-{mb}MB"] = convert(log)
            log.unlink()
    if "lying" in only:
        log = lying_log(args.workdir / "lying.log", args.lying_records)
        results[f"lying-{args.lying_records}"] = {**convert(log), "pcrs": pcrs(log)}
        log.unlink()
    for key, r in results.items():
        print(f"{key:>18}: {r['seconds']:6.2f} s ({r['mb_per_s']} MB/s), peak RSS {r['peak_rss_mb']} MB,"
              f" output {r['output_mb']} MB ({r['output_to_log']}x the log), {r['defects']} defects,"
              f" exit {r['exit']}" + (f"; pcrs {r['pcrs']['seconds']} s" if "pcrs" in r else ""))  # type: ignore[index]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
