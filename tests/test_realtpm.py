"""Smoke test of tests/realtpm.py against a real swtpm, tpm2-tools and tshark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import realtpm  # tests/ has no __init__.py: pytest puts tests/ on sys.path

_MISSING = [t for t in ("swtpm", "tpm2_startup") if shutil.which(t) is None]

pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"real-TPM test needs {' and '.join(_MISSING)} on PATH"
)


def _alive(pid: int) -> bool:
    return subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0


def test_workload_oracle_matches_swtpm_log(tmp_path: Path) -> None:
    pcap = tmp_path / "oracle.pcapng"
    with realtpm.start_swtpm(tmp_path) as sw:
        assert sw.port + 1 == sw.ctrl_port
        realtpm.run_workload(sw, tmp_path, pcap=pcap)
        pid = sw.pid
    assert pid is not None and not _alive(pid)

    payloads = realtpm.read_oracle_payloads(pcap)
    assert payloads
    assert [d for d, _ in payloads] == ["command", "response"] * (len(payloads) // 2)
    assert len(payloads) % 2 == 0
    commands = [m for d, m in payloads if d == "command"]
    assert realtpm.count_log_commands(sw.log_path) == len(commands)
    # the log's commands are the oracle's commands, byte for byte
    log_text = sw.log_path.read_text()
    assert commands[0][:10].hex(" ").upper() in log_text


def test_restart_appends_to_the_same_log(tmp_path: Path) -> None:
    pcap = tmp_path / "oracle.pcapng"
    counts = []
    for _ in range(2):  # VM restart: same workdir, same log, same state
        with realtpm.start_swtpm(tmp_path, prefix="[id=1732600000] ") as sw:
            realtpm.run_tpm2(["tpm2_getrandom", "--hex", "8"], sw, pcap=pcap)
            realtpm.run_tpm2(["tpm2_pcrread", "sha256:0"], sw, pcap=pcap)
        counts.append(realtpm.count_log_commands(sw.log_path))
    payloads = realtpm.read_oracle_payloads([pcap])
    assert counts[1] == 2 * counts[0] == len(payloads) // 2
