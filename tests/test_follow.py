"""Tests for swtpm_extcap.sources.follow: ``tail -F`` on real swtpm log lines.

The log text is ``swtpm_extcap/data/demo-swtpm.log``, a byte-for-byte copy of
the corpus's ``proxmox-103-swtpm.log`` (real swtpm 0.7.1, two VM boots with
``[id=<epoch>] `` prefixes). Writers append it to real files in ``tmp_path``;
a consumer thread runs :func:`follow`; the bytes it yields go through the real
:class:`LogParser`, and the records must equal, one by one, the records of the
text that was written: none lost, none duplicated. Every wait has a deadline,
so no test can hang.
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import realtpm  # tests/ has no __init__.py: pytest puts tests/ on sys.path
import swtpm_extcap
import swtpm_extcap.errors
from swtpm_extcap.swtpmlog.parser import Event, LogParser, Record, RunStart, parse_bytes
import swtpm_extcap.sources.follow as follow_mod
from swtpm_extcap.sources.follow import follow, read_once
from swtpm_extcap.sources.follow import CHUNK_SIZE

LOG = (Path(swtpm_extcap.__file__).parent / "data" / "demo-swtpm.log").read_bytes()
LINES = LOG.splitlines(keepends=True)
PREFIX_1 = b"[id=1795664634] "
PREFIX_2 = b"[id=1795664639] "
#: indices of the lines that start a record (header lines)
HEADERS = [i for i, line in enumerate(LINES) if b": length " in line]
#: the first line of the second VM boot (new prefix)
RUN2 = next(i for i, line in enumerate(LINES) if line.startswith(PREFIX_2))

MODES = pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "poll"])
DEADLINE = 10.0  # seconds: no single wait in these tests may take longer

Key = tuple[int, Any, bytes, int, bool]


def keys(events: list[Event]) -> list[Key]:
    """What must survive following: run, kind, bytes, declared length, intact."""
    return [(e.run, e.kind, e.data, e.declared, e.intact) for e in events if isinstance(e, Record)]


def parse_chunks(chunks: list[bytes]) -> list[Event]:
    parser = LogParser()
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


def text(lines: list[bytes]) -> bytes:
    return b"".join(lines)


def wait_until(pred: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


class Consumer:
    """Runs follow() in a thread and keeps every chunk and every on_event line."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        self.path = path
        self.stop = threading.Event()
        self.chunks: list[bytes] = []
        self.events: list[str] = []
        self.received = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)

    def _run(self, **kwargs: Any) -> None:
        try:
            for chunk in follow(self.path, self.stop, on_event=self.events.append, **kwargs):
                self.chunks.append(chunk)
                self.received += len(chunk)
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def __enter__(self) -> Consumer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(DEADLINE)

    def wait_event(self, word: str, count: int = 1) -> None:
        wait_until(lambda: self.count(word) >= count or self.error is not None,
                   f"{count} {word!r} event(s); got {self.events}")
        self.check()

    def count(self, word: str) -> int:
        return sum(1 for e in self.events if e.startswith(word))

    def wait_bytes(self, n: int) -> None:
        wait_until(lambda: self.received >= n or self.error is not None,
                   f"{n} bytes (got {self.received})")
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> list[Event]:
        """Stop the follower (it must end within 1 s) and parse what it yielded."""
        self.stop.set()
        t0 = time.monotonic()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "follow() did not end after stop was set"
        assert time.monotonic() - t0 < 1.0
        self.check()
        return parse_chunks(self.chunks)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def pieces(data: bytes, rng: random.Random, largest: int = 300) -> Iterator[bytes]:
    """``data`` cut at random points: mid-line, mid-hex-pair, mid-prefix."""
    pos = 0
    while pos < len(data):
        n = rng.randint(1, largest)
        yield data[pos : pos + n]
        pos += n


def append(f: Any, data: bytes, rng: random.Random, pause: float = 0.2) -> None:
    """Write ``data`` in random pieces, sleeping 1 ms after about ``pause`` of them."""
    for piece in pieces(data, rng):
        f.write(piece)
        if rng.random() < pause:
            time.sleep(0.001)


