"""Junk logs (issue 16): a run of junk is one stray record and one defect, not an
event (and a frame) per line, so output and memory stay small whatever its size.

The reproducer is the issue's own, generated: ``' AB \\nx\\n'`` repeated (a hex
line outside any record, a line that is nothing). Memory and speed on 2-20 MB
of it are ``bench/bench_damage.py``'s to show (no timed assertion here).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import fuzzlog
from conftest import named_log
from swtpm_extcap.swtpmlog.parser import MAX_RECORD, DefectKind, Kind, Record, RunStart, parse_bytes

pytestmark = pytest.mark.fast

JUNK = b" AB \nx\n"


def _same_however_fed(data: bytes) -> list[object]:
    whole = fuzzlog.parse_whole(data)
    assert fuzzlog.parse_line_by_line(data) == whole
    assert fuzzlog.parse_reference(data) == whole
    assert fuzzlog.parse_chunks(data, random.Random(len(data))) == whole
    return list(whole)


def test_a_junk_log_is_one_stray_record_with_one_defect() -> None:
    times = 20_000
    events = _same_however_fed(JUNK * times)
    assert [type(e) for e in events] == [RunStart, Record]
    rec = events[1]
    assert isinstance(rec, Record) and rec.kind is Kind.STRAY and not rec.kind.is_tpm
    assert rec.data == b"\xab" * times and (rec.line, rec.last_line) == (1, 2 * times - 1)
    assert [d.kind for d in rec.defects] == [DefectKind.STRAY]
    assert rec.defects[0].detail.startswith(
        f"{times} bytes of hex outside any record (lines 1-{2 * times - 1},"
        f" {times} hex lines and {times - 1} other lines)"
    )


def test_more_junk_than_a_record_holds_is_cut_and_counted() -> None:
    times = MAX_RECORD + 10
    rec = next(e for e in parse_bytes(JUNK * times) if isinstance(e, Record))
    assert len(rec.data) == MAX_RECORD
    defects = {d.kind: d for d in rec.defects}
    assert set(defects) == {DefectKind.STRAY, DefectKind.OVERSIZE}
    assert f"{times} bytes" in defects[DefectKind.OVERSIZE].detail


def test_a_junk_log_converts_to_less_than_its_size() -> None:
    """Junk made 41 times its size of pcapng before (a frame per hex line)."""
    data = JUNK * 100_000
    pcap = fuzzlog.convert(data)
    assert len(pcap) < len(data) // 2
    assert fuzzlog.check_pcapng(pcap) < 20  # the stray data in a few segments, the handshakes


def test_junk_before_a_real_log_leaves_its_records_intact(corpus: Path) -> None:
    log = named_log(corpus, "proxmox-103-swtpm.log")
    real = [e for e in parse_bytes(log.data) if isinstance(e, Record)]
    times = 1000
    events = _same_however_fed(JUNK * times + log.data)
    recs = [e for e in events if isinstance(e, Record)]
    assert recs[0].kind is Kind.STRAY and recs[0].last_line == 2 * times - 1  # ends at the first header
    shift = 2 * times
    assert [(r.kind, r.data, r.line - shift, r.defects) for r in recs[1:]] == [
        (r.kind, r.data, r.line, r.defects) for r in real
    ]


def test_junk_between_records_is_one_stray_run_per_gap(corpus: Path) -> None:
    """Hex and junk lines after each of a few records: one stray record per gap,
    ended by the next header; every real record intact."""
    log = named_log(corpus, "proxmox-103-swtpm.log")
    real = [e for e in parse_bytes(log.data) if isinstance(e, Record)][:12]
    lines = list(log.lines)
    prefix = lines[0][: lines[0].index(b"] ") + 2]  # "[id=<epoch>] "
    gaps = [r.last_line for r in real[1:10:3]]
    for at in reversed(gaps):
        lines[at:at] = [prefix + b" AB CD ", b"x", b"libtpms junk", prefix + b" EF "]
    events = _same_however_fed(b"\n".join(lines) + b"\n")
    stray = [e for e in events if isinstance(e, Record) and e.kind is Kind.STRAY]
    assert [s.data for s in stray] == [b"\xab\xcd\xef"] * len(gaps)
    assert [len(s.defects) for s in stray] == [1] * len(gaps)
    intact = [e for e in events if isinstance(e, Record) and e.kind is not Kind.STRAY][:12]
    assert [(r.kind, r.data, r.defects) for r in intact] == [(r.kind, r.data, r.defects) for r in real]
