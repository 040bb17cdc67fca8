"""frames: real logs -> Ethernet/IPv4/TCP frames, read back by tshark and scapy.

Round trip log -> pcapng -> tshark for every corpus log: what Wireshark sees
on port 2321 must be, byte for byte and in order, what the client sent and
got (the corpus truth); the TCP it sees must be clean (valid checksums, no
sequence analysis warnings, one stream per run with handshake and close).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Callable

import pytest

from conftest import (
    CTRL_PORT,
    START_US,
    TPM_PORT,
    CorpusLog,
    TsharkFrame,
    cached_frames,
    corpus_log_paths,
    load_corpus_log,
    frame_numbers,
    read_frames,
    require_tshark,
    tpm_payloads,
    write_pcapng,
)
from swtpm_extcap.pcapng.frames import Framer
from swtpm_extcap.swtpmlog.parser import Defect, DefectKind, LogParser, Record

SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10  # RFC 793 flag bits

Convert = Callable[..., Path]

@pytest.fixture
def frames(corpus_log: CorpusLog, converted: Convert) -> list[TsharkFrame]:
    require_tshark()
    return cached_frames(converted(corpus_log))


def streams(frames: list[TsharkFrame], port: int) -> list[list[TsharkFrame]]:
    """The TCP streams to ``port``, in the order they start."""
    by: dict[int, list[TsharkFrame]] = defaultdict(list)
    for f in frames:
        if f.port == port:
            by[f.stream].append(f)
    return sorted(by.values(), key=lambda s: s[0].number)


# ------------------------------------------------------------- payloads


def test_tpm_payloads_equal_truth(corpus_log: CorpusLog, frames: list[TsharkFrame]) -> None:
    got = tpm_payloads(frames)
    want = corpus_log.tpm_messages()
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"TPM message {i}: Wireshark sees {g[0]} {g[1][:16].hex()}.., truth {w[0]} {w[1][:16].hex()}.."


def test_each_run_is_one_tpm_stream_with_its_own_messages(
    corpus_log: CorpusLog, frames: list[TsharkFrame]
) -> None:
    tpm = streams(frames, TPM_PORT)
    assert len(tpm) == corpus_log.run_count
    for run, stream in enumerate(tpm):
        want = [(d, b) for _, d, r, b in corpus_log.messages("tpm") if r == run]
        assert tpm_payloads(stream) == want, f"run {run}"
        assert len({(f.src, f.dst) for f in stream}) == 1
    assert len({s[0].sport for s in tpm}) == len(tpm), "runs share a client port"


def test_ctrl_messages_on_their_own_port(corpus_log: CorpusLog, frames: list[TsharkFrame]) -> None:
    got = [
        ("command" if f.to_server else "response", f.payload)
        for f in frames
        if f.port == CTRL_PORT and f.payload
    ]
    want = [(d, b) for _, d, _, b in corpus_log.messages("ctrl")]
    assert len(got) == corpus_log.truth["ctrl_message_count"]
    assert got == want
    ctrl_runs = {e["run"] for e in corpus_log.truth["events"] if e["channel"] == "ctrl"}
    assert len(streams(frames, CTRL_PORT)) == len(ctrl_runs)


def test_no_tpm_frame_carries_a_control_message(
    corpus_log: CorpusLog, frames: list[TsharkFrame], converted: Convert
) -> None:
    pcap = converted(corpus_log)
    tpm_data = [f.number for f in frames if f.payload and f.port == TPM_PORT]
    assert frame_numbers(pcap, "tpm") == tpm_data
    assert {f.port for f in frames} == {TPM_PORT, CTRL_PORT}
    for f in frames:
        if f.port == CTRL_PORT:
            assert "tpm" not in f.protocols.split(":"), f"frame {f.number}: {f.protocols}"
            assert f.tpm_cc is None and f.tpm_rc is None
    ctrl = {bytes.fromhex(e["command"]) for e in corpus_log.truth["events"] if e["channel"] == "ctrl"}
    assert not [f.number for f in frames if f.port == TPM_PORT and f.to_server and f.payload in ctrl]


# ----------------------------------------------------------------- TCP


def test_tcp_analysis_finds_nothing(corpus_log: CorpusLog, converted: Convert) -> None:
    require_tshark()
    pcap = converted(corpus_log)
    # no sequence analysis finding, no warning or error outside the TPM dissector
    assert frame_numbers(pcap, "tcp.analysis.flags || (_ws.expert.severity >= warning && !tpm)") == []


def test_tshark_validates_ip_and_tcp_checksums(frames: list[TsharkFrame]) -> None:
    good = "1"  # Wireshark's PROTO_CHECKSUM_E_GOOD
    bad = [(f.number, f.ip_checksum, f.tcp_checksum) for f in frames if (f.ip_checksum, f.tcp_checksum) != (good, good)]
    assert not bad


def test_scapy_recomputes_the_same_checksums(corpus_log: CorpusLog, converted: Convert) -> None:
    scapy_all = pytest.importorskip("scapy.all")
    Ether, IP, TCP = scapy_all.Ether, scapy_all.IP, scapy_all.TCP
    packets = scapy_all.rdpcap(str(converted(corpus_log)))
    assert len(packets) > 0
    for n, pkt in enumerate(packets, start=1):
        raw = bytes(pkt)
        again = Ether(raw)
        assert again[IP].len == len(raw) - 14, f"frame {n}"
        del again[IP].chksum  # scapy computes them afresh when it builds the frame
        del again[TCP].chksum
        assert bytes(again) == raw, f"frame {n}: checksums differ from scapy's"


def _check_open_and_close(stream: list[TsharkFrame]) -> None:
    syn, synack, ack = stream[:3]
    assert syn.flags & (SYN | ACK) == SYN and syn.to_server
    assert synack.flags & (SYN | ACK) == SYN | ACK and not synack.to_server
    assert ack.flags & (SYN | FIN | ACK) == ACK and ack.to_server and not ack.payload
    fin1, fin2, last = stream[-3:]
    assert fin1.flags & FIN and fin2.flags & FIN and fin1.to_server != fin2.to_server
    assert last.flags & (SYN | FIN | ACK) == ACK and not last.payload
    for f in stream[3:-3]:
        assert f.payload and f.flags & ACK and not f.flags & (SYN | FIN)


def test_every_stream_opens_and_closes(corpus_log: CorpusLog, frames: list[TsharkFrame]) -> None:
    for port in (TPM_PORT, CTRL_PORT):
        for stream in streams(frames, port):
            _check_open_and_close(stream)


def test_addresses(frames: list[TsharkFrame]) -> None:
    for f in frames:
        assert f.src == f.dst
        assert f.src == ("127.0.0.1" if f.port == TPM_PORT else "127.0.0.2")


# ---------------------------------------------------------- timestamps


def test_timestamps_strictly_increase(frames: list[TsharkFrame]) -> None:
    ts = [f.ts_us for f in frames]
    assert all(a < b for a, b in zip(ts, ts[1:]))


def test_runs_start_at_their_epoch(corpus_log: CorpusLog, frames: list[TsharkFrame]) -> None:
    tpm = streams(frames, TPM_PORT)
    ctrl = streams(frames, CTRL_PORT)
    assert len(tpm) == len(ctrl) == corpus_log.run_count  # every corpus run has both
    for run, epoch in enumerate(corpus_log.epochs):
        first = min(tpm[run][0].ts_us, ctrl[run][0].ts_us)
        if epoch is not None:
            assert first == epoch * 1_000_000, f"run {run}"
        elif run == 0:
            assert first == START_US
        if run + 1 < corpus_log.run_count:  # a run's frames come before the next run's
            nxt = min(tpm[run + 1][0].number, ctrl[run + 1][0].number)
            assert max(tpm[run][-1].number, ctrl[run][-1].number) < nxt


def test_clock_starts_at_start_us_zero(corpus: Path) -> None:
    log = next((load_corpus_log(p) for p in corpus_log_paths() if load_corpus_log(p).epochs[0] is None), None)
    if log is None:
        pytest.fail("no log without an [id=<epoch>] prefix in the corpus")
    parser = LogParser()
    framer = Framer(start_us=0)
    stamps = []
    for event in parser.feed(log.data) + parser.close():
        stamps += [ts for ts, _, _ in framer.frames(event)]
    assert stamps[0] == 0


def test_live_clock_never_goes_back(corpus_log: CorpusLog) -> None:
    parser = LogParser()
    framer = Framer()
    now = 1_700_000_000_000_000
    stamps = []
    for event in parser.feed(corpus_log.data) + parser.close():
        stamps += [ts for ts, _, _ in framer.frames(event, now)]
    stamps += [ts for ts, _, _ in framer.close(now)]
    assert stamps[0] == now
    assert all(a < b for a, b in zip(stamps, stamps[1:]))


def test_epoch_going_back_keeps_the_clock_and_tcp_clean(corpus: Path, tmp_path: Path) -> None:
    """A Proxmox log appended to itself: the third run's [id=<epoch>] is
    earlier than the frames already written. Time still only moves forward,
    every run is its own clean TCP stream."""
    log = next(
        (load_corpus_log(p) for p in corpus_log_paths() if load_corpus_log(p).epochs[-1] is not None),
        None,
    )
    if log is None:
        pytest.fail("no corpus log with an [id=<epoch>] prefix")
    pcap = write_pcapng(log.data + log.data, tmp_path / "twice.pcapng")
    frames = read_frames(pcap)
    ts = [f.ts_us for f in frames]
    assert all(a < b for a, b in zip(ts, ts[1:]))
    tpm = streams(frames, TPM_PORT)
    assert len(tpm) == 2 * log.run_count
    assert tpm_payloads(frames) == log.tpm_messages() * 2
    for stream in tpm + streams(frames, CTRL_PORT):
        _check_open_and_close(stream)
    assert frame_numbers(pcap, "tcp.analysis.flags") == []


# ------------------------------------------------------------- comments


_HEADER = re.compile(rb" (SWTPM_IO_Read|SWTPM_IO_Write|Ctrl Cmd|Ctrl Rsp Continued|Ctrl Rsp): length (\d+)$")
_LABEL = {
    (TPM_PORT, True): b"SWTPM_IO_Read",
    (TPM_PORT, False): b"SWTPM_IO_Write",
    (CTRL_PORT, True): b"Ctrl Cmd",
    (CTRL_PORT, False): b"Ctrl Rsp",
}


def record_at(log: CorpusLog, line: int) -> tuple[bytes, bytes]:
    """(label, bytes) of the record whose header is log line ``line``, read
    straight from the log text (hex tokens of the following lines)."""
    m = _HEADER.search(log.lines[line - 1])
    assert m is not None, f"log line {line} is not a record header: {log.lines[line - 1]!r}"
    prefix = log.lines[line - 1][: m.start()]
    size = int(m.group(2))
    data = b""
    n = line
    while len(data) < size:
        text = log.lines[n]
        assert text.startswith(prefix + b" "), f"log line {n + 1} is not hex of line {line}"
        data += bytes.fromhex(text[len(prefix):].decode())
        n += 1
    return m.group(1), data


def test_every_frame_names_its_log_line(corpus_log: CorpusLog, frames: list[TsharkFrame]) -> None:
    nlines = len(corpus_log.lines)
    for f in frames:
        named = [int(n) for n in re.findall(r"\blog line (\d+)", f.comment)]
        assert named, f"frame {f.number} comment names no log line: {f.comment!r}"
        assert all(1 <= n <= nlines for n in named)
        if f.payload:
            m = re.match(r"swtpm log line (\d+)\b", f.comment)
            assert m, f"frame {f.number}: {f.comment!r}"
            label, data = record_at(corpus_log, int(m.group(1)))
            assert label == _LABEL[f.port, f.to_server] or (
                label == b"Ctrl Rsp Continued" and f.port == CTRL_PORT and not f.to_server
            )
            assert data == f.payload, f"frame {f.number} vs log line {m.group(1)}"


def test_handshake_comment_names_the_first_record(frames: list[TsharkFrame]) -> None:
    for port in (TPM_PORT, CTRL_PORT):
        for stream in streams(frames, port):
            first_data = next(f for f in stream if f.payload)
            line = re.match(r"swtpm log line (\d+)", first_data.comment).group(1)  # type: ignore[union-attr]
            for f in stream[:3]:
                assert re.findall(r"\blog line (\d+)", f.comment)[-1] == line, f.comment


# ------------------------------------------------------ damaged logs


def _damage(log: CorpusLog) -> tuple[bytes, list[int]]:
    """The real log with a TPM command cut short (last hex line deleted), a junk
    line inside another record and a stray hex line; returns the log and the
    (new) header lines of the damaged records."""
    parser = LogParser()
    recs = [e for e in parser.feed(log.data) + parser.close() if isinstance(e, Record)]
    multi = [r for r in recs if r.kind.is_tpm and r.last_line - r.line >= 2]
    short, junk, stray = multi[1], multi[3], multi[5]
    lines = list(log.lines)
    lines.insert(stray.last_line, lines[stray.line])  # a copy of a real hex line
    lines.insert(junk.line + 1, b"libtpms/tpm2: Entering failure mode; code: 3")
    del lines[short.last_line - 1]
    return b"\n".join(lines) + b"\n", [short.line, junk.line + 1, stray.last_line + 1]


def test_defects_are_named_in_frame_comments(corpus_log: CorpusLog, tmp_path: Path) -> None:
    data, where = _damage(corpus_log)
    parser = LogParser()
    events = parser.feed(data) + parser.close()
    defects: list[Defect] = [e for e in events if isinstance(e, Defect)]
    for e in events:
        if isinstance(e, Record):
            defects += e.defects
    found = {(d.line, d.kind) for d in defects}
    assert {(where[0], DefectKind.SHORT), (where[1], DefectKind.JUNK), (where[2], DefectKind.STRAY)} <= found
    frames = read_frames(write_pcapng(data, tmp_path / "damaged.pcapng"))
    comments = "\n".join(f.comment for f in frames)
    for d in defects:
        assert str(d) in comments
    # the cut-short command still reaches Wireshark with the bytes that are there
    short = next(e for e in events if isinstance(e, Record) and e.line == where[0])
    cut = [f for f in frames if f.comment.startswith(f"swtpm log line {where[0]}: ")]
    assert len(cut) == 1 and cut[0].port == TPM_PORT
    assert cut[0].payload == short.data and len(short.data) >= 16


def test_defect_of_an_empty_record_is_named_in_a_comment(corpus: Path, tmp_path: Path) -> None:
    corpus_log = load_corpus_log(corpus_log_paths()[0])
    parser = LogParser()
    recs = [e for e in parser.feed(corpus_log.data) + parser.close() if isinstance(e, Record)]
    victim = next(r for r in recs[1:] if not r.kind.is_tpm)  # a real ctrl command ...
    lines = list(corpus_log.lines)
    del lines[victim.line : victim.last_line]  # ... that lost all its hex lines
    data = b"\n".join(lines) + b"\n"
    parser = LogParser()
    events = parser.feed(data) + parser.close()
    empty = next(e for e in events if isinstance(e, Record) and e.line == victim.line)
    assert empty.data == b"" and empty.defects
    frames = read_frames(write_pcapng(data, tmp_path / "damaged.pcapng"))
    comments = "\n".join(f.comment for f in frames)
    for d in empty.defects:
        assert str(d) in comments


# -------------------------------------- damage that must stay visible and small (issue 6)


def _record_lines(prefix: bytes, label: bytes, data: bytes) -> list[bytes]:
    """A record as swtpm logs it."""
    body = [prefix + b" " + data[k : k + 16].hex(" ").upper().encode() + b" " for k in range(0, len(data), 16)]
    return [prefix + b" " + label + b": length %d" % len(data), *body]


def _relog(log: CorpusLog, victim: Record, *parts: bytes) -> bytes:
    """The log with ``victim``'s record replaced by one record per part (same label)."""
    lines = list(log.lines)
    header = lines[victim.line - 1]
    prefix = header[: header.index(b" " + victim.kind.value.encode() + b":")]
    new = [line for part in parts for line in _record_lines(prefix, victim.kind.value.encode(), part)]
    lines[victim.line - 1 : victim.last_line] = new
    return b"\n".join(lines) + b"\n"


