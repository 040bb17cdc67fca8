"""Host keys by the name the user gave (swtpm_extcap.remote.host_keys), against real sshds: an
ssh_config alias and ``localhost`` with unknown, changed and accepted keys, also through a
ProxyJump; a name whose address alone is in known_hosts is refused; CheckHostIP only when asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from sshd import HOST, SshEnv, ssh_env, start_sshd  # noqa: F401  (fixture)
from test_ssh import _error, _whoami

from swtpm_extcap.remote.ssh import SSHParams

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmtsDxkJlN3MGWKQ1vD8eqKcOEw8uWqJtoUCBlYkeu+"


def _key(env: SshEnv) -> str:
    return " ".join(env.sshd.known_hosts_line.split()[1:])


def _config(tmp_path: Path, env: SshEnv, known: Path, hostname: str = "localhost",
            extra: str = "") -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host pvealias\n  HostName {hostname}\n  Port {env.sshd.port}\n{extra}"
        f"Host *\n  User root\n  IdentityFile {env.key}\n  UserKnownHostsFile {known}\n")
    return config


def test_an_alias_is_checked_by_its_hostname(ssh_env: SshEnv, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[localhost]:{ssh_env.sshd.port} {_key(ssh_env)}\n")
    assert _whoami(SSHParams("pvealias", ssh_config=str(_config(tmp_path, ssh_env, known)))) == "root"


def test_a_name_whose_address_alone_is_trusted_is_refused(ssh_env: SshEnv, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(ssh_env.sshd.known_hosts_line)  # [127.0.0.1]:PORT only
    config = _config(tmp_path, ssh_env, known)
    text = _error(SSHParams("pvealias", ssh_config=str(config)))
    port = ssh_env.sshd.port
    assert f"pvealias ([localhost]:{port}) is unknown: refused" in text
    assert "not by its address" in text
    assert f"ssh -F {config} pvealias" in text and f"ssh-keyscan -p {port} localhost >> {known}" in text
    text = _error(ssh_env.params(host="localhost", known_hosts=str(known)))
    assert f"[localhost]:{port} is unknown" in text
    # the documented step: the key under the name, and the alias works
    with open(known, "a") as fh:
        fh.write(f"[localhost]:{port} {_key(ssh_env)}\n")
    assert _whoami(SSHParams("pvealias", ssh_config=str(config))) == "root"


def test_a_changed_key_of_localhost_is_refused(ssh_env: SshEnv, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[localhost]:{ssh_env.sshd.port} {OTHER_KEY}\n{ssh_env.sshd.known_hosts_line}")
    text = _error(ssh_env.params(host="localhost", known_hosts=str(known)))
    assert "CHANGED" in text and f"ssh-keygen -R '[localhost]:{ssh_env.sshd.port}'" in text


def test_accept_new_on_an_alias_records_the_name(ssh_env: SshEnv, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    config = _config(tmp_path, ssh_env, known)
    params = SSHParams("pvealias", ssh_config=str(config), host_keys="accept-new")
    assert _whoami(params) == "root"
    port = ssh_env.sshd.port
    assert known.read_text().startswith(f"[localhost]:{port} ssh-ed25519 ")
    assert _whoami(SSHParams("pvealias", ssh_config=str(config))) == "root"  # strict trusts it now
    known.write_text(f"[localhost]:{port} {OTHER_KEY}\n")
    assert "CHANGED" in _error(params)  # accept-new never takes a changed key


def test_check_host_ip_only_when_the_config_asks(ssh_env: SshEnv, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    port = ssh_env.sshd.port
    known.write_text(f"[localhost]:{port} {_key(ssh_env)}\n[{HOST}]:{port} {OTHER_KEY}\n")
    plain = _config(tmp_path, ssh_env, known)
    assert _whoami(SSHParams("pvealias", ssh_config=str(plain))) == "root"
    asks = _config(tmp_path, ssh_env, known, extra="  CheckHostIP yes\n")
    text = _error(SSHParams("pvealias", ssh_config=str(asks)))
    assert "differs from the key known_hosts has for its address" in text
    assert f"[{HOST}]:{port}" in text


def test_through_a_proxyjump_each_hop_is_checked_by_name(ssh_env: SshEnv, tmp_path: Path) -> None:
    target = ssh_env.sshd
    jump = start_sshd(tmp_path / "jump", extra=f"PermitOpen {HOST}:{target.port} localhost:{target.port}\n")
    try:
        jump.authorize("root", Path(str(ssh_env.key) + ".pub"))
        known = tmp_path / "known_hosts"
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host target\n  HostName localhost\n  Port {target.port}\n  ProxyJump jumphost\n"
            f"Host jumphost\n  HostName localhost\n  Port {jump.port}\n"
            f"Host *\n  User root\n  IdentityFile {ssh_env.key}\n  UserKnownHostsFile {known}\n")
        jump_key = " ".join(jump.known_hosts_line.split()[1:])
        # the jump host trusted by its address only: refused, and named
        known.write_text(jump.known_hosts_line + f"[localhost]:{target.port} {_key(ssh_env)}\n")
        text = _error(SSHParams("target", ssh_config=str(config)))
        assert f"jumphost ([localhost]:{jump.port}) is unknown" in text
        # accept-new through the jump: both names recorded, then strict works
        known.write_text("")
        assert _whoami(SSHParams("target", ssh_config=str(config), host_keys="accept-new")) == "root"
        entries = {line.split()[0] for line in known.read_text().splitlines()}
        assert entries == {f"[localhost]:{jump.port}", f"[localhost]:{target.port}"}
        assert _whoami(SSHParams("target", ssh_config=str(config))) == "root"
        # the jump host's key changed
        known.write_text(f"[localhost]:{jump.port} {OTHER_KEY}\n"
                         f"[localhost]:{target.port} {_key(ssh_env)}\n")
        assert "CHANGED" in _error(SSHParams("target", ssh_config=str(config)))
        assert jump_key != OTHER_KEY
    finally:
        jump.stop()


def test_a_proxycommand_reaches_the_host(ssh_env: SshEnv, tmp_path: Path) -> None:
    import shutil
    import sys

    if shutil.which("nc") is None and shutil.which("ncat") is None:
        command = (f"{sys.executable} -c \"import socket,sys,threading;s=socket.create_connection"
                   "(('%h',%p));threading.Thread(target=lambda:[sys.stdout.buffer.write(d) or "
                   "sys.stdout.buffer.flush() for d in iter(lambda:s.recv(65536),b'')],daemon=True)"
                   ".start();[s.sendall(d) for d in iter(lambda:sys.stdin.buffer.read1(65536),b'')]\"")
    else:
        command = f"{shutil.which('nc') or shutil.which('ncat')} %h %p"
    params = ssh_env.params(proxy_command=command)
    assert _whoami(params) == "root"


@pytest.mark.parametrize("bad", ["nc 'unbalanced", ""])
def test_a_broken_proxycommand_is_one_line_before_any_io(bad: str) -> None:
    from swtpm_extcap.errors import UserError

    with pytest.raises(UserError, match="ProxyCommand"):
        SSHParams("h", proxy_command=bad)
