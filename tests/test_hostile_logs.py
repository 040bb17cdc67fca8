"""A log path that holds no log: devices, directories, fifos, symlink loops (issue 16).

Reproducers: a path that is (or becomes) a symlink to ``/dev/zero`` or
``/dev/urandom`` (before: 100% CPU forever, no output), a directory or a
symlink loop (before: the capture ended instead of waiting as ``tail -F``
does). Now such a path is never read: at the start of a capture it is one
line on stderr; during a follow it is waited on like a missing file (the old
file still drained), with one line in the debug log, until a regular file is
there again. Each case runs the real follow on real files, and the real
extcap process where the user meets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_extcap import DEADLINE_S, FifoReader, extcap_env, make_fifo
from test_follow import LINES, LOG, Consumer, keys, parse_bytes, text, wait_until

from swtpm_extcap.errors import UserError
from swtpm_extcap.interfaces.lookup import find_interface
from swtpm_extcap.interfaces.settings import Config
from swtpm_extcap.sources.local import LocalFile
from swtpm_extcap.sources.regular import NotAFileError, read_once

Make = Callable[[Path], None]


def to_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def to_urandom(path: Path) -> None:
    path.symlink_to("/dev/urandom")


def to_dir(path: Path) -> None:
    path.mkdir()
    (path / "x").write_text("a folder, not a log")


def to_loop(path: Path) -> None:
    other = path.with_name(path.name + ".loop")
    other.symlink_to(path.name)
    path.symlink_to(other.name)


def to_fifo(path: Path) -> None:
    os.mkfifo(path)


KINDS: dict[str, tuple[Make, str]] = {
    "dev-zero": (to_zero, "a character device"),
    "dev-urandom": (to_urandom, "a character device"),
    "directory": (to_dir, "a directory"),
    "symlink-loop": (to_loop, "a symlink loop"),
    "fifo": (to_fifo, "a fifo"),
}
EACH = pytest.mark.parametrize("kind", list(KINDS))


def clear(path: Path) -> None:
    """Remove what :data:`KINDS` put at ``path``."""
    if path.is_symlink() or path.is_file() or path.is_fifo():
        path.unlink()
    elif path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    loop = path.with_name(path.name + ".loop")
    if loop.is_symlink():
        loop.unlink()


# ---------------------------------------------------------------- the follow


@EACH
def test_the_follow_waits_while_the_path_holds_no_file(tmp_path: Path, kind: str) -> None:
    """The log is rotated away and ``kind`` takes its place: nothing of it is read, the
    old file is drained, and the next regular file at the path is followed from 0."""
    make, what = KINDS[kind]
    path = tmp_path / "103-swtpm.log"
    run1 = text(LINES[: len(LINES) // 2])
    path.write_bytes(run1)
    with Consumer(path, use_inotify=True) as follower:
        follower.wait_bytes(len(run1))
        path.rename(tmp_path / "old.log")
        make(path)
        with open(tmp_path / "old.log", "ab") as old:  # swtpm still writes to the old file
            old.write(LINES[len(LINES) // 2])
        follower.wait_event("not a regular file")
        time.sleep(0.3)  # long enough to read a lot of /dev/zero, were it read
        assert follower.received == len(run1) + len(LINES[len(LINES) // 2])
        assert any(f"is {what}" in e for e in follower.events), follower.events
        clear(path)
        rest = text(LINES[len(LINES) // 2 + 1 :])
        path.write_bytes(rest)  # the VM restarts: a log again
        follower.wait_bytes(len(LOG))
        events = follower.finish()
    assert keys(events) == keys(parse_bytes(LOG))  # nothing lost, nothing of the device


@EACH
def test_a_follow_that_starts_on_such_a_path_waits(tmp_path: Path, kind: str) -> None:
    make, what = KINDS[kind]
    path = tmp_path / "103-swtpm.log"
    make(path)
    with Consumer(path, use_inotify=False, poll_interval=0.01) as follower:
        follower.wait_event("not a regular file")
        assert follower.count("not a regular file") == 1  # said once, not at every look
        time.sleep(0.2)
        assert follower.received == 0
        clear(path)
        path.write_bytes(LOG)
        follower.wait_bytes(len(LOG))
        events = follower.finish()
    assert keys(events) == keys(parse_bytes(LOG))
    assert any(e.startswith("created") for e in follower.events), follower.events


@EACH
def test_read_once_refuses_it(tmp_path: Path, kind: str) -> None:
    make, what = KINDS[kind]
    path = tmp_path / "swtpm.log"
    make(path)
    with pytest.raises(NotAFileError) as caught:
        next(read_once(path, threading.Event()))
    assert caught.value.kind == what


@EACH
def test_the_local_source_says_it_in_one_line(tmp_path: Path, kind: str) -> None:
    make, what = KINDS[kind]
    path = tmp_path / "swtpm.log"
    make(path)
    with pytest.raises(UserError) as caught:
        LocalFile(str(path)).backlog()
    message = str(caught.value)
    assert "\n" not in message
    assert f"{path} is {what}" in message and "not an swtpm log" in message
    if kind.startswith("dev-"):
        assert f"(a symlink to /dev/{kind[4:]})" in message


# ---------------------------------------------------------- the interface


@pytest.fixture
def proxmox(tmp_path: Path) -> tuple[Path, Config]:
    """A Proxmox host's run folder, given in the settings file."""
    run = tmp_path / "run"
    run.mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[local]\nproxmox_dir = "{run}"\npve_conf_dir = "{tmp_path}/conf"\n')
    return run, Config(path=cfg, proxmox_dir=str(run), pve_conf_dir=str(tmp_path / "conf"))


