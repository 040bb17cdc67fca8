"""swtpm-ssh's options (sshdump's names and types) and their parsing into SSHParams."""

from __future__ import annotations

import pytest

from swtpm_extcap.errors import UsageError
from swtpm_extcap.extcap.ssh_options import SSH_OPTIONS, remote_log_path, ssh_target


def test_sshdump_names_and_types() -> None:
    types = {o.call: o.type for o in SSH_OPTIONS}
    assert types == {
        "--remote-host": "string", "--remote-port": "unsigned", "--remote-username": "string",
        "--remote-password": "password", "--sshkey": "fileselect",
        "--sshkey-passphrase": "password", "--remote-priv": "radio", "--remote-log": "string",
        "--proxycommand": "string", "--remote-reader": "string",
    }


def test_priv_choices_are_the_connection_layers() -> None:
    from swtpm_extcap.remote.ssh import PRIVS

    (priv,) = [o for o in SSH_OPTIONS if o.call == "--remote-priv"]
    assert tuple(c.value for c in priv.choices) == PRIVS


def test_values_become_params_and_a_log_path() -> None:
    params, path = ssh_target({
        "--remote-host": "pve1", "--remote-port": "2222", "--remote-username": "root",
        "--remote-password": " pw with spaces ", "--sshkey": "/k", "--sshkey-passphrase": "pp",
        "--remote-priv": "sudo", "--remote-log": "103",
    })
    assert (params.host, params.port, params.user, params.identity, params.priv) == (
        "pve1", 2222, "root", "/k", "sudo")
    assert params.password == " pw with spaces " and params.passphrase == "pp"
    assert path == "/run/qemu-server/103-swtpm.log"
    assert "pw with spaces" not in repr(params)
    params, _ = ssh_target({"--remote-host": "alias", "--remote-log": "/x.log"})
    assert (params.port, params.user, params.identity, params.priv) == (None, None, None, "none")


def test_remote_log_forms() -> None:
    assert remote_log_path("/srv/a b.log") == "/srv/a b.log"
    assert remote_log_path("web1") == "/var/log/swtpm/libvirt/qemu/web1-swtpm.log"
    with pytest.raises(UsageError):
        remote_log_path("rel/path.log")


@pytest.mark.parametrize("values, fragment", [
    ({"--remote-log": "103"}, "needs the remote host"),
    ({"--remote-host": "h"}, "needs the log"),
    ({"--remote-host": "h", "--remote-log": "1", "--remote-port": "70000"}, "--remote-port"),
    ({"--remote-host": "h", "--remote-log": "1", "--remote-priv": "su"}, "--remote-priv"),
    ({"--remote-host": "-oProxyCommand=x", "--remote-log": "1"}, "give a host name"),
])
def test_bad_values_are_one_line_before_any_connection(values: dict[str, str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment) as info:
        ssh_target(values)
    assert "\n" not in str(info.value)


def test_proxycommand_and_reader_reach_the_params() -> None:
    params, _ = ssh_target({"--remote-host": "pve1", "--remote-log": "103",
                            "--proxycommand": "nc %h %p",
                            "--remote-reader": "/usr/local/sbin/swtpm-extcap-reader"})
    assert params.proxy_command == "nc %h %p"
    assert params.reader == "/usr/local/sbin/swtpm-extcap-reader"
    for bad in ({"--proxycommand": "nc 'open"}, {"--remote-reader": "reader"}):
        with pytest.raises(UsageError):
            ssh_target({"--remote-host": "pve1", "--remote-log": "103", **bad})
