"""Discovery on fake host trees with real swtpm logs: names, texts, order, access."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import corpus_dir

from swtpm_extcap.errors import UserError
from swtpm_extcap.interfaces.demo import DEMO_NAME, demo_log_path
from swtpm_extcap.interfaces.interface import Interface
from swtpm_extcap.interfaces.local import discover
from swtpm_extcap.interfaces.lookup import find_interface
from swtpm_extcap.interfaces.settings import Config, load_config
from swtpm_extcap.names import glob_key, sanitize
from swtpm_extcap.sources import LogLocation
from swtpm_extcap.sources.local import permission_hint

REPO = Path(__file__).resolve().parents[1]
CORPUS = corpus_dir()
PROXMOX_LOG = CORPUS / "proxmox-103-swtpm.log"
SMALL_LOG = CORPUS / "proxmox-104-qemu-transport-swtpm.log"
LIBVIRT_LOG = CORPUS / "libvirt-fedora39-swtpm.log"
NOBODY = 65534

pytestmark = pytest.mark.skipif(
    not PROXMOX_LOG.exists(), reason=f"needs the swtpm log corpus in {CORPUS} ($SWTPM_CORPUS)"
)


class Host:
    """A fake host: Proxmox run and conf folders, a libvirt folder, and room for globs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run/qemu-server"
        self.pve = root / "etc/pve/qemu-server"
        self.libvirt = root / "var/log/swtpm/libvirt/qemu"
        for folder in (self.run, self.pve, self.libvirt):
            folder.mkdir(parents=True)

    def log(self, path: Path, source: Path = SMALL_LOG) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        return path

    def vm(self, vmid: int | str, name: str | None = None, conf: str | None = None) -> Path:
        if conf is None and name is not None:
            conf = f"boot: order=scsi0\ncores: 2\nname: {name}\ntpmstate0: local-lvm:vm-{vmid}\n"
        if conf is not None:
            (self.pve / f"{vmid}.conf").write_text(conf)
        return self.log(self.run / f"{vmid}-swtpm.log")

    def config(self, *globs: str) -> Config:
        text = "[local]\nglobs = [" + ", ".join(json.dumps(g) for g in globs) + "]\n"
        path = self.root / "config.toml"
        path.write_text(text)
        cfg = load_config(path)
        assert cfg.error is None
        return cfg

    def discover(self, config: Config | None = None) -> list[Interface]:
        return discover(
            Config() if config is None else config,
            proxmox_dir=self.run,
            pve_conf_dir=self.pve,
            libvirt_dir=self.libvirt,
        )


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def names(interfaces: list[Interface]) -> list[str]:
    return [i.name for i in interfaces]


def short_hash(path: Path | str) -> str:
    return hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]


# --- Proxmox ---------------------------------------------------------------------


def test_proxmox_vms_by_numeric_vmid_with_names(host: Host) -> None:
    host.vm(1000, "db")
    host.vm(103, "web01")
    host.vm(9)  # no .conf at all
    for other in ("103.pid", "103.qmp", "103.vnc", "abc-swtpm.log", "103-swtpm.log.old"):
        (host.run / other).write_text("")
    found = host.discover()
    assert names(found) == ["swtpm-9", "swtpm-103", "swtpm-1000", DEMO_NAME]
    vm103 = found[1]
    assert vm103 == Interface(
        name="swtpm-103",
        display="SWTPM VM 103 (web01)",
        location=LogLocation(str(host.run / "103-swtpm.log")),
        origin="proxmox",
        vm_id="103",
        vm_name="web01",
        readable=True,
    )
    assert found[0].display == "SWTPM VM 9"
    assert found[0].vm_name is None


def test_proxmox_name_comes_from_the_main_section_only(host: Host) -> None:
    host.vm(
        104,
        conf="agent: 1\nname: current\n\n[before-upgrade]\nname: old\nsnaptime: 1700000000\n",
    )
    host.vm(105, conf="cores: 1\n\n[snap1]\nname: from-a-snapshot\n")
    found = host.discover()
    assert [i.display for i in found[:2]] == ["SWTPM VM 104 (current)", "SWTPM VM 105"]


