"""logparse: real swtpm logs in, records out, checked against client-side truth.

Every expectation comes from the corpus truth (``*.expected.json``, recorded by
the client, not parsed from the log) or from the log itself before it was
damaged: damaged logs are real logs with a few lines edited, and the records
the edit did not touch must come out exactly as they did from the real log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import CorpusLog, named_log
from swtpm_extcap.swtpmlog.parser import Defect, DefectKind, Event, Kind, LogParser, Record, RunStart

# ------------------------------------------------------------------ helpers


def parse(data: bytes, chunk: int | None = None) -> list[Event]:
    """Feed ``data`` in chunks of ``chunk`` bytes (None: all at once), then close."""
    parser = LogParser()
    events: list[Event] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        events += parser.feed(data[i : i + step])
    return events + parser.close()


def records(events: Iterable[Event]) -> list[Record]:
    return [e for e in events if isinstance(e, Record)]


def all_defects(events: Iterable[Event]) -> list[Defect]:
    """Defect events and the defects carried by records, in output order."""
    out: list[Defect] = []
    for e in events:
        if isinstance(e, Defect):
            out.append(e)
        elif isinstance(e, Record):
            out.extend(e.defects)
    return out


class Seen(NamedTuple):
    """What a record says, apart from its run number."""

    kind: Kind
    data: bytes
    line: int
    declared: int
    defects: tuple[Defect, ...]
    last_line: int


def view(rec: Record | Seen, shift: int = 0) -> Seen:
    """A record's :class:`Seen`, moved by ``shift`` lines."""
    return Seen(rec.kind, rec.data, rec.line + shift, rec.declared, tuple(rec.defects), rec.last_line + shift)


_CHANNEL = {
    Kind.TPM_COMMAND: ("tpm", "command"),
    Kind.TPM_RESPONSE: ("tpm", "response"),
    Kind.CTRL_COMMAND: ("ctrl", "command"),
    Kind.CTRL_RESPONSE: ("ctrl", "response"),
    Kind.CTRL_CONTINUED: ("ctrl", "response"),
}


def log_prefix(line: bytes) -> bytes:
    """The run prefix of a record line (``[id=..] `` or nothing)."""
    m = re.match(rb"^(.*?) (?:SWTPM_IO_Read|SWTPM_IO_Write|Ctrl Cmd|Ctrl Rsp)", line)
    assert m is not None, line
    return m.group(1)


def join(lines: Sequence[bytes], final_newline: bool = True) -> bytes:
    return b"\n".join(lines) + (b"\n" if final_newline and lines else b"")


# ------------------------------------------------ real logs against the truth


def test_all_records_equal_truth_in_order(corpus_log: CorpusLog) -> None:
    events = parse(corpus_log.data)
    got = [(*_CHANNEL[r.kind], r.run, r.data) for r in records(events)]
    assert got == corpus_log.messages()


def test_tpm_records_equal_truth_byte_for_byte(corpus_log: CorpusLog) -> None:
    recs = [r for r in records(parse(corpus_log.data)) if r.kind.is_tpm]
    got = [("command" if r.kind is Kind.TPM_COMMAND else "response", r.data) for r in recs]
    want = corpus_log.tpm_messages()
    assert len(got) == 2 * corpus_log.truth["tpm_exchange_count"] == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"TPM message {i} (log line {recs[i].line}) differs from the truth"


def test_ctrl_message_count_equals_truth(corpus_log: CorpusLog) -> None:
    ctrl = [r for r in records(parse(corpus_log.data)) if not r.kind.is_tpm]
    assert len(ctrl) == corpus_log.truth["ctrl_message_count"]


def test_real_logs_have_no_defects(corpus_log: CorpusLog) -> None:
    events = parse(corpus_log.data)
    assert all_defects(events) == []
    assert all(r.intact for r in records(events))
    assert all(r.declared == len(r.data) for r in records(events))


def test_runs_and_epochs_equal_truth(corpus_log: CorpusLog) -> None:
    events = parse(corpus_log.data)
    starts = [e for e in events if isinstance(e, RunStart)]
    assert len(starts) == corpus_log.run_count
    assert [s.run for s in starts] == list(range(corpus_log.run_count))
    assert [s.epoch for s in starts] == corpus_log.epochs
    assert [s.prefix for s in starts] == [r["prefix"] for r in corpus_log.truth["runs"]]
    # every record belongs to the run the truth puts it in, and after its RunStart
    first_line = {s.run: s.line for s in starts}
    for rec in records(events):
        assert rec.line >= first_line[rec.run]


