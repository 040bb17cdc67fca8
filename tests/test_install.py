"""install.sh and ``swtpm-extcap install`` for real: a venv, a launcher, tshark seeing it.

Everything happens under a temporary ``$HOME``. The package is built offline when
an interpreter with setuptools and wheel is at hand (Debian's python3 with
python3-setuptools and python3-wheel): then ``PIP_NO_INDEX=1`` proves that no
index is asked. Otherwise install.sh lets pip fetch the build tools.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import missing_tool

from swtpm_extcap.errors import UserError
from swtpm_extcap.wireshark.install import (
    LAUNCHER_BODY,
    PROFILE_FILES,
    Wireshark,
    add_install_parser,
    check_importable,
    extcap_dir,
    find_wireshark,
    launcher_text,
    parse_folders,
    parse_version,
    plugin_dir,
    profiles_dir,
    shipped,
)

REPO = Path(__file__).resolve().parents[1]
INSTALL_SH = REPO / "install.sh"
HAS_EXTCAP = (REPO / "swtpm_extcap" / "extcap" / "protocol.py").exists()
NO_EXTCAP = "swtpm_extcap/extcap/protocol.py (the extcap protocol) is not in this checkout yet"
TSHARK = shutil.which("tshark")

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="needs tshark (apt install tshark)")

_CAN_BUILD = """
import sys
import setuptools
v = tuple(int(p) for p in setuptools.__version__.split(".")[:2])
if v < (61, 0):
    sys.exit(1)
if v < (70, 1):
    import wheel
"""


def _offline_python() -> tuple[str, dict[str, str]]:
    """An interpreter that builds the wheel with what it has, and env that forbids indexes."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(candidate):
            probe = subprocess.run([candidate, "-c", _CAN_BUILD], capture_output=True)
            if probe.returncode == 0:
                return candidate, {"PIP_NO_INDEX": "1"}
    return sys.executable, {}


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SWTPM_EXTCAP"))}
    env["HOME"] = str(home)
    env.update(extra)
    return env


def _wireshark_version() -> tuple[int, int]:
    assert TSHARK is not None
    out = subprocess.run([TSHARK, "--version"], capture_output=True, text=True).stdout
    version = parse_version(out)
    assert version is not None, out
    return version


def _personal_extcap(home: Path) -> Path:
    if _wireshark_version() >= (4, 2):
        return home / ".local/lib/wireshark/extcap"
    return home / ".config/wireshark/extcap"


def _personal_plugin(home: Path) -> Path:
    return home / ".local/lib/wireshark/plugins/swtpm.lua"  # 4.0 and 4.4 alike


def _personal_profile(home: Path) -> Path:
    return home / ".config/wireshark/profiles/SWTPM"


@dataclass(frozen=True)
class Installed:
    home: Path
    venv: Path
    launcher: Path
    python: str
    env: dict[str, str]
    stdout: str
    seconds: float