# ------------------------------------------------------------------ appends


@MODES
def test_partial_appends_split_mid_line_and_mid_hex(tmp_path: Path, use_inotify: bool) -> None:
    path = tmp_path / "103-swtpm.log"
    path.touch()
    rng = random.Random(1)
    cuts = list(pieces(LOG, rng, largest=200))
    # the cuts really fall inside lines and between the two digits of a hex byte
    ends = [len(b"".join(cuts[: i + 1])) for i in range(len(cuts) - 1)]
    hexdigits = b"0123456789ABCDEF"
    assert any(LOG[e - 1] in hexdigits and LOG[e] in hexdigits for e in ends)
    with Consumer(path, use_inotify=use_inotify) as c, open(path, "ab", buffering=0) as f:
        for piece in cuts:
            f.write(piece)
            if rng.random() < 0.2:
                time.sleep(0.001)
        c.wait_bytes(len(LOG))
        events = c.finish()
    assert c.data == LOG
    assert keys(events) == keys(parse_bytes(LOG))
    assert len(keys(events)) == 450


# ------------------------------------------------------------ copytruncate


@MODES
def test_copytruncate_while_writing_continues(tmp_path: Path, use_inotify: bool) -> None:
    """logrotate copytruncate: copy the log away, truncate it to 0, the writer
    (O_APPEND, like swtpm) goes on at once. Truncation points are at arbitrary
    line boundaries, also inside records."""
    path = tmp_path / "103-swtpm.log"
    rng = random.Random(2)
    cut_lines = [300, 1234, 1235, 2500]
    copies: list[Path] = []
    with Consumer(path, use_inotify=use_inotify) as c, open(path, "ab", buffering=0) as f:
        written = 0
        start = 0
        for n, cut in enumerate(cut_lines + [len(LINES)]):
            part = text(LINES[start:cut])
            append(f, part, rng)
            written += len(part)
            start = cut
            if cut == len(LINES):
                break
            # logrotate runs when everything so far has been read (data
            # written between its copy and its truncate would be lost by
            # copytruncate itself, not by the follower)
            c.wait_bytes(written)
            copies.append(tmp_path / f"103-swtpm.log.{n + 1}")
            shutil.copyfile(path, copies[-1])
            os.truncate(path, 0)
        c.wait_bytes(len(LOG))
        events = c.finish()
    assert b"".join(p.read_bytes() for p in copies) + path.read_bytes() == LOG
    assert c.data == LOG
    assert keys(events) == keys(parse_bytes(LOG))
    assert c.count("truncated") == len(cut_lines)


def test_truncated_and_regrown_past_our_offset_before_we_look(tmp_path: Path) -> None:
    """The file shrank and grew beyond our offset between two looks: the
    bytes before our offset changed, so it is read again from 0 (size alone
    cannot tell)."""
    path = tmp_path / "103-swtpm.log"
    first, second = text(LINES[:200]), text(LINES[200:900])
    assert len(second) > len(first)
    path.write_bytes(first)
    stop = threading.Event()
    timer = threading.Timer(DEADLINE, stop.set)
    timer.start()
    events: list[str] = []
    try:
        gen = follow(path, stop, use_inotify=False, on_event=events.append)
        got = b""
        while len(got) < len(first):
            got += next(gen)
        assert got == first
        with open(path, "r+b") as f:  # truncate and rewrite in one go
            f.truncate(0)
            f.write(second)
        got = b""
        while len(got) < len(second):
            got += next(gen)
        assert got == second
        gen.close()
    finally:
        timer.cancel()
    assert any(e.startswith("truncated") and "rewritten" in e for e in events)


# ----------------------------------------------------------------- rotation


