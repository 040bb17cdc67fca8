"""The policy recordings made again against a real swtpm (tests/data/policy/record.py,
about 3 s), explained like the committed ones, and their notes read back by tshark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


import realtpm
from conftest import missing_tool, run_cli
from swtpm_extcap.pcr.findings import DigestCheck, Explanation
from swtpm_extcap.pcr.policy import PolicyReplay
from swtpm_extcap.swtpmlog.parser import parse_bytes

DATA = Path(__file__).parent / "data" / "policy"


def _findings(log: Path) -> tuple[list[tuple[str, str, int, int]], list[str]]:
    r = PolicyReplay()
    _, found = r.feed(parse_bytes(log.read_bytes()))
    found += r.finish()
    explained = [(f.kind, f.command, f.rc, len(f.causes)) for f in found if type(f) is Explanation]
    return explained, [f.status for f in found if type(f) is DigestCheck]


def test_recording_again_explains_the_same(tmp_path: Path) -> None:
    missing = realtpm.missing_tools("swtpm", "tpm2_startup", "systemd-creds")
    if missing:
        missing_tool(f"needs {', '.join(missing)} on PATH")
    proc = subprocess.run([sys.executable, str(DATA / "record.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for committed in sorted(DATA.glob("*.log")):
        fresh = tmp_path / committed.name
        explained, checks = _findings(fresh)
        assert (explained, checks) == _findings(committed), committed.name
        assert explained and set(checks) == {"match"}, committed.name


def test_policy_notes_in_convert_read_back_by_tshark(tmp_path: Path) -> None:
    if realtpm.missing_tools("tshark"):
        missing_tool("needs tshark")
    out = tmp_path / "pcr-seal.pcapng"
    proc = run_cli(["convert", str(DATA / "pcr-seal.log"), "-o", str(out), "--no-line-comments"])
    assert proc.returncode == 0, proc.stderr
    fields = subprocess.run(
        ["tshark", "-n", "-r", str(out), "-Y", 'frame.comment contains "policy:"', "-T", "fields",
         "-E", "separator=/t", "-e", "tcp.srcport", "-e", "frame.comment"],
        capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    lines = [(port, comment) for port, comment in (f.split("\t", 1) for f in fields)]
    assert all(port == "2321" for port, _ in lines)  # responses: from the TPM's port
    comments = [c for _, c in lines]
    assert comments[:3] == ["policy: digest matches replay"] * 3
    assert comments[3].startswith("policy: explain: Unseal at line ")
    assert "TPM_RC_POLICY_FAIL" in comments[3] and "until extend #5 at line" in comments[3]
    assert len(comments) == 4
