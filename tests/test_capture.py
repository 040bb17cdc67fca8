"""The capture engine (swtpm_extcap/extcap/capture.py) in process, on an in-memory Source.

No subprocess, no fifo, no tshark: a :class:`MemorySource` hands the engine the
bytes of a real swtpm log (the demo: Proxmox, two runs with ``[id=]``; the
libvirt corpus log: no prefix) and the notices a follow would; the pcapng it
writes into a BytesIO is read back with a few lines of struct. The end-to-end
tests (test_extcap.py, test_stop.py, test_extcap_e2e.py) run the same engine
through the real process, fifo and tshark; these carry the detail.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import pytest

from conftest import DEFAULT_CORPUS
from swtpm_extcap.extcap.capture import find_last_run, run_capture
from swtpm_extcap.pcapng.clock import backlog_start_us
from swtpm_extcap.interfaces.demo import demo_log_path
from swtpm_extcap.errors import UserError
from swtpm_extcap.swtpmlog.parser import Kind, Record, parse_bytes
from swtpm_extcap.extcap.options import CaptureSettings
from swtpm_extcap.pcapng.pipeline import Summary
from swtpm_extcap.sources.base import Backlog, Chunk, Notice

DEMO = demo_log_path().read_bytes()
LIBVIRT = (DEFAULT_CORPUS / "libvirt-fedora39-swtpm.log").read_bytes()
MTIME = 1_700_000_000.0
LOG = logging.getLogger("test_capture")
TPM_PORT = 2321


def runs_of(log: bytes) -> list[bytes]:
    """The demo's two runs: its lines grouped by their ``[id=<epoch>]`` prefix."""
    runs: dict[bytes, list[bytes]] = {}
    for line in log.splitlines(keepends=True):
        runs.setdefault(line.split(b"]", 1)[0], []).append(line)
    return [b"".join(lines) for lines in runs.values()]


def commands(log: bytes) -> list[int]:
    """The TPM command codes of a log, in order, from the parser itself."""
    return [
        int.from_bytes(e.data[6:10], "big") for e in parse_bytes(log)
        if isinstance(e, Record) and e.kind is Kind.TPM_COMMAND
    ]


