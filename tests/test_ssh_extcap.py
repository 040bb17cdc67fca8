"""The extcap over SSH, end to end: ``tshark -i swtpm-<host>-<vm>`` and ``swtpm-ssh`` against a
real sshd give the same frames as the local capture of the same log."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, corpus_log_paths
from sshd import HOST, SshEnv, ssh_env  # noqa: F401  (fixture)

TIMEOUT_S = 120


def packets(pcapng: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """(ts high, ts low, packet data, options) of every enhanced packet block."""
    out = []
    at = 0
    while at + 12 <= len(pcapng):
        kind, length = struct.unpack_from("<II", pcapng, at)
        if kind == 6:
            _iface, high, low, caplen, _len = struct.unpack_from("<IIIII", pcapng, at + 8)
            data = pcapng[at + 28 : at + 28 + caplen]
            opts = pcapng[at + 28 + ((caplen + 3) & ~3) : at + length - 4]
            out.append((high, low, data, opts))
        at += length
    return out


@pytest.fixture
def world(ssh_env: SshEnv, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A $HOME with an extcap launcher for this checkout, ~/.ssh set up for "testhost",
    a settings file with the log both as a local glob and on [[remote]] "lab"."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host testhost\n  HostName {HOST}\n  Port {ssh_env.sshd.port}\n  User root\n"
        f"  IdentityFile {ssh_env.key}\n")
    (home / ".ssh" / "known_hosts").write_text(ssh_env.sshd.known_hosts_line)
    extcap = home / ".config" / "wireshark" / "extcap"
    extcap.mkdir(parents=True)
    launcher = extcap / "swtpm-extcap"
    launcher.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                        "from swtpm_extcap.cli import main\nsys.exit(main())\n")
    launcher.chmod(0o755)
    logs = ssh_env.share / f"e2e-{tmp_path.name}"
    (logs / "run").mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[local]\nglobs = ["{logs}/run/*-swtpm.log"]\n\n'
        f'[[remote]]\nname = "lab"\nhost = "testhost"\nproxmox_dir = "{logs}/run"\n'
        f'pve_dir = "{logs}/pve"\nlibvirt_dir = "{logs}/libvirt"\n'
    )
    env = dict(os.environ, HOME=str(home), SWTPM_EXTCAP_CONFIG=str(config))
    env.pop("SSH_AUTH_SOCK", None)
    env.pop("XDG_CACHE_HOME", None)
    env.pop("XDG_CONFIG_HOME", None)
    yield logs, env
    shutil.rmtree(logs, ignore_errors=True)


def _extcap(env: dict[str, str], out: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--fifo", str(out), "--mode", "replay",
         *args], env=env, cwd=REPO, capture_output=True, timeout=TIMEOUT_S)


@pytest.mark.parametrize("options", [(), ("--runs", "last", "--extcap-capture-filter", "Unseal")],
                         ids=["all", "last-run-filtered"])
def test_remote_interface_and_swtpm_ssh_capture_the_same_frames_as_local(
    ssh_env: SshEnv, world: tuple[Path, dict[str, str]], tmp_path: Path, options: tuple[str, ...]
) -> None:
    logs, env = world
    corpus = next(p for p in corpus_log_paths() if p.name.startswith("proxmox-103"))
    shutil.copyfile(corpus, logs / "run" / "103-swtpm.log")
    listing = subprocess.run([sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"],
                             env=env, cwd=REPO, capture_output=True, timeout=TIMEOUT_S)
    assert listing.stderr == b""
    assert b"{value=swtpm-lab-103}" in listing.stdout and b"{value=swtpm-ssh}" in listing.stdout
    runs = {}
    for name, args in {
        "local": ("--extcap-interface", "swtpm-103"),
        "remote": ("--extcap-interface", "swtpm-lab-103"),
        "ssh": ("--extcap-interface", "swtpm-ssh", "--remote-host", "testhost",
                "--remote-log", str(logs / "run" / "103-swtpm.log")),
    }.items():
        out = tmp_path / f"{name}.pcapng"
        proc = _extcap(env, out, *args, *options)
        assert (proc.returncode, proc.stderr) == (0, b""), (name, proc.stderr)
        runs[name] = packets(out.read_bytes())
    assert len(runs["local"]) > (300 if not options else 4)
    assert runs["remote"] == runs["local"]
    assert runs["ssh"] == runs["local"]


def test_tshark_captures_a_remote_interface(
    ssh_env: SshEnv, world: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    if shutil.which("tshark") is None:
        import conftest

        conftest.missing_tool("tshark not on PATH")
    logs, env = world
    corpus = next(p for p in corpus_log_paths() if p.name.startswith("proxmox-103"))
    shutil.copyfile(corpus, logs / "run" / "103-swtpm.log")
    local, remote = tmp_path / "local.pcapng", tmp_path / "remote.pcapng"
    for iface, out in (("swtpm-103", local), ("swtpm-lab-103", remote)):
        proc = subprocess.run(
            ["tshark", "-Q", "-i", iface, "-o", f"extcap.{iface.replace('-', '_')}.mode:replay",
             "-w", str(out)], env=env, capture_output=True, timeout=TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr
    # tshark rewrites the section: compare what it decodes, frame by frame
    fields = ["-T", "fields", "-e", "frame.time_epoch", "-e", "tcp.srcport", "-e", "tcp.dstport",
              "-e", "tcp.payload", "-e", "frame.comment"]
    got = [subprocess.run(["tshark", "-r", str(f), *fields], capture_output=True,
                          timeout=TIMEOUT_S).stdout for f in (local, remote)]
    assert got[0].count(b"\n") > 300
    assert got[1] == got[0]


def test_a_level_1_vm_is_told_apart_locally_and_remotely(
    ssh_env: SshEnv, world: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    import realtpm

    if realtpm.missing_tools("swtpm"):
        import conftest

        conftest.missing_tool("swtpm not on PATH")
    logs, env = world
    sw = realtpm.start_swtpm(logs / "tpm", level=1)
    try:
        # the log by the path its --log names: a local glob and a glob of the [[remote]] entry
        Path(env["SWTPM_EXTCAP_CONFIG"]).write_text(
            f'[local]\nglobs = ["{logs}/tpm/swtpm.log"]\n\n'
            f'[[remote]]\nname = "lab"\nhost = "testhost"\nglobs = ["{logs}/tpm/swtpm.log"]\n'
        )
        listing = subprocess.run([sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"],
                                 env=env, cwd=REPO, capture_output=True, timeout=TIMEOUT_S)
        procs = [_extcap(env, tmp_path / f"{i}.pcapng", "--extcap-interface", i)
                 for i in ("swtpm-swtpm", "swtpm-lab-swtpm")]
    finally:
        sw.stop()
    text = listing.stdout.decode()
    assert "{value=swtpm-swtpm}{display=SWTPM swtpm" in text
    assert text.count("(level 1: no TPM traffic logged)}") == 2, text
    for proc in procs:
        err = proc.stderr.decode()
        assert proc.returncode != 0
        assert err.count("\n") == 1 and "level 1" in err and "level 2 is enough" in err
    assert "swtpm on testhost logs at level 1" in procs[1].stderr.decode()  # names its host


def test_without_asyncssh_the_listing_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install without the asyncssh package (e.g. a venv made without dependencies)."""
    from swtpm_extcap.extcap.protocol import list_interfaces

    config = tmp_path / "config.toml"
    config.write_text('[[remote]]\nname = "pve1"\nhost = "pve1.lan"\n')
    monkeypatch.setenv("SWTPM_EXTCAP_CONFIG", str(config))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "asyncssh", None)  # "import asyncssh" raises ImportError
    lines = list_interfaces()
    note = [line for line in lines if "{value=swtpm-pve1--error}" in line]
    assert len(note) == 1 and "pip install asyncssh bcrypt" in note[0]
    assert "{display=SWTPM pve1 error: SSH needs the asyncssh package" in note[0]
    assert any("{value=swtpm-ssh}" in line for line in lines)


