"""PCR replay on the real-log corpus: self-check, frame comments, damage, the pcrs command."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    CorpusLog,
    frame_numbers,
    named_log,
    read_frames,
    run_cli,
    write_pcapng,
)
from swtpm_extcap.swtpmlog.parser import Kind, Record, parse_bytes
from swtpm_extcap.pcr.replay import Replayer
from swtpm_extcap.pcr.types import CC_PCR_EXTEND, CC_PCR_READ, Check, Step
from swtpm_extcap.pcapng.notes import ReplayingParser
from swtpm_extcap.pcapng.pipeline import Pipeline

#: every `pcr:` comment line has one of these shapes (the module docstring of pcapng.notes)
NOTE = re.compile(
    r"pcr: (?:extend #\d+ PCR \d+ \w+ = (?:[0-9a-f]+|unknown \(.+\))"
    r"|reset PCR \d+ \w+ = [0-9a-f]+"
    r"|unknown PCR \d+ \w+ \(.+\)"
    r"|startup clear|startup state \(PCRs 0-15 restored from saved state: unknown\)"
    r"|read matches replay \(\d+ values?\)"
    r"|read MISMATCH PCR \d+ \w+ \(replay [0-9a-f]+, line \d+\)"
    r"|read PCR \d+ \w+ not known to the replay \(.+\); now taken from this read)"
)


def _replay(data: bytes) -> list[Any]:
    return Replayer(detail=True).feed(parse_bytes(data))


def _successful(log: CorpusLog, code: int) -> int:
    """How many commands with ``code`` the client saw succeed (truth, not the log)."""
    return sum(
        1
        for e in log.exchanges()
        if e["channel"] == "tpm" and int(e["command_code"], 16) == code and int(e["response_code"], 16) == 0
    )


# ------------------------------------------------------------ the self-check


def test_every_corpus_pcr_read_matches_the_replay_or_the_log_explains_it(corpus_log: CorpusLog) -> None:
    checks = [o for o in _replay(corpus_log.data) if type(o) is Check]
    assert not [c for c in checks if c.status == "mismatch"]
    for c in checks:
        if c.status == "learned":  # only where the log itself says why the value is unknown
            assert "Startup(STATE)" in c.why or "no TPM2_Startup in the log" in c.why, c
    if corpus_log.truth["tpm_version"] == "1.2":
        assert checks == []  # TPM 1.2 is not replayed
        return
    # each PCR_Read the client saw succeed was checked (the truth counts them, not the log)
    assert len({c.answer for c in checks}) == _successful(corpus_log, CC_PCR_READ) > 0
    assert any(c.status == "match" for c in checks)


def test_the_resumed_run_learns_what_startup_state_restored(corpus: Path) -> None:
    log = named_log(corpus, "proxmox-105-failuremode-swtpm.log")
    out = _replay(log.data)
    learned = [c for c in out if type(c) is Check and c.status == "learned"]
    assert learned and all(c.pcr < 16 for c in learned)  # 16-23 are reset by Startup(STATE)
    # from the read on, the replay goes on from the value the TPM gave
    later = [c for c in out if type(c) is Check and c.answer > learned[-1].answer]
    assert later and all(c.status == "match" for c in later)


def test_extends_are_numbered_per_run_and_one_number_covers_all_banks(corpus: Path) -> None:
    log = named_log(corpus, "proxmox-103-swtpm.log")
    steps = [o for o in _replay(log.data) if type(o) is Step and o.what == "extend"]
    per_run: dict[int, list[int]] = {}
    for s in steps:
        per_run.setdefault(s.run, []).append(s.number)
    # firmware: PCRs 0,1,2,4,5,7 in sha256 and sha1, in both boots
    assert per_run == {0: [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6], 1: [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]}
    assert len(steps) == 2 * _successful(log, CC_PCR_EXTEND)


# ------------------------------------------------- damage and wrong digests


def _records(data: bytes, code: int, kind: Kind = Kind.TPM_COMMAND) -> list[Record]:
    return [
        ev for ev in parse_bytes(data)
        if type(ev) is Record and ev.kind is kind and ev.data[6:10] == code.to_bytes(4, "big")
    ]


def _pcr_extend(data: bytes, pcr: int) -> Record:
    return next(r for r in _records(data, CC_PCR_EXTEND) if r.data[10:14] == pcr.to_bytes(4, "big"))


def _flip_byte(data: bytes, rec: Record, offset: int) -> bytes:
    """The log with byte ``offset`` of ``rec`` changed (its hex line rewritten)."""
    lines = data.split(b"\n")
    index = rec.line + offset // 16  # 1-based header line -> 0-based first hex line
    fields = lines[index].split(b" ")
    hex_fields = [i for i, f in enumerate(fields) if re.fullmatch(rb"[0-9A-F]{2}", f)]
    at = hex_fields[len(hex_fields) - 16 + offset % 16] if len(hex_fields) >= 16 else hex_fields[offset % 16]
    fields[at] = b"%02X" % (int(fields[at], 16) ^ 0x5A)
    lines[index] = b" ".join(fields)
    return b"\n".join(lines)


def test_a_changed_extend_digest_is_a_mismatch_with_both_lines(corpus: Path, tmp_path: Path) -> None:
    log = named_log(corpus, "proxmox-103-swtpm.log")
    extend = _pcr_extend(log.data, 7)
    step = next(o for o in _replay(log.data) if type(o) is Step and o.line == extend.line and o.bank == "sha256")
    assert step.digest is not None
    doctored = _flip_byte(log.data, extend, extend.data.find(step.digest) + 5)
    checks = [c for c in _replay(doctored) if type(c) is Check]
    bad = [c for c in checks if c.status != "match"]
    assert [(c.pcr, c.bank, c.status, c.since, c.run) for c in bad] == [(7, "sha256", "mismatch", extend.line, 0)]
    # the frame comment of that read says so, with the replayed value and the extend's line
    pcap = write_pcapng(doctored, tmp_path / "doctored.pcapng")
    frames = read_frames(pcap, display_filter='frame.comment contains "MISMATCH"')
    assert len(frames) == 1 and bad[0].replay is not None
    assert f"pcr: read MISMATCH PCR 7 sha256 (replay {bad[0].replay.hex()}, line {extend.line})" in frames[0].comment
    assert frames[0].comment.startswith(f"swtpm log line {bad[0].answer}: SWTPM_IO_Write")
    # and the command line names both lines
    (tmp_path / "doctored.log").write_bytes(doctored)
    text = run_cli(["pcrs", str(tmp_path / "doctored.log")]).stdout.decode()
    assert re.search(rf"MISMATCH: PCR_Read at line {bad[0].line} .* PCR 7 sha256 .*"
                     rf"\(last change line {extend.line}\)", text)


def test_a_damaged_extend_makes_that_pcr_unknown_not_wrong(corpus: Path) -> None:
    log = named_log(corpus, "proxmox-103-swtpm.log")
    extend = _pcr_extend(log.data, 0)
    lines = log.data.split(b"\n")
    del lines[extend.line + 1]  # its second hex line: the record is short
    out = _replay(b"\n".join(lines))
    unknown = [o for o in out if type(o) is Step and o.what == "unknown"]
    assert {(s.pcr, s.line) for s in unknown} == {(0, extend.line)}
    assert all("damaged" in s.why for s in unknown)
    checks = [c for c in out if type(c) is Check]
    assert not [c for c in checks if c.status == "mismatch"]
    # run 1 read PCR 0 only in boot 2's full read: run 2 has its own, intact extend
    assert all(c.status == "match" for c in checks if c.pcr != 0 or c.run == 1)


# ------------------------------------------------------- the frame comments


def test_frame_comments_say_what_changed_and_whether_reads_match(corpus: Path, converted: Any) -> None:
    log = named_log(corpus, "proxmox-103-swtpm.log")
    pcap = converted(log)
    frames = read_frames(pcap, display_filter='frame.comment contains "pcr:"')
    notes = [line for f in frames for line in f.comment.split("\n") if line.startswith("pcr:")]
    assert all(NOTE.fullmatch(n) for n in notes), [n for n in notes if not NOTE.fullmatch(n)]
    assert all(f.sport == 2321 for f in frames)  # on the responses: the TPM answered success
    assert sum(n.startswith("pcr: read matches replay") for n in notes) == _successful(log, CC_PCR_READ)
    assert sum(n.startswith("pcr: extend #") for n in notes) == 2 * _successful(log, CC_PCR_EXTEND)
    assert sum(n == "pcr: startup clear" for n in notes) == 2
    # a Wireshark user's filter: PCR 7's extends, one frame per boot
    seven = frame_numbers(pcap, 'frame.comment contains "pcr: extend" && frame.comment contains "PCR 7 "')
    assert len(seven) == 2


def test_the_replay_sees_records_a_capture_leaves_out(corpus: Path, tmp_path: Path) -> None:
    """Framing only PCR_Read (a capture filter): its check still knows every extend."""
    log = named_log(corpus, "proxmox-103-swtpm.log")
    out = tmp_path / "reads.pcapng"
    with open(out, "wb") as f:
        pipe = Pipeline(f, name="t", description="t")
        keep = False
        for start in range(0, len(log.data), 4096):
            events = pipe.parse(log.data[start : start + 4096])
            picked = []
            for ev in events:
                if type(ev) is Record and ev.kind is Kind.TPM_COMMAND:
                    keep = ev.data[6:10] == CC_PCR_READ.to_bytes(4, "big")
                if type(ev) is not Record or (ev.kind.is_tpm and keep):
                    picked.append(ev)
            pipe.write(picked, None)
        pipe.close()
    frames = read_frames(out, display_filter='frame.comment contains "pcr:"')
    assert len(frames) == _successful(log, CC_PCR_READ)
    assert all("pcr: read matches replay" in f.comment for f in frames)


def test_replay_does_not_depend_on_how_the_log_is_chunked(corpus_log: CorpusLog) -> None:
    whole = ReplayingParser()
    whole.feed(corpus_log.data)
    expected = whole.replayer.state
    rng = random.Random(corpus_log.name)
    parser = ReplayingParser()
    notes: dict[int, list[str]] = {}
    pos = 0
    while pos < len(corpus_log.data):
        step = rng.choice((1, 7, 100, 4096, 65536))
        parser.feed(corpus_log.data[pos : pos + step])
        notes.update(parser.notes)
        pos += step
    parser.close()
    notes.update(parser.notes)
    reference = ReplayingParser()
    reference.feed(corpus_log.data)
    all_notes = dict(reference.notes)
    reference.close()
    all_notes.update(reference.notes)
    assert notes == all_notes
    assert (parser.replayer.state and parser.replayer.state.banks) == (expected and expected.banks)


# ------------------------------------------------------- the pcrs command


def test_pcrs_json_lists_runs_extends_and_final_values(corpus: Path) -> None:
    log = named_log(corpus, "proxmox-103-swtpm.log")
    proc = run_cli(["pcrs", "--json", str(log.path)])
    assert proc.returncode == 0 and proc.stderr == b""
    doc = json.loads(proc.stdout)
    assert [r["run"] for r in doc["runs"]] == [1, 2]
    assert [r["epoch"] for r in doc["runs"]] == log.epochs
    for run in doc["runs"]:
        extends = [e for e in run["events"] if e["type"] == "extend"]
        assert [e["pcr"] for e in extends] == [0, 0, 1, 1, 2, 2, 4, 4, 5, 5, 7, 7]
        last7 = [e for e in extends if e["pcr"] == 7 and e["bank"] == "sha256"][-1]
        assert run["final"]["sha256"]["7"] == last7["value"]
        assert run["final"]["sha256"]["17"] == "ff" * 32 and run["final"]["sha256"]["16"] == "00" * 32
        assert run["reads"]["mismatch"] == 0 and run["reads"]["match"] == run["reads"]["values"] > 0
        assert run["unknown"] == {"sha1": {}, "sha256": {}, "sha384": {}, "sha512": {}}


def test_pcrs_reads_stdin_like_a_file(corpus: Path) -> None:
    log = named_log(corpus, "libvirt-fedora39-swtpm.log")
    from_file = run_cli(["pcrs", str(log.path)])
    from_stdin = run_cli(["pcrs", "-"], stdin=log.data)
    assert from_file.returncode == from_stdin.returncode == 0
    assert from_file.stdout == from_stdin.stdout
    text = from_file.stdout.decode()
    assert "EventSequenceComplete PCR 16 sha256" in text  # tpm2_pcrevent's hash sequence
    assert "final sha1" not in text  # swtpm_setup allocated only sha256 (GetCapability says so)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pcrs", "/nonexistent/x.log"], 1, "/nonexistent/x.log: no such file"),
        (["pcrs", "LOG", "--diff", "1", "9"], 1, "has no run 9 (its runs: run 1 ([id="),
        (["pcrs", "LOG", "--diff", "first", "2"], 2, "--diff takes two runs"),
    ],
)
def test_pcrs_errors_are_one_line(corpus: Path, args: list[str], code: int, message: str) -> None:
    log = named_log(corpus, "proxmox-103-swtpm.log")
    proc = run_cli([str(log.path) if a == "LOG" else a for a in args])
    err = proc.stderr.decode()
    assert proc.returncode == code
    assert err.count("\n") == 1 and message in err, err


def test_a_note_goes_on_the_record_not_on_a_handshake_for_the_same_line(corpus: Path, tmp_path: Path) -> None:
    """Framing only the responses (as a capture that starts between a command and its
    response does): the first response of a run opens the connection, with a
    handshake whose comments name the same log line; the note is on the response."""
    log = named_log(corpus, "proxmox-103-swtpm.log")
    out = tmp_path / "responses.pcapng"
    with open(out, "wb") as f:
        pipe = Pipeline(f, name="t", description="t")
        for last in (False, True):  # each batch is framed before the next is parsed
            events = pipe.parse_end() if last else pipe.parse(log.data)
            pipe.write([ev for ev in events if type(ev) is not Record or ev.kind is Kind.TPM_RESPONSE], None)
        pipe.close_conversations()
    frames = read_frames(out, display_filter='frame.comment contains "pcr:"')
    assert sum("pcr: startup clear" in f.comment for f in frames) == 2  # each run's first response
    assert all(f.payload and f.sport == 2321 for f in frames)
