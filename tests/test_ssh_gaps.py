"""Gaps told, not hidden: an SSH link that goes down and comes back, and a log rotated while it
is down (the rest read from <log>.1, or the bytes that may be missing said), against a real sshd
whose listener is frozen (SIGSTOP) while its connections are killed."""

from __future__ import annotations

import os
import signal
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import SshEnv, ssh_env  # noqa: F401  (fixture)
from test_ssh_source import Follower

from swtpm_extcap.pcapng.notice import NOTICE_PORT, notice_frame
from swtpm_extcap.sources.base import Gap, Notice
from swtpm_extcap.sources.ssh import SSHSource


@pytest.fixture
def share(ssh_env: SshEnv, request: pytest.FixtureRequest) -> Iterator[Path]:
    folder = ssh_env.share / ("gap-" + request.node.name[:40])
    folder.mkdir()
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class Outage:
    """The host away: sshd's listener frozen, every open connection killed; back on exit."""

    def __init__(self, env: SshEnv) -> None:
        self.env = env

    def __enter__(self) -> Outage:
        proc = self.env.sshd.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        assert self.env.sshd.kill_connections() >= 1
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self.env.sshd.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGCONT)


def gaps(follower: Follower) -> list[str]:
    with follower.lock:
        return [i.text for i in follower.items if isinstance(i, Gap)]


def _source(env: SshEnv, path: Path, wake: str = "inotify") -> SSHSource:
    return SSHSource(env.params(connect_timeout=1.0), str(path), wake=wake,  # type: ignore[arg-type]
                     backoff_s=(0.0, 0.3))


@pytest.mark.parametrize("wake", ["inotify", "poll"])
def test_link_down_and_back_is_told_and_nothing_is_lost(ssh_env: SshEnv, share: Path,
                                                        wake: str) -> None:
    log = share / "vm.log"
    log.write_bytes(b"one\n")
    follower = Follower(_source(ssh_env, log, wake))
    follower.wait_for(lambda: follower.data() == b"one\n")
    with Outage(ssh_env):
        follower.wait_for(lambda: len(gaps(follower)) == 1, timeout=20)
        with open(log, "ab") as fh:
            fh.write(b"two, written while the link is down\n")
    follower.wait_for(lambda: len(gaps(follower)) == 2, timeout=30)
    follower.wait_for(lambda: follower.data().endswith(b"down\n"))
    with open(log, "ab") as fh:
        fh.write(b"three\n")
    follower.wait_for(lambda: follower.data().endswith(b"three\n"))
    follower.end()
    down, back = gaps(follower)
    assert "went down at" in down and "after byte 4 of the log (line 1)" in down
    assert "is back at" in back and "resumed at byte 4 of the same log; nothing lost" in back
    assert follower.data() == log.read_bytes()
    assert follower.notices() == [Notice.BACKLOG_DONE]


@pytest.mark.parametrize("rotated_name, recovered", [("vm.log.1", True), ("vm.log.old", False)])
def test_rotation_during_an_outage(ssh_env: SshEnv, share: Path, rotated_name: str,
                                   recovered: bool) -> None:
    log = share / "vm.log"
    log.write_bytes(b"before\n")
    follower = Follower(_source(ssh_env, log))
    follower.wait_for(lambda: follower.data() == b"before\n")
    with Outage(ssh_env):
        follower.wait_for(lambda: len(gaps(follower)) == 1, timeout=20)
        with open(log, "ab") as fh:
            fh.write(b"late line of the old file\n")
        os.rename(log, share / rotated_name)
        log.write_bytes(b"first line of the new file\n")
    follower.wait_for(lambda: follower.data().endswith(b"new file\n"), timeout=30)
    follower.end()
    back = gaps(follower)[1]
    if recovered:
        assert f"the rest of the old file is read from {log}.1 from byte 7; nothing lost" in back
        assert follower.data() == b"before\nlate line of the old file\nfirst line of the new file\n"
    else:
        assert "no rotated copy holds it" in back and f"{log}.1" in back
        assert "after byte 7 (after log line 1)" in back and "may be missing" in back
        assert follower.data() == b"before\nfirst line of the new file\n"
    assert Notice.ROTATED in follower.notices() or Notice.RECREATED in follower.notices()


def test_copytruncate_during_an_outage_reads_the_copy(ssh_env: SshEnv, share: Path) -> None:
    log = share / "vm.log"
    log.write_bytes(b"x" * 100 + b"\n")
    follower = Follower(_source(ssh_env, log))
    follower.wait_for(lambda: len(follower.data()) == 101)
    with Outage(ssh_env):
        follower.wait_for(lambda: len(gaps(follower)) == 1, timeout=20)
        with open(log, "ab") as fh:
            fh.write(b"late\n")
        shutil.copyfile(log, share / "vm.log.1")  # logrotate's copytruncate
        with open(log, "r+b") as fh:
            fh.truncate(0)
        with open(log, "ab") as fh:
            fh.write(b"after\n")
    follower.wait_for(lambda: follower.data().endswith(b"after\n"), timeout=30)
    follower.end()
    assert "read from" in gaps(follower)[1] and "nothing lost" in gaps(follower)[1]
    assert follower.data() == b"x" * 100 + b"\nlate\nafter\n"


def test_the_notice_frame_is_udp_with_valid_checksums() -> None:
    scapy = pytest.importorskip("scapy.all")
    text = "swtpm-extcap: the SSH link to pve1 went down at 12:00:01"
    raw = notice_frame(text)
    pkt = scapy.Ether(raw)
    assert pkt[scapy.UDP].dport == NOTICE_PORT and bytes(pkt[scapy.UDP].payload) == text.encode()
    rebuilt = scapy.Ether(raw)
    del rebuilt[scapy.IP].chksum
    del rebuilt[scapy.UDP].chksum
    assert bytes(rebuilt) == raw  # scapy computes the same checksums
    assert struct.unpack("!H", raw[14 + 2 : 14 + 4])[0] == 20 + 8 + len(text)


def test_the_capture_writes_a_gap_as_a_frame_of_its_own() -> None:
    """A Gap among a follow's chunks becomes a UDP 2325 frame whose comment is its text,
    between the records before and after it."""
    from test_capture import DEMO, MemorySource, capture, runs_of

    first, second = runs_of(DEMO)[:2]
    text = "swtpm-extcap: the SSH link to pve1 went down at 12:00:01 (test); reconnecting"
    frames, _ = capture(MemorySource(first, [Gap(text), second]))
    (notice,) = [f for f in frames if f.comment == text]
    at = frames.index(notice)
    assert notice.dport == NOTICE_PORT
    assert any(f.dport == 2321 for f in frames[:at]) and any(f.dport == 2321 for f in frames[at:])