def test_a_failing_host_in_the_listing_and_its_capture_say_the_same_line(
    ssh_env: SshEnv, world: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    logs, env = world
    config = Path(env["SWTPM_EXTCAP_CONFIG"])
    config.write_text(config.read_text() + '\n[[remote]]\nname = "gone"\nhost = "127.0.0.77"\n'
                      'port = 9\nconnect_timeout = 2\n')
    env = dict(env, XDG_CACHE_HOME=str(tmp_path / "cache"))
    listing = subprocess.run([sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"],
                             env=env, cwd=REPO, capture_output=True, timeout=TIMEOUT_S)
    assert listing.stderr == b""
    (entry,) = [ln for ln in listing.stdout.decode().splitlines() if "{value=swtpm-gone--error}" in ln]
    reason = entry.split("{display=SWTPM gone error: ", 1)[1].rstrip("}")
    assert reason.startswith("SSH to 127.0.0.77:9 failed")
    proc = _extcap(env, tmp_path / "out.pcapng", "--extcap-interface", "swtpm-gone--error")
    assert proc.returncode == 1 and proc.stderr.decode() == f"swtpm-extcap: {reason}\n"


def test_swtpm_ssh_with_a_log_that_does_not_exist_is_one_line(
    ssh_env: SshEnv, world: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    import time

    logs, env = world
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--fifo", str(tmp_path / "o"),
         "--extcap-interface", "swtpm-ssh", "--remote-host", "testhost",
         "--remote-log", str(logs / "run" / "999-swtpm.log")],
        env=env, cwd=REPO, capture_output=True, timeout=TIMEOUT_S)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1
    assert b"does not exist on testhost" in proc.stderr
