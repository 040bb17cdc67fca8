"""Installs as root: Wireshark's global folders, one copy per Wireshark, the plugin registered once.

Root's Wireshark 4.2 and later loads no personal Lua plugin, so the README's
``./install.sh --deps --demo`` run as root installs into the global folders
(launcher, plugin, profile; the venv in /opt). Every system-wide step runs in
a private mount namespace (:mod:`privatews`): the machine's global folders
show through overlays and never change. Wireshark 4.4 is checked by
``bench/check_ws44.sh`` in a Debian 13 chroot (the same steps).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, missing_tool, write_pcapng
from privatews import PrivateGlobals, unavailable

from swtpm_extcap.wireshark.scope import ROOT_NOTE, ROOT_UNINSTALL_NOTE

INSTALL_SH = REPO / "install.sh"
VENV_PY = "/opt/swtpm-extcap/venv/bin/python"
TPM12_LOG = REPO / "tests" / "data" / "corpus" / "tpm12-swtpm.log"


@dataclass
class Machine:
    """A private copy of this machine's Wireshark folders, and a root $HOME."""

    globals: PrivateGlobals
    home: Path
    readme: subprocess.CompletedProcess[str]  # the first ./install.sh --deps --demo

    def env(self, home: Path | None = None) -> dict[str, str]:
        env = dict(os.environ, HOME=str(home or self.home), PIP_NO_INDEX="1")
        return env

    def run(
        self, *command: str, home: Path | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.globals.run(command, self.env(home), cwd=str(cwd or home or self.home))

    def folder(self, name: str) -> Path:
        """A global folder as tshark reports it (``Global Lua Plugins``, ...)."""
        out = self.run("tshark", "-G", "folders").stdout
        for line in out.splitlines():
            key, _, value = line.partition("\t")
            if key.strip().rstrip(":") == name:
                return Path(value.strip())
        raise AssertionError(f"tshark reports no {name}: {out}")

    def extcap_folder(self) -> Path:
        out = self.run("tshark", "-G", "folders").stdout
        name = "Global Extcap path" if "Global Extcap path" in out else "Extcap path"
        return self.folder(name)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    why = unavailable()
    if why is not None:
        missing_tool(f"installs as root are tested in a private mount namespace: {why}")
    root = tmp_path_factory.mktemp("machine")
    home = root / "root-home"
    home.mkdir()
    private = PrivateGlobals(root / "overlays")
    env = dict(os.environ, HOME=str(home), PIP_NO_INDEX="1")
    readme = private.run(["bash", str(INSTALL_SH), "--deps", "--demo"], env, cwd=str(home))
    assert readme.returncode == 0, readme.stdout + readme.stderr
    yield Machine(private, home, readme)


def plugin_lines(machine: Machine, home: Path | None = None) -> tuple[list[str], str]:
    proc = machine.run("tshark", "-G", "plugins", home=home)
    return [line for line in proc.stdout.splitlines() if "swtpm" in line], proc.stderr


def test_the_readme_install_as_root_goes_to_the_global_folders(machine: Machine) -> None:
    out = machine.readme.stdout
    assert ROOT_NOTE in out
    launcher = machine.extcap_folder() / "swtpm-extcap"
    plugin = machine.folder("Global Lua Plugins") / "swtpm.lua"
    profile = machine.folder("Global configuration") / "profiles" / "SWTPM"
    assert f"wrote the launcher {launcher} (runs {VENV_PY})" in out
    assert f"wrote the Lua plugin {plugin}" in out
    assert f"wrote the profile {profile}" in out
    # in the namespace only: the machine's own folders did not change
    assert (machine.globals.written(str(plugin.parent)) / "swtpm.lua").is_file()
    assert not (machine.home / ".local" / "lib" / "wireshark").exists()
    lines, stderr = plugin_lines(machine)
    assert any(line.endswith(f"lua script\t{plugin}") for line in lines), lines
    assert any(line.endswith(f"extcap\t{launcher}") for line in lines), lines
    assert "Lua" not in stderr and "WARNING" not in stderr, stderr


def test_the_demo_ran_with_the_plugin_as_root(machine: Machine) -> None:
    """--demo captured swtpm-demo as root: the launcher was found and the plugin
    loaded (only the plugin names the command on a response)."""
    out = machine.readme.stdout
    assert "$ tshark -i swtpm-demo" in out
    assert "[TPM Response] TPM_CC_Startup: TPM_RC_SUCCESS" in out, out[-2000:]


def test_the_global_profile_is_what_tshark_c_swtpm_loads(machine: Machine, tmp_path: Path) -> None:
    pcap = write_pcapng(TPM12_LOG.read_bytes(), tmp_path / "t12.pcapng")
    proc = machine.run("tshark", "-C", "SWTPM", "-r", str(pcap), "-c", "20")
    assert proc.returncode == 0, proc.stderr
    assert "Configuration Profile" not in proc.stderr, proc.stderr
    assert "TPM_ORD_Startup" in proc.stdout, proc.stdout  # the plugin's tpm12


def test_a_personal_install_beside_the_system_one_registers_once(
    machine: Machine, tmp_path: Path
) -> None:
    """Another user's (here: another $HOME's) personal install: both copies on disk,
    one registration; the install says which copy Wireshark uses."""
    home = tmp_path / "user"
    home.mkdir()
    done = machine.run(VENV_PY, "-m", "swtpm_extcap", "install", "--personal", home=home)
    assert done.returncode == 0, done.stderr
    assert "note: swtpm-extcap is also installed system-wide" in done.stdout
    personal = home / ".local" / "lib" / "wireshark" / "plugins" / "swtpm.lua"
    assert personal.is_file()
    lines, stderr = plugin_lines(machine, home)
    assert sum(line.startswith("swtpm.lua\t") for line in lines) == 2, lines  # both loaded ...
    assert "Lua: Error" not in stderr and "two protocols" not in stderr, stderr  # ... one registers
    pcap = write_pcapng(TPM12_LOG.read_bytes(), tmp_path / "t12.pcapng")
    shown = machine.run("tshark", "-r", str(pcap), "-Y", "tpm12", home=home)
    assert shown.returncode == 0 and "TPM_ORD_Startup" in shown.stdout, shown.stderr


def test_root_install_takes_roots_personal_copies_away(machine: Machine) -> None:
    """Root installed personally before (4.0 loads that too): the system-wide
    install removes those copies, so Wireshark warns about no second launcher."""
    personal = machine.run(VENV_PY, "-m", "swtpm_extcap", "install", "--personal")
    assert personal.returncode == 0, personal.stderr
    copies = {
        "launcher": machine.home / ".config" / "wireshark" / "extcap" / "swtpm-extcap",
        "Lua plugin": machine.home / ".local" / "lib" / "wireshark" / "plugins" / "swtpm.lua",
        "profile": machine.home / ".config" / "wireshark" / "profiles" / "SWTPM",
    }
    assert all(path.exists() for path in copies.values())
    warned = machine.run("tshark", "-D")
    assert "Cannot store interface" in warned.stderr  # Wireshark's own warning about two launchers
    again = machine.run("bash", str(INSTALL_SH), "--deps")  # the README command again
    assert again.returncode == 0, again.stderr
    for what, path in copies.items():
        assert f"removed the personal {what} {path}: the system-wide one replaces it" in again.stdout
        assert not path.exists()
    listing = machine.run("tshark", "-D")
    assert "swtpm-demo" in listing.stdout
    assert "Cannot store interface" not in listing.stderr, listing.stderr


def test_someone_elses_file_of_the_same_name_is_left_alone(machine: Machine) -> None:
    plugin = machine.home / ".local" / "lib" / "wireshark" / "plugins" / "swtpm.lua"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.write_text("-- another swtpm plugin, not ours\n")
    again = machine.run(VENV_PY, "-m", "swtpm_extcap", "install")
    assert again.returncode == 0, again.stderr
    assert plugin.read_text() == "-- another swtpm plugin, not ours\n"
    plugin.unlink()


def test_the_plugin_tests_refuse_another_global_version(machine: Machine) -> None:
    """tests/test_lua.py loads the checkout's plugin; an older copy in the global folder
    would register first and be tested instead: one clear failure says so."""
    plugin = machine.folder("Global Lua Plugins") / "swtpm.lua"
    older = machine.run("sh", "-c", f"echo '-- an older version' >> {plugin}")
    assert older.returncode == 0, older.stderr
    tests = machine.run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        "tests/test_lua.py", "-k", "every_frame_says_its_log_line", cwd=REPO)
    assert tests.returncode != 0
    assert "another version of the plugin from" in tests.stdout, tests.stdout[-3000:]
    same = machine.run(VENV_PY, "-m", "swtpm_extcap", "install")  # the same version again
    assert same.returncode == 0, same.stderr


def test_uninstall_as_root_removes_the_global_copies(machine: Machine) -> None:
    gone = machine.run("bash", str(INSTALL_SH), "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert ROOT_UNINSTALL_NOTE in gone.stdout
    assert f"removed the Lua plugin {machine.folder('Global Lua Plugins') / 'swtpm.lua'}" in gone.stdout
    assert "removed the virtual environment /opt/swtpm-extcap/venv" in gone.stdout
    lines, _ = plugin_lines(machine)
    assert lines == []
