"""Mutated real swtpm logs and the checks every one of them must pass (issue 6).

Shared by ``tests/test_fuzz.py`` (a short run in the suite) and
``bench/fuzz.py`` (the long run). A case is a window of a real corpus log
(sometimes the whole log) with one to five mutations, chosen by a seeded
``random.Random``: the same seed gives the same case.

The checks (:func:`check`): parsing never raises; the events are the same
whether the bytes come whole, line by line (``feed`` per line, as a live
follow delivers them), through ``feed_lines`` (the line-by-line reference),
or in random chunks; the pcapng is well formed block by block, every comment
fits (never cut), and no frame on the TPM port carries anything but a TPM
record; the ``pcrs`` reports (text, JSON, ``--diff``) never raise. tshark
reads a sample back (in ``test_fuzz.py`` / ``bench/fuzz.py``).

Issue 16 added the mutators that found its cases: lying sizes under PCR
commands, PCR commands logged as several reads, runs of junk.
"""

from __future__ import annotations

import io
import json
import random
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swtpm_extcap.swtpmlog.parser import Event, LogParser, RunStart
from swtpm_extcap.pcapng.pipeline import Pipeline

_HEADER = re.compile(rb"^(.*?) (SWTPM_IO_Read|SWTPM_IO_Write|Ctrl Cmd|Ctrl Rsp Continued|Ctrl Rsp): length (\S+)$")
_HEXLINE = re.compile(rb"^(.*?) ((?:[0-9A-F]{2} )+)$")


class _Short:
    """A line regex tried only on lines of swtpm's size: the lazy prefix before a
    hex run backtracks quadratically on a giant line (the mutators make those)."""

    def __init__(self, rx: re.Pattern[bytes]) -> None:
        self.rx = rx

    def match(self, line: bytes) -> re.Match[bytes] | None:
        return self.rx.match(line) if len(line) <= 4096 else None


HEADER = _Short(_HEADER)
HEXLINE = _Short(_HEXLINE)

Lines = list[bytes]
LineMutator = Callable[[random.Random, Lines], Lines]


def _headers(lines: Lines) -> list[int]:
    return [i for i, line in enumerate(lines) if HEADER.match(line)]


def _hexlines(lines: Lines) -> list[int]:
    return [i for i, line in enumerate(lines) if HEXLINE.match(line) and not HEADER.match(line)]


def _hex_after(lines: Lines, i: int) -> int:
    """Index after the hex lines that follow line ``i``."""
    j = i + 1
    while j < len(lines) and HEXLINE.match(lines[j]) and not HEADER.match(lines[j]):
        j += 1
    return j


def _pick(rng: random.Random, items: Sequence[int]) -> int | None:
    return rng.choice(items) if items else None


# ------------------------------------------------------------------ line mutators


def delete_lines(rng: random.Random, lines: Lines) -> Lines:
    if lines:
        i = rng.randrange(len(lines))
        del lines[i : i + rng.randint(1, 3)]
    return lines


def duplicate_lines(rng: random.Random, lines: Lines) -> Lines:
    if lines:
        i = rng.randrange(len(lines))
        lines[i:i] = lines[i : i + rng.randint(1, 4)]
    return lines


def shuffle_lines(rng: random.Random, lines: Lines) -> Lines:
    if lines:
        i = rng.randrange(len(lines))
        window = lines[i : i + rng.randint(2, 8)]
        rng.shuffle(window)
        lines[i : i + len(window)] = window
    return lines


BAD_LENGTHS: list[Callable[[random.Random], bytes]] = [
    lambda r: b"99999999999999999999",  # giant
    lambda r: str(r.randrange(2**31, 2**63)).encode(),  # giant
    lambda r: b"999999999",  # the largest the fast path's header reads
    lambda r: str(r.randint(1 << 20, (1 << 20) + 100)).encode(),  # just above MAX_RECORD
    lambda r: b"-" + str(r.randint(1, 5000)).encode(),  # negative
    lambda r: b"0x%X" % r.randint(1, 5000),  # hex
    lambda r: b"%X" % r.randint(10, 255),  # hex without 0x (may read as a decimal)
    lambda r: b"9" * 5000,  # 5,000 digits (past Python's int() digit limit)
    lambda r: b"1" + b"0" * 4999,
    lambda r: str(r.randint(0, 64)).encode(),  # a wrong but small length
    lambda r: b"",
    lambda r: b"12 34",
]


