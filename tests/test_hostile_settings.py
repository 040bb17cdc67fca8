"""Hostile settings and host files while Wireshark lists interfaces (issue 16).

Reproducers: a 6 KB settings file of nested arrays (before: a RecursionError
escaped, the listing silently showed only swtpm-demo, every capture failed with
"internal error"); other TOML that Python's parser rejects outside its own
error type (a 5000-digit number); a 1 MB unknown key (before: an 800 KB listing
line); a Proxmox ``<vmid>.conf`` that is ``/dev/zero``, ``/dev/urandom`` or a
fifo (before: ``--extcap-interfaces`` never returned, or grew by 1 GB/s).
Each runs the real extcap as Wireshark does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_extcap import DEADLINE_S, FifoReader, extcap_env, make_fifo
from test_follow import LOG

from swtpm_extcap.errors import MAX_MESSAGE
from swtpm_extcap.extcap.protocol import MAX_DISPLAY
from swtpm_extcap.interfaces.settings import load_config

#: a listing line: "interface {value=...}{display=...}", the display bounded
MAX_LINE = MAX_DISPLAY + 200


def extcap(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swtpm_extcap", *args], env=env,
                          capture_output=True, text=True, timeout=DEADLINE_S)


def listing(config: Path) -> dict[str, str]:
    """``--extcap-interfaces`` with this settings file: interface -> display."""
    proc = extcap("--extcap-interfaces", "--extcap-version=4.0", env=extcap_env(config))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    shown = {}
    for line in proc.stdout.splitlines():
        assert len(line) <= MAX_LINE, f"a listing line of {len(line)} characters"
        if line.startswith("interface {value="):
            name, _, rest = line[len("interface {value="):].partition("}{display=")
            shown[name] = rest.rstrip("}")
    return shown


def capture_error(config: Path, interface: str, tmp_path: Path) -> str:
    """Start ``interface``: exit 1, one line on stderr (returned)."""
    fifo = make_fifo(tmp_path, f"fifo-{interface}")
    reader = FifoReader(fifo)  # Wireshark's end: released at once by the failed capture
    proc = extcap("--capture", "--extcap-interface", interface, "--fifo", str(fifo),
                  env=extcap_env(config))
    assert reader.finish() == b""
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and len(proc.stderr) <= MAX_MESSAGE + 50, proc.stderr[:300]
    return proc.stderr


# ----------------------------------------------------------------- TOML


def nested_arrays(depth: int) -> str:
    return "[local]\nglobs = " + "[" * depth + "]" * depth + "\n"


TOML: dict[str, tuple[Callable[[], str], str]] = {
    # the reproducer: 6 KB of nested arrays
    "deep-arrays": (lambda: nested_arrays(3000), "too deep for Python's TOML parser"),
    "deep-inline-tables": (
        lambda: "a = " + "{b = " * 1500 + "1" + "}" * 1500 + "\n", "too deep"),
    # valid TOML, deep: checked without recursing into it
    "deep-table-header": (
        lambda: "[local." + ".".join(["t"] * 3000) + "]\n", "unknown key local.t"),
    "deep-dotted-key": (
        lambda: '[[remote]]\nname = "a"\nhost = "h"\n' + ".".join(["k"] * 3000) + " = 1\n",
        "unknown key k"),
    # ValueError, not TOMLDecodeError: Python's limit on integer digits
    "5000-digit-number": (lambda: "a = " + "7" * 5000 + "\n", "is not valid TOML"),
    "nested-under-the-limit": (
        lambda: "[local]\nglobs = " + "[" * 400 + "]" * 400 + "\n", "local.globs[0]"),
}


@pytest.mark.parametrize("case", list(TOML))
def test_toml_the_parser_rejects_is_a_settings_error(tmp_path: Path, case: str) -> None:
    make, says = TOML[case]
    cfg = tmp_path / "config.toml"
    cfg.write_text(make())
    error = load_config(cfg).error
    assert error is not None and says in error and "\n" not in error
    assert len(error) <= MAX_MESSAGE
    shown = listing(cfg)
    assert "swtpm-config-error" in shown and "swtpm-demo" in shown
    assert shown["swtpm-config-error"].startswith(f"SWTPM settings error: {cfg}")
    assert says in shown["swtpm-config-error"]
    line = capture_error(cfg, "swtpm-config-error", tmp_path)
    assert says in line and "internal error" not in line
    demo = capture_error(cfg, "swtpm-nothing", tmp_path)  # a capture names the settings error
    assert "the settings file was skipped" in demo and "internal error" not in demo


def test_a_megabyte_key_makes_no_megabyte_line(tmp_path: Path) -> None:
    """The reproducer: an unknown key of 1 MB made an 800 KB listing line."""
    cfg = tmp_path / "config.toml"
    key = "k" * ((1 << 20) - 100)  # the file stays within the 1 MiB a settings file may have
    cfg.write_text(f"[local]\n{key} = 1\n")
    shown = listing(cfg)  # every line bounded (checked there)
    note = shown["swtpm-config-error"]
    assert "unknown key local.kkk" in note and "characters left out" in note
    line = capture_error(cfg, "swtpm-config-error", tmp_path)
    assert "unknown key local.kkk" in line and "characters left out" in line


def test_a_megabyte_file_name_makes_no_megabyte_line(tmp_path: Path) -> None:
    """Paths are bounded by the system (4 KB); a settings path of that length still
    makes a bounded line, which keeps its start and its end."""
    deep = tmp_path
    while len(str(deep)) < 3800:
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    cfg = deep / "config.toml"
    cfg.write_text("[local\n")
    note = listing(cfg)["swtpm-config-error"]
    assert note.startswith("SWTPM settings error: /") and note.endswith("(at line 1, column 7)"), note


# --------------------------------------------------- a Proxmox VM's .conf


def to_dev(target: str) -> Callable[[Path], None]:
    return lambda conf: conf.symlink_to(target)


def to_fifo(conf: Path) -> None:
    os.mkfifo(conf)


def to_huge(conf: Path) -> None:
    with open(conf, "wb") as fh:  # a name, then 20 MB of one endless line
        fh.write(b"name: big\n" + b"x" * (20 << 20))


CONFS: dict[str, tuple[Callable[[Path], None], str]] = {
    "dev-zero": (to_dev("/dev/zero"), "SWTPM VM 103"),
    "dev-urandom": (to_dev("/dev/urandom"), "SWTPM VM 103"),
    "fifo": (to_fifo, "SWTPM VM 103"),
    "directory": (lambda conf: conf.mkdir(), "SWTPM VM 103"),
    "huge": (to_huge, "SWTPM VM 103 (big)"),
}


@pytest.mark.parametrize("case", list(CONFS))
def test_a_vm_conf_that_is_no_file_is_read_like_the_settings(tmp_path: Path, case: str) -> None:
    """The listing returns (before: never, or 1 GB/s of memory) and lists the VM,
    without a name when its .conf holds none."""
    make, display = CONFS[case]
    run, conf = tmp_path / "run", tmp_path / "conf"
    run.mkdir()
    conf.mkdir()
    (run / "103-swtpm.log").write_bytes(LOG)
    make(conf / "103.conf")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[local]\nproxmox_dir = "{run}"\npve_conf_dir = "{conf}"\n')
    shown = listing(cfg)  # within the deadline: no hang on the fifo, no endless read
    assert shown["swtpm-103"] == display