@MODES
def test_rotation_drains_the_old_file_first(tmp_path: Path, use_inotify: bool) -> None:
    """Rename away + new file at the path; the writer keeps writing to the
    renamed file for a while (as a writer does until it reopens): all of that
    comes before the new file's content."""
    path = tmp_path / "103-swtpm.log"
    rng = random.Random(3)
    cuts = [(400, 40), (1500, 3), (2600, 100)]  # (rename at line, lines still written to the old file)
    f = open(path, "ab", buffering=0)
    try:
        with Consumer(path, use_inotify=use_inotify) as c:
            start = 0
            for n, (cut, late) in enumerate(cuts):
                append(f, text(LINES[start:cut]), rng)
                os.rename(path, tmp_path / f"103-swtpm.log.{n + 1}")
                append(f, text(LINES[cut : cut + late]), rng)
                time.sleep(0.01)
                f.close()
                f = open(path, "ab", buffering=0)
                start = cut + late
            append(f, text(LINES[start:]), rng)
            c.wait_bytes(len(LOG))
            events = c.finish()
    finally:
        f.close()
    assert c.data == LOG
    assert keys(events) == keys(parse_bytes(LOG))
    assert c.count("rotated") == len(cuts)


# -------------------------------------------------------- delete + recreate


@MODES
def test_delete_and_recreate_two_vm_starts(tmp_path: Path, use_inotify: bool) -> None:
    """VM stop deletes the log, VM start creates it again with a new [id=..]
    prefix: two runs, every record of both."""
    path = tmp_path / "103-swtpm.log"
    rng = random.Random(4)
    with Consumer(path, use_inotify=use_inotify) as c:
        with open(path, "ab", buffering=0) as f:
            append(f, text(LINES[:RUN2]), rng)
        path.unlink()
        c.wait_event("deleted")
        time.sleep(0.1)  # the VM is down for a while
        with open(path, "ab", buffering=0) as f:
            append(f, text(LINES[RUN2:]), rng)
        c.wait_bytes(len(LOG))
        events = c.finish()
    assert c.data == LOG
    assert keys(events) == keys(parse_bytes(LOG))
    runs = [e for e in events if isinstance(e, RunStart)]
    assert [r.epoch for r in runs] == [1795664634, 1795664639]
    assert c.count("re-created") == 1


SWITCHES = ["rotate", "truncate", "delete"]


@pytest.mark.parametrize("switch", SWITCHES)
def test_switch_inside_a_line_ends_that_line(tmp_path: Path, switch: str) -> None:
    """swtpm was killed in the middle of a hex line; the next file (rotated,
    truncated or re-created) starts with the next VM's records. The follower
    yields b"\\n" between them, so the next run's first header stays intact."""
    path = tmp_path / "103-swtpm.log"
    last = LINES[RUN2 - 1]
    partial = last[: len(PREFIX_1) + 5]  # "[id=...]  00 0": cut inside a hex pair
    assert partial.endswith(b" 0") and last[len(partial)] in b"0123456789ABCDEF"
    before = text(LINES[: RUN2 - 1]) + partial
    after = text(LINES[RUN2:])
    with Consumer(path, use_inotify=True) as c:
        path.write_bytes(before)
        c.wait_bytes(len(before))
        if switch == "rotate":
            path.rename(tmp_path / "103-swtpm.log.1")
            path.write_bytes(after)
        elif switch == "truncate":
            os.truncate(path, 0)
            with open(path, "ab") as f:
                f.write(after)
        else:
            path.unlink()
            c.wait_event("deleted")
            path.write_bytes(after)
        c.wait_bytes(len(before) + 1 + len(after))
        events = c.finish()
    assert c.data == before + b"\n" + after
    assert keys(events) == keys(parse_bytes(before + b"\n" + after))
    # the second VM boot comes through whole
    run2 = [k for k in keys(events) if k[0] == 1]
    assert run2 == [k for k in keys(parse_bytes(LOG)) if k[0] == 1]
    assert run2 and all(k[4] for k in run2)


# ------------------------------------------------------- start conditions


