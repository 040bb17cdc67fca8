"""A host that misbehaves, for real: sshd's ForceCommand runs tests/hostile_reader.py, which sends
malformed, oversized and endless frames, hangs, or prints instead of starting the reader. Each is
one clear line within the timeouts, never a traceback, and memory stays bounded; a login whose
shell prints (.bashrc) is skipped, not a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from sshd import HOST, Sshd, SshEnv, ssh_env, start_sshd  # noqa: F401  (fixture)

from swtpm_extcap.errors import UserError
from swtpm_extcap.remote.listing import list_remotes
from swtpm_extcap.remote.settings import Remote
from swtpm_extcap.sources.ssh import SSHSource

HOSTILE = Path(__file__).with_name("hostile_reader.py")
#: what the extcap may use at most, whatever the host sends (the issue's bound)
MAX_RSS_MB = 64


class Hostile:
    def __init__(self, env: SshEnv, base: Path) -> None:
        self.case = base / "case"
        self.case.write_text("hang")
        os.chmod(base, 0o755)
        self.case.chmod(0o644)
        self.sshd: Sshd = start_sshd(
            base / "sshd", extra=f"ForceCommand {sys.executable} {HOSTILE} {self.case}\n")
        self.sshd.authorize("root", Path(str(env.key) + ".pub"))
        self.known = base / "known_hosts"
        self.known.write_text(self.sshd.known_hosts_line)
        self.env = env

    def params(self, **kw: object):  # type: ignore[no-untyped-def]
        return self.env.params(port=self.sshd.port, known_hosts=str(self.known), **kw)


@pytest.fixture(scope="module")
def hostile(ssh_env: SshEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    base = tmp_path_factory.mktemp("hostile")
    host = Hostile(ssh_env, base)
    yield host
    host.sshd.stop()


def _one_line(host: Hostile, case: str, **kw: object) -> str:
    host.case.write_text(case)
    t0 = time.monotonic()
    with pytest.raises(UserError) as info:
        SSHSource(host.params(**kw), "/run/qemu-server/103-swtpm.log").backlog()
    assert time.monotonic() - t0 < 15
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("case", ["D abc", "B nan", "B 1e999", "bare E", "D -1", "huge D",
                                  "O elsewhere"])
def test_malformed_frames_are_one_line(hostile: Hostile, case: str) -> None:
    text = _one_line(hostile, case)
    assert "the remote reader" in text and "capture stopped" in text


def test_a_host_that_hangs_is_one_line_within_the_connect_timeout(hostile: Hostile) -> None:
    text = _one_line(hostile, "hang", connect_timeout=2.0)
    assert "did not answer within 2 s" in text


def test_a_forcecommand_that_prints_instead(hostile: Hostile) -> None:
    text = _one_line(hostile, "banner-only")
    assert "the login printed 'This account is restricted.'" in text and "interactive" in text


def test_a_login_that_floods_is_one_line(hostile: Hostile) -> None:
    assert "prints too much" in _one_line(hostile, "flood-preamble")


def test_hostile_discovery_ids_never_become_names(hostile: Hostile, tmp_path: Path) -> None:
    hostile.case.write_text("discovery-ids")
    remote = Remote(name="evil", host=HOST, port=hostile.sshd.port, user="root",
                    key=str(hostile.env.key), known_hosts=str(hostile.known))
    listing = list_remotes([remote], cache=tmp_path)
    assert listing.failures == ()
    assert sorted(vm.interface for vm in listing.vms) == ["swtpm-evil-103", "swtpm-evil-a_b_.._c"]


def test_a_discovery_that_streams_is_cut(hostile: Hostile, tmp_path: Path) -> None:
    hostile.case.write_text("discovery-stream")
    remote = Remote(name="evil", host=HOST, port=hostile.sshd.port, user="root",
                    key=str(hostile.env.key), known_hosts=str(hostile.known))
    t0 = time.monotonic()
    listing = list_remotes([remote], cache=tmp_path, timeout=10)
    assert time.monotonic() - t0 < 15
    (failure,) = listing.failures
    assert "more than 4 MiB" in failure.message or "no answer within" in failure.message


def test_the_extcap_stays_within_64_mb_whatever_the_host_sends(hostile: Hostile,
                                                                tmp_path: Path) -> None:
    """192 MiB of NUL frames, then silence: the capture runs, memory stays bounded, and a stop
    ends it with exit 0 and nothing on stderr."""
    hostile.case.write_text("nul-frames")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(hostile.sshd.known_hosts_line)
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "cache"),
               SWTPM_EXTCAP_CONFIG=str(tmp_path / "none.toml"))
    out = tmp_path / "out.pcapng"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--fifo", str(out),
         "--extcap-interface", "swtpm-ssh", "--remote-host", HOST, "--remote-port",
         str(hostile.sshd.port), "--remote-username", "root", "--sshkey", str(hostile.env.key),
         "--remote-log", "/var/log/x.log"],
        env=env, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and out.stat().st_size > 0):
        time.sleep(0.1)
    peak_kb = 0
    for _ in range(80):  # 192 MiB of NULs arrive meanwhile
        peak_kb = max(peak_kb, _peak_rss_kb(proc.pid))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert (proc.returncode, err) == (0, b"")
    rss_mb = peak_kb / 1024
    print(f"extcap max RSS {rss_mb:.1f} MB after {out.stat().st_size} bytes of pcapng")
    assert 0 < rss_mb <= MAX_RSS_MB, f"max RSS {rss_mb:.0f} MB"


def _peak_rss_kb(pid: int) -> int:
    """The process's own peak RSS (VmHWM). Not its rusage: a child's ru_maxrss on Linux
    includes the RSS its parent had when it forked (here: pytest's, 100s of MB)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def test_a_login_that_prints_is_skipped(ssh_env: SshEnv, tmp_path: Path) -> None:
    """A ~/.profile or .bashrc that prints (the user's shell runs it before our command)."""
    if not ssh_env.user.created:
        pytest.skip("needs the test account (its own home and shell): run as root")
    home = ssh_env.user.home
    rc = home / ".bashrc"
    old = rc.read_bytes() if rc.exists() else None
    subprocess.run(["usermod", "-s", "/bin/bash", ssh_env.user.name], check=True)
    log = ssh_env.share / "printing.log"
    log.write_bytes(b"hello\n")
    log.chmod(0o644)
    try:
        rc.write_text('echo "Welcome to pve1!"\nprintf "no newline"\n')
        source = SSHSource(ssh_env.user_params(), str(log))
        assert source.backlog().size == 6
        assert b"".join(SSHSource(ssh_env.user_params(), str(log)).read(
            __import__("threading").Event())) == b"hello\n"
    finally:
        subprocess.run(["usermod", "-s", "/bin/sh", ssh_env.user.name], check=True)
        if old is None:
            rc.unlink()
        else:
            rc.write_bytes(old)
        log.unlink()
    assert shutil.which("bash")


def _extcap_env(host: Hostile, tmp_path: Path, config: str) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "known_hosts").write_text(host.sshd.known_hosts_line)
    (tmp_path / "config.toml").write_text(config)
    return dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "cache"),
                SWTPM_EXTCAP_CONFIG=str(tmp_path / "config.toml"))


