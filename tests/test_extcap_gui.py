"""What a Wireshark user sees of the extcap (issue 8's GUI findings), through the
real calls: ``--extcap-interfaces``, ``--extcap-config``, ``--capture`` as
subprocesses, and ``tshark -D`` / ``tshark -r`` with a launcher in a temporary
``$HOME``.

* A settings file that cannot be used is a listed interface that says why
  (Wireshark never shows the listing's stderr); capturing it fails with that line.
* A capture of a configured log that was deleted says so, in words for the GUI.
* Display names are short and hold no ``/``; the path goes into the pcapng.
* ``{help=...}`` is the project's own page; tooltips wrap; the tabs group what
  belongs together.
* The per-frame log line comment is an option (off in the extcap, on in convert).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from conftest import REPO, read_frames, require_tshark
from swtpm_extcap import cli
from swtpm_extcap.extcap import dialog, options
from swtpm_extcap.wireshark.install import write_launcher
from test_extcap import (
    DEADLINE_S,
    DEMO,
    capture,
    extcap_env,
    parse_fields,
    without_dac_override,
    write_config,
)

_LINE = re.compile(r"interface \{value=([A-Za-z0-9._-]+)\}\{display=([^{}\n]*)\}")
def run_extcap(
    env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "swtpm_extcap", *args], env=env, capture_output=True,
        text=True, timeout=DEADLINE_S,
    )


def listing(env: dict[str, str], prefix: tuple[str, ...] = ()) -> dict[str, str]:
    """``--extcap-interfaces`` as Wireshark runs it: interface name -> display."""
    proc = run_extcap(env, "--extcap-interfaces", "--extcap-version=4.0", prefix=prefix)
    assert (proc.returncode, proc.stderr) == (0, ""), proc
    found = [_LINE.fullmatch(line) for line in proc.stdout.splitlines()[1:]]
    assert all(found), proc.stdout
    return {m.group(1): m.group(2) for m in found if m}


# ------------------------------------------------------------ a broken settings file


def _broken_toml(cfg: Path) -> str:
    cfg.write_text('[local]\nglobs = ["/srv/vms/*/swtpm.log"\n')  # no closing bracket
    return f"SWTPM settings error: {cfg} is not valid TOML: "


def _directory(cfg: Path) -> str:
    cfg.mkdir()
    return f"SWTPM settings error: {cfg} is a directory, not a regular file; point SWTPM_EXTCAP_CONFIG at"


def _unreadable(cfg: Path) -> str:
    cfg.write_text('[local]\nglobs = ["/srv/vms/*/swtpm.log"]\n')
    cfg.chmod(0o000)  # root: read below without the capabilities that bypass this
    return f"SWTPM settings error: cannot read {cfg}: Permission denied"


def _missing(cfg: Path) -> str:
    return f"SWTPM settings error: {cfg} does not exist (SWTPM_EXTCAP_CONFIG)"


def _bad_key(cfg: Path) -> str:
    cfg.write_text("[local]\nglob = []\n")
    return f"SWTPM settings error: {cfg}: unknown key local.glob (known: "


BROKEN: dict[str, Callable[[Path], str]] = {
    "broken-toml": _broken_toml,
    "directory": _directory,
    "unreadable": _unreadable,
    "missing": _missing,
    "bad-key": _bad_key,
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_settings_file_is_a_listed_interface_that_says_why(
    kind: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.toml"
    expected = BROKEN[kind](cfg)
    user: tuple[str, ...] = ()
    if kind == "unreadable" and os.geteuid() == 0:  # root reads any file: drop that power
        user = tuple(without_dac_override())
    env = extcap_env(cfg)
    shown = listing(env, user)
    assert list(shown) == ["swtpm-ssh", "swtpm-demo", "swtpm-config-error"]
    display = shown["swtpm-config-error"]
    assert display.startswith(expected), display
    assert "config file" not in display  # "<file>: <what>", once

    # its options: none (a message, not a log); its link type: as any interface
    proc = run_extcap(env, "--extcap-config", "--extcap-interface", "swtpm-config-error", prefix=user)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    proc = run_extcap(env, "--extcap-dlts", "--extcap-interface", "swtpm-config-error", prefix=user)
    assert proc.returncode == 0 and proc.stdout.startswith("dlt {number=1}")

    # capturing it: Wireshark's error dialog shows that same line, and what to do
    fifo = tmp_path / "fifo"
    proc = run_extcap(env, "--capture", "--extcap-interface", "swtpm-config-error",
                      "--fifo", str(fifo), prefix=user)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"swtpm-extcap: {display}; fix the file, then refresh the interface list"
        " (Capture > Refresh Interfaces)\n"
    )


def test_a_settings_file_fixed_since_the_listing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"{tmp_path}/vms/*/swtpm.log")
    proc = run_extcap(extcap_env(cfg), "--capture", "--extcap-interface", "swtpm-config-error",
                      "--fifo", str(tmp_path / "fifo"))
    assert proc.returncode == 1
    assert proc.stderr == (
        "swtpm-extcap: the settings file is fine now; refresh the interface list"
        " (Capture > Refresh Interfaces)\n"
    )


def installed_home(tmp_path: Path) -> dict[str, str]:
    """A temporary $HOME with the launcher in Wireshark 4.0's personal extcap folder
    (the path the installer's rule gives there) running this checkout."""
    home = tmp_path / "home"
    write_launcher(home / ".config" / "wireshark" / "extcap" / "swtpm-extcap", sys.executable)
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "SWTPM_EXTCAP_CONFIG"):
        env.pop(name, None)
    return env


