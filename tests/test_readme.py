"""The README's examples run as written.

Every ``sh`` line and ``toml`` block of README.md is taken from the file itself
(nothing retyped here) and run the way a reader would: after the real
``install.sh`` into a temporary ``$HOME``, with the venv's ``swtpm-extcap`` on
``PATH``, in a folder holding ``103-swtpm.log`` (a real Proxmox log of the corpus),
and with a settings file whose Proxmox folder holds that log as VM 103's, so that
``tshark -i swtpm-103`` finds it. The two set-up commands of the quick start are
the install itself and this test suite; lines that need a real remote host are
checked for what can be checked here (their settings parse).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import realtpm
from conftest import REPO, corpus_log_paths

README = REPO / "README.md"
#: the quick start's own set-up commands: the fixture runs one, CI the other
SETUP = ("./install.sh", "./run-tests")

pytestmark = pytest.mark.skipif(
    bool(realtpm.missing_tools("tshark")), reason="needs tshark on PATH"
)


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def commands(text: str) -> list[str]:
    """The command of every line of the ``sh`` blocks, comments dropped."""
    out = []
    for block in blocks(text, "sh"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


def test_the_readme_shows_examples_to_run() -> None:
    cmds = commands(README.read_text())
    assert [c for c in cmds if c.startswith(SETUP)] == ["./install.sh --deps --demo", "./run-tests"]
    assert len(cmds) >= 6


@dataclass(frozen=True)
class Reader:
    """A reader's machine: swtpm-extcap installed, a VM log, a settings file."""

    work: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Reader:
    root = tmp_path_factory.mktemp("readme")
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "WIRESHARK", "SWTPM_"))}
    env.pop("PYTHONPATH", None)
    env["HOME"] = str(home)
    # --personal: this $HOME's folders also when the tests run as root (whose install
    # goes system-wide: tests/test_install_root.py, in a private namespace)
    proc = subprocess.run(["bash", str(REPO / "install.sh"), "--personal", "--venv", str(root / "venv")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"install.sh failed:\n{proc.stdout}\n{proc.stderr}"
    log = next(p for p in corpus_log_paths() if p.name.startswith("proxmox-103"))
    (root / "run").mkdir()
    shutil.copyfile(log, root / "run" / "103-swtpm.log")  # as /run/qemu-server/103-swtpm.log
    work = root / "work"
    work.mkdir()
    shutil.copyfile(log, work / "103-swtpm.log")  # as a reader's scp copy
    config = root / "config.toml"
    config.write_text(f'[local]\nproxmox_dir = "{root / "run"}"\npve_conf_dir = "{root / "pve"}"\n')
    env["SWTPM_EXTCAP_CONFIG"] = str(config)
    env["PATH"] = f"{root / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return Reader(work, env)


def run(reader: Reader, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=reader.work, env=reader.env,
                          capture_output=True, text=True, timeout=120)


def readme_command(start: str) -> str:
    [found] = [c for c in commands(README.read_text()) if c.startswith(start)]
    return found


def test_convert_then_filter_then_pcrs_as_the_readme_shows(reader: Reader) -> None:
    convert = run(reader, readme_command("swtpm-extcap convert"))
    assert convert.returncode == 0, convert.stderr
    assert (reader.work / "103-swtpm.pcapng").is_file()
    assert "306 TPM records" in convert.stderr  # its summary line

    failed_unseals = run(reader, readme_command("tshark -r 103-swtpm.pcapng -Y 'swtpm.cc"))
    assert failed_unseals.returncode == 0 and "tshark:" not in failed_unseals.stderr, failed_unseals.stderr
    assert failed_unseals.stdout == ""  # the corpus log's Unseals succeed
    # the same filter without the failure test finds them: the plugin's field is there
    unseals = run(reader, readme_command("tshark -r 103-swtpm.pcapng -Y 'swtpm.cc").replace(
        " && tpm.resp.rc != 0", ""))
    assert unseals.stdout.count("Unseal") >= 4, unseals.stdout + unseals.stderr
    # the decoder's fields: the PolicyPCRs that bind PCR 7 (three: one per Unseal and a trial)
    policy_pcr = run(reader, readme_command("tshark -r 103-swtpm.pcapng -Y 'tpm2.pcr"))
    rows = policy_pcr.stdout.splitlines()
    assert len(rows) == 3 and all("TPM_CC_PolicyPCR" in r and "sha256: PCR 7" in r for r in rows), rows
    report = run(reader, readme_command("tshark -r 103-swtpm.pcapng -q -z"))
    assert "TPM commands (swtpm-extcap)" in report.stdout and "153 requests" in report.stdout, report.stdout

    diff = run(reader, readme_command("swtpm-extcap pcrs --diff"))
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.startswith("A = run 1") and "B = run 2" in diff.stdout


def test_the_live_capture_command_shows_the_named_commands(reader: Reader) -> None:
    """``tshark -i swtpm-103 -f "Unseal PolicyPCR"`` follows the log: it is stopped
    (as a reader stops it) once the backlog's Unseals and PolicyPCRs are out."""
    proc = subprocess.Popen(["bash", "-c", "exec " + readme_command("tshark -i swtpm-103")],
                            cwd=reader.work, env=reader.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    reader_thread = threading.Thread(target=read, daemon=True)
    reader_thread.start()
    deadline = time.monotonic() + 60
    while sum("TPM_CC_Unseal" in line for line in lines) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    reader_thread.join(10)
    unseal = sum("[TPM Request] TPM_CC_Unseal" in line for line in lines)
    policy_pcr = sum("[TPM Request] TPM_CC_PolicyPCR" in line for line in lines)
    others = [line for line in lines if "[TPM Request] TPM_CC_" in line
              and "TPM_CC_Unseal" not in line and "TPM_CC_PolicyPCR" not in line]
    assert unseal == 2 and policy_pcr == 3, "".join(lines)  # the corpus log's two boots
    assert others == []


def test_the_remote_settings_of_the_readme_parse() -> None:
    from swtpm_extcap.interfaces.settings import parse_config

    [toml] = blocks(README.read_text(), "toml")
    config = parse_config(toml, Path("config.toml"))
    [remote] = config.remotes
    assert (remote.name, remote.host, remote.priv) == ("pve1", "pve1.lan", "sudo")
