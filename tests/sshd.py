"""A REAL OpenSSH server for tests: Debian's ``/usr/sbin/sshd -D -f <config>`` on 127.0.0.1.

Plain functions and classes, no pytest fixtures (``test_ssh*.py`` wrap them).

* :func:`start_sshd` writes a host key, an ``sshd_config`` and starts sshd in
  the foreground on a free port of 127.0.0.1. Key auth reads
  ``<workdir>/authorized_keys/<user>``; password auth is on (checked by sshd
  against /etc/shadow, so only when it runs as root).
* :func:`make_key` makes an ed25519 key pair with ``ssh-keygen`` (optionally
  with a passphrase).
* :class:`TestUser`: when the tests run as root, a real local account
  ``swtpmssh<pid>`` with a random password (``useradd`` + ``chpasswd``), removed by
  :meth:`TestUser.remove`. Not as root: no second account can be made, so the
  tests log in as the current user with a key only and the password tests
  need root.
* :meth:`Sshd.kill_connections` SIGKILLs sshd's per-connection processes: to
  the client, the TCP connection just dies (what a dropped link looks like).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
#: the test account: one per test session (several checkouts may run their tests at
#: once on one machine, and a shared name would be deleted under another session's feet)
TEST_USER = f"swtpmssh{os.getpid()}"


def missing() -> str | None:
    """Why a real sshd cannot run here, or None."""
    for tool in (SSHD, "ssh-keygen", "ssh-keyscan"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian: apt-get install openssh-server openssh-client)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def make_key(path: Path, passphrase: str = "") -> Path:
    """An ed25519 key pair at ``path`` and ``path.pub``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "swtpm-extcap-test",
         "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )
    return path