def test_record_lines_point_at_their_headers(corpus_log: CorpusLog) -> None:
    lines = corpus_log.lines
    for rec in records(parse(corpus_log.data)):
        header = lines[rec.line - 1].decode("latin-1")
        assert header.endswith(f" {rec.kind.value}: length {rec.declared}"), (rec.line, header)
        nhex = -(-rec.declared // 16)
        assert rec.last_line == rec.line + nhex


# ---------------------------------------------------- chunking, line endings


@pytest.mark.parametrize("chunk", [1, 7, 4096, None], ids=["1", "7", "4096", "whole"])
def test_chunking_gives_identical_events(corpus_log: CorpusLog, chunk: int | None) -> None:
    assert parse(corpus_log.data, chunk) == parse(corpus_log.data)


def test_feed_lines_gives_identical_events(corpus_log: CorpusLog) -> None:
    parser = LogParser()
    text = corpus_log.data.decode("latin-1")
    events = parser.feed_lines(text.splitlines(keepends=True)) + parser.close()
    assert events == parse(corpus_log.data)


@pytest.mark.parametrize("chunk", [None, 1, 4096], ids=["whole", "1", "4096"])
def test_crlf_log_gives_the_same_events(corpus_log: CorpusLog, chunk: int | None) -> None:
    crlf = corpus_log.data.replace(b"\n", b"\r\n")
    assert parse(crlf, chunk) == parse(corpus_log.data)


def test_missing_final_newline_is_flushed_by_close(corpus_log: CorpusLog) -> None:
    assert corpus_log.data.endswith(b"\n")
    assert parse(corpus_log.data[:-1]) == parse(corpus_log.data)


def _first_multiline_record(log: CorpusLog) -> Record:
    return next(r for r in records(parse(log.data)) if r.kind.is_tpm and r.declared > 16)


def _offset_of_line(log: CorpusLog, line: int) -> int:
    """Byte offset where 1-based ``line`` starts."""
    return sum(len(x) + 1 for x in log.lines[: line - 1])


def test_partial_last_line_is_held_back_until_its_newline(corpus_log: CorpusLog) -> None:
    rec = _first_multiline_record(corpus_log)
    end = _offset_of_line(corpus_log, rec.last_line + 1)  # just after the record's last "\n"
    parser = LogParser()
    early = parser.feed(corpus_log.data[: end - 1])  # all of it but the final newline
    assert rec.line not in [r.line for r in records(early)]
    assert parser.pending
    late = parser.feed(b"\n")
    assert records(late) == [rec]
    assert [r.line for r in records(early)] == [
        r.line for r in records(parse(corpus_log.data)) if r.line < rec.line
    ]


def test_record_completes_across_a_cut_inside_a_hex_line(corpus_log: CorpusLog) -> None:
    rec = _first_multiline_record(corpus_log)
    start = _offset_of_line(corpus_log, rec.last_line)
    end = _offset_of_line(corpus_log, rec.last_line + 1)
    for cut in (start + 1, (start + end) // 2, end - 2):
        parser = LogParser()
        head = parser.feed(corpus_log.data[:cut])
        assert rec not in records(head)
        tail = parser.feed(corpus_log.data[cut:end])
        assert records(tail) == [rec], f"cut at byte {cut}"


def test_close_of_a_cut_record_leaves_nothing_pending(corpus_log: CorpusLog) -> None:
    ex = excerpt(corpus_log)
    parser = LogParser()
    parser.feed(join(ex.lines[: ex.v.line + 1]))  # header + first hex line, then EOF
    first = parser.close()
    assert [r.line for r in records(first)][-1] == ex.v.line
    assert not parser.pending
    assert parser.close() == []


def test_partial_header_line_is_held_back(corpus_log: CorpusLog) -> None:
    rec = _first_multiline_record(corpus_log)
    start = _offset_of_line(corpus_log, rec.line)
    parser = LogParser()
    parser.feed(corpus_log.data[: start + 10])
    assert parser.pending
    # the rest of the header, its hex lines: the record, nothing else of it twice
    rest = parser.feed(corpus_log.data[start + 10 : _offset_of_line(corpus_log, rec.last_line + 1)])
    assert records(rest) == [rec]


def test_a_line_without_end_is_bounded_and_the_log_goes_on(corpus_log: CorpusLog) -> None:
    """Megabytes without a newline (binary junk, a log written by something
    else) are taken as one line once they pass MAX_LINE, not held in memory;
    the records after the next newline come out as usual, one line later."""
    from swtpm_extcap.swtpmlog.parser import MAX_LINE

    parser = LogParser()
    junk = b"\xff" * (MAX_LINE // 4)
    out = []
    for _ in range(12):  # 3 * MAX_LINE without a newline
        out += parser.feed(junk)
        assert len(parser._tail) <= MAX_LINE  # noqa: SLF001 - what bounds the memory
    out += parser.feed(b"\n" + corpus_log.data) + parser.close()
    expected = parse(corpus_log.data)
    assert [view(r, 1) for r in records(expected)] == [view(r) for r in records(out)]


# ----------------------------------------------------- lines that are not records


FAILURE_LOG = "proxmox-105-failuremode-swtpm.log"
TPM12_LOG = "tpm12-swtpm.log"


def _covered_lines(recs: Iterable[Record]) -> set[int]:
    return {n for r in recs for n in range(r.line, r.last_line + 1)}


def test_failure_mode_dump_is_not_a_record(corpus: Path) -> None:
    log = named_log(corpus, FAILURE_LOG)
    foreign = [
        i + 1
        for i, line in enumerate(log.lines)
        if line.startswith(b"libtpms/") or re.fullmatch(rb"(?:[0-9a-f]{2} )+", line)
    ]
    # the three un-prefixed lines libtpms prints when it enters failure mode
    assert len(foreign) == 3, foreign
    assert any(re.search(rb"[a-f]", log.lines[n - 1]) for n in foreign)  # lowercase hex
    events = parse(log.data)
    assert not _covered_lines(records(events)) & set(foreign)
    assert all_defects(events) == []
    assert len(records(events)) == len(log.messages())


def test_failure_mode_neighbours_equal_truth(corpus: Path) -> None:
    log = named_log(corpus, FAILURE_LOG)
    mode = log.truth["failure_mode"]
    event = log.truth["events"][mode["trigger_event_index"]]
    assert event["command"] == mode["trigger_command"]
    k = [e for e in log.exchanges() if e["channel"] == "tpm"].index(event)
    tpm = [r for r in records(parse(log.data)) if r.kind.is_tpm]
    command, answer = tpm[2 * k], tpm[2 * k + 1]
    assert (command.kind, command.data) == (Kind.TPM_COMMAND, bytes.fromhex(event["command"]))
    assert (answer.kind, answer.data) == (Kind.TPM_RESPONSE, bytes.fromhex(event["response"]))
    assert command.intact and answer.intact
    assert int.from_bytes(answer.data[6:10], "big") == int(event["response_code"], 16)
    # the libtpms lines sit between the two records and are in neither
    between = range(command.last_line + 1, answer.line)
    assert len(between) == 3
    assert all(not log.lines[n - 1].startswith(b"[id=") for n in between)


def test_tpm12_trace_lines_are_not_records(corpus: Path) -> None:
    log = named_log(corpus, TPM12_LOG)
    events = parse(log.data)
    recs = records(events)
    covered = _covered_lines(recs)
    traces = [i + 1 for i, line in enumerate(log.lines) if line.startswith(b"  ")]
    assert len(traces) > 1000  # thousands of libtpms trace lines at level 20
    assert not covered & set(traces)
    # including the uppercase hex dumps of TPM_Key_GenerateRSA ("     01 00 01 ")
    dumps = [n for n in traces if re.fullmatch(rb" +(?:[0-9A-F]{2} )+", log.lines[n - 1])]
    assert dumps
    assert all_defects(events) == []
    assert len(recs) == 2 * (log.truth["tpm_exchange_count"] + log.truth["ctrl_exchange_count"])


def _inject_after_records(log: CorpusLog, make: Sequence[bytes]) -> tuple[bytes, dict[int, int]]:
    """Insert a foreign line after every record; returns the log and old->new line."""
    recs = records(parse(log.data))
    ends = {r.last_line for r in recs}
    out: list[bytes] = []
    moved: dict[int, int] = {}
    k = 0
    for n, line in enumerate(log.lines, start=1):
        out.append(line)
        moved[n] = len(out)
        if n in ends:
            prefix = log_prefix(log.lines[max(r.line for r in recs if r.last_line == n) - 1])
            out.append(make[k % len(make)].replace(b"{P}", prefix))
            k += 1
    return join(out), moved


SYNTHETIC_NOISE = [
    b"IsEnEnabled(TPM_ALG_SHA256): 1",
    b"Tested: 0x000B",
    b"{P} IsEnEnabled(0x0004) = 0",
    b"{P} Tested: 01 02 03",
    b"{P}Tested: AB CD",
    b"  IsEnEnabled: 00 0B 00 0C",
    b"",
]


def test_isenabled_and_tested_lines_between_records_are_skipped(corpus_log: CorpusLog) -> None:
    data, moved = _inject_after_records(corpus_log, SYNTHETIC_NOISE)
    clean = parse(corpus_log.data)
    noisy = parse(data)
    assert all_defects(noisy) == []
    assert len(records(noisy)) == len(records(clean))
    for new, old in zip(records(noisy), records(clean)):
        assert (new.kind, new.data, new.declared, new.run) == (old.kind, old.data, old.declared, old.run)
        assert (new.line, new.last_line) == (moved[old.line], moved[old.last_line])
    assert [e.epoch for e in noisy if isinstance(e, RunStart)] == corpus_log.epochs


# ------------------------------------------------------------ damaged logs


@dataclass
class Excerpt:
    """Real log lines around a victim record, numbered from 1."""

    lines: list[bytes]
    recs: list[Seen]  # the real records in the excerpt, renumbered
    victim: int  # index into recs

    @property
    def v(self) -> Seen:
        return self.recs[self.victim]

    @property
    def prefix(self) -> bytes:
        return log_prefix(self.lines[self.v.line - 1])

    def hex_line(self, data: bytes) -> bytes:
        """A record data line as swtpm writes it."""
        return self.prefix + b" " + data.hex(" ").upper().encode() + b" "


def excerpt(log: CorpusLog) -> Excerpt:
    """Five real records (two before, two after a victim with 2+ hex lines and a
    partial last line), with whatever real lines lie between them."""
    recs = records(parse(log.data))
    candidates = [
        i
        for i in range(2, len(recs) - 2)
        if recs[i].declared > 16 and recs[i].declared % 16 and recs[i].kind.is_tpm
    ]
    assert candidates, f"{log.name}: no multi-line record"
    adjacent = [
        i for i in candidates
        if recs[i - 1].last_line + 1 == recs[i].line and recs[i].last_line + 1 == recs[i + 1].line
    ]
    i = (adjacent or candidates)[0]
    first, last = recs[i - 2].line, recs[i + 2].last_line
    shift = first - 1
    inside = [r for r in recs if first <= r.line and r.last_line <= last]
    renumbered = [
        Seen(r.kind, r.data, r.line - shift, r.declared, tuple(r.defects), r.last_line - shift)
        for r in inside
    ]
    return Excerpt(list(log.lines[first - 1 : last]), renumbered, inside.index(recs[i]))


def check_others(ex: Excerpt, out: list[Event], shift: int) -> None:
    """Every record but the victim comes out intact and unchanged (records
    after the victim moved by ``shift`` lines)."""
    got = {r.line: r for r in records(out)}
    for j, rec in enumerate(ex.recs):
        if j == ex.victim:
            continue
        s = shift if j > ex.victim else 0
        assert rec.line + s in got, f"record of excerpt line {rec.line} lost"
        new = got[rec.line + s]
        assert view(new) == view(rec, s)
        assert new.intact


def check_defects_within(out: list[Event], first: int, last: int) -> None:
    for d in all_defects(out):
        assert first <= d.line <= last, f"defect outside the damaged record: {d}"


def victim_after(out: list[Event], line: int) -> Record:
    recs = [r for r in records(out) if r.line == line]
    assert len(recs) == 1, f"expected one record at line {line}: {records(out)}"
    return recs[0]


def test_short_record(corpus_log: CorpusLog) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    lines = ex.lines[: v.last_line - 1] + ex.lines[v.last_line :]  # drop its last hex line
    out = parse(join(lines))
    rec = victim_after(out, v.line)
    nlines = v.last_line - v.line
    assert rec.kind is v.kind and rec.declared == v.declared
    assert rec.data == v.data[: 16 * (nlines - 1)]
    assert not rec.intact
    assert (v.line, DefectKind.SHORT) in [(d.line, d.kind) for d in rec.defects]
    check_others(ex, out, -1)
    check_defects_within(out, v.line, ex.recs[ex.victim + 1].line - 2)


def test_long_record(corpus_log: CorpusLog) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    extra = v.data[:2]  # two more real bytes on the record's last line
    lines = list(ex.lines)
    lines[v.last_line - 1] += extra.hex(" ").upper().encode() + b" "
    out = parse(join(lines))
    rec = victim_after(out, v.line)
    assert rec.kind is v.kind and rec.declared == v.declared
    assert rec.data == v.data + extra
    assert not rec.intact
    assert [(d.line, d.kind) for d in rec.defects] == [(v.last_line, DefectKind.LONG)]
    check_others(ex, out, 0)
    check_defects_within(out, v.line, v.last_line)


def test_record_cut_at_end_of_log(corpus_log: CorpusLog) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    lines = ex.lines[: v.line + 1]  # header and first hex line, then the log ends
    out = parse(join(lines))
    rec = victim_after(out, v.line)
    assert rec.kind is v.kind and rec.declared == v.declared
    assert rec.data == v.data[:16]
    assert not rec.intact
    assert [(d.line, d.kind) for d in rec.defects] == [(v.line, DefectKind.CUT)]
    check_defects_within(out, v.line, v.line + 1)
    for before in ex.recs[: ex.victim]:
        assert view(victim_after(out, before.line)) == view(before)


@pytest.mark.parametrize("nbytes", [1, 5, 15])
def test_record_cut_inside_a_hex_line_keeps_the_whole_bytes(corpus_log: CorpusLog, nbytes: int) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    first_hex = ex.lines[v.line]
    keep = len(ex.prefix) + 1 + 3 * nbytes  # "PREFIX" + " XX" * nbytes + " "
    lines = ex.lines[: v.line] + [first_hex[:keep]]
    out = parse(join(lines, final_newline=False))
    rec = victim_after(out, v.line)
    assert rec.data == v.data[:nbytes]
    assert not rec.intact
    assert DefectKind.CUT in [d.kind for d in rec.defects]


JUNK_LINES = {
    # real lines that libtpms prints without the swtpm prefix (failure mode)
    "libtpms-text": b"libtpms/tpm2: Entering failure mode; code: 3, location: TPM2_ContextSave line 139",
    "libtpms-lowercase-hex": b"80 01 00 00 00 0e 00 00 01 62 80 00 00 00 ",
    # TPM 1.2 trace lines, incl. an indented uppercase hex dump
    "tpm12-trace": b"     TPM_SHA1Update: length 56",
    "tpm12-hexdump": b"     01 00 01 ",
    "garbage": b"\x00\xff garbage \x07",
}


@pytest.mark.parametrize("junk", list(JUNK_LINES.values()), ids=list(JUNK_LINES))
def test_junk_line_inside_a_record(corpus_log: CorpusLog, junk: bytes) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    at = v.line + 1  # after the first hex line
    lines = ex.lines[:at] + [junk] + ex.lines[at:]
    out = parse(join(lines))
    rec = victim_after(out, v.line)
    # all bytes are there: data complete, the junk line flagged in the record
    assert rec.kind is v.kind and rec.declared == v.declared
    assert rec.data == v.data
    assert rec.last_line == v.last_line + 1
    assert [(d.line, d.kind) for d in rec.defects] == [(at + 1, DefectKind.JUNK)]
    # Record.intact: "The logged bytes are all there" (a junk line loses none)
    assert rec.intact
    check_others(ex, out, 1)
    check_defects_within(out, at + 1, at + 1)


def test_stray_hex_between_records(corpus_log: CorpusLog) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    stray = ex.lines[v.line]  # a copy of the victim's first (real) hex line
    lines = ex.lines[: v.last_line] + [stray] + ex.lines[v.last_line :]
    out = parse(join(lines))
    assert view(victim_after(out, v.line)) == view(v)
    frag = victim_after(out, v.last_line + 1)
    assert frag.data == v.data[:16]
    assert not frag.intact
    assert [(d.line, d.kind) for d in frag.defects] == [(v.last_line + 1, DefectKind.STRAY)]
    check_others(ex, out, 1)
    check_defects_within(out, v.last_line + 1, v.last_line + 1)


BAD_LENGTHS = ["2x2", "-22", "twenty", "0x16", "12.5"]


def _bad_header(ex: Excerpt, bad: str) -> list[Event]:
    v = ex.v
    lines = list(ex.lines)
    header = lines[v.line - 1]
    assert header.endswith(b"length %d" % v.declared)
    lines[v.line - 1] = header[: header.rindex(b"length ")] + b"length " + bad.encode()
    return parse(join(lines))


@pytest.mark.parametrize("bad", BAD_LENGTHS)
def test_bad_header_length(corpus_log: CorpusLog, bad: str) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    out = _bad_header(ex, bad)
    assert (v.line, DefectKind.BAD_HEADER) in [(d.line, d.kind) for d in all_defects(out)]
    # the bytes that are there are still emitted, flagged, not intact
    kept = [r for r in records(out) if v.line <= r.line <= v.last_line]
    assert [r.data for r in kept] == [v.data]
    assert kept[0].defects or any(isinstance(e, Defect) for e in out)
    assert not kept[0].intact
    check_others(ex, out, 0)
    check_defects_within(out, v.line, v.last_line)


def test_bad_header_length_keeps_the_record_kind(corpus_log: CorpusLog) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    out = _bad_header(ex, "2x2")
    kept = [r for r in records(out) if v.line <= r.line <= v.last_line]
    assert [(r.kind, r.data) for r in kept] == [(v.kind, v.data)]


def test_damage_reported_once(corpus_log: CorpusLog) -> None:
    """A defect is carried by its record or is an event of its own, never both."""
    ex = excerpt(corpus_log)
    v = ex.v
    lines = list(ex.lines)
    del lines[v.last_line - 1]  # short
    lines.insert(v.line, JUNK_LINES["garbage"])  # and junk inside it
    out = parse(join(lines))
    defects = all_defects(out)
    assert len(defects) == len(set(defects))
    kinds = [d.kind for d in defects]
    assert kinds.count(DefectKind.SHORT) == 1
    # (TPM 1.2 trace lines inside the short record are junk too: past MAX_DEFECTS, counted)
    assert set(kinds) - {DefectKind.OMITTED} == {DefectKind.SHORT, DefectKind.JUNK}
    assert (v.line + 1, DefectKind.JUNK) in [(d.line, d.kind) for d in defects]


# ------------------------------------------------------- appended logs


def test_a_log_appended_to_itself_has_twice_the_runs(corpus_log: CorpusLog) -> None:
    """swtpm appends: a VM started twice leaves the same kind of log twice in
    one file. With a prefix, each copy's [id=<epoch>] starts a run; without
    one, the second copy's CMD_INIT after TPM traffic does."""
    prefixes = [r["prefix"] for r in corpus_log.truth["runs"]]
    if prefixes[0] is not None and prefixes[0] == prefixes[-1]:
        pytest.skip("the copies join with the same prefix: the same swtpm process, one run")
    events = parse(corpus_log.data + corpus_log.data)
    starts = [e for e in events if isinstance(e, RunStart)]
    n = corpus_log.run_count
    assert [s.run for s in starts] == list(range(2 * n))
    assert [s.epoch for s in starts] == corpus_log.epochs * 2
    assert all_defects(events) == []
    tpm = [(r.run, ("command" if r.kind is Kind.TPM_COMMAND else "response"), r.data)
           for r in records(events) if r.kind.is_tpm]
    want = [(r, d, b) for _, d, r, b in corpus_log.messages("tpm")]
    assert tpm == want + [(r + n, d, b) for r, d, b in want]
    ctrl = [r for r in records(events) if not r.kind.is_tpm]
    assert len(ctrl) == 2 * corpus_log.truth["ctrl_message_count"]


# ------------------------------------------- hardening: bounded, never silent (issue 6)


def test_junk_flood_inside_a_record_is_bounded(corpus_log: CorpusLog) -> None:
    """A record that lost its last hex line, then 100,000 real libtpms lines
    before the next header: every one is junk of that record, but the record
    carries MAX_DEFECTS of them and one defect that counts the rest."""
    from swtpm_extcap.swtpmlog.parser import MAX_DEFECTS

    ex = excerpt(corpus_log)
    v = ex.v
    flood = [JUNK_LINES["libtpms-text"]] * 100_000
    lines = ex.lines[: v.last_line - 1] + flood + ex.lines[v.last_line :]
    out = parse(join(lines))
    rec = victim_after(out, v.line)
    kinds = [d.kind for d in rec.defects]
    assert kinds.count(DefectKind.JUNK) == MAX_DEFECTS
    # the flood, and the real lines between records of a TPM 1.2 log (its traces)
    following = ex.recs[ex.victim + 1].line - 1 + len(flood) - 1
    junk = [line for line in lines[v.last_line - 1 : following] if line.strip()]
    assert len(junk) >= 100_000
    omitted = [d for d in rec.defects if d.kind is DefectKind.OMITTED]
    assert len(omitted) == 1 and omitted[0].count == len(junk) - MAX_DEFECTS
    assert DefectKind.SHORT in kinds
    assert sum(d.count for d in rec.defects) == len(junk) + 1  # every junk line and the short
    assert len(rec.defects) == MAX_DEFECTS + 2
    assert rec.data == v.data[: 16 * (v.last_line - v.line - 1)]
    check_others(ex, out, len(flood) - 1)


def test_a_header_prefix_of_100_kib_names_its_run_briefly(corpus: Path) -> None:
    """The run's reason (a frame comment) shows the prefix cut, not 100 KiB of it."""
    log = named_log(corpus, "proxmox-103-swtpm.log")
    huge = b"[id=1795664634]" + b"x" * (100 << 10) + b" "
    data = log.data.replace(b"[id=1795664634] ", huge)
    events = parse(data)
    starts = [e for e in events if isinstance(e, RunStart)]
    assert starts[0].prefix == huge.decode() and len(starts[0].reason) < 120
    want = [(r.kind, r.data, r.line) for r in records(parse(log.data))]
    assert [(r.kind, r.data, r.line) for r in records(events)] == want
    assert all_defects(events) == []


@pytest.mark.parametrize("chunk", [None, 1, 4096], ids=["whole", "1", "4096"])
def test_cr_only_log_gives_the_same_events(corpus_log: CorpusLog, chunk: int | None) -> None:
    """Line ends of old Macs (a lone CR): the same records, never 0 records silently."""
    cr = corpus_log.data.replace(b"\n", b"\r")
    assert parse(cr, chunk) == parse(corpus_log.data)


def test_mixed_line_ends_give_the_same_events(corpus_log: CorpusLog) -> None:
    ends = [b"\n", b"\r\n", b"\r"]
    mixed = b"".join(line + ends[i % 3] for i, line in enumerate(corpus_log.lines))
    assert parse(mixed) == parse(corpus_log.data)
    assert parse(mixed, 7) == parse(corpus_log.data)


@pytest.mark.parametrize("chunk", [None, 1 << 16], ids=["whole", "64k"])
def test_hex_line_over_max_line_is_a_defect_of_its_record(corpus_log: CorpusLog, chunk: int | None) -> None:
    """A hex line of a record padded past MAX_LINE: its first MiB is read (the
    record's bytes and more), the cut is a long-line defect of that record."""
    from swtpm_extcap.swtpmlog.parser import MAX_LINE

    ex = excerpt(corpus_log)
    v = ex.v
    lines = list(ex.lines)
    lines[v.line] += b"AB " * (MAX_LINE // 3 + 10)  # the first hex line, over 1 MiB
    data = join(lines)
    out = parse(data, chunk)
    assert out == parse(data)
    rec = victim_after(out, v.line)
    assert rec.data.startswith(v.data[:16])
    assert (v.line + 1, DefectKind.LONG_LINE) in [(d.line, d.kind) for d in rec.defects]
    assert DefectKind.LONG in [d.kind for d in rec.defects]
    check_others(ex, out, 0)


def test_ten_megabytes_without_newline_count_as_one_line(corpus_log: CorpusLog) -> None:
    """A 10 MB line without end (fed as a file is read, 1 MiB at a time): one line,
    one long-line defect; the summary says so (it used to say '0 lines')."""
    import io

    from swtpm_extcap.pcapng.pipeline import Pipeline

    blob = (corpus_log.data.replace(b"\n", b" ") * (10_000_000 // len(corpus_log.data) + 1))[:10_000_000]
    parser = LogParser()
    events: list[Event] = []
    for i in range(0, len(blob), 1 << 20):
        events += parser.feed(blob[i : i + (1 << 20)])
    events += parser.close()
    assert parser.lines == 1
    assert [(d.line, d.kind) for d in all_defects(events)] == [(1, DefectKind.LONG_LINE)]
    pipe = Pipeline(io.BytesIO(), name="x", description="x")
    for i in range(0, len(blob), 1 << 20):
        pipe.feed(blob[i : i + (1 << 20)])
    summary = pipe.close()
    assert (summary.lines, summary.defect_count) == (1, 1)
    assert "1 line read" in summary.report("x")[0]


def test_record_longer_than_its_header_keeps_the_hex_lines_that_follow(corpus_log: CorpusLog) -> None:
    """Its last line passes the length (two bytes too many), two more real hex
    lines follow: one record with all of them, one long defect; no stray."""
    ex = excerpt(corpus_log)
    v = ex.v
    lines = list(ex.lines)
    lines[v.last_line - 1] += b"AB CD "
    extra = [ex.lines[v.line], ex.lines[v.line + 1]]  # copies of its first two hex lines
    lines[v.last_line : v.last_line] = extra
    out = parse(join(lines))
    rec = victim_after(out, v.line)
    assert rec.data == v.data + b"\xab\xcd" + v.data[:32]
    assert rec.last_line == v.last_line + 2
    assert [(d.line, d.kind) for d in rec.defects] == [(v.last_line, DefectKind.LONG)]
    assert not [r for r in records(out) if r.kind is Kind.STRAY]
    check_others(ex, out, 2)
    assert parse(join(lines), 5) == out


def test_hex_after_a_complete_record_is_stray_never_tpm(corpus_log: CorpusLog) -> None:
    """A record complete at its length is emitted at once (a live capture does
    not wait for the next line); real hex lines after it are a STRAY record."""
    ex = excerpt(corpus_log)
    v = ex.v
    extra = [ex.lines[v.line], ex.lines[v.line + 1]]
    lines = ex.lines[: v.last_line] + extra + ex.lines[v.last_line :]
    out = parse(join(lines))
    assert view(victim_after(out, v.line)) == view(v)
    stray = victim_after(out, v.last_line + 1)
    assert stray.kind is Kind.STRAY and not stray.kind.is_tpm
    assert stray.data == v.data[:32] and stray.declared is None and not stray.intact
    assert [d.kind for d in stray.defects] == [DefectKind.STRAY]
    check_others(ex, out, 2)


def test_headerless_hex_is_bounded(corpus: Path) -> None:
    """Hex lines without any header, more than MAX_RECORD bytes of them: one
    STRAY record of the first MAX_RECORD bytes, an oversize defect counts the rest."""
    from swtpm_extcap.swtpmlog.parser import MAX_RECORD

    log = named_log(corpus, "libvirt-fedora39-swtpm.log")
    hexlines = [line for line in log.lines if re.fullmatch(rb" (?:[0-9A-F]{2} )+", line)]
    size = sum(len(line) // 3 for line in hexlines)
    times = MAX_RECORD // size + 2
    out = parse(join(hexlines * times))
    recs = records(out)
    assert [r.kind for r in recs] == [Kind.STRAY]
    want = b"".join(bytes.fromhex(line.decode()) for line in hexlines) * times
    assert recs[0].data == want[:MAX_RECORD]
    defects = {d.kind: d for d in recs[0].defects}
    assert set(defects) == {DefectKind.STRAY, DefectKind.OVERSIZE}
    assert f"{len(want)} bytes" in defects[DefectKind.OVERSIZE].detail


def test_a_hex_line_that_lost_its_prefix(corpus: Path) -> None:
    """The issue's example: whole-file and line-by-line parsing agree, the
    damaged record is flagged, the next record stays intact, no run invented."""
    log = named_log(corpus, "proxmox-103-swtpm.log")
    ex = excerpt(log)
    v = ex.v
    lines = list(ex.lines)
    lines[v.line] = lines[v.line][len(ex.prefix) :]  # its first hex line, without [id=...]
    data = join(lines)
    out = parse(data)
    assert out == parse(data, 1)
    rec = victim_after(out, v.line)
    assert not rec.intact
    assert {(v.line + 1, DefectKind.JUNK), (v.line, DefectKind.SHORT)} <= {(d.line, d.kind) for d in rec.defects}
    assert not [e for e in out if isinstance(e, RunStart)][1:]
    check_others(ex, out, 0)


def test_a_run_of_stray_hex_is_pending_until_a_line_ends_it(corpus_log: CorpusLog) -> None:
    ex = excerpt(corpus_log)
    v = ex.v
    parser = LogParser()
    head = parser.feed(join(ex.lines[: v.last_line] + [ex.lines[v.line]]))  # a complete record, stray hex
    assert view(victim_after(head, v.line)) == view(v)
    assert parser.pending and not [r for r in records(head) if r.kind is Kind.STRAY]
    rest = parser.feed(join(ex.lines[v.last_line :])) + parser.close()
    assert [r.data for r in records(rest) if r.kind is Kind.STRAY] == [v.data[:16]]
    assert not parser.pending
