"""The SSH source against a real sshd: same bytes as the local file, tail -F semantics, drops, quoting, sudo."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import realtpm
from conftest import corpus_log_paths
from sshd import SshEnv, ssh_env  # noqa: F401  (fixture)

from swtpm_extcap.errors import UserError
from swtpm_extcap.swtpmlog.parser import LogParser, Record
from swtpm_extcap.pcapng.pipeline import Pipeline
from swtpm_extcap.sources.base import Chunk, Notice
from swtpm_extcap.sources.ssh import SSHSource

START_US = 1_700_000_000_000_000


def _pcapng(chunks: Iterator[bytes] | list[bytes]) -> bytes:
    out = io.BytesIO()
    pipe = Pipeline(out, name="swtpm-test", description="test", start_us=START_US)
    for chunk in chunks:
        pipe.feed(chunk)
    pipe.close()
    return out.getvalue()


def _records(data: bytes) -> list[tuple[str, bytes, int]]:
    parser = LogParser()
    events = parser.feed(data) + parser.close()
    return [(r.kind.value, r.data, r.line) for r in events if isinstance(r, Record)]


class Follower:
    """Runs ``source.follow`` in a thread, collecting what it yields."""

    def __init__(self, source: SSHSource, start: int = 0) -> None:
        self.source = source
        self.stop = threading.Event()
        self.items: list[Chunk] = []
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self.thread.start()

    def _run(self, start: int) -> None:
        try:
            for item in self.source.follow(self.stop, start):
                with self.lock:
                    self.items.append(item)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def data(self) -> bytes:
        with self.lock:
            return b"".join(i for i in self.items if isinstance(i, bytes))

    def notices(self) -> list[Notice]:
        with self.lock:
            return [i for i in self.items if isinstance(i, Notice)]

    def wait_for(self, cond: object, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise AssertionError(f"follow failed: {self.error!r}")
            if cond():  # type: ignore[operator]
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out; data {len(self.data())} bytes, notices {self.notices()}")

    def end(self) -> None:
        t0 = time.monotonic()
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        assert time.monotonic() - t0 < 2.0, "follow did not end promptly after stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def share(ssh_env: SshEnv, request: pytest.FixtureRequest) -> Iterator[Path]:
    folder = ssh_env.share / request.node.name[:40]
    folder.mkdir()
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("log", corpus_log_paths(), ids=lambda p: p.name)
def test_read_matches_the_local_file_byte_for_byte(ssh_env: SshEnv, share: Path, log: Path) -> None:
    remote = share / log.name
    shutil.copyfile(log, remote)
    source = SSHSource(ssh_env.params(), str(remote))
    backlog = source.backlog()
    assert backlog.size == log.stat().st_size
    assert backlog.mtime == pytest.approx(int(remote.stat().st_mtime), abs=1)
    got = _pcapng(source.read(threading.Event()))
    assert got == _pcapng([log.read_bytes()])
    # a byte range
    data = log.read_bytes()
    part = b"".join(SSHSource(ssh_env.params(), str(remote)).read(threading.Event(), 100, 5000))
    assert part == data[100:5000]


def test_real_swtpm_log_followed_over_ssh_equals_local(ssh_env: SshEnv, share: Path,
                                                        tmp_path: Path) -> None:
    """A real swtpm logs on the "remote" side while the SSH source follows it."""
    missing = realtpm.missing_tools("swtpm", "tpm2_startup")
    if missing:
        import conftest

        conftest.missing_tool(f"missing {missing}")
    sw = realtpm.start_swtpm(share, prefix="[id=1732600000] ")
    try:
        os.chmod(sw.log_path, 0o644)
        source = SSHSource(ssh_env.params(), str(sw.log_path))
        follower = Follower(source)
        follower.wait_for(lambda: Notice.BACKLOG_DONE in follower.notices())
        realtpm.run_workload(sw, tmp_path)
    finally:
        sw.stop()
    size = sw.log_path.stat().st_size
    follower.wait_for(lambda: len(follower.data()) == size)
    follower.end()
    assert follower.data() == sw.log_path.read_bytes()
    assert _pcapng([follower.data()]) == _pcapng([sw.log_path.read_bytes()])
    assert len(_records(follower.data())) > 40


def _record_blocks(data: bytes) -> list[bytes]:
    """A log cut into blocks that each end a record (for appending one at a time)."""
    lines = data.splitlines(keepends=True)
    blocks, cur = [], b""
    for line in lines:
        if b"SWTPM_IO_" in line or b"Ctrl Cmd:" in line or b"Ctrl Rsp" in line:
            if cur:
                blocks.append(cur)
            cur = b""
        cur += line
    if cur:
        blocks.append(cur)
    return blocks


def test_ten_killed_connections_lose_and_duplicate_nothing(ssh_env: SshEnv, share: Path) -> None:
    corpus = next(p for p in corpus_log_paths() if "103" in p.name)
    blocks = _record_blocks(corpus.read_bytes())
    remote = share / "live.log"
    head = b"".join(blocks[:20])
    remote.write_bytes(head)
    source = SSHSource(ssh_env.params(), str(remote))
    follower = Follower(source)
    follower.wait_for(lambda: Notice.BACKLOG_DONE in follower.notices())
    written = len(blocks[:20])
    kills = 0
    per_kill = max(1, (len(blocks) - 20) // 12)
    with open(remote, "ab") as fh:
        while written < len(blocks):
            for block in blocks[written : written + per_kill]:
                fh.write(block)
                fh.flush()
                time.sleep(0.002)
            written = min(len(blocks), written + per_kill)
            if kills < 10:
                # the previous kill was resumed (a new connection reads): kill that one
                follower.wait_for(lambda: source.reconnects >= kills)
                time.sleep(0.05)
                assert ssh_env.sshd.kill_connections() >= 1
                kills += 1
    size = remote.stat().st_size
    follower.wait_for(lambda: len(follower.data()) >= size, timeout=60)
    follower.end()
    assert kills == 10
    assert source.reconnects >= 10
    got, want = follower.data(), remote.read_bytes()
    assert _records(got) == _records(want)  # record by record: 0 lost, 0 duplicated
    assert got == want
    assert follower.notices() == [Notice.BACKLOG_DONE]


def test_truncate_rotate_recreate_while_connected(ssh_env: SshEnv, share: Path) -> None:
    remote = share / "vm.log"
    remote.write_bytes(b"first line\npartial")
    source = SSHSource(ssh_env.params(), str(remote))
    follower = Follower(source)
    follower.wait_for(lambda: Notice.BACKLOG_DONE in follower.notices())
    # copytruncate: the same file cut to 0, then written again
    with open(remote, "r+b") as fh:
        fh.truncate(0)
    follower.wait_for(lambda: Notice.TRUNCATED in follower.notices())
    with open(remote, "ab") as fh:
        fh.write(b"after truncate\n")
    follower.wait_for(lambda: follower.data().endswith(b"after truncate\n"))
    # rotation: renamed away (and still written to), a new file at the path
    rotated = share / "vm.log.1"
    os.rename(remote, rotated)
    with open(rotated, "ab") as fh:
        fh.write(b"late line of the old file\n")
    remote.write_bytes(b"new file\n")
    follower.wait_for(lambda: Notice.ROTATED in follower.notices())
    follower.wait_for(lambda: follower.data().endswith(b"new file\n"))
    # re-creation: deleted, then a new file (a VM restart)
    remote.unlink()
    time.sleep(0.3)
    remote.write_bytes(b"recreated\n")
    follower.wait_for(lambda: Notice.RECREATED in follower.notices())
    follower.wait_for(lambda: follower.data().endswith(b"recreated\n"))
    follower.end()
    assert follower.data() == (b"first line\npartial\nafter truncate\nlate line of the old file\n"
                               b"new file\nrecreated\n")
    assert follower.notices() == [Notice.BACKLOG_DONE, Notice.TRUNCATED, Notice.ROTATED,
                                  Notice.RECREATED]


def test_log_that_appears_later_and_start_offset(ssh_env: SshEnv, share: Path) -> None:
    remote = share / "later.log"
    follower = Follower(SSHSource(ssh_env.params(), str(remote)))
    follower.wait_for(lambda: Notice.BACKLOG_DONE in follower.notices())
    with pytest.raises(UserError, match="does not exist on"):  # a capture says so at once
        SSHSource(ssh_env.params(), str(remote)).backlog()
    remote.write_bytes(b"hello\n")
    follower.wait_for(lambda: follower.data() == b"hello\n")
    follower.end()
    assert follower.notices() == [Notice.BACKLOG_DONE]
    # from an offset: only what follows it
    follower = Follower(SSHSource(ssh_env.params(), str(remote)), start=6)
    follower.wait_for(lambda: Notice.BACKLOG_DONE in follower.notices())
    with open(remote, "ab") as fh:
        fh.write(b"world\n")
    follower.wait_for(lambda: follower.data() == b"world\n")
    follower.end()


NASTY = "vm 'a\" b;c $(touch PWNED) `touch PWNED2`\nline2 && echo x | cat"


def test_injection_path_reaches_the_remote_side_as_one_literal_argument(
    ssh_env: SshEnv, share: Path
) -> None:
    remote = share / (NASTY + ".log")
    remote.write_bytes(b"literal\n")
    source = SSHSource(ssh_env.params(), str(remote))
    assert b"".join(source.read(threading.Event())) == b"literal\n"
    assert source.backlog().size == 8
    follower = Follower(SSHSource(ssh_env.params(), str(remote)))
    follower.wait_for(lambda: follower.data() == b"literal\n")
    follower.end()
    assert not (share / "PWNED").exists() and not (share / "PWNED2").exists()
    assert not Path(ssh_env.user.home, "PWNED").exists() and not Path("/root/PWNED").exists()


def test_errors_are_one_line(ssh_env: SshEnv, share: Path) -> None:
    missing = SSHSource(ssh_env.params(), str(share / "nope.log"))
    with pytest.raises(FileNotFoundError) as info:
        list(missing.read(threading.Event()))
    assert "does not exist on" in missing.explain(info.value)
    folder = SSHSource(ssh_env.params(), str(share))
    with pytest.raises(UserError, match="is a directory"):
        folder.backlog()


@pytest.fixture
def root_only_log(share: Path) -> Path:
    log = share / "root-only.log"
    log.write_bytes(b"secret swtpm line\n" * 3)
    os.chown(log, 0, 0)
    os.chmod(log, 0o600)
    return log


def _need_test_user(ssh_env: SshEnv) -> None:
    if not ssh_env.user.created:
        pytest.skip("needs a second account and sudoers: run as root")
    if shutil.which("sudo") is None:
        import conftest

        conftest.missing_tool("sudo is missing (apt-get install sudo)")


def test_sudo_reads_a_root_only_log(ssh_env: SshEnv, root_only_log: Path) -> None:
    _need_test_user(ssh_env)
    plain = SSHSource(ssh_env.user_params(), str(root_only_log))
    with pytest.raises(UserError) as info:
        plain.backlog()
    assert "permission denied" in str(info.value) and 'priv = "sudo"' in str(info.value)
    dropin = Path(f"/etc/sudoers.d/swtpm-extcap-test-{os.getpid()}")
    dropin.write_text(f"{ssh_env.user.name} ALL=(root) NOPASSWD: /usr/bin/sh, /bin/sh\n")
    os.chmod(dropin, 0o440)
    try:
        check = subprocess.run(["visudo", "-c", "-f", str(dropin)], capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr
        source = SSHSource(ssh_env.user_params(priv="sudo"), str(root_only_log))
        assert source.backlog().size == root_only_log.stat().st_size
        assert b"".join(source.read(threading.Event())) == root_only_log.read_bytes()
    finally:
        dropin.unlink()


def test_no_sudo_rights_is_one_clear_line(ssh_env: SshEnv, root_only_log: Path) -> None:
    _need_test_user(ssh_env)
    source = SSHSource(ssh_env.user_params(priv="sudo"), str(root_only_log))
    with pytest.raises(UserError) as info:
        source.backlog()
    text = str(info.value)
    assert "\n" not in text
    assert "sudo -n refused" in text and "NOPASSWD" in text


def test_nul_bytes_of_the_log_pass_through_big_frames(ssh_env: SshEnv, share: Path) -> None:
    """NULs are held back inside a frame (only they can be padding) and handed on at its end."""
    remote = share / "nul.log"
    data = (b"x" * (1 << 20) + b"\0" * 5000) * 2 + b"line\n" + b"\0" * (1 << 20) + b"\0\0"
    remote.write_bytes(data)
    got = list(SSHSource(ssh_env.params(), str(remote)).read(threading.Event()))
    assert b"".join(got) == data
    assert max(len(c) for c in got) <= (1 << 20) + 5002  # handed on in pieces, not one 3 MB frame
    follower = Follower(SSHSource(ssh_env.params(), str(remote)))
    follower.wait_for(lambda: len(follower.data()) == len(data))
    follower.end()
    assert follower.data() == data


def test_the_restricted_reader_through_sudo_reads_only_its_logs(
    ssh_env: SshEnv, root_only_log: Path, share: Path
) -> None:
    """The documented setup: the reader installed root-owned, a sudoers line for it alone."""
    _need_test_user(ssh_env)
    from swtpm_extcap.sources.ssh_script import installed_reader

    reader = Path(f"/usr/local/sbin/swtpm-extcap-reader-test-{os.getpid()}")
    reader.write_text(installed_reader(allowed=f"{share}/*.log"))
    os.chown(reader, 0, 0)
    reader.chmod(0o755)
    dropin = Path(f"/etc/sudoers.d/swtpm-extcap-test-reader-{os.getpid()}")
    dropin.write_text(f"{ssh_env.user.name} ALL=(root) NOPASSWD: {reader}\n")
    os.chmod(dropin, 0o440)
    secret = share / "secret.txt"
    secret.write_bytes(b"not a log\n")
    secret.chmod(0o600)
    try:
        check = subprocess.run(["visudo", "-c", "-f", str(dropin)], capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr
        params = ssh_env.user_params(priv="sudo", reader=str(reader))
        source = SSHSource(params, str(root_only_log))
        assert source.backlog().size == root_only_log.stat().st_size
        assert b"".join(SSHSource(params, str(root_only_log)).read(threading.Event())) == \
            root_only_log.read_bytes()
        follower = Follower(SSHSource(params, str(root_only_log)))
        follower.wait_for(lambda: follower.data() == root_only_log.read_bytes())
        follower.end()
        for path in (secret, share / ".." / share.name / "root-only.log"):
            with pytest.raises(UserError, match="may not read"):
                SSHSource(params, str(path)).backlog()
        # the login may run the reader, and nothing else as root: sh is refused
        with pytest.raises(UserError, match="sudo -n refused"):
            SSHSource(ssh_env.user_params(priv="sudo"), str(root_only_log)).backlog()
    finally:
        dropin.unlink()
        reader.unlink()