def tshark_interfaces(env: dict[str, str]) -> dict[str, str]:
    """``tshark -D``'s swtpm lines: name -> description."""
    proc = subprocess.run(["tshark", "-D"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        m = re.fullmatch(r"\d+\. (swtpm-\S+) \((.*)\)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_tshark_lists_the_settings_error_in_the_users_home(tmp_path: Path) -> None:
    """The user's own settings file (~/.config/swtpm-extcap/config.toml) broken, then
    fixed: the list Wireshark builds says so, then shows the configured VM."""
    require_tshark()
    env = installed_home(tmp_path)
    (tmp_path / "vms" / "web1").mkdir(parents=True)
    (tmp_path / "vms" / "web1" / "swtpm.log").write_bytes(DEMO.read_bytes())
    cfg = Path(env["HOME"]) / ".config" / "swtpm-extcap" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[local]\nglobs = ["{tmp_path}/vms/*/swtpm.log"\n')
    shown = tshark_interfaces(env)
    assert set(shown) == {"swtpm-ssh", "swtpm-demo", "swtpm-config-error"}
    assert shown["swtpm-config-error"].startswith(f"SWTPM settings error: {cfg} is not valid TOML")

    cfg.write_text(f'[local]\nglobs = ["{tmp_path}/vms/*/swtpm.log"]\n')
    assert tshark_interfaces(env) == {
        "swtpm-web1": "SWTPM web1 (glob)",
        "swtpm-ssh": "SWTPM log over SSH (host and log set in the interface options)",
        "swtpm-demo": "SWTPM demo (bundled log of two VM boots)",
    }


# ------------------------------------------------------------ a configured log deleted


def test_a_deleted_configured_log_says_it_is_missing(tmp_path: Path) -> None:
    log = tmp_path / "vms" / "web1" / "swtpm.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(DEMO.read_bytes())
    cfg = write_config(tmp_path, f"{tmp_path}/vms/*/swtpm.log")
    env = extcap_env(cfg)
    assert "swtpm-web1" in listing(env)
    log.unlink()  # after Wireshark listed it: the user starts the stale entry
    proc = run_extcap(env, "--capture", "--extcap-interface", "swtpm-web1",
                      "--fifo", str(tmp_path / "fifo"))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"swtpm-extcap: no interface swtpm-web1: the configured log {log} (a match of the"
        f" [local] globs in {cfg}) is missing: deleted or moved; refresh the interface list"
        " (Capture > Refresh Interfaces) to see the logs there are\n"
    )
    assert "tshark" not in proc.stderr and "libvirt" not in proc.stderr


def test_a_deleted_log_of_a_hashed_name_is_named_by_its_path(tmp_path: Path) -> None:
    """Two logs with the key web1 are swtpm-web1-<hash>: the hash picks the path."""
    a = tmp_path / "a" / "web1" / "swtpm.log"
    b = tmp_path / "b" / "vm-web1.log"
    for log in (a, b):
        log.parent.mkdir(parents=True)
        log.write_bytes(DEMO.read_bytes())
    cfg = write_config(tmp_path, f"{tmp_path}/a/*/swtpm.log", f"{tmp_path}/b/vm-*.log")
    env = extcap_env(cfg)
    names = [n for n in listing(env) if n.startswith("swtpm-web1-")]
    assert len(names) == 2
    for log in (a, b):
        log.unlink()
    said = set()
    for name in names:
        proc = run_extcap(env, "--capture", "--extcap-interface", name,
                          "--fifo", str(tmp_path / "fifo"))
        m = re.search(r"the configured log (\S+) ", proc.stderr)
        assert m, proc.stderr
        assert hashlib.sha1(m.group(1).encode()).hexdigest().startswith(name.rsplit("-", 1)[1])
        said.add(m.group(1))
    assert said == {str(a), str(b)}


# ------------------------------------------------------------ short display names


def test_display_names_are_short_and_the_path_goes_into_the_pcapng(tmp_path: Path) -> None:
    """Proxmox, libvirt and glob logs (their folders set in the settings file)."""
    require_tshark()
    run, pve, libvirt = tmp_path / "run", tmp_path / "pve", tmp_path / "libvirt"
    for folder in (run, pve, libvirt, tmp_path / "vms" / "web1"):
        folder.mkdir(parents=True)
    (run / "103-swtpm.log").write_bytes(b"")
    (pve / "103.conf").write_text("name: db/main\nmemory: 2048\n")
    (libvirt / "fedora39-swtpm.log").write_bytes(b"")
    web1 = tmp_path / "vms" / "web1" / "swtpm.log"
    web1.write_bytes(DEMO.read_bytes())
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[local]\nglobs = ["{tmp_path}/vms/*/swtpm.log"]\nproxmox_dir = "{run}"\n'
        f'pve_conf_dir = "{pve}"\nlibvirt_dir = "{libvirt}"\n'
    )
    shown = listing(extcap_env(cfg))
    assert shown == {
        "swtpm-103": "SWTPM VM 103 (db?main)",
        "swtpm-fedora39": "SWTPM libvirt fedora39",
        "swtpm-web1": "SWTPM web1 (glob)",
        "swtpm-ssh": "SWTPM log over SSH (host and log set in the interface options)",
        "swtpm-demo": "SWTPM demo (bundled log of two VM boots)",
    }
    assert not any("/" in display for display in shown.values())
    pcap, proc = capture(tmp_path, "swtpm-web1", "--mode", "replay", config=cfg)
    assert (proc.returncode, proc.stderr) == (0, b"")
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-c", "1", "-T", "fields", "-e", "frame.interface_description"],
        capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    assert out == f"SWTPM web1 (glob): {web1}"


# ------------------------------------------------------------ help, tooltips, tabs


def test_help_is_the_projects_own_page() -> None:
    proc = run_extcap(extcap_env(), "--extcap-interfaces")
    first = proc.stdout.splitlines()[0]
    m = re.fullmatch(r"extcap \{version=[0-9.]+\}\{help=(file://[^{}]+)\}", first)
    assert m, first
    page = Path(unquote(urlparse(m.group(1)).path))
    assert page == REPO / "swtpm_extcap" / "data" / "help.html" and page.is_file()
    text = html.unescape(page.read_text())
    assert "wireshark.org" not in m.group(1)
    # the page explains every option of the dialog by its label, and the error entry
    for o in options.OPTIONS:
        if o.group != "Debug":
            assert o.display in text, o.display
    assert "swtpm-config-error" in text and "Capture > Refresh Interfaces" in text
    assert run_extcap(extcap_env(), "--extcap-version=4.0").stdout.startswith(first)


def test_tooltips_wrap(capsys: pytest.CaptureFixture[str]) -> None:
    """Wireshark shows a plain tooltip as one line and cannot take a newline inside an
    extcap line: long ones are Qt rich text, lines of at most 60 characters."""
    assert cli.main(["--extcap-config", "--extcap-interface", "swtpm-103"]) == 0
    shown = {f["call"]: f["tooltip"] for f in map(parse_fields, capsys.readouterr().out.splitlines())
             if "call" in f}
    for o in options.OPTIONS:
        tip = shown[o.call]
        if len(o.tooltip) <= dialog.TOOLTIP_WIDTH:
            assert tip == o.tooltip
            continue
        # Qt: rich text (the first "<" starts a tag), broken only where we break it
        assert tip.startswith('<p style="white-space:nowrap">') and tip.endswith("</p>"), tip
        assert "\n" not in tip
        lines = tip[len(dialog.RICH_TOOLTIP):-len("</p>")].split("<br>")
        assert len(lines) >= 2 and all(len(html.unescape(x)) <= 60 for x in lines), lines
        assert " ".join(html.unescape(x) for x in lines) == o.tooltip


# ------------------------------------------------------------ per-frame comments


def test_line_comments_are_an_option_notable_comments_stay(tmp_path: Path) -> None:
    require_tshark()
    plain, proc = capture(tmp_path, "swtpm-demo", "--mode", "replay", "--pace-ms", "0", "--ctrl")
    assert (proc.returncode, proc.stderr) == (0, b"")
    full, proc = capture(tmp_path, "swtpm-demo", "--mode", "replay", "--pace-ms", "0", "--ctrl",
                         "--line-comments")
    assert (proc.returncode, proc.stderr) == (0, b"")
    without, with_ = read_frames(plain), read_frames(full)
    assert [(f.ts_us, f.payload, f.flags) for f in without] == [
        (f.ts_us, f.payload, f.flags) for f in with_
    ]
    assert all(f.comment.startswith(("swtpm log line ", "swtpm run ")) for f in with_)
    commented = [f for f in without if f.comment]
    # the demo: 2 runs, each opening a TPM and a control connection; PCR and policy notes
    starts = [f for f in commented if f.comment.startswith("swtpm run ")]
    assert len(starts) == 4 and all(f.flags == 0x02 for f in starts)  # SYNs
    rest = [f for f in commented if f not in starts]
    notes = ("pcr: ", "policy: ")
    assert rest and all(f.comment.startswith(notes) for f in rest), rest[:3]
    assert any(f.comment.startswith("policy: digest matches replay") for f in rest)
    # the same pcr: and policy: lines as with line comments, on the same frames
    pcr_full = [(f.number, [x for x in f.comment.split("\n") if x.startswith(notes)])
                for f in with_ if "pcr: " in f.comment or "policy: " in f.comment]
    assert pcr_full == [(f.number, f.comment.split("\n")) for f in rest]
    assert len(commented) < len(without) // 10


def test_convert_keeps_line_comments_unless_told(tmp_path: Path) -> None:
    require_tshark()
    on, off = tmp_path / "on.pcapng", tmp_path / "off.pcapng"
    assert cli.main(["convert", str(DEMO), "-o", str(on)]) == 0
    assert cli.main(["convert", "--no-line-comments", str(DEMO), "-o", str(off)]) == 0
    with_, without = read_frames(on), read_frames(off)
    assert all(f.comment for f in with_)
    assert [f.payload for f in with_] == [f.payload for f in without]
    assert sum(1 for f in without if f.comment) < len(without) // 10
