"""The README's two commands in that order: ``./install.sh --deps --demo``, then the tests.

The install puts the plugin and the SWTPM profile where the installing user's
Wireshark loads them: the personal folders, or as root the global ones. The
tests that read Wireshark's dissection must then pass all the same, since
every tshark and pyshark they start runs under the session's own ``$HOME``
(tests/conftest.py). Here the install happens for real (the personal one into
a fresh ``$HOME``, the root one in a private mount namespace, :mod:`privatews`),
a check proves that Wireshark now loads the plugin for that user, and the
tests that failed that way before (issue 16) run under that user's ``$HOME``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import REPO, missing_tool, require_tshark, write_pcapng
from privatews import PrivateGlobals, unavailable

INSTALL_SH = REPO / "install.sh"
TPM12_LOG = REPO / "tests" / "data" / "corpus" / "tpm12-swtpm.log"
#: the tests an installed plugin used to break (tpm12 instead of tpm, DATA before tpm in
#: pyshark), and the plugin's own tests, which load the checkout's copy beside the installed one
AFFECTED = (
    "tests/test_frames.py::test_no_tpm_frame_carries_a_control_message",
    "tests/test_pcapng.py::test_tshark_decodes_the_truths_tpm_codes",
    "tests/test_pcapng.py::test_pyshark_decodes_the_truths_tpm_codes",
    "tests/test_lua.py",
)

Run = Callable[[Sequence[str], dict[str, str]], subprocess.CompletedProcess[str]]


def user_env(home: Path) -> dict[str, str]:
    """The installing user's environment: their $HOME, nothing of the session's."""
    return dict(os.environ, HOME=str(home), PIP_NO_INDEX="1")


def readme_then_tests(run: Run, home: Path, tmp_path: Path, *install: str) -> None:
    env = user_env(home)
    done = run(["bash", str(INSTALL_SH), *install, "--deps", "--demo"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrote the Lua plugin" in done.stdout and "wrote the profile" in done.stdout

    # the install is live for this user: their tshark dissects with the plugin
    pcap = write_pcapng(TPM12_LOG.read_bytes(), tmp_path / "t12.pcapng")
    shown = run(["tshark", "-r", str(pcap), "-Y", "tcp.len > 0", "-T", "fields",
                 "-e", "frame.protocols"], env)
    assert shown.returncode == 0, shown.stderr
    assert "tpm12" in shown.stdout, "the installed plugin is not loaded: this test proves nothing"

    tests = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *AFFECTED], env)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout, tests.stdout[-2000:]


def test_personal_install_then_the_tests(tmp_path: Path) -> None:
    """As an ordinary user (root with ``--personal`` gets the same folders)."""
    require_tshark()
    home = tmp_path / "home"
    home.mkdir()

    def run(command: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                              cwd=REPO)

    personal = ("--personal",) if hasattr(os, "geteuid") and os.geteuid() == 0 else ()
    readme_then_tests(run, home, tmp_path, *personal, "--venv", str(tmp_path / "venv"))
    assert (home / ".local" / "lib" / "wireshark" / "plugins" / "swtpm.lua").is_file()


def test_root_install_then_the_tests(tmp_path: Path) -> None:
    """As root: the global folders, in a private mount namespace."""
    why = unavailable()
    if why is not None:
        missing_tool(f"the root install is tested in a private mount namespace: {why}")
    home = tmp_path / "root-home"
    home.mkdir()
    private = PrivateGlobals(tmp_path / "overlays")

    def run(command: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return private.run(command, env, timeout=900, cwd=REPO)

    readme_then_tests(run, home, tmp_path)
    assert not (home / ".local" / "lib" / "wireshark").exists()  # global, not root's personal
