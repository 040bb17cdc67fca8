"""Windows and macOS: the code their Wireshark runs (the listing, the SSH source, the extcap
protocol, the launcher's install) imports no POSIX-only module. mypy --platform win32 and
darwin (run-tests) check the types; this checks the imports, by running them with every
POSIX-only module made unimportable."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.fast

POSIX_ONLY = ("fcntl", "termios", "pwd", "grp", "resource", "tty", "pty", "syslog",
              "crypt", "spwd")
PATHS = ("swtpm_extcap.cli", "swtpm_extcap.extcap.protocol", "swtpm_extcap.extcap.options",
         "swtpm_extcap.extcap.capture", "swtpm_extcap.interfaces.remote",
         "swtpm_extcap.interfaces.lookup", "swtpm_extcap.remote.listing",
         "swtpm_extcap.remote.discovery", "swtpm_extcap.remote.ssh",
         "swtpm_extcap.remote.host_keys", "swtpm_extcap.sources.ssh",
         "swtpm_extcap.sources.ssh_reader", "swtpm_extcap.wireshark.install")


def test_the_windows_and_macos_paths_import_no_posix_only_module(tmp_path: object) -> None:
    code = (
        "import sys\n"
        f"for name in {POSIX_ONLY!r}:\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "import importlib\n"
        f"for mod in {PATHS!r}:\n"
        "    importlib.import_module(mod)\n"
        "from swtpm_extcap.extcap.protocol import list_interfaces\n"
        "lines = list_interfaces()\n"
        "assert any('swtpm-ssh' in line for line in lines), lines\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), proc.stderr[-2000:]