def test_unreadable_conf_folder_still_lists_the_vm(host: Host) -> None:
    host.vm(200, "x")
    found = discover(
        Config(), proxmox_dir=host.run, pve_conf_dir=host.root / "nope", libvirt_dir=host.libvirt
    )
    assert found[0].name == "swtpm-200" and found[0].display == "SWTPM VM 200"


def test_folders_can_come_from_the_settings_file(host: Host) -> None:
    host.vm(103, "web01")
    host.log(host.libvirt / "f39-swtpm.log", LIBVIRT_LOG)
    path = host.root / "c.toml"
    path.write_text(
        f"[local]\nproxmox_dir = {json.dumps(str(host.run))}\n"
        f"pve_conf_dir = {json.dumps(str(host.pve))}\n"
        f"libvirt_dir = {json.dumps(str(host.libvirt))}\n"
    )
    found = discover(load_config(path))
    assert names(found) == ["swtpm-103", "swtpm-f39", DEMO_NAME]
    assert found[0].display == "SWTPM VM 103 (web01)"


# --- libvirt ---------------------------------------------------------------------


def test_libvirt_domains(host: Host) -> None:
    host.vm(103, "web01")
    host.log(host.libvirt / "fedora39-swtpm.log", LIBVIRT_LOG)
    host.log(host.libvirt / "alpha-swtpm.log", LIBVIRT_LOG)
    host.log(host.libvirt / "my vm {x}-swtpm.log", LIBVIRT_LOG)
    (host.libvirt / "fedora39-swtpm.log.1").write_text("rotated\n")
    (host.libvirt / "qemu.log").write_text("")
    found = host.discover()
    assert names(found) == [
        "swtpm-103",
        "swtpm-alpha",
        "swtpm-fedora39",
        "swtpm-my_vm_x",
        DEMO_NAME,
    ]
    fedora = found[2]
    assert (fedora.origin, fedora.vm_id, fedora.vm_name) == ("libvirt", "fedora39", "fedora39")
    assert fedora.display == "SWTPM libvirt fedora39"
    assert found[3].display == "SWTPM libvirt my vm ?x?"  # no braces in extcap lines
    assert found[3].vm_id == "my vm {x}"


def test_libvirt_name_clashing_with_proxmox_or_demo_gets_a_hash(host: Host) -> None:
    host.vm(103, "web01")
    a = host.log(host.libvirt / "103-swtpm.log", LIBVIRT_LOG)
    b = host.log(host.libvirt / "demo-swtpm.log", LIBVIRT_LOG)
    found = host.discover()
    assert names(found) == [
        "swtpm-103",
        f"swtpm-103-{short_hash(a)}",
        f"swtpm-demo-{short_hash(b)}",
        DEMO_NAME,
    ]
    assert found[0].origin == "proxmox"  # Proxmox names never change


# --- globs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "key"),
    [
        ("/srv/vms/*/swtpm.log", "/srv/vms/web1/swtpm.log", "web1"),
        ("/srv/vm-*.log", "/srv/vm-web1.log", "web1"),
        ("/srv/*", "/srv/web1-swtpm.log", "web1"),
        ("/srv/*.log", "/srv/web_swtpm.log", "web"),
        ("/srv/*/logs/*.log", "/srv/host-a/logs/x.log", "host-a"),
        ("/srv/vm[0-9]*/swtpm.log", "/srv/vm7b/swtpm.log", "7b"),
        ("/srv/x?/swtpm.log", "/srv/x1/swtpm.log", "1"),
        ("/srv/vm-*", "/srv/vm-", "vm"),  # nothing left: the whole component
        ("/srv/web1-swtpm.log", "/srv/web1-swtpm.log", "web1"),  # no wildcard
        ("/srv/*/swtpm.log", "/srv/Ünïcode VM (2)/swtpm.log", "n_code_VM_2"),
        ("/srv/*/swtpm.log", "/srv/.../swtpm.log", "log"),
    ],
)
def test_glob_key(pattern: str, path: str, key: str) -> None:
    assert glob_key(pattern, path) == key