@EACH
def test_a_vm_whose_log_is_no_file_is_one_clear_line(
    tmp_path: Path, proxmox: tuple[Path, Config], kind: str
) -> None:
    run, config = proxmox
    make, what = KINDS[kind]
    make(run / "103-swtpm.log")
    with pytest.raises(UserError) as caught:
        find_interface("swtpm-103", config)
    message = str(caught.value)
    assert message.startswith(f"no interface swtpm-103: {run / '103-swtpm.log'} is {what}")
    assert "is the VM running" not in message  # not the message of a missing log


@pytest.mark.parametrize("kind", ["dev-zero", "dev-urandom", "directory"])
@pytest.mark.parametrize("mode", ["follow", "replay"])
def test_capturing_it_ends_at_once_with_one_line(
    tmp_path: Path, proxmox: tuple[Path, Config], kind: str, mode: str
) -> None:
    """The real extcap: exit 1 within the deadline, one line on stderr, no output."""
    run, config = proxmox
    make, what = KINDS[kind]
    make(run / "103-swtpm.log")
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--extcap-interface", "swtpm-103",
         "--fifo", str(fifo), "--mode", mode],
        env=extcap_env(config.path), capture_output=True, timeout=DEADLINE_S,
    )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and f"is {what}" in err, err
    assert reader.finish() == b""  # Wireshark's reader released, nothing written


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize("kind", ["dev-zero", "dev-urandom"])
def test_a_capture_whose_log_becomes_a_device_stays_idle(
    tmp_path: Path, proxmox: tuple[Path, Config], kind: str
) -> None:
    """The reproducer: during a capture the log path becomes a symlink to /dev/zero.
    Before, the extcap read it at full speed forever; now it reads none of it, stays
    small and idle, and goes on with the next regular log at the path."""
    run, config = proxmox
    log = run / "103-swtpm.log"
    first = text(LINES[: len(LINES) // 2])
    log.write_bytes(first)
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--extcap-interface", "swtpm-103",
         "--fifo", str(fifo)],
        env=extcap_env(config.path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        reader.wait_quiet()
        before = len(reader.data)
        log.unlink()
        KINDS[kind][0](log)
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        time.sleep(2.0)
        cpu = _cpu_seconds(proc.pid) - cpu0
        elapsed = time.monotonic() - t0
        rss = _rss_mb(proc.pid)
        assert len(reader.data) == before, "bytes of the device reached the capture"
        assert cpu < 0.5 * elapsed, f"{cpu:.2f} s CPU in {elapsed:.2f} s: it is reading the device"
        assert rss < 64, f"RSS {rss:.0f} MB"
        print(f"\n[hostile] log -> /dev/{kind[4:]}: {cpu * 1000:.0f} ms CPU in {elapsed:.1f} s,"
              f" RSS {rss:.1f} MB")
        log.unlink()
        log.write_bytes(text(LINES[len(LINES) // 2 :]))  # a regular log again
        wait_until(lambda: len(reader.data) > before + 1000, "records of the new log")
        assert proc.poll() is None
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0 and err == b""