def bad_length(rng: random.Random, lines: Lines) -> Lines:
    i = _pick(rng, _headers(lines))
    if i is not None:
        m = HEADER.match(lines[i])
        assert m is not None
        lines[i] = lines[i][: m.start(3)] + rng.choice(BAD_LENGTHS)(rng)
    return lines


def header_without_hex(rng: random.Random, lines: Lines) -> Lines:
    i = _pick(rng, _headers(lines))
    if i is not None:
        del lines[i + 1 : _hex_after(lines, i)]
    return lines


def hex_without_header(rng: random.Random, lines: Lines) -> Lines:
    i = _pick(rng, _headers(lines))
    if i is not None:
        del lines[i]
    return lines


def _random_prefix(rng: random.Random) -> bytes:
    size = rng.choice([0, 0, 1, 2, 5, 16, 17, 40, 100, 300, rng.randint(0, 300)])
    alphabet = rng.choice(
        [b"0123456789ABCDEF ", b"[id=0123456789] ", bytes(range(32, 127)), bytes(range(256))]
    )
    text = bytes(rng.choice(alphabet) for _ in range(size))
    return text.replace(b"\n", b"_").replace(b"\r", b"_")


def change_prefix(rng: random.Random, lines: Lines) -> Lines:
    """A prefix of 0-300 characters on one line, a run of lines, or all of them."""
    if not lines:
        return lines
    new = _random_prefix(rng)
    how = rng.choice(["one", "run", "all"])
    i = rng.randrange(len(lines))
    span = {"one": range(i, i + 1), "run": range(i, min(len(lines), i + rng.randint(2, 40))),
            "all": range(len(lines))}[how]
    for k in span:
        m = HEADER.match(lines[k]) or HEXLINE.match(lines[k])
        if m is not None:
            lines[k] = new + lines[k][len(m.group(1)) :]
    return lines


def lost_prefix(rng: random.Random, lines: Lines) -> Lines:
    """A hex line that lost its ``[id=]`` prefix (or, without one, its leading space)."""
    i = _pick(rng, _hexlines(lines))
    if i is not None:
        m = HEXLINE.match(lines[i])
        assert m is not None
        lines[i] = lines[i][len(m.group(1)) :] if m.group(1) else lines[i][1:]
    return lines