def _first_command(log: CorpusLog, size: int) -> Record:
    recs = [e for e in LogParser().feed(log.data) if isinstance(e, Record)]
    return next(r for r in recs if r.kind.is_tpm and r.kind.to_server and len(r.data) >= size)


def test_a_command_logged_as_two_reads_says_which_part_each_frame_is(
    corpus_log: CorpusLog, tmp_path: Path
) -> None:
    """swtpm's read() got 10 bytes, then the rest: two frames (one per read, as
    always), the first says it is part of the command its header names, the
    second that it continues it; every other frame carries no such note."""
    victim = _first_command(corpus_log, 22)
    data = _relog(corpus_log, victim, victim.data[:10], victim.data[10:])
    frames = read_frames(write_pcapng(data, tmp_path / "split.pcapng"))
    size = len(victim.data)
    what = f"TPM command 0x{int.from_bytes(victim.data[6:10], 'big'):08X}"
    first = [f for f in frames if f.payload and f.comment.startswith(f"swtpm log line {victim.line}: ")]
    assert len(first) == 1 and first[0].port == TPM_PORT and first[0].payload == victim.data[:10]
    assert f"partial: 10 of {size} bytes of {what}" in first[0].comment
    second = frames[frames.index(first[0]) + 1]
    assert second.payload == victim.data[10:]
    assert f"continued: bytes 11-{size} of {size} of {what}" in second.comment
    noted = [f for f in frames if "TPM payload" in f.comment]
    assert noted == [first[0], second]


