"""A clean stop is normal: SIGTERM, SIGINT or a closed fifo end a capture within 1 s,
with exit 0, nothing on stderr, no traceback, and a pcapng that tshark reads to its end."""

from __future__ import annotations

import signal
import sys
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import read_frames
from test_extcap import (
    DEADLINE_S,
    DEMO,
    FifoReader,
    extcap_env,
    make_fifo,
    split_runs,
    start_extcap,
    write_config,
)

#: the issue's bound on any stop
STOP_WITHIN_S = 1.0


class Appender:
    """A VM that keeps logging: appends the demo's run 2, record by record, in a loop."""

    def __init__(self, log: Path, every_s: float = 0.002) -> None:
        self.log = log
        self.every_s = every_s
        self.stop = threading.Event()
        self.records = 0
        text = split_runs(DEMO)[1]
        # whole records: a header line and its hex lines
        chunks: list[bytes] = []
        for line in text.splitlines(keepends=True):
            if b"length" in line or not chunks:
                chunks.append(line)
            else:
                chunks[-1] += line
        self.chunks = chunks
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open(self.log, "ab", buffering=0) as fh:
            while not self.stop.is_set():
                for chunk in self.chunks:
                    if self.stop.is_set():
                        return
                    fh.write(chunk)
                    self.records += 1
                    time.sleep(self.every_s)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(DEADLINE_S)


@pytest.fixture
def busy_vm(tmp_path: Path) -> Iterator[tuple[dict[str, str], Appender]]:
    """A log (run 1 of the demo) being appended to, behind a config glob: swtpm-vm."""
    log = tmp_path / "vm" / "swtpm.log"
    log.parent.mkdir()
    log.write_bytes(split_runs(DEMO)[0])
    env = extcap_env(write_config(tmp_path, f"{tmp_path}/*/swtpm.log"))
    appender = Appender(log)
    try:
        yield env, appender
    finally:
        appender.close()