def test_a_stop_while_a_hanging_host_is_asked_is_clean(hostile: Hostile, tmp_path: Path) -> None:
    """Capturing a VM the cache does not know asks the host; it hangs; SIGTERM: exit 0,
    nothing on stderr (no 'Event loop is closed')."""
    import signal

    hostile.case.write_text("hang")
    env = _extcap_env(hostile, tmp_path, (
        f'[[remote]]\nname = "evil"\nhost = "{HOST}"\nport = {hostile.sshd.port}\nuser = "root"\n'
        f'key = "{hostile.env.key}"\nconnect_timeout = 30\n'))
    proc = subprocess.Popen(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--fifo", str(tmp_path / "out"),
         "--extcap-interface", "swtpm-evil-103"], env=env, cwd=REPO, stderr=subprocess.PIPE)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert (proc.returncode, err) == (0, b"")


def test_a_hanging_host_fails_the_capture_within_its_timeout(hostile: Hostile,
                                                             tmp_path: Path) -> None:
    hostile.case.write_text("hang")
    env = _extcap_env(hostile, tmp_path, (
        f'[[remote]]\nname = "evil"\nhost = "{HOST}"\nport = {hostile.sshd.port}\nuser = "root"\n'
        f'key = "{hostile.env.key}"\nconnect_timeout = 2\n'))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--fifo", str(tmp_path / "out"),
         "--extcap-interface", "swtpm-evil-103"], env=env, cwd=REPO, capture_output=True,
        timeout=60)
    assert time.monotonic() - t0 < 20
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1
    assert b"no answer within 2 s" in proc.stderr