def test_sanitize() -> None:
    assert sanitize("a b{c}") == "a_b_c"
    assert sanitize("--x--") == "x"
    assert sanitize("") == "log"


def test_glob_names_order_and_kind(host: Host) -> None:
    srv = host.root / "srv/vms"
    host.log(srv / "web2/swtpm.log")
    host.log(srv / "web1/swtpm.log")
    (srv / "empty").mkdir()  # no log inside: not listed
    (srv / "dir-not-file/swtpm.log").mkdir(parents=True)  # a folder: not listed
    other = host.log(host.root / "data/vm-db-swtpm.log")
    cfg = host.config(f"{srv}/*/swtpm.log", f"{host.root}/data/vm-*.log")
    found = host.discover(cfg)
    assert names(found) == ["swtpm-web1", "swtpm-web2", "swtpm-db", DEMO_NAME]
    web1 = found[0]
    assert web1.origin == "glob" and web1.vm_id == "web1" and web1.vm_name is None
    assert web1.path == srv / "web1/swtpm.log"
    assert web1.display == "SWTPM web1 (glob)"  # short, no "/" (the path is in the pcapng)
    assert found[2].path == other


def test_glob_collisions_get_a_hash_of_the_path_on_every_side(host: Host) -> None:
    a = host.log(host.root / "a/vm1/swtpm.log")
    b = host.log(host.root / "b/vm1/swtpm.log")
    c = host.log(host.root / "b/vm2/swtpm.log")
    globs = (f"{host.root}/a/*/swtpm.log", f"{host.root}/b/*/swtpm.log")
    found = host.discover(host.config(*globs))
    expected = {a: f"swtpm-vm1-{short_hash(a)}", b: f"swtpm-vm1-{short_hash(b)}", c: "swtpm-vm2"}
    assert {i.path: i.name for i in found if i.origin == "glob"} == expected
    # stable: the same names whatever the glob order, and listing after listing
    again = host.discover(host.config(*reversed(globs)))
    assert {i.path: i.name for i in again if i.origin == "glob"} == expected
    assert host.discover(host.config(*globs)) == found


def test_glob_name_never_takes_a_proxmox_libvirt_or_demo_name(host: Host) -> None:
    host.vm(103, "web01")
    host.log(host.libvirt / "f39-swtpm.log", LIBVIRT_LOG)
    p103 = host.log(host.root / "srv/103/swtpm.log")
    pf39 = host.log(host.root / "srv/f39/swtpm.log")
    pdemo = host.log(host.root / "srv/demo/swtpm.log")
    found = host.discover(host.config(f"{host.root}/srv/*/swtpm.log"))
    assert names(found) == [
        "swtpm-103",
        "swtpm-f39",
        f"swtpm-103-{short_hash(p103)}",
        f"swtpm-demo-{short_hash(pdemo)}",
        f"swtpm-f39-{short_hash(pf39)}",
        DEMO_NAME,
    ]


def test_a_file_is_listed_once(host: Host) -> None:
    vm = host.vm(103, "web01")
    host.log(host.root / "srv/x/swtpm.log")
    (host.root / "srv/link").mkdir()
    os.symlink(host.root / "srv/x/swtpm.log", host.root / "srv/link/swtpm.log")
    cfg = host.config(
        f"{host.run}/*-swtpm.log",  # the Proxmox logs again
        f"{host.root}/srv/*/swtpm.log",  # x, and link -> x
        f"{host.root}/srv/x/swtpm.log",  # x once more
    )
    found = host.discover(cfg)
    assert names(found) == ["swtpm-103", "swtpm-link", DEMO_NAME]
    assert found[0].path == vm