@MODES
@pytest.mark.parametrize("missing_dir", [False, True], ids=["file-missing", "dir-missing"])
def test_file_created_after_follow_starts(tmp_path: Path, use_inotify: bool, missing_dir: bool) -> None:
    """No VM running yet: the log (even its directory) appears later and is
    read from its start, also with from_start=False (all of it is new)."""
    directory = tmp_path / "qemu-server" if missing_dir else tmp_path
    path = directory / "103-swtpm.log"
    rng = random.Random(5)
    with Consumer(path, use_inotify=use_inotify, from_start=False) as c:
        c.wait_event("waiting for")
        time.sleep(0.1)
        directory.mkdir(exist_ok=True)
        with open(path, "ab", buffering=0) as f:
            append(f, LOG, rng)
        c.wait_bytes(len(LOG))
        events = c.finish()
    assert c.data == LOG
    assert keys(events) == keys(parse_bytes(LOG))
    assert c.count("created") == 1


@MODES
def test_from_start_false_skips_the_backlog(tmp_path: Path, use_inotify: bool) -> None:
    """Only new records: the backlog, including the rest of a line that was
    being written, is skipped; the new records come through whole."""
    path = tmp_path / "103-swtpm.log"
    k = HEADERS[200]  # a record starts at line k
    half = len(LINES[k - 1]) // 2
    path.write_bytes(text(LINES[: k - 1]) + LINES[k - 1][:half])
    rng = random.Random(6)
    with Consumer(path, use_inotify=use_inotify, from_start=False) as c:
        c.wait_event("opened")
        with open(path, "ab", buffering=0) as f:
            append(f, LINES[k - 1][half:] + text(LINES[k:]), rng)
        new = text(LINES[k:])
        c.wait_bytes(len(new))
        events = c.finish()
    assert c.data == new
    assert keys(events) == keys(parse_bytes(new))
    assert len(keys(events)) == sum(1 for h in HEADERS if h >= k)


# --------------------------------------------------------------------- stop


@MODES
@pytest.mark.parametrize("state", ["idle", "waiting-for-file"])
def test_stop_is_prompt(tmp_path: Path, use_inotify: bool, state: str) -> None:
    path = tmp_path / "103-swtpm.log"
    if state == "idle":
        path.write_bytes(LOG)
    stop = threading.Event()
    out: list[bytes] = []
    thread = threading.Thread(
        target=lambda: out.extend(follow(path, stop, use_inotify=use_inotify)), daemon=True
    )
    thread.start()
    if state == "idle":
        wait_until(lambda: sum(map(len, out)) == len(LOG), "the backlog")
    time.sleep(0.2)
    t0 = time.monotonic()
    stop.set()
    thread.join(DEADLINE)
    took = time.monotonic() - t0
    assert not thread.is_alive()
    assert took < 0.5, f"follow() took {took:.3f} s to stop"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_closing_the_generator_releases_file_and_watch(tmp_path: Path) -> None:
    path = tmp_path / "103-swtpm.log"
    path.write_bytes(LOG)
    before = len(os.listdir("/proc/self/fd"))
    gen = follow(path, threading.Event())
    assert next(gen)
    assert len(os.listdir("/proc/self/fd")) > before
    gen.close()
    assert len(os.listdir("/proc/self/fd")) == before


# ------------------------------------------------------------------ backlog


def test_10mb_backlog_streams_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big-swtpm.log"
    reps = 10 * 1024 * 1024 // len(LOG) + 1
    big = LOG * reps
    path.write_bytes(big)
    stop = threading.Event()
    timer = threading.Timer(DEADLINE, stop.set)
    timer.start()
    parser = LogParser()
    events: list[Event] = []
    sizes: list[int] = []
    try:
        for chunk in follow(path, stop):
            sizes.append(len(chunk))
            events += parser.feed(chunk)
            if sum(sizes) >= len(big):
                break
    finally:
        timer.cancel()
    events += parser.close()
    assert sum(sizes) == len(big) > 10 * 1024 * 1024
    assert max(sizes) <= CHUNK_SIZE and len(sizes) >= 10
    assert keys(events) == keys(parse_bytes(big))
    assert len(keys(events)) == 450 * reps


def test_read_once_reads_to_the_end_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "103-swtpm.log"
    path.write_bytes(LOG)
    stop = threading.Event()
    chunks = list(read_once(path, stop, chunk_size=4096))
    assert b"".join(chunks) == LOG and max(map(len, chunks)) <= 4096
    assert keys(parse_chunks(chunks)) == keys(parse_bytes(LOG))
    gen = read_once(path, stop, chunk_size=4096)
    next(gen)
    stop.set()
    assert list(gen) == []
    with pytest.raises(FileNotFoundError):
        next(read_once(tmp_path / "nope.log", threading.Event()))