def test_a_record_holding_two_commands_says_so(corpus_log: CorpusLog, tmp_path: Path) -> None:
    victim = _first_command(corpus_log, 10)
    data = _relog(corpus_log, victim, victim.data + victim.data)
    frames = read_frames(write_pcapng(data, tmp_path / "two.pcapng"))
    (frame,) = [f for f in frames if f.payload and f.comment.startswith(f"swtpm log line {victim.line}: ")]
    assert frame.payload == victim.data * 2
    assert "TPM payload: holds 2 TPM messages" in frame.comment
    assert [f for f in frames if "TPM payload" in f.comment] == [frame]


def test_stray_hex_is_never_a_tpm_frame(corpus_log: CorpusLog, tmp_path: Path) -> None:
    """Hex lines outside any record (here: copies of real hex lines after a
    complete record, as a lost header leaves them) go to their own stream,
    127.0.0.3 -> 2324; the TPM stream is exactly the truth."""
    from swtpm_extcap.pcapng.frames import STRAY_PORT

    recs = [e for e in LogParser().feed(corpus_log.data) if isinstance(e, Record)]
    victim = next(r for r in recs if r.kind.is_tpm and r.last_line - r.line >= 2)
    lines = list(corpus_log.lines)
    lines[victim.last_line : victim.last_line] = lines[victim.line : victim.line + 2]
    frames = read_frames(
        write_pcapng(b"\n".join(lines) + b"\n", tmp_path / "stray.pcapng"),
        "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
    )
    assert tpm_payloads(frames) == corpus_log.tpm_messages()
    stray = [f for f in frames if f.port == STRAY_PORT and f.payload]
    assert [f.payload for f in stray] == [victim.data[:32]]
    assert stray[0].src == "127.0.0.3" and "tpm" not in stray[0].protocols.split(":")
    assert "stray" in stray[0].comment
    assert all((f.ip_checksum, f.tcp_checksum) == ("1", "1") for f in frames)