def test_names_are_unique_and_stable_on_a_busy_host(host: Host) -> None:
    for vmid in (100, 101, 102, 7, 70):
        host.vm(vmid, f"vm{vmid}")
    for domain in ("100", "a", "b", "demo", "c c", "c_c"):
        host.log(host.libvirt / f"{domain}-swtpm.log", LIBVIRT_LOG)
    for where in ("x/a", "y/a", "x/100", "x/c_c", "y/demo", "x/q"):
        host.log(host.root / "srv" / where / "swtpm.log")
    cfg = host.config(f"{host.root}/srv/*/*/swtpm.log", f"{host.root}/srv/x/*/swtpm.log")
    first = host.discover(cfg)
    assert len(set(names(first))) == len(first) == 5 + 6 + 6 + 1
    assert [i.origin for i in first] == ["proxmox"] * 5 + ["libvirt"] * 6 + ["glob"] * 6 + ["demo"]
    assert all(n.startswith("swtpm-") and sanitize(n) == n for n in names(first))
    # a new VM adds its name and leaves every other name alone
    host.vm(99, "new")
    second = host.discover(cfg)
    assert [i for i in second if i.name != "swtpm-99"] == first


def test_missing_folders_leave_only_the_demo(tmp_path: Path) -> None:
    found = discover(
        Config(),
        proxmox_dir=tmp_path / "no-run",
        pve_conf_dir=tmp_path / "no-pve",
        libvirt_dir=tmp_path / "no-libvirt",
    )
    assert names(found) == [DEMO_NAME]


def test_broken_settings_do_not_break_the_listing(host: Host) -> None:
    host.vm(103, "web01")
    bad = host.root / "bad.toml"
    bad.write_text('[local]\nglobs = "/srv/*.log"\n')
    cfg = load_config(bad)
    assert cfg.error is not None
    assert names(host.discover(cfg)) == ["swtpm-103", DEMO_NAME]


# --- the demo --------------------------------------------------------------------


def test_demo_is_last_and_is_the_bundled_real_log(host: Host) -> None:
    host.vm(103, "web01")
    demo = host.discover()[-1]
    assert demo.name == DEMO_NAME and demo.origin == "demo" and demo.readable
    assert demo.path == demo_log_path()
    assert demo.path.read_bytes() == PROXMOX_LOG.read_bytes()
    assert "{" not in demo.display


# --- find_interface --------------------------------------------------------------


def test_find_interface(host: Host) -> None:
    host.vm(103, "web01")
    found = find_interface(
        "swtpm-103", Config(), proxmox_dir=host.run, pve_conf_dir=host.pve, libvirt_dir=host.libvirt
    )
    assert found.display == "SWTPM VM 103 (web01)"
    assert find_interface("swtpm-demo", Config()).path == demo_log_path()


def test_unknown_vm_says_where_its_log_would_be(host: Host) -> None:
    with pytest.raises(UserError) as exc:
        find_interface("swtpm-999", Config(), proxmox_dir=host.run, libvirt_dir=host.libvirt)
    message = str(exc.value)
    assert message.startswith("no interface swtpm-999: VM 999 has no log at ")
    assert str(host.run / "999-swtpm.log") in message
    assert "level 20" in message and "Capture > Refresh Interfaces" in message
    assert "tshark" not in message  # a GUI user reads it
    assert "\n" not in message


def test_unknown_name_mentions_libvirt_globs_and_a_broken_settings_file(host: Host) -> None:
    bad = host.root / "bad.toml"
    bad.write_text("[local]\nglobs = [1]\n")
    with pytest.raises(UserError) as exc:
        find_interface(
            "swtpm-web", load_config(bad), proxmox_dir=host.run, libvirt_dir=host.libvirt
        )
    message = str(exc.value)
    assert str(host.libvirt / "web-swtpm.log") in message
    assert "no [local] globs are configured" in message
    assert f"the settings file was skipped: config file {bad}" in message
    assert "local.globs[0]" in message
    with pytest.raises(UserError, match="interface names start with 'swtpm-'"):
        find_interface("eth0", Config(), proxmox_dir=host.run, libvirt_dir=host.libvirt)