def long_record(rng: random.Random, lines: Lines) -> Lines:
    """A record with more hex than its header says: extra lines or bytes after it."""
    i = _pick(rng, _headers(lines))
    if i is not None:
        end = _hex_after(lines, i)
        if end > i + 1:
            extra = [lines[rng.randrange(i + 1, end)] for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.5:
                lines[end - 1] = lines[end - 1] + b"AB CD "
            lines[end:end] = extra
    return lines


def split_record(rng: random.Random, lines: Lines) -> Lines:
    """One message logged as two reads (what swtpm logs when read() got part of it)."""
    i = _pick(rng, _headers(lines))
    if i is None:
        return lines
    m = HEADER.match(lines[i])
    end = _hex_after(lines, i)
    assert m is not None
    prefix = m.group(1)
    try:
        data = b"".join(bytes.fromhex(lines[k][len(prefix) :].decode("latin-1")) for k in range(i + 1, end))
    except ValueError:
        return lines
    if len(data) < 2:
        return lines
    cut = rng.randint(1, len(data) - 1)

    def record(part: bytes) -> Lines:
        head = lines[i][: m.start(3)] + str(len(part)).encode()
        body = [prefix + b" " + part[k : k + 16].hex(" ").upper().encode() + b" "
                for k in range(0, len(part), 16)]
        return [head, *body]

    lines[i:end] = record(data[:cut]) + record(data[cut:])
    return lines


def _record_at(lines: Lines, i: int) -> tuple[re.Match[bytes], int, bytes] | None:
    """The header match, end index and bytes of the record whose header is line ``i``."""
    m = HEADER.match(lines[i])
    if m is None:
        return None
    end = _hex_after(lines, i)
    try:
        data = b"".join(bytes.fromhex(lines[k][len(m.group(1)) :].decode("latin-1")) for k in range(i + 1, end))
    except ValueError:
        return None
    return m, end, data


def _render(m: re.Match[bytes], data: bytes) -> Lines:
    """A record as swtpm logs it, with the prefix and label of header ``m``."""
    prefix = m.group(1)
    head = m.string[: m.start(3)] + str(len(data)).encode()
    return [head] + [prefix + b" " + data[k : k + 16].hex(" ").upper().encode() + b" "
                     for k in range(0, len(data), 16)]


#: TPM 2.0 command codes that change or read PCRs (or the allocation), as logged
PCR_CODES = {code.to_bytes(4, "big") for code in (0x144, 0x182, 0x13C, 0x13D, 0x185, 0x17E, 0x12B, 0x17A)}


def _pcr_commands(lines: Lines) -> list[int]:
    """Header lines of TPM commands that change or read PCRs (else any TPM command)."""
    commands = [i for i in _headers(lines) if b"SWTPM_IO_Read" in lines[i]]
    pcr = []
    for i in commands:
        rec = _record_at(lines, i)
        if rec is not None and rec[2][6:10] in PCR_CODES:
            pcr.append(i)
    return pcr or commands


LYING_SIZES: list[Callable[[random.Random, int], int]] = [
    lambda r, n: 0xFFFFFFF0,  # far beyond any TPM message (issue 16: quadratic replay)
    lambda r, n: 0xFFFFFFFF,
    lambda r, n: 0x10001,  # just beyond the largest TPM message
    lambda r, n: 4096,
    lambda r, n: n + r.randint(1, 64),  # a little more than logged: the rest never comes
    lambda r, n: max(0, n - r.randint(1, 8)),  # less than logged
    lambda r, n: 0,
    lambda r, n: r.randint(0, 9),
]


def lying_size(rng: random.Random, lines: Lines) -> Lines:
    """A TPM command (one that changes or reads PCRs, where there is one) whose
    header's size field lies about the bytes logged."""
    i = _pick(rng, _pcr_commands(lines))
    rec = _record_at(lines, i) if i is not None else None
    if i is None or rec is None or len(rec[2]) < 6:
        return lines
    m, end, data = rec
    size = rng.choice(LYING_SIZES)(rng, len(data)) & 0xFFFFFFFF
    lines[i:end] = _render(m, data[:2] + size.to_bytes(4, "big") + data[6:])
    return lines


def split_extend(rng: random.Random, lines: Lines) -> Lines:
    """A PCR command logged as two or three reads, the first often under 10 bytes."""
    i = _pick(rng, _pcr_commands(lines))
    rec = _record_at(lines, i) if i is not None else None
    if i is None or rec is None or len(rec[2]) < 3:
        return lines
    m, end, data = rec
    first = rng.choice([rng.randint(1, min(9, len(data) - 1)), rng.randint(1, len(data) - 1)])
    cuts = sorted({first, *([rng.randint(first, len(data) - 1)] if rng.random() < 0.3 else [])})
    bounds = [0, *cuts, len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    lines[i:end] = [line for piece in pieces for line in _render(m, piece)]
    return lines


def junk_run(rng: random.Random, lines: Lines) -> Lines:
    """A run of junk: hex lines outside any record alternating with lines that are
    nothing (issue 16's ``' AB \nx\n'``), 2 to 2,000 lines."""
    if not lines:
        return lines
    ref = lines[rng.randrange(len(lines))]
    m = HEADER.match(ref) or HEXLINE.match(ref)
    prefix = m.group(1) if m is not None else b""
    hexline = prefix + rng.choice([b" AB ", b" 00 11 ", b" " + bytes(range(16)).hex(" ").upper().encode() + b" "])
    other = rng.choice([b"x", b"", b"libtpms/tpm2: junk", b"     TPM_Process: trace 12 34"])
    run = [hexline if k % 2 == 0 else other for k in range(rng.randint(2, 2000))]
    at = rng.randint(0, len(lines))
    lines[at:at] = run
    return lines


def garbage_line(rng: random.Random, lines: Lines) -> Lines:
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))).replace(b"\n", b"")
    lines.insert(rng.randint(0, len(lines)), junk)
    return lines


