"""PCR replay edge cases (issue 16): commands logged in pieces, sizes that lie,
what the log tells of the PCR allocation, and ``pcrs --diff`` arguments.

Every reproducer is a real corpus log changed in one place (a record rewritten
as swtpm would have logged it), or generated here; the changed records keep
swtpm's layout (``PREFIX`` + `` XX`` per byte, 16 a line).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import CorpusLog, named_log, run_cli
from swtpm_extcap.pcr.allocation import Allocation
from swtpm_extcap.pcr.replay import Replayer
from swtpm_extcap.pcr.types import CC_PCR_EXTEND, MAX_TPM_MESSAGE, PCR_COUNT, Check, Step
from swtpm_extcap.swtpmlog.parser import Kind, Record, parse_bytes

SHA1, SHA256 = 0x0004, 0x000B


def _replay(data: bytes) -> tuple[list[Any], Replayer]:
    replayer = Replayer(detail=True)
    return replayer.feed(parse_bytes(data)), replayer


def _extends(data: bytes, pcr: int) -> list[Record]:
    return [
        ev for ev in parse_bytes(data)
        if type(ev) is Record and ev.kind is Kind.TPM_COMMAND
        and ev.data[6:10] == CC_PCR_EXTEND.to_bytes(4, "big") and ev.data[10:14] == pcr.to_bytes(4, "big")
    ]


def _record_lines(prefix: bytes, label: bytes, data: bytes) -> list[bytes]:
    """One record as swtpm logs it."""
    head = prefix + b" " + label + b": length " + str(len(data)).encode()
    return [head] + [prefix + b" " + data[i : i + 16].hex(" ").upper().encode() + b" "
                     for i in range(0, len(data), 16)]


def _rewrite(log: CorpusLog, rec: Record, *pieces: bytes) -> bytes:
    """The log with ``rec`` logged as ``pieces`` (several reads; none: deleted)."""
    lines = list(log.lines)
    header = lines[rec.line - 1]
    m = re.match(rb"^(.*?) (SWTPM_IO_Read|SWTPM_IO_Write): length \d+$", header)
    assert m is not None
    new = [line for piece in pieces for line in _record_lines(m.group(1), m.group(2), piece)]
    lines[rec.line - 1 : rec.last_line] = new
    return b"\n".join(lines) + b"\n"


def _final(replayer: Replayer, pcr: int, alg: int) -> bytes | None:
    assert replayer.state is not None
    return replayer.state.banks[alg][pcr].value


@pytest.fixture
def boot(corpus: Path) -> CorpusLog:
    """Two Proxmox boots, firmware extends of PCRs 0-7 in sha1 and sha256, PCR_Reads."""
    return named_log(corpus, "proxmox-103-swtpm.log")


# ------------------------------------------------------ commands in pieces


@pytest.mark.parametrize("cut", [1, 2, 5, 6, 9, 10, 13, 14, 40])
def test_an_extend_logged_as_two_reads_is_replayed_whole(boot: CorpusLog, cut: int) -> None:
    """swtpm logged one PCR_Extend as two reads (the first under 10 bytes, or
    not): the replay joins them; the same values as the intact log, no MISMATCH."""
    whole, whole_replayer = _replay(boot.data)
    rec = _extends(boot.data, 7)[-1]  # boot 2's extend of PCR 7 (its PCR_Read checks it)
    split = _rewrite(boot, rec, rec.data[:cut], rec.data[cut:])
    out, replayer = _replay(split)
    assert not [c for c in out if type(c) is Check and c.status != "match"]
    for alg in (SHA1, SHA256):
        assert _final(replayer, 7, alg) == _final(whole_replayer, 7, alg) is not None
    # the same extends, at the first piece's line
    steps = [(s.pcr, s.bank, s.value) for s in out if type(s) is Step]
    assert steps == [(s.pcr, s.bank, s.value) for s in whole if type(s) is Step]


def test_a_command_in_three_pieces_is_replayed_whole(boot: CorpusLog) -> None:
    rec = _extends(boot.data, 7)[-1]
    out, replayer = _replay(_rewrite(boot, rec, rec.data[:3], rec.data[3:8], rec.data[8:]))
    assert not [c for c in out if type(c) is Check and c.status != "match"]
    assert _final(replayer, 7, SHA1) == _final(_replay(boot.data)[1], 7, SHA1)


@pytest.mark.parametrize("cut", [4, 9, 30])
def test_an_extend_whose_rest_is_not_in_the_log_makes_its_pcr_unknown(boot: CorpusLog, cut: int) -> None:
    """Only the first read of a PCR_Extend is logged, then its (successful)
    response: PCR 7 is unknown in every bank (never the 00..00 of Startup),
    and the PCR_Read after it teaches the value instead of failing."""
    rec = _extends(boot.data, 7)[-1]
    out, replayer = _replay(_rewrite(boot, rec, rec.data[:cut]))
    unknown = [s for s in out if type(s) is Step and s.what == "unknown" and s.line == rec.line]
    if cut < 10:  # not even its command code: any PCR may have changed
        assert {s.pcr for s in unknown} == set(range(PCR_COUNT))
    else:
        assert {s.pcr for s in unknown} == {7}
    assert all("of its bytes are in the log" in s.why for s in unknown)
    checks = [c for c in out if type(c) is Check and c.pcr == 7 and c.line > rec.line]
    assert checks and checks[0].status == "learned"  # then the reads after it match
    assert not [c for c in out if type(c) is Check and c.status == "mismatch"]


def test_a_size_that_lies_does_not_swallow_the_commands_after_it(boot: CorpusLog) -> None:
    """A PCR_Extend whose header claims 0xFFFFFFF0 bytes: the replay does not
    wait for them (what made it append every later command, quadratic); its
    PCR is unknown, every later extend is replayed as in the intact log."""
    whole, _ = _replay(boot.data)
    rec = _extends(boot.data, 0)[0]
    lying = rec.data[:2] + (0xFFFFFFF0).to_bytes(4, "big") + rec.data[6:]
    out, _ = _replay(_rewrite(boot, rec, lying))
    unknown = [s for s in out if type(s) is Step and s.what == "unknown"]
    assert {s.pcr for s in unknown} == {0}
    assert all("its header says 4294967280 bytes, the log has" in s.why for s in unknown)
    later = [(s.pcr, s.bank, s.value) for s in out if type(s) is Step and s.what == "extend"]
    expected = [(s.pcr, s.bank, s.value) for s in whole if type(s) is Step and s.what == "extend"
                and not (s.line == rec.line)]
    assert [x for x in later if x[0] != 0] == [x for x in expected if x[0] != 0]
    assert not [c for c in out if type(c) is Check and c.status == "mismatch"]


def test_a_first_piece_never_takes_more_than_its_header_lacks(boot: CorpusLog) -> None:
    """A 10-byte piece claiming 4,096 bytes, then whole commands: those are
    commands of their own (a whole command is never the rest of another), and
    the pieces the replay holds stay within MAX_TPM_MESSAGE."""
    rec = _extends(boot.data, 0)[0]
    piece = rec.data[:2] + (4096).to_bytes(4, "big") + rec.data[6:10]
    whole, _ = _replay(boot.data)
    out, replayer = _replay(_rewrite(boot, rec, piece))
    assert [s.pcr for s in out if type(s) is Step and s.what == "extend"] == [
        s.pcr for s in whole if type(s) is Step and s.what == "extend" and s.line != rec.line
    ]
    assert 4096 <= MAX_TPM_MESSAGE


def test_many_pieces_of_a_lying_command_stay_bounded() -> None:
    """Generated: a command header claiming 60,000 bytes, then 20,000 one-byte
    reads: the replay takes them as its pieces only up to what the header
    claims, so what it holds is bounded (what is left is not a command)."""
    prefix = b"[id=1700000000]"
    lines: list[bytes] = []
    head = (0x8001).to_bytes(2, "big") + (60_000).to_bytes(4, "big") + CC_PCR_EXTEND.to_bytes(4, "big")
    lines += _record_lines(prefix, b"SWTPM_IO_Read", head)
    for _ in range(20_000):
        lines += _record_lines(prefix, b"SWTPM_IO_Read", b"\x00")
    replayer = Replayer()
    replayer.feed(parse_bytes(b"\n".join(lines) + b"\n"))
    held = replayer._cmd  # noqa: SLF001 - the bound is the point
    assert held is not None and len(held) == 10 + 20_000 <= MAX_TPM_MESSAGE


# -------------------------------------------------------------- allocation


def test_allocation_from_pcr_read_answers() -> None:
    """The TPM leaves unallocated PCRs out of its answer; a full answer (8
    digests) says nothing of the PCRs after its last one."""
    a = Allocation()
    a.learn_read([(SHA1, [7]), (SHA256, [7])], [(SHA256, 7)])
    assert (a.state(SHA1, 7), a.state(SHA256, 7), a.state(SHA1, 8)) == (False, True, None)
    b = Allocation()
    asked = [(SHA256, list(range(10))), (SHA1, [0])]
    b.learn_read(asked, [(SHA256, p) for p in (0, 1, 2, 4, 5, 6, 7, 8)])
    assert b.state(SHA256, 3) is False  # before the last value returned: not allocated
    assert b.state(SHA256, 9) is None and b.state(SHA1, 0) is None  # after: cut off, unknown
    assert b.bank(SHA256) is True and b.bank(SHA1) is None


def test_allocation_from_pcr_allocate_takes_effect_at_the_next_reset() -> None:
    a = Allocation()
    a.set_all([(SHA1, list(range(24))), (SHA256, list(range(24)))], [SHA1, SHA256, 0x000C])
    assert a.bank(0x000C) is False  # implemented, not listed: nothing allocated
    a.allocate([(SHA1, [])])
    assert a.bank(SHA1) is True  # not before the reset
    assert a.reset() and a.bank(SHA1) is False and a.bank(SHA256) is True
    assert not a.reset()


# ------------------------------------------------------------- pcrs --diff


@pytest.mark.parametrize("ref", ["²", "١", "9" * 5000, "1" + "0" * 20, "-1", "0"])
def test_diff_run_that_is_no_number_is_one_usage_line(boot: CorpusLog, ref: str) -> None:
    proc = run_cli(["pcrs", str(boot.path), "--diff", ref, "1"])
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "--diff takes two runs" in err and "Traceback" not in err
    assert len(err) < 300


def test_pcrs_json_names_unallocated_banks(corpus: Path) -> None:
    """libvirt's swtpm_setup allocated only sha256 (its GetCapability says so)."""
    log = named_log(corpus, "libvirt-fedora39-swtpm.log")
    doc = json.loads(run_cli(["pcrs", "--json", str(log.path)]).stdout)
    run = doc["runs"][0]
    assert list(run["final"]) == ["sha256"]
    assert run["not_allocated"] == {bank: list(range(24)) for bank in ("sha1", "sha384", "sha512")}
    text = run_cli(["pcrs", str(log.path)]).stdout.decode()
    assert "  not allocated (the TPM keeps no such bank): sha1, sha384, sha512\n" in text


def test_pcrs_json_of_a_log_with_only_defects_is_valid(tmp_path: Path) -> None:
    """Found by the fuzzer once it wrote the pcrs reports: a log whose only event is
    a defect before any record (a line over 1 MiB) gave a run that was never closed,
    and invalid JSON."""
    log = tmp_path / "giant.log"
    log.write_bytes(b"x" * ((1 << 20) + 10) + b"\n")
    proc = run_cli(["pcrs", "--json", str(log)])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runs"] == []
    assert run_cli(["pcrs", str(log)]).stdout == b""