def _finish(proc: subprocess.Popen[bytes], since: float) -> tuple[float, bytes, bytes]:
    """Wait for the extcap; returns (seconds since ``since``, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - since, out, err


def _check_pcapng(tmp_path: Path, data: bytes) -> int:
    """tshark reads the whole capture without complaint; returns its TPM commands."""
    pcap = tmp_path / "stopped.pcapng"
    pcap.write_bytes(data)
    return sum(1 for f in read_frames(pcap) if f.tpm_cc is not None)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_stream(
    tmp_path: Path, busy_vm: tuple[dict[str, str], Appender], sig: int
) -> None:
    env, appender = busy_vm
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-vm", "--fifo", str(fifo), "--ctrl"], env
    )
    reader.wait_for(lambda: len(reader.data) > 100_000)  # backlog and live records flow
    records_before = appender.records
    reader.wait_for(lambda: appender.records > records_before + 20)
    sent = time.monotonic()
    proc.send_signal(sig)
    took, out, err = _finish(proc, sent)
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert took < STOP_WITHIN_S, f"stopped after {took:.2f} s"
    assert _check_pcapng(tmp_path, reader.finish()) > 0


def test_reader_closes_the_fifo_mid_stream(
    tmp_path: Path, busy_vm: tuple[dict[str, str], Appender]
) -> None:
    env, _ = busy_vm
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo, close_after=200_000)
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-vm", "--fifo", str(fifo), "--ctrl"], env
    )
    assert reader.eof.wait(DEADLINE_S)
    took, out, err = _finish(proc, reader.closed_at)
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert took < STOP_WITHIN_S, f"stopped after {took:.2f} s"


def test_reader_closes_the_fifo_during_a_paced_replay(tmp_path: Path) -> None:
    """The demo (paced replay, 50 ms per record): a reader that goes away after the
    first frames is noticed at the next record."""
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo, close_after=2_000)
    proc = start_extcap(["--capture", "--extcap-interface", "swtpm-demo", "--fifo", str(fifo)],
                        extcap_env())
    assert reader.eof.wait(DEADLINE_S)
    took, out, err = _finish(proc, reader.closed_at)
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert took < STOP_WITHIN_S


def test_sigterm_while_a_quiet_log_is_followed(tmp_path: Path) -> None:
    log = tmp_path / "vm" / "swtpm.log"
    log.parent.mkdir()
    log.write_bytes(b"")  # the VM's swtpm has not logged anything yet
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-vm", "--fifo", str(fifo)],
        extcap_env(write_config(tmp_path, f"{tmp_path}/*/swtpm.log")),
    )
    reader.wait_for(lambda: len(reader.data) > 0)  # the pcapng header
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    took, out, err = _finish(proc, sent)
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert took < STOP_WITHIN_S
    assert _check_pcapng(tmp_path, reader.finish()) == 0


def test_sigterm_before_wireshark_opens_the_fifo(tmp_path: Path) -> None:
    """Opening a fifo for writing waits for its reader; a stop must not wait for it."""
    fifo = make_fifo(tmp_path)
    proc = start_extcap(["--capture", "--extcap-interface", "swtpm-demo", "--fifo", str(fifo)],
                        extcap_env())
    time.sleep(0.5)
    assert proc.poll() is None
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    took, out, err = _finish(proc, sent)
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert took < STOP_WITHIN_S


def test_sigterm_during_a_slow_paced_replay(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-demo", "--fifo", str(fifo), "--pace-ms", "5000"],
        extcap_env(),
    )
    reader.wait_for(lambda: len(reader.data) > 0)
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    took, out, err = _finish(proc, sent)
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert took < STOP_WITHIN_S
    reader.finish()


def test_sigterm_while_the_reader_has_stopped_reading(tmp_path: Path) -> None:
    """A reader that keeps the fifo open but reads no more: the extcap's write blocks
    once the pipe is full; a stop signal still ends it within 1 s."""
    fifo = make_fifo(tmp_path)
    opened = threading.Event()
    holder: list[object] = []

    def open_and_stall() -> None:
        holder.append(open(fifo, "rb"))  # noqa: SIM115 - kept open, never read
        opened.set()

    threading.Thread(target=open_and_stall, daemon=True).start()
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-demo", "--fifo", str(fifo),
         "--pace-ms", "0", "--mode", "follow", "--ctrl"],
        extcap_env(),
    )
    try:
        assert opened.wait(DEADLINE_S)
        time.sleep(0.5)  # the demo (160 KB of log) fills the pipe: the writer blocks
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        took, out, err = _finish(proc, sent)
    finally:
        for f in holder:
            f.close()  # type: ignore[attr-defined]
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert took < STOP_WITHIN_S


def test_sigterm_at_once_is_a_clean_stop(tmp_path: Path) -> None:
    """A stop in the first milliseconds (Wireshark's stop right after start) exits 0.

    ``-X importtime`` reports each import as it finishes: the signal is sent as
    soon as the capture's first module after the stop handlers is imported,
    i.e. before argparse, logging and the capture's own imports."""
    fifo = make_fifo(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "swtpm_extcap", "--capture",
         "--extcap-interface", "swtpm-demo", "--fifo", str(fifo)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=extcap_env(),
    )
    assert proc.stderr is not None
    seen = []
    for raw in proc.stderr:
        seen.append(raw)
        if raw.rstrip().endswith(FIRST_IMPORT_AFTER_THE_HANDLERS.encode()):
            proc.send_signal(signal.SIGTERM)
            break
    else:
        raise AssertionError(f"{FIRST_IMPORT_AFTER_THE_HANDLERS} never imported: {seen[-3:]}")
    took, out, err = _finish(proc, time.monotonic())
    assert (proc.returncode, out) == (0, b"")
    assert all(line.startswith(b"import time:") for line in err.splitlines())
    assert took < STOP_WITHIN_S


#: the module the capture imports right after installing its stop handlers
FIRST_IMPORT_AFTER_THE_HANDLERS = "| swtpm_extcap.extcap.protocol"