def giant_line(rng: random.Random, lines: Lines) -> Lines:
    """A line past MAX_LINE (1 MiB): hex, hex under a record, or junk."""
    kind = rng.choice([b" AB", b" 00", b"x"])
    line = kind * ((1 << 20) // len(kind) + rng.randint(1, 50))
    lines.insert(rng.randint(0, len(lines)), line)
    return lines


LINE_MUTATORS: dict[str, tuple[LineMutator, float]] = {
    "delete-lines": (delete_lines, 1.0),
    "duplicate-lines": (duplicate_lines, 1.0),
    "shuffle-lines": (shuffle_lines, 1.0),
    "bad-length": (bad_length, 1.5),
    "header-without-hex": (header_without_hex, 1.0),
    "hex-without-header": (hex_without_header, 1.0),
    "prefix": (change_prefix, 1.0),
    "lost-prefix": (lost_prefix, 1.5),
    "long-record": (long_record, 1.0),
    "split-record": (split_record, 1.0),
    "lying-size": (lying_size, 1.0),
    "split-extend": (split_extend, 1.0),
    "junk-run": (junk_run, 0.5),
    "garbage-line": (garbage_line, 0.5),
    "giant-line": (giant_line, 0.02),
}

# ------------------------------------------------------------------ byte mutators

ByteMutator = Callable[[random.Random, bytes], bytes]


def _insert(rng: random.Random, data: bytes, what: bytes, times: int) -> bytes:
    buf = bytearray(data)
    for _ in range(times):
        at = rng.randint(0, len(buf))
        buf[at:at] = what
    return bytes(buf)


def byte_flips(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def nul_bytes(rng: random.Random, data: bytes) -> bytes:
    return _insert(rng, data, b"\0" * rng.randint(1, 4), rng.randint(1, 4))


def invalid_utf8(rng: random.Random, data: bytes) -> bytes:
    return _insert(rng, data, rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xfe\xff"]),
                   rng.randint(1, 4))


def lone_cr(rng: random.Random, data: bytes) -> bytes:
    return _insert(rng, data, b"\r", rng.randint(1, 4))


def cut_end(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randint(0, len(data))]


BYTE_MUTATORS: dict[str, tuple[ByteMutator, float]] = {
    "byte-flips": (byte_flips, 1.5),
    "nul": (nul_bytes, 1.0),
    "invalid-utf8": (invalid_utf8, 1.0),
    "cr": (lone_cr, 1.0),
    "cut-end": (cut_end, 0.5),
}

ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


@dataclass(frozen=True)
class Case:
    seed: int
    log: str
    window: tuple[int, int]
    mutations: tuple[str, ...]
    data: bytes

    def __repr__(self) -> str:
        return (f"Case(seed={self.seed}, log={self.log}, lines {self.window[0]}-{self.window[1]},"
                f" mutations={list(self.mutations)}, {len(self.data)} bytes)")


def make_case(seed: int, logs: Sequence[tuple[str, Lines]]) -> Case:
    """A mutated window of one of ``logs`` ((name, lines)), a pure function of ``seed``."""
    rng = random.Random(seed)
    name, real = rng.choice(logs)
    if rng.random() < 0.03:
        first, last = 0, len(real)
    else:
        size = rng.randint(1, 300)
        first = rng.randint(0, max(0, len(real) - size))
        last = min(len(real), first + size)
    lines = list(real[first:last])
    done: list[str] = []
    names = list(LINE_MUTATORS)
    weights = [LINE_MUTATORS[n][1] for n in names]
    for mutation in rng.choices(names, weights, k=rng.randint(0, 4)):
        lines = LINE_MUTATORS[mutation][0](rng, lines)
        done.append(mutation)
    ending = rng.choices(["lf", "crlf", "cr", "mixed"], [6, 1, 1, 1])[0]
    done.append(f"{ending}-endings")
    if ending == "mixed":
        data = b"".join(line + rng.choice(list(ENDINGS.values())) for line in lines)
    else:
        data = b"".join(line + ENDINGS[ending] for line in lines)
    bnames = list(BYTE_MUTATORS)
    bweights = [BYTE_MUTATORS[n][1] for n in bnames]
    for mutation in rng.choices(bnames, bweights, k=rng.choices([0, 1, 2], [3, 2, 1])[0]):
        data = BYTE_MUTATORS[mutation][0](rng, data)
        done.append(mutation)
    return Case(seed, name, (first + 1, last), tuple(done), data)


# ------------------------------------------------------------------ the checks


def parse_whole(data: bytes) -> list[Event]:
    parser = LogParser()
    return parser.feed(data) + parser.close()


def parse_line_by_line(data: bytes) -> list[Event]:
    """``feed`` one line at a time, as a live follow of the log delivers it."""
    parser = LogParser()
    events: list[Event] = []
    for line in data.splitlines(keepends=True):  # bytes.splitlines: LF, CR, CRLF only
        events += parser.feed(line)
    return events + parser.close()


def split_lines(data: bytes) -> list[str]:
    """``data``'s lines as the parser cuts them (at LF, CRLF or CR), without their ends."""
    norm = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").decode("latin-1")
    lines = norm.split("\n")
    if norm.endswith("\n"):
        lines.pop()
    return lines if norm else []


def parse_reference(data: bytes) -> list[Event]:
    """Every line through the line-by-line state machine (no fast path)."""
    parser = LogParser()
    return parser.feed_lines(split_lines(data)) + parser.close()


def parse_chunks(data: bytes, rng: random.Random) -> list[Event]:
    parser = LogParser()
    events: list[Event] = []
    i = 0
    while i < len(data):
        n = rng.choice([1, 2, 3, 7, 16, 50, 64, 200, 1000, 4096, 65536, rng.randint(1, 5000)])
        events += parser.feed(data[i : i + n])
        i += n
    return events + parser.close()


class Mismatch(AssertionError):
    """Two ways of feeding the same bytes gave different events."""


def convert(data: bytes) -> bytes:
    out = io.BytesIO()
    pipe = Pipeline(out, name="swtpm:fuzz", description="swtpm log fuzz", start_us=1_700_000_000_000_000)
    pipe.feed(data)
    pipe.close()
    return out.getvalue()


def check(case: Case) -> bytes:
    """All checks on one case; returns its pcapng. Raises on any failure
    (:class:`Mismatch` for a chunking difference)."""
    data = case.data
    whole = parse_whole(data)
    for how, events in (
        ("line by line", parse_line_by_line(data)),
        ("feed_lines", parse_reference(data)),
        ("random chunks", parse_chunks(data, random.Random(case.seed))),
    ):
        if events != whole:
            first = next((i for i, (a, b) in enumerate(zip(events, whole)) if a != b), min(len(events), len(whole)))
            raise Mismatch(f"{case}: {how} differs from whole at event {first}:"
                           f" {events[first:first + 1]} vs {whole[first:first + 1]}")
    pcap = convert(data)
    check_pcapng(pcap)
    check_encoder(data, random.Random(case.seed), case)
    check_pcrs(data, sum(1 for e in whole if type(e) is RunStart))
    return pcap


def check_encoder(data: bytes, rng: random.Random, case: object = None) -> None:
    """The framer's fast path (``encode_events``, frames straight to pcapng
    blocks) gives the bytes of its reference (``frame_events``, then
    ``encode_packets``), PCR notes included, fed in random chunks, with line
    comments on and off, the control channel on and off, the log's clock and
    a live one."""
    from swtpm_extcap.pcapng.notes import AnnotatingFramer, ReplayingParser
    from swtpm_extcap.pcapng.writer import encode_packets

    for plain, ctrl, now in ((True, True, None), (False, False, None), (True, True, 1_750_000_000_000_000)):
        fast_parser, slow_parser = ReplayingParser(), ReplayingParser()
        fast = AnnotatingFramer(fast_parser, start_us=1_700_000_000_000_000, ctrl=ctrl, line_comments=plain)
        slow = AnnotatingFramer(slow_parser, start_us=1_700_000_000_000_000, ctrl=ctrl, line_comments=plain)
        got, want = bytearray(), bytearray()
        i = 0
        while True:
            n = rng.choice([1, 7, 64, 500, 4096, 65536, len(data) + 1])
            last = i >= len(data)
            chunk = data[i : i + n]
            i += n
            blocks, _ = fast.encode_events(fast_parser.close() if last else fast_parser.feed(chunk), now)
            got += blocks
            want += encode_packets(
                slow.frame_events(slow_parser.close() if last else slow_parser.feed(chunk), now)
            )
            if last:
                break
        got += encode_packets(fast.close(now))
        want += encode_packets(slow.close(now))
        if got != want:
            at = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise Mismatch(f"{case}: encode_events differs from frame_events at byte {at}"
                           f" (line comments {plain}, ctrl {ctrl}, now {now})")


def check_pcrs(data: bytes, runs: int) -> None:
    """The ``pcrs`` reports (text, JSON, ``--diff`` of the first two runs) of the
    log never raise; the JSON is valid."""
    from swtpm_extcap.pcr.diff import write_diff
    from swtpm_extcap.pcr.report import write_json, write_text

    write_text(iter([data]), io.StringIO())
    out = io.StringIO()
    write_json(iter([data]), out, "fuzz")
    json.loads(out.getvalue())
    if runs >= 2:
        write_diff(iter([data]), io.StringIO(), ("1", "2"), "fuzz", False)


def check_pcapng(pcap: bytes) -> int:
    """Walk the blocks (lengths, options, packet sizes); returns the packet count.
    Every comment fits without the writer's cut, and a frame on the TPM port
    (2321) carries a TPM record's bytes (its comment names an SWTPM_IO record)."""
    pos = 0
    packets = 0
    while pos < len(pcap):
        btype, total = struct.unpack_from("<II", pcap, pos)
        assert total % 4 == 0 and total >= 12 and pos + total <= len(pcap), f"bad block at {pos}"
        assert struct.unpack_from("<I", pcap, pos + total - 4)[0] == total, f"block end at {pos}"
        if btype == 6:
            _, _, _, caplen, origlen = struct.unpack_from("<IIIII", pcap, pos + 8)
            assert caplen == origlen and 28 + caplen <= total
            packet = pcap[pos + 28 : pos + 28 + caplen]
            opt = pos + 28 + caplen + (-caplen & 3)
            comment = b""
            while opt < pos + total - 4:
                code, size = struct.unpack_from("<HH", pcap, opt)
                if code == 0:
                    break
                if code == 1:
                    comment = pcap[opt + 4 : opt + 4 + size]
                opt += 4 + size + (-size & 3)
            assert b"[comment cut" not in comment, "a comment reached pcapng's limit"
            text = comment.decode()  # valid UTF-8
            sport, dport = struct.unpack_from("!HH", packet, 34)
            payload = packet[54:]
            if payload and 2321 in (sport, dport):
                head = text.split("\n", 1)[0]
                assert re.match(r"swtpm log line \d+: SWTPM_IO_(Read|Write)[ ,]", head), (
                    f"a frame on the TPM port that is not a TPM record: {head!r}"
                )
            packets += 1
        elif btype not in (0x0A0D0D0A, 1):
            raise AssertionError(f"unexpected block type {btype:#x}")
        pos += total
    return packets