def run_install(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    python, offline = _offline_python()
    return subprocess.run(
        ["bash", str(INSTALL_SH), "--python", python, "--personal", *args],
        env=env if env is not None else _env(home, **offline),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=home,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if TSHARK is None:
        pytest.skip("needs tshark (apt install tshark)")
    home = tmp_path_factory.mktemp("home")
    venv = home / "venvs" / "swtpm"
    python, offline = _offline_python()
    start = time.perf_counter()
    proc = run_install(home, "--venv", str(venv))
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield Installed(
        home=home,
        venv=venv,
        launcher=_personal_extcap(home) / "swtpm-extcap",
        python=python,
        env=_env(home, **offline),
        stdout=proc.stdout,
        seconds=seconds,
    )


# --- install.sh ---------------------------------------------------------------------


def test_launcher_lands_in_the_personal_extcap_folder(installed: Installed) -> None:
    launcher = installed.launcher
    assert launcher.is_file()
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    first, rest = launcher.read_text().split("\n", 1)
    assert first == f"#!{installed.venv}/bin/python"
    assert rest == LAUNCHER_BODY
    # the checkout is not needed at run time: the package is a copy in the venv
    site = subprocess.run(
        [
            str(installed.venv / "bin/python"),
            "-c",
            "import swtpm_extcap; print(swtpm_extcap.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert site.returncode == 0, site.stderr
    assert site.stdout.startswith(str(installed.venv)), site.stdout
    print(f"\n[install] install.sh took {installed.seconds:.1f} s with {installed.python}")


def test_install_says_what_it_did_and_how_to_try_it(installed: Installed) -> None:
    out = installed.stdout
    assert f"created the virtual environment {installed.venv}" in out
    assert f"installed swtpm-extcap 0.1.0 from {REPO} into {installed.venv}" in out
    assert f"wrote the launcher {installed.launcher} (runs {installed.venv}/bin/python)" in out
    assert f"wrote the Lua plugin {_personal_plugin(installed.home)}" in out
    assert f"wrote the profile {_personal_profile(installed.home)}" in out
    assert "tshark -D | grep swtpm" in out
    assert "tshark -i swtpm-demo -c 10" in out
    assert f"install.sh --uninstall --venv {installed.venv}" in out


def test_install_puts_the_plugin_and_the_profile(installed: Installed) -> None:
    plugin = _personal_plugin(installed.home)
    assert plugin.read_bytes() == (REPO / "swtpm_extcap/wireshark/swtpm.lua").read_bytes()
    profile = _personal_profile(installed.home)
    for name in PROFILE_FILES:
        assert (profile / name).read_bytes() == (
            REPO / "swtpm_extcap/wireshark/profile" / name
        ).read_bytes()
    assert (profile / ".swtpm-extcap").is_file()
    assert (profile / "recent").read_bytes() == shipped("profile/recent")


@needs_tshark
def test_wireshark_loads_the_installed_plugin_and_profile(installed: Installed) -> None:
    """What Wireshark itself reports under the temporary $HOME: the plugin, the profile."""
    assert TSHARK is not None
    plugins = subprocess.run(
        [TSHARK, "-G", "plugins"], env=installed.env, capture_output=True, text=True, timeout=60
    )
    assert str(_personal_plugin(installed.home)) in plugins.stdout, plugins.stdout
    assert "lua script" in plugins.stdout
    demo = REPO / "swtpm_extcap/data/demo-swtpm.log"
    pcap = installed.home / "demo.pcapng"
    converted = subprocess.run(
        [str(installed.venv / "bin/python"), "-m", "swtpm_extcap", "convert", str(demo),
         "-o", str(pcap)],
        env=installed.env, capture_output=True, text=True, cwd="/",
    )
    assert converted.returncode == 0, converted.stderr
    rows = subprocess.run(
        [TSHARK, "-C", "SWTPM", "-r", str(pcap), "-c", "30"],
        env=installed.env, capture_output=True, text=True, timeout=60,
    )
    assert rows.returncode == 0, rows.stderr
    assert "Configuration Profile" not in rows.stderr and "No such preference" not in rows.stderr
    lines = rows.stdout.splitlines()
    # the profile's columns: run and log line right after the time, then the command
    assert any(re.search(r"\s1 1 SWTPM ctrl CMD_GET_CAPABILITY\s", line) for line in lines), lines
    assert any("TPM_CC_Startup TPM_RC_SUCCESS" in line for line in lines), lines  # command, rc.name


def test_installed_package_has_every_module_and_the_demo_log(installed: Installed) -> None:
    site = subprocess.run(
        [
            str(installed.venv / "bin/python"),
            "-c",
            "import swtpm_extcap; print(swtpm_extcap.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    package = Path(site.stdout.strip()).parent
    source = REPO / "swtpm_extcap"

    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    missing = files(source) - files(package)
    assert not missing, (
        f"the wheel lacks {sorted(missing)}: list every subpackage in pyproject.toml"
        " [tool.setuptools] packages (e.g. swtpm_extcap.sources) or use packages.find"
    )
    demo = subprocess.run(
        [
            str(installed.venv / "bin/python"),
            "-c",
            "from swtpm_extcap.interfaces.demo import demo_log_path; print(demo_log_path())",
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    demo_path = Path(demo.stdout.strip())
    assert demo_path.is_relative_to(installed.venv)
    assert demo_path.read_bytes() == (source / "data" / "demo-swtpm.log").read_bytes()


def test_install_leaves_the_checkout_clean(installed: Installed) -> None:
    assert not (REPO / "build").exists()
    assert not list(REPO.glob("*.egg-info"))


def test_launcher_answers_wireshark(installed: Installed) -> None:
    if not HAS_EXTCAP:
        probe = subprocess.run(
            [str(installed.venv / "bin/python"), "-c", "import swtpm_extcap"], cwd="/"
        )
        assert probe.returncode == 0
        pytest.skip(NO_EXTCAP + ": checked the import only")
    start = time.perf_counter()
    proc = subprocess.run(
        [str(installed.launcher), "--extcap-interfaces", "--extcap-version=4.0"],
        env=installed.env,
        capture_output=True,
        text=True,
        cwd="/",
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "interface {value=swtpm-demo}" in proc.stdout
    print(f"\n[install] launcher --extcap-interfaces: {seconds * 1000:.0f} ms")


@needs_tshark
def test_tshark_lists_and_captures_the_demo(installed: Installed) -> None:
    if not HAS_EXTCAP:
        pytest.skip(NO_EXTCAP)
    assert TSHARK is not None
    listing = subprocess.run(
        [TSHARK, "-D"], env=installed.env, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr
    lines = [line for line in listing.stdout.splitlines() if "swtpm" in line]
    assert any(re.search(r"\bswtpm-demo\b", line) for line in lines), listing.stdout
    capture = subprocess.run(
        [TSHARK, "-i", "swtpm-demo", "-c", "60", "-T", "fields", "-e", "frame.number"]
        + ["-e", "tpm.req.cc"],
        env=installed.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert capture.returncode == 0, capture.stderr
    rows = [line.split("\t") for line in capture.stdout.splitlines()]
    assert len(rows) == 60, capture.stderr
    assert ["0x00000144"] in [row[1:] for row in rows], rows  # TPM2_Startup, decoded


def test_install_py_picks_the_same_folder(
    installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("XDG_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(installed.home))
    ws = find_wireshark()
    assert ws.version == _wireshark_version()
    assert extcap_dir(ws, system=False, environ=os.environ) == installed.launcher.parent


def test_install_command_in_the_venv(installed: Installed, tmp_path: Path) -> None:
    """``install`` as the lead's cli wires it: add_install_parser + install_main."""
    python = str(installed.venv / "bin/python")
    driver = (
        "import argparse, sys\n"
        "from swtpm_extcap.wireshark.install import add_install_parser, install_main\n"
        "p = argparse.ArgumentParser()\n"
        "add_install_parser(p.add_subparsers(dest='command'))\n"
        "sys.exit(install_main(p.parse_args(sys.argv[1:])))\n"
    )
    target = tmp_path / "ext"
    done = subprocess.run(
        [python, "-c", driver, "install", "--personal", "--dir", str(target)],
        env=installed.env,
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    launcher = target / "swtpm-extcap"
    assert launcher.read_text() == f"#!{python}\n{LAUNCHER_BODY}"
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    assert f"wrote the launcher {launcher} (runs {python})" in done.stdout
    assert "tshark -i swtpm-demo -c 10" in done.stdout

    # the default folder, from the installed Wireshark, under another $HOME
    home2 = tmp_path / "home2"
    home2.mkdir()
    default = subprocess.run(
        [python, "-c", driver, "install", "--personal"], env=_env(home2), capture_output=True,
        text=True, cwd="/",
    )
    assert default.returncode == 0, default.stderr
    assert (_personal_extcap(home2) / "swtpm-extcap").read_text() == launcher.read_text()

    assert (_personal_plugin(home2)).is_file()
    assert (_personal_profile(home2) / "colorfilters").is_file()

    gone = subprocess.run(
        [python, "-c", driver, "install", "--personal", "--uninstall", "--dir", str(target)],
        env=_env(home2),
        capture_output=True,
        text=True,
    )
    assert gone.returncode == 0 and f"removed the launcher {launcher}" in gone.stdout
    assert f"removed the Lua plugin {_personal_plugin(home2)}" in gone.stdout
    assert f"removed the profile {_personal_profile(home2)}" in gone.stdout
    assert not launcher.exists()
    assert not _personal_plugin(home2).exists() and not _personal_profile(home2).exists()
    again = subprocess.run(
        [python, "-c", driver, "install", "--personal", "--uninstall", "--dir", str(target)],
        env=_env(home2),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "nothing to remove" in again.stdout


@needs_tshark
def test_personal_folder_follows_xdg_config_home_like_wireshark(
    installed: Installed, tmp_path: Path
) -> None:
    """Wireshark < 4.2 looks in $XDG_CONFIG_HOME/wireshark/extcap when that is set."""
    if _wireshark_version() >= (4, 2):
        pytest.skip("Wireshark 4.2+ reports its personal extcap folder itself")
    if not HAS_EXTCAP:
        pytest.skip(NO_EXTCAP)
    assert TSHARK is not None
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    home.mkdir()
    env = _env(home, XDG_CONFIG_HOME=str(xdg))
    python = str(installed.venv / "bin/python")
    driver = (
        "import argparse, sys\n"
        "from swtpm_extcap.wireshark.install import add_install_parser, install_main\n"
        "p = argparse.ArgumentParser()\n"
        "add_install_parser(p.add_subparsers(dest='command'))\n"
        "sys.exit(install_main(p.parse_args(['install', '--personal'])))\n"
    )
    done = subprocess.run([python, "-c", driver], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (xdg / "wireshark/extcap/swtpm-extcap").is_file()
    launcher = str(xdg / "wireshark/extcap/swtpm-extcap")
    listing = subprocess.run([TSHARK, "-D"], env=env, capture_output=True, text=True, timeout=60)
    assert "swtpm-demo" in listing.stdout
    used = subprocess.run(
        [TSHARK, "-G", "plugins"], env=env, capture_output=True, text=True, timeout=60
    )
    assert launcher in used.stdout
    without = subprocess.run(
        [TSHARK, "-G", "plugins"], env=_env(home), capture_output=True, text=True, timeout=60
    )
    assert launcher not in without.stdout  # ~/.config would have been the wrong place


def test_cli_install_subcommand_when_wired(installed: Installed, tmp_path: Path) -> None:
    python = str(installed.venv / "bin/python")
    target = tmp_path / "ext"
    proc = subprocess.run(
        [python, "-m", "swtpm_extcap", "install", "--personal", "--dir", str(target)],
        env=installed.env,
        capture_output=True,
        text=True,
        cwd="/",
    )
    if proc.returncode == 2 and "invalid choice" in proc.stderr:
        pytest.skip("cli.py does not call add_install_parser yet")
    assert proc.returncode == 0, proc.stderr
    assert (target / "swtpm-extcap").read_text().startswith(f"#!{python}\n")


# --- refusals --------------------------------------------------------------------


def test_install_command_refuses_an_interpreter_without_the_package(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(UserError, match="cannot import swtpm_extcap"):
        check_importable(str(bare / "bin/python"))


def test_missing_wireshark_says_how_to_install_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with the basics and no tshark/wireshark
    bin_dir.mkdir()
    for tool in ("dirname", "basename", "mktemp", "awk", "head"):
        found = shutil.which(tool)
        assert found is not None
        os.symlink(found, bin_dir / tool)
    proc = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(INSTALL_SH), "--venv", str(tmp_path / "v")],
        env=_env(tmp_path, PATH=str(bin_dir)),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "apt install tshark" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "v").exists()


def test_venv_path_with_whitespace_is_refused(tmp_path: Path) -> None:
    proc = run_install(tmp_path, "--venv", str(tmp_path / "my venv"))
    assert proc.returncode != 0
    assert "whitespace" in proc.stderr
    assert not (tmp_path / "my venv").exists()


def test_help_and_unknown_option() -> None:
    ok = subprocess.run(["bash", str(INSTALL_SH), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--uninstall" in ok.stdout
    bad = subprocess.run(["bash", str(INSTALL_SH), "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown option: --frobnicate" in bad.stderr


def test_install_sh_is_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        missing_tool("needs shellcheck (apt install shellcheck)")
    proc = subprocess.run(["shellcheck", str(INSTALL_SH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# --- the launcher and the folder rule ---------------------------------------------


def test_the_launcher_exists_once() -> None:
    """install.sh hands over to the package: no second launcher, no second folder rule.
    ``extcap/swtpm-extcap`` is the checkout's development launcher: it runs the
    checkout's package, not a copy of the installed launcher's text."""
    dev = (REPO / "extcap" / "swtpm-extcap").read_text()
    assert LAUNCHER_BODY not in dev and "sys.path.insert" in dev
    text = INSTALL_SH.read_text()
    assert "-m swtpm_extcap install" in text
    for copy in ("\" -G folders", "awk -F", "tail -n +2", "printf '#!"):  # old rule, launcher
        assert copy not in text, copy


def test_shipped_files_are_package_data() -> None:
    assert shipped("swtpm.lua").startswith(b"-- swtpm.lua")
    for name in PROFILE_FILES:
        assert shipped(f"profile/{name}")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"wireshark/*.lua"' in pyproject and '"wireshark/profile/*"' in pyproject


def test_launcher_texts() -> None:
    assert launcher_text("/opt/v/bin/python") == "#!/opt/v/bin/python\n" + LAUNCHER_BODY
    assert (
        launcher_text(r"C:\Program Files\Python311\python.exe", windows=True)
        == '@"C:\\Program Files\\Python311\\python.exe" -m swtpm_extcap %*\r\n'
    )
    with pytest.raises(UserError, match="whitespace"):
        launcher_text("/home/a b/venv/bin/python")


@needs_tshark
def test_parse_version_of_the_installed_tshark() -> None:
    assert TSHARK is not None
    out = subprocess.run([TSHARK, "--version"], capture_output=True, text=True).stdout
    assert parse_version(out) == tuple(int(x) for x in out.split()[2].split(".")[:2])


@pytest.mark.parametrize(
    ("line", "version"),
    [
        ("TShark (Wireshark) 4.0.17 (Git v4.0.17 packaged as 4.0.17-0+deb12u3).", (4, 0)),
        ("TShark (Wireshark) 4.2.2 (Git v4.2.2 packaged as 4.2.2-1.1build3).", (4, 2)),
        ("Wireshark 4.4.1 (v4.4.1-0-g575b2bf4746e).", (4, 4)),
        ("TShark (Wireshark) 3.6.2 (Git v3.6.2 packaged as 3.6.2-2)", (3, 6)),
        ("something else", None),
        ("", None),
    ],
)
def test_parse_version(line: str, version: tuple[int, int] | None) -> None:
    assert parse_version(line + "\n\nCopyright 1998-2024 Gerald Combs\n") == version


@needs_tshark
def test_parse_folders_of_the_installed_tshark() -> None:
    assert TSHARK is not None
    out = subprocess.run([TSHARK, "-G", "folders"], capture_output=True, text=True).stdout
    folders = parse_folders(out)
    assert folders["Personal configuration"].endswith("wireshark")
    assert "Extcap path" in folders or "Global Extcap path" in folders


def _ws(version: tuple[int, int], **folders: str) -> Wireshark:
    return Wireshark("tshark", version, {k.replace("_", " "): v for k, v in folders.items()})


@pytest.mark.parametrize(
    ("ws", "system", "expected"),
    [
        (_ws((4, 0)), False, "/h/.config/wireshark/extcap"),
        (_ws((4, 0), Personal_configuration="/x/wireshark"), False, "/x/wireshark/extcap"),
        (_ws((4, 1)), False, "/h/.config/wireshark/extcap"),
        (_ws((4, 2)), False, "/h/.local/lib/wireshark/extcap"),
        (_ws((5, 0)), False, "/h/.local/lib/wireshark/extcap"),
        (
            _ws((4, 4), Personal_Extcap_path="/h/.local/lib/wireshark/extcap/wireshark"),
            False,
            "/h/.local/lib/wireshark/extcap/wireshark",
        ),
        (
            _ws((4, 0), Extcap_path="/usr/lib/x/wireshark/extcap"),
            True,
            "/usr/lib/x/wireshark/extcap",
        ),
        (
            _ws((4, 2), Global_Extcap_path="/usr/libexec/wireshark/extcap", Extcap_path="/old"),
            True,
            "/usr/libexec/wireshark/extcap",
        ),
    ],
    ids=["4.0", "4.0-folders", "4.1", "4.2", "5.0", "4.4-reported", "system-4.0", "system-4.2"],
)
def test_extcap_dir_rule(ws: Wireshark, system: bool, expected: str) -> None:
    assert extcap_dir(ws, system=system, environ={"HOME": "/h"}) == Path(expected)


@pytest.mark.parametrize(
    ("ws", "system", "plugins", "profiles"),
    [
        (_ws((4, 0)), False, "/h/.local/lib/wireshark/plugins", "/h/.config/wireshark/profiles"),
        (
            _ws((4, 0), Personal_Lua_Plugins="/p/plugins", Personal_configuration="/c/ws"),
            False,
            "/p/plugins",
            "/c/ws/profiles",
        ),
        (
            _ws((4, 4), Global_Lua_Plugins="/usr/lib/wireshark/plugins",
                Global_configuration="/usr/share/wireshark"),
            True,
            "/usr/lib/wireshark/plugins",
            "/usr/share/wireshark/profiles",
        ),
    ],
    ids=["personal-default", "personal-reported", "system"],
)
def test_plugin_and_profile_folder_rule(
    ws: Wireshark, system: bool, plugins: str, profiles: str
) -> None:
    assert plugin_dir(ws, system=system, environ={"HOME": "/h"}) == Path(plugins)
    assert profiles_dir(ws, system=system, environ={"HOME": "/h"}) == Path(profiles)


def test_extcap_dir_rule_honours_xdg_and_windows() -> None:
    assert extcap_dir(
        _ws((4, 0)), system=False, environ={"HOME": "/h", "XDG_CONFIG_HOME": "/c"}
    ) == Path("/c/wireshark/extcap")
    assert (
        extcap_dir(
            _ws((4, 2)),
            system=False,
            environ={"APPDATA": r"C:\Users\a\AppData\Roaming"},
            windows=True,
        )
        == Path(r"C:\Users\a\AppData\Roaming") / "Wireshark" / "extcap"
    )
    with pytest.raises(UserError, match="--dir"):
        extcap_dir(_ws((4, 0)), system=True, environ={})


def test_parser_options() -> None:
    p = argparse.ArgumentParser()
    add_install_parser(p.add_subparsers(dest="command"))
    ns = p.parse_args(["install", "--system", "--uninstall"])
    assert (ns.command, ns.system, ns.personal, ns.uninstall, ns.dir) == (
        "install", True, False, True, None)
    ns = p.parse_args(["install", "--personal", "--dir", "/x"])  # the launcher's folder
    assert (ns.system, ns.personal, ns.dir) == (False, True, "/x")
    with pytest.raises(SystemExit):
        p.parse_args(["install", "--system", "--personal"])  # one or the other


# --- last: a second run, then uninstall (uses up the module's install) ---------------


def test_second_run_is_idempotent_then_uninstall_removes_both(installed: Installed) -> None:
    before = installed.launcher.read_text()
    python, offline = _offline_python()
    profile = _personal_profile(installed.home)
    (profile / "recent").write_text("# what Wireshark writes into a profile it used\n")
    (profile / "preferences").write_text("# an old version of ours\n")
    again = run_install(installed.home, "--venv", str(installed.venv))
    assert again.returncode == 0, again.stderr
    assert f"using the virtual environment {installed.venv}" in again.stdout
    assert installed.launcher.read_text() == before
    assert sorted(p.name for p in installed.launcher.parent.iterdir()) == ["swtpm-extcap"]
    assert (profile / "recent").read_text().startswith("# what Wireshark")  # Wireshark's own
    assert (profile / "preferences").read_bytes() == shipped("profile/preferences")  # updated

    gone = run_install(installed.home, "--venv", str(installed.venv), "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert f"removed the launcher {installed.launcher}" in gone.stdout
    assert f"removed the Lua plugin {_personal_plugin(installed.home)}" in gone.stdout
    assert f"removed the profile {profile}" in gone.stdout
    assert f"removed the virtual environment {installed.venv}" in gone.stdout
    assert not installed.launcher.exists()
    assert not _personal_plugin(installed.home).exists() and not profile.exists()
    assert not installed.venv.exists()
    assert (installed.venv.parent).exists()  # not ours: only a parent named swtpm-extcap goes

    twice = run_install(installed.home, "--venv", str(installed.venv), "--uninstall")
    assert twice.returncode == 0
    assert "nothing to remove" in twice.stdout
