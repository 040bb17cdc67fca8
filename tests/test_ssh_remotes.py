"""[[remote]] settings, remote discovery on a real sshd, log levels, the listing cache."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import realtpm
from sshd import HOST, SshEnv, ssh_env  # noqa: F401  (fixture)

from swtpm_extcap.errors import ConfigError
from swtpm_extcap.interfaces.local import running_levels
from swtpm_extcap.swtpmlog.level import level_hint, level_note, parse_log_option
from swtpm_extcap.sources.ssh import SSHSource
from swtpm_extcap.remote.listing import find_remote_vm, list_remotes
from swtpm_extcap.remote.settings import Node, Remote, load_remotes, parse_remotes


def test_parse_remotes_reads_the_issue_example(tmp_path: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text(
        '[local]\nglobs = []\n\n[[remote]]\nname = "pve1"\nhost = "pve1.lan"\nport = 22\n'
        'user = "root"\npriv = "sudo"\nnodes = { pve2 = "10.0.0.2" }\n'
    )
    (remote,) = load_remotes(conf)
    assert remote == Remote(name="pve1", host="pve1.lan", port=22, user="root", priv="sudo",
                            nodes=(("pve2", Node(host="10.0.0.2")),))
    assert remote.params("pve2").host == "10.0.0.2"
    assert remote.params("pve3").host == "pve3"  # default: the node name itself
    assert remote.params().priv == "sudo"
    assert remote.params("pve2").port is None  # the entry's port is its host's, not a node's


def test_parse_remotes_new_keys() -> None:
    (remote,) = parse_remotes([{
        "name": "pve1", "host": "pve1.lan", "port": 2200, "user": "admin", "key": "~/.ssh/k",
        "ssh_config": "~/.ssh/config.pve", "known_hosts": "~/.ssh/known.pve",
        "connect_timeout": 20, "reader": "/usr/local/sbin/swtpm-extcap-reader",
        "nodes": {"pve2": {"host": "10.0.0.2", "port": 2222, "user": "ops"}, "pve3": "pve3.lan"},
    }], "c")
    p2, p3 = remote.params("pve2"), remote.params("pve3")
    assert (p2.host, p2.port, p2.user, p2.identity) == ("10.0.0.2", 2222, "ops", "~/.ssh/k")
    assert (p3.host, p3.port, p3.user) == ("pve3.lan", None, "admin")
    for params in (remote.params(), p2, p3):
        assert params.ssh_config == "~/.ssh/config.pve" and params.known_hosts == "~/.ssh/known.pve"
        assert params.connect_timeout == 20 and params.reader == "/usr/local/sbin/swtpm-extcap-reader"


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ({"host": "h"}, "name must be"),
        ({"name": "a b", "host": "h"}, "name 'a b' must be"),
        ({"name": "a"}, "host must be"),
        ({"name": "a", "host": "h", "port": "22"}, "port must be"),
        ({"name": "a", "host": "h", "priv": "su"}, "priv must be"),
        ({"name": "a", "host": "h", "globs": ["rel/*.log"]}, "globs must be"),
        ({"name": "a", "host": "h", "colour": 1}, "unknown key colour"),
        ({"name": "a", "host": "-oProxyCommand=x"}, "give a host name"),
        ({"name": "a-", "host": "h"}, "not ending in -"),
        ({"name": "a", "host": "h", "connect_timeout": 0}, "connect_timeout must be"),
        ({"name": "a", "host": "h", "connect_timeout": True}, "connect_timeout must be"),
        ({"name": "a", "host": "h", "reader": "swtpm-extcap-reader"}, "absolute path"),
        ({"name": "a", "host": "h", "nodes": {"pve2": {"port": "22"}}}, "nodes.pve2.port"),
        ({"name": "a", "host": "h", "nodes": {"pve2": {"colour": 1}}}, "nodes must be"),
        ({"name": "a", "host": "h", "ssh_config": ""}, "ssh_config must be"),
    ],
)
def test_parse_remotes_errors_name_the_key(entry: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_remotes([entry], "cfg.toml")
    assert str(info.value).startswith("config file cfg.toml: remote[0]")


def test_parse_remotes_rejects_twice_the_same_name() -> None:
    with pytest.raises(ConfigError, match="used twice"):
        parse_remotes([{"name": "a", "host": "h"}, {"name": "a", "host": "g"}], "c")


def test_log_option_and_level_texts() -> None:
    assert parse_log_option("file=/run/qemu-server/103-swtpm.log,level=1,prefix=[id=1] ") == (
        "/run/qemu-server/103-swtpm.log", 1)
    assert parse_log_option("file=/x.log") == ("/x.log", 1)  # no level: swtpm logs no traffic
    assert parse_log_option("fd=3,level=20") == (None, 20)
    assert level_note(1) == " (level 1: no TPM traffic logged)"
    assert level_note(2) == level_note(None) == ""
    hint = level_hint("proxmox", 1, "pve1")
    assert "\n" not in hint and "level 2 is enough" in hint and "QemuServer.pm" in hint


@pytest.fixture
def home(ssh_env: SshEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $HOME whose ~/.ssh/config and known_hosts reach the test sshd as "testhost"."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "config").write_text(
        f"Host testhost\n  HostName {HOST}\n  Port {ssh_env.sshd.port}\n  User root\n"
        f"  IdentityFile {ssh_env.key}\n"
    )
    (ssh / "known_hosts").write_text(ssh_env.sshd.known_hosts_line)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path / "home"


@pytest.fixture
def host_tree(ssh_env: SshEnv) -> Iterator[Path]:
    """A Proxmox node (in a cluster) and libvirt host laid out on the "remote" side."""
    root = ssh_env.share / f"tree-{os.getpid()}-{time.monotonic_ns()}"
    (root / "run").mkdir(parents=True)
    (root / "pve" / "nodes" / "pve1" / "qemu-server").mkdir(parents=True)
    (root / "pve" / "nodes" / "pve2" / "qemu-server").mkdir(parents=True)
    os.symlink("nodes/pve1/qemu-server", root / "pve" / "qemu-server")
    os.symlink("nodes/pve1", root / "pve" / "local")
    (root / "libvirt").mkdir()
    (root / "run" / "103-swtpm.log").write_bytes(b"")
    conf = root / "pve" / "nodes" / "pve1" / "qemu-server"
    (conf / "103.conf").write_text("boot: order=scsi0\nname: web01\ntpmstate0: x\n[snap]\nname: old\n")
    (root / "pve" / "nodes" / "pve2" / "qemu-server" / "200.conf").write_text(
        "name: db-$(touch PWNED)\ntpmstate0: local-lvm:vm-200-disk-1\n")
    (root / "pve" / "nodes" / "pve2" / "qemu-server" / "201.conf").write_text("name: no-tpm\n")
    (root / "libvirt" / "dom one-swtpm.log").write_bytes(b"")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _remote(tree: Path, **kw: object) -> Remote:
    fields: dict[str, object] = {
        "name": "lab", "host": "testhost", "proxmox_dir": str(tree / "run"),
        "pve_dir": str(tree / "pve"), "libvirt_dir": str(tree / "libvirt"),
    }
    fields.update(kw)
    return Remote(**fields)  # type: ignore[arg-type]


def test_remote_discovery_finds_proxmox_cluster_libvirt_globs_and_levels(
    home: Path, host_tree: Path, tmp_path: Path
) -> None:
    missing = realtpm.missing_tools("swtpm")
    if missing:
        import conftest

        conftest.missing_tool(f"missing {missing}")
    quiet = realtpm.start_swtpm(host_tree / "tpm-quiet", level=1)
    loud = realtpm.start_swtpm(host_tree / "tpm-loud", level=20)
    try:
        remote = _remote(host_tree, globs=[str(host_tree / "tpm-*" / "swtpm.log")])
        listing = list_remotes([remote], cache=tmp_path / "cache")
        assert listing.failures == ()
        vms = {vm.interface: vm for vm in listing.vms}
        # the same levels, found locally from /proc
        local = running_levels()
        assert local[str(quiet.log_path)] == 1 and local[str(loud.log_path)] == 20
    finally:
        quiet.stop()
        loud.stop()
    assert sorted(vms) == ["swtpm-lab-103", "swtpm-lab-200", "swtpm-lab-dom_one", "swtpm-lab-loud",
                           "swtpm-lab-quiet"]
    assert vms["swtpm-lab-103"].display == "SWTPM lab VM 103 (web01)"
    assert vms["swtpm-lab-103"].path == str(host_tree / "run" / "103-swtpm.log")
    db = vms["swtpm-lab-200"]
    assert db.node == "pve2" and db.display == "SWTPM lab VM 200 (db-$(touch PWNED)) on node pve2"
    assert vms["swtpm-lab-dom_one"].vm_name == "dom one"
    assert vms["swtpm-lab-quiet"].level == 1
    assert vms["swtpm-lab-quiet"].display.endswith("(level 1: no TPM traffic logged)")
    assert vms["swtpm-lab-loud"].level == 20 and "level" not in vms["swtpm-lab-loud"].display
    assert not any(p.name == "PWNED" for p in host_tree.rglob("*"))


def test_listing_with_an_unreachable_host_is_quick_quiet_and_cached(
    home: Path, host_tree: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    good = _remote(host_tree)
    down = Remote(name="down", host="127.0.0.77", port=9)  # nothing listens there
    cache = tmp_path / "cache"
    t0 = time.monotonic()
    vms = list_remotes([good, down], cache=cache).vms
    elapsed = time.monotonic() - t0
    assert {vm.interface for vm in vms} >= {"swtpm-lab-103", "swtpm-lab-200"}
    assert elapsed < 10  # bounded (the figure is in bench/bench_ssh.py)
    assert capfd.readouterr() == ("", "")
    # within the cache's lifetime the host is not asked again: a removed log stays listed
    (host_tree / "run" / "103-swtpm.log").unlink()
    again = list_remotes([good, down], cache=cache).vms
    assert "swtpm-lab-103" in {vm.interface for vm in again}
    later = list_remotes([good, down], cache=cache, now=time.time() + 3600).vms
    assert "swtpm-lab-103" not in {vm.interface for vm in later}
    assert capfd.readouterr() == ("", "")


def test_capture_of_a_remote_interface_reads_its_log(home: Path, host_tree: Path,
                                                     tmp_path: Path) -> None:
    log = host_tree / "run" / "103-swtpm.log"
    log.write_bytes(b"[id=1] SWTPM_IO_Read: length 10\n")
    remote = _remote(host_tree)
    found = find_remote_vm("swtpm-lab-103", [remote], cache=tmp_path / "cache")
    assert found is not None
    owner, vm = found
    assert owner == remote and vm.path == str(log)
    source = SSHSource(owner.params(vm.node), vm.path)
    assert b"".join(source.read(threading.Event())) == log.read_bytes()
    assert find_remote_vm("swtpm-other-1", [remote], cache=tmp_path / "cache") is None
    from swtpm_extcap.errors import UserError

    with pytest.raises(UserError, match="no such VM log"):
        find_remote_vm("swtpm-lab-999", [remote], cache=tmp_path / "cache")


def test_a_failing_host_is_an_entry_and_capturing_it_gives_the_same_line(
    home: Path, host_tree: Path, tmp_path: Path
) -> None:
    from swtpm_extcap.errors import UserError

    cache = tmp_path / "cache"
    good = _remote(host_tree)
    down = Remote(name="down", host="127.0.0.77", port=9, connect_timeout=1.0)
    listing = list_remotes([good, down], cache=cache)
    (failure,) = listing.failures
    assert failure.interface == "swtpm-down--error"
    assert failure.display.startswith("SWTPM down error: SSH to 127.0.0.77:9 failed")
    with pytest.raises(UserError) as info:
        find_remote_vm("swtpm-down--error", [good, down], cache=cache)
    assert str(info.value) == failure.message
    # the good host's key changes: its entry says so, its cached VMs stay listed
    (home / ".ssh" / "known_hosts").write_text(
        f"[{HOST}]:9 x\n" + (home / ".ssh" / "known_hosts").read_text().replace(
            "ssh-ed25519 ", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmtsDxkJlN3MGWKQ1vD8eqKcOEw8uWqJtoUCBlYkeu+ x"))
    later = list_remotes([good], cache=cache, now=time.time() + 3600)
    assert "swtpm-lab-103" in {vm.interface for vm in later.vms}
    assert [f.interface for f in later.failures] == ["swtpm-lab--error"]
    assert "CHANGED" in later.failures[0].message
    # a cached VM of that host: found in the cache, and its capture fails with that line
    found = find_remote_vm("swtpm-lab-103", [good], cache=cache)
    assert found is not None
    with pytest.raises(UserError) as info:
        SSHSource(found[0].params(found[1].node), found[1].path).backlog()
    assert str(info.value) == later.failures[0].message


def test_cluster_nodes_use_their_own_port_user_and_key(
    ssh_env: SshEnv, home: Path, host_tree: Path, tmp_path: Path
) -> None:
    """pve2 is a second sshd: reached by its nodes table, or by its ssh_config alias's Port,
    never by the entry's port; the leftover log of a migrated VM keeps its own name."""
    from sshd import start_sshd

    node = start_sshd(tmp_path / "pve2")
    try:
        node.authorize("root", Path(str(ssh_env.key) + ".pub"))
        with open(home / ".ssh" / "known_hosts", "a") as fh:
            fh.write(node.known_hosts_line)
        log = host_tree / "run" / "200-swtpm.log"
        log.write_bytes(b"[id=1] line\n")
        (host_tree / "run" / "201-swtpm.log").write_bytes(b"")  # left on pve1 by a migration
        (host_tree / "pve" / "nodes" / "pve2" / "qemu-server" / "201.conf").write_text(
            "name: moved\ntpmstate0: x\n")
        before = node.log.read_text().count("Accepted publickey")
        by_table = _remote(host_tree, host=HOST, port=ssh_env.sshd.port, user="root",
                           key=str(ssh_env.key), nodes=(("pve2", Node(host=HOST, port=node.port)),))
        with open(home / ".ssh" / "config", "a") as fh:
            fh.write(f"Host pve2\n  HostName {HOST}\n  Port {node.port}\n  User root\n"
                     f"  IdentityFile {ssh_env.key}\n")
        by_alias = _remote(host_tree, host=HOST, port=ssh_env.sshd.port, user="root",
                           key=str(ssh_env.key))
        for i, remote in enumerate((by_table, by_alias)):
            vms = {vm.interface: vm for vm in list_remotes([remote], cache=tmp_path / f"c{i}").vms}
            assert vms["swtpm-lab-200"].node == "pve2"
            assert vms["swtpm-lab-201"].node == "pve2"
            leftover = vms["swtpm-lab-201-leftover"]
            assert leftover.node is None and "leftover log (the VM runs on node pve2)" in leftover.display
            vm = vms["swtpm-lab-200"]
            params = remote.params(vm.node)
            assert params.port == (node.port if remote is by_table else None)
            assert b"".join(SSHSource(params, vm.path).read(threading.Event())) == log.read_bytes()
        assert node.log.read_text().count("Accepted publickey") - before == 2
    finally:
        node.stop()