# --- logs we may not read ----------------------------------------------------------


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A folder another user can traverse (pytest's tmp_path is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="swtpm-extcap-test-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _python_for(uid: int) -> str | None:
    """An interpreter that user ``uid`` may run (pyenv under /root is not one)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(_as(uid) + [candidate, "-c", "pass"], capture_output=True, cwd="/")
        if probe.returncode == 0:
            return candidate
    return None


def _as(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


_LIST_AS_USER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from swtpm_extcap.interfaces.settings import Config
from swtpm_extcap.interfaces.local import discover
from swtpm_extcap.sources.local import permission_hint
found = discover(Config(), proxmox_dir=sys.argv[2], pve_conf_dir=sys.argv[3], libvirt_dir=sys.argv[4])
print(json.dumps([[i.name, i.readable, "" if i.readable else permission_hint(str(i.path))] for i in found]))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_unreadable_logs_are_listed_with_readable_false(shared_root: Path) -> None:
    host = Host(shared_root)
    for folder in (host.run, host.pve, host.libvirt):
        for parent in [folder, *folder.relative_to(shared_root).parents]:
            (shared_root / parent).chmod(0o755)
    secret = host.vm(103, "web01")  # root-owned, 0600: what Proxmox makes
    secret.chmod(0o600)
    (host.pve / "103.conf").chmod(0o600)  # the name is not readable either
    theirs = host.vm(104, "mine")  # 0600 but owned by the user listing
    theirs.chmod(0o600)
    os.chown(theirs, NOBODY, NOBODY)
    host.vm(105, "open").chmod(0o644)
    lib = host.log(host.libvirt / "f39-swtpm.log", LIBVIRT_LOG)
    lib.chmod(0o600)

    python = _python_for(NOBODY)
    if python is None:
        pytest.skip("no Python that uid 65534 may run")
    proc = subprocess.run(
        _as(NOBODY)
        + [python, "-c", _LIST_AS_USER, str(REPO), str(host.run), str(host.pve), str(host.libvirt)],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    listed = {name: (readable, hint) for name, readable, hint in json.loads(proc.stdout)}
    assert list(listed) == ["swtpm-103", "swtpm-104", "swtpm-105", "swtpm-f39", DEMO_NAME]
    assert [listed[n][0] for n in listed] == [False, True, True, False, True]
    hint = listed["swtpm-103"][1]
    user = pwd.getpwuid(NOBODY).pw_name
    assert hint.startswith(
        f"cannot read {secret} (root, mode 0600): run Wireshark's capture as root"
    )
    assert f"setfacl -m u:{user}:r {secret}" in hint
    assert f"sudo tail -c +1 -F {secret} | " in hint
    assert " -m swtpm_extcap convert - -o - | wireshark -k -i -" in hint
    assert "\n" not in hint
    # the same listing as root: root may read everything
    as_root = {i.name: i.readable for i in host.discover()}
    assert as_root["swtpm-103"] and as_root["swtpm-f39"]


def test_permission_hint_quotes_the_path(tmp_path: Path) -> None:
    log = tmp_path / "it's here" / "swtpm.log"
    log.parent.mkdir()
    shutil.copyfile(SMALL_LOG, log)
    log.chmod(0o640)
    hint = permission_hint(str(log))
    assert "(root, mode 0640)" in hint
    assert "'" + str(log).replace("'", "'\"'\"'") + "'" in hint  # shell-quoted for pasting


# --- speed -----------------------------------------------------------------------


def test_fifty_vms_listing_time(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    for vmid in range(100, 150):
        host.vm(vmid, f"vm-{vmid}")
    runs = []
    for _ in range(20):
        start = time.perf_counter()
        found = host.discover()
        runs.append(time.perf_counter() - start)
    assert names(found) == [f"swtpm-{v}" for v in range(100, 150)] + [DEMO_NAME]
    assert found[0].display == "SWTPM VM 100 (vm-100)"
    with capsys.disabled():
        print(
            f"\n[discovery] 50 Proxmox VMs: median {statistics.median(runs) * 1000:.2f} ms,"
            f" max {max(runs) * 1000:.2f} ms over {len(runs)} listings"
        )
