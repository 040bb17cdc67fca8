"""The independent oracle: a real swtpm, real tpm2-tools, the client's own pcap.

tpm2-tools talk to a real ``swtpm`` (log level 20) through the pcap TCTI of
libtss2-tcti-pcap0, which records every TPM command and response on the
client side. The swtpm log is converted with ``python -m swtpm_extcap
convert``; what tshark reads back on port 2321 must equal the client's pcap,
byte for byte and in order. Nothing here comes from parsing the log.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import realtpm
from conftest import CTRL_PORT, TPM_PORT, TsharkFrame, read_frames, run_cli, tpm_payloads

StartSwtpm = Callable[..., realtpm.Swtpm]


def convert(log: Path, out: Path) -> tuple[list[TsharkFrame], str]:
    proc = run_cli(["convert", str(log), "-o", str(out)])
    assert proc.returncode == 0, proc.stderr.decode()
    return read_frames(out), proc.stderr.decode()


def streams(frames: list[TsharkFrame], port: int = TPM_PORT) -> list[list[TsharkFrame]]:
    by: dict[int, list[TsharkFrame]] = {}
    for f in frames:
        if f.port == port:
            by.setdefault(f.stream, []).append(f)
    return sorted(by.values(), key=lambda s: s[0].number)


def workdir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    return path


def test_one_run_without_prefix(swtpm: realtpm.Swtpm, tmp_path: Path) -> None:
    pcap = tmp_path / "oracle.pcapng"
    realtpm.run_workload(swtpm, workdir(tmp_path, "work"), pcap=pcap)
    swtpm.stop()
    oracle = realtpm.read_oracle_payloads(pcap)
    assert len(oracle) >= 2 * len(realtpm.WORKLOAD)

    frames, summary = convert(swtpm.log_path, tmp_path / "converted.pcapng")
    got = tpm_payloads(frames)
    assert len(got) == len(oracle)
    for i, (g, o) in enumerate(zip(got, oracle)):
        assert g == o, f"TPM message {i}: converted {g[0]} {g[1].hex()} vs client {o[0]} {o[1].hex()}"
    assert len(streams(frames)) == 1
    assert re.search(r"\b0 defects\b", summary), summary


def test_restart_with_proxmox_prefix_gives_two_streams(
    swtpm_factory: StartSwtpm, tmp_path: Path
) -> None:
    """Two VM boots on the same state and log, each with its own
    ``[id=<epoch>] `` prefix, as Proxmox starts swtpm."""
    state = tmp_path / "tpm"
    epochs: list[int] = []
    oracles: list[list[tuple[str, bytes]]] = []
    log = None
    for boot in (1, 2):
        epoch = int(time.time())
        if epochs and epoch <= epochs[-1]:
            epoch = epochs[-1] + 1  # a new VM start never reuses the previous id
        sw = swtpm_factory(prefix=f"[id={epoch}] ", workdir=state)
        pcap = tmp_path / f"oracle-{boot}.pcapng"
        realtpm.run_workload(sw, workdir(tmp_path, f"work-{boot}"), pcap=pcap)
        sw.stop()
        epochs.append(epoch)
        oracles.append(realtpm.read_oracle_payloads(pcap))
        log = sw.log_path
    assert log is not None

    frames, summary = convert(log, tmp_path / "converted.pcapng")
    assert tpm_payloads(frames) == oracles[0] + oracles[1]
    tpm = streams(frames)
    assert len(tpm) == 2
    # the swtpm TCTI sends CMD_SET_LOCALITY on the control channel in each boot
    ctrl = streams(frames, CTRL_PORT)
    assert len(ctrl) == 2
    for boot, (stream, oracle, epoch) in enumerate(zip(tpm, oracles, epochs), start=1):
        assert tpm_payloads(stream) == oracle, f"boot {boot}"
        first = min(stream[0].ts_us, ctrl[boot - 1][0].ts_us)
        assert first == epoch * 1_000_000, f"boot {boot} starts at its [id=<epoch>]"
    assert re.search(r"\bin 2 runs\b", summary), summary
    assert re.search(r"\b0 defects\b", summary), summary