class MemorySource:
    """A log in memory: ``data`` is the backlog, ``live`` what a follow yields after it
    (bytes or notices); ``stop_after_live`` sets the stop Event at the end of the
    follow (a SIGTERM) instead of ending the input."""

    label = "memory:vm"

    def __init__(self, data: bytes | None, live: Sequence[Chunk] = (), *, piece: int = 997,
                 stop_after_live: bool = False) -> None:
        self.data = data
        self.live = live
        self.piece = piece
        self.stop_after_live = stop_after_live
        self.follow_start: int | None = None

    def backlog(self) -> Backlog:
        return Backlog(0, None) if self.data is None else Backlog(len(self.data), MTIME)

    def read(self, stop: threading.Event, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        data = (self.data or b"")[start:end]
        for at in range(0, len(data), self.piece):
            yield data[at:at + self.piece]

    def follow(self, stop: threading.Event, start: int = 0) -> Iterator[Chunk]:
        self.follow_start = start
        yield from self.read(stop, start)
        yield Notice.BACKLOG_DONE
        yield from self.live
        if self.stop_after_live:
            stop.set()
            yield b""

    def explain(self, exc: OSError) -> str:
        return f"{self.label}: {exc.strerror}"


class CountingStop(threading.Event):
    """A stop Event whose waits (the pace) are counted, not slept."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


@dataclass
class Frame:
    ts_us: int
    payload: bytes
    dport: int
    comment: str


def read_pcapng(data: bytes) -> list[Frame]:
    """Enhanced packet blocks of a little-endian pcapng: time, TCP payload, port, comment."""
    frames, at = [], 0
    while at < len(data):
        kind, length = struct.unpack_from("<II", data, at)
        if kind == 6:
            _, high, low, caplen, _ = struct.unpack_from("<IIIII", data, at + 8)
            packet = data[at + 28:at + 28 + caplen]
            opts, comment = at + 28 + (caplen + 3) // 4 * 4, ""
            while opts < at + length - 4:
                code, size = struct.unpack_from("<HH", data, opts)
                if code == 0:
                    break
                if code == 1:
                    comment = data[opts + 4:opts + 4 + size].decode()
                opts += 4 + (size + 3) // 4 * 4
            dport = struct.unpack_from("!H", packet, 36)[0]
            frames.append(Frame(high << 32 | low, packet[54:], dport, comment))
        at += length
    return frames


def tpm_commands(frames: list[Frame]) -> list[int]:
    return [int.from_bytes(f.payload[6:10], "big") for f in frames
            if f.dport == TPM_PORT and len(f.payload) >= 10]


def capture(source: MemorySource, stop: threading.Event | None = None,
            **options: object) -> tuple[list[Frame], Summary | None]:
    settings = replace(CaptureSettings(interface="swtpm-vm", fifo="-"), **options)  # type: ignore[arg-type]
    out = io.BytesIO()
    summary = run_capture(source, settings, stop or threading.Event(), lambda: out,
                          name="swtpm-vm", description="a VM", log=LOG)
    return read_pcapng(out.getvalue()), summary


# ------------------------------------------------------------------ the tests


def test_replay_is_the_whole_log() -> None:
    frames, summary = capture(MemorySource(DEMO), mode="replay")
    assert tpm_commands(frames) == commands(DEMO)
    assert summary is not None and summary.runs == 2 and not summary.defects


def test_follow_backlog_then_live_records() -> None:
    run1, run2 = runs_of(DEMO)
    frames, _ = capture(MemorySource(run1, [run2]))
    assert tpm_commands(frames) == commands(DEMO)


def test_last_run_only_drops_the_backlogs_earlier_runs_not_later_ones() -> None:
    run1, run2 = runs_of(DEMO)
    assert find_last_run(MemorySource(DEMO), len(DEMO), threading.Event()) == 1
    frames, _ = capture(MemorySource(DEMO), mode="replay", runs="last")
    assert tpm_commands(frames) == commands(run2)
    frames, _ = capture(MemorySource(run2 + run1, [run2]), runs="last")  # a new VM start, live
    assert tpm_commands(frames) == commands(run1) + commands(run2)


def test_capture_filter_keeps_commands_and_their_responses() -> None:
    codes = commands(DEMO)
    wanted = {max(set(codes), key=codes.count), 0x17E}  # the commonest one, and PCR_Read
    frames, _ = capture(MemorySource(DEMO), mode="replay", codes=frozenset(wanted), ctrl=True)
    assert tpm_commands(frames) == [c for c in codes if c in wanted]
    data = [f for f in frames if f.payload]
    assert all(f.dport == TPM_PORT for f in data[::2])  # command, response, command, ...
    assert len(data) == 2 * len(tpm_commands(frames))  # no control channel either


def test_pace_waits_after_each_backlog_record_only() -> None:
    run1, run2 = runs_of(DEMO)
    stop = CountingStop()
    capture(MemorySource(run1, [run2]), stop, pace_ms=50, ctrl=False)
    tpm_records = 2 * len(commands(run1))
    assert stop.waits == [0.05] * tpm_records


def test_clock_of_a_log_without_prefix_backlog_then_wall_clock() -> None:
    """The one clock policy: the backlog ends no later than the log's mtime; records
    read after it carry the wall clock."""
    cut = LIBVIRT.index(b"\n", len(LIBVIRT) // 2) + 1
    before = time.time_ns() // 1000
    frames, _ = capture(MemorySource(LIBVIRT[:cut], [LIBVIRT[cut:]]))
    after = time.time_ns() // 1000
    backlog = [f for f in frames if f.ts_us < before]
    assert backlog[0].ts_us == backlog_start_us(MTIME, cut)
    assert backlog[-1].ts_us <= MTIME * 1_000_000
    live = frames[len(backlog):]
    assert live and all(before <= f.ts_us <= after for f in live)
    assert [f.ts_us for f in frames] == sorted(f.ts_us for f in frames)


def test_a_truncation_ends_the_backlog_early() -> None:
    """A switch of file before the backlog's end (the source says BACKLOG_DONE first):
    the new file's records are live."""
    run1, run2 = runs_of(DEMO)

    class Truncated(MemorySource):
        def follow(self, stop: threading.Event, start: int = 0) -> Iterator[Chunk]:
            yield run1[:len(run1) // 2]
            yield Notice.BACKLOG_DONE
            yield Notice.TRUNCATED
            yield run2

    before = time.time_ns() // 1000
    frames, _ = capture(Truncated(run1 + run2))
    live = [f for f in frames if f.ts_us >= before]
    assert tpm_commands(live) == commands(run2)


def test_only_new_records_starts_the_follow_at_the_backlogs_end() -> None:
    run1, run2 = runs_of(DEMO)
    source = MemorySource(run1, [run2])
    frames, _ = capture(source, start="new")
    assert source.follow_start == len(run1)
    assert tpm_commands(frames) == commands(run2)


def test_stop_ends_the_capture_without_cutting_a_record_short() -> None:
    run1, run2 = runs_of(DEMO)
    half = run2[: run2.index(b"SWTPM_IO_Write") + 20]  # a response header and part of its hex
    stop = threading.Event()
    frames, summary = capture(MemorySource(run1, [half], stop_after_live=True), stop)
    assert stop.is_set() and summary is not None
    assert tpm_commands(frames) == commands(run1) + commands(half)
    assert frames[-1].payload == b""  # the conversations are closed (FIN)


def test_replay_of_a_missing_log_is_one_line() -> None:
    with pytest.raises(UserError, match="memory:vm does not exist"):
        capture(MemorySource(None), mode="replay")


def test_a_source_error_is_its_own_explanation() -> None:
    class Unreadable(MemorySource):
        def follow(self, stop: threading.Event, start: int = 0) -> Iterator[Chunk]:
            raise PermissionError(13, "Permission denied")
            yield b""

    with pytest.raises(UserError, match="^memory:vm: Permission denied$"):
        capture(Unreadable(DEMO))


def test_stopped_before_the_output_opened_writes_nothing() -> None:
    settings = CaptureSettings(interface="swtpm-vm", fifo="-")
    assert run_capture(MemorySource(DEMO), settings, threading.Event(), lambda: None,
                       name="x", description="x", log=LOG) is None
