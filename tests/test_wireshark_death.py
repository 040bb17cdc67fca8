"""Wireshark dies (killed, no stop signal): the extcap exits within 1 s, whatever the log does.

A killed Wireshark sends the extcap nothing, and dumpcap, which reads the fifo,
lives on as long as the fifo's writer does; on a quiet log nothing is written,
so no write fails either. The extcap watches for it
(:mod:`swtpm_extcap.extcap.signals`): its parent process gone, or the fifo's
reader gone. Here the parent (a shell standing in for Wireshark, and a real
tshark) is killed with SIGKILL while a log is quiet, busy, missing, paced or
not read any more; the extcap must be gone within 1 s, with nothing on stderr,
and the fifo's reader must see its end (so dumpcap ends too).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, require_tshark
from test_extcap import DEADLINE_S, DEMO, FifoReader, extcap_env, make_fifo, split_runs, write_config
from test_stop import Appender

from swtpm_extcap.wireshark.install import write_launcher

#: the issue's bound
EXIT_WITHIN_S = 1.0


def gone(pid: int) -> bool:
    """The process has ended (no longer there, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in (b"Z", b"X")


def wait_gone(pid: int, timeout: float) -> float | None:
    """Seconds until ``pid`` ended, or None if it still runs after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if gone(pid):
            return time.monotonic() - start
        time.sleep(0.005)
    return None


class Parent:
    """A shell that starts the extcap in the background and waits: Wireshark's stand-in."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        self.stderr = stderr
        with open(stderr, "wb") as err:
            self.proc = subprocess.Popen(
                ["sh", "-c", '"$@" & echo $!; wait', "sh", sys.executable, "-m", "swtpm_extcap",
                 *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env,
            )
        assert self.proc.stdout is not None
        self.extcap = int(self.proc.stdout.readline())

    def kill(self) -> float:
        """SIGKILL the parent; returns when it was sent."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return time.monotonic()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not gone(self.extcap):
            os.kill(self.extcap, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """``swtpm-vm``: a log behind a settings glob (its content is up to the test)."""
    log = tmp_path / "vm" / "swtpm.log"
    log.parent.mkdir()
    yield log, extcap_env(write_config(tmp_path, f"{tmp_path}/*/swtpm.log"))


def capture_args(fifo: Path, interface: str, *extra: str) -> list[str]:
    return ["--capture", "--extcap-interface", interface, "--fifo", str(fifo), *extra]


@pytest.mark.parametrize("log_state", ["quiet", "empty", "missing", "busy"])
def test_parent_killed_while_following(
    tmp_path: Path, vm: tuple[Path, dict[str, str]], log_state: str
) -> None:
    log, env = vm
    if log_state in ("quiet", "missing"):
        log.write_bytes(split_runs(DEMO)[0])  # a backlog, then nothing more
    elif log_state == "empty":
        log.write_bytes(b"")
    appender = Appender(log) if log_state == "busy" else None
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)  # dumpcap: reads until EOF, outlives Wireshark
    parent = Parent(capture_args(fifo, "swtpm-vm"), env, tmp_path / "stderr")
    try:
        reader.wait_for(lambda: len(reader.data) > (100_000 if appender else 0))
        if log_state == "missing":
            log.unlink()  # gone after the capture began: the follow waits for it
        time.sleep(0.3)  # in the follow loop
        killed = parent.kill()
        took = wait_gone(parent.extcap, EXIT_WITHIN_S)
        assert took is not None, f"the extcap still runs {EXIT_WITHIN_S} s after its parent died"
        assert reader.eof.wait(EXIT_WITHIN_S), "the fifo's reader saw no end"
        print(f"\n[death] {log_state}: extcap gone {took * 1000:.0f} ms after its parent;"
              f" reader's EOF {(reader.closed_at - killed) * 1000:.0f} ms")
    finally:
        if appender is not None:
            appender.close()
        parent.cleanup()
    assert parent.stderr.read_bytes() == b""


def test_parent_killed_during_a_slow_paced_replay(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    parent = Parent(capture_args(fifo, "swtpm-demo", "--pace-ms", "5000"), extcap_env(),
                    tmp_path / "stderr")
    try:
        reader.wait_for(lambda: len(reader.data) > 0)
        time.sleep(0.3)
        parent.kill()
        assert wait_gone(parent.extcap, EXIT_WITHIN_S) is not None
        assert reader.eof.wait(EXIT_WITHIN_S)
    finally:
        parent.cleanup()
    assert parent.stderr.read_bytes() == b""


def test_parent_killed_while_the_reader_reads_no_more(tmp_path: Path) -> None:
    """A reader that keeps the fifo open without reading: the extcap's write blocks;
    the parent's death still ends it (the grace timer interrupts the write)."""
    fifo = make_fifo(tmp_path)
    opened = threading.Event()
    holder: list[object] = []

    def open_and_stall() -> None:
        holder.append(open(fifo, "rb"))  # noqa: SIM115 - kept open, never read
        opened.set()

    threading.Thread(target=open_and_stall, daemon=True).start()
    parent = Parent(capture_args(fifo, "swtpm-demo", "--pace-ms", "0", "--mode", "follow"),
                    extcap_env(), tmp_path / "stderr")
    try:
        assert opened.wait(DEADLINE_S)
        time.sleep(0.5)  # the demo fills the pipe: the writer blocks
        assert not gone(parent.extcap)
        parent.kill()
        assert wait_gone(parent.extcap, EXIT_WITHIN_S) is not None
    finally:
        parent.cleanup()
        for f in holder:
            f.close()  # type: ignore[attr-defined]
    assert parent.stderr.read_bytes() == b""


def test_reader_gone_on_a_quiet_log(tmp_path: Path, vm: tuple[Path, dict[str, str]]) -> None:
    """The fifo's reader closes while nothing is written (and no signal comes): the
    extcap notices without a write and exits 0 within 1 s."""
    log, env = vm
    log.write_bytes(split_runs(DEMO)[0])
    fifo = make_fifo(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "swtpm_extcap", *capture_args(fifo, "swtpm-vm")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        with open(fifo, "rb", buffering=0) as reader:  # the whole backlog, then quiet
            received, quiet_since = 0, time.monotonic()
            while time.monotonic() - quiet_since < 0.5:
                ready, _, _ = select.select([reader], [], [], 0.05)
                if ready:
                    chunk = reader.read(65536)
                    assert chunk, "the extcap ended by itself"
                    received, quiet_since = received + len(chunk), time.monotonic()
            assert received > 0
        closed = time.monotonic()
        out, err = proc.communicate(timeout=DEADLINE_S)
        took = time.monotonic() - closed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert took < EXIT_WITHIN_S, f"exited {took:.2f} s after the reader went"


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is ``pid``."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rpartition(b")")[2].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    out[int(entry)] = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_tshark_killed_on_a_quiet_log(tmp_path: Path, vm: tuple[Path, dict[str, str]]) -> None:
    """The real thing: tshark runs the installed launcher and dumpcap; tshark is killed
    (SIGKILL) while the log is quiet. The extcap and then dumpcap end within 1 s."""
    require_tshark()
    log, env = vm
    log.write_bytes(split_runs(DEMO)[0])
    home = tmp_path / "home"
    write_launcher(home / ".config" / "wireshark" / "extcap" / "swtpm-extcap", sys.executable)
    env = dict(env, HOME=str(home), PYTHONPATH=str(REPO))
    out = tmp_path / "out.pcapng"
    tshark = subprocess.Popen(["tshark", "-i", "swtpm-vm", "-w", str(out)], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + DEADLINE_S
        extcap = dumpcap = 0
        def started() -> bool:
            return bool(extcap and dumpcap and out.exists() and out.stat().st_size)

        while time.monotonic() < deadline and not started():
            for pid, cmd in _children(tshark.pid).items():
                if "--capture" in cmd and "swtpm-vm" in cmd:
                    extcap = pid
                elif "dumpcap" in cmd:
                    dumpcap = pid
            time.sleep(0.05)
        assert started(), "the capture never started"
        time.sleep(0.3)  # the backlog is through; the log stays quiet
        tshark.kill()
        tshark.wait()
        took = wait_gone(extcap, EXIT_WITHIN_S)
        assert took is not None, "the extcap still runs 1 s after tshark was killed"
        after = wait_gone(dumpcap, EXIT_WITHIN_S)
        assert after is not None, "dumpcap still runs 1 s after the extcap ended"
        print(f"\n[death] tshark killed: extcap gone after {took * 1000:.0f} ms,"
              f" dumpcap {after * 1000:.0f} ms after that")
    finally:
        if tshark.poll() is None:
            tshark.kill()
            tshark.wait()
        for pid in (extcap, dumpcap):
            if pid and not gone(pid):
                os.kill(pid, signal.SIGKILL)
        if tshark.stderr is not None:
            tshark.stderr.close()


def test_a_fifo_that_vanished_is_not_made_anew(tmp_path: Path) -> None:
    """Wireshark made the fifo and, dying, removed it before the extcap opened it: the
    extcap makes no file of its own there (a path new at its start still is one,
    for a capture run by hand into a file)."""
    from swtpm_extcap.errors import UserError
    from swtpm_extcap.extcap.fifo import Fifo

    fifo_path = make_fifo(tmp_path)
    fifo = Fifo(str(fifo_path))
    fifo_path.unlink()
    with pytest.raises(UserError, match="cannot open the fifo"):
        fifo.open(threading.Event())
    assert not fifo_path.exists()

    by_hand = tmp_path / "by-hand.pcapng"
    fresh = Fifo(str(by_hand))
    out = fresh.open(threading.Event())
    assert out is not None and by_hand.is_file()
    fresh.close()