def test_comments_stay_small_whatever_the_damage(corpus: Path, tmp_path: Path) -> None:
    """50,000 headers without hex before a real record: 50,000 empty records
    whose notes would all land on the next frame; it keeps MAX_NOTES of them and
    counts the rest. pcapng could not hold the whole (a comment is < 64 KiB)."""
    from swtpm_extcap.pcapng.frames import MAX_NOTES

    log = load_corpus_log(corpus_log_paths()[0])
    recs = [e for e in LogParser().feed(log.data) if isinstance(e, Record)]
    victim = next(r for r in recs[1:] if r.kind.is_tpm)
    header = log.lines[victim.line - 1]
    empty = header[: header.index(b"length ")] + b"length 4"
    lines = list(log.lines)
    lines[victim.line - 1 : victim.line - 1] = [empty] * 50_000
    frames = read_frames(write_pcapng(b"\n".join(lines) + b"\n", tmp_path / "flood.pcapng"))
    assert max(len(f.comment) for f in frames) < 8 << 10
    noted = [f for f in frames if "empty record" in f.comment]
    assert len(noted) == 1
    assert noted[0].comment.count("empty record") == MAX_NOTES
    assert f"{50_000 - MAX_NOTES} more defects before this frame left out" in noted[0].comment
    assert tpm_payloads(frames) == log.tpm_messages()