# -------------------------------------------------------------------- errors


def test_permission_error_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "103-swtpm.log"
    path.write_bytes(LOG)

    def denied(name: Any, *args: Any, **kwargs: Any) -> int:
        raise PermissionError(13, "Permission denied", os.fspath(name))

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(PermissionError, match="Permission denied"):
        next(follow(path, threading.Event()))
    with pytest.raises(PermissionError):
        next(read_once(path, threading.Event()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and uids")
def test_unreadable_log_raises_permission_error(tmp_path: Path) -> None:
    """A real EACCES: the file is mode 0 (and, as root, we drop to uid
    nobody in a child, for which root's tmp directory is closed too)."""
    path = tmp_path / "103-swtpm.log"
    path.write_bytes(LOG)
    path.chmod(0)
    pid = os.fork()
    if pid == 0:  # child: report by exit status only
        code = 3
        try:
            if os.geteuid() == 0:
                os.setegid(65534)
                os.seteuid(65534)
            next(follow(path, threading.Event()))
            code = 1
        except PermissionError:
            code = 0
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the child hung")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0, "expected PermissionError in the child"


def test_falls_back_to_polling_without_inotify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(directory: str, name: str) -> None:
        raise OSError(38, "inotify is Linux only")

    monkeypatch.setattr(follow_mod, "DirWatch", unavailable)
    path = tmp_path / "103-swtpm.log"
    rng = random.Random(7)
    with Consumer(path) as c, open(path, "ab", buffering=0) as f:
        append(f, LOG, rng)
        c.wait_bytes(len(LOG))
        events = c.finish()
    assert keys(events) == keys(parse_bytes(LOG))
    assert c.count("inotify unavailable") == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")
def test_inotify_wakes_on_our_file_only(tmp_path: Path) -> None:
    from swtpm_extcap.sources.inotify import DirWatch

    watch = DirWatch(str(tmp_path), "103-swtpm.log")
    try:
        assert watch.watching
        assert not watch.wait(0.01)
        (tmp_path / "104-swtpm.log").write_bytes(b"other VM\n")
        assert not watch.wait(0.05)  # another VM's log does not wake us
        (tmp_path / "104-swtpm.log").write_bytes(b"other VM again\n")
        assert watch.wait(0.5, any_name=True)  # unless asked to
        (tmp_path / "103-swtpm.log").write_bytes(b"ours\n")
        t0 = time.monotonic()
        assert watch.wait(1.0)
        assert time.monotonic() - t0 < 0.5
    finally:
        watch.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")
def test_inotify_watch_comes_back_with_its_directory(tmp_path: Path) -> None:
    from swtpm_extcap.sources.inotify import DirWatch

    directory = tmp_path / "qemu-server"
    watch = DirWatch(str(directory), "103-swtpm.log")
    try:
        assert not watch.watching  # not there yet: no error
        directory.mkdir()
        assert not watch.wait(0.01)
        assert watch.watching
        shutil.rmtree(directory)
        assert watch.wait(1.0)  # the directory itself went away
        assert not watch.watching
        directory.mkdir()
        watch.wait(0.01)
        assert watch.watching
        (directory / "103-swtpm.log").write_bytes(b"ours\n")
        assert watch.wait(1.0)
    finally:
        watch.close()


# ---------------------------------------------------------------- real swtpm

@pytest.mark.skipif(bool(realtpm.missing_tools("swtpm", "tpm2_startup")),
                    reason="needs swtpm and tpm2-tools")
def test_real_swtpm_log_followed_across_a_restart(tmp_path: Path) -> None:
    """A real swtpm writes the log while tpm2-tools run; it is stopped and
    started again (second run appends with a new prefix). The records seen
    live equal the records of the final file."""
    log = tmp_path / "swtpm.log"
    with Consumer(log) as c:
        c.wait_event("waiting for")  # following starts before the "VM" does
        for epoch in (1732600000, 1732600100):
            with realtpm.start_swtpm(tmp_path, prefix=f"[id={epoch}] ") as sw:
                assert sw.log_path == log
                realtpm.run_workload(sw, tmp_path)
        c.wait_bytes(log.stat().st_size)
        events = c.finish()
    final = log.read_bytes()
    assert c.data == final
    assert keys(events) == keys(parse_bytes(final))
    runs = [e for e in events if isinstance(e, RunStart)]
    assert [r.epoch for r in runs] == [1732600000, 1732600100]
    commands = [k for k in keys(events) if k[1].value == "SWTPM_IO_Read"]
    assert len(commands) == realtpm.count_log_commands(log) > 2 * len(realtpm.WORKLOAD)


# ------------------------------------------- typed notices and the local Source


def _drain(chunks: Iterator[object], stop: threading.Event, until: Callable[[list[object]], bool]) -> list[object]:
    got: list[object] = []
    deadline = time.monotonic() + DEADLINE
    for chunk in chunks:
        if chunk != b"":
            got.append(chunk)
        if until(got):
            break
        assert time.monotonic() < deadline, got
    stop.set()
    return got


def test_follow_chunks_say_truncated_rotated_recreated(tmp_path: Path) -> None:
    """The switches as typed notices, each after the old file's bytes (and the b"\\n"
    that ends a cut line), before the new file's."""
    from swtpm_extcap.sources.base import Notice
    from swtpm_extcap.sources.follow import follow_chunks

    path = tmp_path / "swtpm.log"
    path.write_bytes(LINES[0] + b"partial")
    stop = threading.Event()
    chunks = follow_chunks(path, stop, use_inotify=False, poll_interval=0.01)
    assert next(chunks) == LINES[0] + b"partial"
    path.write_bytes(LINES[1])  # truncated and rewritten: same inode
    rest = [next(chunks), next(chunks), next(chunks)]
    assert rest == [b"\n", Notice.TRUNCATED, LINES[1]]
    path.rename(tmp_path / "old.log")
    path.write_bytes(LINES[2])
    assert [next(chunks), next(chunks)] == [Notice.ROTATED, LINES[2]]
    path.unlink()
    time.sleep(0.05)
    path.write_bytes(LINES[3])
    assert [next(chunks), next(chunks)] == [Notice.RECREATED, LINES[3]]
    stop.set()
    chunks.close()


def test_local_file_marks_the_backlog_end_at_the_byte_it_measured(tmp_path: Path) -> None:
    from swtpm_extcap.sources.base import Notice
    from swtpm_extcap.sources.local import LocalFile

    path = tmp_path / "swtpm.log"
    path.write_bytes(text(LINES[:10]))
    source = LocalFile(str(path), use_inotify=False)
    backlog = source.backlog()
    assert backlog.size == len(text(LINES[:10])) and backlog.mtime == path.stat().st_mtime
    with open(path, "ab") as fh:  # appended after the capture started: live
        fh.write(text(LINES[10:12]))
    stop = threading.Event()
    got = _drain(iter(source.follow(stop)), stop, lambda g: b"".join(
        c for c in g if isinstance(c, bytes)) == text(LINES[:12]))
    done = got.index(Notice.BACKLOG_DONE)
    assert b"".join(got[:done]) == text(LINES[:10])  # type: ignore[arg-type]
    assert b"".join(got[done + 1:]) == text(LINES[10:12])  # type: ignore[arg-type]


def test_local_file_errors_explain_themselves(tmp_path: Path) -> None:
    from swtpm_extcap.sources.local import LocalFile

    source = LocalFile(str(tmp_path / "gone.log"))
    assert source.backlog().mtime is None  # not there yet: a follow waits for it
    assert "setfacl" in source.explain(PermissionError(13, "Permission denied"))
    assert source.explain(FileNotFoundError(2, "x")).endswith("disappeared before it could be read")
    with pytest.raises(swtpm_extcap.errors.UserError, match="is a directory"):
        LocalFile(str(tmp_path)).backlog()