@dataclass(eq=False)
class Sshd:
    """A running sshd (child of this process)."""

    workdir: Path
    port: int
    config: Path
    host_key: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def known_hosts_line(self) -> str:
        """The line ``ssh-keyscan -p PORT 127.0.0.1`` would add to known_hosts."""
        key = Path(str(self.host_key) + ".pub").read_text().split()
        return f"[{HOST}]:{self.port} {key[0]} {key[1]}\n"

    def authorize(self, user: str, pubkey: Path) -> None:
        folder = self.workdir / "authorized_keys"
        folder.mkdir(exist_ok=True)
        with open(folder / user, "a") as fh:
            fh.write(pubkey.read_text())
        os.chmod(folder / user, 0o644)

    def connection_pids(self) -> list[int]:
        """sshd's per-connection processes: every ``sshd`` below the listener."""
        assert self.proc is not None
        return self.connection_pids_of(self.proc.pid)

    def kill_connections(self) -> int:
        """SIGKILL every open connection's sshd processes; returns how many connections.

        The remote commands they ran are left alone, as on a real dropped link
        (they die on their next write)."""
        assert self.proc is not None
        first = self.connection_pids_of(self.proc.pid, recursive=False)
        for pid in self.connection_pids_of(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(first)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for pid in self.connection_pids_of(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    @staticmethod
    def connection_pids_of(master: int, *, recursive: bool = True) -> list[int]:
        """The ``sshd`` processes below ``master`` (only its children unless ``recursive``)."""
        parents: dict[int, list[tuple[int, str]]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append((int(entry), comm))
        out: list[int] = []
        todo = [master]
        while todo:
            for pid, comm in parents.get(todo.pop(), []):
                if comm == "sshd":
                    out.append(pid)
                    if recursive:
                        todo.append(pid)
        return out


def start_sshd(workdir: Path, *, extra: str = "", timeout: float = 10.0) -> Sshd:
    """Start sshd on a free port of 127.0.0.1 with its own host key; returns when it accepts."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    host_key = workdir / "ssh_host_ed25519_key"
    if not host_key.exists():
        make_key(host_key)
    (workdir / "authorized_keys").mkdir(exist_ok=True)
    os.chmod(workdir / "authorized_keys", 0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # the privilege separation folder sshd insists on
    log = workdir / "sshd.log"
    last = ""
    for _ in range(5):
        port = free_port()
        config = workdir / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress {HOST}\nHostKey {host_key}\n"
            f"PidFile {workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}/%u\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin yes\nMaxStartups 100:30:200\n"
            "MaxSessions 50\nLogLevel DEBUG1\nPrintMotd no\nAllowTcpForwarding yes\n"
            "ClientAliveInterval 0\n" + extra
        )
        proc = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        sshd = Sshd(workdir, port, config, host_key, log, proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                return sshd
            except OSError:
                time.sleep(0.02)
        assert proc.stderr is not None
        last = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else "timeout"
        sshd.stop()
        try:
            last += log.read_text()[-2000:]
        except OSError:
            pass
    raise RuntimeError(f"sshd did not start: {last}")


@dataclass
class TestUser:
    """A real local account with a password (created only as root)."""

    name: str
    password: str
    home: Path
    created: bool

    def remove(self) -> None:
        if self.created:
            subprocess.run(["userdel", "-r", "-f", self.name], capture_output=True)


def create_test_user() -> TestUser:
    """``swtpmssh<pid>`` with a random password as root; else the current user (key auth only)."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return TestUser(me.pw_name, "", Path(me.pw_dir), created=False)
    password = "pw-" + secrets.token_hex(8)
    try:
        pwd.getpwnam(TEST_USER)
        subprocess.run(["userdel", "-r", "-f", TEST_USER], capture_output=True)
    except KeyError:
        pass
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", TEST_USER], check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{TEST_USER}:{password}\n".encode(), check=True,
                   capture_output=True)
    return TestUser(TEST_USER, password, Path(pwd.getpwnam(TEST_USER).pw_dir), created=True)


# ------------------------------------------------------------------ fixtures

import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from swtpm_extcap.remote.ssh import SSHParams  # noqa: E402


@contextmanager
def root_login(prefix: str) -> Iterator[tuple[Sshd, SSHParams, Path]]:
    """For the benchmarks: an sshd in a new folder (removed afterwards) and a client of it
    there: a new key that logs in as root, a known_hosts that trusts the server, an
    empty ssh_config. Yields the sshd, the client's parameters and the folder."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o755)
    sshd = start_sshd(work / "sshd")
    try:
        key = make_key(work / "id_ed25519")
        sshd.authorize("root", Path(str(key) + ".pub"))
        known = work / "known_hosts"
        known.write_text(sshd.known_hosts_line)
        config = work / "ssh_config"
        config.write_text("")
        yield sshd, SSHParams(HOST, port=sshd.port, user="root", identity=str(key),
                              known_hosts=str(known), ssh_config=str(config)), work
    finally:
        sshd.stop()
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class SshEnv:
    """A running sshd, a client key, a known_hosts that trusts it, a test ssh_config."""

    sshd: Sshd
    user: TestUser
    key: Path
    known_hosts: Path
    ssh_config: Path
    #: a folder every local user can read: the "remote" side's logs
    share: Path

    def params(self, *, user: str = "root", **kw: object) -> SSHParams:
        fields: dict[str, object] = {
            "host": HOST, "port": self.sshd.port, "user": user, "identity": str(self.key),
            "known_hosts": str(self.known_hosts), "ssh_config": str(self.ssh_config),
            "connect_timeout": 5.0,
        }
        fields.update(kw)
        return SSHParams(**fields)  # type: ignore[arg-type]

    def user_params(self, **kw: object) -> SSHParams:
        return self.params(user=self.user.name, **kw)


@pytest.fixture(scope="session")
def ssh_env() -> Iterator[SshEnv]:
    why = missing()
    if why is not None:
        import conftest

        conftest.missing_tool(why)
    base = Path(tempfile.mkdtemp(prefix="swtpm-ssh-test-"))
    os.chmod(base, 0o755)
    user = create_test_user()
    sshd = start_sshd(base / "sshd")
    try:
        key = make_key(base / "client" / "id_ed25519")
        for who in {"root", user.name}:
            sshd.authorize(who, Path(str(key) + ".pub"))
        known = base / "client" / "known_hosts"
        known.write_text(sshd.known_hosts_line)
        config = base / "client" / "ssh_config"
        config.write_text("# empty: the tests do not read ~/.ssh/config\n")
        share = base / "share"
        share.mkdir()
        os.chmod(share, 0o755)
        yield SshEnv(sshd, user, key, known, config, share)
    finally:
        sshd.stop()
        user.remove()
        shutil.rmtree(base, ignore_errors=True)
