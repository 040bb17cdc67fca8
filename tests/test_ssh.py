"""swtpm_extcap.remote.ssh against a real OpenSSH server (tests/sshd.py): login, host keys, jump host, errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from sshd import HOST, SshEnv, make_key, ssh_env, start_sshd  # noqa: F401  (fixture)

from swtpm_extcap.errors import UserError
from swtpm_extcap.remote.connect import connect
from swtpm_extcap.remote.ssh import SSHParams, wrap_priv


def _whoami(params: SSHParams) -> str:
    async def run() -> str:
        conn = await connect(params)
        try:
            result = await conn.run("id -un", check=True)
            return str(result.stdout).strip()
        finally:
            conn.close()
            await conn.wait_closed()

    return asyncio.run(run())


def _error(params: SSHParams) -> str:
    with pytest.raises(UserError) as info:
        _whoami(params)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_key_login(ssh_env: SshEnv) -> None:
    assert _whoami(ssh_env.params()) == "root"


def test_password_login_and_wrong_password(ssh_env: SshEnv) -> None:
    if not ssh_env.user.created:
        pytest.skip("password login needs a second account: run as root")
    good = ssh_env.user_params(identity=None, password=ssh_env.user.password)
    assert _whoami(good) == ssh_env.user.name
    secret = "wrong-" + ssh_env.user.password
    bad = ssh_env.user_params(identity=None, password=secret)
    text = _error(bad)
    assert "refused" in text and "password was wrong" in text
    assert secret not in text and secret not in repr(bad)


def test_secrets_never_in_repr(ssh_env: SshEnv) -> None:
    params = ssh_env.params(password="hunter2-secret", passphrase="pass-secret")
    assert "hunter2-secret" not in repr(params) and "pass-secret" not in repr(params)
    assert "hunter2-secret" not in str(params)


def test_encrypted_key_passphrase(ssh_env: SshEnv, tmp_path: Path) -> None:
    key = make_key(tmp_path / "enc_key", passphrase="correct horse")
    ssh_env.sshd.authorize("root", Path(str(key) + ".pub"))
    assert _whoami(ssh_env.params(identity=str(key), passphrase="correct horse")) == "root"
    text = _error(ssh_env.params(identity=str(key), passphrase="battery staple"))
    assert "wrong passphrase" in text and "battery staple" not in text
    text = _error(ssh_env.params(identity=str(key)))
    assert "passphrase" in text


def test_unknown_host_key_refused_then_trusted_by_the_documented_step(
    ssh_env: SshEnv, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    params = ssh_env.params(known_hosts=str(known))
    text = _error(params)
    assert "unknown" in text and "refused" in text
    port = ssh_env.sshd.port
    assert f"ssh-keyscan -p {port} {HOST} >> {known}" in text
    # the documented trust step, for real
    scan = subprocess.run(["ssh-keyscan", "-p", str(port), HOST], capture_output=True, check=True)
    known.write_bytes(scan.stdout)
    assert _whoami(params) == "root"


def test_changed_host_key_refused(ssh_env: SshEnv, tmp_path: Path) -> None:
    other = start_sshd(tmp_path / "impostor")
    try:
        known = tmp_path / "known_hosts"
        # trusted: the real server's key, but under the impostor's address
        line = ssh_env.sshd.known_hosts_line.replace(f"]:{ssh_env.sshd.port} ", f"]:{other.port} ")
        known.write_text(line)
        other.authorize("root", Path(str(ssh_env.key) + ".pub"))
        params = ssh_env.params(port=other.port, known_hosts=str(known))
        text = _error(params)
        assert "CHANGED" in text and "ssh-keygen -R" in text
    finally:
        other.stop()


def test_accept_new_adds_an_unknown_key_but_refuses_a_changed_one(
    ssh_env: SshEnv, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    params = ssh_env.params(known_hosts=str(known), host_keys="accept-new")
    assert _whoami(params) == "root"
    assert f"[{HOST}]:{ssh_env.sshd.port} ssh-ed25519 " in known.read_text()
    assert _whoami(ssh_env.params(known_hosts=str(known))) == "root"  # strict now trusts it
    known.write_text(known.read_text().replace(
        known.read_text().split()[2], "AAAAC3NzaC1lZDI1NTE5AAAAIBmtsDxkJlN3MGWKQ1vD8eqKcOEw8uWqJtoUCBlYkeu+"))
    assert "CHANGED" in _error(params)


def test_connection_refused_and_unknown_name(ssh_env: SshEnv) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    text = _error(ssh_env.params(port=port))
    assert f"{HOST}:{port}" in text and "refused" in text.lower()
    text = _error(ssh_env.params(host="no-such-host.invalid"))
    assert "unknown host" in text


def test_wrong_user_key_refused(ssh_env: SshEnv) -> None:
    text = _error(ssh_env.params(user="nobody"))
    assert "refused" in text and "no key was accepted" in text


def test_ssh_config_alias_user_port_identity(ssh_env: SshEnv, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host pve-test\n  HostName {HOST}\n  Port {ssh_env.sshd.port}\n  User root\n"
        f"  IdentityFile {ssh_env.key}\n  UserKnownHostsFile {ssh_env.known_hosts}\n"
    )
    assert _whoami(SSHParams("pve-test", ssh_config=str(config))) == "root"


def test_proxyjump_through_a_second_sshd(ssh_env: SshEnv, tmp_path: Path) -> None:
    target = ssh_env.sshd
    jump = start_sshd(tmp_path / "jump", extra=f"PermitOpen {HOST}:{target.port}\n")
    try:
        jump.authorize("root", Path(str(ssh_env.key) + ".pub"))
        known = tmp_path / "known_hosts"
        known.write_text(target.known_hosts_line + jump.known_hosts_line)
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host target\n  HostName {HOST}\n  Port {target.port}\n  ProxyJump jumphost\n"
            f"Host jumphost\n  HostName {HOST}\n  Port {jump.port}\n"
            f"Host *\n  User root\n  IdentityFile {ssh_env.key}\n  UserKnownHostsFile {known}\n"
        )
        assert _whoami(SSHParams("target", ssh_config=str(config))) == "root"
        log = jump.log.read_text()
        assert f"target {HOST} port {target.port}" in log  # sshd's direct-tcpip debug line
    finally:
        jump.stop()


def test_wrap_priv_quotes_every_word() -> None:
    assert wrap_priv("none", ["sh", "-s", "--", "a b"]) == "sh -s -- 'a b'"
    assert wrap_priv("sudo", ["sh", "$(x)"]) == "sudo -n -- sh '$(x)'"
    assert wrap_priv("doas", ["sh"]) == "doas -n -- sh"


def test_params_checked_before_any_io() -> None:
    for bad in ({"host": ""}, {"host": "-oProxyCommand=x"}, {"host": "a", "port": 0},
                {"host": "a", "priv": "su"}):
        with pytest.raises(UserError):
            SSHParams(**bad)


def test_no_secret_in_process_list(ssh_env: SshEnv) -> None:
    """asyncssh runs in-process: the password is in no argv on this machine."""
    secret = "pw-not-in-argv-7731"
    params = ssh_env.params(password=secret)
    _whoami(params)  # key auth succeeds first; the password is never needed
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert secret.encode() not in cmdline


def test_an_encrypted_key_from_ssh_config_without_agent_says_so(
    ssh_env: SshEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = make_key(tmp_path / "locked", passphrase="secret words")
    ssh_env.sshd.authorize("root", Path(str(key) + ".pub"))
    config = tmp_path / "ssh_config"
    config.write_text(f"Host locked\n  HostName {HOST}\n  Port {ssh_env.sshd.port}\n  User root\n"
                      f"  IdentityFile {key}\n  UserKnownHostsFile {ssh_env.known_hosts}\n")
    text = _error(SSHParams("locked", ssh_config=str(config)))
    assert f"the key {key} is encrypted and no ssh-agent holds it" in text
    assert f"ssh-add {key}" in text and "secret words" not in text
