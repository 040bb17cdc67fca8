"""The settings file: where it is, what it may say, and how a broken one is reported."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from swtpm_extcap.interfaces.settings import (
    ENV_VAR,
    Config,
    MAX_CONFIG_BYTES,
    config_path,
    load_config,
    parse_config,
)
from swtpm_extcap.errors import ConfigError, UserError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- where -------------------------------------------------------------------------


def test_env_var_names_the_file(tmp_path: Path) -> None:
    f = write(tmp_path / "elsewhere.toml", '[local]\nglobs = ["/srv/vms/*/swtpm.log"]\n')
    env = {ENV_VAR: str(f), "HOME": str(tmp_path / "home")}
    assert config_path(env) == f
    assert load_config(environ=env) == Config(path=f, globs=("/srv/vms/*/swtpm.log",))


def test_env_var_wins_over_the_default_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home / ".config/swtpm-extcap/config.toml", '[local]\nglobs = ["/default/*.log"]\n')
    f = write(tmp_path / "chosen.toml", '[local]\nglobs = ["/chosen/*.log"]\n')
    cfg = load_config(environ={ENV_VAR: str(f), "HOME": str(home)})
    assert cfg.globs == ("/chosen/*.log",)


def test_default_is_under_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    f = write(home / ".config/swtpm-extcap/config.toml", '[local]\nglobs = ["/srv/*.log"]\n')
    env = {"HOME": str(home)}
    assert config_path(env) == f
    assert load_config(environ=env).globs == ("/srv/*.log",)


def test_default_honours_xdg_config_home(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    f = write(xdg / "swtpm-extcap/config.toml", "")
    assert config_path({"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(xdg)}) == f


def test_relative_xdg_config_home_is_ignored(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": "relative/dir"}
    assert config_path(env) == tmp_path / ".config/swtpm-extcap/config.toml"


def test_empty_env_var_means_unset(tmp_path: Path) -> None:
    env = {ENV_VAR: "", "HOME": str(tmp_path)}
    assert config_path(env) == tmp_path / ".config/swtpm-extcap/config.toml"


def test_process_environment_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = write(tmp_path / "c.toml", '[local]\nglobs = ["/x/*/swtpm.log"]\n')
    monkeypatch.setenv(ENV_VAR, str(f))
    assert load_config().globs == ("/x/*/swtpm.log",)


# --- missing or empty ----------------------------------------------------------------


def test_missing_default_file_is_fine(tmp_path: Path) -> None:
    cfg = load_config(environ={"HOME": str(tmp_path)})
    assert cfg == Config()
    assert cfg.error is None
    cfg.check()  # no error


def test_missing_file_named_by_env_var_is_reported_not_raised(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    cfg = load_config(environ={ENV_VAR: str(missing), "HOME": str(tmp_path)})
    assert cfg.globs == ()
    assert cfg.error is not None and str(missing) in cfg.error and ENV_VAR in cfg.error


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    f = write(tmp_path / "c.toml", "")
    cfg = load_config(f)
    assert cfg == Config(path=f)
    assert (cfg.proxmox_dir, cfg.pve_conf_dir, cfg.libvirt_dir) == (
        "/run/qemu-server",
        "/etc/pve/qemu-server",
        "/var/log/swtpm/libvirt/qemu",
    )


# --- content -------------------------------------------------------------------------


def test_folders_and_home_expansion(tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.toml",
        "[local]\n"
        'globs = ["~/vms/*/swtpm.log", "/srv/*-swtpm.log"]\n'
        'proxmox_dir = "/tmp/run"\n'
        'pve_conf_dir = "~/pve"\n'
        'libvirt_dir = "/tmp/libvirt"\n',
    )
    cfg = load_config(f, environ={"HOME": "/home/alice"})
    assert cfg.globs == ("/home/alice/vms/*/swtpm.log", "/srv/*-swtpm.log")
    assert cfg.proxmox_dir == "/tmp/run"
    assert cfg.pve_conf_dir == "/home/alice/pve"
    assert cfg.libvirt_dir == "/tmp/libvirt"


def test_unknown_tables_are_accepted(tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.toml",
        '[local]\nglobs = ["/a/*.log"]\n\n'
        '[[remote]]\nname = "pve1"\nhost = "pve1.example.org"\nuser = "root"\nport = 22\n\n'
        '[[remote]]\nname = "pve2"\nhost = "pve2"\n\n'
        "[future.thing]\nanswer = 42\n",
    )
    cfg = load_config(f)
    assert cfg.error is None
    assert cfg.globs == ("/a/*.log",)
    assert [r.name for r in cfg.remotes] == ["pve1", "pve2"]  # read by remotes.parse_remotes


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('[local]\nglobs = "/srv/*.log"\n', ["local.globs", "a list of absolute path", "a string"]),
        ("[local]\nglobs = [1]\n", ["local.globs[0]", "non-empty string", "an integer"]),
        ('[local]\nglobs = ["/ok/*.log", ""]\n', ["local.globs[1]", "non-empty string"]),
        ('[local]\nglobs = ["vms/*.log"]\n', ["local.globs[0]", "'vms/*.log'", "absolute"]),
        ("local = 3\n", ["'local' must be a table", "an integer"]),
        ('[local]\nglob = ["/srv/*.log"]\n', ["unknown key local.glob", "known: globs"]),
        ("[local]\nproxmox_dir = 5\n", ["local.proxmox_dir", "absolute folder path", "integer"]),
        ('[local]\nlibvirt_dir = "rel"\n', ["local.libvirt_dir", "absolute folder", "'rel'"]),
        ("[local]\nglobs = [\n", ["is not valid TOML", "end of document"]),
        ('[local]\nglobs = ["/a"\n\nx = 1\n', ["is not valid TOML", "line 4"]),
        ("[local\n", ["is not valid TOML"]),
    ],
    ids=[
        "globs-string",
        "globs-int-item",
        "globs-empty-item",
        "globs-relative",
        "local-not-table",
        "unknown-key",
        "proxmox-dir-int",
        "libvirt-dir-relative",
        "unterminated-list",
        "missing-comma",
        "bad-header",
    ],
)
def test_bad_file_error_names_file_key_and_expectation(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    f = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as exc:
        parse_config(f.read_bytes(), f)
    message = str(exc.value)
    assert message.startswith(f"config file {f}")
    for needle in needles:
        assert needle in message
    assert "\n" not in message
    # load_config never raises: the same message is kept for the capture path
    cfg = load_config(f)
    assert cfg.error == message
    assert cfg.globs == ()
    with pytest.raises(UserError, match="config file"):
        cfg.check()


def test_a_folder_is_reported_not_raised(tmp_path: Path) -> None:
    folder = tmp_path / "config.toml"  # a folder where the file should be
    folder.mkdir()
    cfg = load_config(folder)
    assert cfg.error == (
        f"config file {folder} is a directory, not a regular file; point {ENV_VAR} at a TOML file"
    )


def test_unreadable_file_is_reported_not_raised(tmp_path: Path) -> None:
    link = tmp_path / "config.toml"
    link.symlink_to(link)  # a loop: open() fails with ELOOP
    cfg = load_config(link)
    assert cfg.error is not None
    assert cfg.error.startswith(f"cannot read config file {link}")


@pytest.mark.parametrize("what", ["/dev/zero", "fifo", "huge"])
def test_settings_file_must_be_a_small_regular_file(tmp_path: Path, what: str) -> None:
    """``/dev/zero`` would grow without end, a fifo with no writer would hang the
    listing forever: both are refused before any read, as is a file over 1 MiB."""
    if what == "fifo":
        where = tmp_path / "config.toml"
        os.mkfifo(where)
    elif what == "huge":
        where = tmp_path / "config.toml"
        where.write_bytes(b"# " + b"x" * MAX_CONFIG_BYTES + b"\n")
    else:
        where = Path(what)
    began = time.monotonic()
    cfg = load_config(where)
    assert time.monotonic() - began < 1.0
    assert cfg.error is not None and str(where) in cfg.error
    assert ("more than a settings file holds" if what == "huge" else "not a regular file") in cfg.error
    assert cfg.globs == ()


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.globs = ("/x",)  # type: ignore[misc]