def test_hostile_ids_are_checked_or_sanitized(home: Path, host_tree: Path, tmp_path: Path) -> None:
    conf = host_tree / "pve" / "nodes" / "pve2" / "qemu-server"
    (conf / "{x} y.conf").write_text("tpmstate0: x\n")
    (conf / "12a.conf").write_text("tpmstate0: x\n")
    (host_tree / "libvirt" / "dom{1} ..x-swtpm.log").write_bytes(b"")
    vms = list_remotes([_remote(host_tree)], cache=tmp_path / "cache").vms
    names = sorted(vm.interface for vm in vms)
    assert "swtpm-lab-dom_1_..x" in names
    assert all(re.fullmatch(r"swtpm-lab-[A-Za-z0-9._-]+", n) for n in names), names
    assert not any("{" in vm.display or "/" in vm.display for vm in vms)


def test_a_warm_listing_imports_nothing_of_asyncssh(ssh_env: SshEnv, home: Path,
                                                    host_tree: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO

    config = tmp_path / "config.toml"
    config.write_text(f'[[remote]]\nname = "lab"\nhost = "testhost"\nproxmox_dir = "{host_tree}/run"\n'
                      f'pve_dir = "{host_tree}/pve"\nlibvirt_dir = "{host_tree}/libvirt"\n')
    env = dict(os.environ, HOME=str(home), SWTPM_EXTCAP_CONFIG=str(config),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    code = ("import sys; from swtpm_extcap.extcap.protocol import list_interfaces;"
            " lines = list_interfaces(); print(sum('swtpm-lab-103' in l for l in lines),"
            " 'asyncssh' in sys.modules, 'asyncio' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=60) for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["1", "True", "True"], ["1", "False", "False"]]
    assert [r.stderr for r in runs] == ["", ""] or "Warning" in runs[0].stderr
