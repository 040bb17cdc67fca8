"""logparse properties on damaged real logs (hypothesis).

A slice of a real corpus log is damaged at random: lines cut short or split
in two, lines duplicated, characters garbled, real foreign lines (libtpms traces, failure
mode dumps, swtpm_setup output, headers and hex lines from elsewhere in the
log) interleaved, lines deleted or joined, CRLF endings on some lines, the end
of the input cut. Every line remembers which real line it came from and
whether it was changed. Then:

* the parser never raises and ends;
* every real record whose header and hex lines are still there, unchanged and
  consecutive, comes out exactly as it came out of the undamaged log (same
  kind, bytes, declared length, no defects), at its new line number; a
  record's end is fixed by its header's length, so neighbouring damage
  (a truncated record before it, stray hex after it) must not leak into it;
* records come out in log order and every line number is inside the input;
* feeding the damaged log in random chunk sizes gives the same events as
  feeding it whole.
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import corpus_log_paths, load_corpus_log
from fuzzlog import parse_reference as parse_by_lines  # the line-path reference, shared
from swtpm_extcap.swtpmlog.parser import Defect, Event, LogParser, Record, RunStart

LOG_PATHS = corpus_log_paths()

pytestmark = pytest.mark.skipif(not LOG_PATHS, reason="swtpm log corpus not found (see conftest)")

#: examples per property; raise it for a longer hunt, e.g. SWTPM_PROPS_EXAMPLES=5000
EXAMPLES = int(os.environ.get("SWTPM_PROPS_EXAMPLES", "250"))

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def parse(data: bytes) -> list[Event]:
    parser = LogParser()
    return parser.feed(data) + parser.close()


def records(events: list[Event]) -> list[Record]:
    return [e for e in events if isinstance(e, Record)]


@functools.lru_cache(maxsize=None)
def real_records(path: Path) -> list[Record]:
    return records(parse(load_corpus_log(path).data))


@functools.lru_cache(maxsize=None)
def foreign_pool() -> list[bytes]:
    """Real lines that are not records (from every corpus log), a few of each
    sort, plus the synthetic noise the parser documents it skips."""
    pool: set[bytes] = set()
    for path in LOG_PATHS:
        log = load_corpus_log(path)
        covered = {n for r in real_records(path) for n in range(r.line, r.last_line + 1)}
        other = [line for n, line in enumerate(log.lines, 1) if n not in covered]
        pool.update(other[:: max(1, len(other) // 40)])
    pool.update(
        [
            b"",
            b"   ",
            b"IsEnEnabled(TPM_ALG_SHA256): 1",
            b"Tested: 0x000B",
            b" Tested: 01 02",
            b"\x00\xff\xfe garbage",
            b" SWTPM_IO_Read: length 12",
            b" SWTPM_IO_Write: length 4096",
            b" Ctrl Cmd: null",
            b"[id=1700000000]  SWTPM_IO_Read: length 10",
            b" 80 01 00 00 00 0C ",
        ]
    )
    return sorted(pool)


@dataclass(frozen=True)
class Line:
    text: bytes
    orig: int | None  # 0-based index of the real line it is, None: not a real line here
    touched: bool  # its text differs from the real line (or might)


GARBLE = b"0123456789ABCDEFabcdef :[]=-\t\rxZ\x00\xff"

pos = st.integers(min_value=0, max_value=10**6)
op = st.one_of(
    st.tuples(st.just("cut"), pos, pos),
    st.tuples(st.just("dup"), pos),
    st.tuples(
        st.just("garble"), pos, st.lists(st.tuples(pos, st.sampled_from(list(GARBLE))), min_size=1, max_size=4)
    ),
    st.tuples(st.just("foreign"), pos, pos),
    st.tuples(st.just("elsewhere"), pos, pos),
    st.tuples(st.just("delete"), pos),
    st.tuples(st.just("join"), pos),
    st.tuples(st.just("crlf"), pos),
    st.tuples(st.just("split"), pos, pos),
)


@dataclass
class Damaged:
    path: Path
    lines: list[Line]
    final_newline: bool
    ops: list[tuple[object, ...]]

    @property
    def data(self) -> bytes:
        body = b"\n".join(line.text for line in self.lines)
        return body + b"\n" if self.final_newline and self.lines else body

    def __repr__(self) -> str:  # shown by hypothesis on failure
        return f"Damaged({self.path.name}, ops={self.ops}, final_newline={self.final_newline},\n{self.data!r})"


@st.composite
def damaged_logs(draw: st.DrawFn) -> Damaged:
    path = draw(st.sampled_from(LOG_PATHS))
    real = load_corpus_log(path).lines
    size = draw(st.integers(min_value=1, max_value=300))
    start = draw(st.integers(min_value=0, max_value=max(0, len(real) - size)))
    lines = [Line(real[i], i, False) for i in range(start, min(len(real), start + size))]
    ops = draw(st.lists(op, max_size=10))
    pool = foreign_pool()
    for o in ops:
        if not lines:
            break
        p = int(o[1]) % len(lines)  # type: ignore[call-overload]
        line = lines[p]
        kind = o[0]
        if kind == "cut":
            cut = int(o[2]) % (len(line.text) + 1)  # type: ignore[call-overload]
            lines[p] = Line(line.text[:cut], line.orig, True)
        elif kind == "dup":
            lines.insert(p, line)
        elif kind == "garble":
            text = bytearray(line.text)
            for at, byte in o[2]:  # type: ignore[attr-defined]
                if text:
                    text[at % len(text)] = byte
            lines[p] = Line(bytes(text), line.orig, True)
        elif kind == "foreign":
            lines.insert(p, Line(pool[int(o[2]) % len(pool)], None, True))  # type: ignore[call-overload]
        elif kind == "elsewhere":
            lines.insert(p, Line(real[int(o[2]) % len(real)], None, True))  # type: ignore[call-overload]
        elif kind == "delete":
            del lines[p]
        elif kind == "join" and p + 1 < len(lines):
            lines[p : p + 2] = [Line(line.text + lines[p + 1].text, None, True)]
        elif kind == "split":
            at = int(o[2]) % (len(line.text) + 1)  # type: ignore[call-overload]
            lines[p : p + 1] = [Line(line.text[:at], None, True), Line(line.text[at:], None, True)]
        elif kind == "crlf" and not line.text.endswith(b"\r"):
            # a CRLF ending is still the same line
            lines[p] = Line(line.text + b"\r", line.orig, line.touched)
    final_newline = True
    if lines and draw(st.booleans()):
        # the input ends inside (or right at the end of) its last line
        last = lines[-1]
        cut = draw(st.integers(min_value=0, max_value=len(last.text)))
        lines[-1] = Line(last.text[:cut], last.orig, last.touched or cut < len(last.text))
        final_newline = False
    return Damaged(path, lines, final_newline, ops)


def line_numbers(d: Damaged) -> list[int]:
    """The 1-based line number each line of ``d`` starts at: a CR inside a line
    (garbled in) is a line end of its own (the parser takes LF, CRLF and CR)."""
    out = []
    n = 1
    for line in d.lines:
        out.append(n)
        body = line.text[:-1] if line.text.endswith(b"\r") else line.text
        n += 1 + body.count(b"\r")
    return out


def count_lines(data: bytes) -> int:
    """Lines of ``data`` as the parser counts them (LF, CRLF, CR end a line)."""
    norm = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return norm.count(b"\n") + (not norm.endswith(b"\n") and bool(norm))


def untouched_records(d: Damaged) -> list[tuple[Record, int]]:
    """Real records whose header and hex lines are all still there, unchanged
    and consecutive; with the 1-based line their header now has."""
    numbers = line_numbers(d)
    where: dict[int, list[int]] = defaultdict(list)
    for i, line in enumerate(d.lines):
        if line.orig is not None and not line.touched:
            where[line.orig].append(i)
    out = []
    for rec in real_records(d.path):
        head = rec.line - 1
        span = rec.last_line - rec.line
        for i in where.get(head, []):
            if i + span < len(d.lines) and all(
                d.lines[i + j].orig == head + j and not d.lines[i + j].touched for j in range(span + 1)
            ):
                out.append((rec, numbers[i]))
    return out


@SETTINGS
@given(damaged_logs())
def test_untouched_records_come_out_unchanged(d: Damaged) -> None:
    events = parse(d.data)
    got = {r.line: r for r in records(events)}
    for rec, line in untouched_records(d):
        assert line in got, f"real record of log line {rec.line} (now line {line}) lost"
        new = got[line]
        assert (new.kind, new.data, new.declared, tuple(new.defects)) == (
            rec.kind,
            rec.data,
            rec.declared,
            (),
        ), f"real record of log line {rec.line} (now line {line}) changed"
        assert new.last_line == line + rec.last_line - rec.line
        assert new.intact


@SETTINGS
@given(damaged_logs())
def test_events_are_in_order_and_inside_the_input(d: Damaged) -> None:
    parser = LogParser()
    data = d.data
    events = parser.feed(data) + parser.close()
    nlines = count_lines(data)
    assert parser.lines == nlines
    lines = [r.line for r in records(events)]
    assert lines == sorted(set(lines)), "records out of log order"
    run = -1
    for e in events:
        if isinstance(e, RunStart):
            assert e.run == run + 1
            run = e.run
            assert 1 <= e.line <= nlines
        elif isinstance(e, Record):
            assert e.run == run
            assert 1 <= e.line <= e.last_line <= nlines
            assert all(1 <= x.line <= nlines for x in e.defects)
            if e.intact:
                assert len(e.data) == e.declared
        else:
            assert isinstance(e, Defect)
            assert 1 <= e.line <= nlines


@SETTINGS
@given(damaged_logs(), st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=30))
def test_chunking_does_not_matter(d: Damaged, sizes: list[int]) -> None:
    data = d.data
    parser = LogParser()
    events: list[Event] = []
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        events += parser.feed(data[i : i + n])
        i += n
        k += 1
    events += parser.close()
    assert events == parse(data)


@SETTINGS
@given(st.sampled_from(LOG_PATHS or [Path("/nonexistent")]), st.lists(st.integers(1, 70000), min_size=1, max_size=8))
def test_chunking_of_whole_real_logs(path: Path, sizes: list[int]) -> None:
    data = load_corpus_log(path).data
    parser = LogParser()
    events: list[Event] = []
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        events += parser.feed(data[i : i + n])
        i += n
        k += 1
    assert events + parser.close() == parse(data)


def test_pool_has_real_foreign_lines() -> None:
    """The interleaved lines include real non-record lines of each kind."""
    pool = foreign_pool()
    assert any(line.startswith(b"libtpms/") for line in pool) or not any(
        "failuremode" in p.name for p in LOG_PATHS
    )
    assert any(re.match(rb" {4,}TPM_", line) for line in pool) or not any(
        "tpm12" in p.name for p in LOG_PATHS
    )


# ------------------------------------- the fast path takes exactly what the line path takes


@st.composite
def reshuffled_records(draw: st.DrawFn) -> bytes:
    """A real multi-line record whose hex block keeps its length and its hex
    digits but has whitespace moved about: spaces swapped with digits, a newline
    swapped with a neighbour, a space turned into a tab. These are the blocks a
    size-and-fromhex check alone would take although the line parser flags them."""
    path = draw(st.sampled_from(LOG_PATHS))
    recs = [r for r in real_records(path) if r.last_line - r.line >= 2]
    rec = draw(st.sampled_from(recs))
    lines = load_corpus_log(path).lines
    first, last = rec.line - 1, rec.last_line  # 0-based: header .. last hex line
    hexlines = list(lines[first + 1 : last])
    prefix = re.match(rb"^(.*?) ", hexlines[0]).group(1) + b" " if hexlines[0][:1] != b" " else b""
    block = bytearray(b"\n".join(h[len(prefix):] for h in hexlines) + b"\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(block) - 2))
        how = draw(st.sampled_from(["swap", "tab"]))
        if how == "swap":
            block[i], block[i + 1] = block[i + 1], block[i]
        elif block[i : i + 1] == b" ":
            block[i : i + 1] = b"\t"
    body = [prefix + part for part in bytes(block).split(b"\n")[:-1]]
    context = list(lines[max(0, first - 4) : first + 1]) + body + list(lines[last : last + 4])
    return b"\n".join(context) + b"\n"


@SETTINGS
@given(reshuffled_records())
def test_fast_path_equals_line_path(data: bytes) -> None:
    assert parse(data) == parse_by_lines(data)
