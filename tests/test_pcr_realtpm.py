"""The PCR replay against a real swtpm: tpm2-tools' own ``tpm2_pcrread`` is the truth.

Several "VM boots" of one swtpm state appended to one log (a new ``[id=]``
prefix per swtpm start, as Proxmox does): Startup(CLEAR), extends in sha1 and
sha256 of several PCRs, ``tpm2_pcrevent`` (PCR_Event and, for a file over
1024 bytes, a hash sequence ending in EventSequenceComplete),
``tpm2_pcrreset`` of PCR 16 and 23, a DRTM hash sequence on the control
channel (``swtpm_ioctl -h``), Shutdown(STATE) and a resume. After each boot the
values ``tpm2_pcrread`` printed on the client are compared with the values
the replay computed *before* that read (the read itself is in the log too; a
value the replay learns from it would prove nothing).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import realtpm  # tests/ has no __init__.py: pytest puts tests/ on sys.path
from conftest import missing_tool, run_cli
from swtpm_extcap.swtpmlog.parser import Kind, Record, parse_bytes
from swtpm_extcap.pcr.replay import Replayer
from swtpm_extcap.pcr.types import ALGORITHMS, CC_PCR_EXTEND, Check

READ = "sha1:0,1,7,8,16,17,23+sha256:0,1,7,8,16,17,18,23"
BANKS = {name: alg for alg, (name, _) in ALGORITHMS.items()}


@pytest.fixture
def tpm_dir(tmp_path: Path) -> Iterator[Path]:
    missing = realtpm.missing_tools("swtpm", "swtpm_ioctl", "tpm2_startup", "tpm2_pcrread")
    if missing:
        missing_tool(f"needs {', '.join(missing)} on PATH")
    yield tmp_path


def _start(workdir: Path, epoch: int) -> realtpm.Swtpm:
    # no startup-clear: the Startup the "firmware" sends must be in the log
    return realtpm.start_swtpm(workdir, prefix=f"[id={epoch}] ", startup_clear=False)


def _tpm2(sw: realtpm.Swtpm, *args: str, cwd: Path) -> str:
    return realtpm.run_tpm2(list(args), sw, cwd=cwd).stdout


def _pcrread(sw: realtpm.Swtpm, cwd: Path, spec: str = READ) -> dict[tuple[int, str], bytes]:
    """What tpm2_pcrread prints: {(PCR, bank): value}."""
    out: dict[tuple[int, str], bytes] = {}
    bank = ""
    for line in _tpm2(sw, "tpm2_pcrread", spec, cwd=cwd).splitlines():
        if m := re.fullmatch(r"\s*(sha\w+):\s*", line):
            bank = m.group(1)
        elif m := re.fullmatch(r"\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*", line):
            out[(int(m.group(1)), bank)] = bytes.fromhex(m.group(2))
    assert out, "tpm2_pcrread printed no values"
    return out


def _checks(log: Path) -> dict[int, list[Check]]:
    """Every PCR_Read check of the replay, by run (0-based)."""
    by_run: dict[int, list[Check]] = {}
    for o in Replayer(detail=True).feed(parse_bytes(log.read_bytes())):
        if type(o) is Check:
            by_run.setdefault(o.run, []).append(o)
    return by_run


def _last_checks(checks: list[Check]) -> dict[tuple[int, str], Check]:
    return {(c.pcr, c.bank): c for c in checks}


def _drtm(sw: realtpm.Swtpm, data: str) -> None:
    subprocess.run(
        ["swtpm_ioctl", "--tcp", f"{realtpm.HOST}:{sw.ctrl_port}", "-h", data],
        check=True, capture_output=True, timeout=30,
    )


def test_replay_matches_tpm2_pcrread_over_several_boots(tpm_dir: Path) -> None:
    work = tpm_dir
    (work / "small.bin").write_bytes(b"kernel command line\n")
    (work / "big.bin").write_bytes(bytes(range(256)) * 12)  # > 1024 bytes: a hash sequence
    truth: list[dict[tuple[int, str], bytes]] = []

    # boot 1: firmware and OS measurements, resets, a DRTM launch
    with _start(work, 1700000001) as sw:
        _tpm2(sw, "tpm2_startup", "-c", cwd=work)
        _tpm2(sw, "tpm2_pcrextend", "0:sha1=" + "01" * 20 + ",sha256=" + "02" * 32, cwd=work)
        _tpm2(sw, "tpm2_pcrextend", "7:sha256=" + "03" * 32, cwd=work)
        _tpm2(sw, "tpm2_pcrextend", "7:sha1=" + "04" * 20, cwd=work)
        _tpm2(sw, "tpm2_pcrextend", "16:sha1=" + "05" * 20 + ",sha256=" + "06" * 32, cwd=work)
        _tpm2(sw, "tpm2_pcrextend", "23:sha256=" + "07" * 32, cwd=work)
        _tpm2(sw, "tpm2_pcrevent", "8", "small.bin", cwd=work)
        _tpm2(sw, "tpm2_pcrevent", "16", "big.bin", cwd=work)
        _tpm2(sw, "tpm2_pcrreset", "16", cwd=work)
        _tpm2(sw, "tpm2_pcrreset", "23", cwd=work)
        _tpm2(sw, "tpm2_pcrextend", "23:sha1=" + "08" * 20, cwd=work)
        _drtm(sw, "a measured launch environment")
        truth.append(_pcrread(sw, work))
        _tpm2(sw, "tpm2_shutdown", "-c", cwd=work)
    # boot 2: the same state, swtpm restarted (a VM restart), other measurements
    with _start(work, 1700000002) as sw:
        _tpm2(sw, "tpm2_startup", "-c", cwd=work)
        _tpm2(sw, "tpm2_pcrextend", "1:sha1=" + "11" * 20 + ",sha256=" + "12" * 32, cwd=work)
        _tpm2(sw, "tpm2_pcrevent", "7", "small.bin", cwd=work)
        truth.append(_pcrread(sw, work))
        _tpm2(sw, "tpm2_shutdown", cwd=work)  # Shutdown(STATE): PCRs 0-15 saved
    # boot 3: resume, Startup(STATE): PCRs 0-15 come from the saved state
    with _start(work, 1700000003) as sw:
        _tpm2(sw, "tpm2_startup", cwd=work)
        truth.append(_pcrread(sw, work))
        _tpm2(sw, "tpm2_pcrextend", "7:sha256=" + "13" * 32, cwd=work)
        truth.append(_pcrread(sw, work))

    checks = _checks(sw.log_path)
    assert sorted(checks) == [0, 1, 2]
    # boots 1 and 2: every value the client read is the replayed one
    for run in (0, 1):
        last = _last_checks(checks[run])
        assert set(last) == set(truth[run])
        for key, value in truth[run].items():
            assert last[key].status == "match", (run, key, last[key])
            assert last[key].replay == value, (run, key)
    assert truth[0][(17, "sha256")] not in (b"\xff" * 32, b"\0" * 32)  # the DRTM extend happened
    assert truth[0][(16, "sha256")] == b"\0" * 32 and truth[0][(23, "sha1")] != b"\0" * 20
    # boot 3: the first read finds 0-15 restored (unknown to the replay: learned),
    # 16-23 reset (replayed); after an extend of PCR 7 the replay knows it again
    first = [c for c in checks[2] if c.answer == min(x.answer for x in checks[2])]
    for c in first:
        assert c.read == truth[2][(c.pcr, c.bank)]
        if c.pcr < 16:
            assert c.status == "learned" and "Startup(STATE)" in c.why, c
        else:
            assert c.status == "match" and c.replay == c.read, c
    last = _last_checks(checks[2])
    for key, value in truth[3].items():
        assert last[key].status == "match" and last[key].replay == value, key
    assert last[(7, "sha256")].since > first[0].answer  # changed by the extend after the read

    # the command line shows the same thing: no mismatch anywhere
    proc = run_cli(["pcrs", str(sw.log_path)])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    assert "MISMATCH" not in text
    assert re.findall(r"^  line \d+ (Startup\(\w+\))$", text, re.M) == [
        "Startup(CLEAR)", "Startup(CLEAR)", "Startup(STATE)"
    ]
    assert "DRTM hash sequence PCR 17 sha256" in text and "EventSequenceComplete PCR 16" in text


def _extend_lines(log: Path, run: int) -> list[int]:
    """Log lines of the PCR_Extend commands of one run."""
    return [
        ev.line
        for ev in parse_bytes(log.read_bytes())
        if type(ev) is Record
        and ev.run == run
        and ev.kind is Kind.TPM_COMMAND
        and int.from_bytes(ev.data[6:10], "big") == CC_PCR_EXTEND
    ]


def test_diff_names_the_one_extend_where_two_boots_part(tpm_dir: Path) -> None:
    work = tpm_dir
    plan = [
        ("0", "sha256=" + "a0" * 32),
        ("7", "sha256=" + "a7" * 32 + ",sha1=" + "17" * 20),
        ("4", "sha256=" + "a4" * 32),
        ("7", "sha256=" + "b7" * 32),  # boot 2 measures something else here
        ("8", "sha256=" + "a8" * 32),
    ]
    changed = 3
    other = "sha256=" + "c7" * 32
    for boot, epoch in enumerate((1700000101, 1700000102)):
        with _start(work, epoch) as sw:
            _tpm2(sw, "tpm2_startup", "-c", cwd=work)
            for i, (pcr, spec) in enumerate(plan):
                _tpm2(sw, "tpm2_pcrextend", f"{pcr}:{other if boot and i == changed else spec}", cwd=work)
            _tpm2(sw, "tpm2_shutdown", "-c", cwd=work)
    log = sw.log_path
    line_a, line_b = _extend_lines(log, 0)[changed], _extend_lines(log, 1)[changed]

    proc = run_cli(["pcrs", str(log), "--diff", "1", "1700000102"])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    differs = re.findall(r"^PCR (\d+) differs", text, re.M)
    assert differs == ["7"], text
    assert f"extend #4 at line {line_a} (PCR_Extend): sha256 {'b7' * 32}" in text
    assert f"extend #4 at line {line_b} (PCR_Extend): sha256 {'c7' * 32}" in text
    assert "the boots part at its extend 2 (the 1 before it are equal)" in text

    import json

    proc = run_cli(["pcrs", str(log), "--diff", "1", "2", "--json"])
    doc = json.loads(proc.stdout)
    assert [(d["pcr"], d["a_line"], d["b_line"]) for d in doc["differences"]] == [(7, line_a, line_b)]
    assert doc["differences"][0]["banks"] == ["sha256"]

    same = run_cli(["pcrs", str(log), "--diff", "1", "1"])
    assert "no PCR differs" in same.stdout.decode()


def test_hcrtm_sequence_before_startup_extends_pcr0_and_startup_keeps_it(tpm_dir: Path) -> None:
    with _start(tpm_dir, 1700000201) as sw:
        _drtm(sw, "an H-CRTM measurement")  # the TPM is not started yet: PCR 0, from 0...04
        _tpm2(sw, "tpm2_startup", "-c", cwd=tpm_dir)
        truth = _pcrread(sw, tpm_dir, "sha1:0,17+sha256:0,17")
    last = _last_checks(_checks(sw.log_path)[0])
    assert set(last) == set(truth)
    for key, value in truth.items():
        assert last[key].status == "match" and last[key].replay == value, key
    assert truth[(0, "sha256")] != b"\0" * 32 and truth[(17, "sha256")] == b"\xff" * 32


def test_diff_compares_bank_by_bank_when_the_runs_replay_different_banks(tpm_dir: Path) -> None:
    """Issue 16: sha1 was de-allocated before the log begins (swtpm at level 1),
    so run 1 replays the sha1 digests the firmware sends (the log never says
    the bank is gone); run 2 learns the allocation (GetCapability). Only PCR 7
    differs, in sha256; sha1 is named as not compared, never as a difference
    (PCRs 0, 2, 4 and 8 were reported as "differs (sha256)" before)."""
    work = tpm_dir
    sw = realtpm.start_swtpm(work, prefix="[id=1700000300] ", level=1, startup_clear=False)
    with sw:
        _tpm2(sw, "tpm2_startup", "-c", cwd=work)
        _tpm2(sw, "tpm2_pcrallocate", "sha1:none+sha256:all", cwd=work)
        _tpm2(sw, "tpm2_shutdown", "-c", cwd=work)
    for boot, epoch in enumerate((1700000301, 1700000302)):
        with _start(work, epoch) as sw:
            _tpm2(sw, "tpm2_startup", "-c", cwd=work)
            if boot:
                _tpm2(sw, "tpm2_getcap", "pcrs", cwd=work)
            for pcr in (0, 2, 4, 7, 8):
                digest = "b7" if boot and pcr == 7 else f"a{pcr}"  # boot 2 measures PCR 7 differently
                _tpm2(sw, "tpm2_pcrextend", f"{pcr}:sha1={f'1{pcr}' * 20},sha256={digest * 32}", cwd=work)
            if boot:  # tpm2_pcrread asks GetCapability(PCRS) too: not in run 1
                truth = _pcrread(sw, work, "sha256:0,2,4,7,8")
            _tpm2(sw, "tpm2_shutdown", "-c", cwd=work)
    log = sw.log_path
    proc = run_cli(["pcrs", str(log), "--diff", "1", "2"])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    assert re.findall(r"^PCR (\d+) differs \(([\w, ]+)\)", text, re.M) == [("7", "sha256")], text
    assert "sha1 only in A (B: not allocated): not compared" in text
    assert f"final sha256: A {_value_after(log, 0, 7)}, B {truth[(7, 'sha256')].hex()}" in text
    # run 2 shows no sha1 bank: the TPM has none
    report = run_cli(["pcrs", str(log)]).stdout.decode()
    run2 = report[report.index("run 2 "):]
    assert "final sha1" not in run2 and "not allocated (the TPM keeps no such bank): sha1" in run2


def _value_after(log: Path, run: int, pcr: int) -> str:
    """The replayed final sha256 value of ``pcr`` in ``run`` (0-based)."""
    import json

    doc = json.loads(run_cli(["pcrs", "--json", str(log)]).stdout)
    return str(doc["runs"][run]["final"]["sha256"][str(pcr)])