# ------------------------------------------------------ line comments off


def test_without_line_comments_only_notable_frames_have_one(corpus_log: CorpusLog) -> None:
    """``line_comments=False`` (the extcap's default): the same frames, byte for byte;
    comments only where there is something to say (a run's start, a defect, a
    payload note), each then the same as with line comments."""
    data, damaged = _damage(corpus_log)
    out = {}
    for plain in (True, False):
        parser, framer = LogParser(), Framer(start_us=START_US, line_comments=plain)
        out[plain] = framer.frame_events(parser.feed(data) + parser.close()) + framer.close()
    on, off = out[True], out[False]
    assert [(ts, pkt) for ts, pkt, _ in on] == [(ts, pkt) for ts, pkt, _ in off]
    assert all(c for _, _, c in on)
    kept = [(i, c) for i, (_, _, c) in enumerate(off) if c]
    assert all(c == on[i][2] for i, c in kept)
    syns = [i for i, (_, pkt, _) in enumerate(off) if pkt[47] == SYN]  # TCP flags byte
    assert syns and [i for i, c in kept if c.startswith("swtpm run ")] == syns
    notable = [c for _, c in kept if not c.startswith("swtpm run ")]
    for line in damaged:  # each damaged record's defect is still said
        assert any(f"line {line}" in c for c in notable), line
    assert all("defect" in c or "TPM payload" in c or "\n" in c for c in notable), notable
    assert len(kept) < len(off) // 5
